#!/usr/bin/env python3
"""tiny_llama.py — GGUF and PEFT files for checking LoRA adapters against llama.cpp.

Python 3 and numpy only (Debian's python3-numpy): GGUF v3 and safetensors are written and
read here by hand with struct, independently of lowrank's C code.

  base OUT.gguf [--seed N] [--embd 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 --vocab 320]
      A tiny Llama-architecture model: every llama.* key llama.cpp reads, an SPM ("llama")
      vocabulary of <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF> and a few pieces,
      all tensors F32 and random. attn_q/attn_k are stored as llama.cpp's convert_hf_to_gguf.py
      stores them: the rows of the Hugging Face q_proj/k_proj permuted for llama.cpp's rope.

  peft OUT_DIR --base BASE.gguf [--seed N]
      A PEFT LoRA adapter directory (adapter_model.safetensors + adapter_config.json) for that
      base, as PEFT saves one for LlamaForCausalLM: mixed ranks and alphas through rank_pattern
      and alpha_pattern, use_rslora = true, targets q/k/v/o_proj, gate/up/down_proj,
      embed_tokens (lora_embedding_A/B) and lm_head. The deltas are a sizeable fraction of the
      weights, so a wrong scale shows.

  merge BASE.gguf PEFT_DIR OUT.gguf
      The reference: BASE with PEFT's delta W += s_i * B_i @ A_i added to each target in float64
      and stored as F32, s_i = alpha_i / r_i (alpha_i / sqrt(r_i) with use_rslora), r_i and
      alpha_i from rank_pattern / alpha_pattern as PEFT's get_pattern_key picks them. q/k deltas
      get the same row permutation as the base's q/k; embed_tokens' delta row for token t is
      s * B @ A[:, t]. Everything else in BASE is copied unchanged.

  adapter PEFT_DIR OUT.gguf --base BASE.gguf [--mode exact|one-alpha|no-permute]
          [--alpha X] [--dtype f32|f16]
      A llama.cpp LoRA adapter GGUF written in Python, for the harness's own self-test (the
      real one comes from `lowrank export --gguf`). llama.cpp scales each pair by
      adapter.lora.alpha / r (r = ne[0] of lora_b; by 1 when alpha is 0). Modes:
        exact       every pair gets PEFT's s_i: B is multiplied by s_i * r_i / X (X = --alpha,
                    default the config's lora_alpha; with X = 0 by s_i);
        one-alpha   what convert_lora_to_gguf.py does: alpha = lora_alpha, B as it is, so
                    llama.cpp uses lora_alpha / r_i: wrong for rsLoRA and for alpha_pattern;
        no-permute  exact scales, but q/k lora_b rows left in Hugging Face order (wrong).
      --scale-error REGEX:FACTOR multiplies the scale of the pairs whose GGUF tensor name
      matches REGEX by FACTOR (a deliberate error, to show the check sees it).

  hf BASE.gguf OUT.safetensors
      The same model as a Hugging Face checkpoint: LlamaForCausalLM tensor names, q_proj /
      k_proj rows back in Hugging Face order (for `lowrank merge`, which works on those).

  from-hf HF.safetensors LIKE.gguf OUT.gguf
      The other way (convert_hf_to_gguf.py's tensor mapping and q/k permutation, F32), with
      LIKE's metadata: e.g. the output of `lowrank merge` as a GGUF llama.cpp runs.

  forward BASE.gguf [--peft PEFT_DIR] --tokens ID,... --out OUT.json
      The same log-probabilities as logits.mjs, computed in numpy (float64) the way Hugging
      Face's LlamaForCausalLM with PEFT's LoRA layers computes them: q/k weights un-permuted
      back to Hugging Face order, rotate-half rope, W x + s B A x per target, embedding rows
      + s B A[:, t]. A check of llama.cpp independent of llama.cpp's own merge/LoRA code.

  compare REF.json OTHER.json [--tol T] [--min-diff D] [--label L]
      Compares two outputs of logits.mjs (log-probabilities of every position): prints the max
      absolute difference of the log-probabilities and the max difference relative to
      max(1, |log p|), and exits 1 if max abs > T (or, with --min-diff, if it is below D:
      a run that must differ).

  dump FILE.gguf
      Lists a GGUF file's metadata and tensor infos.
"""
import argparse
import json
import math
import os
import re
import struct
import sys

import numpy as np

# ---------------------------------------------------------------------------------------
# GGUF v3
# ---------------------------------------------------------------------------------------
GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGNMENT = 32
T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
_SCALAR = {T_U8: "<B", T_I8: "<b", T_U16: "<H", T_I16: "<h", T_U32: "<I", T_I32: "<i",
           T_F32: "<f", T_BOOL: "<?", T_U64: "<Q", T_I64: "<q", T_F64: "<d"}
GGML_F32, GGML_F16, GGML_BF16 = 0, 1, 30
_GGML_NAME = {GGML_F32: "F32", GGML_F16: "F16", GGML_BF16: "BF16"}


