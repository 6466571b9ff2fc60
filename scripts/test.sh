#!/usr/bin/env bash
# test.sh — the whole test suite, as CI runs it:
#   1. scripts/setup.sh (packages, MNIST, build) for build-ci with werror,
#   2. every test there, then the same tests in build-asan (-Db_sanitize=address,undefined),
#   3. one closing line "N passed, N failed"; exit status non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build-ci -Dwerror=true -Dbuildtype=release || exit 1
scripts/setup.sh build-asan -Dwerror=true -Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false || exit 1

status=0
for b in build-ci build-asan; do
  echo "== meson test -C $b"
  meson test -C "$b" --print-errorlogs --num-processes 2 || status=1
done
python3 - build-ci build-asan <<'PY'
import json, sys
passed = failed = skipped = 0
for b in sys.argv[1:]:
    try:
        lines = open(f"{b}/meson-logs/testlog.json").read().splitlines()
    except OSError:
        failed += 1; print(f"{b}: no test log"); continue
    for line in lines:
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL"): passed += 1
        elif r == "SKIP": skipped += 1
        else: failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
