/* mlp.c — the multilayer perceptron: parameters in one allocation, forward, and the training
 * step as one forward and one backward walk, whose weight gradients go where the caller asks:
 * into Adam at once (lr_mlp_train_step), into the params' layout (lr_mlp_gradients, the
 * unfused path the tests check against) or into the packed layout (lr_mlp_grad_shard, then
 * lr_mlp_apply_grad).
 *
 * Data flow of one training step (batch B, layers l = 0..L-1, act[l+1] = layer l's output):
 *   forward   act[l+1] = relu(act[l]·W_lᵀ + b_l [+ s·(act[l]·A_lᵀ)·B_lᵀ])  (no relu at the end)
 *   loss      d = (softmax(logits) - onehot) / B, or with lr_mlp_targets
 *             d = (c·(p - onehot) + s·(p - q)) / B, c and s the example's label and soft
 *             weights, q its soft targets (lr_softmax_xent_kl)
 *   backward  for l = L-1 … lowest trainable layer (backward_walk, one call per layer):
 *               unfrozen base: one pass over W_l computes dW in registers, dx from the old
 *                              rows, and hands dW to the sink: Adam on the rows
 *                              (lr_linear_backward_adam) or a store;
 *               frozen base:   dx = d·W_l only, when a layer below still needs it;
 *               adapter:       gA, gB, dx += s·(d·B)·A, then gA, gB to the sink;
 *               d = relu'(act[l]) ⊙ dx.
 * Layers below the lowest trainable one are not visited at all.
 *
 * A frozen layer is read in training through a transposed copy of its weights (frozen.c).
 * Every write of a layer's weights bumps the layer's generation (gen below): the library's
 * writers through lr__mlp_weights_written and the Adam steps here, the caller through
 * lr_mlp_weights_changed. A copy is used only while the generation it was made from is
 * the layer's; nothing compares the copy with the weights.
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
    uint64_t gen[LR_MLP_MAX_LAYERS];      /* layer l's weights' generation: every write bumps it */
    uint64_t pack_gen[LR_MLP_MAX_LAYERS]; /* the generation pack[l] was made from */
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
    if (!net) return lr__fail(err, LR_EINVAL, "lr_mlp_init: net is NULL");
    memset(net, 0, sizeof *net);
    if (!sizes) return lr__fail(err, LR_EINVAL, "lr_mlp_init: sizes is NULL");
    if (n_sizes < 2 || n_sizes > LR_MLP_MAX_LAYERS + 1)
        return lr__fail(err, LR_EINVAL, "lr_mlp_init: %zu layer sizes given, need 2 to %d", n_sizes,
                        LR_MLP_MAX_LAYERS + 1);
    for (size_t i = 0; i < n_sizes; i++)
        if (sizes[i] == 0 || sizes[i] > ((size_t)1 << 30))
            return lr__fail(err, LR_EINVAL, "lr_mlp_init: layer size %zu (entry %zu) must be in 1..2^30",
                            sizes[i], i);
    size_t n = lr_mlp_count_params(sizes, n_sizes);
    if (n == 0 || n > SIZE_MAX / (3 * sizeof(float)))
        return lr__fail(err, LR_ERANGE, "lr_mlp_init: parameter count overflows");
    float *p = lr__alloc_floats_huge(n);
    struct lr__mlp_work *w = calloc(1, sizeof *w);
    float *m = lr__alloc_floats_huge(n), *v = lr__alloc_floats_huge(n);
    if (!p || !w || !m || !v) {
        free(p);
        free(w);
        free(m);
        free(v);
        return lr__fail(err, LR_ENOMEM, "lr_mlp_init: cannot allocate %zu parameters", n);
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
    for (size_t l = 0; net->work && l < net->n_layers; l++) net->work->gen[l]++;
}

