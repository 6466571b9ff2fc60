/* mlp.c — the multilayer perceptron: parameters in one allocation, forward, the fused
 * training step (forward, cross-entropy, backward fused with Adam, LoRA branches), and the
 * unfused gradient path the tests check it against.
 *
 * Data flow of one training step (batch B, layers l = 0..L-1, act[l+1] = layer l's output):
 *   forward   act[l+1] = relu(act[l]·W_lᵀ + b_l [+ s·(act[l]·A_lᵀ)·B_lᵀ])  (no relu at the end)
 *   loss      d = (softmax(logits) - onehot) / B, or with lr_mlp_targets
 *             d = (c·(p - onehot) + s·(p - q)) / B, c and s the example's label and soft
 *             weights, q its soft targets (lr_softmax_xent_kl)
 *   backward  for l = L-1 … lowest trainable layer:
 *               unfrozen base: one pass over W_l computes dW in registers, dx from the old
 *                              rows, Adam on the rows (lr_linear_backward_adam);
 *               frozen base:   dx = d·W_l only, when a layer below still needs it;
 *               adapter:       gA, gB, dx += s·(d·B)·A, then Adam on A and B;
 *               d = relu'(act[l]) ⊙ dx.
 * Layers below the lowest trainable one are not visited at all.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lowrank/nn/activation.h"
#include "lowrank/linalg/blas.h"
#include "lowrank/nn/linear.h"
#include "lowrank/nn/loss.h"
#include "lowrank/nn/mlp.h"
#include "base/internal.h"
#include "nn/linear_internal.h"
#include "nn/loss_internal.h"
#include "nn/mlp_internal.h"
#include "nn/simd.h"
#include "base/cpu_internal.h"

const size_t lr_mlp_default_sizes[4] = { 784, 1000, 2000, 10 };

/* Forward-only calls process at most this many rows at a time (bounded workspace). */
#define LR__FWD_CHUNK 1000

struct lr__mlp_work {
    float *m, *v;           /* Adam moments of params, (n_params) each, same layout */
    bool stale[LR_MLP_MAX_LAYERS]; /* layer l's moments still to be zeroed (lazy reset) */
    size_t cap;             /* batch rows the buffers below hold */
    size_t rank_cap;        /* Σ ranks the u buffer holds, and max rank for t */
    float *buf;             /* one allocation for everything below */
    float *act[LR_MLP_MAX_LAYERS + 1];  /* act[l]: (cap, sizes[l]), l >= 1 */
    float *d0, *d1;         /* (cap, max size): gradient ping-pong */
    float *dxwork;          /* partial dx sums of the fused kernel */
    float *u;               /* (cap, Σ rank): the adapters' x·Aᵀ, layer after layer */
    float *t;               /* (cap, max rank) */
    lr__wpack pack[LR_MLP_MAX_LAYERS]; /* frozen layers' transposed weights (frozen_pack) */
};

/* ------------------------------------------------------------- construction -------- */

size_t lr_mlp_count_params(const size_t *sizes, size_t n_sizes)
{
    if (!sizes || n_sizes < 2) return 0;
    size_t total = 0, t;
    for (size_t i = 0; i + 1 < n_sizes; i++) {
        if (lr_size_mul(&t, sizes[i] + 1, sizes[i + 1], NULL) || total > SIZE_MAX - t) return 0;
        total += t;
    }
    return total;
}

lr_status lr_mlp_init(lr_mlp *net, const size_t *sizes, size_t n_sizes, lr_err *err)
{
    if (!net) return lr__fail(err, LR_EINVAL, "mlp_init: net is NULL");
    memset(net, 0, sizeof *net);
    if (!sizes) return lr__fail(err, LR_EINVAL, "mlp_init: sizes is NULL");
    if (n_sizes < 2 || n_sizes > LR_MLP_MAX_LAYERS + 1)
        return lr__fail(err, LR_EINVAL, "mlp_init: %zu layer sizes given, need 2 to %d", n_sizes,
                        LR_MLP_MAX_LAYERS + 1);
    for (size_t i = 0; i < n_sizes; i++)
        if (sizes[i] == 0 || sizes[i] > ((size_t)1 << 30))
            return lr__fail(err, LR_EINVAL, "mlp_init: layer size %zu (entry %zu) must be in 1..2^30",
                            sizes[i], i);
    size_t n = lr_mlp_count_params(sizes, n_sizes);
    if (n == 0 || n > SIZE_MAX / (3 * sizeof(float)))
        return lr__fail(err, LR_ERANGE, "mlp_init: parameter count overflows");
    float *p = lr__alloc_floats_huge(n);
    struct lr__mlp_work *w = calloc(1, sizeof *w);
    float *m = lr__alloc_floats_huge(n), *v = lr__alloc_floats_huge(n);
    if (!p || !w || !m || !v) {
        free(p);
        free(w);
        free(m);
        free(v);
        return lr__fail(err, LR_ENOMEM, "mlp_init: cannot allocate %zu parameters", n);
    }
    w->m = m;
    w->v = v;
    net->params = p;
    net->n_params = n;
    net->work = w;
    net->n_layers = n_sizes - 1;
    size_t off = 0;
    for (size_t i = 0; i < n_sizes; i++) net->sizes[i] = sizes[i];
    for (size_t l = 0; l < net->n_layers; l++) {
        lr_layer *ly = &net->layer[l];
        snprintf(ly->name, sizeof ly->name, "linear%u", (unsigned)(l + 1) & 0xffu); /* l < 16 */
        ly->in = sizes[l];
        ly->out = sizes[l + 1];
        ly->w = lr_mat_view(p + off, ly->out, ly->in, ly->in);
        off += ly->out * ly->in;
        ly->b = p + off;
        off += ly->out;
    }
    return LR_OK;
}

