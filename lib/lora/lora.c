/* lora.c — named LoRA adapters over one lr_mlp: add/select/remove, enable flags, merge and
 * unmerge with drift measurement, PiSSA initialisation, extraction of a LoRA from a full
 * fine-tune, and the seed's parameter table.
 *
 * The hot path is not here: lr_mlp's forward and training step read the lr_lora_weights a
 * layer points at (mlp.h, linear.c). This file owns those weights and decides which ones the
 * layers point at. Every adapter is allocated on its own, so the pointers the layers hold
 * stay valid while other adapters come and go.
 */
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lowrank/linalg/blas.h"
#include "lowrank/linalg/factor.h"
#include "lowrank/lora/lora.h"
#include "lowrank/base/rng.h"
#include "lowrank/linalg/svd.h"
#include "base/internal.h"
#include "nn/mlp_internal.h"
#include "lora/lora_internal.h"
#include "base/cpu_internal.h"

typedef struct lr__adapter {
    char name[LR_LORA_NAME_MAX];
    lr_lora_opts opts;
    float scale;
    uint32_t mask;                              /* layers it covers */
    lr_lora_weights w[LR_MLP_MAX_LAYERS];       /* rank 0 where not targeted */
    lr_mat pissa_w0[LR_MLP_MAX_LAYERS];         /* PiSSA: the original W₀ of each layer */
    bool rewrote_base;                          /* PiSSA-initialised here (not loaded) */
} lr__adapter;

/* ---------------------------------------------------------------- config ---------- */

lr_lora_opts lr_lora_opts_default(void)
{
    lr_lora_opts c = { 1, 1.0f, false, LR_LORA_INIT_GAUSSIAN, 0, 0 };
    return c;
}

float lr_lora_scale(size_t rank, float alpha, bool use_rslora)
{
    if (rank == 0) return 0.0f;
    /* in double, rounded once: PEFT computes lora_alpha / r (or / math.sqrt(r)) in Python */
    return (float)(use_rslora ? (double)alpha / sqrt((double)rank) : (double)alpha / (double)rank);
}

uint32_t lr__lora_mask(const lr_lora_opts *opts, const lr_mlp *net)
{
    uint32_t all = net->n_layers >= 32 ? 0xffffffffu : ((1u << net->n_layers) - 1u);
    return opts->targets ? opts->targets : all;
}

lr_status lr_lora_opts_check(const lr_lora_opts *opts, const lr_mlp *net, lr_err *err)
{
    if (!opts || !net || !net->params)
        return lr__fail(err, LR_EINVAL, "lora config: config or net is NULL or empty");
    if (opts->rank == 0) return lr__fail(err, LR_EINVAL, "lora config: rank must be >= 1, got 0");
    if (!isfinite(opts->alpha) || !(opts->alpha > 0.0f))
        return lr__fail(err, LR_EINVAL, "lora config: alpha must be > 0 and finite, got %g",
                        (double)opts->alpha);
    if (opts->init != LR_LORA_INIT_GAUSSIAN && opts->init != LR_LORA_INIT_PISSA)
        return lr__fail(err, LR_EINVAL, "lora config: unknown init kind %d", (int)opts->init);
    uint32_t mask = lr__lora_mask(opts, net);
    for (unsigned i = net->n_layers; i < 32; i++)
        if (mask & (1u << i))
            return lr__fail(err, LR_EINVAL, "lora config: target layer %u does not exist (the net "
                            "has %zu layers)", i, net->n_layers);
    for (size_t i = 0; i < net->n_layers; i++) { /* B·A cannot have a higher rank: wasted parameters */
        const lr_layer *ly = &net->layer[i];
        size_t k = ly->in < ly->out ? ly->in : ly->out;
        if ((mask & (1u << i)) && opts->rank > k)
            return lr__fail(err, LR_EINVAL, "lora config: rank %zu exceeds min(in, out) = %zu of %s (%zu -> %zu): "
                            "its update B·A cannot have a rank above %zu", opts->rank, k, ly->name, ly->in, ly->out, k);
    }
    return LR_OK;
}