lr_status lr_mlp_weights_changed(lr_mlp *net, size_t layer, lr_err *err)
{
    if (!net || !net->params || !net->work)
        return lr__fail(err, LR_EINVAL, "lr_mlp_weights_changed: net is NULL or empty");
    if (layer >= net->n_layers)
        return lr__fail(err, LR_EINVAL, "lr_mlp_weights_changed: layer %zu does not exist (the net has %zu)",
                        layer, net->n_layers);
    net->work->gen[layer]++;
    return LR_OK;
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
    if (!net || !net->params) return lr__fail(err, LR_EINVAL, "lr_mlp_set_frozen: net is NULL or empty");
    if (layer >= net->n_layers)
        return lr__fail(err, LR_EINVAL, "lr_mlp_set_frozen: layer %zu does not exist (the net has %zu)",
                        layer, net->n_layers);
    net->layer[layer].frozen = frozen;
    lr__wpack_free(&net->work->pack[layer]); /* its memory back; made again at the next step that needs it */
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
    if (!net || !net->params) return lr__fail(err, LR_EINVAL, "lr_mlp_set_lora: net is NULL or empty");
    if (layer >= net->n_layers)
        return lr__fail(err, LR_EINVAL, "lr_mlp_set_lora: layer %zu does not exist (the net has %zu)",
                        layer, net->n_layers);
    lr_layer *ly = &net->layer[layer];
    if (lw) {
        if (lw->rank == 0 || lw->in != ly->in || lw->out != ly->out || lw->a.rows != lw->rank ||
            lw->a.cols != ly->in || lw->b.rows != ly->out || lw->b.cols != lw->rank)
            return lr__fail(err, LR_EDIM, "lr_mlp_set_lora: %s is %zu -> %zu, adapter A is %zu x %zu and "
                            "B %zu x %zu (rank %zu, in %zu, out %zu)", ly->name, ly->in, ly->out,
                            lw->a.rows, lw->a.cols, lw->b.rows, lw->b.cols, lw->rank, lw->in, lw->out);
        const lr_mat *same_a[3] = { &lw->ga, &lw->ma, &lw->va }, *same_b[3] = { &lw->gb, &lw->mb, &lw->vb };
        for (int i = 0; i < 3; i++)
            if (!lw->a.data || !lw->b.data || !same_a[i]->data || !same_b[i]->data ||
                same_a[i]->rows != lw->a.rows || same_a[i]->cols != lw->a.cols ||
                same_b[i]->rows != lw->b.rows || same_b[i]->cols != lw->b.cols)
                return lr__fail(err, LR_EDIM, "lr_mlp_set_lora: %s: the adapter's gradient or Adam "
                                "buffers are missing or not shaped like A and B", ly->name);
    }
    ly->lora = lw;
    return LR_OK;
}

lr_status lr_mlp_set_threads(lr_mlp *net, int n, lr_err *err)
{
    if (!net) return lr__fail(err, LR_EINVAL, "lr_mlp_set_threads: net is NULL");
    if (n < 1 || n > LR_POOL_MAX_THREADS)
        return lr__fail(err, LR_EINVAL, "lr_mlp_set_threads: %d threads, expected 1..%d", n, LR_POOL_MAX_THREADS);
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
     * fine-tune would otherwise clear 22 MB of the 784-1000-2000-10 MLP's moments it never reads. */
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
    bool packs;             /* training: frozen layers are read through their copies (frozen_pack) */
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
    fb.packs = true;
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
 * lib/nn/frozen.c): made at the first step that needs it, and remade once the layer's
 * weights have been written since (their generation moved on). A frozen layer whose moments
 * wait to be zeroed (stale: the usual case, lr_train resets the optimizer) lends them to the
 * copy, since fresh pages cost more than the copy itself (docs/performance.md); zero_moments
 * drops the copy before it zeroes them. NULL when the layer does not qualify or the copy
 * cannot be made; the row kernel then runs, with the same bits. */