void lr_mlp_free(lr_mlp *net)
{
    if (!net) return;
    if (net->work) {
        for (size_t l = 0; l < LR_MLP_MAX_LAYERS; l++) lr__wpack_free(&net->work->pack[l]);
        free(net->work->m);
        free(net->work->v);
        free(net->work->buf);
        free(net->work);
    }
    lr_pool_free(&net->pool);
    free(net->params);
    memset(net, 0, sizeof *net);
}

void lr_mlp_reset_params(lr_mlp *net, lr_rng *rng)
{
    if (!net || !rng || !net->params) return;
    for (size_t l = 0; l < net->n_layers; l++) {
        lr_layer *ly = &net->layer[l];
        /* nn.Linear.reset_parameters: kaiming_uniform_(a=√5) gives bound 1/√fan_in, and the
         * bias uses the same bound. */
        float bound = (float)(1.0 / sqrt((double)ly->in));
        lr_rng_fill_uniform(rng, ly->w, -bound, bound);
        lr_rng_fill_uniform(rng, lr_mat_view(ly->b, 1, ly->out, ly->out), -bound, bound);
    }
    lr__mlp_weights_written(net);
    lr_mlp_reset_optimizer(net);
}

void lr__mlp_weights_written(lr_mlp *net)
{
    for (size_t l = 0; net->work && l < net->n_layers; l++) lr__wpack_free(&net->work->pack[l]);
}

int lr_mlp_find_layer(const lr_mlp *net, const char *name)
{
    if (!net || !name) return -1;
    for (size_t l = 0; l < net->n_layers; l++)
        if (strcmp(net->layer[l].name, name) == 0) return (int)l;
    return -1;
}

lr_status lr_mlp_set_frozen(lr_mlp *net, size_t layer, bool frozen, lr_err *err)
{
    if (!net || !net->params) return lr__fail(err, LR_EINVAL, "mlp_set_frozen: net is NULL or empty");
    if (layer >= net->n_layers)
        return lr__fail(err, LR_EINVAL, "mlp_set_frozen: layer %zu does not exist (the net has %zu)",
                        layer, net->n_layers);
    net->layer[layer].frozen = frozen;
    lr__wpack_free(&net->work->pack[layer]); /* remade from the weights as they are now, if needed */
    return LR_OK;
}

void lr_mlp_freeze_all(lr_mlp *net, bool frozen)
{
    if (!net) return;
    for (size_t l = 0; l < net->n_layers; l++) {
        net->layer[l].frozen = frozen;
        if (net->work) lr__wpack_free(&net->work->pack[l]);
    }
}

lr_status lr_mlp_set_lora(lr_mlp *net, size_t layer, lr_lora_weights *lw, lr_err *err)
{
    if (!net || !net->params) return lr__fail(err, LR_EINVAL, "mlp_set_lora: net is NULL or empty");
    if (layer >= net->n_layers)
        return lr__fail(err, LR_EINVAL, "mlp_set_lora: layer %zu does not exist (the net has %zu)",
                        layer, net->n_layers);
    lr_layer *ly = &net->layer[layer];
    if (lw) {
        if (lw->rank == 0 || lw->in != ly->in || lw->out != ly->out || lw->a.rows != lw->rank ||
            lw->a.cols != ly->in || lw->b.rows != ly->out || lw->b.cols != lw->rank)
            return lr__fail(err, LR_EDIM, "mlp_set_lora: %s is %zu -> %zu, adapter A is %zu x %zu and "
                            "B %zu x %zu (rank %zu, in %zu, out %zu)", ly->name, ly->in, ly->out,
                            lw->a.rows, lw->a.cols, lw->b.rows, lw->b.cols, lw->rank, lw->in, lw->out);
        const lr_mat *same_a[3] = { &lw->ga, &lw->ma, &lw->va }, *same_b[3] = { &lw->gb, &lw->mb, &lw->vb };
        for (int i = 0; i < 3; i++)
            if (!lw->a.data || !lw->b.data || !same_a[i]->data || !same_b[i]->data ||
                same_a[i]->rows != lw->a.rows || same_a[i]->cols != lw->a.cols ||
                same_b[i]->rows != lw->b.rows || same_b[i]->cols != lw->b.cols)
                return lr__fail(err, LR_EDIM, "mlp_set_lora: %s: the adapter's gradient or Adam "
                                "buffers are missing or not shaped like A and B", ly->name);
    }
    ly->lora = lw;
    return LR_OK;
}

lr_status lr_mlp_set_threads(lr_mlp *net, int n, lr_err *err)
{
    if (!net) return lr__fail(err, LR_EINVAL, "mlp_set_threads: net is NULL");
    if (n < 1 || n > LR_POOL_MAX_THREADS)
        return lr__fail(err, LR_EINVAL, "mlp_set_threads: %d threads, expected 1..%d", n, LR_POOL_MAX_THREADS);
    if (n == lr_pool_threads(&net->pool)) return LR_OK;
    lr_pool pool;
    lr_status s = lr_pool_init(&pool, n, err);
    if (s) return s;
    lr_pool_free(&net->pool);
    net->pool = pool;
    return LR_OK;
}

static void zero_mat(lr_mat m)
{
    if (m.data) lr_mat_fill(m, 0.0f);
}

/* Zeroes layer l's Adam moments (weights and bias). */
static void zero_moments(lr_mlp *net, size_t l)
{
    const lr_layer *ly = &net->layer[l];
    size_t off_w = (size_t)(ly->w.data - net->params), off_b = (size_t)(ly->b - net->params);
    lr__wpack_free(&net->work->pack[l]); /* it may live in these moments (frozen_pack) */
    memset(net->work->m + off_w, 0, ly->out * ly->in * sizeof(float));
    memset(net->work->v + off_w, 0, ly->out * ly->in * sizeof(float));
    memset(net->work->m + off_b, 0, ly->out * sizeof(float));
    memset(net->work->v + off_b, 0, ly->out * sizeof(float));
    net->work->stale[l] = false;
}

