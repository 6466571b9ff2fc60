#!/usr/bin/env bash
# real_check.sh LOWRANK CKDIR [MODEL] — the path from a full fine-tune to llama.cpp at a real
# model's shapes, measured (not part of `meson test`: it needs the reference scripts and a
# few GB; docs/tool.md quotes its figures):
#   1. ../shared/reference/llm_ckpt.py CKDIR MODEL (default smollm2-135m): a base and a
#      fine-tuned checkpoint with the model's names, shapes and BF16 dtype;
#   2. lowrank extract --energy 0.9: a mixed-rank adapter (rank_pattern, alpha_pattern);
#   3. the base as GGUF (tiny_llama.py from-hf, q/k rows permuted as convert_hf_to_gguf.py
#      does; no output.weight for tied embeddings), and the reference: every delta merged in
#      float64, stored F32 (tiny_llama.py merge);
#   4. lowrank export --check base.gguf, and the same adapter with one alpha as
#      convert_lora_to_gguf.py writes it;
#   5. llama.cpp (node-llama-cpp 3.21.1) log-probabilities over the whole vocabulary at 24
#      positions: base + our adapter, base + the one-alpha adapter and the base alone, each
#      against the merged reference.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
lowrank=${1:?usage: real_check.sh LOWRANK CKDIR [MODEL]}
ck=${2:?usage: real_check.sh LOWRANK CKDIR [MODEL]}
model=${3:-smollm2-135m}
ref=${LR_REFERENCE_DIR:-$root/../shared/reference}
PY=/usr/bin/python3
nodedir=$("$root/scripts/setup_llama.sh" "${LLAMA_NODE_DIR:-$root/build/llama-node}")
tl() { "$PY" "$here/tiny_llama.py" "$@"; }
mkdir -p "$ck"
[ -d "$ck/base" ] || "$PY" "$ref/llm_ckpt.py" "$ck" "$model"
cfg() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$ck/base/config.json" "$1"; }
t0=$(date +%s.%N)
"$lowrank" extract "$ck/base" "$ck/tuned" --energy 0.9 --out "$ck/ad" >/dev/null
t1=$(date +%s.%N)
tl base "$ck/like.gguf" --embd "$(cfg hidden_size)" --layers "$(cfg num_hidden_layers)" \
  --heads "$(cfg num_attention_heads)" --kv-heads "$(cfg num_key_value_heads)" \
  --ff "$(cfg intermediate_size)" --vocab "$(cfg vocab_size)" --ctx 256 >/dev/null
src=$ck/base/model.safetensors
[ -f "$src" ] || { echo "real_check: $src: a sharded base is not converted here" >&2; exit 1; }
tl from-hf "$src" "$ck/like.gguf" "$ck/base.gguf" >/dev/null
tl merge "$ck/base.gguf" "$ck/ad" "$ck/merged.gguf" >/dev/null
t2=$(date +%s.%N)
"$lowrank" export "$ck/ad" --gguf "$ck/ad.gguf" --check "$ck/base.gguf" | tail -n 2
t3=$(date +%s.%N)
tl adapter "$ck/ad" "$ck/one-alpha.gguf" --base "$ck/base.gguf" --mode one-alpha >/dev/null
tokens=$("$PY" -c "import random; random.seed(3); print(','.join(str(random.randrange($(cfg vocab_size))) for _ in range(24)))")
printf '%s\n' "$ck/m.json $ck/merged.gguf" "$ck/a.json $ck/base.gguf $ck/ad.gguf" \
  "$ck/o.json $ck/base.gguf $ck/one-alpha.gguf" "$ck/b.json $ck/base.gguf" >"$ck/jobs"
node "$here/logits.mjs" --jobs "$ck/jobs" --tokens "$tokens" --node-dir "$nodedir" 2>/dev/null
tl compare "$ck/m.json" "$ck/a.json" --label "base + lowrank export vs merged (float64)" --tol 1e-4 || true
tl compare "$ck/m.json" "$ck/o.json" --label "base + one alpha (convert_lora_to_gguf) vs merged" --tol 1e-4 || true
tl compare "$ck/m.json" "$ck/b.json" --label "base alone vs merged (the adapter's effect)" --tol 1e-4 || true
printf 'extract %.1f s, export %.2f s (%s bytes)\n' "$(echo "$t1 - $t0" | bc)" "$(echo "$t3 - $t2" | bc)" \
  "$(stat -c %s "$ck/ad.gguf")"
