#!/usr/bin/env bash
# llama_check.sh — llama.cpp itself applies a mixed-rank rsLoRA adapter as PEFT would.
#
#   tests/llama/llama_check.sh [--lowrank BIN] [--thorough] [--keep DIR]
#
# Installs (scripts/setup_llama.sh: node-llama-cpp 3.21.1, CPU prebuilt binary, and
# python3-numpy; fast when present), then in a scratch directory:
#   1. tiny_llama.py base: a 2-layer Llama GGUF (embd 64, 4 heads / 2 KV heads, ff 128,
#      vocab 320 with the 256 byte tokens), F32, random (seed 1);
#   2. tiny_llama.py peft: a PEFT adapter for it, rsLoRA, ranks 2..12 and alphas through
#      rank_pattern / alpha_pattern, on q/k/v/o, gate/up/down, embed_tokens and lm_head;
#   3. tiny_llama.py merge: the reference, base + s_i B_i A_i per PEFT, in float64, as F32;
#      and tiny_llama.py forward: PEFT's forward pass in numpy (float64: Hugging Face's q/k
#      row order and rope, W x + s B A x), which llama.cpp on the merged model must match;
#   4. logits.mjs (llama.cpp through node-llama-cpp): log-probabilities over the vocabulary
#      at each of 24 positions of a fixed token sequence, for
#        merged                  the reference;
#        base + exact adapter    written by tiny_llama.py with every PEFT scale folded in
#                                (adapter.lora.alpha = lora_alpha, and again with 0): must
#                                match the reference within TOL = 1e-4 (F32 tensors) —
#                                and with F16 / BF16 tensors within 1e-2 / 5e-2;
#        base alone              must differ by >= 0.1 (the adapter matters);
#        one-alpha adapter       convert_lora_to_gguf.py's way (one alpha, llama.cpp's alpha/r):
#                                must differ by >= 100 TOL (1e-2);
#        no-permute adapter      q/k lora_b rows not permuted for llama.cpp's rope as
#                                convert_hf_to_gguf.py permutes q/k: must differ by >= 10 TOL;
#        one pair's scale x1.01  for one pair of each kind (all pairs with --thorough): must
#                                differ by >= 10 TOL, so an error of 1% in any scale shows;
#        --lowrank BIN           `BIN export PEFT_DIR --gguf OUT --arch llama --check BASE` (ours):
#                                must match the reference within the tolerance of its dtype;
#                                and `BIN merge` of the base (as Hugging Face safetensors,
#                                tiny_llama.py hf) converted back (from-hf) within TOL.
# Exit 0: all passed; 1: a check failed; 77: skipped (not linux-x64, no npm registry, ...).
#
# Tolerance: llama.cpp evaluates F32 weights in float32 (F32 KV cache, no flash attention:
# logits.mjs sets both). base + s B A x and (W + s B A) x then differ by float32 roundoff
# only: 3.8e-6 in log p measured here (3.1e-6 with alpha 0; llama.cpp vs numpy's float64
# PEFT forward 2.7e-6); 1e-4 leaves a 25x margin, and a 1% error in the scale of any single
# pair moves log p by >= 7e-3 (all 16 pairs measured with --thorough). llama.cpp's defaults
# (F16 KV cache: 1.3e-4; flash attention: 8.9e-4) would blur that, hence the settings.
# F16/BF16 adapter tensors round A, B and the activations entering the LoRA product
# (measured 2.5e-3 / 1.8e-2, hence 1e-2 / 5e-2).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
lowrank="" thorough=0 keep=""
while [ $# -gt 0 ]; do
  case $1 in
    --lowrank) lowrank=$2; shift 2 ;;
    --thorough) thorough=1; shift ;;
    --keep) keep=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "llama_check: unknown argument $1" >&2; exit 2 ;;
  esac
done
nodedir=${LLAMA_NODE_DIR:-$root/build/llama-node}

setup_log=$(mktemp)
"$root/scripts/setup_llama.sh" "$nodedir" >/dev/null 2>"$setup_log"
rc=$?
cat "$setup_log"
reason=$(sed -n 's/^setup_llama: SKIP: //p' "$setup_log" | tail -n 1)
rm -f "$setup_log"
if [ $rc -eq 77 ]; then echo "llama_check: SKIP: ${reason:-scripts/setup_llama.sh exited 77}"; exit 77; fi
if [ $rc -ne 0 ]; then echo "llama_check: scripts/setup_llama.sh $nodedir failed"; exit 1; fi
py=""
for p in /usr/bin/python3 python3; do
  command -v "$p" >/dev/null 2>&1 && "$p" -c 'import numpy' 2>/dev/null && { py=$p; break; }
done
[ -n "$py" ] || { echo "llama_check: SKIP: no python3 with numpy (apt-get install python3-numpy)"; exit 77; }

if [ -n "$keep" ]; then w=$keep; mkdir -p "$w"; else w=$(mktemp -d); trap 'rm -rf "$w"' EXIT; fi
tl() { "$py" "$here/tiny_llama.py" "$@"; }
tokens=1,20,300,45,7,259,260,100,33,270,280,5,6,290,311,2,263,77,265,150,3,299,268,42
TOL=1e-4
pass=0 fail=0
fail() { echo "$1: FAILED"; fail=$((fail + 1)); }