void lr_mlp_reset_optimizer(lr_mlp *net)
{
    if (!net || !net->work) return;
    net->adam_t = 0;
    /* A frozen layer's moments are zeroed when it is first updated, not now: a LoRA
     * fine-tune would otherwise clear 22 MB of RichBoyNet moments it never reads. */
    for (size_t l = 0; l < net->n_layers; l++) {
        lr_layer *ly = &net->layer[l];
        net->work->stale[l] = ly->frozen;
        if (!ly->frozen) zero_moments(net, l);
    }
    for (size_t l = 0; l < net->n_layers; l++) {
        lr_lora_weights *lw = net->layer[l].lora;
        if (!lw) continue;
        zero_mat(lw->ma);
        zero_mat(lw->va);
        zero_mat(lw->mb);
        zero_mat(lw->vb);
    }
}

/* ------------------------------------------------------------------ workspace -------- */

static bool lora_on(const lr_layer *ly) { return ly->lora && ly->lora->enabled; }

static lr_status ensure_work(lr_mlp *net, size_t batch, lr_err *err)
{
    struct lr__mlp_work *w = net->work;
    size_t rank_sum = 0, max_rank = 0, max_size = 0, max_in = 0;
    for (size_t l = 0; l < net->n_layers; l++) {
        const lr_lora_weights *lw = net->layer[l].lora;
        if (lw) {
            rank_sum += lw->rank;
            if (lw->rank > max_rank) max_rank = lw->rank;
        }
        if (net->layer[l].in > max_in) max_in = net->layer[l].in;
    }
    for (size_t i = 0; i <= net->n_layers; i++)
        if (net->sizes[i] > max_size) max_size = net->sizes[i];
    if (w->buf && w->cap >= batch && w->rank_cap >= rank_sum && w->rank_cap >= max_rank) return LR_OK;
    size_t cap = batch > w->cap ? batch : w->cap;
    size_t rcap = rank_sum > w->rank_cap ? rank_sum : w->rank_cap;
    /* floats: acts Σ sizes[1..L], d0 + d1, dx partials, u, t; every region starts on a
     * cache line (lr__alloc_floats64: the kernels' 32-byte loads must not straddle lines) */
    size_t region[LR_MLP_MAX_LAYERS + 5], nreg = 0, total = 0;
    for (size_t i = 1; i <= net->n_layers; i++) region[nreg++] = net->sizes[i];
    region[nreg++] = max_size;
    region[nreg++] = max_size;
    region[nreg++] = rcap;
    region[nreg++] = rcap;
    size_t dxw = lr_linear_backward_adam_work(cap, max_in);
    for (size_t i = 0; i < nreg; i++) {
        size_t t;
        if (lr_size_mul(&t, region[i], cap, NULL) || t > SIZE_MAX / 8 - total)
            return lr__fail(err, LR_ERANGE, "mlp: workspace for batch %zu overflows", batch);
        region[i] = (t + 15) / 16 * 16;
        total += region[i];
    }
    if (dxw > SIZE_MAX / 8 - total)
        return lr__fail(err, LR_ERANGE, "mlp: workspace for batch %zu overflows", batch);
    total += dxw;
    float *buf = lr__alloc_floats64(total);
    if (!buf) return lr__fail(err, LR_ENOMEM, "mlp: cannot allocate the workspace for batch %zu", batch);
    free(w->buf);
    w->buf = buf;
    w->cap = cap;
    w->rank_cap = rcap;
    float *p = buf;
    size_t k = 0;
    w->act[0] = NULL;
    for (size_t i = 1; i <= net->n_layers; i++) {
        w->act[i] = p;
        p += region[k++];
    }
    w->d0 = p;
    p += region[k++];
    w->d1 = p;
    p += region[k++];
    w->u = p;
    p += region[k++];
    w->t = p;
    p += region[k++];
    w->dxwork = p;
    return LR_OK;
}

/* Where a forward pass writes: act[l] (cap, sizes[l]) for 1 <= l <= L, and the adapters'
 * x·Aᵀ, layer after layer, in u (cap, Σ rank). */
typedef struct {
    float *act[LR_MLP_MAX_LAYERS + 1];
    float *u;
    size_t cap;
    lr__wpack *pack;        /* training: the frozen layers' copies (net->work->pack); else NULL */
} fwd_bufs;

/* u view of layer l's adapter. */
static lr_mat lora_u(const lr_mlp *net, const fwd_bufs *fb, size_t l, size_t batch)
{
    size_t off = 0;
    for (size_t i = 0; i < l; i++)
        if (net->layer[i].lora) off += net->layer[i].lora->rank;
    size_t r = net->layer[l].lora->rank;
    return lr_mat_view(fb->u + off * fb->cap, batch, r, r);
}

static fwd_bufs train_bufs(const lr_mlp *net)
{
    fwd_bufs fb;
    memcpy(fb.act, net->work->act, sizeof fb.act);
    fb.u = net->work->u;
    fb.cap = net->work->cap;
    fb.pack = net->work->pack;
    return fb;
}

/* ------------------------------------------------------------------- forward -------- */

static const char *nonfinite_kind(const float *p, size_t n, size_t *at)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i])) {
            *at = i;
            return isnan(p[i]) ? "NaN" : "Inf";
        }
    return NULL;
}

/* Frozen layers are read through a transposed copy of their weights in training (lr__wpack,
 * lib/nn/frozen.c): made at the first step that needs it, remade when it no longer matches
 * the weights (their storage, or one of 64 sampled entries), dropped by lr_mlp_set_frozen
 * and lr_mlp_freeze_all. A frozen layer whose moments wait to be zeroed (stale: the usual
 * case, lr_train resets the optimizer) lends them to the copy: 8 MB of fresh pages cost
 * 16-30 ms of page faults in a VM, against 2 ms for the copy itself; zero_moments drops the
 * copy before it zeroes them. NULL when the layer does not qualify or the copy cannot be
 * made; the row kernel then runs, with the same bits. */
