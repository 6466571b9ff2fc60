#!/usr/bin/env bash
# fuzz.sh SECONDS — builds every libFuzzer target (clang-14, ASan+UBSan, build-fuzz/) and runs
# each for SECONDS seconds from a copy of its seed corpus (tests/fuzz/corpus/<target>) with
# its dictionary. Prints the executions and coverage of each; exits non-zero on a crash, a
# leak, a sanitizer report or a timeout. A crashing input is left in build-fuzz/crashes/:
# copy it to tests/fuzz/regressions/<target>/ and meson test replays it from then on.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
case $secs in ''|*[!0-9]*) echo "usage: scripts/fuzz.sh SECONDS" >&2; exit 2 ;; esac
command -v clang-14 >/dev/null 2>&1 || {
  echo "fuzz: installing clang-14 (libFuzzer)"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q clang-14 libclang-rt-14-dev >/tmp/lowrank-apt.log 2>&1 ||
    { echo "fuzz: apt-get install clang-14 failed (see /tmp/lowrank-apt.log)" >&2; exit 1; }
}
targets="npy safetensors idx adapter_config cli peft cmdline toolcmd gguf"
# the packages, and build-fuzz configured with clang and its fuzz targets built (setup.sh does
# both; only the targets: the rest of the tree is built and tested elsewhere)
LR_NINJA_TARGETS=$(for t in $targets; do printf 'tests/fuzz/fuzz_%s ' "$t"; done) \
  CC=clang-14 scripts/setup.sh build-fuzz -Dfuzz=enabled -Db_sanitize=address,undefined -Db_lundef=false \
  -Dbuildtype=debugoptimized >/dev/null || exit 1
mkdir -p build-fuzz/crashes
: >build-fuzz/summary.txt
status=0
for t in $targets; do
  work=build-fuzz/corpus-$t
  rm -rf "$work"; mkdir -p "$work"
  cp tests/fuzz/corpus/$t/* "$work"/
  log=build-fuzz/fuzz-$t.log
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    build-fuzz/tests/fuzz/fuzz_$t "$work" -dict=tests/fuzz/$t.dict -max_total_time="$secs" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=build-fuzz/crashes/$t- >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
  printf '%-15s %12s executions  %s  %s\n' "$t" "${execs:-?}" "${cov:-cov: ?}" \
    "$([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc, see $log)")" | tee -a build-fuzz/summary.txt
  [ $rc -eq 0 ] || status=1
done
exit $status
