#!/bin/sh
# mnist_demo_check.sh — lr-mnist run as a program (suite 'demo').
#
#   mnist_demo_check.sh cli LR_MNIST   every bad option or file: the exit status (2 usage,
#                                      1 run-time), a message naming the problem, and no
#                                      output file left behind; --help explains every option.
#   mnist_demo_check.sh run LR_MNIST JSON_CHECK
#                                      a short real run (--limit-train, --limit-test, few steps) with every
#                                      output, then --load of the checkpoint it saved, alone,
#                                      with --adapter of the adapter it saved, and factored;
#                                      needs MNIST in $LR_MNIST_DIR (exit 77 = skipped otherwise).
set -u
mode=$1
prog=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")   # absolute: one check changes directory
json_check=${3:-}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lr-mnist-check.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
fails=0

fail() { printf 'FAIL: %s\n' "$*"; fails=$((fails + 1)); }

# expect STATUS NEEDLE ARGS...: runs prog ARGS, checks the status and that stderr has NEEDLE
expect() {
  want=$1; needle=$2; shift 2
  "$prog" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  got=$?
  if [ "$got" -ne "$want" ]; then
    fail "lr-mnist $*: exit $got, want $want; stderr: $(cat "$tmp/err")"
  elif ! grep -qF -- "$needle" "$tmp/err"; then
    fail "lr-mnist $*: stderr lacks '$needle': $(cat "$tmp/err")"
  fi
}