#define LR__PACK_BATCH 32
static const lr__wpack *frozen_pack(const lr_mlp *net, lr__wpack *pack, size_t l, size_t batch)
{
    const lr_layer *ly = &net->layer[l];
    if (!ly->frozen || batch > LR__PACK_BATCH || ly->in > LR__PK_MAXJB * LR__FJ || lr__isa() < LR_ISA_AVX2)
        return NULL;
    lr__wpack *p = &pack[l];
    if (lr__wpack_matches(p, lr_cm(ly->w))) return p;
    lr__wpack_free(p);
    struct lr__mlp_work *w = net->work;
    size_t off = (size_t)(ly->w.data - net->params), n = ly->out * ly->in;
    bool lend = w->stale[l];
    return lr__wpack_make(p, lr_cm(ly->w), LR__PACK_BATCH, lend ? w->m + off : NULL, lend ? n : 0,
                          lend ? w->v + off : NULL, lend ? n : 0, NULL) ? NULL : p;
}

/* act[l+1] for every layer; the last layer writes into `logits` when given (ld = out).
 * check: stop at the first layer whose output is not finite, naming it and `step`. */
static lr_status forward_pass(const lr_mlp *net, const fwd_bufs *fb, const float *x, size_t batch,
                              float *logits, bool check, size_t step, lr_err *err)
{
    lr_cmat in = lr_cmat_view(x, batch, net->sizes[0], net->sizes[0]);
    for (size_t l = 0; l < net->n_layers; l++) {
        const lr_layer *ly = &net->layer[l];
        bool last = l + 1 == net->n_layers;
        float *yp = (last && logits) ? logits : fb->act[l + 1];
        lr_mat y = lr_mat_view(yp, batch, ly->out, ly->out);
        const lr__wpack *pk = fb->pack ? frozen_pack(net, fb->pack, l, batch) : NULL;
        lr_status s = LR_OK;
        if (!(pk && lr__linear_forward_packed_mt(y, in, pk, ly->b, &net->pool)))
            s = lr__linear_forward_mt(y, in, lr_cm(ly->w), ly->b, &net->pool, err);
        if (!s && lora_on(ly)) s = lr_lora_weights_forward_add(y, lora_u(net, fb, l, batch), in, ly->lora, err);
        if (s) return s;
        if (!last) lr_relu_forward(yp, batch * ly->out);
        size_t at;
        const char *bad = check ? nonfinite_kind(yp, batch * ly->out, &at) : NULL;
        if (bad)
            return lr__fail(err, LR_ENONFINITE, "step %zu: %s output (%zu,%zu) is %s", step, ly->name,
                            at / ly->out, at % ly->out, bad);
        in = lr_cm(y);
    }
    return LR_OK;
}

static lr_status check_io(const lr_mlp *net, const void *x, size_t batch, const void *out,
                          const char *what, lr_err *err)
{
    if (!net || !net->params || !net->work)
        return lr__fail(err, LR_EINVAL, "%s: net is NULL or not initialised", what);
    if (!x || !out) return lr__fail(err, LR_EINVAL, "%s: x or its output is NULL", what);
    if (batch == 0) return lr__fail(err, LR_EINVAL, "%s: batch is 0", what);
    return LR_OK;
}

void lr_mlp_ws_init(lr_mlp_ws *ws)
{
    if (ws) memset(ws, 0, sizeof *ws);
}

void lr_mlp_ws_free(lr_mlp_ws *ws)
{
    if (!ws) return;
    free(ws->buf);
    memset(ws, 0, sizeof *ws);
}

/* Lays out fb for `rows` rows in ws, growing it when it is too small: hidden activations
 * (the last layer writes the caller's logits) and the adapters' u, each region on a line. */
static lr_status ws_layout(const lr_mlp *net, lr_mlp_ws *ws, size_t rows, fwd_bufs *fb, lr_err *err)
{
    size_t region[LR_MLP_MAX_LAYERS + 1], total = 0, rank_sum = 0;
    for (size_t l = 0; l < net->n_layers; l++)
        if (net->layer[l].lora) rank_sum += net->layer[l].lora->rank;
    for (size_t i = 1; i <= net->n_layers; i++) {
        size_t cols = i < net->n_layers ? net->sizes[i] : rank_sum, t;
        if (lr_size_mul(&t, cols, rows, NULL) || t > SIZE_MAX / 8 - total)
            return lr__fail(err, LR_ERANGE, "mlp_forward: workspace for %zu rows overflows", rows);
        region[i] = (t + 15) / 16 * 16;
        total += region[i];
    }
    if (ws->floats < total) {
        float *buf = lr__alloc_floats64(total);
        if (!buf) return lr__fail(err, LR_ENOMEM, "mlp_forward: cannot allocate %zu floats of workspace", total);
        free(ws->buf);
        ws->buf = buf;
        ws->floats = total;
    }
    float *p = ws->buf;
    memset(fb, 0, sizeof *fb);
    for (size_t i = 1; i < net->n_layers; i++) {
        fb->act[i] = p;
        p += region[i];
    }
    fb->u = p; /* region[n_layers] */
    fb->cap = rows;
    return LR_OK;
}

