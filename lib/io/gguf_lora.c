/* gguf_lora.c — PEFT LoRA adapters written as llama.cpp's GGUF LoRA files (gguf_lora.h):
 * the name table per architecture, the one alpha with the rest folded into B, llama's q/k
 * row permutation, and the file itself through gguf.h's writer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lowrank/io/gguf.h"
#include "lowrank/io/gguf_lora.h"
#include "base/internal.h"

lr_gguf_lora_opts lr_gguf_lora_opts_default(void)
{
    return (lr_gguf_lora_opts){ .arch = "llama", .dtype = LR_ST_F32 };
}

/* ---------------------------------------------------------------- names ---------- */

/* A module of a Hugging Face checkpoint (PEFT's name without "base_model.model.") and the
 * base tensor llama.cpp gives it; "%d" is the layer. The llama and qwen2 converters name
 * these modules alike; perm says which rows llama's converter also permutes per head. */
enum { PERM_NONE, PERM_Q, PERM_K };
typedef struct {
    const char *hf, *gguf;
    int perm;
} name_map;

static const name_map NAMES[] = {
    { "model.embed_tokens", "token_embd.weight", PERM_NONE },
    { "lm_head", "output.weight", PERM_NONE },
    { "model.layers.%d.self_attn.q_proj", "blk.%d.attn_q.weight", PERM_Q },
    { "model.layers.%d.self_attn.k_proj", "blk.%d.attn_k.weight", PERM_K },
    { "model.layers.%d.self_attn.v_proj", "blk.%d.attn_v.weight", PERM_NONE },
    { "model.layers.%d.self_attn.o_proj", "blk.%d.attn_output.weight", PERM_NONE },
    { "model.layers.%d.mlp.gate_proj", "blk.%d.ffn_gate.weight", PERM_NONE },
    { "model.layers.%d.mlp.up_proj", "blk.%d.ffn_up.weight", PERM_NONE },
    { "model.layers.%d.mlp.down_proj", "blk.%d.ffn_down.weight", PERM_NONE },
    { NULL, NULL, 0 },
};

/* The architectures and their tables. Qwen2's converter renames and does not permute (its
 * rope is NeoX's, which reads HF's layout as it is); llama's permutes q and k. */
typedef struct {
    const char *arch;
    const name_map *map;
    bool permutes;
} arch_info;

static const arch_info ARCHS[] = { { "llama", NAMES, true }, { "qwen2", NAMES, false } };

static const arch_info *arch_of(const char *arch)
{
    for (size_t i = 0; arch && i < sizeof ARCHS / sizeof *ARCHS; i++)
        if (!strcmp(arch, ARCHS[i].arch)) return &ARCHS[i];
    return NULL;
}

/* Does module match pattern hf (one optional "%d": a layer number without sign or leading
 * zeros)? *layer <- the number. */
static bool match(const char *hf, const char *module, long *layer)
{
    const char *d = strstr(hf, "%d");
    if (!d) return !strcmp(hf, module);
    size_t pre = (size_t)(d - hf);
    if (strncmp(hf, module, pre)) return false;
    const char *p = module + pre, *q = p;
    while (*q >= '0' && *q <= '9') q++;
    if (q == p || (q - p > 1 && *p == '0') || q - p > 6) return false;
    if (strcmp(d + 2, q)) return false;
    *layer = strtol(p, NULL, 10);
    return true;
}

/* The table's row for module, and its layer; NULL if none. */
static const name_map *find_row(const name_map *map, const char *module, long *layer)
{
    for (const name_map *m = map; m->hf; m++)
        if (match(m->hf, module, layer)) return m;
    return NULL;
}

/* PEFT's module names as lr_peft reads them may keep the "base_model.model." prefix off
 * already; accept both. */
static const char *hf_name(const char *module)
{
    static const char pfx[] = "base_model.model.";
    return strncmp(module, pfx, sizeof pfx - 1) ? module : module + sizeof pfx - 1;
}