#define LR__PACK_BATCH 32
static const lr__wpack *frozen_pack(const lr_mlp *net, size_t l, size_t batch)
{
    const lr_layer *ly = &net->layer[l];
    if (!ly->frozen || batch > LR__PACK_BATCH || ly->in > LR__PK_MAXJB * LR__FJ || lr__isa() < LR_ISA_AVX2)
        return NULL;
    struct lr__mlp_work *w = net->work;
    lr__wpack *p = &w->pack[l];
    if (p->own && w->pack_gen[l] == w->gen[l]) return p;
    lr__wpack_free(p);
    size_t off = (size_t)(ly->w.data - net->params), n = ly->out * ly->in;
    bool lend = w->stale[l];
    if (lr__wpack_make(p, lr_cm(ly->w), LR__PACK_BATCH, lend ? w->m + off : NULL, lend ? n : 0,
                       lend ? w->v + off : NULL, lend ? n : 0, NULL))
        return NULL;
    w->pack_gen[l] = w->gen[l];
    return p;
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
        const lr__wpack *pk = fb->packs ? frozen_pack(net, l, batch) : NULL;
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
            return lr__fail(err, LR_ERANGE, "lr_mlp_forward: workspace for %zu rows overflows", rows);
        region[i] = (t + 15) / 16 * 16;
        total += region[i];
    }
    if (ws->floats < total) {
        float *buf = lr__alloc_floats64(total);
        if (!buf) return lr__fail(err, LR_ENOMEM, "lr_mlp_forward: cannot allocate %zu floats of workspace", total);
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
    if ((s = check_io(net, x, batch, logits, "lr_mlp_forward", err))) return s;
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
            s = lr__fail(err, LR_ENONFINITE, "lr_mlp_forward: output (%zu,%zu) is %s (a non-finite input, or "
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

/* lr_adam_opts_check, its message under the call's name ("lr_mlp_train_step: opts: adam: lr -1, …"). */
static lr_status check_adam(const lr_adam_opts *a, const char *what, lr_err *err)
{
    lr_err ae;
    if (lr_adam_opts_check(a, &ae)) return lr__fail(err, LR_EINVAL, "%s: opts: %s", what, ae.msg);
    return LR_OK;
}

/* ------------------------------------------------------------------ backward -------- */

/* Floats of layer l's block in the packed layout (mlp.h): the weight then the bias of an
 * unfrozen layer, then A then B of an enabled adapter. */
static size_t packed_len(const lr_layer *ly)
{
    return (ly->frozen ? 0 : ly->out * ly->in + ly->out) + (lora_on(ly) ? ly->lora->rank * (ly->in + ly->out) : 0);
}

/* Where layer l's block starts in the packed gradient (l = n_layers: its length). */
static size_t packed_at(const lr_mlp *net, size_t l)
{
    size_t n = 0;
    for (size_t i = 0; i < l; i++) n += packed_len(&net->layer[i]);
    return n;
}

/* What the backward walk does with the gradients of a layer's trainable tensors. The chain
 * rule around them is the same for all three. */
typedef enum {
    SINK_ADAM,   /* Adam at once: the fused kernel updates W and b row by row, then A and B */
    SINK_DENSE,  /* the unfused path: dx, dW and db from BLAS, added into g in the params'
                  * layout; the adapter's stay in ga, gb */
    SINK_PACKED, /* stored in g in the packed layout: the fused kernel's sums, to the bit */
} sink_kind;

typedef struct {
    sink_kind kind;
    lr_adam_step as;        /* ADAM: the step's scalars */
    float *g;               /* DENSE: (n_params), zeroed by the caller; PACKED: (lr_mlp_grad_size) */
} grad_sink;

/* One backward pass over the batch, from d0 = d loss / d logits down to layer lo. */
typedef struct {
    const float *x;         /* (batch, sizes[0]): the net's input */
    size_t batch, lo;
    size_t step;            /* adam_t + 1: named in errors; its parity picks the direction of the
                             * row walk (the packed sums follow the fused step's) */
    const fwd_bufs *fb;
    grad_sink sink;
} bwd_walk;

/* Layer l's base: dx (when it has data) <- dy·W, and the gradients of W and b, of
 * dy: (batch, out) and x: (batch, in), to the sink. A frozen layer has none. */
static lr_status base_backward(lr_mlp *net, size_t l, const bwd_walk *c, lr_mat dx, lr_cmat dy, lr_cmat xin,
                               lr_err *err)
{
    struct lr__mlp_work *w = net->work;
    lr_layer *ly = &net->layer[l];
    size_t off_w = (size_t)(ly->w.data - net->params), off_b = (size_t)(ly->b - net->params);
    bool reverse = c->step & 1;
    if (c->sink.kind == SINK_DENSE) { /* dx = dy·W, dW += dyᵀ·x, db += Σ dy */
        lr_mat dw = ly->frozen ? lr_mat_view(NULL, 0, 0, 0) : lr_mat_view(c->sink.g + off_w, ly->out, ly->in, ly->in);
        return lr_linear_backward(dx, dw, ly->frozen ? NULL : c->sink.g + off_b, dy, xin, lr_cm(ly->w), err);
    }
    if (ly->frozen) {
        if (dx.data) lr__linear_dx_mt(dx, dy, lr_cm(ly->w), reverse, &net->pool);
        return LR_OK;
    }
    if (c->sink.kind == SINK_PACKED) {
        float *g = c->sink.g + packed_at(net, l);
        lr__linear_backward_grad_mt(dx, lr_mat_view(g, ly->out, ly->in, ly->in), g + ly->out * ly->in, dy, xin,
                                    lr_cm(ly->w), w->dxwork, reverse, &net->pool);
        return LR_OK;
    }
    if (w->stale[l]) zero_moments(net, l);
    lr_mat mw = lr_mat_view(w->m + off_w, ly->out, ly->in, ly->in);
    lr_mat vw = lr_mat_view(w->v + off_w, ly->out, ly->in, ly->in);
    lr_status s = lr__linear_backward_adam_ex(dx, ly->w, ly->b, mw, vw, w->m + off_b, w->v + off_b, dy, xin,
                                              &c->sink.as, w->dxwork, &net->pool, reverse, err);
    w->gen[l]++; /* the weights moved */
    return s;
}

/* Layer l's adapter, its ga and gb just computed, to the sink: Adam on A and B, or copies
 * after the base's part of the layer's packed block. DENSE leaves them in ga and gb. */
static lr_status lora_sink(lr_mlp *net, size_t l, const grad_sink *k, lr_err *err)
{
    lr_layer *ly = &net->layer[l];
    lr_lora_weights *lw = ly->lora;
    if (k->kind == SINK_ADAM) {
        adam_mat(lw->a, lw->ma, lw->va, lw->ga, &k->as);
        adam_mat(lw->b, lw->mb, lw->vb, lw->gb, &k->as);
        return LR_OK;
    }
    if (k->kind != SINK_PACKED) return LR_OK;
    float *g = k->g + packed_at(net, l) + (ly->frozen ? 0 : ly->out * ly->in + ly->out);
    lr_status s = lr_mat_copy(lr_mat_view(g, lw->rank, ly->in, ly->in), lr_cm(lw->ga), err);
    if (!s) s = lr_mat_copy(lr_mat_view(g + lw->rank * ly->in, ly->out, lw->rank, lw->rank), lr_cm(lw->gb), err);
    return s;
}

/* One call per layer: from d: (batch, out), the gradient of layer l's output, its tensors'
 * gradients to the sink and dx (NULL: not needed): (batch, in) <- the gradient of its input. */
static lr_status layer_backward(lr_mlp *net, size_t l, const bwd_walk *c, const float *d, float *dxp, lr_err *err)
{
    lr_layer *ly = &net->layer[l];
    size_t batch = c->batch, at;
    const char *bad = c->sink.kind == SINK_ADAM ? nonfinite_kind(d, batch * ly->out, &at) : NULL;
    if (bad) /* before the layer it reaches is updated */
        return lr__fail(err, LR_ENONFINITE, "step %zu: gradient of %s output (%zu,%zu) is %s", c->step,
                        ly->name, at / ly->out, at % ly->out, bad);
    lr_cmat dy = lr_cmat_view(d, batch, ly->out, ly->out);
    lr_cmat xin = lr_cmat_view(l == 0 ? c->x : net->work->act[l], batch, ly->in, ly->in);
    lr_mat dx = dxp ? lr_mat_view(dxp, batch, ly->in, ly->in) : lr_mat_view(NULL, 0, 0, 0);
    lr_status s = base_backward(net, l, c, dx, dy, xin, err);
    if (s || !lora_on(ly)) return s;
    lr_lora_weights *lw = ly->lora;
    lr_mat t = lr_mat_view(net->work->t, batch, lw->rank, lw->rank);
    if ((s = lr_lora_weights_backward(dx, lw, dy, xin, lr_cm(lora_u(net, c->fb, l, batch)), t, err))) return s;
    return lora_sink(net, l, &c->sink, err);
}

/* The chain rule, top to bottom, from d0 (d loss / d logits) to layer c->lo: dx of every
 * layer above lo becomes the next one's d through relu'; layer 0's goes to dxout when
 * c->lo is 0 (NULL: not wanted). */
static lr_status backward_walk(lr_mlp *net, const bwd_walk *c, float *dxout, lr_err *err)
{
    struct lr__mlp_work *w = net->work;
    float *d = w->d0, *dn = w->d1;
    for (size_t l = net->n_layers; l-- > c->lo;) {
        lr_status s = layer_backward(net, l, c, d, l > c->lo ? dn : l == 0 ? dxout : NULL, err);
        if (s) return s;
        if (l > c->lo) lr_relu_backward(dn, w->act[l], c->batch * net->layer[l].in);
        float *tmp = d;
        d = dn;
        dn = tmp;
    }
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
    size_t step = net->adam_t + 1;
    bwd_walk c = { .x = x, .batch = batch, .lo = lowest_trainable(net), .step = step, .fb = &fb,
                   .sink = { .kind = SINK_ADAM, .as = lr_adam_step_for(step, adam) } };
    if ((s = backward_walk(net, &c, NULL, err))) return s;
    net->adam_t = step;
    return LR_OK;
}

lr_status lr_mlp_train_step(lr_mlp *net, float *loss, const float *x, const uint8_t *labels,
                               const lr_mlp_targets *tg, size_t batch, const lr_adam_opts *adam, lr_err *err)
{
    return train_step(net, x, labels, batch, tg, adam, loss, "lr_mlp_train_step", err);
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
    /* down to layer 0 when dx is wanted, else to the lowest layer with a gradient */
    bwd_walk c = { .x = x, .batch = batch, .lo = dxout ? 0 : lowest_trainable(net), .step = net->adam_t + 1,
                   .fb = &fb, .sink = { .kind = SINK_DENSE, .g = grad } };
    return backward_walk(net, &c, dxout, err);
}

lr_status lr_mlp_gradients(lr_mlp *net, float *grad, float *dxout, float *loss,
                              const float *x, const uint8_t *labels, const lr_mlp_targets *tg, size_t batch, lr_err *err)
{
    return gradients(net, x, labels, batch, tg, grad, dxout, loss, "lr_mlp_gradients", err);
}

/* ------------------------------------------------------- packed gradients ---------- */

size_t lr_mlp_grad_size(const lr_mlp *net)
{
    return net ? packed_at(net, net->n_layers) : 0;
}

lr_status lr_mlp_grad_shard(lr_mlp *net, float *g, float *loss, const float *x, const uint8_t *labels,
                            const lr_mlp_targets *tg, size_t rows, size_t denom, lr_err *err)
{
    LR__FP_SCOPE();
    const char *what = "lr_mlp_grad_shard";
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
    bwd_walk c = { .x = x, .batch = rows, .lo = lo, .step = net->adam_t + 1, .fb = &fb,
                   .sink = { .kind = SINK_PACKED, .g = g } };
    return backward_walk(net, &c, NULL, err);
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
        return lr__fail(err, LR_EINVAL, "lr_mlp_apply_grad: net or g is NULL");
    if ((s = check_adam(adam, "lr_mlp_apply_grad", err))) return s;
    if (lowest_trainable(net) == net->n_layers)
        return lr__fail(err, LR_EINVAL, "lr_mlp_apply_grad: nothing to train (every layer frozen, no enabled adapter)");
    if ((s = check_grad(net, g, lr_mlp_grad_size(net), err))) return s;
    lr_adam_step as = lr_adam_step_for(net->adam_t + 1, adam);
    struct lr__mlp_work *w = net->work;
    for (size_t l = 0; l < net->n_layers; l++) {
        lr_layer *ly = &net->layer[l];
        if (!ly->frozen) {
            if (w->stale[l]) zero_moments(net, l);
            size_t off = (size_t)(ly->w.data - net->params), n = ly->out * ly->in; /* bias follows w */
            lr_adam_update(net->params + off, w->m + off, w->v + off, g, n + ly->out, &as);
            w->gen[l]++; /* the weights moved */
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
        return lr__fail(err, LR_EINVAL, "lr_mlp_count_subnormals: net (initialised) or out is NULL");
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
