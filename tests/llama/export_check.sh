#!/usr/bin/env bash
# export_check.sh LOWRANK — `lowrank export` and `lowrank inspect FILE.gguf` end to end,
# without llama.cpp (llama_check.sh runs llama.cpp on the result):
#   - the file as @huggingface/gguf (the Hub's parser, not ours) reads it: GGUF v3, the
#     four metadata keys with their types (general.architecture, general.type "adapter",
#     adapter.type "lora", adapter.lora.alpha as f32), 2 tensors per module of the tiny
#     Llama adapter with llama.cpp's names, GGUF-order shapes ([in, r] and [r, out]; the
#     embedding's pair flipped) and F32/F16/BF16 types, offsets aligned to 32;
#   - `inspect` of the adapter: each pair's rank and the scale llama.cpp applies, which with
#     the folds of `export --json` gives PEFT's scale back for every module;
#   - every refusal, with its exit status and message, and no file left behind: no --gguf,
#     a bad --arch / --dtype / --kv-heads, --arch against the base's, a base of other shapes
#     (the tensor and both shapes named), a module the base lacks, llama without head counts,
#     a module llama.cpp has no tensor for (and --skip-unsupported), modules_to_save, an
#     output that is an input, an unreadable base.
# Exit 0 pass, 1 fail, 77 skip (no python3 numpy / node; setup_llama.sh installs them).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
lowrank=${1:?usage: export_check.sh LOWRANK}
nodedir=${LLAMA_NODE_DIR:-$root/build/llama-node}
log=$(mktemp)
"$root/scripts/setup_llama.sh" "$nodedir" >/dev/null 2>"$log"
rc=$?
if [ $rc -eq 77 ]; then echo "export_check: skipped: $(tail -n 1 "$log")"; rm -f "$log"; exit 77; fi
[ $rc -eq 0 ] || { cat "$log"; echo "export_check: setup_llama.sh failed"; rm -f "$log"; exit 1; }
rm -f "$log"
PY=/usr/bin/python3
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
pass=0 failed=0
ok() { pass=$((pass + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
tl() { "$PY" "$here/tiny_llama.py" "$@"; }

# runs lowrank with the rest; checks the exit status ($1) and that stderr has $2
expect() {
  local want=$1 text=$2; shift 2
  "$lowrank" "$@" >"$w/out.txt" 2>"$w/err.txt"
  local got=$?
  if [ "$got" -ne "$want" ]; then fail "lowrank $*: exit $got, want $want: $(cat "$w/err.txt")"; return; fi
  if [ -n "$text" ] && ! grep -qF -- "$text" "$w/err.txt"; then
    fail "lowrank $*: stderr lacks \"$text\": $(cat "$w/err.txt")"; return
  fi
  ok
}
nofile() { if [ -e "$1" ]; then fail "$1 was left behind"; else ok; fi; }

tl base "$w/base.gguf" >/dev/null || { echo "export_check: tiny_llama.py base failed"; exit 1; }
tl base "$w/wide.gguf" --embd 96 --heads 6 --kv-heads 3 >/dev/null || exit 1
tl peft "$w/peft" --base "$w/base.gguf" >/dev/null || { echo "export_check: tiny_llama.py peft failed"; exit 1; }

# --- a file three readers agree on ----------------------------------------------------
for dt in F32 F16 BF16; do
  o="$w/ad-$dt.gguf"
  expect 0 "" export "$w/peft" --gguf "$o" --check "$w/base.gguf" --dtype "$dt" --json
  cp "$w/out.txt" "$w/export-$dt.json"
  node "$here/gguf_list.mjs" "$nodedir" "$o" >"$w/hf-$dt.json" 2>"$w/err.txt" ||
    { fail "@huggingface/gguf cannot parse $o: $(cat "$w/err.txt")"; continue; }
  "$lowrank" inspect "$o" --json >"$w/inspect-$dt.json" 2>"$w/err.txt" ||
    { fail "lowrank inspect $o: $(cat "$w/err.txt")"; continue; }
  if "$PY" - "$w/hf-$dt.json" "$w/export-$dt.json" "$w/inspect-$dt.json" "$w/peft" "$dt" "$here" <<'PY'
import json, math, sys
sys.path.insert(0, sys.argv[6])
import tiny_llama as t
hf, ex, ins = (json.load(open(p)) for p in sys.argv[1:4])
dt = sys.argv[5]
ggml = {"F32": 0, "F16": 1, "BF16": 30}[dt]
_, pairs = t.read_peft(sys.argv[4])
bad = []
m = hf["metadata"]
want = {"general.architecture": (8, "llama"), "general.type": (8, "adapter"), "adapter.type": (8, "lora")}
for k, (ty, v) in want.items():
    if k not in m or m[k]["type"] != ty or m[k]["value"] != v: bad.append(f"metadata {k}: {m.get(k)}")
if m.get("version", {}).get("value") != 3: bad.append(f"version {m.get('version')}")
a = m.get("adapter.lora.alpha", {})
if a.get("type") != 6 or abs(a.get("value", 0) - ex["alpha"]) > 1e-6 * ex["alpha"]:
    bad.append(f"adapter.lora.alpha {a} vs the report's {ex['alpha']}")
tens = {x["name"]: x for x in hf["tensors"]}
if len(tens) != 2 * len(pairs): bad.append(f"{len(tens)} tensors for {len(pairs)} modules")
fold = {l["tensor"]: l["fold"] for l in ex["layers"]}
insp = {x["tensor"]: x for x in ins["tensors"]}
for p in pairs:
    ta, tb = tens.get(p.gguf + ".lora_a"), tens.get(p.gguf + ".lora_b")
    if not ta or not tb: bad.append(f"{p.gguf}: a half is missing"); continue
    out, inp = p.B.shape[0], p.A.shape[1]
    wa = [p.r, inp] if p.embedding else [inp, p.r]     # ne[0] first; the embedding's lora_a is A^T
    if ta["shape"] != wa or tb["shape"] != [p.r, out]: bad.append(f"{p.gguf}: shapes {ta['shape']} {tb['shape']}")
    if ta["dtype"] != ggml or tb["dtype"] != ggml: bad.append(f"{p.gguf}: ggml types {ta['dtype']} {tb['dtype']}")
    for x in (ta, tb):
        if x["offset"] % 32: bad.append(f"{x['name']}: offset {x['offset']} not aligned")
    i = insp.get(p.gguf)
    if not i or i["rank"] != p.r: bad.append(f"inspect {p.gguf}: {i}")
    elif abs(i["scale"] * fold[p.gguf] - p.scale) > 1e-5 * p.scale:
        bad.append(f"{p.gguf}: llama.cpp's scale {i['scale']} x fold {fold[p.gguf]} is not PEFT's {p.scale}")
if hf["data_offset"] % 32: bad.append(f"data offset {hf['data_offset']}")
for b in bad: print(f"FAIL ({dt}): {b}")
sys.exit(1 if bad else 0)
PY
  then ok; else fail "$dt: the file as @huggingface/gguf and lowrank inspect read it"; fi
done

# --- refusals -------------------------------------------------------------------------
o="$w/x.gguf"
expect 2 "missing --gguf" export "$w/peft"
expect 2 "--arch: expected llama or qwen2, got 'gpt2'" export "$w/peft" --gguf "$o" --arch gpt2
expect 2 "--dtype: expected F32, F16 or BF16" export "$w/peft" --gguf "$o" --dtype I8
expect 2 "--kv-heads needs --heads" export "$w/peft" --gguf "$o" --kv-heads 2
expect 2 "" export "$w/peft" --gguf "$w/base.gguf" --check "$w/base.gguf"
expect 1 "is a llama model, and --arch says qwen2" export "$w/peft" --gguf "$o" --check "$w/base.gguf" --arch qwen2
expect 1 "head count is not known" export "$w/peft" --gguf "$o" --arch llama
expect 1 "output.weight is [96, 320] in $w/wide.gguf (GGUF order, ne[0] first), the adapter's module lm_head needs [64, 320]" export "$w/peft" --gguf "$o" --check "$w/wide.gguf"
expect 1 "$w/nothere.gguf" export "$w/peft" --gguf "$o" --check "$w/nothere.gguf"
nofile "$o"
# a module the base lacks: the tiny base has 2 layers, an adapter of 3 targets blk.2
tl base "$w/one.gguf" --layers 1 >/dev/null || exit 1
expect 1 "targets blk.1.ffn_down.weight, which $w/one.gguf does not have" \
  export "$w/peft" --gguf "$o" --check "$w/one.gguf"
nofile "$o"
# a module llama.cpp has no tensor for; passed over with --skip-unsupported
"$PY" - "$w/peft" "$w/odd" "$here" <<'PY' || exit 1
import json, os, shutil, sys
sys.path.insert(0, sys.argv[3])
import tiny_llama as t
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
T = t.read_safetensors(os.path.join(src, "adapter_model.safetensors"))
for k in list(T):
    if ".layers.1.mlp.up_proj." in k: T[k.replace("mlp.up_proj", "mlp.router")] = T.pop(k)
t.write_safetensors(os.path.join(dst, "adapter_model.safetensors"), T)
c = json.load(open(os.path.join(src, "adapter_config.json")))
c["target_modules"].append("router")
json.dump(c, open(os.path.join(dst, "adapter_config.json"), "w"))
PY
expect 1 "module model.layers.1.mlp.router has no tensor in llama.cpp's llama model" \
  export "$w/odd" --gguf "$o" --check "$w/base.gguf"
nofile "$o"
expect 0 "" export "$w/odd" --gguf "$o" --check "$w/base.gguf" --skip-unsupported --json
if "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if r["skipped"] == 1 and any(l["skipped"] and l["module"].endswith("router") for l in r["layers"]) else 1)' "$w/out.txt"; then ok
else fail "--skip-unsupported: the report does not name the skipped module"; fi
rm -f "$o"
# modules_to_save: a full copy of a module (PEFT saves it as base_model.model.<module>.weight),
# which a GGUF LoRA file cannot carry: named, or left out with --skip-unsupported
"$PY" - "$w/peft" "$w/mts" "$here" <<'PY' || exit 1
import json, os, sys
import numpy as np
sys.path.insert(0, sys.argv[3])
import tiny_llama as t
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
T = t.read_safetensors(os.path.join(src, "adapter_model.safetensors"))
T["base_model.model.model.norm.weight"] = np.ones(64)
t.write_safetensors(os.path.join(dst, "adapter_model.safetensors"), T)
c = json.load(open(os.path.join(src, "adapter_config.json")))
c["modules_to_save"] = ["norm"]
json.dump(c, open(os.path.join(dst, "adapter_config.json"), "w"))
PY
expect 1 "modules_to_save holds full tensors (model.norm.weight)" export "$w/mts" --gguf "$o" --check "$w/base.gguf"
nofile "$o"
expect 0 "" export "$w/mts" --gguf "$o" --check "$w/base.gguf" --skip-unsupported --json
if "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if r["skipped_modules_to_save"] == ["model.norm.weight"] else 1)' "$w/out.txt"; then ok
else fail "--skip-unsupported: the report does not name the modules_to_save tensor"; fi
rm -f "$o"
tl hf "$w/base.gguf" "$w/base.safetensors" >/dev/null || exit 1
expect 1 "modules_to_save is set (norm)" merge "$w/base.safetensors" "$w/mts" --out "$w/m.safetensors"
nofile "$w/m.safetensors"
# inspect: a base model's tensors, and a GGUF that is not one
expect 0 "" inspect "$w/base.gguf"
grep -q "blk.1.ffn_down.weight" "$w/out.txt" && ok || fail "inspect base.gguf does not list its tensors"
printf 'GGUF\003\000\000\000' >"$w/bad.gguf"
expect 1 "$w/bad.gguf" inspect "$w/bad.gguf"
expect 2 "is a GGUF file" inspect "$w/base.gguf" --spectrum "$w/s.svg"

echo "export_check: $pass passed, $failed failed"
[ "$failed" -eq 0 ]