lr_status lr_lora_parse_targets(uint32_t *mask, const char *list, size_t n_layers, lr_err *err)
{
    if (!list || !mask) return lr__fail(err, LR_EINVAL, "lora targets: NULL argument");
    if (n_layers == 0 || n_layers > LR_MLP_MAX_LAYERS)
        return lr__fail(err, LR_EINVAL, "lora targets: %zu layers, expected 1..%d", n_layers, LR_MLP_MAX_LAYERS);
    *mask = 0;
    if (!*list || strcmp(list, "all") == 0) return LR_OK;
    uint32_t m = 0;
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char tok[32];
        if (len == 0 || len >= sizeof tok)
            return lr__fail(err, LR_EINVAL, "lora targets: bad entry in \"%s\" (want names like "
                            "linear1 or numbers 1..%zu, comma-separated)", list, n_layers);
        memcpy(tok, p, len);
        tok[len] = '\0';
        /* lr_mlp names its layers linear1, linear2, ...: the name or the bare number */
        const char *num = strncmp(tok, "linear", 6) == 0 ? tok + 6 : tok;
        char *end;
        unsigned long v = strtoul(num, &end, 10);
        if (*end || num[0] < '1' || num[0] > '9' || v < 1 || v > n_layers)
            return lr__fail(err, LR_EINVAL, "lora targets: \"%s\" is not a layer (want names "
                            "linear1..linear%zu or numbers 1..%zu)", tok, n_layers, n_layers);
        m |= 1u << (v - 1);
        p += len;
        if (*p == ',') p++;
    }
    *mask = m;
    return LR_OK;
}

lr_status lr_lora_parse_initializer(lr_lora_initializer *kind, const char *s, lr_err *err)
{
    if (!s || !kind) return lr__fail(err, LR_EINVAL, "lora init: NULL argument");
    if (strcmp(s, "gaussian") == 0) *kind = LR_LORA_INIT_GAUSSIAN;
    else if (strcmp(s, "pissa") == 0) *kind = LR_LORA_INIT_PISSA;
    else return lr__fail(err, LR_EINVAL, "lora init: unknown kind \"%s\" (want gaussian or pissa)", s);
    return LR_OK;
}

const char *lr_lora_initializer_name(lr_lora_initializer kind)
{
    return kind == LR_LORA_INIT_PISSA ? "pissa" : "gaussian";
}

/* ---------------------------------------------------------------- module ---------- */

lr_status lr_lora_init(lr_lora *lm, lr_mlp *net, lr_err *err)
{
    if (!lm) return lr__fail(err, LR_EINVAL, "lr_lora_init: lm is NULL");
    memset(lm, 0, sizeof *lm);
    if (!net || !net->params) return lr__fail(err, LR_EINVAL, "lr_lora_init: net is NULL or empty");
    lm->net = net;
    lm->all_on = true;
    for (size_t i = 0; i < LR_MLP_MAX_LAYERS; i++) lm->layer_on[i] = true;
    return LR_OK;
}

static void adapter_free(lr__adapter *a)
{
    if (!a) return;
    for (size_t i = 0; i < LR_MLP_MAX_LAYERS; i++) {
        lr_lora_weights_free(&a->w[i]);
        lr_mat_free(&a->pissa_w0[i]);
    }
    free(a);
}

/* dst <- src, of the same shape by construction (a saved copy of the layer's own weights):
 * lr_mat_copy cannot fail here, so a failure is a bug, not an input. */
static void copy_same(lr_mat dst, lr_cmat src)
{
    lr_status s = lr_mat_copy(dst, src, NULL);
    assert(s == LR_OK);
    (void)s;
}

static void detach_all(lr_lora *lm)
{
    for (size_t i = 0; i < lm->net->n_layers; i++) {
        lr_status s = lr_mlp_set_lora(lm->net, i, NULL, NULL); /* detaching an existing layer cannot fail */
        assert(s == LR_OK);
        (void)s;
    }
}

static void free_copies(lr_lora *lm)
{
    for (size_t i = 0; i < LR_MLP_MAX_LAYERS; i++) lr_mat_free(&lm->copy[i]);
    lm->have_copy = false;
}