# --- the files -----------------------------------------------------------------
tl base "$w/base.gguf" >/dev/null || { echo "llama_check: tiny_llama.py base failed"; exit 1; }
tl peft "$w/peft" --base "$w/base.gguf" || { echo "llama_check: tiny_llama.py peft failed"; exit 1; }
tl merge "$w/base.gguf" "$w/peft" "$w/merged.gguf" >/dev/null || { echo "llama_check: tiny_llama.py merge failed"; exit 1; }
: >"$w/jobs"
job() { echo "$w/$1.json $w/$2 ${3:+$w/$3}" >>"$w/jobs"; }   # NAME MODEL [ADAPTER]
checks=()   # "NAME|LABEL|compare options"
job merged merged.gguf
job base base.gguf
checks+=("base|base alone (the adapter's effect)|--min-diff 0.1")
for v in "exact:f32:" "exact-alpha0:f32:--alpha 0" "exact-f16:f16:" "exact-bf16:bf16:"; do
  IFS=: read -r name dt extra <<<"$v"
  case $dt in f32) tol=$TOL ;; f16) tol=1e-2 ;; bf16) tol=5e-2 ;; esac
  # shellcheck disable=SC2086
  if tl adapter "$w/peft" "$w/$name.gguf" --base "$w/base.gguf" --dtype "$dt" $extra >/dev/null; then
    job "$name" base.gguf "$name.gguf"
    checks+=("$name|base + $name adapter (tiny_llama.py) vs merged|--tol $tol")
  else fail "tiny_llama.py adapter ($name)"; fi
done
for mode in one-alpha no-permute; do
  case $mode in one-alpha) md=1e-2 ;; no-permute) md=1e-3 ;; esac
  if tl adapter "$w/peft" "$w/$mode.gguf" --base "$w/base.gguf" --mode "$mode" >/dev/null; then
    job "$mode" base.gguf "$mode.gguf"
    checks+=("$mode|base + $mode adapter vs merged|--min-diff $md")
  else fail "tiny_llama.py adapter --mode $mode"; fi
done
if [ $thorough -eq 1 ]; then
  pairs=$(tl dump "$w/exact.gguf" | sed -n 's/^  \(.*\)\.lora_a: .*/\1/p')
else
  pairs="token_embd.weight output.weight blk.0.attn_q.weight blk.1.attn_k.weight blk.1.attn_v.weight
         blk.0.attn_output.weight blk.1.ffn_gate.weight blk.0.ffn_up.weight blk.0.ffn_down.weight"
fi
for p in $pairs; do
  rx="^${p//./\\.}\$"
  if tl adapter "$w/peft" "$w/err-$p.gguf" --base "$w/base.gguf" --scale-error "$rx:1.01" >/dev/null; then
    job "err-$p" base.gguf "err-$p.gguf"
    checks+=("err-$p|scale of $p x1.01|--min-diff 1e-3")
  else fail "tiny_llama.py adapter --scale-error $rx:1.01"; fi
done
if [ -n "$lowrank" ]; then   # our exporter
  if "$lowrank" export "$w/peft" --gguf "$w/lowrank.gguf" --arch llama --check "$w/base.gguf" >"$w/export.txt"; then
    types=$(tl dump "$w/lowrank.gguf" | sed -n 's/^  .*\.lora_[ab]: \([A-Z0-9]*\) .*/\1/p' | sort -u | tr '\n' ' ')
    case $types in *BF16*) tol=5e-2 ;; *F16*) tol=1e-2 ;; *) tol=$TOL ;; esac
    job lowrank base.gguf lowrank.gguf
    checks+=("lowrank|base + \`lowrank export\` adapter (${types% }) vs merged|--tol $tol")
  else fail "$lowrank export $w/peft --gguf $w/lowrank.gguf --arch llama --check $w/base.gguf"; fi
  # and `lowrank merge` on the Hugging Face form of the base, converted back to GGUF
  if tl hf "$w/base.gguf" "$w/base.safetensors" >/dev/null &&
     "$lowrank" merge "$w/base.safetensors" "$w/peft" --out "$w/lowrank-merged.safetensors" >/dev/null &&
     tl from-hf "$w/lowrank-merged.safetensors" "$w/base.gguf" "$w/lowrank-merged.gguf" >/dev/null; then
    job lowrank-merged lowrank-merged.gguf
    checks+=("lowrank-merged|\`lowrank merge\` (converted to GGUF) vs merged|--tol $TOL")
  else fail "$lowrank merge $w/base.safetensors $w/peft, converted to GGUF"; fi
fi

# --- llama.cpp ------------------------------------------------------------------
LLAMA_NODE_DIR=$nodedir node "$here/logits.mjs" --jobs "$w/jobs" --tokens "$tokens" --threads 1 ||
  echo "llama_check: logits.mjs reported failures (the runs concerned fail below)"
[ -s "$w/merged.json" ] || { echo "llama_check: no llama.cpp output for the merged model"; exit 1; }

# --- the comparisons --------------------------------------------------------------
# the reference itself: llama.cpp on the merged model = PEFT's forward pass (numpy, float64,
# Hugging Face's q/k order and rope), and llama.cpp on the base = numpy on the base
for v in "base:numpy-base:base:" "merged:numpy-peft:base + PEFT:--peft $w/peft"; do
  IFS=: read -r name np what extra <<<"$v"
  # shellcheck disable=SC2086
  if tl forward "$w/base.gguf" $extra --tokens "$tokens" --out "$w/$np.json" && [ -s "$w/$name.json" ] &&
     tl compare "$w/$np.json" "$w/$name.json" --tol $TOL \
       --label "llama.cpp on $name vs numpy's forward pass ($what)"; then
    pass=$((pass + 1))
  else fail "llama.cpp on $name vs numpy"; fi
done
for c in "${checks[@]}"; do
  IFS='|' read -r name label opts <<<"$c"
  if [ ! -s "$w/$name.json" ]; then fail "$label (no llama.cpp output)"; continue; fi
  # shellcheck disable=SC2086
  if tl compare "$w/merged.json" "$w/$name.json" --label "$label" $opts; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done

echo "llama_check: $pass passed, $fail failed"
[ $fail -eq 0 ]