lr_status lr_mlp_forward(const lr_mlp *net, float *logits, const float *x, size_t batch, lr_mlp_ws *ws,
                         lr_err *err)
{
    LR__FP_SCOPE();
    lr_status s;
    if ((s = check_io(net, x, batch, logits, "mlp_forward", err))) return s;
    size_t in = net->sizes[0], out = net->sizes[net->n_layers];
    size_t chunk = batch < LR__FWD_CHUNK ? batch : LR__FWD_CHUNK;
    lr_mlp_ws own = { NULL, 0 };
    fwd_bufs fb;
    if ((s = ws_layout(net, ws ? ws : &own, chunk, &fb, err))) return s;
    for (size_t b0 = 0; b0 < batch && !s; b0 += chunk) {
        size_t n = batch - b0 < chunk ? batch - b0 : chunk, at;
        s = forward_pass(net, &fb, x + b0 * in, n, logits + b0 * out, false, 0, err);
        /* the outputs only (cheap): a NaN input, or weights large enough to overflow float32
         * (an adapter with entries near 3e38, say), must not pass for a prediction */
        const char *bad = s ? NULL : nonfinite_kind(logits + b0 * out, n * out, &at);
        if (bad)
            s = lr__fail(err, LR_ENONFINITE, "mlp_forward: output (%zu,%zu) is %s (a non-finite input, or "
                         "values that overflow float32 in the model)", b0 + at / out, at % out, bad);
    }
    lr_mlp_ws_free(&own);
    return s;
}

/* --------------------------------------------------------------------- train -------- */

/* labels (if given) each < out; NULL only with targets (the loss then checks the weights). */
static lr_status check_labels(const lr_mlp *net, const uint8_t *labels, size_t batch, bool targets,
                              const char *what, lr_err *err)
{
    if (!labels) return targets ? LR_OK : lr__fail(err, LR_EINVAL, "%s: labels is NULL", what);
    size_t out = net->sizes[net->n_layers];
    for (size_t b = 0; b < batch; b++)
        if (labels[b] >= out)
            return lr__fail(err, LR_ERANGE, "%s: label %u of example %zu is >= %zu outputs", what,
                            (unsigned)labels[b], b, out);
    return LR_OK;
}

static bool has_targets(const lr_mlp_targets *tg)
{
    return tg && (tg->label_weight || tg->soft || tg->soft_weight);
}

/* *loss and dlogits: (batch, out) <- the loss of tg and its gradient. Without targets this is
 * lr_softmax_xent itself, so lr_mlp_train_step keeps its results to the bit. */
static lr_status batch_loss(const lr_mlp *net, float *loss, float *dlogits, const float *logits,
                            const uint8_t *labels, size_t batch, const lr_mlp_targets *tg, lr_err *err)
{
    size_t nout = net->sizes[net->n_layers];
    if (!has_targets(tg)) return lr_softmax_xent(loss, dlogits, logits, labels, batch, nout, err);
    return lr_softmax_xent_kl(loss, dlogits, logits, labels, tg->label_weight, tg->soft, tg->soft_weight,
                              batch, nout, err);
}

/* Lowest layer with something to train, or n_layers when nothing is trainable. */
static size_t lowest_trainable(const lr_mlp *net)
{
    for (size_t l = 0; l < net->n_layers; l++)
        if (!net->layer[l].frozen || lora_on(&net->layer[l])) return l;
    return net->n_layers;
}

static void adam_mat(lr_mat p, lr_mat m, lr_mat v, lr_mat g, const lr_adam_step *s)
{
    if (p.ld == p.cols && m.ld == p.cols && v.ld == p.cols && g.ld == p.cols) {
        /* one flat call: a rank-1 B is out rows of 1 float, too short for the SIMD path */
        lr_adam_update(p.data, m.data, v.data, g.data, p.rows * p.cols, s);
        return;
    }
    for (size_t i = 0; i < p.rows; i++)
        lr_adam_update(p.data + i * p.ld, m.data + i * m.ld, v.data + i * v.ld, g.data + i * g.ld,
                       p.cols, s);
}

static lr_status check_adam(const lr_adam_opts *a, const char *what, lr_err *err)
{
    if (!a) return lr__fail(err, LR_EINVAL, "%s: adam parameters are NULL", what);
    if (!(a->lr >= 0.0) || !isfinite(a->lr) || !(a->beta1 >= 0.0 && a->beta1 < 1.0) ||
        !(a->beta2 >= 0.0 && a->beta2 < 1.0) || !(a->eps >= 0.0) || !isfinite(a->eps))
        return lr__fail(err, LR_EINVAL, "%s: adam lr %g, betas (%g, %g), eps %g out of range "
                        "(lr >= 0, 0 <= beta < 1, eps >= 0)", what, a->lr, a->beta1, a->beta2, a->eps);
    return LR_OK;
}

/* One step of the backward pass: layer l's input gradient into dn (when a layer below needs
 * it) and Adam on its trainable tensors, from d: (batch, out), the gradient of its output. */
typedef struct {
    const float *x;
    size_t batch, lo, step;
    const fwd_bufs *fb;
    lr_adam_step as;
} bwd_ctx;

static lr_status layer_backward_adam(lr_mlp *net, size_t l, const bwd_ctx *c, float *d, float *dn, lr_err *err)
{
    struct lr__mlp_work *w = net->work;
    lr_layer *ly = &net->layer[l];
    size_t batch = c->batch, at;
    lr_status s;
    const char *bad = nonfinite_kind(d, batch * ly->out, &at);
    if (bad)
        return lr__fail(err, LR_ENONFINITE, "step %zu: gradient of %s output (%zu,%zu) is %s", c->step,
                        ly->name, at / ly->out, at % ly->out, bad);
    lr_cmat dy = lr_cmat_view(d, batch, ly->out, ly->out);
    lr_cmat xin = lr_cmat_view(l == 0 ? c->x : w->act[l], batch, ly->in, ly->in);
    bool need_dx = l > c->lo;
    lr_mat dx = need_dx ? lr_mat_view(dn, batch, ly->in, ly->in) : lr_mat_view(NULL, 0, 0, 0);
    size_t off_w = (size_t)(ly->w.data - net->params), off_b = (size_t)(ly->b - net->params);
    if (!ly->frozen) {
        if (w->stale[l]) zero_moments(net, l);
        lr_mat mw = lr_mat_view(w->m + off_w, ly->out, ly->in, ly->in);
        lr_mat vw = lr_mat_view(w->v + off_w, ly->out, ly->in, ly->in);
        if ((s = lr__linear_backward_adam_ex(dx, ly->w, ly->b, mw, vw, w->m + off_b, w->v + off_b, dy, xin,
                                             &c->as, w->dxwork, &net->pool, c->step & 1, err)))
            return s;
    } else if (need_dx) {
        lr__linear_dx_mt(dx, dy, lr_cm(ly->w), c->step & 1, &net->pool);
    }
    if (lora_on(ly)) {
        lr_lora_weights *lw = ly->lora;
        lr_mat t = lr_mat_view(w->t, batch, lw->rank, lw->rank);
        if ((s = lr_lora_weights_backward(dx, lw, dy, xin, lr_cm(lora_u(net, c->fb, l, batch)), t, err))) return s;
        adam_mat(lw->a, lw->ma, lw->va, lw->ga, &c->as);
        adam_mat(lw->b, lw->mb, lw->vb, lw->gb, &c->as);
    }
    if (need_dx) lr_relu_backward(dn, w->act[l], batch * ly->in);
    return LR_OK;
}

