/* checkpoint.c — an lr_mlp to and from a safetensors file with PyTorch's state-dict names.
 *
 * The parameters already live in one allocation in state-dict order (mlp.h), so saving is
 * a list of views into net->params handed to the safetensors writer, which does the
 * crash-safe part (atomicfile.h). Loading reads every tensor into a scratch copy first and
 * only then overwrites the model, so a file that fails half-way leaves the model as it was.
 * F16, BF16 and F64 tensors are accepted and converted (lr_safetensors_get_f32), because a
 * PyTorch user may well have saved the state dict in half precision; we always write F32.
 *
 * A layer may also come factored, as `lowrank compress` writes it: "linearK.B.weight"
 * (out, r) and "linearK.A.weight" (r, in) in place of "linearK.weight". The loader resolves
 * each layer's form first (layer_form: one form only, both halves, inner sizes that agree)
 * and densifies W = B·A with one float32 sgemm into the scratch copy.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "lowrank/nn/checkpoint.h"
#include "lowrank/io/safetensors.h"
#include "lowrank/linalg/blas.h"
#include "base/internal.h"
#include "nn/mlp_internal.h"

#ifndef LOWRANK_VERSION
#define LOWRANK_VERSION "unknown"
#endif

/* "linear3.weight" -> 3, kind 'w'; "linear3.bias" -> 3, 'b'; "linear3.B.weight" -> 3, 'B';
 * "linear3.A.weight" -> 3, 'A'; else 0. */
static size_t parse_param_name(const char *name, char *kind)
{
    if (strncmp(name, "linear", 6) != 0) return 0;
    const char *p = name + 6;
    if (*p < '1' || *p > '9') return 0;
    size_t k = 0;
    while (*p >= '0' && *p <= '9') {
        if (k > 1000000) return 0;
        k = k * 10 + (size_t)(*p++ - '0');
    }
    if (strcmp(p, ".weight") == 0) *kind = 'w';
    else if (strcmp(p, ".bias") == 0) *kind = 'b';
    else if (strcmp(p, ".B.weight") == 0) *kind = 'B';
    else if (strcmp(p, ".A.weight") == 0) *kind = 'A';
    else return 0;
    return k;
}

static void sizes_string(char *buf, size_t n, const size_t *sizes, size_t count)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < count && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%zu", i ? "," : "", sizes[i]);
}

static bool net_ok(const lr_mlp *net)
{
    return net->n_layers >= 1 && net->n_layers <= LR_MLP_MAX_LAYERS && net->params;
}

lr_status lr_checkpoint_save(const lr_mlp *net, const char *path, const lr_checkpoint_info *info,
                             lr_err *err)
{
    if (!net || !path) return lr__fail(err, LR_EINVAL, "lr_checkpoint_save: net or path is NULL");
    if (!net_ok(net))
        return lr__fail(err, LR_EINVAL, "lr_checkpoint_save: %s: the model is empty (not initialised)",
                        path);
    lr_st_tensor t[2 * LR_MLP_MAX_LAYERS];
    char names[2 * LR_MLP_MAX_LAYERS][48];
    size_t nt = 0;
    for (size_t i = 0; i < net->n_layers; i++) {
        const lr_layer *L = &net->layer[i];
        /* the state-dict name, whatever the layer struct calls itself */
        snprintf(names[nt], sizeof names[nt], "linear%zu.weight", i + 1);
        t[nt] = (lr_st_tensor){ .name = names[nt], .dtype = LR_ST_F32, .ndim = 2,
                                .shape = { L->out, L->in }, .data = L->w.data };
        nt++;
        snprintf(names[nt], sizeof names[nt], "linear%zu.bias", i + 1);
        t[nt] = (lr_st_tensor){ .name = names[nt], .dtype = LR_ST_F32, .ndim = 1,
                                .shape = { L->out }, .data = L->b };
        nt++;
    }
    char layers[16 * (LR_MLP_MAX_LAYERS + 1)], seed[32];
    sizes_string(layers, sizeof layers, net->sizes, net->n_layers + 1);
    lr_st_meta m[4] = {
        { "format", "pt" },
        { "layers", layers },
        { "lowrank_version", LOWRANK_VERSION },
        { "seed", seed },
    };
    size_t nm = 3;
    if (info && info->has_seed) {
        snprintf(seed, sizeof seed, "%" PRIu64, info->seed);
        nm = 4;
    }
    return lr_safetensors_write(path, t, nt, m, nm, err);
}

