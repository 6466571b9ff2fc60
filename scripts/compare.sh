#!/usr/bin/env bash
# compare.sh — lowrank's benchmarks side by side with the reference scripts, in one sitting.
#
#   scripts/compare.sh [svd|train|all] [THREADS]      (default: all, 2 threads)
#   LR_ROUNDS=N scripts/compare.sh svd               (SVD rounds, default 3)
#
# Runs our benchmark and the reference alternately (LR_ROUNDS rounds for SVD, 1 for the slow PyTorch
# run), prints each run and the median ratio reference/ours. Needs python3-torch and
# python3-sklearn (apt-get install python3-torch python3-sklearn) and ../shared/reference/.
# Timings on a shared machine drift: run it on a quiet machine and read the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
threads=${2:-2}
ref=${LR_REFERENCE_DIR:-../shared/reference}
py=/usr/bin/python3
[ -x "$py" ] || { echo "compare: $py not found" >&2; exit 1; }
[ -d "$ref" ] || { echo "compare: reference scripts not found in $ref (set LR_REFERENCE_DIR)" >&2; exit 1; }
scripts/setup.sh build >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export OPENBLAS_NUM_THREADS=$threads

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

if [ "$what" = svd ] || [ "$what" = all ]; then
  rounds=${LR_ROUNDS:-3}
  echo "== randomized / thin SVD and rank, $threads threads ($rounds rounds, alternating)"
  for i in $(seq "$rounds"); do
    build/tests/bench_svd "$threads" | tail -n 1 > "$out/ours$i.json"
    $py "$ref/numpy_svd.py" --sizes 2000x1000,4096x4096 | tail -n 1 > "$out/ref$i.json"
  done
  $py - "$out" <<'PY'
import json, sys, statistics as st, glob
d = sys.argv[1]
ours = [json.load(open(f)) for f in sorted(glob.glob(d + "/ours*.json"))]
refs = [json.load(open(f)) for f in sorted(glob.glob(d + "/ref*.json"))]
def rows(o):  # ours is {"...": [...]} or a list
    if isinstance(o, dict):
        for v in o.values():
            if isinstance(v, list): return v
    return o
for shape in ("2000x1000", "4096x4096"):
    for key in ("rsvd_to_target_s", "randomized_svd_s", "full_svd_s", "values_only_s", "matrix_rank_s"):
        a = [r[key] for o in ours for r in rows(o) if r.get("shape") == shape and key in r]
        b = [r[key] for o in refs for r in o if r.get("shape") == shape and key in r]
        if a and b:
            print(f"{shape:10s} {key:18s} lowrank {st.median(a):8.4f} s   numpy/sklearn {st.median(b):8.4f} s   ratio {st.median(b)/st.median(a):5.2f}x")
    a = [r["rsvd_err_over_opt"] for o in ours for r in rows(o) if r.get("shape") == shape and "rsvd_err_over_opt" in r]
    b = [r["rsvd_err_over_opt"] for o in refs for r in o if r.get("shape") == shape]
    if a and b:
        print(f"{shape:10s} rsvd error/optimal  lowrank {st.median(a):.5f}   sklearn {st.median(b):.5f}")
PY
fi

if [ "$what" = train ] || [ "$what" = all ]; then
  echo "== MNIST pretrain + LoRA fine-tune, $threads threads"
  LR_MNIST_DIR=data/mnist build/tests/bench_train "$threads" | tee "$out/train.txt"
  $py "$ref/torch_lora_mnist.py" data/mnist --threads "$threads" | tail -n 1 > "$out/torch.json"
  cat "$out/torch.json"
  $py - "$out" <<'PY'
import json, re, sys
d = sys.argv[1]
t = json.load(open(d + "/torch.json"))
txt = open(d + "/train.txt").read()
ep = float(re.search(r"one epoch, subnormals flushed \(default\): \d+ steps in ([\d.]+) s", txt).group(1))
ev = float(re.search(r"eval of \d+ images: ([\d.]+) s", txt).group(1))
ft = float(re.search(r"LoRA fine-tune: \d+ steps in ([\d.]+) ms", txt).group(1)) / 1e3
print(f"pretrain epoch : lowrank {ep:7.2f} s  torch {t['pretrain_s']:7.2f} s  ratio {t['pretrain_s']/ep:5.1f}x")
print(f"eval 10k images: lowrank {ev:7.3f} s  torch {t['test_s']:7.3f} s  ratio {t['test_s']/ev:5.1f}x")
print(f"LoRA 100 steps : lowrank {ft:7.3f} s  torch {t['finetune_s']:7.3f} s  ratio {t['finetune_s']/ft:5.1f}x")
PY
fi