void lr_lora_free(lr_lora *lm)
{
    if (!lm || !lm->net) return;
    detach_all(lm);
    for (size_t i = 0; i < lm->n; i++) adapter_free(lm->ad[i]);
    free(lm->ad);
    free_copies(lm);
    memset(lm, 0, sizeof *lm);
}

lr_mlp *lr_lora_net(const lr_lora *lm) { return lm ? lm->net : NULL; }

static lr__adapter *find(const lr_lora *lm, const char *name)
{
    if (!lm || !name) return NULL;
    for (size_t i = 0; i < lm->n; i++)
        if (strcmp(lm->ad[i]->name, name) == 0) return lm->ad[i];
    return NULL;
}

/* The selected adapter's enabled flags from the module's switches. */
static void apply_enabled(lr_lora *lm)
{
    if (!lm->sel) return;
    for (size_t i = 0; i < lm->net->n_layers; i++)
        if (lm->sel->mask & (1u << i)) lm->sel->w[i].enabled = lm->all_on && lm->layer_on[i];
}

static lr_status attach(lr_lora *lm, lr__adapter *a, lr_err *err)
{
    detach_all(lm);
    lm->sel = NULL;
    if (!a) return LR_OK;
    for (size_t i = 0; i < lm->net->n_layers; i++) {
        if (!(a->mask & (1u << i))) continue;
        lr_status s = lr_mlp_set_lora(lm->net, i, &a->w[i], err);
        if (s) {
            detach_all(lm);
            return s;
        }
    }
    lm->sel = a;
    apply_enabled(lm);
    return LR_OK;
}

static lr_status not_merged(const lr_lora *lm, const char *what, lr_err *err)
{
    if (lm->merged)
        return lr__fail(err, LR_EINVAL, "%s: adapter \"%s\" is merged into the base; unmerge it first",
                        what, lm->merged->name);
    return LR_OK;
}

/* Validates and allocates a new adapter with zero A and B (not yet in the list). */
static lr_status adapter_new(lr_lora *lm, const char *name, const lr_lora_opts *opts,
                             lr__adapter **out, lr_err *err)
{
    lr_status s;
    *out = NULL;
    if (!lm) return lr__fail(err, LR_EINVAL, "lr_lora_insert: module is NULL");
    if (!name || !*name || strlen(name) >= LR_LORA_NAME_MAX)
        return lr__fail(err, LR_EINVAL, "lr_lora_insert: adapter name must be 1..%d bytes",
                        LR_LORA_NAME_MAX - 1);
    if ((s = not_merged(lm, "lora_add", err))) return s;
    if (find(lm, name)) return lr__fail(err, LR_EINVAL, "lr_lora_insert: adapter \"%s\" already exists", name);
    if ((s = lr_lora_opts_check(opts, lm->net, err))) return s;
    lr__adapter *a = calloc(1, sizeof *a);
    if (!a) return lr__fail(err, LR_ENOMEM, "lr_lora_insert: out of memory");
    strcpy(a->name, name);
    a->opts = *opts;
    a->scale = lr_lora_scale(opts->rank, opts->alpha, opts->use_rslora);
    a->mask = lr__lora_mask(opts, lm->net);
    for (size_t i = 0; i < lm->net->n_layers; i++) {
        if (!(a->mask & (1u << i))) continue;
        const lr_layer *ly = &lm->net->layer[i];
        if ((s = lr_lora_weights_init(&a->w[i], opts->rank, ly->in, ly->out, a->scale, err))) {
            adapter_free(a);
            return s;
        }
    }
    *out = a;
    return LR_OK;
}

static lr_status adapter_push(lr_lora *lm, lr__adapter *a, lr_err *err)
{
    if (lm->n == lm->cap) {
        size_t cap = lm->cap ? 2 * lm->cap : 4;
        lr__adapter **p = realloc(lm->ad, cap * sizeof *p);
        if (!p) return lr__fail(err, LR_ENOMEM, "lr_lora_insert: out of memory");
        lm->ad = p;
        lm->cap = cap;
    }
    lm->ad[lm->n++] = a;
    return LR_OK;
}