class KV:
    """A typed GGUF metadata value: scalar (type, value) or array (T_ARR, (elem_type, list))."""
    __slots__ = ("type", "value")

    def __init__(self, type_, value):
        self.type, self.value = type_, value

    def __repr__(self):
        if self.type == T_ARR:
            et, vals = self.value
            head = ", ".join(repr(v) for v in vals[:6])
            return f"array[{et}, {len(vals)}] [{head}{', ...' if len(vals) > 6 else ''}]"
        return repr(self.value)


def u32(v): return KV(T_U32, int(v))
def f32(v): return KV(T_F32, float(v))
def s(v): return KV(T_STR, str(v))
def arr(et, vals): return KV(T_ARR, (et, list(vals)))


def _pack_str(x):
    b = x.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _pack_val(t, v):
    if t == T_STR:
        return _pack_str(v)
    if t == T_ARR:
        et, vals = v
        out = [struct.pack("<IQ", et, len(vals))]
        if et == T_STR:
            out += [_pack_str(x) for x in vals]
        elif et == T_ARR:
            raise ValueError("nested GGUF arrays are not written here")
        else:
            out.append(struct.pack("<%d%s" % (len(vals), _SCALAR[et][1]), *vals))
        return b"".join(out)
    return struct.pack(_SCALAR[t], v)


def _bf16_bits(a):
    """float32 -> bfloat16 bits, round to nearest even (as ggml's ggml_fp32_to_bf16)."""
    b = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def _tensor_bytes(a, ggml_type):
    if ggml_type == GGML_F32:
        return np.ascontiguousarray(a, dtype="<f4").tobytes()
    if ggml_type == GGML_F16:
        return np.ascontiguousarray(a, dtype="<f2").tobytes()
    if ggml_type == GGML_BF16:
        return _bf16_bits(a).astype("<u2").tobytes()
    raise ValueError(f"ggml type {ggml_type} is not written here")


def write_gguf(path, kvs, tensors):
    """kvs: list of (key, KV); tensors: list of (name, ndarray, ggml_type). A numpy array of
    shape (d_{n-1}, ..., d_0) (row-major) is ggml's ne = [d_0, ..., d_{n-1}]."""
    align = ALIGNMENT
    for k, v in kvs:
        if k == "general.alignment":
            align = int(v.value)
    head = [GGUF_MAGIC, struct.pack("<IQQ", GGUF_VERSION, len(tensors), len(kvs))]
    for k, v in kvs:
        head += [_pack_str(k), struct.pack("<I", v.type), _pack_val(v.type, v.value)]
    blobs, off = [], 0
    for name, a, gt in tensors:
        data = _tensor_bytes(a, gt)
        ne = list(reversed(a.shape))
        head += [_pack_str(name), struct.pack("<I", len(ne)), struct.pack("<%dQ" % len(ne), *ne),
                 struct.pack("<IQ", gt, off)]
        pad = (-len(data)) % align
        blobs.append(data + b"\0" * pad)
        off += len(data) + pad
    head = b"".join(head)
    head += b"\0" * ((-len(head)) % align)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(head)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