lr_status lr_gguf_lora_name(char *name, size_t cap, const char *arch, const char *module, lr_err *err)
{
    const arch_info *ar = arch_of(arch);
    if (!ar) return lr__fail(err, LR_EINVAL, "lr_gguf_lora_name: unknown architecture \"%s\" (llama, qwen2)",
                              arch ? arch : "(null)");
    if (!name || !module) return lr__fail(err, LR_EINVAL, "lr_gguf_lora_name: name or module is NULL");
    long layer = 0;
    const name_map *m = find_row(ar->map, hf_name(module), &layer);
    if (!m) return lr__fail(err, LR_EINVAL, "module %s has no tensor in llama.cpp's %s model (known: "
                            "embed_tokens, lm_head, self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj)",
                            module, arch);
    int n = strstr(m->gguf, "%d") ? snprintf(name, cap, m->gguf, (int)layer) : snprintf(name, cap, "%s", m->gguf);
    if (n < 0 || (size_t)n >= cap)
        return lr__fail(err, LR_ERANGE, "module %s: its GGUF name needs %d bytes, %zu given", module, n, cap);
    return LR_OK;
}

/* ---------------------------------------------------------------- the plan --------- */

/* s_l·r_l: the alpha under which llama.cpp's alpha / r_l is s_l. Computed from α and r as
 * PEFT defines s, so that layers of one alpha compare equal. */
static double alpha_of(const lr_peft *ad, const lr_peft_layer *l)
{
    return ad->use_rslora ? l->alpha * sqrt((double)l->r) : l->alpha;
}

/* The value of alpha_of that most written layers share (the first such on a tie): their B
 * is written as it is. */
static double common_alpha(const lr_peft *ad, const lr_gguf_lora_report *rep)
{
    double best = 0;
    size_t best_n = 0;
    for (size_t i = 0; i < ad->n; i++) {
        if (rep->layer[i].skipped) continue;
        double c = alpha_of(ad, &ad->layer[i]);
        size_t n = 0;
        for (size_t j = 0; j < ad->n; j++) n += !rep->layer[j].skipped && alpha_of(ad, &ad->layer[j]) == c;
        if (n > best_n) best = c, best_n = n;
    }
    return best;
}

/* Layer i's entry: its name (or skipped), rank, scale, permutation. */
static lr_status plan_layer(const lr_peft *ad, size_t i, const arch_info *ar, const lr_gguf_lora_opts *o,
                            lr_gguf_lora_layer *e, lr_err *err)
{
    const lr_peft_layer *l = &ad->layer[i];
    long layer = 0;
    const name_map *m = find_row(ar->map, hf_name(l->module), &layer);
    snprintf(e->module, sizeof e->module, "%s", l->module);
    e->r = l->r, e->scale = lr_peft_scale(ad, l), e->fold = 1;
    if (!m) {
        if (o->skip_unsupported) return e->skipped = true, LR_OK;
        return lr__fail(err, LR_EINVAL, "module %s has no tensor in llama.cpp's %s model (known: embed_tokens, "
                        "lm_head, self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj; --skip-unsupported "
                        "passes it over)", l->module, o->arch);
    }
    lr_status s = lr_gguf_lora_name(e->name, sizeof e->name, o->arch, l->module, err);
    if (s) return s;
    if (l->embedding != !strcmp(e->name, "token_embd.weight"))
        return lr__fail(err, LR_EINVAL, "module %s: %s adapter on %s, which llama.cpp %s", l->module,
                        l->embedding ? "an embedding" : "a linear", e->name,
                        l->embedding ? "applies as a linear layer" : "applies as the input embedding");
    if (m->perm == PERM_NONE || !ar->permutes) return LR_OK;
    size_t heads = m->perm == PERM_Q || !o->n_head_kv ? o->n_head : o->n_head_kv;
    if (!heads)
        return lr__fail(err, LR_EINVAL, "module %s: llama's converter permutes q and k rows per head, and the "
                        "head count is not known (give it: --heads/--kv-heads, or --check BASE.gguf)", l->module);
    if (l->out % (2 * heads))
        return lr__fail(err, LR_EINVAL, "module %s: %zu output rows do not split into %zu heads of an even size",
                        l->module, l->out, heads);
    e->permuted = true;
    return LR_OK;
}

void lr_gguf_lora_report_free(lr_gguf_lora_report *rep)
{
    if (!rep) return;
    free(rep->layer);
    memset(rep, 0, sizeof *rep);
}