lr_status lr__lora_add_zero(lr_lora *lm, const char *name, const lr_lora_opts *opts, lr_err *err)
{
    lr__adapter *a;
    lr_status s = adapter_new(lm, name, opts, &a, err);
    if (s) return s;
    if ((s = adapter_push(lm, a, err))) adapter_free(a);
    return s;
}

/* PiSSA (Meng et al. 2024) as PEFT's LoraLayer.pissa_init does it: S_r is divided by the
 * scale before the square root, so s·B·A = U_r S_r V_rᵀ exactly in real arithmetic and the
 * residual W₀ − s·B·A (computed from the rounded factors, as PEFT does) makes the initial
 * output the base output up to one rounding per entry. */
static lr_status pissa_layer(lr__adapter *a, lr_layer *ly, size_t i, lr_err *err)
{
    lr_status s;
    lr_usv usv = { 0 };
    lr_lora_weights *w = &a->w[i];
    if ((s = lr_mat_init(&a->pissa_w0[i], ly->out, ly->in, err))) return s;
    if ((s = lr_mat_copy(a->pissa_w0[i], lr_cm(ly->w), err))) return s;
    if ((s = lr_usv_from_svd(&usv, lr_cm(ly->w), err))) return s;
    s = lr_factor_from_usv(w->b, w->a, &usv, w->rank, LR_SPLIT_BALANCED, err);
    lr_usv_free(&usv);
    if (s) return s;
    /* √(S_r/s) = √S_r / √s on both factors */
    float f = (float)(1.0 / sqrt((double)a->scale));
    for (size_t r = 0; r < w->a.rows; r++)
        for (size_t c = 0; c < w->a.cols; c++) w->a.data[r * w->a.ld + c] *= f;
    for (size_t r = 0; r < w->b.rows; r++)
        for (size_t c = 0; c < w->b.cols; c++) w->b.data[r * w->b.ld + c] *= f;
    return lr_gemm(ly->w, -a->scale, lr_cm(w->b), false, lr_cm(w->a), false, 1.0f, err);
}

lr_status lr_lora_insert(lr_lora *lm, const char *name, const lr_lora_opts *opts, lr_err *err)
{
    lr_lora_opts def = lr_lora_opts_default();
    if (!opts) opts = &def; /* NULL options: the defaults */
    lr__adapter *a;
    lr_status s = adapter_new(lm, name, opts, &a, err);
    if (s) return s;
    lr_mlp *net = lm->net;
    if (opts->init == LR_LORA_INIT_PISSA) {
        for (size_t i = 0; i < lm->n; i++)
            if (lm->ad[i]->rewrote_base) {
                adapter_free(a);
                return lr__fail(err, LR_EINVAL, "lr_lora_insert: PiSSA adapter \"%s\" already rewrote the "
                                "base; remove it before adding another PiSSA adapter", lm->ad[i]->name);
            }
        for (size_t i = 0; i < net->n_layers; i++) {
            if (!(a->mask & (1u << i))) continue;
            if ((s = pissa_layer(a, &net->layer[i], i, err))) {
                /* put back the layers already rewritten */
                for (size_t j = 0; j <= i; j++)
                    if (a->pissa_w0[j].data && a->pissa_w0[j].rows)
                        copy_same(net->layer[j].w, lr_cm(a->pissa_w0[j]));
                adapter_free(a);
                lr__mlp_weights_written(net);
                return s;
            }
        }
        a->rewrote_base = true;
    } else {
        lr_rng rng;
        lr_rng_seed(&rng, opts->seed);
        for (size_t i = 0; i < net->n_layers; i++)
            if (a->mask & (1u << i)) lr_rng_fill_normal(&rng, a->w[i].a, 0.0f, 1.0f);
    }
    if ((s = adapter_push(lm, a, err))) {
        for (size_t j = 0; j < net->n_layers; j++)
            if (a->pissa_w0[j].data && a->pissa_w0[j].rows)
                copy_same(net->layer[j].w, lr_cm(a->pissa_w0[j]));
        adapter_free(a);
    }
    if (opts->init == LR_LORA_INIT_PISSA) lr__mlp_weights_written(net);
    return s;
}

