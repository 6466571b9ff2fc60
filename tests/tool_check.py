#!/usr/bin/python3
"""tool_check.py — the `lowrank` program end to end, checked against numpy (suite 'tool').

    tool_check.py SECTION LOWRANK WORKDIR

SECTION is inspect, compress, extract, combine, merge, errors, clean or shards (sharded
checkpoints: shards + model.safetensors.index.json, the index written as save_pretrained
writes it). The inputs are written here by a minimal safetensors writer (no
safetensors/torch package is assumed): an 8-byte little-endian header length, a JSON header
of {name: {dtype, shape, data_offsets}} plus an optional __metadata__ string map, then the
raw little-endian data. F32, F16, BF16 (numpy has
no bfloat16: round-to-nearest-even on the top 16 bits of the float32), F64 and I64 are
supported. Every result the program writes is parsed back here and compared with numpy
(float64 on the values the file holds). Exit 0 when every check passes, 1 otherwise.
"""
import json
import os
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)
FAILS = []
CHECKS = [0]


def fail(msg):
    FAILS.append(msg)
    print("FAIL: " + msg, flush=True)


def check(cond, msg):
    CHECKS[0] += 1
    if not cond:
        fail(msg)
    return bool(cond)


def close(got, want, tol, what):
    """|got - want| <= tol (scalars)."""
    return check(abs(float(got) - float(want)) <= tol, "%s: got %.9g, want %.9g (tol %.3g)" % (what, got, want, tol))


def rel_close(got, want, rtol, what, ref=None):
    """||got - want|| <= rtol * ||ref|| (ref defaults to want)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    ref = want if ref is None else np.asarray(ref, np.float64)
    d, r = np.linalg.norm(got - want), np.linalg.norm(ref)
    return check(d <= rtol * max(r, 1e-300), "%s: ||got - want|| = %.3g, %.3g of ||ref|| = %.3g (tol %.3g)" %
                 (what, d, d / max(r, 1e-300), r, rtol))


# ---------------------------------------------------------------------------------------------
# safetensors by hand

def f32_to_bf16_bits(x):
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16          # round to nearest, ties to even
    return u.astype(np.uint16)


def bf16_bits_to_f32(b):
    return (np.asarray(b, np.uint16).astype(np.uint32) << 16).view(np.float32)


NP_DTYPE = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "BF16": "<u2"}


def encode(dtype, x):
    """bytes of x in dtype (x: float array for floats, ints for I64)."""
    if dtype == "BF16":
        return f32_to_bf16_bits(np.asarray(x, np.float32)).astype("<u2").tobytes()
    return np.ascontiguousarray(np.asarray(x).astype(NP_DTYPE[dtype])).tobytes()


def decode(dtype, raw, shape):
    """the values of raw as float64 (floats) or int64 (I64), shaped."""
    a = np.frombuffer(raw, NP_DTYPE[dtype]).reshape(shape)
    if dtype == "BF16":
        return bf16_bits_to_f32(a).astype(np.float64)
    return a.astype(np.int64 if dtype == "I64" else np.float64)


def quantize(dtype, x):
    """x as a file of that dtype holds it, as float64."""
    return decode(dtype, encode(dtype, x), np.shape(x))


def write_st(path, tensors, metadata=None):
    """tensors: list of (name, dtype, array); written in that order."""
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, x in tensors:
        raw = encode(dtype, x)
        header[name] = {"dtype": dtype, "shape": list(np.shape(x)), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


class St:
    """a parsed safetensors file: .meta (dict or None), .t[name] = (dtype, shape, raw bytes)."""

    def __init__(self, path):
        with open(path, "rb") as f:
            data = f.read()
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n].decode())
        self.meta = header.pop("__metadata__", None)
        body, self.t, end = data[8 + n:], {}, 0
        for name, d in header.items():
            a, b = d["data_offsets"]
            self.t[name] = (d["dtype"], tuple(d["shape"]), body[a:b])
            end = max(end, b)
        if end != len(body):
            raise ValueError("%s: %d data bytes, offsets end at %d" % (path, len(body), end))

    def get(self, name):
        dtype, shape, raw = self.t[name]
        return decode(dtype, raw, shape)


def write_adapter(d, layers, r, alpha, dtype="F32", rank_pattern=None, alpha_pattern=None, base="base.safetensors",
                  use_rslora=False):
    """a PEFT adapter directory; layers: {module: (A (r_l, in), B (out, r_l))}."""
    os.makedirs(d, exist_ok=True)
    ts = []
    for mod, (a, b) in layers.items():
        ts.append(("base_model.model.%s.lora_A.weight" % mod, dtype, a))
        ts.append(("base_model.model.%s.lora_B.weight" % mod, dtype, b))
    write_st(os.path.join(d, "adapter_model.safetensors"), ts, {"format": "pt"})
    cfg = {"peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": sorted({m.split(".")[-1] for m in layers}),
           "use_rslora": use_rslora, "bias": "none", "base_model_name_or_path": base, "task_type": None,
           "rank_pattern": rank_pattern or {}, "alpha_pattern": alpha_pattern or {}, "lora_dropout": 0.0}
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def pattern(pat, module, default):
    """PEFT's get_pattern_key: the first key K with (.*\\.)?(K)$ matching the whole module."""
    for k, v in (pat or {}).items():
        if re.fullmatch(r"(.*\.)?(%s)$" % k, module):
            return v
    return default


def read_adapter(d):
    """{module: s * B @ A} of an adapter directory (float64), and its config."""
    with open(os.path.join(d, "adapter_config.json")) as f:
        cfg = json.load(f, object_pairs_hook=dict)
    st = St(os.path.join(d, "adapter_model.safetensors"))
    out = {}
    for name in st.t:
        m = re.fullmatch(r"base_model\.model\.(.*)\.lora_A\.weight", name)
        if not m:
            continue
        mod = m.group(1)
        a, b = st.get(name), st.get("base_model.model.%s.lora_B.weight" % mod)
        r = pattern(cfg.get("rank_pattern"), mod, cfg["r"])
        alpha = pattern(cfg.get("alpha_pattern"), mod, cfg["lora_alpha"])
        check(a.shape[0] == r and b.shape[1] == r, "%s: %s has rank %d, the config says %d" % (d, mod, a.shape[0], r))
        s = alpha / (np.sqrt(r) if cfg.get("use_rslora") else r)
        out[mod] = s * (b @ a)
    return out, cfg, st


# ---------------------------------------------------------------------------------------------
# matrices with chosen spectra

def with_spectrum(rng, m, n, s):
    """U diag(s) V^T with random orthonormal U (m, k), V (n, k), k = len(s)."""
    k = len(s)
    u, _ = np.linalg.qr(rng.standard_normal((m, k)))
    v, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return (u * np.asarray(s, np.float64)) @ v.T


def svd(w):
    return np.linalg.svd(np.asarray(w, np.float64), full_matrices=False)


def best_rank(w, r):
    u, s, vt = svd(w)
    return (u[:, :r] * s[:r]) @ vt[:r]


def energy_rank(s, e):
    c = np.cumsum(s.astype(np.float64) ** 2)
    return int(np.argmax(c / c[-1] >= e)) + 1


def error_rank(s, x):
    """the smallest r with sqrt(tail_r / total) <= x"""
    e2 = s.astype(np.float64) ** 2
    tail = np.concatenate([np.cumsum(e2[::-1])[::-1], [0.0]])
    return int(np.argmax(np.sqrt(tail / tail[0]) <= x))


def np_rank(w32):
    """numpy's numerical rank of the float32 matrix, with its own rule spelled out"""
    s = np.linalg.svd(w32.astype(np.float32), compute_uv=False)
    tol = s.max() * max(w32.shape) * EPS32
    r = int((s > tol).sum())
    check(r == np.linalg.matrix_rank(w32.astype(np.float32)), "np_rank disagrees with numpy.linalg.matrix_rank")
    return r


# ---------------------------------------------------------------------------------------------
# running the program

PROG = None
WORK = None