if [ "$mode" = cli ]; then
  mkdir "$tmp/adir" "$tmp/empty"
  : >"$tmp/afile"
  printf 'not a checkpoint' >"$tmp/garbage.safetensors"

  "$prog" --help >"$tmp/help" 2>&1 || fail "--help: non-zero exit"
  for o in --data --load --save --adapter-out --adapter --plot --seed --epochs --batch --lr --layers \
           --threads --limit-train --limit-test --rank --alpha --rslora --init --lora-layers --steps \
           --ft-lr --digit --json --quiet --keep-subnormals LR_ISA --help --preserve --preserve-energy \
           --replay-fraction --distill-weight --retained-samples; do
    grep -qF -- "$o" "$tmp/help" || fail "--help does not explain $o"
  done

  expect 2 "unknown option '--bogus'" --bogus
  expect 2 "unexpected argument 'extra'" extra
  expect 2 "--rank: expected a positive integer, got '0'" --rank 0
  expect 2 "--rank: expected a positive integer, got 'abc'" --rank abc
  expect 2 "--rank: needs a value" --rank
  expect 2 "--digit: expected a digit 0-9 or 'worst', got '10'" --digit 10
  expect 2 "--digit" --digit worstest
  expect 2 "first size must be 784" --layers 783,10
  expect 2 "last size must be 10" --layers 784,1000,9
  expect 2 "--layers: expected a comma-separated list of integers" --layers 784,,10
  expect 2 "--layers: need at least" --layers 784
  expect 2 "--lr: expected a number in (0, 1e+06], got '-1'" --lr -1
  expect 2 "--lr: expected a finite number, got 'nan'" --lr nan
  expect 2 "--ft-lr" --ft-lr 0
  expect 2 "--alpha" --alpha inf
  expect 2 "--init: lora init: unknown kind \"svd\" (want gaussian or pissa)" --init svd
  expect 2 "--lora-layers: lora targets: \"4\" is not a layer" --lora-layers 4
  expect 2 "--lora-layers: lora targets: \"linear0\" is not a layer" --lora-layers linear0
  expect 2 "--lora-layers: lora targets: \"2\" is not a layer" --layers 784,10 --lora-layers 2
  expect 2 "--rank 11: layer linear3 is 10 x 2000" --rank 11 --lora-layers 3
  expect 2 "--seed" --seed -1
  expect 2 "--seed: at most 9223372036854775807, got '9223372036854775808'" --seed 9223372036854775808
  expect 2 "--epochs" --epochs 0
  expect 2 "--batch" --batch 0
  expect 2 "--steps" --steps x
  expect 2 "--threads" --threads 0
  expect 2 "--limit-train" --limit-train 0
  expect 2 "--limit-test" --limit-test 0
  expect 2 "--preserve: expected none, nullspace, replay, distill" --preserve forget
  expect 2 "--preserve: expected none, nullspace, replay, distill" --preserve nullspace+
  expect 2 "--preserve-energy" --preserve-energy 0
  expect 2 "--preserve-energy" --preserve-energy 1.5
  expect 2 "--replay-fraction" --replay-fraction 0.95
  expect 2 "--distill-weight" --distill-weight -1
  expect 2 "--retained-samples" --retained-samples 0
  expect 2 "--init pissa and --preserve nullspace conflict" --init pissa --preserve nullspace+replay
  expect 2 "--adapter and --preserve conflict" --load "$tmp/x.safetensors" --adapter "$tmp/adir" --preserve replay
  expect 2 "--json takes no value" --json=yes
  expect 2 "--keep-subnormals takes no value" --keep-subnormals=1
  LR_ISA=sse9 "$prog" --help >/dev/null 2>&1 || fail "LR_ISA=sse9 --help: --help must still work"
  LR_ISA=sse9 "$prog" --steps 1 >"$tmp/out" 2>"$tmp/err" </dev/null
  [ $? -eq 2 ] && grep -qF 'LR_ISA="sse9": expected generic, avx2 or avx512' "$tmp/err" ||
    fail "LR_ISA=sse9: want exit 2 naming the value; stderr: $(cat "$tmp/err")"
  expect 2 "--layers and --load conflict" --layers 784,10 --load "$tmp/x.safetensors"
  # --adapter evaluates a saved adapter: it needs the base, and trains nothing
  expect 2 "--adapter needs --load CKPT" --adapter "$tmp/adir"
  expect 2 "--adapter: empty directory name" --adapter ""
  for o in "--rank 2" "--alpha 2" --rslora "--init pissa" "--lora-layers 1" "--steps 5" \
           "--ft-lr 0.01" "--digit 3" "--adapter-out $tmp/ao"; do
    # shellcheck disable=SC2086
    expect 2 "--adapter and ${o%% *} conflict" --load "$tmp/x.st" --adapter "$tmp/adir" $o
    # shellcheck disable=SC2086
    expect 2 "--adapter and ${o%% *} conflict" $o --adapter "$tmp/adir" --load "$tmp/x.st"
  done
  expect 2 "directory '$tmp/no/such' does not exist" --save "$tmp/no/such/m.safetensors"
  expect 2 "'$tmp/adir' is a directory" --save "$tmp/adir"
  expect 2 "--plot: cannot write '$tmp/none/p.svg'" --plot "$tmp/none/p.svg"
  expect 2 "'$tmp/afile' exists and is not a directory" --adapter-out "$tmp/afile"
  expect 2 "are the same file" --load "$tmp/m.st" --save "$tmp/m.st"
  # the same file by another name (a link) is refused too: device and inode, not strings
  : >"$tmp/real.st"
  ln -s "$tmp/real.st" "$tmp/alias.st"
  expect 2 "are the same file" --load "$tmp/alias.st" --save "$tmp/real.st"
  expect 2 "are the same file" --load "$tmp/real.st" --save "$tmp/./real.st"

  # run-time failures: data and checkpoint files, named in the message; no output left
  expect 1 "--data: '$tmp/nope' is not a directory" --data "$tmp/nope"
  expect 1 "$tmp/empty" --data "$tmp/empty" --save "$tmp/out.safetensors"
  [ -e "$tmp/out.safetensors" ] && fail "a failed run left $tmp/out.safetensors"
  if [ -n "${LR_MNIST_DIR:-}" ] && [ -r "$LR_MNIST_DIR/t10k-labels-idx1-ubyte" ]; then
    expect 1 "$tmp/missing.safetensors" --data "$LR_MNIST_DIR" --load "$tmp/missing.safetensors"
    expect 1 "$tmp/garbage.safetensors" --data "$LR_MNIST_DIR" \
      --load "$tmp/garbage.safetensors" --plot "$tmp/p.svg"
    [ -e "$tmp/p.svg" ] && fail "a failed run left $tmp/p.svg"
  fi
  # the default data directory is resolved from the current directory; say how to get it
  (cd "$tmp/empty" && "$prog" --quiet >"$tmp/out" 2>"$tmp/err"); st=$?
  [ "$st" -eq 1 ] || fail "no data/mnist: exit $st, want 1"
  grep -qF "scripts/setup.sh" "$tmp/err" || fail "no data/mnist: no hint to run scripts/setup.sh"
  [ -s "$tmp/out" ] && [ "$(grep -c . "$tmp/out")" -gt 3 ] && fail "no data/mnist: printed a report"