lr_status lr_lora_select(lr_lora *lm, const char *name, lr_err *err)
{
    if (!lm) return lr__fail(err, LR_EINVAL, "lr_lora_select: module is NULL");
    lr_status s = not_merged(lm, "lora_select", err);
    if (s) return s;
    lr__adapter *a = NULL;
    if (name && *name) {
        a = find(lm, name);
        if (!a) return lr__fail(err, LR_EINVAL, "lr_lora_select: no adapter named \"%s\"", name);
    }
    return attach(lm, a, err);
}

lr_status lr_lora_remove(lr_lora *lm, const char *name, lr_err *err)
{
    if (!lm) return lr__fail(err, LR_EINVAL, "lr_lora_remove: module is NULL");
    lr_status s = not_merged(lm, "lora_remove", err);
    if (s) return s;
    size_t k = 0;
    while (k < lm->n && !(name && strcmp(lm->ad[k]->name, name) == 0)) k++;
    if (k == lm->n)
        return lr__fail(err, LR_EINVAL, "lr_lora_remove: no adapter named \"%s\"", name ? name : "(null)");
    lr__adapter *a = lm->ad[k];
    if (lm->sel == a) attach(lm, NULL, NULL);
    bool wrote = false;
    for (size_t i = 0; i < lm->net->n_layers; i++)
        if (a->pissa_w0[i].data && a->pissa_w0[i].rows) {
            copy_same(lm->net->layer[i].w, lr_cm(a->pissa_w0[i]));
            wrote = true;
        }
    if (wrote) lr__mlp_weights_written(lm->net);
    adapter_free(a);
    memmove(lm->ad + k, lm->ad + k + 1, (lm->n - k - 1) * sizeof *lm->ad);
    lm->n--;
    return LR_OK;
}

const char *lr_lora_selected(const lr_lora *lm) { return lm && lm->sel ? lm->sel->name : NULL; }
size_t lr_lora_count(const lr_lora *lm) { return lm ? lm->n : 0; }
const char *lr_lora_name(const lr_lora *lm, size_t i) { return lm && i < lm->n ? lm->ad[i]->name : NULL; }

const lr_lora_opts *lr_lora_opts_of(const lr_lora *lm, const char *name)
{
    lr__adapter *a = find(lm, name);
    return a ? &a->opts : NULL;
}

lr_lora_weights *lr_lora_layer(const lr_lora *lm, const char *name, size_t layer)
{
    lr__adapter *a = find(lm, name);
    if (!a || layer >= LR_MLP_MAX_LAYERS || !(a->mask & (1u << layer))) return NULL;
    return &a->w[layer];
}

lr_status lr_lora_set_layer_enabled(lr_lora *lm, size_t layer, bool on, lr_err *err)
{
    if (!lm) return lr__fail(err, LR_EINVAL, "lr_lora_set_layer_enabled: module is NULL");
    if (layer >= lm->net->n_layers)
        return lr__fail(err, LR_EINVAL, "lr_lora_set_layer_enabled: layer %zu does not exist (the net "
                        "has %zu)", layer, lm->net->n_layers);
    lr_status s = not_merged(lm, "lora_set_layer_enabled", err);
    if (s) return s;
    lm->layer_on[layer] = on;
    apply_enabled(lm);
    return LR_OK;
}

void lr_lora_set_enabled(lr_lora *lm, bool on)
{
    if (!lm) return;
    lm->all_on = on;
    apply_enabled(lm);
}

bool lr_lora_layer_enabled(const lr_lora *lm, size_t layer)
{
    return lm && layer < LR_MLP_MAX_LAYERS && lm->all_on && lm->layer_on[layer];
}

void lr_lora_freeze_base(lr_lora *lm, bool frozen)
{
    if (lm) lr_mlp_freeze_all(lm->net, frozen);
}

/* ---------------------------------------------------------------- merge ----------- */

