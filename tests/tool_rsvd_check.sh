#!/bin/sh
# tool_rsvd_check.sh LOWRANK MPIRUN — `lowrank rsvd` end to end.
#
# Writes a 403 x 50 float32 .npy W = U·diag(sigma)·V^T with a known spectrum (sigma 10, 8.5,
# ... then a tail from 0.01; pure Python, no numpy), then, for both methods (block Krylov,
# the default, and --method subspace):
#   MPIRUN empty (suite 'tool'): one process, text and --json: the values against sigma to
#     1e-5 relative, the unexplained energy against the tail's, exit status 2 for bad command
#     lines and 1 (with the file named) for a missing file, a bad file and a rank too large;
#   MPIRUN given (suite 'dist'): the same under `mpirun -np 2` and `-np 3` (403 rows divide
#     by neither): the singular values equal the one-process run's (same method) to 1e-5
#     relative, stdout is one JSON object (only rank 0 prints) with the ranks, their rows and
#     the bytes communicated (docs/dist.md's formulas); a missing file is one message (rank
#     0's) and exit status 1; a usage error exit status 2.
# Exit 77 (skipped) without /usr/bin/python3.
set -u
prog=$1
mpirun=${2:-}
py=/usr/bin/python3
[ -x "$py" ] || { echo "SKIP: $py is missing"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lowrank-rsvd-check.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { printf 'FAIL: %s\n' "$*"; fails=$((fails + 1)); }

"$py" - "$tmp" <<'PY' || exit 1
import math, random, struct, sys
tmp = sys.argv[1]
m, n = 403, 50
rnd = random.Random(5)
def orthonormal(rows, k):
    q = []
    for _ in range(k):
        v = [rnd.gauss(0, 1) for _ in range(rows)]
        for _ in range(2):  # Gram-Schmidt twice
            for u in q:
                d = sum(a * b for a, b in zip(u, v))
                v = [a - d * b for a, b in zip(v, u)]
        s = math.sqrt(sum(a * a for a in v))
        q.append([a / s for a in v])
    return q
sig = [10 * 0.85 ** i for i in range(8)] + [0.01 * 0.9 ** j for j in range(n - 8)]
U, V = orthonormal(m, n), orthonormal(n, n)
w = [[0.0] * n for _ in range(m)]
for p in range(n):
    up, vp, sp = U[p], V[p], sig[p]
    for i in range(m):
        c = sp * up[i]
        row = w[i]
        for j in range(n):
            row[j] += c * vp[j]
def save(path, rows, dtype='<f4', shape=None):
    shape = shape or (len(rows), len(rows[0]) if rows else 0)
    hdr = "{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d), }" % (dtype, shape[0], shape[1])
    hdr += ' ' * (63 - (10 + len(hdr)) % 64) + '\n'
    with open(path, 'wb') as f:
        f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(hdr)) + hdr.encode())
        for r in rows:
            f.write(struct.pack('<%df' % len(r), *r))
save(tmp + '/w.npy', w)
with open(tmp + '/sigma.txt', 'w') as f:
    f.write(' '.join('%.17g' % s for s in sig))
# a bad file: shape says 10 rows, data holds 9
save(tmp + '/short.npy', w[:9], shape=(10, n))
PY

# compare A.json B|sigma RTOL: the singular values of A equal B's (a JSON file) or sigma's
compare() {
  "$py" - "$tmp" "$1" "$2" "$3" <<'PY'
import json, sys
tmp, a, b, rtol = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
got = json.load(open(a))['singular_values']
if b == 'sigma':
    want = [float(x) for x in open(tmp + '/sigma.txt').read().split()][:len(got)]
else:
    want = json.load(open(b))['singular_values']
bad = [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if abs(g - w) > rtol * abs(w)]
if len(got) != len(want) or bad:
    print('singular values differ: %s vs %s: %s' % (a, b, bad or (len(got), len(want))))
    sys.exit(1)
PY
}

run1() { OMPI_MCA_btl_vader_single_copy_mechanism=none "$prog" "$@"; }
args="rsvd $tmp/w.npy --rank 6 --oversample 10 --power-iters 4 --seed 3 --method subspace"
kry="rsvd $tmp/w.npy --rank 6 --seed 3"