elif [ "$mode" = run ]; then
  d=${LR_MNIST_DIR:-}
  [ -n "$d" ] && [ -r "$d/train-images-idx3-ubyte" ] || { echo "no MNIST in LR_MNIST_DIR: skipped"; exit 77; }
  common="--data $d --limit-train 2000 --limit-test 2000 --steps 10 --quiet --threads 1"
  # shellcheck disable=SC2086
  "$prog" $common --json --save "$tmp/m.safetensors" --adapter-out "$tmp/ad" \
    --plot "$tmp/p.svg" >"$tmp/run1.json" 2>"$tmp/err" || fail "run: exit $?: $(cat "$tmp/err")"
  for f in m.safetensors ad/adapter_model.safetensors ad/adapter_config.json p.svg; do
    [ -s "$tmp/$f" ] || fail "run: $f not written"
  done
  grep -q '"ok": true' "$tmp/run1.json" || fail "run: JSON lacks \"ok\": true"
  grep -q '"disabled_equals_pretrained": true' "$tmp/run1.json" || fail "run: disabled != pretrained"
  grep -q '"frozen_unchanged": true' "$tmp/run1.json" || fail "run: frozen weights changed"
  grep -q '"seed": 0' "$tmp/run1.json" || fail "run: JSON lacks the seed"
  grep -q '"steps_per_s_last_tenth": [1-9]' "$tmp/run1.json" || fail "run: JSON lacks the last tenth's step rate"
  grep -q '"subnormals": "flushed"' "$tmp/run1.json" || fail "run: JSON lacks \"subnormals\": \"flushed\""
  # strict IEEE mode and the generic kernels pretrain to the same per-digit errors here
  for variant in --keep-subnormals; do
    # shellcheck disable=SC2086
    "$prog" $common --json $variant >"$tmp/run3.json" 2>"$tmp/err" || fail "run $variant: exit $?: $(cat "$tmp/err")"
    a=$(tr -d ' \n' <"$tmp/run1.json" | sed 's/.*"pretrained":{\([^}]*\)}.*/\1/')
    b=$(tr -d ' \n' <"$tmp/run3.json" | sed 's/.*"pretrained":{\([^}]*\)}.*/\1/')
    [ -n "$a" ] && [ "$a" = "$b" ] || fail "run $variant: pretrained results differ: $a vs $b"
  done
  ls -a "$tmp" "$tmp/ad" | grep -q '\.tmp' && fail "run: temp files left"
  # --preserve all: every method from the same model; 'none' is the plain run above; the
  # nullspace method leaves the adapter's A (almost) no leakage on the retained inputs
  # shellcheck disable=SC2086
  "$prog" $common --json --preserve all --retained-samples 500 --plot "$tmp/pall.svg" >"$tmp/pall.json" \
    2>"$tmp/err" || fail "--preserve all: exit $?: $(cat "$tmp/err")"
  grep -q "errors on the other digits" "$tmp/pall.svg" || fail "--preserve all --plot: no chart"
  python3 - "$tmp/pall.json" "$tmp/run1.json" <<'PY' || fail "--preserve all: comparison table"