lr_status lr_lora_merge(lr_lora *lm, lr_lora_merge_mode mode, lr_err *err)
{
    LR__FP_SCOPE();
    if (!lm) return lr__fail(err, LR_EINVAL, "lr_lora_merge: module is NULL");
    lr_status s = not_merged(lm, "lora_merge", err);
    if (s) return s;
    if (!lm->sel) return lr__fail(err, LR_EINVAL, "lr_lora_merge: no adapter is selected");
    if (mode != LR_LORA_MERGE_NO_COPY && mode != LR_LORA_MERGE_KEEP_COPY)
        return lr__fail(err, LR_EINVAL, "lr_lora_merge: unknown mode %d", (int)mode);
    lr__adapter *a = lm->sel;
    lr_mlp *net = lm->net;
    bool on[LR_MLP_MAX_LAYERS] = { false };
    for (size_t i = 0; i < net->n_layers; i++)
        on[i] = (a->mask & (1u << i)) && lm->all_on && lm->layer_on[i];
    /* all copies first, so a failed allocation leaves the base untouched */
    if (mode == LR_LORA_MERGE_KEEP_COPY) {
        for (size_t i = 0; i < net->n_layers; i++) {
            if (!on[i]) continue;
            if ((s = lr_mat_init(&lm->copy[i], net->layer[i].out, net->layer[i].in, err))) {
                free_copies(lm);
                return s;
            }
            copy_same(lm->copy[i], lr_cm(net->layer[i].w));
        }
        lm->have_copy = true;
    }
    /* the shapes were checked when the adapter was added, so lr_gemm cannot fail here
     * short of a bug; its status is still passed on */
    for (size_t i = 0; i < net->n_layers; i++) {
        lm->merged_layer[i] = on[i];
        if (on[i] && (s = lr_gemm(net->layer[i].w, a->scale, lr_cm(a->w[i].b), false,
                                  lr_cm(a->w[i].a), false, 1.0f, err)))
            return s;
    }
    lr__mlp_weights_written(net);
    attach(lm, NULL, NULL);
    lm->merged = a;
    return LR_OK;
}

lr_status lr_lora_unmerge(lr_lora *lm, lr_lora_drift *drift, bool restore, lr_err *err)
{
    LR__FP_SCOPE();
    if (!lm) return lr__fail(err, LR_EINVAL, "lr_lora_unmerge: module is NULL");
    if (!lm->merged) return lr__fail(err, LR_EINVAL, "lr_lora_unmerge: nothing is merged");
    if (restore && !lm->have_copy)
        return lr__fail(err, LR_EINVAL, "lr_lora_unmerge: cannot restore W0 bit for bit: the merge kept "
                        "no copy (merge with LR_LORA_MERGE_KEEP_COPY)");
    lr__adapter *a = lm->merged;
    lr_mlp *net = lm->net;
    lr_lora_drift d;
    memset(&d, 0, sizeof d);
    d.n_layers = net->n_layers;
    d.measured = lm->have_copy;
    d.max_abs_all = lm->have_copy ? 0.0 : NAN;
    for (size_t i = 0; i < LR_MLP_MAX_LAYERS; i++) d.max_abs[i] = NAN;
    for (size_t i = 0; i < net->n_layers; i++) {
        if (!lm->merged_layer[i]) continue;
        d.merged[i] = true;
        lr_status s = lr_gemm(net->layer[i].w, -a->scale, lr_cm(a->w[i].b), false, lr_cm(a->w[i].a),
                              false, 1.0f, err);
        if (s) return s; /* cannot happen short of a bug: the shapes were checked at add time */
        if (lm->have_copy) {
            d.max_abs[i] = lr_mat_max_abs_diff(lr_cm(net->layer[i].w), lr_cm(lm->copy[i]));
            if (d.max_abs[i] > d.max_abs_all) d.max_abs_all = d.max_abs[i];
            if (restore) copy_same(net->layer[i].w, lr_cm(lm->copy[i]));
        }
        lm->merged_layer[i] = false;
    }
    d.restored = restore;
    lr__mlp_weights_written(net);
    free_copies(lm);
    lm->merged = NULL;
    if (drift) *drift = d;
    return attach(lm, a, err);
}

bool lr_lora_is_merged(const lr_lora *lm) { return lm && lm->merged; }

