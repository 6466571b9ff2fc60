#!/usr/bin/env bash
# setup_llama.sh — install llama.cpp for the harness in tests/llama/: the npm package
# node-llama-cpp@3.21.1 with only its CPU linux-x64 prebuilt binary, and Debian's
# python3-numpy (the harness writes its GGUF files with numpy).
#
#   scripts/setup_llama.sh [DIR]        (default: build/llama-node, which git ignores)
#
# What it runs, in DIR:
#   npm install --omit=optional --ignore-scripts --save-exact --no-audit --no-fund \
#       node-llama-cpp@3.21.1 @node-llama-cpp/linux-x64@3.21.1 @huggingface/gguf@0.4.6
# --omit=optional leaves out the CUDA/Vulkan/other-platform binary packages (the CUDA ones
# alone are hundreds of MB); the CPU one is named explicitly, so it is a plain dependency.
# --ignore-scripts skips node-llama-cpp's postinstall, which would fall back to downloading
# and building llama.cpp from GitHub if the prebuilt binary failed to load. Instead this
# script loads the prebuilt binary itself with getLlama({gpu: false, build: "never",
# skipDownload: true}) and checks that it is the prebuilt CPU build.
#
# Re-running it is fast (a version check, no network) and changes nothing that is right.
# Exit 0: ready; 77: impossible here (not linux-x64, no node/npm >= 20, npm registry
# unreachable, python3-numpy not installable), with the reason; 1: anything else failed.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=3.21.1
GGUF_JS=0.4.6   # @huggingface/gguf: a second, independent GGUF parser (tests/llama/gguf_list.mjs)
dir=${1:-build/llama-node}
say() { printf 'setup_llama: %s\n' "$*" >&2; }
skip() { say "SKIP: $*"; exit 77; }
die() { say "$*"; exit 1; }

# --- platform ----------------------------------------------------------------
[ "$(uname -s)" = Linux ] || skip "not Linux ($(uname -s)): only the linux-x64 prebuilt binary is used"
[ "$(uname -m)" = x86_64 ] || skip "not x86_64 ($(uname -m)): only the linux-x64 prebuilt binary is used"

# --- numpy for the harness's python (Debian's python3-numpy) ------------------
have_numpy() {
  local p
  for p in /usr/bin/python3 python3; do
    command -v "$p" >/dev/null 2>&1 && "$p" -c 'import numpy' 2>/dev/null && return 0
  done
  return 1
}
if ! have_numpy; then
  [ "$(id -u)" -eq 0 ] || skip "python3-numpy is missing and this is not root (run: apt-get install python3-numpy)"
  say "installing Debian's python3-numpy"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends python3-numpy >/tmp/lowrank-apt-llama.log 2>&1; then
    apt-get update -q >>/tmp/lowrank-apt-llama.log 2>&1 || true
    apt-get install -y -q --no-install-recommends python3-numpy >>/tmp/lowrank-apt-llama.log 2>&1 ||
      skip "apt-get install python3-numpy failed (see /tmp/lowrank-apt-llama.log)"
  fi
  have_numpy || skip "python3-numpy installed but no python3 imports numpy"
fi

# --- node and npm -------------------------------------------------------------
command -v node >/dev/null 2>&1 || skip "node is not installed (node-llama-cpp $VERSION needs Node.js >= 20)"
command -v npm >/dev/null 2>&1 || skip "npm is not installed (apt-get install npm)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || skip "Node.js $(node --version) is older than 20, which node-llama-cpp $VERSION needs"

# --- already installed? -------------------------------------------------------
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
# one installer at a time (meson runs the harness's tests in parallel, from two build dirs)
exec 9>"$dir/.lock"
flock 9 2>/dev/null || true
stamp=$dir/.ready-$VERSION
pkgver() { node -p "require('$dir/node_modules/$1/package.json').version" 2>/dev/null || true; }
if [ -f "$stamp" ] && [ "$(pkgver node-llama-cpp)" = "$VERSION" ] &&
   [ "$(pkgver @node-llama-cpp/linux-x64)" = "$VERSION" ] && [ "$(pkgver @huggingface/gguf)" = "$GGUF_JS" ]; then
  echo "$dir"
  exit 0
fi
rm -f "$stamp"

# --- install ------------------------------------------------------------------
timeout 60 npm view "node-llama-cpp@$VERSION" version >/dev/null 2>&1 ||
  skip "the npm registry is unreachable (npm view node-llama-cpp@$VERSION failed)"
[ -f "$dir/package.json" ] ||
  printf '{\n  "name": "lowrank-llama-harness",\n  "private": true,\n  "type": "module"\n}\n' >"$dir/package.json"
say "installing node-llama-cpp@$VERSION with its CPU linux-x64 binary into $dir"
t0=$(date +%s)
(cd "$dir" && npm install --omit=optional --ignore-scripts --save-exact --no-audit --no-fund --loglevel=error \
   "node-llama-cpp@$VERSION" "@node-llama-cpp/linux-x64@$VERSION" "@huggingface/gguf@$GGUF_JS") \
   >"$dir/npm-install.log" 2>&1 || {
  tail -n 20 "$dir/npm-install.log" >&2
  grep -qiE 'ENOTFOUND|ECONNREFUSED|ETIMEDOUT|EAI_AGAIN|network' "$dir/npm-install.log" &&
    skip "npm install could not reach the registry (see $dir/npm-install.log)"
  die "npm install failed (see $dir/npm-install.log)"
}
[ "$(pkgver node-llama-cpp)" = "$VERSION" ] || die "node-llama-cpp $VERSION is not in $dir/node_modules after npm install"
[ "$(pkgver @node-llama-cpp/linux-x64)" = "$VERSION" ] || die "@node-llama-cpp/linux-x64 $VERSION is not in $dir/node_modules"
[ "$(pkgver @huggingface/gguf)" = "$GGUF_JS" ] || die "@huggingface/gguf $GGUF_JS is not in $dir/node_modules"
for extra in "$dir"/node_modules/@node-llama-cpp/*; do
  [ "$(basename "$extra")" = linux-x64 ] || say "note: an extra binary package is installed: $extra"
done

# --- the prebuilt binary loads, without any download or build ------------------
# (from a file: node-llama-cpp tests its binary in a child process forked from the
# caller's script, which `node -e` does not have)
cat >"$dir/probe.mjs" <<'EOF'
const {getLlama} = await import(new URL("./node_modules/node-llama-cpp/dist/index.js", import.meta.url));
const llama = await getLlama({gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true,
                              progressLogs: false, logLevel: "error"});
if (llama.buildType !== "prebuilt" || llama.gpu !== false)
  throw new Error(`expected the prebuilt CPU binary, got buildType ${llama.buildType}, gpu ${llama.gpu}`);
console.error(`setup_llama: llama.cpp ${llama.llamaCppRelease.release} (${llama.buildType}, cpu): ${llama.systemInfo}`);
await llama.dispose();
EOF
NODE_LLAMA_CPP_SKIP_DOWNLOAD=true node "$dir/probe.mjs" || die "node-llama-cpp cannot load its prebuilt CPU binary"
say "installed in $(( $(date +%s) - t0 )) s, $(du -sh "$dir/node_modules" | cut -f1) in $dir/node_modules"
touch "$stamp"
echo "$dir"