import json, sys
a, one = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
rows = {r["method"]: r for r in a["preserve_comparison"]}
assert list(rows) == ["none", "nullspace", "replay", "distill", "nullspace+replay", "replay+distill",
                      "nullspace+distill"], list(rows)
assert rows["none"]["wrong"] == one["lora_enabled"]["wrong"], (rows["none"]["wrong"], one["lora_enabled"]["wrong"])
assert a["ok"] is True
for r in rows.values():
    assert r["target_before"] == one["pretrained"]["wrong"][9]
    assert (r["extra_bytes"] > 0) == (r["method"] != "none"), r
PY
  # shellcheck disable=SC2086
  "$prog" $common --json --preserve nullspace --retained-samples 500 >"$tmp/pns.json" 2>"$tmp/err" ||
    fail "--preserve nullspace: exit $?: $(cat "$tmp/err")"
  python3 - "$tmp/pns.json" <<'PY' || fail "--preserve nullspace: k and leakage"
import json, sys
p = json.load(open(sys.argv[1]))["finetune"]["preserve"]
assert p["method"] == "nullspace" and len(p["nullspace"]) == 3, p
for l in p["nullspace"]:
    assert 1 <= l["k"] <= l["inputs"] and l["energy_kept"] >= 0.9, l
    assert l["leakage_after"] < 0.5 * l["leakage_before"], l