/* Arguments, workspace, forward pass and loss of a training step: d0 <- d loss / d logits.
 * Nothing in the net changes before this succeeds. */
static lr_status step_prepare(lr_mlp *net, const float *x, const uint8_t *labels, size_t batch,
                              const lr_mlp_targets *tg, const lr_adam_opts *adam, float *loss,
                              const char *what, lr_err *err)
{
    lr_status s;
    if ((s = check_io(net, x, batch, x, what, err)) ||
        (s = check_labels(net, labels, batch, has_targets(tg), what, err)) || (s = check_adam(adam, what, err)))
        return s;
    if (lowest_trainable(net) == net->n_layers)
        return lr__fail(err, LR_EINVAL, "%s: nothing to train (every layer frozen, no enabled adapter)", what);
    if ((s = ensure_work(net, batch, err))) return s;
    size_t step = net->adam_t + 1;
    fwd_bufs fb = train_bufs(net);
    if ((s = forward_pass(net, &fb, x, batch, NULL, true, step, err))) return s;
    float lossv;
    lr_err lerr;
    if ((s = batch_loss(net, &lossv, net->work->d0, net->work->act[net->n_layers], labels, batch, tg, &lerr)))
        return lr__fail(err, s, "step %zu: loss: %s", step, lerr.msg);
    if (!isfinite(lossv))
        return lr__fail(err, LR_ENONFINITE, "step %zu: the loss is %s", step, isnan(lossv) ? "NaN" : "Inf");
    if (loss) *loss = lossv;
    return LR_OK;
}

static lr_status train_step(lr_mlp *net, const float *x, const uint8_t *labels, size_t batch,
                            const lr_mlp_targets *tg, const lr_adam_opts *adam, float *loss, const char *what,
                            lr_err *err)
{
    LR__FP_SCOPE();
    lr_status s;
    lr_adam_opts def = lr_adam_opts_default();
    if (!adam) adam = &def; /* NULL options: the defaults */
    if ((s = step_prepare(net, x, labels, batch, tg, adam, loss, what, err))) return s;
    fwd_bufs fb = train_bufs(net);
    bwd_ctx c = { x, batch, lowest_trainable(net), net->adam_t + 1, &fb, lr_adam_step_for(adam, net->adam_t + 1) };
    float *d = net->work->d0, *dn = net->work->d1;
    for (size_t l = net->n_layers; l-- > c.lo;) {
        if ((s = layer_backward_adam(net, l, &c, d, dn, err))) return s;
        float *tmp = d;
        d = dn;
        dn = tmp;
    }
    net->adam_t = c.step;
    return LR_OK;
}

lr_status lr_mlp_train_step(lr_mlp *net, float *loss, const float *x, const uint8_t *labels,
                               const lr_mlp_targets *tg, size_t batch, const lr_adam_opts *adam, lr_err *err)
{
    return train_step(net, x, labels, batch, tg, adam, loss, "mlp_train_step_ex", err);
}

/* Layer l's gradients (base weights and bias unless frozen, the adapter's ga, gb) and dx. */
static lr_status layer_gradients(lr_mlp *net, size_t l, const float *x, size_t batch, const fwd_bufs *fb,
                                 const float *d, float *dxp, float *grad, lr_err *err)
{
    lr_layer *ly = &net->layer[l];
    lr_cmat dy = lr_cmat_view(d, batch, ly->out, ly->out);
    lr_cmat xin = lr_cmat_view(l == 0 ? x : net->work->act[l], batch, ly->in, ly->in);
    lr_mat dx = dxp ? lr_mat_view(dxp, batch, ly->in, ly->in) : lr_mat_view(NULL, 0, 0, 0);
    size_t off_w = (size_t)(ly->w.data - net->params), off_b = (size_t)(ly->b - net->params);
    lr_mat dw = ly->frozen ? lr_mat_view(NULL, 0, 0, 0) : lr_mat_view(grad + off_w, ly->out, ly->in, ly->in);
    lr_status s = lr_linear_backward(dx, dw, ly->frozen ? NULL : grad + off_b, dy, xin, lr_cm(ly->w), err);
    if (!s && lora_on(ly)) {
        lr_lora_weights *lw = ly->lora;
        lr_mat t = lr_mat_view(net->work->t, batch, lw->rank, lw->rank);
        s = lr_lora_weights_backward(dx, lw, dy, xin, lr_cm(lora_u(net, fb, l, batch)), t, err);
    }
    return s;
}

