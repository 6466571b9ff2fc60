#!/bin/sh
# mnist_dist_check.sh — lr-mnist under mpirun (suite 'dist'): data-parallel pretraining and
# fine-tuning over 2 and 3 processes (600 images: batches of 10 split 5+5 and 4+3+3, the
# last fine-tuning batch uneven) against the one process that takes the same slices
# (--shards N): the same losses, accuracies and checksums bit for bit; replicas identical;
# one JSON object and one copy of each file (rank 0 alone writes); with --dist-sum mpi the
# run also completes with identical replicas; --shards under mpirun and data missing are
# clear errors with one message.
#   mnist_dist_check.sh LR_MNIST MPIRUN     needs MNIST in $LR_MNIST_DIR and python3 (77 otherwise)
set -u
mnist=$1
mpirun=$2
[ -n "${LR_MNIST_DIR:-}" ] && [ -f "$LR_MNIST_DIR/train-images-idx3-ubyte" -o -f "$LR_MNIST_DIR/train-images-idx3-ubyte.gz" ] || {
  echo "MNIST not found in LR_MNIST_DIR: skipped"; exit 77; }
command -v python3 >/dev/null || { echo "python3 missing: skipped"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lowrank-dist.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { printf 'FAIL: %s\n' "$*"; fails=$((fails + 1)); }
mpi() { "$mpirun" --allow-run-as-root --oversubscribe "$@"; }
small="--data $LR_MNIST_DIR --limit-train 600 --limit-test 200 --steps 12 --quiet --json"
for n in 2 3; do
  mpi -np $n "$mnist" $small --save "$tmp/np$n.safetensors" --adapter-out "$tmp/ad$n" >"$tmp/np$n.json" 2>"$tmp/np$n.err" ||
    fail "mpirun -np $n: exit $?: $(cat "$tmp/np$n.err")"
  "$mnist" $small --shards $n --threads 2 >"$tmp/one$n.json" 2>"$tmp/one$n.err" ||
    fail "--shards $n: exit $?: $(cat "$tmp/one$n.err")"
  python3 - "$tmp" $n <<'PY' || fail "-np $n against --shards $n"
import json, sys
d, n = sys.argv[1], sys.argv[2]
a = json.load(open(f'{d}/np{n}.json'))   # one object: only rank 0 printed
b = json.load(open(f'{d}/one{n}.json'))
assert a['processes'] == int(n) and b['processes'] == 1, (a['processes'], b['processes'])
for part in ('pretrain', 'finetune'):
    dp = a[part]['data_parallel']
    assert dp['processes'] == int(n) and dp['replicas_identical'], dp
    assert dp['bytes_per_step'] >= 4 * dp['floats_per_step'], dp
    for k in ('avg_loss', 'last_loss'):
        assert a[part][k] == b[part][k], (part, k, a[part][k], b[part][k])
    assert 'data_parallel' not in b[part]
assert a['finetune']['loss_curve'] == b['finetune']['loss_curve']
assert a['pretrain']['data_parallel']['floats_per_step'] == 2807011, a['pretrain']['data_parallel']
assert a['finetune']['data_parallel']['floats_per_step'] == 6795, a['finetune']['data_parallel']
for k in ('pretrained', 'lora_enabled', 'lora_disabled', 'frozen_checksum_after', 'forgetting'):
    assert a[k] == b[k], (k, a[k], b[k])
assert a['ok'] and b['ok']
print(f'-np {n} = --shards {n}: pretrain last loss {a["pretrain"]["last_loss"]}, fine-tune last loss {a["finetune"]["last_loss"]}')
PY
  [ -f "$tmp/np$n.safetensors" ] && [ -f "$tmp/ad$n/adapter_model.safetensors" ] || fail "-np $n: outputs missing"
  left=$(find "$tmp" -name '.*tmp*' | wc -l)
  [ "$left" -eq 0 ] || fail "-np $n: $left temporary files left"
done
# the rank-ordered and MPI sums start from the same pretrained model
mpi -np 2 "$mnist" $small --load "$tmp/np2.safetensors" --dist-sum mpi >"$tmp/mpisum.json" 2>"$tmp/mpisum.err" ||
  fail "--dist-sum mpi: exit $?: $(cat "$tmp/mpisum.err")"
python3 -c "
import json; a = json.load(open('$tmp/mpisum.json'))
dp = a['finetune']['data_parallel']; assert dp['sum'] == 'MPI_Allreduce' and dp['replicas_identical'], dp
" || fail "--dist-sum mpi report"
# errors: one message, the right status
mpi -np 2 "$mnist" $small --shards 2 >/dev/null 2>"$tmp/e1"; rc=$?
[ $rc -ne 0 ] && grep -q -- "--shards is for one process" "$tmp/e1" || fail "--shards under mpirun: exit $rc: $(cat "$tmp/e1")"
[ "$(grep -c 'lr-mnist:' "$tmp/e1")" -eq 1 ] || fail "--shards under mpirun: not one message: $(cat "$tmp/e1")"
mpi -np 2 "$mnist" --data "$tmp/none" --quiet >/dev/null 2>"$tmp/e2"; rc=$?
[ $rc -ne 0 ] && grep -q "is not a directory" "$tmp/e2" || fail "missing data: exit $rc: $(cat "$tmp/e2")"
[ "$(grep -c 'lr-mnist:' "$tmp/e2")" -eq 1 ] || fail "missing data: not one message: $(cat "$tmp/e2")"
[ $fails -eq 0 ] && echo "mnist_dist_check: all checks passed" || echo "mnist_dist_check: $fails failed"
[ $fails -eq 0 ]