static void read_info(const lr_safetensors *st, lr_checkpoint_info *info)
{
    if (!info) return;
    memset(info, 0, sizeof *info);
    const char *s = lr_safetensors_meta(st, "seed");
    if (s && *s >= '0' && *s <= '9') {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (!errno && !*end) {
            info->has_seed = true;
            info->seed = (uint64_t)v;
        }
    }
    const char *v = lr_safetensors_meta(st, "lowrank_version");
    if (v) snprintf(info->version, sizeof info->version, "%s", v);
}

/* Every value read finite: a NaN or Inf weight would load and evaluate to nonsense, and fail
 * only at the first training step. The message names the tensor and the entry. */
static lr_status check_finite_params(const lr_mlp *net, const float *p, const char *path, lr_err *err)
{
    for (size_t i = 0; i < net->n_layers; i++) {
        const lr_layer *L = &net->layer[i];
        size_t ow = (size_t)(L->w.data - net->params), ob = (size_t)(L->b - net->params);
        for (size_t k = 0; k < L->out * L->in; k++)
            if (!isfinite(p[ow + k]))
                return lr__fail(err, LR_ENONFINITE, "%s: linear%zu.weight (%zu,%zu) is %s", path, i + 1,
                                k / L->in, k % L->in, isnan(p[ow + k]) ? "NaN" : "Inf");
        for (size_t k = 0; k < L->out; k++)
            if (!isfinite(p[ob + k]))
                return lr__fail(err, LR_ENONFINITE, "%s: linear%zu.bias (%zu) is %s", path, i + 1, k,
                                isnan(p[ob + k]) ? "NaN" : "Inf");
    }
    return LR_OK;
}

/* The "layers" the metadata records (when it does) must be the sizes the tensors have. */
static lr_status check_meta_layers(const lr_mlp *net, const lr_safetensors *st, lr_err *err)
{
    const char *m = lr_safetensors_meta(st, "layers");
    char have[16 * (LR_MLP_MAX_LAYERS + 1)];
    sizes_string(have, sizeof have, net->sizes, net->n_layers + 1);
    if (!m || strcmp(m, have) == 0) return LR_OK;
    return lr__fail(err, LR_EFORMAT, "%s: __metadata__ \"layers\" is \"%.64s\" but the tensors' sizes are %s",
                    lr_safetensors_path(st), m, have);
}

/* How layer k (1-based) is stored: dense "linearK.weight" (w: out, in), or factored
 * "linearK.B.weight" b: (out, r) and "linearK.A.weight" a: (r, in). w, or b and a, are set
 * (the others NULL); all NULL when the layer is absent. One form only, both halves, 2-D,
 * r >= 1 and equal in both: anything else is LR_EFORMAT naming the tensors. */
typedef struct {
    const lr_st_tensor *w, *b, *a;
    char wname[48], bname[48], aname[48];
    size_t out, in, r;
} layer_form;

static lr_status find_layer(layer_form *f, const lr_safetensors *st, size_t k, lr_err *err)
{
    const char *path = lr_safetensors_path(st);
    snprintf(f->wname, sizeof f->wname, "linear%zu.weight", k);
    snprintf(f->bname, sizeof f->bname, "linear%zu.B.weight", k);
    snprintf(f->aname, sizeof f->aname, "linear%zu.A.weight", k);
    f->w = lr_safetensors_find(st, f->wname);
    f->b = lr_safetensors_find(st, f->bname);
    f->a = lr_safetensors_find(st, f->aname);
    f->out = f->in = f->r = 0;
    if (f->w && (f->b || f->a))
        return lr__fail(err, LR_EFORMAT, "%s: layer linear%zu is stored twice: %s and the factored %s",
                        path, k, f->wname, f->b ? f->bname : f->aname);
    if (f->w) {
        if (f->w->ndim == 2) f->out = f->w->shape[0], f->in = f->w->shape[1];
        return LR_OK;
    }
    if (!f->b != !f->a)
        return lr__fail(err, LR_EFORMAT, "%s: %s is present but %s is missing (a factored layer "
                        "needs both B (out, r) and A (r, in))", path, f->b ? f->bname : f->aname,
                        f->b ? f->aname : f->bname);
    if (!f->b) return LR_OK;
    if (f->b->ndim != 2 || f->a->ndim != 2)
        return lr__fail(err, LR_EFORMAT, "%s: %s: expected 2 dimensions, got %zu", path,
                        f->b->ndim != 2 ? f->bname : f->aname,
                        f->b->ndim != 2 ? f->b->ndim : f->a->ndim);
    if (f->b->shape[1] != f->a->shape[0] || f->a->shape[0] == 0)
        return lr__fail(err, LR_EFORMAT, "%s: %s (%zu, %zu) and %s (%zu, %zu): the inner sizes must "
                        "agree and be >= 1 (B is (out, r), A is (r, in))", path, f->bname,
                        f->b->shape[0], f->b->shape[1], f->aname, f->a->shape[0], f->a->shape[1]);
    f->out = f->b->shape[0];
    f->r = f->b->shape[1];
    f->in = f->a->shape[1];
    return LR_OK;
}

