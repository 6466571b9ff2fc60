#!/bin/sh
# tool_mpi_check.sh LOWRANK MPIRUN — `lowrank extract`, `inspect` and `compress` under mpirun
# (suite 'dist').
#
# Writes a base and a tuned checkpoint (pure Python, no numpy: six F32 weights of 24x16 to
# 40x24 with rank-3 deltas, two 1-D norms, one unchanged weight; the tuned one also as 2
# shards with an index), then extracts a rank-3 adapter in one process and under
# `mpirun -np 2` and `-np 3` (tensors split over the processes, rank 0 gathers and writes):
# the adapter files must be byte for byte the one-process ones, from the file and from the
# shards, and stdout one JSON report (rank 0's) with the same layers. A missing TUNED exits
# non-zero with the file named. `inspect -np 3` gives one process's report and its notes once;
# `compress` under -np 2 and 3 writes one process's files.
# Exit 77 (skipped) without /usr/bin/python3.
set -u
prog=$1
mpirun=$2
py=/usr/bin/python3
[ -x "$py" ] || { echo "SKIP: $py is missing"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lowrank-mpi-check.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { printf 'FAIL: %s\n' "$*"; fails=$((fails + 1)); }

"$py" - "$tmp" <<'PY' || exit 1
import json, os, random, struct, sys
tmp = sys.argv[1]
rnd = random.Random(3)
def mat(m, n, f):
    return [[f(i, j) for j in range(n)] for i in range(m)]
def write(path, ts):
    hdr, blobs, off = {}, [], 0
    for name, rows in ts:
        flat = [x for r in rows for x in r] if isinstance(rows[0], list) else rows
        shape = [len(rows), len(rows[0])] if isinstance(rows[0], list) else [len(rows)]
        b = struct.pack('<%df' % len(flat), *flat)
        hdr[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b); blobs.append(b)
    h = json.dumps(hdr).encode(); h += b' ' * ((-len(h)) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))
shapes = [(24, 16), (32, 16), (16, 32), (40, 24), (24, 40), (32, 32)]
base, tuned = [], []
for k, (m, n) in enumerate(shapes):
    w = mat(m, n, lambda i, j: rnd.gauss(0, 1))
    u = [[rnd.gauss(0, 1) for _ in range(3)] for _ in range(m)]
    v = [[rnd.gauss(0, 1) for _ in range(n)] for _ in range(3)]
    d = mat(m, n, lambda i, j: 0.1 * sum(u[i][p] * v[p][j] for p in range(3)))
    name = "model.layers.%d.proj_%d.weight" % (k // 2, k % 2)
    base.append((name, w)); tuned.append((name, [[w[i][j] + d[i][j] for j in range(n)] for i in range(m)]))
same = mat(8, 8, lambda i, j: rnd.gauss(0, 1))
norms = [("model.norm%d.weight" % k, [1.0 + 0.01 * i for i in range(16)]) for k in range(2)]
base += [("model.fixed.weight", same)] + norms
tuned += [("model.fixed.weight", same)] + norms
write(tmp + '/base.safetensors', base)
write(tmp + '/tuned.safetensors', tuned)
os.makedirs(tmp + '/tuned3')
parts = [tuned[:4], tuned[4:]]
names = ['model-%05d-of-00002.safetensors' % (k + 1) for k in range(2)]
for nm, part in zip(names, parts):
    write(tmp + '/tuned3/' + nm, part)
total = os.path.getsize(tmp + '/tuned.safetensors')
json.dump({"metadata": {"total_size": total}, "weight_map": {n: nm for nm, part in zip(names, parts) for n, _ in part}},
          open(tmp + '/tuned3/model.safetensors.index.json', 'w'))
PY

mpi() { "$mpirun" --allow-run-as-root --oversubscribe -np "$@"; }
"$prog" extract "$tmp/base.safetensors" "$tmp/tuned.safetensors" --rank 3 --out "$tmp/one" --json >"$tmp/one.json" ||
  fail "one process: exit $?"
for np in 2 3; do
  for tuned in tuned.safetensors tuned3; do
    out="$tmp/np$np-$tuned"
    mpi "$np" "$prog" extract "$tmp/base.safetensors" "$tmp/$tuned" --rank 3 --out "$out" --json >"$out.json" ||
      fail "-np $np $tuned: exit $?"
    cmp -s "$tmp/one/adapter_model.safetensors" "$out/adapter_model.safetensors" ||
      fail "-np $np $tuned: adapter_model.safetensors differs from the one-process one"
    "$py" - "$tmp/one.json" "$out.json" <<'PY' || fail "-np $np $tuned: the JSON report differs"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
sys.exit(0 if a["layers"] == b["layers"] and a["unchanged"] == b["unchanged"] and len(a["layers"]) == 6 else 1)
PY
  done
done
# inspect: the spectra computed where the tensors are, reported by rank 0 alone
"$prog" inspect "$tmp/tuned3" --json >"$tmp/i1.json" 2>/dev/null || fail "inspect, one process: exit $?"
mpi 3 "$prog" inspect "$tmp/tuned3" --json >"$tmp/i3.json" 2>"$tmp/i3.err" || fail "inspect -np 3: exit $?"
"$py" - "$tmp/i1.json" "$tmp/i3.json" <<'PY' || fail "inspect -np 3: the report differs from one process's"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
sys.exit(0 if a["tensors"] == b["tensors"] and a["totals"] == b["totals"] and len(a["tensors"]) == 7 else 1)
PY
[ "$(grep -c 'note:' "$tmp/i3.err")" -eq 2 ] || fail "inspect -np 3: the notes should come once (rank 0's): $(cat "$tmp/i3.err")"

# compress: pass 1's spectra shared by every rank (the same plan), pass 2's factors to rank 0,
# which writes: the same files as one process, sharded (--rank) and single (--budget)
"$prog" compress "$tmp/tuned3" --rank 2 --out "$tmp/c1" >/dev/null 2>&1 || fail "compress, one process: exit $?"
mpi 2 "$prog" compress "$tmp/tuned3" --rank 2 --out "$tmp/c2" >/dev/null 2>&1 || fail "compress -np 2: exit $?"
for f in "$tmp"/c1/*; do
  cmp -s "$f" "$tmp/c2/$(basename "$f")" || fail "compress -np 2: $(basename "$f") differs from one process's"
done
"$prog" compress "$tmp/base.safetensors" --budget 0.5 --out "$tmp/b1.safetensors" >/dev/null 2>&1 ||
  fail "compress --budget, one process: exit $?"
mpi 3 "$prog" compress "$tmp/base.safetensors" --budget 0.5 --out "$tmp/b3.safetensors" >/dev/null 2>&1 ||
  fail "compress --budget -np 3: exit $?"
cmp -s "$tmp/b1.safetensors" "$tmp/b3.safetensors" || fail "compress --budget -np 3: the file differs from one process's"

if mpi 2 "$prog" extract "$tmp/base.safetensors" "$tmp/missing.safetensors" --rank 3 --out "$tmp/bad" \
     >/dev/null 2>"$tmp/err"; then
  fail "a missing TUNED: exit 0"
fi
grep -q "missing.safetensors" "$tmp/err" || fail "a missing TUNED: not named: $(cat "$tmp/err")"
[ -e "$tmp/bad" ] && fail "a missing TUNED: $tmp/bad was created"

if [ "$fails" -gt 0 ]; then
  echo "lowrank extract under mpirun: $fails failures"
  exit 1
fi
echo "lowrank extract under mpirun: all checks passed"