class GGUF:
    """A GGUF file read strictly enough for the files of this harness and real ones."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            buf = f.read()
        self._buf = buf
        p = 0

        def take(fmt):
            nonlocal p
            n = struct.calcsize(fmt)
            if p + n > len(buf):
                raise ValueError(f"{path}: truncated at byte {p}")
            v = struct.unpack_from(fmt, buf, p)
            p += n
            return v if len(v) > 1 else v[0]

        def take_str():
            nonlocal p
            n = take("<Q")
            if p + n > len(buf):
                raise ValueError(f"{path}: string of {n} bytes runs past the end")
            v = buf[p:p + n].decode("utf-8")
            p += n
            return v

        def take_val(t):
            if t == T_STR:
                return take_str()
            if t == T_ARR:
                et, n = take("<IQ")
                if et == T_STR:
                    return (et, [take_str() for _ in range(n)])
                if et not in _SCALAR:
                    raise ValueError(f"{path}: array of type {et}")
                return (et, [take(_SCALAR[et]) for _ in range(n)])
            if t not in _SCALAR:
                raise ValueError(f"{path}: metadata type {t}")
            return take(_SCALAR[t])

        if buf[:4] != GGUF_MAGIC:
            raise ValueError(f"{path}: not a GGUF file")
        p = 4
        self.version, n_tensors, n_kv = take("<IQQ")
        if self.version != 3:
            raise ValueError(f"{path}: GGUF version {self.version}, expected 3")
        self.kv = {}
        for _ in range(n_kv):
            k = take_str()
            t = take("<I")
            self.kv[k] = KV(t, take_val(t))
        self.tensors = {}
        for _ in range(n_tensors):
            name = take_str()
            nd = take("<I")
            ne = [take("<Q") for _ in range(nd)]
            gt, off = take("<IQ")
            self.tensors[name] = (ne, gt, off)
        self.alignment = int(self.kv["general.alignment"].value) if "general.alignment" in self.kv else ALIGNMENT
        self.data_start = p + (-p) % self.alignment

    def get(self, key, default=None):
        v = self.kv.get(key)
        return default if v is None else v.value

    def tensor(self, name):
        ne, gt, off = self.tensors[name]
        n = int(np.prod(ne)) if ne else 1
        start = self.data_start + off
        if gt == GGML_F32:
            a = np.frombuffer(self._buf, dtype="<f4", count=n, offset=start).astype(np.float32)
        elif gt == GGML_F16:
            a = np.frombuffer(self._buf, dtype="<f2", count=n, offset=start).astype(np.float32)
        elif gt == GGML_BF16:
            bits = np.frombuffer(self._buf, dtype="<u2", count=n, offset=start).astype(np.uint32) << 16
            a = bits.view(np.float32)
        else:
            raise ValueError(f"{self.path}: tensor {name} has ggml type {gt}, not F32/F16/BF16")
        return a.reshape(list(reversed(ne)))


# ---------------------------------------------------------------------------------------
# the tiny base model
# ---------------------------------------------------------------------------------------
def permute_rows(w, n_head, n_head_kv=None):
    """convert_hf_to_gguf.py's LlamaModel.permute: Hugging Face's rotate-half rows of q_proj /
    k_proj (and so of a LoRA's B) into llama.cpp's interleaved rope pairs."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def vocab(n_vocab):
    toks, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [2, 3, 3]
    for b in range(256):
        toks.append("<0x%02X>" % b)
        scores.append(0.0)
        types.append(6)
    words = ["▁the", "▁a", "▁of", "▁and", "▁to", "▁in", "▁is", "▁low", "▁rank", "▁lo", "ra", "▁llama"]
    words += ["▁" + c for c in "abcdefghijklmnopqrstuvwxyz"] + list("abcdefghijklmnopqrstuvwxyz")
    i = 0
    while len(toks) < n_vocab:
        w = words[i] if i < len(words) else f"▁w{i}"
        if w not in toks:
            toks.append(w)
            scores.append(-float(len(toks)))
            types.append(1)
        i += 1
    if len(toks) != n_vocab:
        raise ValueError(f"vocab of {n_vocab} tokens: need at least {len(toks)} (3 special + 256 bytes)")
    return toks, scores, types


def cmd_base(a):
    if a.vocab < 260:
        sys.exit("tiny_llama base: --vocab must be at least 260 (3 special + 256 byte tokens + 1)")
    E, L, H, HKV, FF, V = a.embd, a.layers, a.heads, a.kv_heads, a.ff, a.vocab
    if E % H or H % HKV or (E // H) % 2:
        sys.exit("tiny_llama base: need embd % heads == 0, heads % kv_heads == 0, even head size")
    D = E // H
    rng = np.random.default_rng(a.seed)
    toks, scores, types = vocab(V)
    kvs = [
        ("general.architecture", s("llama")),
        ("general.type", s("model")),
        ("general.name", s("lowrank tiny llama")),
        ("general.file_type", u32(0)),  # all F32
        ("general.alignment", u32(ALIGNMENT)),
        ("llama.vocab_size", u32(V)),
        ("llama.context_length", u32(a.ctx)),
        ("llama.embedding_length", u32(E)),
        ("llama.block_count", u32(L)),
        ("llama.feed_forward_length", u32(FF)),
        ("llama.attention.head_count", u32(H)),
        ("llama.attention.head_count_kv", u32(HKV)),
        ("llama.attention.layer_norm_rms_epsilon", f32(1e-5)),
        ("llama.rope.dimension_count", u32(D)),
        ("llama.rope.freq_base", f32(10000.0)),
        ("tokenizer.ggml.model", s("llama")),
        ("tokenizer.ggml.tokens", arr(T_STR, toks)),
        ("tokenizer.ggml.scores", arr(T_F32, scores)),
        ("tokenizer.ggml.token_type", arr(T_I32, types)),
        ("tokenizer.ggml.unknown_token_id", u32(0)),
        ("tokenizer.ggml.bos_token_id", u32(1)),
        ("tokenizer.ggml.eos_token_id", u32(2)),
        ("tokenizer.ggml.add_bos_token", KV(T_BOOL, False)),
        ("tokenizer.ggml.add_eos_token", KV(T_BOOL, False)),
    ]

    def lin(out, inp):  # a Hugging Face nn.Linear weight (out, in)
        return (rng.standard_normal((out, inp)) / math.sqrt(inp)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    F = GGML_F32
    t = [("token_embd.weight", rng.standard_normal((V, E)).astype(np.float32), F)]
    for i in range(L):
        p = f"blk.{i}."
        t += [(p + "attn_norm.weight", norm(E), F),
              (p + "attn_q.weight", permute_rows(lin(H * D, E), H, H), F),
              (p + "attn_k.weight", permute_rows(lin(HKV * D, E), H, HKV), F),
              (p + "attn_v.weight", lin(HKV * D, E), F),
              (p + "attn_output.weight", lin(E, H * D), F),
              (p + "ffn_norm.weight", norm(E), F),
              (p + "ffn_gate.weight", lin(FF, E), F),
              (p + "ffn_up.weight", lin(FF, E), F),
              (p + "ffn_down.weight", lin(E, FF), F)]
    t += [("output_norm.weight", norm(E), F),
          ("output.weight", (2.0 * lin(V, E)).astype(np.float32), F)]
    write_gguf(a.out, kvs, t)
    print(f"tiny_llama: wrote {a.out}: llama, {L} layers, embd {E}, heads {H}/{HKV}, ff {FF}, vocab {V}")


# ---------------------------------------------------------------------------------------
# PEFT adapters (safetensors + adapter_config.json)
# ---------------------------------------------------------------------------------------
_ST_DTYPES = {"F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": (None, 2), "F64": ("<f8", 8)}


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise ValueError(f"{path}: too short for safetensors")
    (n,) = struct.unpack_from("<Q", buf, 0)
    if 8 + n > len(buf):
        raise ValueError(f"{path}: header of {n} bytes runs past the end")
    hdr = json.loads(buf[8:8 + n])
    out = {}
    for name, info in hdr.items():
        if name == "__metadata__":
            continue
        dt, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        if dt not in _ST_DTYPES:
            raise ValueError(f"{path}: {name} has dtype {dt}")
        raw = buf[8 + n + b:8 + n + e]
        if len(raw) != int(np.prod(shape)) * _ST_DTYPES[dt][1]:
            raise ValueError(f"{path}: {name}: {len(raw)} bytes for shape {shape} {dt}")
        if dt == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(raw, _ST_DTYPES[dt][0])
        out[name] = a.astype(np.float64).reshape(shape)
    return out


def write_safetensors(path, tensors):
    hdr, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        b = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        hdr[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def pattern_key(keys, module):
    """PEFT's get_pattern_key: an exact key, else the first key K with re.match(rf"(.*\\.)?({K})$")."""
    for k in keys:
        if k == module:
            return k
    for k in keys:
        if re.match(rf"(.*\.)?({k})$", module):
            return k
    return None


# Hugging Face LlamaForCausalLM module -> llama.cpp tensor (one table for the llama arch)
_LLAMA_LAYER = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                "mlp.down_proj": "ffn_down"}


def gguf_name(module):
    if module == "model.embed_tokens":
        return "token_embd.weight"
    if module == "lm_head":
        return "output.weight"
    m = re.fullmatch(r"model\.layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)", module)
    if not m:
        raise ValueError(f"no llama.cpp tensor for module {module!r}")
    return f"blk.{m.group(1)}.{_LLAMA_LAYER[m.group(2)]}.weight"


class LoraPair:
    def __init__(self, module, A, B, alpha, r, scale, embedding):
        self.module, self.A, self.B, self.alpha, self.r, self.scale = module, A, B, alpha, r, scale
        self.embedding = embedding
        self.gguf = gguf_name(module)

    def delta_hf(self):
        """PEFT's delta in the orientation of the GGUF tensor's numpy view: Linear (out, in) =
        s * B @ A; Embedding (vocab, dim) = (s * B @ A)^T, row t = s * B @ A[:, t]."""
        d = self.scale * (self.B @ self.A)
        return d.T if self.embedding else d


def read_peft(d):
    with open(os.path.join(d, "adapter_config.json")) as f:
        cfg = json.load(f)
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{d}: peft_type {cfg.get('peft_type')}, not LORA")
    if cfg.get("fan_in_fan_out"):
        raise ValueError(f"{d}: fan_in_fan_out is not handled here")
    if cfg.get("modules_to_save"):
        raise ValueError(f"{d}: modules_to_save {cfg['modules_to_save']} cannot go into a LoRA GGUF")
    T = read_safetensors(os.path.join(d, "adapter_model.safetensors"))
    r0, alpha0 = int(cfg["r"]), float(cfg["lora_alpha"])
    rp, ap = cfg.get("rank_pattern") or {}, cfg.get("alpha_pattern") or {}
    rs = bool(cfg.get("use_rslora", False))
    pre = "base_model.model."
    mods = {}
    for k in T:
        m = re.fullmatch(re.escape(pre) + r"(.+)\.(lora_A\.weight|lora_B\.weight|lora_embedding_A|lora_embedding_B)", k)
        if not m:
            raise ValueError(f"{d}: unexpected tensor {k}")
        mods.setdefault(m.group(1), {})[m.group(2)] = T[k]
    pairs = []
    for mod in sorted(mods):
        t = mods[mod]
        emb = "lora_embedding_A" in t or "lora_embedding_B" in t
        A = t.get("lora_embedding_A" if emb else "lora_A.weight")
        B = t.get("lora_embedding_B" if emb else "lora_B.weight")
        if A is None or B is None or A.ndim != 2 or B.ndim != 2 or A.shape[0] != B.shape[1]:
            raise ValueError(f"{d}: {mod}: A and B missing or not (r, in) / (out, r)")
        r = A.shape[0]
        kr = pattern_key(list(rp), mod)
        r_cfg = int(rp[kr]) if kr is not None else r0
        if r_cfg != r:
            raise ValueError(f"{d}: {mod}: tensors have rank {r}, config says {r_cfg}")
        ka = pattern_key(list(ap), mod)
        alpha = float(ap[ka]) if ka is not None else alpha0
        scale = alpha / math.sqrt(r) if rs else alpha / r
        pairs.append(LoraPair(mod, A, B, alpha, r, scale, emb))
    return cfg, pairs


def cmd_peft(a):
    g = GGUF(a.base)
    E = int(g.get("llama.embedding_length"))
    L = int(g.get("llama.block_count"))
    H = int(g.get("llama.attention.head_count"))
    HKV = int(g.get("llama.attention.head_count_kv"))
    FF = int(g.get("llama.feed_forward_length"))
    V = g.tensors["token_embd.weight"][0][1]
    D = E // H
    shapes = {"self_attn.q_proj": (H * D, E), "self_attn.k_proj": (HKV * D, E), "self_attn.v_proj": (HKV * D, E),
              "self_attn.o_proj": (E, H * D), "mlp.gate_proj": (FF, E), "mlp.up_proj": (FF, E),
              "mlp.down_proj": (E, FF)}
    # mixed ranks and alphas, the way PEFT writes them (the keys are PEFT patterns)
    cfg = {
        "alpha_pattern": {"k_proj": 8, "model.layers.0.mlp.down_proj": 24, "lm_head": 5, "o_proj": 3},
        "auto_mapping": None,
        "base_model_name_or_path": "lowrank-tiny-llama",
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": 8,
        "rank_pattern": {"q_proj": 4, "model.layers.1.self_attn.v_proj": 2, "down_proj": 12,
                         "embed_tokens": 6, "lm_head": 3, "gate_proj": 5, "k_proj": 7},
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                           "embed_tokens", "lm_head"],
        "task_type": "CAUSAL_LM",
        "use_dora": False,
        "use_rslora": True,
    }
    rng = np.random.default_rng(a.seed)
    mods = [("model.embed_tokens", (E, V), True)]
    for i in range(L):
        mods += [(f"model.layers.{i}.{k}", shp, False) for k, shp in shapes.items()]
    mods.append(("lm_head", (V, E), False))
    T = {}
    for mod, (out, inp), emb in mods:
        kr, ka = pattern_key(list(cfg["rank_pattern"]), mod), pattern_key(list(cfg["alpha_pattern"]), mod)
        r = cfg["rank_pattern"][kr] if kr is not None else cfg["r"]
        alpha = cfg["alpha_pattern"][ka] if ka is not None else cfg["lora_alpha"]
        sc = alpha / math.sqrt(r) if cfg["use_rslora"] else alpha / r
        if emb:  # embedding entries ~ N(0, 1): delta entries ~ 0.3
            A = rng.standard_normal((r, inp))
            B = rng.standard_normal((out, r)) * 0.3 / (sc * math.sqrt(r))
            T[f"base_model.model.{mod}.lora_embedding_A"] = A
            T[f"base_model.model.{mod}.lora_embedding_B"] = B
        else:  # weight entries ~ N(0, 1/in): delta entries ~ 0.3/sqrt(in)
            A = rng.standard_normal((r, inp)) / math.sqrt(inp)
            B = rng.standard_normal((out, r)) * 0.3 / (sc * math.sqrt(r))
            T[f"base_model.model.{mod}.lora_A.weight"] = A
            T[f"base_model.model.{mod}.lora_B.weight"] = B
    os.makedirs(a.out, exist_ok=True)
    write_safetensors(os.path.join(a.out, "adapter_model.safetensors"), T)
    with open(os.path.join(a.out, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    _, pairs = read_peft(a.out)
    desc = ", ".join(f"{p.gguf.replace('.weight', '')} r{p.r} s{p.scale:.3g}" for p in pairs)
    print(f"tiny_llama: wrote {a.out}: {len(pairs)} pairs, rsLoRA: {desc}")


def _heads(g):
    return int(g.get("llama.attention.head_count")), int(g.get("llama.attention.head_count_kv"))


def _to_gguf_rows(g, p, rows):
    """A Hugging Face (out, ...) array of q_proj/k_proj into the base GGUF's row order."""
    H, HKV = _heads(g)
    if p.gguf.endswith(".attn_q.weight"):
        return permute_rows(rows, H, H)
    if p.gguf.endswith(".attn_k.weight"):
        return permute_rows(rows, H, HKV)
    return rows


def cmd_merge(a):
    g = GGUF(a.base)
    _, pairs = read_peft(a.peft)
    delta = {}
    for p in pairs:
        if p.gguf not in g.tensors:
            sys.exit(f"tiny_llama merge: {p.module} -> {p.gguf}: no such tensor in {a.base}")
        d = p.delta_hf() if p.embedding else _to_gguf_rows(g, p, p.delta_hf())
        shape = list(reversed(g.tensors[p.gguf][0]))
        if list(d.shape) != shape:
            sys.exit(f"tiny_llama merge: {p.module}: delta {list(d.shape)} vs {p.gguf} {shape}")
        delta[p.gguf] = d
    tensors = []
    for name, (ne, gt, _) in g.tensors.items():
        w = g.tensor(name)
        if name in delta:
            if gt != GGML_F32:
                sys.exit(f"tiny_llama merge: {name} is {_GGML_NAME.get(gt, gt)}, only F32 bases are merged")
            w = (w.astype(np.float64) + delta[name]).astype(np.float32)
        tensors.append((name, w, gt))
    kvs = list(g.kv.items())
    write_gguf(a.out, kvs, tensors)
    print(f"tiny_llama: wrote {a.out}: {a.base} with {len(delta)} LoRA deltas merged (float64, stored F32)")


def cmd_adapter(a):
    g = GGUF(a.base)
    cfg, pairs = read_peft(a.peft)
    gt = {"f32": GGML_F32, "f16": GGML_F16, "bf16": GGML_BF16}[a.dtype]
    file_alpha = float(cfg["lora_alpha"]) if a.alpha is None else a.alpha
    tensors, hit = [], 0
    for p in pairs:
        if p.gguf not in g.tensors:
            sys.exit(f"tiny_llama adapter: {p.module} -> {p.gguf}: no such tensor in {a.base}")
        if a.mode == "one-alpha":
            file_alpha = float(cfg["lora_alpha"])
            fold = 1.0
        else:  # llama.cpp multiplies by file_alpha / r (by 1 if file_alpha == 0)
            fold = p.scale * p.r / file_alpha if file_alpha else p.scale
        if a.scale_error and re.search(a.scale_error[0], p.gguf):
            fold *= a.scale_error[1]
            hit += 1
        if p.embedding:
            # token_embd: lora_a = A^T (vocab, r) -> ne [r, vocab]; lora_b = B (dim, r) -> ne [r, dim]
            la, lb = p.A.T, p.B * fold
        else:
            # lora_a = A (r, in) -> ne [in, r]; lora_b = B (out, r) -> ne [r, out]
            la = p.A
            lb = p.B * fold if a.mode == "no-permute" else _to_gguf_rows(g, p, p.B * fold)
        base = p.gguf
        tensors += [(base + ".lora_a", np.asarray(la, np.float32), gt),
                    (base + ".lora_b", np.asarray(lb, np.float32), gt)]
    kvs = [("general.architecture", s(g.get("general.architecture"))),
           ("general.type", s("adapter")),
           ("general.name", s(f"tiny_llama adapter ({a.mode})")),
           ("general.alignment", u32(ALIGNMENT)),
           ("adapter.type", s("lora")),
           ("adapter.lora.alpha", f32(file_alpha))]
    if a.scale_error and not hit:
        sys.exit(f"tiny_llama adapter: --scale-error {a.scale_error[0]!r} matches no tensor")
    write_gguf(a.out, kvs, tensors)
    err = f", {hit} pair(s) matching {a.scale_error[0]!r} scaled x{a.scale_error[1]:g}" if hit else ""
    print(f"tiny_llama: wrote {a.out}: {len(pairs)} pairs, mode {a.mode}, adapter.lora.alpha {file_alpha:g}, "
          f"{a.dtype}{err}")


# ---------------------------------------------------------------------------------------
# the same model as a Hugging Face checkpoint (model.safetensors), and back
# ---------------------------------------------------------------------------------------
def hf_name(gname):
    """llama.cpp tensor -> Hugging Face LlamaForCausalLM tensor (the inverse of gguf_name)."""
    fixed = {"token_embd.weight": "model.embed_tokens.weight", "output.weight": "lm_head.weight",
             "output_norm.weight": "model.norm.weight"}
    if gname in fixed:
        return fixed[gname]
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight", gname)
    norms = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
    inv = {v: k for k, v in _LLAMA_LAYER.items()}
    if m and m.group(2) in norms:
        return f"model.layers.{m.group(1)}.{norms[m.group(2)]}.weight"
    if m and m.group(2) in inv:
        return f"model.layers.{m.group(1)}.{inv[m.group(2)]}.weight"
    raise ValueError(f"no Hugging Face name for {gname!r}")


def _hf_rows(g, gname, w, to_hf):
    H, HKV = _heads(g)
    f = unpermute_rows if to_hf else permute_rows
    if gname.endswith(".attn_q.weight"):
        return f(w, H, H)
    if gname.endswith(".attn_k.weight"):
        return f(w, H, HKV)
    return w


def cmd_hf(a):
    g = GGUF(a.base)
    T = {hf_name(n): _hf_rows(g, n, g.tensor(n), True) for n in g.tensors}
    write_safetensors(a.out, T)
    print(f"tiny_llama: wrote {a.out}: {len(T)} tensors in Hugging Face names and q/k row order")


def cmd_from_hf(a):
    g = GGUF(a.like)
    T = read_safetensors(a.hf)
    tensors = []
    for n, (ne, gt, _) in g.tensors.items():
        w = T.get(hf_name(n))
        if w is None and n == "output.weight" and "model.embed_tokens.weight" in T:
            print("tiny_llama from-hf: no lm_head.weight (tied embeddings): no output.weight, as llama.cpp's "
                  "converter writes such a model (llama.cpp then reads token_embd.weight)")
            continue
        if w is None:
            sys.exit(f"tiny_llama from-hf: {a.hf} has no {hf_name(n)}")
        if list(w.shape) != list(reversed(ne)):
            sys.exit(f"tiny_llama from-hf: {hf_name(n)} is {list(w.shape)}, {n} is {list(reversed(ne))}")
        tensors.append((n, _hf_rows(g, n, w, False).astype(np.float32), GGML_F32))
    write_gguf(a.out, list(g.kv.items()), tensors)
    print(f"tiny_llama: wrote {a.out}: {a.hf} as GGUF (metadata of {a.like}, q/k rows permuted)")


# ---------------------------------------------------------------------------------------
# PEFT's forward pass in numpy (float64), as Hugging Face's LlamaForCausalLM computes it
# ---------------------------------------------------------------------------------------
def unpermute_rows(w, n_head, n_head_kv=None):
    """The inverse of permute_rows: a GGUF attn_q/attn_k back into Hugging Face's row order."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def cmd_forward(a):
    g = GGUF(a.base)
    if g.get("general.architecture") != "llama":
        sys.exit("tiny_llama forward: only the llama architecture")
    E = int(g.get("llama.embedding_length"))
    L = int(g.get("llama.block_count"))
    H, HKV = _heads(g)
    D = E // H
    eps = float(g.get("llama.attention.layer_norm_rms_epsilon"))
    theta = float(g.get("llama.rope.freq_base", 10000.0))
    pairs = {p.gguf: p for p in read_peft(a.peft)[1]} if a.peft else {}
    used = set()

    def W(name):  # a Hugging Face weight as float64
        w = g.tensor(name).astype(np.float64)
        if name.endswith(".attn_q.weight"):
            w = unpermute_rows(w, H, H)
        elif name.endswith(".attn_k.weight"):
            w = unpermute_rows(w, H, HKV)
        return w

    def linear(name, x):  # PEFT's LoRA Linear: x W^T + s (x A^T) B^T
        y = x @ W(name).T
        p = pairs.get(name)
        if p is not None:
            used.add(name)
            y = y + p.scale * ((x @ p.A.T) @ p.B.T)
        return y

    def rms(x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w

    toks = [int(t) for t in a.tokens.split(",")]
    n = len(toks)
    h = W("token_embd.weight")[toks]
    p = pairs.get("token_embd.weight")
    if p is not None:  # PEFT's LoRA Embedding: + s * (A^T[t]) B^T
        used.add("token_embd.weight")
        h = h + p.scale * (p.A.T[toks] @ p.B.T)
    inv = 1.0 / theta ** (np.arange(0, D, 2, dtype=np.float64) / D)
    ang = np.outer(np.arange(n, dtype=np.float64), inv)
    cos, sin = np.cos(np.concatenate([ang, ang], 1)), np.sin(np.concatenate([ang, ang], 1))

    def rope(x):  # (n, heads, D), rotate-half as Hugging Face's apply_rotary_pos_emb
        rot = np.concatenate([-x[..., D // 2:], x[..., :D // 2]], -1)
        return x * cos[:, None, :] + rot * sin[:, None, :]

    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(L):
        b = f"blk.{i}."
        x = rms(h, g.tensor(b + "attn_norm.weight"))
        q = rope(linear(b + "attn_q.weight", x).reshape(n, H, D))
        k = rope(linear(b + "attn_k.weight", x).reshape(n, HKV, D))
        v = linear(b + "attn_v.weight", x).reshape(n, HKV, D)
        o = np.empty((n, H, D))
        for hh in range(H):
            kv = hh // (H // HKV)
            sc = q[:, hh] @ k[:, kv].T / math.sqrt(D) + mask
            sc = np.exp(sc - sc.max(1, keepdims=True))
            o[:, hh] = (sc / sc.sum(1, keepdims=True)) @ v[:, kv]
        h = h + linear(b + "attn_output.weight", o.reshape(n, H * D))
        x = rms(h, g.tensor(b + "ffn_norm.weight"))
        gt = linear(b + "ffn_gate.weight", x)
        h = h + linear(b + "ffn_down.weight", gt / (1.0 + np.exp(-gt)) * linear(b + "ffn_up.weight", x))
    out = "output.weight" if "output.weight" in g.tensors else "token_embd.weight"
    z = linear(out, rms(h, g.tensor("output_norm.weight")))
    z = z - z.max(1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(1, keepdims=True))
    if set(pairs) - used:
        sys.exit(f"tiny_llama forward: pairs not applied: {sorted(set(pairs) - used)}")
    res = {"model": os.path.abspath(a.base), "lora": os.path.abspath(a.peft) if a.peft else None,
           "tokens": toks, "n_vocab": lp.shape[1], "engine": "numpy float64, Hugging Face Llama + PEFT",
           "positions": list(range(n)), "logprobs": lp.tolist()}
    with open(a.out, "w") as f:
        json.dump(res, f)
        f.write("\n")


# ---------------------------------------------------------------------------------------
# comparing logits.mjs outputs
# ---------------------------------------------------------------------------------------
def load_logprobs(path):
    with open(path) as f:
        j = json.load(f)
    lp = np.array([[(-np.inf if v is None else v) for v in row] for row in j["logprobs"]], dtype=np.float64)
    return j, lp


def cmd_compare(a):
    j0, x = load_logprobs(a.ref)
    j1, y = load_logprobs(a.other)
    if x.shape != y.shape or j0["tokens"] != j1["tokens"]:
        sys.exit(f"tiny_llama compare: {a.ref} and {a.other} are not of the same tokens/vocab")
    fin = np.isfinite(x) & np.isfinite(y)
    if not np.array_equal(np.isfinite(x), np.isfinite(y)):
        print(f"{a.label}: some log-probabilities are -inf in one run only")
    d = np.abs(x - y)[fin]
    rel = (np.abs(x - y) / np.maximum(1.0, np.abs(x)))[fin]
    mx, mr = float(d.max()), float(rel.max())
    top = int((np.argmax(x, axis=1) != np.argmax(y, axis=1)).sum())
    ok = np.array_equal(np.isfinite(x), np.isfinite(y))
    if a.min_diff is not None:
        ok = mx >= a.min_diff
        verdict = f"must differ by >= {a.min_diff:g}: {'yes' if ok else 'NO'}"
    else:
        ok = ok and mx <= a.tol
        verdict = f"tolerance {a.tol:g}: {'ok' if ok else 'EXCEEDED'}"
    print(f"{a.label}: {x.shape[0]} positions x {x.shape[1]} tokens: max |d log p| {mx:.3e}, "
          f"max |d log p|/max(1,|log p|) {mr:.3e}, argmax differs at {top} positions; {verdict}")
    sys.exit(0 if ok else 1)


def cmd_dump(a):
    g = GGUF(a.file)
    print(f"{a.file}: GGUF v{g.version}, {len(g.kv)} keys, {len(g.tensors)} tensors, alignment {g.alignment}, "
          f"data at {g.data_start}")
    for k, v in g.kv.items():
        print(f"  {k} = {v!r}")
    for n, (ne, gt, off) in g.tensors.items():
        print(f"  {n}: {_GGML_NAME.get(gt, gt)} ne {ne} @ {off}")


def _regex_factor(v):
    rx, _, f = v.rpartition(":")
    if not rx:
        raise argparse.ArgumentTypeError("expected REGEX:FACTOR")
    return rx, float(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("base")
    b.add_argument("out")
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--embd", type=int, default=64)
    b.add_argument("--layers", type=int, default=2)
    b.add_argument("--heads", type=int, default=4)
    b.add_argument("--kv-heads", type=int, default=2)
    b.add_argument("--ff", type=int, default=128)
    b.add_argument("--vocab", type=int, default=320)
    b.add_argument("--ctx", type=int, default=256)
    p = sub.add_parser("peft")
    p.add_argument("out")
    p.add_argument("--base", required=True)
    p.add_argument("--seed", type=int, default=2)
    m = sub.add_parser("merge")
    m.add_argument("base")
    m.add_argument("peft")
    m.add_argument("out")
    d = sub.add_parser("adapter")
    d.add_argument("peft")
    d.add_argument("out")
    d.add_argument("--base", required=True)
    d.add_argument("--mode", choices=["exact", "one-alpha", "no-permute"], default="exact")
    d.add_argument("--alpha", type=float, default=None)
    d.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    d.add_argument("--scale-error", type=_regex_factor, default=None, metavar="REGEX:FACTOR",
                   help="multiply the scale of the pairs whose GGUF name matches REGEX by FACTOR")
    hf = sub.add_parser("hf")
    hf.add_argument("base")
    hf.add_argument("out")
    fh = sub.add_parser("from-hf")
    fh.add_argument("hf")
    fh.add_argument("like")
    fh.add_argument("out")
    fw = sub.add_parser("forward")
    fw.add_argument("base")
    fw.add_argument("--peft", default=None)
    fw.add_argument("--tokens", required=True)
    fw.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("ref")
    c.add_argument("other")
    c.add_argument("--tol", type=float, default=1e-4)
    c.add_argument("--min-diff", type=float, default=None)
    c.add_argument("--label", default="compare")
    u = sub.add_parser("dump")
    u.add_argument("file")
    a = ap.parse_args()
    try:
        {"base": cmd_base, "peft": cmd_peft, "merge": cmd_merge, "adapter": cmd_adapter,
         "hf": cmd_hf, "from-hf": cmd_from_hf, "forward": cmd_forward, "compare": cmd_compare, "dump": cmd_dump}[a.cmd](a)
    except (ValueError, KeyError, OSError, struct.error, json.JSONDecodeError) as e:
        sys.exit(f"tiny_llama {a.cmd}: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