/* w: (out, in) <- B·A of the factored layer f, read as float32 (any dtype get_f32 reads),
 * both factors checked finite. The shapes the net expects are checked by name. */
static lr_status load_factored(float *w, lr_safetensors *st, const layer_form *f, const lr_layer *L,
                               lr_err *err)
{
    const char *path = lr_safetensors_path(st);
    if (f->out != L->out || f->in != L->in)
        return lr__fail(err, LR_EDIM, "%s: %s (%zu, %zu) · %s (%zu, %zu): expected the product's "
                        "shape (%zu, %zu), got (%zu, %zu)", path, f->bname, f->out, f->r, f->aname,
                        f->r, f->in, L->out, L->in, f->out, f->in);
    size_t nb, na;
    if (lr_size_mul(&nb, f->out, f->r, NULL) || lr_size_mul(&na, f->r, f->in, NULL) || nb + na < nb)
        return lr__fail(err, LR_ENOMEM, "%s: %s: rank %zu is too large", path, f->bname, f->r);
    float *b = malloc((nb + na) * sizeof *b), *a = b ? b + nb : NULL;  /* b: (out, r), a: (r, in) */
    if (!b) return lr__fail(err, LR_ENOMEM, "%s: cannot allocate %zu floats for %s and %s", path, nb + na,
                            f->bname, f->aname);
    size_t bshape[2] = { f->out, f->r }, ashape[2] = { f->r, f->in };
    lr_status s = lr_safetensors_get_f32(st, b, f->bname, 2, bshape, err);
    if (!s) s = lr_safetensors_get_f32(st, a, f->aname, 2, ashape, err);
    lr_cmat bm = { b, f->out, f->r, f->r }, am = { a, f->r, f->in, f->in };
    char q[2][300]; /* "m.safetensors: linear1.B.weight" for the entry's message */
    snprintf(q[0], sizeof q[0], "%s: %s", path, f->bname);
    snprintf(q[1], sizeof q[1], "%s: %s", path, f->aname);
    if (!s) s = lr_mat_check_finite(bm, q[0], err);
    if (!s) s = lr_mat_check_finite(am, q[1], err);
    if (!s) s = lr_gemm((lr_mat){ w, f->out, f->in, f->in }, 1.0f, bm, false, am, false, 0.0f, err);
    free(b);
    return s;
}

/* Reads every parameter of net from an open file into scratch (a factored layer densified),
 * checks nothing else is in it, that every value is finite and that the metadata agrees,
 * then commits to net->params. */
static lr_status load_open(lr_mlp *net, lr_safetensors *st, lr_checkpoint_info *info,
                           lr_err *err)
{
    float *tmp = malloc(net->n_params * sizeof *tmp);
    if (!tmp)
        return lr__fail(err, LR_ENOMEM, "%s: cannot allocate %zu floats to load into",
                        lr_safetensors_path(st), net->n_params);
    lr_status s = LR_OK;
    for (size_t i = 0; i < net->n_layers && !s; i++) {
        const lr_layer *L = &net->layer[i];
        char name[48];
        size_t wshape[2] = { L->out, L->in }, bshape[1] = { L->out };
        layer_form f;
        s = find_layer(&f, st, i + 1, err);
        if (s) break;
        if (f.b) s = load_factored(tmp + (L->w.data - net->params), st, &f, L, err);
        else s = lr_safetensors_get_f32(st, tmp + (L->w.data - net->params), f.wname, 2, wshape, err);
        if (s) break;
        snprintf(name, sizeof name, "linear%zu.bias", i + 1);
        s = lr_safetensors_get_f32(st, tmp + (L->b - net->params), name, 1, bshape, err);
    }
    if (!s) s = lr_safetensors_check_all_used(st, err);
    if (!s) s = check_finite_params(net, tmp, lr_safetensors_path(st), err);
    if (!s) s = check_meta_layers(net, st, err);
    if (!s) {
        memcpy(net->params, tmp, net->n_params * sizeof *tmp);
        lr__mlp_weights_written(net);
        read_info(st, info);
    }
    free(tmp);
    return s;
}

