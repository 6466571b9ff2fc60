#!/usr/bin/env bash
# test.sh — the whole test suite, as CI runs it:
#   1. scripts/setup.sh (packages, MNIST, build) for build-ci with werror and MPI (-Dmpi=enabled:
#      the dist suite runs under mpirun with 1, 2 and 3 processes),
#   2. every test there, the full-epoch end-to-end test included;
#   3. the unit suite again with LR_ISA=generic (the plain-C kernels, which never run by
#      default on an x86 CPU with AVX2; the unit tests pin their bits against the SIMD ones);
#   4. every test in build-asan (-Db_sanitize=address,undefined), the end-to-end test on the
#      first 5,000 training images only (LR_E2E_LIMIT_TRAIN; the full epoch is the release
#      build's);
#   5. the unit suite in build-tsan (clang-14, -Db_sanitize=thread): pools, two models at once,
#      one model evaluated from four threads; and so every unit test with clang as well as gcc
#      (bit-exact paths included: the build has no FP contraction on either compiler);
#   6. scripts/fuzz.sh 12: every libFuzzer target for 12 s (a target that crashes counts as a
#      failed test);
#   7. one closing line "N passed, N failed, N skipped"; exit status non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
step() { echo "== ($((SECONDS - t0)) s since the start) $*"; }
step "setup: packages, MNIST, build-ci"
scripts/setup.sh build-ci -Dwerror=true -Dbuildtype=release -Dmpi=enabled || exit 1
step "setup: build-asan"
scripts/setup.sh build-asan -Dwerror=true -Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false || exit 1
step "setup: build-tsan"
CC=clang-14 scripts/setup.sh build-tsan -Dwerror=true -Dbuildtype=debugoptimized -Db_sanitize=thread -Db_lundef=false || exit 1

status=0
run() { # run LOGBASE BUILD [meson test options...]
  local log=$1 b=$2; shift 2
  step "meson test -C $b $* (log $log)"
  meson test -C "$b" --print-errorlogs --num-processes 2 --logbase "$log" "$@" || status=1
}
run testlog build-ci
LR_ISA=generic run testlog-generic build-ci --suite unit
run testlog build-asan --no-suite e2e
LR_E2E_LIMIT_TRAIN=5000 run testlog-e2e build-asan --suite e2e
run testlog build-tsan --suite unit
step "scripts/fuzz.sh 12"
rm -f build-fuzz/summary.txt
scripts/fuzz.sh 12 || status=1
step "summary"
python3 - build-ci/meson-logs/testlog.json build-ci/meson-logs/testlog-generic.json \
  build-asan/meson-logs/testlog.json build-asan/meson-logs/testlog-e2e.json \
  build-tsan/meson-logs/testlog.json <<'PY'
import json, sys
passed = failed = skipped = 0
for log in sys.argv[1:]:
    try:
        lines = open(log).read().splitlines()
    except OSError:
        failed += 1; print(f"{log}: no test log"); continue
    for line in lines:
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL"): passed += 1
        elif r == "SKIP": skipped += 1
        else: failed += 1
try:  # one line per fuzz target: "... ok" or "... FAILED ..."
    for line in open("build-fuzz/summary.txt").read().splitlines():
        if line.rstrip().endswith(" ok"): passed += 1
        else: failed += 1
except OSError:
    failed += 1; print("build-fuzz/summary.txt: no fuzz results")
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