if [ -z "$mpirun" ]; then
  # shellcheck disable=SC2086
  run1 $args --json >"$tmp/one.json" 2>"$tmp/err" || fail "one process: exit $? ($(cat "$tmp/err"))"
  compare "$tmp/one.json" sigma 1e-5 || fail "one process vs sigma"
  "$py" - "$tmp/one.json" <<'PY' || fail "one process: JSON fields"
import json, sys
o = json.load(open(sys.argv[1]))
sig = [10 * 0.85 ** i for i in range(8)] + [0.01 * 0.9 ** j for j in range(42)]
tail = sum(s * s for s in sig[6:])
assert o['command'] == 'rsvd' and o['shape'] == [403, 50] and o['rank'] == 6 and o['ranks'] == 1, o
assert o['rows_per_rank'] == [403] and o['method'] == 'subspace', o
assert o['oversample'] == 10 and o['power_iters'] == 4 and 'block' not in o, o
assert abs(o['unexplained_energy'] - tail) < 1e-3 * sum(s * s for s in sig), (o['unexplained_energy'], tail)
assert o['bytes_communicated'] == 0, o
PY
  # the default method: block Krylov, blocks of R, depth 3
  # shellcheck disable=SC2086
  run1 $kry --json >"$tmp/kry.json" 2>"$tmp/err" || fail "krylov: exit $? ($(cat "$tmp/err"))"
  compare "$tmp/kry.json" sigma 1e-5 || fail "krylov vs sigma"
  "$py" - "$tmp/kry.json" <<'PY' || fail "krylov: JSON fields"
import json, sys
o = json.load(open(sys.argv[1]))
assert o['method'] == 'krylov' and o['block'] == 6 and o['krylov_depth'] == 3 and 'oversample' not in o, o
PY
  # shellcheck disable=SC2086
  run1 $kry >"$tmp/text" 2>&1 || fail "krylov text: exit $?"
  grep -q "403 x 50, rank 6 (block Krylov, blocks of 6, depth 3, seed 3), 1 process" "$tmp/text" ||
    fail "krylov text header: $(head -n 1 "$tmp/text")"
  # shellcheck disable=SC2086
  run1 $args >"$tmp/text" 2>&1 || fail "text: exit $?"
  grep -q "403 x 50, rank 6 (oversample 10, 4 power iterations, seed 3), 1 process" "$tmp/text" ||
    fail "text header: $(head -n 1 "$tmp/text")"
  grep -qE '^ +1 +(10|9\.9999[0-9]*)$' "$tmp/text" || fail "text: sigma_1 = 10 not shown: $(cat "$tmp/text")"
  # exit statuses and messages
  expect() { # expect STATUS NEEDLE ARGS...
    want=$1 needle=$2; shift 2
    run1 "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    [ "$got" -eq "$want" ] || fail "'$*': exit $got, expected $want ($(cat "$tmp/err"))"
    grep -qF -- "$needle" "$tmp/err" || fail "'$*': stderr does not mention '$needle': $(cat "$tmp/err")"
  }
  expect 2 "--rank R is required" rsvd "$tmp/w.npy"
  expect 2 "expected FILE.npy" rsvd --rank 3
  expect 2 "--rank" rsvd "$tmp/w.npy" --rank 0
  expect 2 "unknown option '--bogus'" rsvd "$tmp/w.npy" --rank 3 --bogus
  expect 2 "--power-iters" rsvd "$tmp/w.npy" --rank 3 --power-iters 1001
  expect 2 "--method: expected krylov or subspace, got 'lanczos'" rsvd "$tmp/w.npy" --rank 3 --method lanczos
  expect 2 "expected one FILE.npy" rsvd "$tmp/w.npy" "$tmp/w.npy" --rank 3
  expect 2 "an empty path among the arguments" rsvd "" --rank 3
  expect 1 "missing.npy" rsvd "$tmp/missing.npy" --rank 3
  expect 1 "short.npy: truncated" rsvd "$tmp/short.npy" --rank 3
  expect 1 "--rank 51, expected 1..min(403, 50)" rsvd "$tmp/w.npy" --rank 51
  run1 rsvd --help >"$tmp/out" 2>&1 || fail "--help: exit $?"
  grep -q "usage: lowrank rsvd FILE.npy --rank R" "$tmp/out" || fail "--help text"