lr_status lr_checkpoint_load(lr_mlp *net, const char *path, lr_checkpoint_info *info, lr_err *err)
{
    if (!net || !path) return lr__fail(err, LR_EINVAL, "lr_checkpoint_load: net or path is NULL");
    if (!net_ok(net))
        return lr__fail(err, LR_EINVAL, "lr_checkpoint_load: %s: the model is empty (not initialised)",
                        path);
    lr_safetensors st_, *st = &st_;
    lr_status s = lr_safetensors_open(st, path, err);
    if (s) return s;
    s = load_open(net, st, info, err);
    lr_safetensors_free(st);
    return s;
}

/* The layer sizes the tensors describe: linear1..linearN weights (out, in), chained. */
static lr_status infer_sizes(const lr_safetensors *st, size_t *sizes, size_t *n_sizes,
                             lr_err *err)
{
    const char *path = lr_safetensors_path(st);
    size_t max_k = 0;
    for (size_t i = 0; i < lr_safetensors_count(st); i++) {
        char kind;
        size_t k = parse_param_name(lr_safetensors_at(st, i)->name, &kind);
        if (k > max_k) max_k = k;
    }
    if (max_k == 0)
        return lr__fail(err, LR_EFORMAT, "%s: no tensor linear1.weight: not an MLP checkpoint "
                        "(expected linear1.weight, linear1.bias, linear2.weight, ...)", path);
    if (max_k > LR_MLP_MAX_LAYERS)
        return lr__fail(err, LR_EFORMAT, "%s: linear%zu: at most %d layers are supported", path,
                        max_k, LR_MLP_MAX_LAYERS);
    for (size_t k = 1; k <= max_k; k++) {
        layer_form f;
        lr_status s = find_layer(&f, st, k, err);
        if (s) return s;
        const char *name = f.w ? f.wname : f.bname;
        if (!f.w && !f.b)
            return lr__fail(err, LR_EFORMAT, "%s: missing tensor %s (the file has tensors up to "
                            "linear%zu; layers must be numbered without gaps)", path, f.wname, max_k);
        if (f.w && f.w->ndim != 2)
            return lr__fail(err, LR_EDIM, "%s: %s: expected 2 dimensions (out, in), got %zu",
                            path, name, f.w->ndim);
        if (f.out == 0 || f.in == 0)
            return lr__fail(err, LR_EDIM, "%s: %s: shape (%zu, %zu) has a zero dimension", path,
                            f.w ? name : f.b->shape[0] == 0 ? f.bname : f.aname, f.out, f.in);
        if (k == 1) sizes[0] = f.in;
        else if (f.in != sizes[k - 1])
            return lr__fail(err, LR_EDIM, "%s: %s: expected shape (N, %zu) to take linear%zu's "
                            "%zu outputs, got (%zu, %zu)", path, f.w ? name : f.aname, sizes[k - 1],
                            k - 1, sizes[k - 1], f.w ? f.out : f.r, f.in);
        sizes[k] = f.out;
    }
    *n_sizes = max_k + 1;
    return LR_OK;
}

lr_status lr_checkpoint_load_new(lr_mlp *net, const char *path, lr_checkpoint_info *info, lr_err *err)
{
    if (!net) return lr__fail(err, LR_EINVAL, "lr_checkpoint_load_new: net is NULL");
    memset(net, 0, sizeof *net);
    if (!path) return lr__fail(err, LR_EINVAL, "lr_checkpoint_load_new: path is NULL");
    lr_safetensors st_, *st = &st_;
    lr_status s = lr_safetensors_open(st, path, err);
    if (s) return s;
    size_t sizes[LR_MLP_MAX_LAYERS + 1], n = 0;
    s = infer_sizes(st, sizes, &n, err);
    if (!s) s = lr_mlp_init(net, sizes, n, err);
    if (!s) {
        s = load_open(net, st, info, err);
        if (s) lr_mlp_free(net);
    }
    lr_safetensors_free(st);
    return s;
}