static lr_status gradients(lr_mlp *net, const float *x, const uint8_t *labels, size_t batch,
                           const lr_mlp_targets *tg, float *grad, float *dxout, float *loss, const char *what,
                           lr_err *err)
{
    LR__FP_SCOPE();
    lr_status s;
    if ((s = check_io(net, x, batch, x, what, err)) ||
        (s = check_labels(net, labels, batch, has_targets(tg), what, err)))
        return s;
    if (!grad || !loss) return lr__fail(err, LR_EINVAL, "%s: grad or loss is NULL", what);
    if ((s = ensure_work(net, batch, err))) return s;
    struct lr__mlp_work *w = net->work;
    fwd_bufs fb = train_bufs(net);
    if ((s = forward_pass(net, &fb, x, batch, NULL, false, 0, err)) ||
        (s = batch_loss(net, loss, w->d0, w->act[net->n_layers], labels, batch, tg, err)))
        return s;
    memset(grad, 0, net->n_params * sizeof(float));
    float *d = w->d0, *dn = w->d1;
    for (size_t l = net->n_layers; l-- > 0;) {
        if ((s = layer_gradients(net, l, x, batch, &fb, d, l > 0 ? dn : dxout, grad, err))) return s;
        if (l > 0) lr_relu_backward(dn, w->act[l], batch * net->layer[l].in);
        float *tmp = d;
        d = dn;
        dn = tmp;
    }
    return LR_OK;
}

lr_status lr_mlp_gradients(lr_mlp *net, float *grad, float *dxout, float *loss,
                              const float *x, const uint8_t *labels, const lr_mlp_targets *tg, size_t batch, lr_err *err)
{
    return gradients(net, x, labels, batch, tg, grad, dxout, loss, "mlp_gradients_ex", err);
}

/* ------------------------------------------------------- packed gradients ---------- */

/* The packed layout (mlp.h): layer by layer, the weight then the bias of an unfrozen layer,
 * then A then B of an enabled adapter. */
size_t lr_mlp_grad_size(const lr_mlp *net)
{
    size_t n = 0;
    for (size_t l = 0; net && l < net->n_layers; l++) {
        const lr_layer *ly = &net->layer[l];
        if (!ly->frozen) n += ly->out * ly->in + ly->out;
        if (lora_on(ly)) n += ly->lora->rank * (ly->in + ly->out);
    }
    return n;
}

/* Layer l's packed gradients at g (advanced past them) and dx into dxp (NULL: not needed). */
static lr_status layer_grad_packed(lr_mlp *net, size_t l, const float *x, size_t rows, const fwd_bufs *fb,
                                   const float *d, float *dxp, float **g, lr_err *err)
{
    lr_layer *ly = &net->layer[l];
    lr_cmat dy = lr_cmat_view(d, rows, ly->out, ly->out);
    lr_cmat xin = lr_cmat_view(l == 0 ? x : net->work->act[l], rows, ly->in, ly->in);
    lr_mat dx = dxp ? lr_mat_view(dxp, rows, ly->in, ly->in) : lr_mat_view(NULL, 0, 0, 0);
    lr_status s = LR_OK;
    bool reverse = (net->adam_t + 1) & 1; /* the fused step's row walk, for the same sums */
    if (!ly->frozen) {
        lr_mat dw = lr_mat_view(*g, ly->out, ly->in, ly->in);
        lr__linear_backward_grad_mt(dx, dw, *g + ly->out * ly->in, dy, xin, lr_cm(ly->w), net->work->dxwork, reverse,
                                    &net->pool);
        *g += ly->out * ly->in + ly->out;
    } else if (dxp) {
        lr__linear_dx_mt(dx, dy, lr_cm(ly->w), reverse, &net->pool);
    }
    if (!s && lora_on(ly)) {
        lr_lora_weights *lw = ly->lora;
        lr_mat t = lr_mat_view(net->work->t, rows, lw->rank, lw->rank);
        if ((s = lr_lora_weights_backward(dx, lw, dy, xin, lr_cm(lora_u(net, fb, l, rows)), t, err))) return s;
        lr_mat_copy(lr_mat_view(*g, lw->rank, ly->in, ly->in), lr_cm(lw->ga), NULL);
        *g += lw->rank * ly->in;
        lr_mat_copy(lr_mat_view(*g, ly->out, lw->rank, lw->rank), lr_cm(lw->gb), NULL);
        *g += ly->out * lw->rank;
    }
    return s;
}

lr_status lr_mlp_grad_shard(lr_mlp *net, float *g, float *loss, const float *x, const uint8_t *labels,
                            const lr_mlp_targets *tg, size_t rows, size_t denom, lr_err *err)
{
    LR__FP_SCOPE();
    const char *what = "mlp_grad_shard";
    if (!net || !net->params || !net->work || !g || !loss)
        return lr__fail(err, LR_EINVAL, "%s: net, g or loss is NULL", what);
    if (denom < rows || denom == 0)
        return lr__fail(err, LR_EINVAL, "%s: divisor %zu must be >= the %zu rows and >= 1", what, denom, rows);
    size_t lo = lowest_trainable(net);
    if (lo == net->n_layers)
        return lr__fail(err, LR_EINVAL, "%s: nothing to train (every layer frozen, no enabled adapter)", what);
    *loss = 0.0f;
    if (rows == 0) { /* an empty share of the batch adds nothing */
        memset(g, 0, lr_mlp_grad_size(net) * sizeof(float));
        return LR_OK;
    }
    lr_status s;
    if ((s = check_io(net, x, rows, x, what, err)) || (s = check_labels(net, labels, rows, has_targets(tg), what, err)) ||
        (s = ensure_work(net, rows, err)))
        return s;
    struct lr__mlp_work *w = net->work;
    fwd_bufs fb = train_bufs(net);
    const lr_mlp_targets none = { NULL, NULL, NULL }, *t = tg ? tg : &none;
    if ((s = forward_pass(net, &fb, x, rows, NULL, true, net->adam_t + 1, err)) ||
        (s = lr__softmax_xent_kl_sum(loss, w->d0, w->act[net->n_layers], labels, t->label_weight, t->soft,
                                     t->soft_weight, rows, denom, net->sizes[net->n_layers], err)))
        return s;
    float *at[LR_MLP_MAX_LAYERS];                  /* where each layer's packed block starts */
    float *p = g;
    for (size_t l = 0; l < net->n_layers; l++) {
        at[l] = p;
        const lr_layer *ly = &net->layer[l];
        p += (ly->frozen ? 0 : ly->out * ly->in + ly->out) + (lora_on(ly) ? ly->lora->rank * (ly->in + ly->out) : 0);
    }
    float *d = w->d0, *dn = w->d1;
    for (size_t l = net->n_layers; l-- > lo;) {
        float *gl = at[l];
        if ((s = layer_grad_packed(net, l, x, rows, &fb, d, l > lo ? dn : NULL, &gl, err))) return s;
        if (l > lo) lr_relu_backward(dn, w->act[l], rows * net->layer[l].in);
        float *tmp = d;
        d = dn;
        dn = tmp;
    }
    return LR_OK;
}