def run(*args, want=0):
    p = subprocess.run([PROG] + [str(a) for a in args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    cmd = "lowrank " + " ".join(str(a) for a in args)
    if not check(p.returncode == want, "%s: exit %d, want %d\nstderr: %s" % (cmd, p.returncode, want, p.stderr)):
        return None, p
    if want == 0 and "--json" in args:
        try:
            return json.loads(p.stdout), p
        except ValueError as e:
            fail("%s: --json output does not parse: %s\n%s" % (cmd, e, p.stdout[:2000]))
            return None, p
    return None, p


def path(name):
    return os.path.join(WORK, name)


def no_leftovers(out, what):
    """out does not exist and its directory holds no .NAME.tmp-* file"""
    d, base = os.path.split(os.path.abspath(out))
    check(not os.path.exists(out), "%s: the output %s exists after a failure" % (what, out))
    tmp = [f for f in os.listdir(d) if f.startswith("." + base + ".tmp-") or ".tmp-" in f]
    check(not tmp, "%s: temporary files left in %s: %s" % (what, d, tmp))
    if os.path.isdir(out):
        left = [f for f in os.listdir(out) if ".tmp-" in f]
        check(not left, "%s: temporary files left in %s: %s" % (what, out, left))


# ---------------------------------------------------------------------------------------------
# the model file used by inspect and compress

def margin_ok(s, levels=(0.9, 0.99, 0.999), gap=3e-5):
    c = np.cumsum(s ** 2) / np.sum(s ** 2)
    return all(np.min(np.abs(c - e)) > gap for e in levels)


def make_model(rng):
    """(tensors for write_st, {name: float64 values as stored}, full-rank/deficient info)"""
    spec = {}
    # F32 64x48, full rank, geometric decay
    spec["layers.0.attn.q_proj.weight"] = ("F32", 64, 48, 3.0 * 0.9 ** np.arange(48))
    # F16 40x30, rank 12 by construction
    spec["layers.0.attn.v_proj.weight"] = ("F16", 40, 30, 2.0 * 0.8 ** np.arange(12))
    # BF16 48x40, full rank, slow decay
    spec["layers.0.mlp.up_proj.weight"] = ("BF16", 48, 40, 1.0 / (1.0 + 0.3 * np.arange(40)))
    # F64 30x36, rank 7
    spec["layers.0.mlp.down_proj.weight"] = ("F64", 30, 36, np.array([5, 4, 2.5, 2, 1.2, 0.7, 0.3]))
    # F32 20x16 (break-even rank 8), rank 10
    spec["layers.1.small.weight"] = ("F32", 20, 16, 1.5 * 0.7 ** np.arange(10))
    tensors, vals = [], {}
    for name, (dt, m, n, s) in spec.items():
        for _ in range(20):
            if len(s) < min(m, n):
                # rank len(s) in any dtype: the other columns are copies of the first ones
                # times +-1 or +-2, which rounding keeps exactly dependent
                k = len(s)
                x = quantize(dt, with_spectrum(rng, m, k, s))
                p = np.zeros((k, n))
                p[np.arange(k), np.arange(k)] = 1
                p[np.arange(k, n) % k, np.arange(k, n)] = rng.choice([-2.0, -1.0, 1.0, 2.0], n - k)
                w = quantize(dt, x @ p)
            else:
                w = quantize(dt, with_spectrum(rng, m, n, s))
            if margin_ok(svd(w)[1]):
                break
            s = np.sort(s * np.exp(0.05 * rng.standard_normal(len(s))))[::-1]  # nudge a spectrum near a threshold
        else:
            raise SystemExit("cannot build a spectrum away from the energy thresholds for " + name)
        vals[name] = w
        tensors.append((name, dt, w))
    bias = rng.standard_normal(64).astype(np.float32)
    pos = np.arange(12, dtype=np.int64).reshape(3, 4)
    tensors.insert(1, ("layers.0.attn.q_proj.bias", "F32", bias))
    tensors.append(("position_ids", "I64", pos))
    return tensors, vals


# ---------------------------------------------------------------------------------------------
# inspect

def t_inspect(rng):
    tensors, vals = make_model(rng)
    model = path("model.safetensors")
    write_st(model, tensors, {"format": "pt"})
    js, _ = run("inspect", model, "--json")
    if not js:
        return
    skipped = {x["tensor"] for x in js["skipped"]}
    check(skipped == {"layers.0.attn.q_proj.bias", "position_ids"}, "inspect: skipped is %s" % sorted(skipped))
    rows = {r["name"]: r for r in js["tensors"]}
    check(set(rows) == set(vals), "inspect: tensors reported %s, want %s" % (sorted(rows), sorted(vals)))
    dt = {name: d for name, d, _ in tensors}
    for name, w in vals.items():
        r = rows.get(name)
        if not r:
            continue
        m, n = w.shape
        check(r["shape"] == [m, n] and r["dtype"] == dt[name], "inspect %s: shape %s dtype %s" % (name, r["shape"], r["dtype"]))
        s = svd(w)[1]
        check(r["numerical_rank"] == np_rank(w), "inspect %s: numerical rank %d, numpy %d" % (name, r["numerical_rank"], np_rank(w)))
        close(r["sigma1"], s[0], 1e-5 * s[0], "inspect %s: sigma1" % name)
        for e in ("0.9", "0.99", "0.999"):
            want = energy_rank(s, float(e))
            check(r["energy_ranks"][e] == want, "inspect %s: rank for energy %s is %s, numpy %d" % (name, e, r["energy_ranks"][e], want))
        check(r["params"] == m * n, "inspect %s: params %s" % (name, r["params"]))
        be = r["break_even_rank"]
        check(be * (m + n) <= m * n < (be + 1) * (m + n), "inspect %s: break-even rank %d for %dx%d" % (name, be, m, n))
        sv = np.array(r["singular_values"])
        check(len(sv) == min(m, n), "inspect %s: %d singular values" % (name, len(sv)))
        rel_close(sv, s, 1e-5, "inspect %s: singular values" % name, ref=s[:1])
    # the rank-deficient ones really are
    check(rows["layers.0.attn.v_proj.weight"]["numerical_rank"] == 12, "inspect: v_proj should have rank 12")
    check(rows["layers.0.mlp.down_proj.weight"]["numerical_rank"] == 7, "inspect: down_proj should have rank 7")
    # --only / --skip
    js, _ = run("inspect", model, "--json", "--only", "attn")
    if js:
        got = [r["name"] for r in js["tensors"]]
        check(got == ["layers.0.attn.q_proj.weight", "layers.0.attn.v_proj.weight"], "inspect --only attn: %s" % got)
    js, _ = run("inspect", model, "--json", "--skip", "mlp|small")
    if js:
        got = [r["name"] for r in js["tensors"]]
        check(got == ["layers.0.attn.q_proj.weight", "layers.0.attn.v_proj.weight"], "inspect --skip: %s" % got)
    js, _ = run("inspect", model, "--json", "--only", "proj", "--skip", "^layers\\.0\\.attn")
    if js:
        got = sorted(r["name"] for r in js["tensors"])
        check(got == ["layers.0.mlp.down_proj.weight", "layers.0.mlp.up_proj.weight"], "inspect --only --skip: %s" % got)
    # the randomized method with 8 values: lower bounds of the top values, upper bounds of the
    # energy ranks (null where 8 values do not reach the level), a lower bound of the rank
    js, _ = run("inspect", model, "--json", "--method", "randomized", "--svd-rank", 8)
    for r in (js or {}).get("tensors", []):
        name, s = r["name"], svd(vals[r["name"]])[1]
        sv = np.array(r["singular_values"])
        check(r["svd"] == "randomized" and r["values_known"] == len(sv) <= 8, "inspect randomized %s: %s values" % (name, len(sv)))
        check(np.all(sv <= s[:len(sv)] * (1 + 1e-5) + 1e-5 * s[0]), "inspect randomized %s: values above the exact ones" % name)
        close(sv[0], s[0], 1e-3 * s[0], "inspect randomized %s: sigma1" % name)
        nr = np_rank(vals[name])
        check(r["numerical_rank"] <= nr and (r["numerical_rank"] == nr or r["numerical_rank_is_lower_bound"]),
              "inspect randomized %s: rank %d (lower bound %s), numpy %d" % (name, r["numerical_rank"], r["numerical_rank_is_lower_bound"], nr))
        for e, got in r["energy_ranks"].items():
            check(got is None or got >= energy_rank(s, float(e)), "inspect randomized %s: energy rank %s for %s" % (name, got, e))
    # --spectrum
    svg = path("spectrum.svg")
    _, p = run("inspect", model, "--spectrum", svg)
    check("spectrum plot: " + svg in p.stdout, "inspect --spectrum: the table does not name the plot")
    try:
        root = ET.parse(svg).getroot()
        check(root.tag.endswith("svg"), "inspect --spectrum: root element is %s" % root.tag)
        text = ET.tostring(root, encoding="unicode")
        for name in vals:
            check(name in text, "inspect --spectrum: %s is not in the plot" % name)
    except (ET.ParseError, OSError) as e:
        fail("inspect --spectrum: %s does not parse as XML: %s" % (svg, e))
    # the table names every tensor too
    _, p = run("inspect", model)
    for name in vals:
        check(name in p.stdout, "inspect: the table lacks %s" % name)


# ---------------------------------------------------------------------------------------------
# compress

def factor_names(name):
    base = name[:-len(".weight")] if name.endswith(".weight") else name
    suf = ".weight" if name.endswith(".weight") else ""
    return base + ".B" + suf, base + ".A" + suf


# how close B@A is to numpy's best rank-r approximation, relative to ||W||, per stored dtype
FACTOR_TOL = {"F32": 1e-4, "F64": 1e-4, "F16": 3e-3, "BF16": 2e-2}


def check_compressed(tag, model, out, tensors, vals, js, ranks):
    """ranks: {name: r or None (dense)} expected; checks the file against numpy."""
    st, src = St(out), St(model)
    rows = {r["name"]: r for r in js["tensors"]}
    factored = {n for n, r in ranks.items() if r is not None}
    want_names = set()
    for name, dt, _ in tensors:
        if name in factored:
            want_names |= set(factor_names(name))
        else:
            want_names.add(name)
    check(set(st.t) == want_names, "%s: tensors %s, want %s" % (tag, sorted(st.t), sorted(want_names)))
    for name, dt, _ in tensors:
        if name not in factored:
            if name in st.t:
                check(st.t[name] == src.t[name], "%s: %s is not copied unchanged" % (tag, name))
            if name in rows:
                check(rows[name]["dense"] and rows[name]["params_after"] == rows[name]["params_before"],
                      "%s: %s should be reported dense" % (tag, name))
            continue
        bn, an = factor_names(name)
        if bn not in st.t or an not in st.t:
            continue
        w, r = vals[name], ranks[name]
        m, n = w.shape
        check(st.t[bn][0] == dt and st.t[an][0] == dt, "%s: %s factors are %s/%s, want %s" % (tag, name, st.t[bn][0], st.t[an][0], dt))
        check(st.t[bn][1] == (m, r) and st.t[an][1] == (r, n), "%s: %s factors %s %s, want (%d,%d) (%d,%d)" %
              (tag, name, st.t[bn][1], st.t[an][1], m, r, r, n))
        b, a = st.get(bn), st.get(an)
        ba = b @ a
        # the default (checked block Krylov) promises an error within 1.001x the optimum, not the
        # SVD's own factors (not unique where singular values are close)
        opt, got = np.linalg.norm(w - best_rank(w, r)), np.linalg.norm(w - ba)
        check(got <= 1.001 * opt + FACTOR_TOL[dt] * np.linalg.norm(w),
              "%s: %s ||W - B@A|| = %.6g, the rank-%d optimum %.6g" % (tag, name, got, r, opt))
        row = rows.get(name, {})
        meas = np.linalg.norm(w - ba) / np.linalg.norm(w)
        close(row.get("measured_rel_error", -1), meas, 1e-4, "%s: %s measured_rel_error" % (tag, name))
        s = svd(w)[1]
        pred = np.sqrt(np.sum(s[r:] ** 2) / np.sum(s ** 2))
        close(row.get("predicted_rel_error", -1), pred, max(1e-4, 1.5e-3 * pred), "%s: %s predicted_rel_error" % (tag, name))
        check(row.get("rank") == r and row.get("params_after") == r * (m + n) and not row.get("dense"),
              "%s: %s row %s, want rank %d" % (tag, name, row, r))
        # the rank B has is the one the file says (B = U S: its columns are orthogonal)
        g = b.T @ b
        check(np.linalg.norm(g - np.diag(np.diag(g))) <= 1e-2 * np.linalg.norm(g), "%s: %s B's columns are not orthogonal" % (tag, name))
    # metadata: the input's kept, a "lowrank" record added
    meta = st.meta or {}
    check(meta.get("format") == "pt" and meta.get("source") == "tool_check", "%s: input metadata lost: %s" % (tag, meta))
    try:
        rec = json.loads(meta.get("lowrank", ""))
        check(rec.get("command") == "compress", "%s: lowrank record %s" % (tag, rec))
        check(rec.get("ranks") == {k: v for k, v in ranks.items() if v is not None}, "%s: record ranks %s" % (tag, rec.get("ranks")))
    except ValueError:
        fail("%s: __metadata__ lowrank is not JSON: %r" % (tag, meta.get("lowrank")))
    tot = js["totals"]
    pb = sum(vals[k].size for k in ranks)
    pa = sum(vals[k].size if r is None else r * sum(vals[k].shape) for k, r in ranks.items())
    check(tot["params_before"] == pb and tot["params_after"] == pa, "%s: totals %s, want %d -> %d" % (tag, tot, pb, pa))


def plan_dp(vals, budget):
    """the minimum total squared error over per-layer ranks (1..be, or dense) within budget params"""
    INF = float("inf")
    best = {0: 0.0}
    for w in vals.values():
        m, n = w.shape
        s2 = svd(w)[1] ** 2
        tail = np.concatenate([np.cumsum(s2[::-1])[::-1], [0.0]])
        opts = [(r * (m + n), tail[r]) for r in range(1, min(m, n) + 1) if r * (m + n) < m * n] + [(m * n, 0.0)]
        nb = {}
        for used, err in best.items():
            for c, e in opts:
                u = used + c
                if u <= budget and err + e < nb.get(u, INF):
                    nb[u] = err + e
        best = nb
    return min(best.values()) if best else INF


def t_compress(rng):
    tensors, vals = make_model(rng)
    model = path("model.safetensors")
    write_st(model, tensors, {"format": "pt", "source": "tool_check"})
    svals = {k: svd(w)[1] for k, w in vals.items()}

    def be(name):
        m, n = vals[name].shape
        return lambda r: r if r * (m + n) < m * n else None

    # --rank 9: the 20x16 layer (break-even 8) stays dense
    out = path("rank.safetensors")
    js, _ = run("compress", model, "--rank", 9, "--out", out, "--json")
    if js:
        ranks = {k: be(k)(9) for k in vals}
        check(ranks["layers.1.small.weight"] is None, "compress: the small layer should be at break-even")
        check_compressed("compress --rank 9", model, out, tensors, vals, js, ranks)
    # --energy 0.99
    out = path("energy.safetensors")
    js, _ = run("compress", model, "--energy", 0.99, "--out", out, "--json")
    if js:
        ranks = {k: be(k)(energy_rank(svals[k], 0.99)) for k in vals}
        check_compressed("compress --energy 0.99", model, out, tensors, vals, js, ranks)
    # --error 0.2 (thresholds on the error checked away from the spectrum's steps)
    out = path("error.safetensors")
    js, _ = run("compress", model, "--error", 0.2, "--out", out, "--json")
    if js:
        ranks = {k: be(k)(error_rank(svals[k], 0.2)) for k in vals}
        check_compressed("compress --error 0.2", model, out, tensors, vals, js, ranks)
    # --budget 0.5, only the F32/F64 tensors (F16/BF16 rounding would blur the comparison)
    out = path("budget.safetensors")
    js, _ = run("compress", model, "--budget", 0.5, "--out", out, "--json")
    if js:
        rows = {r["name"]: r for r in js["tensors"]}
        ranks = {k: (None if rows[k]["dense"] else rows[k]["rank"]) for k in vals}
        check_compressed("compress --budget 0.5", model, out, tensors, vals, js, ranks)
        total = sum(w.size for w in vals.values())
        tot = js["totals"]
        check(tot["params_after"] <= 0.5 * total, "compress --budget 0.5: %d params of %d" % (tot["params_after"], total))
        # the plan's squared error against the optimum (exhaustive DP), within the certified gap
        energy = sum(np.sum(s ** 2) for s in svals.values())
        got = sum(0.0 if r is None else float(np.sum(svals[k][r:] ** 2)) for k, r in ranks.items())
        opt = plan_dp(vals, int(0.5 * total))
        if os.environ.get("TOOL_CHECK_VERBOSE"):
            print("budget: ranks %s, error %.6g, optimum %.6g, gap %.3g" % (ranks, got, opt, tot.get("gap_rel_energy", 0) * energy))
        gap = tot.get("gap_rel_energy", 0) * energy
        check(got <= opt + gap + 1e-6 * energy, "compress --budget 0.5: squared error %.6g, optimum %.6g, gap %.3g" % (got, opt, gap))
        check(got >= opt - 1e-6 * energy, "compress --budget 0.5: error %.6g below the optimum %.6g?" % (got, opt))
        close(tot["predicted_rel_error"], np.sqrt(got / energy), 1e-4, "compress --budget: total predicted error")
    # --only selects: the rest is copied
    out = path("only.safetensors")
    js, _ = run("compress", model, "--rank", 4, "--only", "q_proj", "--out", out, "--json")
    if js:
        sel = {k: v for k, v in vals.items() if "q_proj" in k}
        check_compressed("compress --only", model, out, tensors, vals, js, {k: 4 for k in sel})


    # F16 whose U_r S_r overflows (sigma_1 > 65504): stored with sqrt(S) on each side, same product
    big = np.full((6, 5), 30000.0, np.float32)
    big[0, 1] = -20000.0
    model = path("big16.safetensors")
    write_st(model, [("big.weight", "F16", big)])
    out = path("big16c.safetensors")
    js, p = run("compress", model, "--rank", 1, "--out", out, "--json")
    if js:
        f = St(out)
        b, a = f.get("big.B.weight"), f.get("big.A.weight")
        check(np.all(np.isfinite(b)) and np.all(np.isfinite(a)), "compress F16 overflow: factors not finite")
        check("balanced_split" in p.stderr, "compress F16 overflow: no note on stderr: " + p.stderr)
        rec = json.loads(f.meta["lowrank"])
        check(rec.get("balanced_split") == ["big.weight"], "compress F16 overflow: record %s" % rec)
        rel_close(b.astype(np.float64) @ a.astype(np.float64), best_rank(quantize("F16", big).astype(np.float64), 1),
                  2e-3, "compress F16 overflow: B@A", ref=np.linalg.norm(big))


# ---------------------------------------------------------------------------------------------
# extract

def t_extract(rng):
    m1, n1, m2, n2 = 64, 48, 40, 30
    base = {"layers.0.q_proj.weight": rng.standard_normal((m1, n1)),
            "layers.0.q_proj.bias": rng.standard_normal(m1),
            "layers.0.k_proj.weight": rng.standard_normal((m1, n1)),
            "layers.0.v_proj.weight": rng.standard_normal((m2, n2))}
    delta = {"layers.0.q_proj.weight": with_spectrum(rng, m1, n1, [3.0, 1.5]),
             "layers.0.v_proj.weight": with_spectrum(rng, m2, n2, [2.0, 1.0, 0.4])}
    tuned = {k: v + delta.get(k, 0) for k, v in base.items()}
    tuned["layers.0.q_proj.bias"] = base["layers.0.q_proj.bias"] + 0.01
    pos = np.arange(6, dtype=np.int64)

    def files(dt, tag):
        b, t = path("base%s.safetensors" % tag), path("tuned%s.safetensors" % tag)
        order = list(base)
        write_st(b, [(k, dt if base[k].ndim == 2 else "F32", base[k]) for k in order] + [("pos", "I64", pos)])
        write_st(t, [(k, dt if base[k].ndim == 2 else "F32", tuned[k]) for k in order] + [("pos", "I64", pos)])
        return b, t

    for dt, tag in (("F32", ""), ("F16", "16")):
        b, t = files(dt, tag)
        sb, stt = St(b), St(t)
        dw = {k: stt.get(k) - sb.get(k) for k in delta}   # the difference of what the files hold
        tol = 1e-4 if dt == "F32" else 2e-3               # F16: the planted delta is only approximately low-rank
        # --rank 2: q exact, v the rank-2 truncation
        out = path("adapter-rank%s" % tag)
        js, _ = run("extract", b, t, "--rank", 2, "--out", out, "--json")
        if js:
            got, cfg, st = read_adapter(out)
            check(set(got) == {"layers.0.q_proj", "layers.0.v_proj"}, "extract %s: modules %s" % (dt, sorted(got)))
            check(set(st.t) == {"base_model.model.layers.0.%s_proj.lora_%s.weight" % (p, x) for p in "qv" for x in "AB"},
                  "extract %s: adapter tensors %s" % (dt, sorted(st.t)))
            for k, d in dw.items():
                mod = k[:-len(".weight")]
                if mod in got:
                    rel_close(got[mod], best_rank(d, 2), 1e-4, "extract %s --rank 2: %s s.B@A vs rank-2 SVD of dW" % (dt, mod), ref=d)
                    if k.startswith("layers.0.q"):
                        rel_close(got[mod], delta[k], tol, "extract %s: %s s.B@A vs the planted delta" % (dt, mod))
            sk = {x["tensor"] for x in js["skipped"]}
            check("layers.0.q_proj.bias" in sk, "extract %s: the changed bias is not noted in skipped: %s" % (dt, js["skipped"]))
            check(js["unchanged"] == 2, "extract %s: unchanged %s, want 2 (k_proj, pos)" % (dt, js["unchanged"]))
            lay = {r["name"]: r for r in js["layers"]}
            for k, d in dw.items():
                s = svd(d)[1]
                close(lay[k]["energy_kept"], np.sum(s[:2] ** 2) / np.sum(s ** 2), 1e-5, "extract %s: %s energy_kept" % (dt, k))
                close(lay[k]["delta_fro"], np.linalg.norm(d), 1e-5 * np.linalg.norm(d), "extract %s: %s delta_fro" % (dt, k))
        # --energy: ranks 2 and 3 differ per layer: rank_pattern
        if dt == "F32":
            out = path("adapter-energy")
            js, _ = run("extract", b, t, "--energy", 0.99999, "--out", out, "--json")
            if js:
                got, cfg, st = read_adapter(out)
                lay = {r["name"]: r["rank"] for r in js["layers"]}
                check(lay == {"layers.0.q_proj.weight": 2, "layers.0.v_proj.weight": 3}, "extract --energy: ranks %s" % lay)
                check(cfg.get("rank_pattern"), "extract --energy: different ranks but no rank_pattern: %s" % cfg)
                for k, d in dw.items():
                    mod = k[:-len(".weight")]
                    if mod in got:
                        rel_close(got[mod], d, 1e-4, "extract --energy: %s s.B@A vs dW" % mod)
                        rel_close(got[mod], delta[k], 1e-4, "extract --energy: %s vs the planted delta" % mod)
            # --dtype BF16 keeps the layout
            out = path("adapter-bf16")
            js, _ = run("extract", b, t, "--rank", 2, "--dtype", "BF16", "--out", out, "--json")
            if js:
                got, cfg, st = read_adapter(out)
                check(all(v[0] == "BF16" for v in st.t.values()), "extract --dtype BF16: dtypes %s" % {k: v[0] for k, v in st.t.items()})
                rel_close(got["layers.0.q_proj"], dw["layers.0.q_proj.weight"], 2e-2, "extract --dtype BF16: q_proj")

    # mismatches: names, shapes, dtypes -> exit 1 naming the tensor, nothing written
    b = path("base.safetensors")
    bad = [("missing", [(k, "F32", v) for k, v in tuned.items() if k != "layers.0.k_proj.weight"], "layers.0.k_proj.weight"),
           ("shape", [(k, "F32", v[:, :-1] if k == "layers.0.v_proj.weight" else v) for k, v in tuned.items()], "layers.0.v_proj.weight"),
           ("dtype", [(k, "F16" if k == "layers.0.k_proj.weight" else "F32", v) for k, v in tuned.items()], "layers.0.k_proj.weight")]
    for what, ts, name in bad:
        t = path("tuned-%s.safetensors" % what)
        write_st(t, ts + [("pos", "I64", pos)])
        out = path("adapter-bad-%s" % what)
        _, p = run("extract", b, t, "--rank", 2, "--out", out, want=1)
        check(name in p.stderr, "extract with a %s mismatch: stderr does not name %s: %s" % (what, name, p.stderr))
        if what == "shape":
            check("(40, 30)" in p.stderr and "(40, 29)" in p.stderr, "extract with a shape mismatch: stderr lacks the shapes: %s" % p.stderr)
        if what == "dtype":
            check("F32" in p.stderr and "F16" in p.stderr, "extract with a dtype mismatch: stderr lacks the dtypes: %s" % p.stderr)
        no_leftovers(out, "extract (%s mismatch)" % what)
    # nothing differs
    out = path("adapter-same")
    t = path("tuned-copy.safetensors")
    with open(b, "rb") as f, open(t, "wb") as g:
        g.write(f.read())
    _, p = run("extract", b, t, "--rank", 2, "--out", out, want=1)
    no_leftovers(out, "extract (nothing differs)")
    # rank above min(m, n)
    out = path("adapter-rank-too-big")
    _, p = run("extract", b, path("tuned.safetensors"), "--rank", 31, "--out", out, want=1)
    check("layers.0.v_proj.weight" in p.stderr, "extract --rank 31: stderr does not name the 40x30 tensor: %s" % p.stderr)
    no_leftovers(out, "extract --rank 31")

    # a changed input embedding: named and left out by default; --embed writes PEFT's
    # lora_embedding_A (r, vocab) / lora_embedding_B (dim, r) with dW = (B @ A).T, which merge
    # and combine apply
    e0 = rng.standard_normal((300, 16)).astype(np.float32)
    de = (rng.standard_normal((300, 2)) @ rng.standard_normal((2, 16)) * 0.1).astype(np.float32)
    q0 = rng.standard_normal((8, 16)).astype(np.float32)
    dq = (rng.standard_normal((8, 1)) @ rng.standard_normal((1, 16)) * 0.1).astype(np.float32)
    eb, et = path("emb-base.safetensors"), path("emb-tuned.safetensors")
    write_st(eb, [("model.embed_tokens.weight", "F32", e0), ("model.layers.0.q_proj.weight", "F32", q0)])
    write_st(et, [("model.embed_tokens.weight", "F32", e0 + de), ("model.layers.0.q_proj.weight", "F32", q0 + dq)])
    js, p = run("extract", eb, et, "--rank", 2, "--out", path("ad-noemb"), "--json")
    if js:
        check(js["changed_other"] == ["model.embed_tokens.weight"] and "--embed" in p.stderr,
              "extract without --embed: the embedding should be named: %s %s" % (js["changed_other"], p.stderr))
    ad = path("ad-emb")
    js, _ = run("extract", eb, et, "--rank", 2, "--embed", "--out", ad, "--json")
    if js:
        f = St(os.path.join(ad, "adapter_model.safetensors"))
        a = f.get("base_model.model.model.embed_tokens.lora_embedding_A")
        b = f.get("base_model.model.model.embed_tokens.lora_embedding_B")
        check(a.shape == (2, 300) and b.shape == (16, 2), "extract --embed: shapes %s %s" % (a.shape, b.shape))
        rel_close((b @ a).T, de, 1e-5, "extract --embed: (B @ A).T vs the embedding's delta")
        cfg = json.load(open(os.path.join(ad, "adapter_config.json")))
        check("model.embed_tokens" in cfg["target_modules"], "extract --embed: target_modules %s" % cfg["target_modules"])
        m = path("emb-merged.safetensors")
        run("merge", eb, ad, "--out", m)
        rel_close(St(m).get("model.embed_tokens.weight"), e0 + de, 1e-6, "merge of an embedding adapter")
        both = path("ad-emb2")
        run("combine", ad, ad, "--out", both)
        m2 = path("emb-merged2.safetensors")
        run("merge", eb, both, "--out", m2)
        rel_close(St(m2).get("model.embed_tokens.weight"), e0 + 2 * de, 1e-6, "combine of two embedding adapters")


# ---------------------------------------------------------------------------------------------
# combine

def t_combine(rng):
    shapes = {"layers.0.q_proj": (64, 48), "layers.0.v_proj": (40, 30), "layers.1.o_proj": (30, 40)}
    # adapter 1: r 4, alpha 8, every module, F32
    l1 = {mod: (rng.standard_normal((4, n)) * 0.3, rng.standard_normal((m, 4)) * 0.3) for mod, (m, n) in shapes.items()}
    d1 = path("ad1")
    write_adapter(d1, l1, 4, 8, "F32")
    # adapter 2: r 6, alpha 3, v_proj rank 2 alpha 5 (patterns), no o_proj, BF16
    l2 = {}
    for mod in ("layers.0.q_proj", "layers.0.v_proj"):
        m, n = shapes[mod]
        r = 2 if "v_proj" in mod else 6
        l2[mod] = (rng.standard_normal((r, n)) * 0.3, rng.standard_normal((m, r)) * 0.3)
    d2 = path("ad2")
    write_adapter(d2, l2, 6, 3, "BF16", rank_pattern={"v_proj": 2}, alpha_pattern={"v_proj": 5})
    a1, _, _ = read_adapter(d1)
    a2, _, _ = read_adapter(d2)
    w = (0.5, 2.0)
    dense = {mod: w[0] * a1[mod] + (w[1] * a2[mod] if mod in a2 else 0) for mod in shapes}
    # the scales really differ: 8/4, 3/6 and 5/2
    rel_close(a2["layers.0.v_proj"], 2.5 * quantize("BF16", l2["layers.0.v_proj"][1]) @ quantize("BF16", l2["layers.0.v_proj"][0]),
              1e-12, "combine: the helper's alpha_pattern")
    # exact
    out = path("comb-exact")
    js, _ = run("combine", d1, d2, "--weights", "0.5,2", "--out", out, "--json")
    if js:
        got, cfg, st = read_adapter(out)
        check(set(got) == set(shapes), "combine exact: modules %s" % sorted(got))
        for mod, d in dense.items():
            if mod in got:
                rel_close(got[mod], d, 1e-5, "combine exact: %s" % mod)
        ranks = {l["module"]: l["rank"] for l in js["layers"]}
        check(ranks == {"layers.0.q_proj": 10, "layers.0.v_proj": 6, "layers.1.o_proj": 4}, "combine exact: ranks %s" % ranks)
        check(js["exact"] is True, "combine exact: 'exact' is %s" % js["exact"])
    # --rank 3
    out = path("comb-r3")
    js, _ = run("combine", d1, d2, "--weights", "0.5,2", "--rank", 3, "--out", out, "--json")
    if js:
        got, cfg, st = read_adapter(out)
        lay = {l["module"]: l for l in js["layers"]}
        for mod, d in dense.items():
            s = svd(d)[1]
            check(s[2] - s[3] > 1e-2 * s[0], "combine: the test's %s has no gap at rank 3: %s" % (mod, s[:5]))
            if mod in got:
                check(st.t["base_model.model.%s.lora_A.weight" % mod][1][0] == 3, "combine --rank 3: %s rank" % mod)
                rel_close(got[mod], best_rank(d, 3), 1e-4, "combine --rank 3: %s vs numpy's rank-3 SVD of the sum" % mod, ref=d)
                close(lay[mod]["rel_error"], np.sqrt(np.sum(s[3:] ** 2) / np.sum(s ** 2)), 1e-4, "combine --rank 3: %s rel_error" % mod)
    # --rank above a layer's total rank keeps it exact (o_proj has 4)
    out = path("comb-r8")
    js, _ = run("combine", d1, d2, "--weights", "0.5,2", "--rank", 8, "--out", out, "--json")
    if js:
        got, _, _ = read_adapter(out)
        rel_close(got["layers.1.o_proj"], dense["layers.1.o_proj"], 1e-5, "combine --rank 8: o_proj (rank 4) exact")
        rel_close(got["layers.0.v_proj"], dense["layers.0.v_proj"], 1e-5, "combine --rank 8: v_proj (rank 6) exact")
        rel_close(got["layers.0.q_proj"], best_rank(dense["layers.0.q_proj"], 8), 1e-4, "combine --rank 8: q_proj", ref=dense["layers.0.q_proj"])
    # use_rslora: s = alpha / sqrt(r)
    d4 = path("ad4")
    l4 = {"layers.0.v_proj": (rng.standard_normal((4, 30)), rng.standard_normal((40, 4)))}
    write_adapter(d4, l4, 4, 6, "F32", use_rslora=True)
    a4, _, _ = read_adapter(d4)
    rel_close(a4["layers.0.v_proj"], 3 * l4["layers.0.v_proj"][1] @ l4["layers.0.v_proj"][0], 1e-6, "combine: the helper's rslora")
    out = path("comb-rslora")
    js, _ = run("combine", d1, d4, "--out", out, "--json")
    if js:
        got, _, _ = read_adapter(out)
        rel_close(got["layers.0.v_proj"], a1["layers.0.v_proj"] + a4["layers.0.v_proj"], 1e-5, "combine with use_rslora: v_proj")
        rel_close(got["layers.1.o_proj"], a1["layers.1.o_proj"], 1e-5, "combine with use_rslora: o_proj (one adapter)")
    # a rank above min(m, n): exit 1 naming the module
    out = path("comb-r31")
    _, p = run("combine", d1, d2, "--rank", 31, "--out", out, want=1)
    check("proj" in p.stderr and "min(" in p.stderr, "combine --rank 31: stderr does not name the module: %s" % p.stderr)
    no_leftovers(out, "combine --rank 31")
    # different shapes: exit 1, the module named, nothing written
    l3 = {"layers.0.q_proj": (rng.standard_normal((2, 50)), rng.standard_normal((64, 2)))}
    d3 = path("ad3")
    write_adapter(d3, l3, 2, 2, "F32")
    out = path("comb-bad")
    _, p = run("combine", d1, d3, "--out", out, want=1)
    check("layers.0.q_proj" in p.stderr, "combine of different shapes: stderr does not name the module: %s" % p.stderr)
    no_leftovers(out, "combine of different shapes")
    d5 = path("ad5")
    write_adapter(d5, {"layers.0.v_proj": l4["layers.0.v_proj"]}, 4, 4, base="other.safetensors")
    _, p = run("combine", d1, d5, "--out", out, want=1)
    check("other.safetensors" in p.stderr and d5 in p.stderr, "combine over different bases: stderr %s" % p.stderr)
    no_leftovers(out, "combine over different bases")
    _, p = run("combine", d1, d2, "--weights", "1,2,3", "--out", out, want=2)
    no_leftovers(out, "combine with 3 weights for 2 adapters")


# ---------------------------------------------------------------------------------------------
# merge

def t_merge(rng):
    shapes = {"layers.0.q_proj": (64, 48), "layers.0.v_proj": (40, 30)}
    base_t = [("layers.0.q_proj.weight", "F32", rng.standard_normal((64, 48))),
              ("layers.0.q_proj.bias", "F32", rng.standard_normal(64)),
              ("layers.0.v_proj.weight", "F16", rng.standard_normal((40, 30))),
              ("layers.0.k_proj.weight", "F32", rng.standard_normal((64, 48))),
              ("pos", "I64", np.arange(5, dtype=np.int64))]
    base = path("base.safetensors")
    write_st(base, base_t, {"format": "pt"})
    layers = {mod: (rng.standard_normal((3, n)) * 0.2, rng.standard_normal((m, 3)) * 0.2) for mod, (m, n) in shapes.items()}
    ad = path("ad-merge")
    write_adapter(ad, layers, 3, 6, "F32", rank_pattern={"v_proj": 3}, alpha_pattern={"v_proj": 1.5})
    delta, _, _ = read_adapter(ad)
    sb = St(base)
    merged = path("merged.safetensors")
    js, _ = run("merge", base, ad, "--out", merged, "--json")
    if not js:
        return
    sm = St(merged)
    check(set(sm.t) == set(sb.t), "merge: tensors %s" % sorted(sm.t))
    for name, dt, _ in base_t:
        mod = name[:-len(".weight")]
        if mod not in delta:
            check(sm.t[name] == sb.t[name], "merge: %s is not copied unchanged" % name)
            continue
        check(sm.t[name][0] == dt, "merge: %s is %s, want %s" % (name, sm.t[name][0], dt))
        w, got = sb.get(name), sm.get(name)
        want = w + delta[mod]
        if dt == "F32":
            check(np.max(np.abs(got - want)) <= 4 * EPS32 * np.max(np.abs(want)) + 1e-6 * np.linalg.norm(w) / np.sqrt(w.size),
                  "merge: %s max |W' - (W + sBA)| = %.3g" % (name, np.max(np.abs(got - want))))
        else:  # F16: the nearest F16 to W + sBA (or its neighbour when float32 rounding ties)
            ulp = np.spacing(np.abs(want).astype(np.float16)).astype(np.float64)
            check(np.all(np.abs(got - want) <= ulp), "merge: %s is not W + sBA rounded to F16" % name)
        rel_close(got, want, 1e-6 if dt == "F32" else 1e-3, "merge: %s" % name, ref=w)
        row = [l for l in js["layers"] if l["name"] == name]
        if check(len(row) == 1, "merge: no JSON row for %s" % name):
            close(row[0]["delta_rel"], np.linalg.norm(delta[mod]) / np.linalg.norm(w), 1e-5, "merge: %s delta_rel" % name)
    rec = json.loads((sm.meta or {}).get("lowrank", "{}"))
    check(rec.get("command") == "merge" and sm.meta.get("format") == "pt", "merge: metadata %s" % sm.meta)
    # unmerge against the original
    un = path("unmerged.safetensors")
    js, _ = run("merge", merged, ad, "--unmerge", "--reference", base, "--out", un, "--json")
    if js:
        su = St(un)
        for name, dt, _ in base_t:
            if dt == "I64" or name.endswith("bias") or name[:-len(".weight")] not in delta:
                check(su.t[name] == sb.t[name], "unmerge: %s is not copied unchanged" % name)
                continue
            w, got = sb.get(name), su.get(name)
            check(su.t[name][0] == dt, "unmerge: %s dtype %s" % (name, su.t[name][0]))
            rel_close(got, w, 1e-6 if dt == "F32" else 2e-3, "unmerge: %s vs the base" % name)
            row = [l for l in js["layers"] if l["name"] == name][0]
            d = np.linalg.norm(got - w) / np.linalg.norm(w)
            close(row["reference_rel"], d, 1e-6 + 1e-3 * d, "unmerge: %s reference_rel" % name)
            close(row["reference_max"], np.max(np.abs(got - w)), 1e-6 + 1e-3 * np.max(np.abs(got - w)), "unmerge: %s reference_max" % name)
    # an adapter whose module has another shape than the base tensor: exit 1 naming it
    bad = path("ad-bad")
    write_adapter(bad, {"layers.0.v_proj": (np.ones((2, 31)), np.ones((40, 2)))}, 2, 2)
    out = path("merged-bad.safetensors")
    _, p = run("merge", base, bad, "--out", out, want=1)
    check("layers.0.v_proj.weight" in p.stderr, "merge with a wrong shape: stderr does not name the tensor: %s" % p.stderr)
    no_leftovers(out, "merge with a wrong shape")
    bad = path("ad-missing")
    write_adapter(bad, {"layers.0.o_proj": (np.ones((2, 30)), np.ones((40, 2)))}, 2, 2)
    _, p = run("merge", base, bad, "--out", out, want=1)
    check("layers.0.o_proj" in p.stderr, "merge with a missing tensor: stderr does not name it: %s" % p.stderr)
    no_leftovers(out, "merge with a missing tensor")


# ---------------------------------------------------------------------------------------------
# exit codes

def t_errors(rng):
    tensors, vals = make_model(rng)
    model = path("model.safetensors")
    write_st(model, tensors, {"format": "pt"})
    out = path("out.safetensors")

    def expect(want, needle, *args, outp=out):
        _, p = run(*args, want=want)
        if needle is not None:
            check(needle in p.stderr, "lowrank %s: stderr lacks %r: %s" % (" ".join(map(str, args)), needle, p.stderr))
        if outp:
            no_leftovers(outp, "lowrank " + " ".join(map(str, args)))

    # usage: 2
    expect(2, "--bogus", "compress", model, "--rank", 2, "--out", out, "--bogus")
    expect(2, "--bogus", "inspect", model, "--bogus")
    expect(2, None, "--bogus")
    expect(2, None, "nosuchcommand")
    expect(2, "--out", "compress", model, "--rank", 2)
    # empty paths are usage errors, before any work (they used to fail at the write, status 1;
    # rsvd's case is in tool_rsvd_check.sh, which runs with MPI's sanitizer settings)
    expect(2, "--out: empty path", "compress", model, "--rank", 2, "--out=")
    expect(2, "--out: empty path", "extract", model, model, "--rank", 2, "--out", "")
    expect(2, "--spectrum: empty path", "inspect", model, "--spectrum=")
    expect(2, "an empty path", "inspect", "")
    expect(2, "an empty path", "merge", model, "", "--out", out)
    expect(2, "--reference: empty path", "merge", model, path("ad"), "--out", out, "--reference", "")
    expect(2, "exactly one", "compress", model, "--rank", 2, "--energy", 0.9, "--out", out)
    expect(2, "--budget", "compress", model, "--budget", 0, "--out", out)
    expect(2, "--budget", "compress", model, "--budget", 1.5, "--out", out)
    expect(2, "--energy", "compress", model, "--energy", 0, "--out", out)
    expect(2, "--error", "compress", model, "--error", 1, "--out", out)
    expect(2, "--rank", "compress", model, "--rank", 0, "--out", out)
    with open(model, "rb") as f:
        before = f.read()
    expect(2, "input", "compress", model, "--rank", 2, "--out", model, outp=None)
    check(open(model, "rb").read() == before, "compress --out MODEL changed the input")
    expect(2, "input", "compress", model, "--rank", 2, "--out", os.path.join(WORK, ".", "model.safetensors"), outp=None)
    expect(2, "--out", "extract", model, model + "x", "--rank", 2)
    expect(2, "--out", "merge", model, path("nodir"))
    expect(2, "--out", "combine", path("nodir"))
    expect(2, None, "inspect")
    # --only / --skip regexes that glibc's regcomp would copy into gigabytes or recurse on
    # until the stack overflows are refused at once (found by the toolcmd fuzz target)
    expect(2, "a quantifier follows another", "inspect", model, "--only", "a" + "+" * 30)
    expect(2, "more than 4096 extra nodes", "compress", model, "--rank", 2, "--skip", "(" * 30 + "a" + "+)" * 30, "--out", out)
    expect(2, "more than 4096 extra nodes", "inspect", model, "--only", "((a{1,100}){1,100}){1,3}")
    # repeats of what can match "" (closures that grow exponentially; the adapter_config target)
    expect(2, "can match the empty string", "inspect", model, "--only", "(" * 9 + "()" + ")+" * 9)
    expect(2, "nest more than 64 deep", "inspect", model, "--only", "(" * 20000 + "x" + ")" * 20000)
    # an ordinary one with repetitions passes (and here selects nothing: a run-time failure)
    expect(1, "no 2-D floating tensor", "inspect", model, "--only", "^nothing\\.[0-9]+\\.(q|v)_proj\\.weight{1,2}$")
    # run time: 1
    missing = path("missing.safetensors")
    expect(1, missing, "compress", missing, "--rank", 2, "--out", out)
    expect(1, missing, "inspect", missing)
    # a value out of float's range and a NaN: the file and the tensor named once (issue 19: the
    # tool used to wrap the library's message in its own "FILE: m: FILE: m: ...")
    big = path("f64big.safetensors")
    vbig = np.ones((4, 3))
    vbig[0, 0] = 1e300
    write_st(big, [("m", "F64", vbig)])
    nan = path("nan.safetensors")
    vnan = np.ones((4, 3), np.float32)
    vnan[1, 2] = np.nan
    write_st(nan, [("w", "F32", vnan)])
    for args, f, needle in ((("inspect", big), big, "m: element 0 = 1e+300 is outside float32's range"),
                            (("compress", big, "--rank", 1, "--out", out), big, "m: element 0"),
                            (("inspect", nan), nan, "w: entry (1,2) is NaN"),
                            (("compress", nan, "--rank", 1, "--out", out), nan, "w: entry (1,2) is NaN"),
                            (("extract", nan, model, "--rank", 1, "--out", path("adn")), nan, None)):
        _, p = run(*args, want=1)
        check(p.stderr.count(f) == 1, "lowrank %s: the file should be named once: %s" % (args[0], p.stderr))
        if needle:
            check(needle in p.stderr and "spectrum w" not in p.stderr,
                  "lowrank %s: stderr lacks %r: %s" % (args[0], needle, p.stderr))
    trunc = path("truncated.safetensors")
    with open(trunc, "wb") as f:
        f.write(before[:len(before) - 100])
    expect(1, trunc, "compress", trunc, "--rank", 2, "--out", out)
    expect(1, trunc, "inspect", trunc)
    with open(trunc, "wb") as f:
        f.write(before[:6])
    expect(1, trunc, "inspect", trunc)
    expect(1, "layers.0.attn.v_proj.weight: rank 31 exceeds min(40, 30)", "compress", model, "--rank", 31, "--out", out)
    expect(1, "layers.1.small.weight", "compress", model, "--rank", 17, "--out", out)          # 20x16
    expect(1, model, "compress", model, "--rank", 2, "--only", "nothing-matches", "--out", out)
    expect(1, model, "inspect", model, "--only", "nothing-matches")
    expect(1, None, "merge", model, path("nodir"), "--out", out)
    expect(1, None, "combine", path("nodir"), "--out", path("comb"), outp=path("comb"))
    # an output in a directory that does not exist
    deep = path("no/such/dir/out.safetensors")
    expect(1, None, "compress", model, "--rank", 2, "--out", deep, outp=None)
    check(not os.path.exists(path("no")), "compress into a missing directory created it")
    # an output that exists is replaced only on success: a failure leaves it as it was
    with open(out, "wb") as f:
        f.write(b"old")
    run("compress", model, "--rank", 31, "--out", out, want=1)
    check(open(out, "rb").read() == b"old", "a failed compress changed the existing --out file")
    os.unlink(out)
    # --help of each subcommand exits 0
    for sub in ("inspect", "compress", "extract", "combine", "merge"):
        _, p = run(sub, "--help")
        check(p.stdout.startswith("usage: lowrank " + sub), "%s --help: %r" % (sub, p.stdout[:60]))


SECTIONS = {"inspect": t_inspect, "compress": t_compress, "extract": t_extract, "combine": t_combine,
            "merge": t_merge, "errors": t_errors}


def t_clean(rng):
    """clean-temps: old unlocked temps of our naming go; young ones, other names, links and a
    file a live writer holds (flock, as lr_atomic_open does) stay, whatever their age"""
    import fcntl
    d = path("cl")
    os.mkdir(d)
    names = {".m.safetensors.tmp-AbC123": 7200, ".n.npy.tmp-zzzzzz": 10, ".m.tmp-abc": 7200, "m.tmp-ABCDEF": 7200,
             ".held.npy.tmp-HHHHHH": 7200}
    for n, age in names.items():
        with open(os.path.join(d, n), "w") as f:
            f.write("partial")
        t = os.path.getmtime(os.path.join(d, n)) - age
        os.utime(os.path.join(d, n), (t, t))
    os.symlink(os.path.join(d, "m.tmp-ABCDEF"), os.path.join(d, ".l.npy.tmp-LLLLLL"))
    held = open(os.path.join(d, ".held.npy.tmp-HHHHHH"), "a")
    fcntl.flock(held, fcntl.LOCK_EX)
    js, _ = run("clean-temps", d, "--dry-run", "--json")
    if js:
        check(js["removed"] == 0 and len(js["files"]) == 2 and js["in_use"] == 1, "clean-temps --dry-run: %s" % js)
        check(os.path.exists(os.path.join(d, ".m.safetensors.tmp-AbC123")), "clean-temps --dry-run removed a file")
    js, _ = run("clean-temps", d, "--json")
    left = sorted(os.listdir(d))
    want = sorted([".n.npy.tmp-zzzzzz", ".m.tmp-abc", "m.tmp-ABCDEF", ".held.npy.tmp-HHHHHH", ".l.npy.tmp-LLLLLL"])
    check(left == want, "clean-temps: left %s, want %s" % (left, want))
    if js:
        check(js["removed"] == 1 and js["in_use"] == 1, "clean-temps --json: %s" % js)
    held.close()  # the writer is gone: its temp file is stale now
    js, _ = run("clean-temps", d, "--older-than", 3600, "--json")
    check(not os.path.exists(os.path.join(d, ".held.npy.tmp-HHHHHH")), "clean-temps: a released old temp was kept")
    check(os.path.exists(os.path.join(d, ".n.npy.tmp-zzzzzz")), "clean-temps: a young temp was removed")
    check(os.path.islink(os.path.join(d, ".l.npy.tmp-LLLLLL")), "clean-temps: removed a symbolic link")
    run("clean-temps", path("no-such-dir"), want=1)
    run("clean-temps", want=2)
    run("clean-temps", d, "--older-than", "-1", want=2)


SECTIONS["clean"] = t_clean


# ---------------------------------------------------------------------------------------------
# sharded checkpoints: a directory of model-0000k-of-0000N.safetensors + model.safetensors.index.json

INDEX = "model.safetensors.index.json"


def shard_name(k, n, prefix="model"):
    return "%s-%05d-of-%05d.safetensors" % (prefix, k, n)


def write_index(d, weight_map, total_size, name=INDEX):
    """the index as save_pretrained writes it"""
    with open(os.path.join(d, name), "w") as f:
        json.dump({"metadata": {"total_size": total_size}, "weight_map": weight_map}, f, indent=2)


def write_sharded(d, shards, metadata=None):
    """shards: [(file name, [(name, dtype, array)])]; the shards and their index"""
    os.makedirs(d, exist_ok=True)
    wm, total = {}, 0
    for fname, ts in shards:
        write_st(os.path.join(d, fname), ts, metadata)
        for name, dt, x in ts:
            wm[name] = fname
            total += len(encode(dt, x))
    write_index(d, wm, total)


def snapshot(d):
    """{file name: bytes} of a directory (or {base name: bytes} of one file)"""
    if not os.path.isdir(d):
        return {os.path.basename(d): open(d, "rb").read()} if os.path.exists(d) else {}
    out = {}
    for f in sorted(os.listdir(d)):
        p = os.path.join(d, f)
        out[f] = open(p, "rb").read() if os.path.isfile(p) else None
    return out


def no_temps(d, what):
    """neither d nor its parent directory holds a .NAME.tmp-* file"""
    for x in (d, os.path.dirname(os.path.abspath(d))):
        if os.path.isdir(x):
            left = [f for f in os.listdir(x) if ".tmp-" in f]
            check(not left, "%s: temporary files left in %s: %s" % (what, x, left))


def read_sharded(d, tag):
    """(index JSON, {shard file: St}) of a sharded output directory, or (None, {}) when it does not parse"""
    try:
        with open(os.path.join(d, INDEX)) as f:
            idx = json.load(f)
        shards = {s: St(os.path.join(d, s)) for s in sorted(set(idx["weight_map"].values()))}
        return idx, shards
    except (OSError, ValueError, KeyError, TypeError) as e:
        fail("%s: %s does not read back: %s" % (tag, d, e))
        return None, {}


def check_sharded(tag, d, want_files):
    """d holds exactly want_files + the index; the index's weight_map is what the files hold and
    its total_size the sum of their tensors' bytes. Returns (index, {shard: St})."""
    got = sorted(os.listdir(d)) if os.path.isdir(d) else None
    check(got == sorted(list(want_files) + [INDEX]), "%s: %s holds %s, want %s + the index" % (tag, d, got, sorted(want_files)))
    idx, shards = read_sharded(d, tag)
    if idx is None:
        return None, {}
    for f in want_files:
        if f not in shards and os.path.isfile(os.path.join(d, f)):
            fail("%s: %s holds no tensor the index lists" % (tag, f))
            shards[f] = St(os.path.join(d, f))
    held = {t: s for s, st in shards.items() for t in st.t}
    check(idx["weight_map"] == held, "%s: the index's weight_map does not match the shards: %s" %
          (tag, sorted(set(idx["weight_map"].items()) ^ set(held.items()))[:6]))
    total = sum(len(raw) for st in shards.values() for _, _, raw in st.t.values())
    check(idx.get("metadata", {}).get("total_size") == total, "%s: metadata %s, want total_size %d" % (tag, idx.get("metadata"), total))
    return idx, shards


def tensors_of(shards):
    """{name: (dtype, shape, raw)} over every shard"""
    return {t: v for st in shards.values() for t, v in st.t.items()}


def make_sharded_model(rng):
    """(layers as [[(name, dtype, array)]], one list per shard, and the tuned copy, same layout):
    3 decoder layers of F32/BF16 projections of rank 6 (+ noise) and F32 norms; the tuned copy
    adds a rank-3 delta to every 2-D weight"""
    hid = 40
    shapes = [("self_attn.q_proj", 40, hid, "F32"), ("self_attn.k_proj", 24, hid, "BF16"), ("self_attn.v_proj", 24, hid, "BF16"),
              ("self_attn.o_proj", hid, 40, "F32"), ("mlp.up_proj", 64, hid, "BF16"), ("mlp.down_proj", hid, 64, "F32")]
    base, tuned = [], []
    for layer in range(3):
        b, t = [], []
        norm = 1 + 0.1 * rng.standard_normal(hid)
        b.append(("model.layers.%d.input_layernorm.weight" % layer, "F32", norm))
        t.append(b[-1])
        for mod, m, n, dt in shapes:
            name = "model.layers.%d.%s.weight" % (layer, mod)
            w = with_spectrum(rng, m, n, 2.0 * 0.6 ** np.arange(6)) + 1e-3 * rng.standard_normal((m, n))
            dw = with_spectrum(rng, m, n, [0.4, 0.25, 0.15])
            b.append((name, dt, quantize(dt, w)))
            t.append((name, dt, quantize(dt, w + dw)))
        norm = 1 + 0.1 * rng.standard_normal(hid)
        b.append(("model.layers.%d.post_attention_layernorm.weight" % layer, "F32", norm))
        t.append(b[-1])
        base.append(b), tuned.append(t)
    base[-1].append(("model.norm.weight", "F32", np.ones(hid)))
    tuned[-1].append(base[-1][-1])
    return base, tuned


def run_fsize(args, limit):
    """the program with its files limited to limit bytes (RLIMIT_FSIZE, as sh's ulimit -f sets it)
    and SIGXFSZ ignored (Python ignores it and restore_signals=False keeps that), so a write past
    the limit fails with EFBIG instead of killing the program"""
    import resource
    import signal

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([PROG] + [str(a) for a in args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          preexec_fn=limited, restore_signals=False)


def t_shards(rng):
    base_l, tuned_l = make_sharded_model(rng)
    names = [n for part in base_l for n, _, _ in part]
    mats = [n for part in base_l for n, _, x in part if np.ndim(x) == 2]
    files = [shard_name(k + 1, 3) for k in range(3)]
    src_shard = {n: files[k] for k, part in enumerate(base_l) for n, _, _ in part}
    meta = {"format": "pt"}
    # the three layouts: one file, a directory with model.safetensors, 3 shards + index
    base_f, tuned_f = path("base.safetensors"), path("tuned.safetensors")
    write_st(base_f, [x for part in base_l for x in part], meta)
    write_st(tuned_f, [x for part in tuned_l for x in part], meta)
    base_d = path("base-dir")
    os.mkdir(base_d)
    write_st(os.path.join(base_d, "model.safetensors"), [x for part in base_l for x in part], meta)
    base_s, tuned_s = path("base-sh"), path("tuned-sh")
    write_sharded(base_s, list(zip(files, base_l)), meta)
    write_sharded(tuned_s, list(zip(files, tuned_l)), meta)
    base_i = os.path.join(base_s, INDEX)
    with open(base_i) as f:
        in_index = json.load(f)
    sb = St(base_f)

    # 1. inspect: the same rows from every way of naming the model
    rows = {}
    for tag, m in (("file", base_f), ("dir", base_d), ("sharded dir", base_s), ("index", base_i)):
        js, _ = run("inspect", m, "--json", "--threads", 1)
        if js:
            rows[tag] = js
    if check(len(rows) == 4, "shards: inspect failed on %s" % sorted({"file", "dir", "sharded dir", "index"} - set(rows))):
        ref = rows["file"]
        got = [r["name"] for r in ref["tensors"]]
        check(got == mats, "shards: inspect of the file lists %s, want %s" % (got, mats))
        check(sorted(x["tensor"] for x in ref["skipped"]) == sorted(set(names) - set(mats)), "shards: inspect skipped %s" % ref["skipped"])
        for r in ref["tensors"]:
            s = svd(sb.get(r["name"]))[1]
            rel_close(np.array(r["singular_values"]), s, 1e-5, "shards: inspect %s singular values" % r["name"], ref=s[:1])
        for tag in ("dir", "sharded dir", "index"):
            for k in ("tensors", "skipped", "totals"):
                check(rows[tag].get(k) == ref.get(k), "shards: inspect of the %s: %r differs from the file's" % (tag, k))

    # 2. extract: the same adapter from the file pair, the sharded pair and a mixed pair
    ads = {}
    for tag, b, t in (("file", base_f, tuned_f), ("sharded", base_s, tuned_s), ("mixed", base_f, os.path.join(tuned_s, INDEX))):
        out = path("ad-" + tag)
        _, p = run("extract", b, t, "--rank", 4, "--threads", 1, "--out", out)
        if p.returncode == 0:
            ads[tag] = out
    if check(len(ads) == 3, "shards: extract failed"):
        cfg = {}
        for tag, d in ads.items():
            with open(os.path.join(d, "adapter_config.json")) as f:
                cfg[tag] = json.load(f)
            check(sorted(os.listdir(d)) == ["adapter_config.json", "adapter_model.safetensors"], "shards: extract %s wrote %s" % (tag, os.listdir(d)))
        raw = open(os.path.join(ads["file"], "adapter_model.safetensors"), "rb").read()
        for tag in ("sharded", "mixed"):
            check(open(os.path.join(ads[tag], "adapter_model.safetensors"), "rb").read() == raw,
                  "shards: extract from the %s models: adapter_model.safetensors differs from the single file's" % tag)
            a, b = dict(cfg["file"]), dict(cfg[tag])
            a.pop("base_model_name_or_path", None), b.pop("base_model_name_or_path", None)
            check(a == b, "shards: extract from the %s models: adapter_config.json differs: %s vs %s" % (tag, b, a))
        delta, _, st = read_adapter(ads["sharded"])
        check(set(delta) == {n[:-len(".weight")] for n in mats}, "shards: extract: modules %s" % sorted(delta))
        stt = St(tuned_f)
        n = "model.layers.1.self_attn.q_proj.weight"  # F32: the planted rank-3 delta, recovered
        rel_close(delta[n[:-len(".weight")]], stt.get(n) - sb.get(n), 1e-4, "shards: extract %s" % n)

    # 3. compress the sharded model: the input's shard names, each factor where its weight was
    ref_c = path("comp.safetensors")
    run("compress", base_f, "--rank", 4, "--threads", 1, "--out", ref_c)
    comp_s = path("comp-sh")
    run("compress", base_s, "--rank", 4, "--threads", 1, "--out", comp_s)
    idx, shards = check_sharded("shards: compress", comp_s, files)
    want_map = {}
    for n in names:
        for t in (factor_names(n) if n in mats else (n,)):
            want_map[t] = src_shard[n]
    if idx is not None:
        check(idx["weight_map"] == want_map, "shards: compress: tensors not in their source's shard: %s" %
              sorted(set(idx["weight_map"].items()) ^ set(want_map.items()))[:6])
        for s, st in shards.items():
            rec = json.loads((st.meta or {}).get("lowrank", "{}"))
            check(st.meta.get("format") == "pt" and rec.get("command") == "compress", "shards: compress: %s metadata %s" % (s, st.meta))
        if os.path.exists(ref_c):
            check(tensors_of(shards) == St(ref_c).t, "shards: compress of the shards differs from compress of the file")
        js, _ = run("inspect", comp_s, "--json")
        if js:
            got = sorted(r["name"] for r in js["tensors"])
            check(got == sorted(t for n in mats for t in factor_names(n)), "shards: inspect of the compressed shards: %s" % got)
    # through the index path: the same files; the single-file directory: a file
    comp_i = path("comp-idx")
    run("compress", base_i, "--rank", 4, "--threads", 1, "--out", comp_i)
    check(snapshot(comp_i) == snapshot(comp_s), "shards: compress of the index path differs from compress of its directory")
    comp_d = path("comp-d.safetensors")
    run("compress", base_d, "--rank", 4, "--threads", 1, "--out", comp_d)
    check(os.path.isfile(comp_d) and os.path.exists(ref_c) and St(comp_d).t == St(ref_c).t,
          "shards: compress of a directory with model.safetensors is not the file's output")
    # an older output of the same layout is replaced
    run("compress", base_s, "--rank", 2, "--threads", 1, "--out", comp_i)
    idx, shards = check_sharded("shards: compress --rank 2 over an older output", comp_i, files)
    got = tensors_of(shards)
    check(all(got.get(factor_names(n)[1], (0, (0,)))[1][0] == 2 for n in mats), "shards: compress --rank 2 over an older output: ranks")
    no_temps(comp_i, "shards: compress --rank 2 over an older output")

    # 4. merge the extracted adapter into the sharded base: the same layout, the file's values
    if "sharded" in ads:
        ref_m, merged_s = path("merged.safetensors"), path("merged-sh")
        run("merge", base_f, ads["sharded"], "--threads", 1, "--out", ref_m)
        run("merge", base_s, ads["sharded"], "--threads", 1, "--out", merged_s)
        idx, shards = check_sharded("shards: merge", merged_s, files)
        if idx is not None:
            check(idx["weight_map"] == in_index["weight_map"], "shards: merge: the weight_map differs from the input's")
            check(idx["metadata"]["total_size"] == in_index["metadata"]["total_size"], "shards: merge: total_size %s, input %s" %
                  (idx["metadata"], in_index["metadata"]))
            if os.path.exists(ref_m):
                check(tensors_of(shards) == St(ref_m).t, "shards: merge of the shards differs from merge of the file")
            got = tensors_of(shards)
            n = "model.layers.2.mlp.down_proj.weight"
            rel_close(decode(got[n][0], got[n][2], got[n][1]),
                      sb.get(n) + delta[n[:-len(".weight")]], 1e-6, "shards: merge %s = W + B.A" % n, ref=sb.get(n))
            for n in names:
                if n not in mats:
                    check(got[n] == sb.t[n], "shards: merge: %s is not copied unchanged" % n)

    # 5. --max-shard-size: shards packed in order, a tensor larger than SIZE alone
    def pack(order, size):
        """[[names of shard k]]: order packed in order, a new shard when the next tensor would
        take a non-empty one above size"""
        want, used = [[]], 0
        for name, nb in order:
            if want[-1] and used + nb > size:
                want.append([])
                used = 0
            want[-1].append(name)
            used += nb
        return want

    def check_packed(tag, out, size, order, ref_t):
        """order: [(name, nbytes)] in the output's order; ref_t: the values, unsharded"""
        want = pack(order, size)
        nsh = len(want)
        wfiles = [shard_name(k + 1, nsh) for k in range(nsh)]
        idx, shards = check_sharded(tag, out, wfiles)
        if idx is None:
            return
        for f, ns in zip(wfiles, want):
            st = shards.get(f)
            if st is None:
                continue
            data = sum(len(v[2]) for v in st.t.values())
            check(data <= size or len(st.t) == 1, "%s: %s holds %d bytes in %d tensors, above %d" % (tag, f, data, len(st.t), size))
            check(set(st.t) == set(ns), "%s: %s holds %s, want %s" % (tag, f, sorted(st.t), sorted(ns)))
        check(tensors_of(shards) == ref_t, "%s: the values differ from the unsharded output" % tag)
        return nsh

    if os.path.exists(ref_c):
        rc = St(ref_c)
        order = []
        for n in names:
            for t in (factor_names(n) if n in mats else (n,)):
                order.append((t, len(rc.t[t][2])))
        check(max(nb for _, nb in order) > 1000, "shards: no compressed tensor is above 1KB")
        # 4KB packs otherwise than 4 KiB would: the unit is 1000 bytes
        check(pack(order, 4000) != pack(order, 4096), "shards: the test's 4KB packs as 4KiB would")
        out = path("comp-1kb")
        run("compress", base_f, "--rank", 4, "--threads", 1, "--max-shard-size", "1KB", "--out", out)
        nsh = check_packed("shards: compress --max-shard-size 1KB", out, 1000, order, rc.t)
        check(nsh and nsh > 3, "shards: compress --max-shard-size 1KB: %s shards" % nsh)
        out = path("comp-4kb")
        run("compress", base_s, "--rank", 4, "--threads", 1, "--max-shard-size", "4KB", "--out", out)
        check_packed("shards: compress of the shards --max-shard-size 4KB", out, 4000, order, rc.t)
        out = path("comp-1mb")
        run("compress", base_f, "--rank", 4, "--threads", 1, "--max-shard-size", "1MB", "--out", out)
        got = sorted(os.listdir(out)) if os.path.isdir(out) else None
        check(got == ["model.safetensors"], "shards: compress --max-shard-size 1MB: %s holds %s, want model.safetensors alone" % (out, got))
        if os.path.isfile(os.path.join(out, "model.safetensors")):
            check(St(os.path.join(out, "model.safetensors")).t == rc.t, "shards: compress --max-shard-size 1MB: values differ")
        if "sharded" in ads and os.path.exists(path("merged.safetensors")):
            rm = St(path("merged.safetensors"))
            out = path("merged-40kb")
            run("merge", base_s, ads["sharded"], "--threads", 1, "--max-shard-size", 40000, "--out", out)
            check_packed("shards: merge --max-shard-size 40000", out, 40000, [(n, len(rm.t[n][2])) for n in names], rm.t)

    # 6. refusals: exit 1 naming the index and the tensor or shard, no output, no temp file
    def variant(tag):
        d = path("bad-" + tag)
        os.mkdir(d)
        for f in files:
            with open(os.path.join(base_s, f), "rb") as g, open(os.path.join(d, f), "wb") as h:
                h.write(g.read())
        return d, json.loads(json.dumps(in_index))

    def refused(tag, d, needles, index=True):
        """inspect, compress, extract and merge on d: exit 1, the messages name the index and one of needles"""
        ix = os.path.join(d, INDEX)
        outs = {"compress": path("out-" + tag), "merge": path("outm-" + tag), "extract": path("outx-" + tag)}
        cmds = [("inspect", None, ["inspect", d]), ("compress", outs["compress"], ["compress", d, "--rank", 4, "--out", outs["compress"]]),
                ("merge", outs["merge"], ["merge", d, ads.get("sharded", path("nodir")), "--out", outs["merge"]]),
                ("extract", outs["extract"], ["extract", base_s, d, "--rank", 4, "--out", outs["extract"]])]
        before = snapshot(d)
        for sub, out, args in cmds:
            _, p = run(*args, want=1)
            what = "shards: %s (%s)" % (sub, tag)
            if index:
                check(ix in p.stderr, "%s: stderr does not name the index %s: %s" % (what, ix, p.stderr))
            check(any(x in p.stderr for x in needles), "%s: stderr names none of %s: %s" % (what, needles, p.stderr))
            if out:
                no_leftovers(out, what)
        check(snapshot(d) == before, "shards: refusal (%s) changed the input" % tag)

    d, ix = variant("missing-shard")
    write_index(d, ix["weight_map"], ix["metadata"]["total_size"])
    os.unlink(os.path.join(d, files[1]))
    refused("missing-shard", d, [files[1]])

    d, ix = variant("listed-absent")
    ix["weight_map"]["model.layers.1.self_attn.rotary.weight"] = files[1]
    write_index(d, ix["weight_map"], ix["metadata"]["total_size"])
    refused("listed-absent", d, ["model.layers.1.self_attn.rotary.weight"])

    d, ix = variant("unlisted")
    del ix["weight_map"]["model.layers.2.mlp.up_proj.weight"]
    write_index(d, ix["weight_map"], ix["metadata"]["total_size"])
    refused("unlisted", d, ["model.layers.2.mlp.up_proj.weight"])
    _, p = run("inspect", os.path.join(d, INDEX), want=1)   # the index named directly
    check(os.path.join(d, INDEX) in p.stderr and "model.layers.2.mlp.up_proj.weight" in p.stderr,
          "shards: inspect INDEX (unlisted): %s" % p.stderr)

    d, ix = variant("two-shards")   # shard 3 holds layer 0's input norm too (the index lists shard 1)
    write_st(os.path.join(d, files[2]), base_l[2] + [base_l[0][0]], meta)
    write_index(d, ix["weight_map"], ix["metadata"]["total_size"])
    refused("two-shards", d, [base_l[0][0][0]])

    d, ix = variant("dotdot")       # ../x.safetensors exists and holds the tensor: only the path is wrong
    moved = base_l[1][1:3]
    write_st(os.path.join(d, files[1]), [x for x in base_l[1] if x not in moved], meta)
    write_st(path("x.safetensors"), moved, meta)
    for n, _, _ in moved:
        ix["weight_map"][n] = "../x.safetensors"
    write_index(d, ix["weight_map"], ix["metadata"]["total_size"])
    refused("dotdot", d, ["../x.safetensors"] + [n for n, _, _ in moved])

    d, ix = variant("absolute")
    write_st(os.path.join(d, files[1]), [x for x in base_l[1] if x not in moved], meta)
    for n, _, _ in moved:
        ix["weight_map"][n] = path("x.safetensors")
    write_index(d, ix["weight_map"], ix["metadata"]["total_size"])
    refused("absolute", d, [path("x.safetensors")] + [n for n, _, _ in moved])

    d, ix = variant("extra-shard")  # model-00004-of-00003.safetensors beside the index, unlisted
    write_index(d, ix["weight_map"], ix["metadata"]["total_size"])
    write_st(os.path.join(d, shard_name(4, 3)), [("model.layers.3.input_layernorm.weight", "F32", np.ones(40))], meta)
    refused("extra-shard", d, [shard_name(4, 3)])

    d, ix = variant("empty-map")
    write_index(d, {}, 0)
    refused("empty-map", d, ["weight_map", "no tensor"])

    d, ix = variant("bad-json")
    with open(os.path.join(d, INDEX), "w") as f:
        f.write(json.dumps(ix)[:-20] + ",,}")
    refused("bad-json", d, [INDEX])

    d = path("bad-empty-dir")      # neither model.safetensors nor an index
    os.mkdir(d)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write("{}")
    refused("empty-dir", d, [d], index=False)

    # an output directory holding shards of another layout: refused, left as it was
    for sub, args in (("compress", ["compress", base_s, "--rank", 4]), ("merge", ["merge", base_s, ads.get("sharded", path("nodir"))])):
        for tag, content in (("2 shards", [shard_name(1, 2), shard_name(2, 2), INDEX]), ("model.safetensors", ["model.safetensors"])):
            out = path("other-layout-%s-%s" % (sub, tag.replace(" ", "-").replace(".", "-")))
            os.mkdir(out)
            for f in content:
                with open(os.path.join(out, f), "wb") as h:
                    h.write(b"old " + f.encode())
            before = snapshot(out)
            _, p = run(*(args + ["--out", out]), want=1)
            check(out in p.stderr, "shards: %s into a directory holding %s: stderr does not name it: %s" % (sub, tag, p.stderr))
            check(snapshot(out) == before, "shards: %s into a directory holding %s changed it" % (sub, tag))
            no_temps(out, "shards: %s into a directory holding %s" % (sub, tag))

    # a sharded output where a file is: refused, the file left as it was
    out = path("a-file")
    with open(out, "wb") as f:
        f.write(b"old")
    _, p = run("compress", base_s, "--rank", 4, "--out", out, want=1)
    check(out in p.stderr and open(out, "rb").read() == b"old", "shards: compress of shards onto a file: %s" % p.stderr)
    no_temps(out, "shards: compress of shards onto a file")

    # a failed write (EFBIG: RLIMIT_FSIZE with SIGXFSZ ignored, so write() fails instead of
    # killing the program) leaves the older output as it was, and no temp file
    if "sharded" in ads:
        ad_old = path("ad-old")
        run("extract", base_f, tuned_f, "--rank", 2, "--threads", 1, "--out", ad_old)
        for tag, b, out in (("sharded", base_s, path("old-merged-sh")), ("file", base_f, path("old-merged.safetensors"))):
            run("merge", b, ad_old, "--threads", 1, "--out", out)
            before = snapshot(out)
            check(before and all(len(v) > 8192 for k, v in before.items() if k != INDEX),
                  "shards: the older merged output %s is not there, or too small for the size limit" % out)
            p = run_fsize(["merge", b, ads["sharded"], "--threads", 1, "--out", out], 8192)
            check(p.returncode == 1, "shards: merge (%s) with files limited to 8192 bytes: exit %d, want 1\nstderr: %s" %
                  (tag, p.returncode, p.stderr))
            check("File too large" in p.stderr, "shards: merge (%s) with files limited to 8192 bytes: stderr does not say why: %s" %
                  (tag, p.stderr))
            check(snapshot(out) == before, "shards: merge (%s) that failed to write changed the older output" % tag)
            no_temps(out, "shards: merge (%s) with files limited to 8192 bytes" % tag)
        # ... and a new output is not created (nor the directory the writer made)
        out = path("new-merged-sh")
        p = run_fsize(["merge", base_s, ads["sharded"], "--threads", 1, "--out", out], 8192)
        check(p.returncode == 1, "shards: merge to a new directory with files limited to 8192 bytes: exit %d, want 1\nstderr: %s" %
              (p.returncode, p.stderr))
        no_leftovers(out, "shards: merge to a new directory with files limited to 8192 bytes")
    # the index is the one file that fails (every shard fits the limit, the index does not):
    # the run fails, and still leaves no partial output and the older output as it was
    small = snapshot(path("comp-1kb"))
    if small.get(INDEX):
        big = max(len(v) for k, v in small.items() if k != INDEX)
        limit = (big + len(small[INDEX])) // 2
        if check(big < limit < len(small[INDEX]), "shards: the 1KB shards (%d bytes at most) are not smaller than their index (%d)" %
                 (big, len(small[INDEX]))):
            out = path("new-comp-1kb")
            args = ["compress", base_f, "--rank", 4, "--threads", 1, "--max-shard-size", "1KB", "--out", out]
            p = run_fsize(args, limit)
            what = "shards: compress --max-shard-size 1KB with files limited to %d bytes (the index fails)" % limit
            check(p.returncode == 1, "%s: exit %d, want 1\nstderr: %s" % (what, p.returncode, p.stderr))
            no_leftovers(out, what + ", to a new directory")
            out = path("old-comp-1kb")   # an older output of the same layout (the tuned model's)
            run("compress", tuned_f, "--rank", 4, "--threads", 1, "--max-shard-size", "1KB", "--out", out)
            before = snapshot(out)
            check(sorted(before) == sorted(small), "shards: the tuned model's 1KB shards are not the base's layout")
            p = run_fsize(args[:-1] + [out], limit)
            check(p.returncode == 1, "%s: exit %d, want 1\nstderr: %s" % (what, p.returncode, p.stderr))
            changed = sorted(k for k in set(before) | set(snapshot(out)) if before.get(k) != snapshot(out).get(k))
            check(not changed, "%s: the older output changed: %s" % (what, changed[:4] + (["..."] if len(changed) > 4 else [])))
            no_temps(out, what)

    # --out naming an input by another path (the index for its directory, the directory for
    # its model.safetensors): refused like --out INPUT (status 2), the input left as it was
    for sub, extra in (("compress", ["--rank", 4]), ("merge", [ads.get("sharded", path("nodir"))])):
        d = path("alias-%s-sh" % sub)
        os.mkdir(d)
        for f in os.listdir(base_s):
            with open(os.path.join(base_s, f), "rb") as g, open(os.path.join(d, f), "wb") as h:
                h.write(g.read())
        dd = path("alias-%s-dir" % sub)
        os.mkdir(dd)
        with open(os.path.join(base_d, "model.safetensors"), "rb") as g, open(os.path.join(dd, "model.safetensors"), "wb") as h:
            h.write(g.read())
        for m, out, held in ((d, d, d), (os.path.join(d, INDEX), d, d), (dd, os.path.join(dd, "model.safetensors"), dd)):
            before = snapshot(held)
            _, p = run(sub, m, *extra, "--out", out, want=2)
            check(snapshot(held) == before, "shards: %s %s --out %s changed its input" % (sub, m, out))
            no_temps(out, "shards: %s %s --out %s" % (sub, m, out))


SECTIONS["shards"] = t_shards


def main():
    global PROG, WORK
    if len(sys.argv) != 4 or sys.argv[1] not in SECTIONS:
        sys.exit("usage: tool_check.py {%s} LOWRANK WORKDIR" % ",".join(SECTIONS))
    PROG, WORK = os.path.abspath(sys.argv[2]), sys.argv[3]
    # the helper's own safetensors/bf16 code, before it judges anything
    x = np.array([1.0, -2.5, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.0e38, 1e-40], np.float32)
    check(list(f32_to_bf16_bits(x)) == [0x3F80, 0xC020, 0x3F80, 0x3F82, 0x7F62, 0x0001],
          "helper: bf16 rounding %s" % [hex(v) for v in f32_to_bf16_bits(x)])
    check(np.array_equal(bf16_bits_to_f32(np.array([0x3F80, 0xC020], np.uint16)), np.array([1.0, -2.5], np.float32)), "helper: bf16 decode")
    SECTIONS[sys.argv[1]](np.random.default_rng(20240611))
    print("%s: %d checks, %d failure%s" % (sys.argv[1], CHECKS[0], len(FAILS), "" if len(FAILS) == 1 else "s"))
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
