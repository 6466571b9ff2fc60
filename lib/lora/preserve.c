/* preserve.c — the nullspace method of forgetting-aware fine-tuning (preserve.h): the retained
 * inputs' top subspace per layer, the projection that keeps an adapter's A out of it, and the
 * leakage that measures how far it acts on them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "lowrank/lora/preserve.h"
#include "lowrank/linalg/blas.h"
#include "base/internal.h"

lr_preserve_opts lr_preserve_opts_default(void)
{
    lr_preserve_opts o = { .energy = 0.99, .max_samples = 2000, .svd = lr_spectrum_opts_default() };
    o.svd.method = LR_SPECTRUM_RANDOMIZED; /* the top 256 values, exact ones when they do not suffice */
    return o;
}

void lr_preserve_basis_free(lr_preserve_basis *pb)
{
    if (!pb) return;
    for (size_t i = 0; i < LR_MLP_MAX_LAYERS; i++) lr_mat_free(&pb->v[i]);
    memset(pb, 0, sizeof *pb);
}

/* The base network's input to each layer, in turn: x <- (n, sizes[0]) the examples, then
 * next: (n, sizes[l+1]) = ReLU(x·W_lᵀ + b_l) (adapters ignored: the subspace is the base's). */
typedef struct {
    const lr_mlp *net;
    size_t n, l;
    float *x, *next;
} walk;

static lr_status walk_init(walk *w, const lr_mlp *net, const lr_dataset *d, size_t n, lr_err *err)
{
    size_t widest = 0;
    for (size_t i = 0; i <= net->n_layers; i++) widest = net->sizes[i] > widest ? net->sizes[i] : widest;
    *w = (walk){ net, n, 0, lr__alloc_floats64(n * widest), lr__alloc_floats64(n * widest) };
    if (!w->x || !w->next) return lr__fail(err, LR_ENOMEM, "preserve: cannot allocate %zu x %zu activations", n, widest);
    lr_dataset_range(d, w->x, NULL, 0, n);
    return LR_OK;
}

static void walk_free(walk *w)
{
    free(w->x), free(w->next);
}

static lr_cmat walk_x(const walk *w)
{
    return lr_cmat_view(w->x, w->n, w->net->sizes[w->l], w->net->sizes[w->l]);
}

static lr_status walk_step(walk *w, lr_err *err)
{
    const lr_layer *ly = &w->net->layer[w->l];
    lr_mat y = lr_mat_view(w->next, w->n, ly->out, ly->out);
    lr_status s = lr_gemm(y, 1.0f, walk_x(w), false, lr_cm(ly->w), true, 0.0f, err);
    for (size_t i = 0; !s && i < w->n; i++)
        for (size_t j = 0; j < ly->out; j++) {
            float v = y.data[i * ly->out + j] + ly->b[j];
            y.data[i * ly->out + j] = v > 0 ? v : 0;
        }
    float *t = w->x;
    w->x = w->next, w->next = t, w->l++;
    return s;
}

static lr_status check_args(const lr_mlp *net, const lr_dataset *d, size_t *n, size_t max, lr_err *err)
{
    if (!net || !net->params || !d) return lr__fail(err, LR_EINVAL, "preserve: NULL net or data");
    lr_status s = lr_dataset_check(d, err);
    if (s) return s;
    if (d->dim != net->sizes[0])
        return lr__fail(err, LR_EDIM, "preserve: retained examples have %zu features, the net takes %zu", d->dim,
                        net->sizes[0]);
    *n = d->n < max ? d->n : max;
    if (*n == 0) return lr__fail(err, LR_EINVAL, "preserve: no retained examples");
    return LR_OK;
}

/* pb->v[l] <- the top right singular vectors of x holding the energy asked for */
static lr_status basis_of(lr_preserve_basis *pb, size_t l, lr_cmat x, const lr_preserve_opts *o, lr_err *err)
{
    lr_spectrum sp;
    lr_usv vec;
    size_t k;
    bool found;
    lr_status s = lr_spectrum_init(&sp, &vec, x, &o->svd, err);
    if (!s) s = lr_spectrum_rank_for_energy(&sp, &k, &found, o->energy, err);
    if (!s && !found) { /* the top values did not hold the energy asked for: every value then */
        lr_spectrum_opts exact = o->svd;
        exact.method = LR_SPECTRUM_EXACT;
        lr_spectrum_free(&sp);
        lr_usv_free(&vec);
        s = lr_spectrum_init(&sp, &vec, x, &exact, err);
        if (!s) s = lr_spectrum_rank_for_energy(&sp, &k, &found, o->energy, err);
    }
    if (!s && k == 0) k = 1;
    if (!s) s = lr_mat_init(&pb->v[l], k, x.cols, err);
    for (size_t i = 0; !s && i < k; i++) memcpy(pb->v[l].data + i * x.cols, vec.vt.data + i * vec.vt.ld, x.cols * 4);
    if (!s) {
        pb->k[l] = k;
        pb->energy_kept[l] = sp.energy > 0 ? 1 - lr_spectrum_tail(&sp, k) / (sp.exact ? sp.captured : sp.energy) : 1;
    }
    lr_spectrum_free(&sp);
    lr_usv_free(&vec);
    return s;
}