/* ---------------------------------------------------------------- extraction ------ */

lr_status lr_lora_extract(lr_lora *lm, lr_lora_extract_report *rep, const char *name, const lr_mlp *ft,
                          const lr_lora_opts *opts, lr_err *err)
{
    lr_lora_opts def = lr_lora_opts_default();
    if (!opts) opts = &def; /* NULL options: the defaults */
    if (!lm || !ft || !ft->params)
        return lr__fail(err, LR_EINVAL, "lr_lora_extract: module or fine-tuned net is NULL");
    lr_mlp *net = lm->net;
    if (ft->n_layers != net->n_layers)
        return lr__fail(err, LR_EDIM, "lr_lora_extract: the fine-tuned net has %zu layers, the base %zu",
                        ft->n_layers, net->n_layers);
    for (size_t i = 0; i <= net->n_layers; i++)
        if (ft->sizes[i] != net->sizes[i])
            return lr__fail(err, LR_EDIM, "lr_lora_extract: size %zu is %zu in the fine-tuned net, %zu in "
                            "the base", i, ft->sizes[i], net->sizes[i]);
    lr_lora_opts c = *opts;
    c.init = LR_LORA_INIT_GAUSSIAN; /* only for validation; A and B come from the SVD */
    lr_status s = lr_lora_opts_check(&c, net, err);
    if (s) return s;
    uint32_t mask = lr__lora_mask(&c, net);
    for (size_t i = 0; i < net->n_layers; i++) {
        const lr_layer *ly = &net->layer[i];
        size_t k = ly->in < ly->out ? ly->in : ly->out;
        if ((mask & (1u << i)) && c.rank > k)
            return lr__fail(err, LR_EINVAL, "lr_lora_extract: rank %zu exceeds min(in, out) = %zu of %s",
                            c.rank, k, ly->name);
    }
    lr__adapter *a;
    if ((s = adapter_new(lm, name, &c, &a, err))) return s;
    lr_lora_extract_report r;
    memset(&r, 0, sizeof r);
    r.n_layers = net->n_layers;
    lr_mat dw = { 0 }, prod = { 0 };
    lr_usv usv = { 0 };
    for (size_t i = 0; i < net->n_layers && !s; i++) {
        if (!(mask & (1u << i))) continue;
        const lr_layer *ly = &net->layer[i], *fy = &ft->layer[i];
        lr_lora_weights *w = &a->w[i];
        lr_lora_extract_row *row = &r.row[i];
        if ((s = lr_mat_init(&dw, ly->out, ly->in, err))) break;
        if ((s = lr_mat_init(&prod, ly->out, ly->in, err))) break;
        for (size_t o = 0; o < ly->out; o++)
            for (size_t j = 0; j < ly->in; j++)
                dw.data[o * dw.ld + j] = fy->w.data[o * fy->w.ld + j] - ly->w.data[o * ly->w.ld + j];
        if ((s = lr_usv_from_svd(&usv, lr_cm(dw), err))) break;
        if ((s = lr_factor_from_usv(w->b, w->a, &usv, c.rank, LR_SPLIT_US, err))) break;
        /* fold 1/s into B so that s·B·A = U_r S_r V_rᵀ */
        float f = (float)(1.0 / (double)a->scale);
        for (size_t o = 0; o < w->b.rows; o++)
            for (size_t j = 0; j < w->b.cols; j++) w->b.data[o * w->b.ld + j] *= f;
        if ((s = lr_gemm(prod, a->scale, lr_cm(w->b), false, lr_cm(w->a), false, 0.0f, err))) break;
        double e2 = 0.0, ey2 = 0.0, bmax = 0.0;
        for (size_t o = 0; o < ly->out; o++)
            for (size_t j = 0; j < ly->in; j++) {
                double d = (double)dw.data[o * dw.ld + j] - (double)prod.data[o * prod.ld + j];
                e2 += d * d;
            }
        for (size_t q = c.rank; q < usv.k; q++) ey2 += (double)usv.s[q] * (double)usv.s[q];
        for (size_t o = 0; o < ly->out; o++) {
            double d = fabs((double)fy->b[o] - (double)ly->b[o]);
            if (d > bmax) bmax = d;
        }
        row->targeted = true;
        row->rank = c.rank;
        row->delta_fro = lr_mat_norm_fro(lr_cm(dw));
        row->err_fro = sqrt(e2);
        row->err_eckart_young = sqrt(ey2);
        row->err_spectral = c.rank < usv.k ? (double)usv.s[c.rank] : 0.0;
        row->bias_max_change = bmax;
        row->params_dense = ly->in * ly->out;
        row->params_lora = c.rank * (ly->in + ly->out);
        row->params_saved = (long long)row->params_dense - (long long)row->params_lora;
        r.params_dense += row->params_dense;
        r.params_lora += row->params_lora;
        lr_usv_free(&usv);
        lr_mat_free(&dw);
        lr_mat_free(&prod);
    }
    lr_usv_free(&usv);
    lr_mat_free(&dw);
    lr_mat_free(&prod);
    if (!s) s = adapter_push(lm, a, err);
    if (s) {
        adapter_free(a);
        return s;
    }
    r.params_saved = (long long)r.params_dense - (long long)r.params_lora;
    if (rep) *rep = r;
    return LR_OK;
}