PY
  # the checkpoint gives back the same pretrained model: same per-digit errors
  # shellcheck disable=SC2086
  "$prog" $common --json --load "$tmp/m.safetensors" >"$tmp/run2.json" 2>"$tmp/err" ||
    fail "--load: exit $?: $(cat "$tmp/err")"
  a=$(tr -d ' \n' <"$tmp/run1.json" | sed 's/.*"pretrained":{\([^}]*\)}.*/\1/')
  b=$(tr -d ' \n' <"$tmp/run2.json" | sed 's/.*"pretrained":{\([^}]*\)}.*/\1/')
  [ -n "$a" ] && [ "$a" = "$b" ] || fail "--load: pretrained results differ: $a vs $b"
  # --adapter: the saved adapter on the saved base, no training, gives exactly the per-digit
  # errors the training run had after fine-tuning (on) and before (off)
  ev="--data $d --limit-test 2000 --quiet --threads 1"
  # shellcheck disable=SC2086
  "$prog" $ev --json --load "$tmp/m.safetensors" --adapter "$tmp/ad" --plot "$tmp/pa.svg" \
    >"$tmp/run4.json" 2>"$tmp/err" || fail "--adapter: exit $?: $(cat "$tmp/err")"
  "$json_check" adapter lora_enabled lora_disabled change ok=true disabled_equals_pretrained=true \
    frozen_unchanged=true <"$tmp/run4.json" || fail "--adapter: JSON keys"
  for k in lora_enabled lora_disabled; do
    a=$(tr -d ' \n' <"$tmp/run1.json" | sed "s/.*\"$k\":{\([^}]*\)}.*/\1/")
    b=$(tr -d ' \n' <"$tmp/run4.json" | sed "s/.*\"$k\":{\([^}]*\)}.*/\1/")
    [ -n "$a" ] && [ "$a" = "$b" ] || fail "--adapter: $k differs from the training run: $a vs $b"
  done
  grep -q '"rank": 1' "$tmp/run4.json" || fail "--adapter: JSON lacks the adapter's rank"
  grep -q '<title>digit 9, adapter: ' "$tmp/pa.svg" || fail "--adapter --plot: no 'adapter' series"
  grep -q '<title>digit 9, base: ' "$tmp/pa.svg" || fail "--adapter --plot: no 'base' series"
  # shellcheck disable=SC2086
  "$prog" $ev --load "$tmp/m.safetensors" --adapter "$tmp/ad" >"$tmp/text" 2>"$tmp/err" ||
    fail "--adapter text: exit $?"
  for needle in "Adapter: loaded from $tmp/ad" "adapter off  adapter on" \
                "adapter disabled equals the loaded model: yes" "bit-identical"; do
    grep -qF -- "$needle" "$tmp/text" || fail "--adapter text: no '$needle' in the report"
  done
  # load errors are run-time failures (1) naming the file
  # shellcheck disable=SC2086
  expect 1 "$tmp/noad/adapter_config.json" $ev --load "$tmp/m.safetensors" --adapter "$tmp/noad"
  mkdir "$tmp/bad" && cp "$tmp/ad/adapter_model.safetensors" "$tmp/bad/" &&
    sed 's/"r": 1/"r": 2/' "$tmp/ad/adapter_config.json" >"$tmp/bad/adapter_config.json"
  # shellcheck disable=SC2086
  expect 1 "lora_A.weight: expected shape (2, 784), got (1, 784)" $ev --load "$tmp/m.safetensors" \
    --adapter "$tmp/bad"
  # a factored checkpoint (linear3 as B = I (10, 10) BF16 times A = W (10, 2000), as `lowrank
  # compress` lays it out) loads as W exactly: the same per-digit errors
  if command -v python3 >/dev/null; then
    python3 - "$tmp/m.safetensors" "$tmp/f.safetensors" <<'PY' || fail "writing the factored checkpoint"
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head, data = json.loads(raw[8:8 + n]), raw[8 + n:]
meta = head.pop("__metadata__", None)
blobs = {k: data[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in head.items()}
w = head.pop("linear3.weight")
out = w["shape"][0]
head["linear3.A.weight"] = {"dtype": "F32", "shape": w["shape"]}
blobs["linear3.A.weight"] = blobs.pop("linear3.weight")
head["linear3.B.weight"] = {"dtype": "BF16", "shape": [out, out]}
blobs["linear3.B.weight"] = b"".join(struct.pack("<H", 0x3F80 if i == j else 0)
                                     for i in range(out) for j in range(out))
off, body = 0, b""
for k in sorted(head):
    head[k]["data_offsets"] = [off, off + len(blobs[k])]
    off += len(blobs[k])
    body += blobs[k]
if meta is not None:
    head["__metadata__"] = meta
h = json.dumps(head).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(h)) + h + body)
PY
    # shellcheck disable=SC2086
    "$prog" $ev --json --load "$tmp/f.safetensors" --adapter "$tmp/ad" >"$tmp/run5.json" 2>"$tmp/err" ||
      fail "--load factored: exit $?: $(cat "$tmp/err")"
    for k in pretrained lora_enabled; do
      a=$(tr -d ' \n' <"$tmp/run4.json" | sed "s/.*\"$k\":{\([^}]*\)}.*/\1/")
      b=$(tr -d ' \n' <"$tmp/run5.json" | sed "s/.*\"$k\":{\([^}]*\)}.*/\1/")
      [ -n "$a" ] && [ "$a" = "$b" ] || fail "--load factored: $k differs: $a vs $b"
    done
  fi
  # text mode prints the seed and the checks
  # shellcheck disable=SC2086
  "$prog" $common --load "$tmp/m.safetensors" --digit worst >"$tmp/text" 2>"$tmp/err" ||
    fail "text run: exit $?"
  for needle in "seed 0" "LoRA disabled equals the pretrained model: yes" "bit-identical" \
                "--digit worst: digit" "parameters introduced by LoRA" "<- target"; do
    grep -qF -- "$needle" "$tmp/text" || fail "text run: no '$needle' in the report"
  done
else
  echo "usage: $0 cli|run LR_MNIST" >&2
  exit 2
fi

[ "$fails" -eq 0 ] || { printf '%d check(s) failed\n' "$fails"; exit 1; }
echo "all checks passed"