/* The packed gradient g is finite, else LR_ENONFINITE naming the tensor and the entry. */
static lr_status check_grad(const lr_mlp *net, const float *g, size_t n, lr_err *err)
{
    size_t at;
    const char *bad = nonfinite_kind(g, n, &at);
    if (!bad) return LR_OK;
    for (size_t l = 0; l < net->n_layers; l++) {
        const lr_layer *ly = &net->layer[l];
        size_t sz[4] = { ly->frozen ? 0 : ly->out * ly->in, ly->frozen ? 0 : ly->out,
                         lora_on(ly) ? ly->lora->rank * ly->in : 0, lora_on(ly) ? ly->out * ly->lora->rank : 0 };
        static const char *const part[4] = { "weight", "bias", "lora_A", "lora_B" };
        for (int k = 0; k < 4; k++) {
            if (at < sz[k])
                return lr__fail(err, LR_ENONFINITE, "step %zu: gradient of %s.%s entry %zu is %s", net->adam_t + 1,
                                ly->name, part[k], at, bad);
            at -= sz[k];
        }
    }
    return lr__fail(err, LR_ENONFINITE, "step %zu: gradient entry is %s", net->adam_t + 1, bad);
}

lr_status lr_mlp_apply_grad(lr_mlp *net, const float *g, const lr_adam_opts *adam, lr_err *err)
{
    LR__FP_SCOPE();
    lr_status s;
    lr_adam_opts def = lr_adam_opts_default();
    if (!adam) adam = &def; /* NULL options: the defaults */
    if (!net || !net->params || !net->work || !g)
        return lr__fail(err, LR_EINVAL, "mlp_apply_grad: net or g is NULL");
    if ((s = check_adam(adam, "mlp_apply_grad", err))) return s;
    if (lowest_trainable(net) == net->n_layers)
        return lr__fail(err, LR_EINVAL, "mlp_apply_grad: nothing to train (every layer frozen, no enabled adapter)");
    if ((s = check_grad(net, g, lr_mlp_grad_size(net), err))) return s;
    lr_adam_step as = lr_adam_step_for(adam, net->adam_t + 1);
    struct lr__mlp_work *w = net->work;
    for (size_t l = 0; l < net->n_layers; l++) {
        lr_layer *ly = &net->layer[l];
        if (!ly->frozen) {
            if (w->stale[l]) zero_moments(net, l);
            size_t off = (size_t)(ly->w.data - net->params), n = ly->out * ly->in; /* bias follows w */
            lr_adam_update(net->params + off, w->m + off, w->v + off, g, n + ly->out, &as);
            g += n + ly->out;
        }
        if (lora_on(ly)) {
            lr_lora_weights *lw = ly->lora;
            adam_mat(lw->a, lw->ma, lw->va, lr_mat_view((float *)g, lw->rank, ly->in, ly->in), &as);
            g += lw->rank * ly->in;
            adam_mat(lw->b, lw->mb, lw->vb, lr_mat_view((float *)g, ly->out, lw->rank, lw->rank), &as);
            g += ly->out * lw->rank;
        }
    }
    net->adam_t++;
    return LR_OK;
}

/* ------------------------------------------------------------------ diagnostics ------ */

static size_t count_subnormal(const float *p, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += fpclassify(p[i]) == FP_SUBNORMAL;
    return k;
}

static size_t count_subnormal_mat(lr_mat a)
{
    size_t k = 0;
    for (size_t i = 0; a.data && i < a.rows; i++) k += count_subnormal(a.data + i * a.ld, a.cols);
    return k;
}

lr_status lr_mlp_count_subnormals(const lr_mlp *net, lr_mlp_subnormals *out, lr_err *err)
{
    if (!net || !net->params || !net->work || !out)
        return lr__fail(err, LR_EINVAL, "mlp_count_subnormals: net (initialised) or out is NULL");
    const struct lr__mlp_work *w = net->work;
    memset(out, 0, sizeof *out);
    out->params = count_subnormal(net->params, net->n_params);
    for (size_t l = 0; l < net->n_layers; l++) {
        const lr_layer *ly = &net->layer[l];
        const lr_lora_weights *lw = ly->lora;
        if (!w->stale[l]) { /* a stale layer's moments count as the zeros they stand for */
            size_t off = (size_t)(ly->w.data - net->params), n = ly->out * ly->in + ly->out;
            out->adam_m += count_subnormal(w->m + off, n);
            out->adam_v += count_subnormal(w->v + off, n);
        }
        if (w->buf) out->activations += count_subnormal(w->act[l + 1], w->cap * net->sizes[l + 1]);
        if (!lw) continue;
        out->params += count_subnormal_mat(lw->a) + count_subnormal_mat(lw->b);
        out->adam_m += count_subnormal_mat(lw->ma) + count_subnormal_mat(lw->mb);
        out->adam_v += count_subnormal_mat(lw->va) + count_subnormal_mat(lw->vb);
    }
    return LR_OK;
}