/* ---------------------------------------------------------------- accounting ------ */

lr_status lr_lora_param_count(lr_lora_param_table *t, const size_t *sizes, size_t n_sizes, uint32_t targets,
                              size_t rank, lr_err *err)
{
    if (!sizes || !t) return lr__fail(err, LR_EINVAL, "lr_lora_param_count: NULL argument");
    if (n_sizes < 2 || n_sizes - 1 > LR_MLP_MAX_LAYERS)
        return lr__fail(err, LR_EINVAL, "lr_lora_param_count: %zu sizes (want 2..%d)", n_sizes,
                        LR_MLP_MAX_LAYERS + 1);
    size_t n = n_sizes - 1;
    uint32_t all = n >= 32 ? 0xffffffffu : ((1u << n) - 1u);
    uint32_t mask = targets ? targets : all;
    if (mask & ~all)
        return lr__fail(err, LR_EINVAL, "lr_lora_param_count: targets name layers beyond the %zu there "
                        "are", n);
    memset(t, 0, sizeof *t);
    t->n_layers = n;
    t->rank = rank;
    for (size_t i = 0; i < n; i++) {
        lr_lora_param_row *row = &t->row[i];
        size_t in = sizes[i], out = sizes[i + 1], wp, io, lp;
        snprintf(row->name, sizeof row->name, "linear%zu", i + 1);
        row->in = in;
        row->out = out;
        row->lora = (mask & (1u << i)) != 0;
        if (lr_size_mul(&wp, in, out, NULL) || in > SIZE_MAX - out ||
            lr_size_mul(&lp, rank, in + out, NULL))
            return lr__fail(err, LR_ERANGE, "lr_lora_param_count: %s (%zu -> %zu, rank %zu) overflows",
                            row->name, in, out, rank);
        io = wp;
        row->w_params = wp;
        row->b_params = out;
        row->base_macs = io;
        if (row->lora) {
            row->a_rows = rank;
            row->a_cols = in;
            row->b_rows = out;
            row->b_cols = rank;
            row->lora_params = lp;
            row->lora_macs = lp;
        }
        size_t layer = wp + out;
        if (wp > SIZE_MAX - out || t->original > SIZE_MAX - layer || t->added > SIZE_MAX - row->lora_params ||
            t->base_macs > SIZE_MAX - io)
            return lr__fail(err, LR_ERANGE, "lr_lora_param_count: the totals overflow");
        t->original += layer;
        t->added += row->lora_params;
        t->base_macs += io;
        t->lora_macs += row->lora_macs;
    }
    if (t->original > SIZE_MAX - t->added)
        return lr__fail(err, LR_ERANGE, "lr_lora_param_count: the totals overflow");
    t->with_lora = t->original + t->added;
    t->increment_pct = t->original ? 100.0 * (double)t->added / (double)t->original : 0.0;
    return LR_OK;
}