lr_status lr_preserve_basis_init(lr_preserve_basis *pb, const lr_mlp *net, uint32_t layers,
                                 const lr_dataset *retained, const lr_preserve_opts *opts, lr_err *err)
{
    if (!pb) return lr__fail(err, LR_EINVAL, "preserve: NULL basis");
    memset(pb, 0, sizeof *pb);
    lr_preserve_opts o = opts ? *opts : lr_preserve_opts_default();
    if (!(o.energy > 0 && o.energy <= 1)) return lr__fail(err, LR_EINVAL, "preserve: energy %g is outside (0, 1]", o.energy);
    size_t n;
    lr_status s = check_args(net, retained, &n, o.max_samples ? o.max_samples : 2000, err);
    if (s) return s;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    walk w;
    s = walk_init(&w, net, retained, n, err);
    pb->n_layers = net->n_layers, pb->samples = n;
    for (size_t l = 0; !s && l < net->n_layers; l++) {
        if (!layers || (layers & (1u << l))) s = basis_of(pb, l, walk_x(&w), &o, err);
        if (!s && l + 1 < net->n_layers) s = walk_step(&w, err);
    }
    walk_free(&w);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pb->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (s) lr_preserve_basis_free(pb);
    return s;
}

lr_status lr_preserve_project(const lr_preserve_basis *pb, lr_mlp *net, lr_err *err)
{
    if (!pb || !net) return lr__fail(err, LR_EINVAL, "lr_preserve_project: NULL argument");
    if (pb->n_layers != net->n_layers) return lr__fail(err, LR_EDIM, "lr_preserve_project: a basis of another net");
    for (size_t l = 0; l < net->n_layers; l++) {
        lr_lora_weights *lw = net->layer[l].lora;
        size_t k = pb->k[l];
        if (!lw || !k) continue;
        if (pb->v[l].cols != lw->in) return lr__fail(err, LR_EDIM, "lr_preserve_project: linear%zu: basis of %zu inputs, adapter of %zu", l + 1, pb->v[l].cols, lw->in);
        float t[64 * 64], *tp = lw->rank * k <= 64 * 64 ? t : malloc(lw->rank * k * sizeof *tp);
        if (!tp) return lr__fail(err, LR_ENOMEM, "lr_preserve_project: out of memory");
        lr_mat tm = lr_mat_view(tp, lw->rank, k, k);
        /* t = A·Vᵀ: (r, k);  A -= t·V */
        lr_status s = lr_gemm(tm, 1.0f, lr_cm(lw->a), false, lr_cm(pb->v[l]), true, 0.0f, err);
        if (!s) s = lr_gemm(lw->a, -1.0f, lr_cm(tm), false, lr_cm(pb->v[l]), false, 1.0f, err);
        if (tp != t) free(tp);
        if (s) return s;
    }
    return LR_OK;
}

lr_status lr_preserve_after_step(void *ctx, lr_mlp *net, size_t step, lr_err *err)
{
    (void)step;
    return lr_preserve_project(ctx, net, err);
}

lr_status lr_preserve_leakage(double *leak, const lr_mlp *net, const lr_dataset *retained, size_t max_samples,
                              lr_err *err)
{
    size_t n;
    if (!leak) return lr__fail(err, LR_EINVAL, "lr_preserve_leakage: NULL output");
    lr_status s = check_args(net, retained, &n, max_samples ? max_samples : 2000, err);
    if (s) return s;
    walk w;
    s = walk_init(&w, net, retained, n, err);
    for (size_t l = 0; !s && l < net->n_layers; l++) {
        const lr_lora_weights *lw = net->layer[l].lora;
        leak[l] = NAN;
        if (lw) {
            lr_mat ax;
            s = lr_mat_init(&ax, lw->rank, n, err);
            if (!s) s = lr_gemm(ax, 1.0f, lr_cm(lw->a), false, walk_x(&w), true, 0.0f, err);
            double den = lr_mat_norm_fro(lr_cm(lw->a)) * lr_mat_norm_fro(walk_x(&w));
            if (!s) leak[l] = den > 0 ? lr_mat_norm_fro(lr_cm(ax)) / den : 0;
            lr_mat_free(&ax);
        }
        if (!s && l + 1 < net->n_layers) s = walk_step(&w, err);
    }
    walk_free(&w);
    return s;
}