else
  mpi() { "$mpirun" --allow-run-as-root --oversubscribe -np "$@"; }
  for meth in subspace krylov; do
    if [ "$meth" = subspace ]; then a=$args; else a=$kry; fi
    # shellcheck disable=SC2086
    run1 $a --json >"$tmp/one-$meth.json" 2>"$tmp/err" || fail "$meth, one process: exit $? ($(cat "$tmp/err"))"
    for np in 2 3; do
      out="$tmp/np$np-$meth.json"
      # shellcheck disable=SC2086
      mpi "$np" "$prog" $a --json >"$out" 2>"$tmp/err$np" || fail "$meth -np $np: exit $? ($(cat "$tmp/err$np"))"
      compare "$out" "$tmp/one-$meth.json" 1e-5 || fail "$meth -np $np vs one process"
      compare "$out" sigma 1e-5 || fail "$meth -np $np vs sigma"
      "$py" - "$out" "$np" "$meth" <<'PY' || fail "$meth -np $np: JSON fields"
import json, sys
o = json.load(open(sys.argv[1]))  # one object: only rank 0 printed
np, meth = int(sys.argv[2]), sys.argv[3]
assert o['ranks'] == np and o['implementation'] == 'lr_dist_rsvd' and o['method'] == meth, o
rows = o['rows_per_rank']
assert len(rows) == np and sum(rows) == 403 and max(rows) - min(rows) == 1, rows
n = 50
if meth == 'subspace':  # l = 16, q = 4: Bcast n*l + 2 floats, 5 Allreduces of n*l floats, 10 of l*l doubles
    l = 16
    want = (n * l + 2) * 4 + 5 * n * l * 4 + 10 * l * l * 8
else:  # b = 6, q = 3: Bcast n*b + 2 floats, 4 of b*n floats, 11 of b*b doubles, projections 12 b*b floats
    b = 6
    want = (n * b + 2) * 4 + 4 * b * n * 4 + 11 * b * b * 8 + 12 * b * b * 4
# the small ones: 2 agreements (int), 10 uint64, the row counts (8 per rank); frob2: an int and a double
want += 2 * 4 + 10 * 8 + 8 * np + 4 + 8
assert o['bytes_communicated'] == want, (o['bytes_communicated'], want)
PY
    done
  done
  # shellcheck disable=SC2086
  mpi 2 "$prog" $args >"$tmp/text2" 2>&1 || fail "-np 2 text: exit $?"
  [ "$(grep -c 'rows per process: 202 201' "$tmp/text2")" -eq 1 ] || fail "-np 2 text (printed once): $(cat "$tmp/text2")"
  mpi 3 "$prog" rsvd "$tmp/missing.npy" --rank 3 >"$tmp/out" 2>"$tmp/err"
  st=$?
  [ "$st" -eq 1 ] || fail "-np 3 missing file: exit $st, expected 1"
  [ "$(grep -c 'missing.npy' "$tmp/err")" -eq 1 ] || fail "-np 3 missing file: not one message: $(cat "$tmp/err")"
  grep -q "lowrank rsvd: rank 0: cannot open" "$tmp/err" || fail "-np 3 missing file: $(cat "$tmp/err")"
  mpi 2 "$prog" rsvd "$tmp/w.npy" >"$tmp/out" 2>"$tmp/err"
  st=$?
  [ "$st" -eq 2 ] || fail "-np 2 usage error: exit $st, expected 2"
  [ "$(grep -c -- '--rank R is required' "$tmp/err")" -eq 1 ] || fail "-np 2 usage error: $(cat "$tmp/err")"
fi
[ "$fails" -eq 0 ] || exit 1
echo "lowrank rsvd: all checks passed${mpirun:+ (mpirun)}"