lr_status lr_gguf_lora_plan(const lr_peft *ad, lr_gguf_lora_report *rep, const lr_gguf_lora_opts *opts,
                            lr_err *err)
{
    lr_gguf_lora_opts o = opts ? *opts : lr_gguf_lora_opts_default();
    if (!rep) return lr__fail(err, LR_EINVAL, "lr_gguf_lora_plan: rep is NULL");
    memset(rep, 0, sizeof *rep);
    if (!ad) return lr__fail(err, LR_EINVAL, "lr_gguf_lora_plan: ad is NULL");
    const arch_info *ar = arch_of(o.arch);
    if (!ar) return lr__fail(err, LR_EINVAL, "unknown architecture \"%s\" (llama, qwen2)", o.arch ? o.arch : "(null)");
    if (o.dtype != LR_ST_F32 && o.dtype != LR_ST_F16 && o.dtype != LR_ST_BF16)
        return lr__fail(err, LR_EINVAL, "dtype %s: llama.cpp's adapters are F32, F16 or BF16",
                        lr_st_dtype_name(o.dtype) ? lr_st_dtype_name(o.dtype) : "(unknown)");
    if (!(rep->layer = calloc(ad->n ? ad->n : 1, sizeof *rep->layer)))
        return lr__fail(err, LR_ENOMEM, "out of memory");
    rep->n = ad->n;
    lr_status s = LR_OK;
    for (size_t i = 0; i < ad->n && !s; i++) {
        s = plan_layer(ad, i, ar, &o, &rep->layer[i], err);
        for (size_t j = 0; j < i && !s; j++)
            if (!rep->layer[i].skipped && !strcmp(rep->layer[i].name, rep->layer[j].name))
                s = lr__fail(err, LR_EINVAL, "modules %s and %s both map to %s", rep->layer[j].module,
                             rep->layer[i].module, rep->layer[i].name);
        rep->skipped += rep->layer[i].skipped;
    }
    if (!s && rep->skipped == ad->n)
        s = lr__fail(err, LR_EINVAL, "no module of the adapter has a tensor in llama.cpp's %s model", o.arch);
    if (s) {
        lr_gguf_lora_report_free(rep);
        return s;
    }
    rep->alpha = common_alpha(ad, rep);
    for (size_t i = 0; i < ad->n; i++) {
        lr_gguf_lora_layer *e = &rep->layer[i];
        if (e->skipped) continue;
        e->fold = alpha_of(ad, &ad->layer[i]) / rep->alpha;
        rep->folded += e->fold != 1.0;
    }
    return LR_OK;
}

/* ---------------------------------------------------------------- the file --------- */

/* Row i of B after llama's per-head permutation: HF's head h holds its rope pairs as
 * (first half, second half) of the head's rows; the converter interleaves them
 * (convert_hf_to_gguf.py LlamaModel.permute: reshape(heads, 2, hd/2).swapaxes(1, 2)), so row
 * h·hd + 2j + i of the GGUF tensor is row h·hd + i·hd/2 + j of HF's. */
static size_t permuted_row(size_t row, size_t out, size_t heads)
{
    size_t hd = out / heads, h = row / hd, k = row % hd;
    return h * hd + (k % 2) * (hd / 2) + k / 2;
}

/* a: (r, in) lora_a and b: (out, r) lora_b as llama.cpp takes layer l: for a linear layer A
 * and fold·B (B's rows permuted per head when e->permuted); for the input embedding
 * Aᵀ: (in = vocab, r) and fold·B: (out = dim, r). */
static void gguf_pair(const lr_peft_layer *l, const lr_gguf_lora_layer *e, size_t heads, float *a, float *b)
{
    size_t r = l->r, in = l->in, out = l->out;
    if (l->embedding)
        for (size_t k = 0; k < r; k++)
            for (size_t v = 0; v < in; v++) a[v * r + k] = l->a[k * in + v];
    else
        memcpy(a, l->a, r * in * sizeof *a);
    for (size_t i = 0; i < out; i++) {
        const float *src = l->b + (e->permuted ? permuted_row(i, out, heads) : i) * r;
        for (size_t k = 0; k < r; k++) b[i * r + k] = e->fold == 1.0 ? src[k] : (float)(e->fold * src[k]);
    }
}

static lr_ggml_type ggml_of(lr_st_dtype d)
{
    return d == LR_ST_F16 ? LR_GGML_F16 : d == LR_ST_BF16 ? LR_GGML_BF16 : LR_GGML_F32;
}

/* The tensor list: lora_a, lora_b of every layer written, in the adapter's order. names:
 * (2·n) buffers (the writer refuses a name above 63 bytes, GGML_MAX_NAME). */
static size_t tensor_list(const lr_peft *ad, const lr_gguf_lora_report *rep, lr_ggml_type type, lr_gguf_tensor *t,
                          char (*names)[112])
{
    size_t nt = 0;
    for (size_t i = 0; i < ad->n; i++) {
        const lr_peft_layer *l = &ad->layer[i];
        if (rep->layer[i].skipped) continue;
        for (int ab = 0; ab < 2; ab++) {
            snprintf(names[nt], sizeof *names, "%s.lora_%c", rep->layer[i].name, ab ? 'b' : 'a');
            /* ne[0] innermost: lora_a (r, in) or Aᵀ (vocab, r); lora_b (out, r) */
            size_t rows = ab ? l->out : l->embedding ? l->in : l->r;
            size_t cols = ab ? l->r : l->embedding ? l->r : l->in;
            t[nt] = (lr_gguf_tensor){ .name = names[nt], .n_dims = 2, .ne = { cols, rows }, .type = type };
            nt++;
        }
    }
    return nt;
}

static lr_status write_pairs(const lr_peft *ad, const lr_gguf_lora_report *rep, const lr_gguf_lora_opts *o,
                             lr_gguf_writer *w, char (*names)[112], lr_err *err)
{
    lr_status s = LR_OK;
    size_t k = 0;
    for (size_t i = 0; i < ad->n && !s; i++) {
        const lr_peft_layer *l = &ad->layer[i];
        const lr_gguf_lora_layer *e = &rep->layer[i];
        if (e->skipped) continue;
        size_t heads = !e->permuted ? 1 : strstr(e->name, "attn_q") || !o->n_head_kv ? o->n_head : o->n_head_kv;
        float *a = malloc(l->r * l->in * sizeof *a), *b = malloc(l->out * l->r * sizeof *b);
        if (!a || !b) s = lr__fail(err, LR_ENOMEM, "module %s: out of memory", l->module);
        if (!s) {
            gguf_pair(l, e, heads, a, b);
            s = lr_gguf_writer_put_f32(w, names[k], a, l->r * l->in, err);
        }
        if (!s) s = lr_gguf_writer_put_f32(w, names[k + 1], b, l->out * l->r, err);
        k += 2;
        free(a), free(b);
    }
    return s;
}

lr_status lr_gguf_lora_write(const lr_peft *ad, const char *path, lr_gguf_lora_report *rep,
                             const lr_gguf_lora_opts *opts, lr_err *err)
{
    lr_gguf_lora_opts o = opts ? *opts : lr_gguf_lora_opts_default();
    lr_gguf_lora_report own, *r = rep ? rep : &own;
    lr_status s = lr_gguf_lora_plan(ad, r, &o, err);
    if (s) return s;
    if (!path) {
        lr_gguf_lora_report_free(r);
        return lr__fail(err, LR_EINVAL, "lr_gguf_lora_write: path is NULL");
    }
    lr_gguf_tensor *t = calloc(2 * ad->n, sizeof *t);
    char(*names)[112] = calloc(2 * ad->n, sizeof *names);
    lr_gguf_writer w = { .failed = 0 };
    if (!t || !names) s = lr__fail(err, LR_ENOMEM, "%s: out of memory", path);
    if (!s) {
        size_t nt = tensor_list(ad, r, ggml_of(o.dtype), t, names);
        const lr_gguf_kv kv[] = {
            { "general.architecture", { .type = LR_GGUF_STRING, .str = { o.arch, strlen(o.arch) } } },
            { "general.type", { .type = LR_GGUF_STRING, .str = { "adapter", 7 } } },
            { "adapter.type", { .type = LR_GGUF_STRING, .str = { "lora", 4 } } },
            { "adapter.lora.alpha", { .type = LR_GGUF_FLOAT32, .f = (double)(float)r->alpha } },
        };
        s = lr_gguf_writer_init(&w, path, kv, sizeof kv / sizeof *kv, t, nt, NULL, err);
    }
    if (!s) s = write_pairs(ad, r, &o, &w, names, err);
    if (!s) s = lr_gguf_writer_commit(&w, err);
    lr_gguf_writer_free(&w);
    free(t), free(names);
    if (s || r == &own) lr_gguf_lora_report_free(r);
    return s;
}
