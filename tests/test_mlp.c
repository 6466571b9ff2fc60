/* test_mlp.c — the MLP: layout and init, gradients of every layer (base and LoRA A/B, dx
 * through a LoRA layer) against central differences of a double-precision reference,
 * the fused training step against gradients + Adam, frozen weights untouched, the frozen
 * layers' transposed copy following every write of the weights (lr_mlp_weights_changed and
 * the steps' own), disabled adapters bit-equal to the base, thread-count independence, NaN
 * injection, bad inputs;
 * training with lr_mlp_targets (label weights, soft targets): bit-equal to tg NULL without
 * targets, still at its own softmax, gradients by central differences, bad targets. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include "lr_test.h"
#include "lowrank/nn/mlp.h"

static const size_t small_sizes[4] = { 9, 7, 6, 4 };

/* ---- double reference: forward + mean cross-entropy of the net (adapters included) ---- */
typedef struct {
    const lr_mlp *net;
    double *p;                     /* params in double */
    double *a[LR_MLP_MAX_LAYERS];  /* adapter A in double (or NULL) */
    double *b[LR_MLP_MAX_LAYERS];
    double *x;                     /* (batch, in) */
    const uint8_t *y;
    size_t batch;
    const float *c, *q, *d;        /* lr_mlp_targets' weights and soft targets (NULL: plain CE) */
} ref_t;

/* Row i's share of the loss: c_i·CE(p_i, y_i) + d_i·KL(q_i || p_i), from the logits z: (k). */
static double ref_row_loss(const ref_t *r, size_t i, const double *z, size_t k)
{
    double mx = z[0];
    for (size_t j = 0; j < k; j++) mx = fmax(mx, z[j]);
    double se = 0;
    for (size_t j = 0; j < k; j++) se += exp(z[j] - mx);
    double lse = log(se) + mx, c = r->c ? r->c[i] : 1, d = r->d ? r->d[i] : 1, tot = 0;
    if (c != 0) tot += c * (lse - z[r->y[i]]);
    for (size_t j = 0; r->q && j < k; j++)
        if (r->q[i * k + j] > 0) tot += d * r->q[i * k + j] * (log(r->q[i * k + j]) - (z[j] - lse));
    return tot;
}

static double ref_loss(const ref_t *r)
{
    const lr_mlp *net = r->net;
    size_t maxw = 0;
    for (size_t i = 0; i <= net->n_layers; i++) maxw = net->sizes[i] > maxw ? net->sizes[i] : maxw;
    double *cur = malloc(r->batch * maxw * sizeof *cur), *nxt = malloc(r->batch * maxw * sizeof *nxt);
    memcpy(cur, r->x, r->batch * net->sizes[0] * sizeof *cur);
    for (size_t l = 0; l < net->n_layers; l++) {
        const lr_layer *ly = &net->layer[l];
        const double *w = r->p + (ly->w.data - net->params), *bias = r->p + (ly->b - net->params);
        const lr_lora_weights *lw = ly->lora && ly->lora->enabled ? ly->lora : NULL;
        for (size_t i = 0; i < r->batch; i++)
            for (size_t o = 0; o < ly->out; o++) {
                double s = bias[o];
                for (size_t j = 0; j < ly->in; j++) s += w[o * ly->in + j] * cur[i * ly->in + j];
                if (lw)
                    for (size_t k = 0; k < lw->rank; k++) {
                        double u = 0;
                        for (size_t j = 0; j < ly->in; j++) u += r->a[l][k * ly->in + j] * cur[i * ly->in + j];
                        s += lw->scale * r->b[l][o * lw->rank + k] * u;
                    }
                nxt[i * ly->out + o] = (l + 1 < net->n_layers && s < 0) ? 0 : s;
            }
        double *t = cur;
        cur = nxt;
        nxt = t;
    }
    size_t k = net->sizes[net->n_layers];
    double tot = 0;
    for (size_t i = 0; i < r->batch; i++) tot += ref_row_loss(r, i, cur + i * k, k);
    free(cur);
    free(nxt);
    return tot / (double)r->batch;
}

static double central(const ref_t *r, double *v, size_t k)
{
    double h = 1e-5, keep = v[k];
    v[k] = keep + h;
    double fp = ref_loss(r);
    v[k] = keep - h;
    double fm = ref_loss(r);
    v[k] = keep;
    return (fp - fm) / (2 * h);
}

static double *dcopy(const float *p, size_t n)
{
    double *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = p[i];
    return d;
}

static void make_net(lr_mlp *net, uint64_t seed)
{
    assert_int_equal(lr_mlp_init(net, small_sizes, 4, NULL), LR_OK);
    lr_rng r;
    lr_rng_seed(&r, seed);
    lr_mlp_reset_params(net, &r);
}

static void make_batch(float *x, uint8_t *y, size_t batch, size_t in, size_t classes, uint64_t seed)
{
    lr_rng r;
    lr_rng_seed(&r, seed);
    for (size_t i = 0; i < batch * in; i++) x[i] = lr_rng_normal(&r);
    for (size_t i = 0; i < batch; i++) y[i] = (uint8_t)lr_rng_below(&r, classes);
}

static void test_layout_and_init(void **state)
{
    (void)state;
    assert_int_equal(lr_mlp_count_params(lr_mlp_default_sizes, 4), 2807010);
    lr_mlp net;
    assert_int_equal(lr_mlp_init(&net, lr_mlp_default_sizes, 4, NULL), LR_OK);
    assert_int_equal(net.n_params, 2807010);
    assert_int_equal(net.n_layers, 3);
    assert_string_equal(net.layer[0].name, "linear1");
    assert_string_equal(net.layer[2].name, "linear3");
    assert_int_equal(lr_mlp_find_layer(&net, "linear2"), 1);
    assert_int_equal(lr_mlp_find_layer(&net, "linear4"), -1);
    /* one allocation in state-dict order: linear1.weight, linear1.bias, linear2.weight, … */
    assert_ptr_equal(net.layer[0].w.data, net.params);
    assert_ptr_equal(net.layer[0].b, net.params + 784 * 1000);
    assert_ptr_equal(net.layer[1].w.data, net.params + 784 * 1000 + 1000);
    assert_ptr_equal(net.layer[2].b + 10, net.params + net.n_params);
    assert_true(net.layer[1].w.rows == 2000 && net.layer[1].w.cols == 1000);
    lr_rng r;
    lr_rng_seed(&r, 0);
    lr_mlp_reset_params(&net, &r);
    /* PyTorch's bound 1/sqrt(fan_in), for weights and biases; uniform, so the extremes get close */
    for (size_t l = 0; l < 3; l++) {
        const lr_layer *ly = &net.layer[l];
        double bound = 1 / sqrt((double)ly->in), mx = 0;
        for (size_t i = 0; i < ly->out * ly->in; i++) mx = fmax(mx, fabs(ly->w.data[i]));
        for (size_t i = 0; i < ly->out; i++) assert_true(fabs(ly->b[i]) <= bound);
        assert_true(mx <= bound && mx > 0.99 * bound);
    }
    /* seeded: the same seed gives the same parameters */
    lr_mlp net2;
    assert_int_equal(lr_mlp_init(&net2, lr_mlp_default_sizes, 4, NULL), LR_OK);
    lr_rng_seed(&r, 0);
    lr_mlp_reset_params(&net2, &r);
    assert_memory_equal(net.params, net2.params, net.n_params * sizeof(float));
    lr_mlp_free(&net);
    lr_mlp_free(&net2);
    lr_mlp_free(&net2); /* twice: no-op */
    lr_mlp_free(NULL);
}

static void test_gradients_by_central_differences(void **state)
{
    (void)state;
    lr_mlp net;
    make_net(&net, 1);
    /* an adapter on the middle layer (so dx flows through a LoRA layer into linear1) and
     * one on the last layer */
    lr_lora_weights lw1, lw2;
    assert_int_equal(lr_lora_weights_init(&lw1, 2, 7, 6, 0.5f, NULL), LR_OK);
    assert_int_equal(lr_lora_weights_init(&lw2, 1, 6, 4, 2.0f, NULL), LR_OK);
    lr_rng r;
    lr_rng_seed(&r, 2);
    lr_rng_fill_normal(&r, lw1.a, 0, 1);
    lr_rng_fill_normal(&r, lw1.b, 0, 0.5f);
    lr_rng_fill_normal(&r, lw2.a, 0, 1);
    lr_rng_fill_normal(&r, lw2.b, 0, 0.5f);
    assert_int_equal(lr_mlp_set_lora(&net, 1, &lw1, NULL), LR_OK);
    assert_int_equal(lr_mlp_set_lora(&net, 2, &lw2, NULL), LR_OK);
    size_t batch = 5;
    float x[5 * 9], dx[5 * 9], loss;
    uint8_t y[5];
    make_batch(x, y, batch, 9, 4, 3);
    float *grad = malloc(net.n_params * sizeof *grad);
    assert_int_equal(lr_mlp_gradients(&net, grad, dx, &loss, x, y, NULL, batch, NULL), LR_OK);
    ref_t ref = { &net, dcopy(net.params, net.n_params), { 0 }, { 0 }, dcopy(x, batch * 9), y, batch, NULL, NULL, NULL };
    ref.a[1] = dcopy(lw1.a.data, 2 * 7), ref.b[1] = dcopy(lw1.b.data, 6 * 2);
    ref.a[2] = dcopy(lw2.a.data, 6), ref.b[2] = dcopy(lw2.b.data, 4);
    assert_allclose(loss, ref_loss(&ref), 1e-5, 0);
    for (size_t k = 0; k < net.n_params; k++) assert_allclose(grad[k], central(&ref, ref.p, k), 1e-3, 1e-5);
    for (size_t k = 0; k < batch * 9; k++) assert_allclose(dx[k], central(&ref, ref.x, k), 1e-3, 1e-5);
    for (size_t k = 0; k < 14; k++) assert_allclose(lw1.ga.data[k], central(&ref, ref.a[1], k), 1e-3, 1e-5);
    for (size_t k = 0; k < 12; k++) assert_allclose(lw1.gb.data[k], central(&ref, ref.b[1], k), 1e-3, 1e-5);
    for (size_t k = 0; k < 6; k++) assert_allclose(lw2.ga.data[k], central(&ref, ref.a[2], k), 1e-3, 1e-5);
    for (size_t k = 0; k < 4; k++) assert_allclose(lw2.gb.data[k], central(&ref, ref.b[2], k), 1e-3, 1e-5);
    /* frozen layers get no gradient at all (their entries are zero) */
    lr_mlp_freeze_all(&net, true);
    assert_int_equal(lr_mlp_gradients(&net, grad, NULL, &loss, x, y, NULL, batch, NULL), LR_OK);
    for (size_t k = 0; k < net.n_params; k++) assert_true(grad[k] == 0.0f);
    assert_allclose(lw1.ga.data[3], central(&ref, ref.a[1], 3), 1e-3, 1e-5);
    free(grad), free(ref.p), free(ref.x);
    for (int l = 1; l < 3; l++) free(ref.a[l]), free(ref.b[l]);
    lr_lora_weights_free(&lw1);
    lr_lora_weights_free(&lw2);
    lr_mlp_free(&net);
}

/* Two identical nets (seed 4) with the same rank-2 adapter on linear3 (A from seed 5; B too
 * when fill_b, else zero) and linear2 frozen: the pair the step tests compare. */
static void make_pair(lr_mlp *net, lr_mlp *ref, lr_lora_weights *lw, lr_lora_weights *lwr, bool fill_b)
{
    make_net(net, 4);
    make_net(ref, 4);
    assert_int_equal(lr_lora_weights_init(lw, 2, 6, 4, 0.5f, NULL), LR_OK);
    assert_int_equal(lr_lora_weights_init(lwr, 2, 6, 4, 0.5f, NULL), LR_OK);
    lr_rng r;
    lr_rng_seed(&r, 5);
    lr_rng_fill_normal(&r, lw->a, 0, 1);
    if (fill_b) lr_rng_fill_normal(&r, lw->b, 0, 1);
    lr_mat_copy(lwr->a, lr_cm(lw->a), NULL);
    lr_mat_copy(lwr->b, lr_cm(lw->b), NULL);
    assert_int_equal(lr_mlp_set_lora(net, 2, lw, NULL), LR_OK);
    assert_int_equal(lr_mlp_set_lora(ref, 2, lwr, NULL), LR_OK);
    lr_mlp_set_frozen(net, 1, true, NULL);
    lr_mlp_set_frozen(ref, 1, true, NULL);
}

/* The fused step = gradients + Adam on every trainable tensor. */
static void test_train_step_equals_gradients_plus_adam(void **state)
{
    (void)state;
    lr_mlp net, ref;
    lr_lora_weights lw, lwr;
    make_pair(&net, &ref, &lw, &lwr, false); /* only linear1, linear3 and the adapter train */
    float x[10 * 9], loss, lossr;
    uint8_t y[10];
    float *g = malloc(net.n_params * sizeof *g), *m = calloc(net.n_params, sizeof *m), *v = calloc(net.n_params, sizeof *v);
    lr_adam_opts ap = lr_adam_opts_default();
    ap.lr = 0.01;
    for (size_t t = 1; t <= 3; t++) {
        make_batch(x, y, 10, 9, 4, 10 + t);
        assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, NULL, 10, &ap, NULL), LR_OK);
        assert_int_equal(lr_mlp_gradients(&ref, g, NULL, &lossr, x, y, NULL, 10, NULL), LR_OK);
        assert_allclose(loss, lossr, 1e-5, 1e-6);
        lr_adam_step s = lr_adam_step_for(t, &ap);
        for (size_t l = 0; l < 3; l++) {
            if (ref.layer[l].frozen) continue;
            size_t o0 = (size_t)(ref.layer[l].w.data - ref.params), n = ref.layer[l].out * (ref.layer[l].in + 1);
            lr_adam_update(ref.params + o0, m + o0, v + o0, g + o0, n, &s);
        }
        lr_adam_update(lwr.a.data, lwr.ma.data, lwr.va.data, lwr.ga.data, 12, &s);
        lr_adam_update(lwr.b.data, lwr.mb.data, lwr.vb.data, lwr.gb.data, 8, &s);
    }
    assert_int_equal(net.adam_t, 3);
    assert_mat_allclose(lr_cmat_view(net.params, 1, net.n_params, net.n_params),
                        lr_cmat_view(ref.params, 1, ref.n_params, ref.n_params), 1e-5, 1e-6);
    assert_mat_allclose(lr_cm(lw.a), lr_cm(lwr.a), 1e-5, 1e-6);
    assert_mat_allclose(lr_cm(lw.b), lr_cm(lwr.b), 1e-5, 1e-6);
    /* the frozen layer never moved */
    assert_memory_equal(net.layer[1].w.data, ref.layer[1].w.data, 6 * 7 * sizeof(float));
    free(g), free(m), free(v);
    lr_lora_weights_free(&lw);
    lr_lora_weights_free(&lwr);
    lr_mlp_free(&net);
    lr_mlp_free(&ref);
}

/* NULL Adam options are the defaults (design.md, rule 3): the same bits as passing them. */
static void test_null_adam_is_default(void **state)
{
    (void)state;
    lr_mlp net, ref;
    lr_lora_weights lw, lwr;
    make_pair(&net, &ref, &lw, &lwr, false);
    float x[10 * 9], loss, lossr;
    uint8_t y[10];
    lr_adam_opts ap = lr_adam_opts_default();
    for (size_t t = 1; t <= 2; t++) {
        make_batch(x, y, 10, 9, 4, 20 + t);
        assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, NULL, 10, NULL, NULL), LR_OK);
        assert_int_equal(lr_mlp_train_step(&ref, &lossr, x, y, NULL, 10, &ap, NULL), LR_OK);
        assert_true(loss == lossr);
    }
    assert_memory_equal(net.params, ref.params, net.n_params * sizeof *net.params);
    float *g = calloc(net.n_params, sizeof *g);
    assert_int_equal(lr_mlp_apply_grad(&net, g, NULL, NULL), LR_OK);
    assert_int_equal(lr_mlp_apply_grad(&ref, g, &ap, NULL), LR_OK);
    assert_memory_equal(net.params, ref.params, net.n_params * sizeof *net.params);
    free(g);
    lr_lora_weights_free(&lw);
    lr_lora_weights_free(&lwr);
    lr_mlp_free(&net);
    lr_mlp_free(&ref);
}

/* The two halves of a step (lr_mlp_grad_shard + lr_mlp_apply_grad): the packed layout holds
 * exactly the trainable tensors; its entries are lr_mlp_gradients'; shares of a batch add up
 * to the batch's gradient; an empty share is zero; one Adam step on it matches the fused step;
 * a NaN is named and nothing changes; RichBoyNet's sizes. */
static void test_packed_gradients_and_apply(void **state)
{
    (void)state;
    lr_mlp net, ref;
    lr_lora_weights lw, lwr;
    make_pair(&net, &ref, &lw, &lwr, true); /* linear1 and linear3 train, linear2 frozen, adapter on 3 */
    size_t n1 = 7 * 9 + 7, n3 = 4 * 6 + 4, n = lr_mlp_grad_size(&net);
    assert_int_equal(n, n1 + n3 + 2 * 6 + 4 * 2);
    float x[10 * 9], loss, lossr, *g = malloc(n * sizeof *g), *g2 = malloc(n * sizeof *g2);
    float *full = malloc(net.n_params * sizeof *full);
    uint8_t y[10];
    make_batch(x, y, 10, 9, 4, 21);
    assert_int_equal(lr_mlp_grad_shard(&net, g, &loss, x, y, NULL, 10, 10, NULL), LR_OK);
    assert_int_equal(lr_mlp_gradients(&ref, full, NULL, &lossr, x, y, NULL, 10, NULL), LR_OK);
    assert_allclose(loss, lossr, 1e-6, 0);
    for (size_t i = 0; i < n1; i++) assert_allclose(g[i], full[i], 1e-5, 1e-7);
    size_t o3 = (size_t)(ref.layer[2].w.data - ref.params);
    for (size_t i = 0; i < n3; i++) assert_allclose(g[n1 + i], full[o3 + i], 1e-5, 1e-7);
    for (size_t i = 0; i < 12; i++) assert_allclose(g[n1 + n3 + i], lwr.ga.data[i], 1e-5, 1e-7);
    for (size_t i = 0; i < 8; i++) assert_allclose(g[n1 + n3 + 12 + i], lwr.gb.data[i], 1e-5, 1e-7);
    /* rows 0..3 and 4..9, each divided by the batch of 10, add up to the batch */
    float l1, l2;
    assert_int_equal(lr_mlp_grad_shard(&net, g2, &l1, x, y, NULL, 4, 10, NULL), LR_OK);
    float *g3 = malloc(n * sizeof *g3);
    assert_int_equal(lr_mlp_grad_shard(&net, g3, &l2, x + 4 * 9, y + 4, NULL, 6, 10, NULL), LR_OK);
    assert_allclose(l1 + l2, loss, 1e-6, 0);
    for (size_t i = 0; i < n; i++) assert_allclose(g2[i] + g3[i], g[i], 1e-5, 1e-7);
    assert_int_equal(lr_mlp_grad_shard(&net, g3, &l2, NULL, NULL, NULL, 0, 10, NULL), LR_OK); /* empty share */
    for (size_t i = 0; i < n; i++) assert_true(g3[i] == 0.0f);
    assert_true(l2 == 0.0f);
    lr_err e;
    assert_int_equal(lr_mlp_grad_shard(&net, g3, &l2, x, y, NULL, 10, 9, &e), LR_EINVAL);
    assert_non_null(strstr(e.msg, "divisor 9"));
    /* the whole batch's gradient then one Adam step = the fused step, bit for bit (two steps:
     * both row walks) */
    lr_adam_opts ap = lr_adam_opts_default();
    ap.lr = 0.01;
    for (int t = 0; t < 2; t++) {
        if (t) assert_int_equal(lr_mlp_grad_shard(&net, g, &loss, x, y, NULL, 10, 10, NULL), LR_OK);
        assert_int_equal(lr_mlp_apply_grad(&net, g, &ap, NULL), LR_OK);
        assert_int_equal(lr_mlp_train_step(&ref, &lossr, x, y, NULL, 10, &ap, NULL), LR_OK);
        assert_memory_equal(net.params, ref.params, net.n_params * sizeof(float));
        assert_memory_equal(lw.a.data, lwr.a.data, 12 * sizeof(float));
        assert_memory_equal(lw.b.data, lwr.b.data, 8 * sizeof(float));
    }
    assert_int_equal(net.adam_t, 2);
    /* a NaN: named, nothing moves */
    memcpy(full, net.params, net.n_params * sizeof *full);
    g[7 * 9 + 2] = NAN; /* linear1.bias[2] */
    assert_int_equal(lr_mlp_apply_grad(&net, g, &ap, &e), LR_ENONFINITE);
    assert_string_equal(e.msg, "step 3: gradient of linear1.bias entry 2 is NaN");
    g[7 * 9 + 2] = 0, g[n - 1] = INFINITY;
    assert_int_equal(lr_mlp_apply_grad(&net, g, &ap, &e), LR_ENONFINITE);
    assert_string_equal(e.msg, "step 3: gradient of linear3.lora_B entry 7 is Inf");
    assert_memory_equal(full, net.params, net.n_params * sizeof *full);
    assert_int_equal(net.adam_t, 2);
    lr_mlp_freeze_all(&net, true);
    lr_mlp_set_lora(&net, 2, NULL, NULL);
    assert_int_equal(lr_mlp_grad_size(&net), 0);
    assert_int_equal(lr_mlp_apply_grad(&net, g, &ap, &e), LR_EINVAL);
    assert_non_null(strstr(e.msg, "nothing to train"));
    free(g), free(g2), free(g3), free(full);
    lr_lora_weights_free(&lw);
    lr_lora_weights_free(&lwr);
    lr_mlp_free(&net);
    lr_mlp_free(&ref);
    /* RichBoyNet: 2,807,010 trained whole; 6,794 with rank-1 adapters on a frozen base */
    lr_mlp big;
    assert_int_equal(lr_mlp_init(&big, lr_mlp_default_sizes, 4, NULL), LR_OK);
    assert_int_equal(lr_mlp_grad_size(&big), 2807010);
    lr_lora_weights a[3];
    lr_mlp_freeze_all(&big, true);
    for (size_t l = 0; l < 3; l++) {
        assert_int_equal(lr_lora_weights_init(&a[l], 1, big.layer[l].in, big.layer[l].out, 1.0f, NULL), LR_OK);
        lr_mlp_set_lora(&big, l, &a[l], NULL);
    }
    assert_int_equal(lr_mlp_grad_size(&big), 6794);
    lr_mlp_free(&big);
    for (size_t l = 0; l < 3; l++) lr_lora_weights_free(&a[l]);
}

/* A frozen net with rank-1 adapters on every layer (A from seed, B zero) and `threads`. */
static void frozen_lora_net(lr_mlp *net, lr_lora_weights *lw, uint64_t seed, int threads)
{
    assert_int_equal(lr_mlp_init(net, (size_t[]){ 30, 40, 20, 10 }, 4, NULL), LR_OK);
    assert_int_equal(lr_mlp_set_threads(net, threads, NULL), LR_OK);
    lr_rng r;
    lr_rng_seed(&r, seed);
    lr_mlp_reset_params(net, &r);
    for (size_t l = 0; l < 3; l++) {
        assert_int_equal(lr_lora_weights_init(&lw[l], 1, net->layer[l].in, net->layer[l].out, 1.0f, NULL), LR_OK);
        lr_rng_fill_normal(&r, lw[l].a, 0, 1);
        assert_int_equal(lr_mlp_set_lora(net, l, &lw[l], NULL), LR_OK);
    }
    lr_mlp_freeze_all(net, true);
}

static void test_lora_never_writes_frozen_base(void **state)
{
    (void)state;
    lr_mlp net;
    lr_lora_weights lw[3];
    frozen_lora_net(&net, lw, 8, 1);
    float *before = malloc(net.n_params * sizeof *before);
    memcpy(before, net.params, net.n_params * sizeof *before);
    float x[10 * 30], loss;
    uint8_t y[10];
    lr_adam_opts ap = lr_adam_opts_default();
    for (int t = 0; t < 5; t++) {
        make_batch(x, y, 10, 30, 10, 20 + (uint64_t)t);
        assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, NULL, 10, &ap, NULL), LR_OK);
    }
    assert_memory_equal(before, net.params, net.n_params * sizeof *before);
    /* while the adapters did train: B left zero */
    double nb = 0;
    for (size_t l = 0; l < 3; l++) nb += lr_mat_norm_fro(lr_cm(lw[l].b));
    assert_true(nb > 0);
    /* disabled adapters: exactly the base output, bit for bit (same code path) */
    float with_off[10 * 10], base[10 * 10], with_on[10 * 10];
    for (size_t l = 0; l < 3; l++) lw[l].enabled = false;
    assert_int_equal(lr_mlp_forward(&net, with_off, x, 10, NULL, NULL), LR_OK);
    for (size_t l = 0; l < 3; l++) lr_mlp_set_lora(&net, l, NULL, NULL);
    assert_int_equal(lr_mlp_forward(&net, base, x, 10, NULL, NULL), LR_OK);
    assert_memory_equal(with_off, base, sizeof base);
    for (size_t l = 0; l < 3; l++) {
        lw[l].enabled = true;
        lr_mlp_set_lora(&net, l, &lw[l], NULL);
    }
    assert_int_equal(lr_mlp_forward(&net, with_on, x, 10, NULL, NULL), LR_OK);
    assert_true(memcmp(with_on, base, sizeof base) != 0);
    /* and with every adapter disabled and every layer frozen there is nothing to train */
    for (size_t l = 0; l < 3; l++) lw[l].enabled = false;
    lr_err e;
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, NULL, 10, &ap, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "nothing to train");
    for (size_t l = 0; l < 3; l++) lr_lora_weights_free(&lw[l]);
    free(before);
    lr_mlp_free(&net);
}

/* The three adapters' A and B from src into dst (same shapes). */
static void copy_adapters(lr_lora_weights *dst, const lr_lora_weights *src)
{
    for (size_t l = 0; l < 3; l++) {
        assert_int_equal(lr_mat_copy(dst[l].a, lr_cm(src[l].a), NULL), LR_OK);
        assert_int_equal(lr_mat_copy(dst[l].b, lr_cm(src[l].b), NULL), LR_OK);
    }
}

/* Training reads a frozen layer through a transposed copy of its weights (lib/nn/frozen.c),
 * made at the first step. The copy follows the weights written through the documented path
 * (mlp.h: write, then lr_mlp_weights_changed): every weight rewritten, or one entry changed,
 * the next step's loss is the one a fresh net with those weights and adapters gives. */
static void test_frozen_copy_follows_the_weights(void **state)
{
    (void)state;
    lr_mlp net, ref;
    lr_lora_weights lw[3], lwr[3];
    frozen_lora_net(&net, lw, 61, 2);
    float x[10 * 30], loss, lref;
    uint8_t y[10];
    lr_adam_opts ap = lr_adam_opts_default();
    for (int t = 0; t < 3; t++) {
        make_batch(x, y, 10, 30, 10, 70 + (uint64_t)t);
        assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, NULL, 10, &ap, NULL), LR_OK);
    }
    for (int c = 0; c < 2; c++) {
        frozen_lora_net(&ref, lwr, 62 + (uint64_t)c, 1);
        copy_adapters(lwr, lw);
        make_batch(x, y, 10, 30, 10, 80 + (uint64_t)c);
        if (c == 0) { /* every weight new */
            memcpy(net.params, ref.params, net.n_params * sizeof(float));
            for (size_t l = 0; l < 3; l++) assert_int_equal(lr_mlp_weights_changed(&net, l, NULL), LR_OK);
        } else { /* one weight of linear2 changed; the change shows in this batch's logits */
            float z0[10 * 10], z1[10 * 10];
            memcpy(ref.params, net.params, net.n_params * sizeof(float));
            assert_int_equal(lr_mlp_forward(&ref, z0, x, 10, NULL, NULL), LR_OK);
            net.layer[1].w.data[3 * net.layer[1].w.ld + 5] += 0.5f;
            memcpy(ref.params, net.params, net.n_params * sizeof(float));
            assert_int_equal(lr_mlp_forward(&ref, z1, x, 10, NULL, NULL), LR_OK);
            assert_true(memcmp(z0, z1, sizeof z0) != 0);
            assert_int_equal(lr_mlp_weights_changed(&net, 1, NULL), LR_OK);
        }
        assert_int_equal(lr_mlp_train_step(&ref, &lref, x, y, NULL, 10, &ap, NULL), LR_OK);
        assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, NULL, 10, &ap, NULL), LR_OK);
        assert_memory_equal(&loss, &lref, sizeof loss);
        for (size_t l = 0; l < 3; l++) lr_lora_weights_free(&lwr[l]);
        lr_mlp_free(&ref);
    }
    for (size_t l = 0; l < 3; l++) lr_lora_weights_free(&lw[l]);
    lr_mlp_free(&net);
}

/* The loss and the adapters' gradients of net and ref on (x, y) are the same to the bit. */
static void assert_same_lora_gradients(lr_mlp *net, lr_lora_weights *lw, lr_mlp *ref, lr_lora_weights *lwr,
                                       const float *x, const uint8_t *y)
{
    float *g = malloc(net->n_params * sizeof *g), loss, lref;
    assert_int_equal(lr_mlp_gradients(net, g, NULL, &loss, x, y, NULL, 10, NULL), LR_OK);
    assert_int_equal(lr_mlp_gradients(ref, g, NULL, &lref, x, y, NULL, 10, NULL), LR_OK);
    assert_memory_equal(&loss, &lref, sizeof loss);
    for (size_t l = 0; l < 3; l++) {
        assert_memory_equal(lw[l].ga.data, lwr[l].ga.data, lw[l].rank * lw[l].in * sizeof(float));
        assert_memory_equal(lw[l].gb.data, lwr[l].gb.data, lw[l].out * lw[l].rank * sizeof(float));
    }
    free(g);
}

/* A fresh copy of net and its three adapters in ref, lwr: nothing frozen, so no transposed
 * copy of any layer (the row kernel reads the weights themselves). */
static void unfrozen_twin(lr_mlp *ref, lr_lora_weights *lwr, const lr_mlp *net, const lr_lora_weights *lw)
{
    frozen_lora_net(ref, lwr, 1, 1);
    copy_adapters(lwr, lw);
    memcpy(ref->params, net->params, net->n_params * sizeof(float));
    lr_mlp_freeze_all(ref, false);
}

/* The documented path (mlp.h): write a weight, then lr_mlp_weights_changed. One entry of
 * linear2 that the copy's old check (64 sampled entries) never looked at is changed: the next
 * training call computes with it, giving the loss and adapter gradients of an unfrozen twin,
 * to the bit. And the training steps count their own writes: linear2 unfrozen through the
 * field, trained, and frozen again through the field is read as it is now. */
static void test_weights_changed_is_seen(void **state)
{
    (void)state;
    lr_mlp net, ref;
    lr_lora_weights lw[3], lwr[3];
    frozen_lora_net(&net, lw, 63, 2);
    float x[10 * 30], loss;
    uint8_t y[10];
    lr_adam_opts ap = lr_adam_opts_default();
    for (int t = 0; t < 3; t++) { /* the copies are made, and used */
        make_batch(x, y, 10, 30, 10, 110 + (uint64_t)t);
        assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, NULL, 10, &ap, NULL), LR_OK);
    }
    lr_layer *l2 = &net.layer[1]; /* 20 x 40 */
    size_t o = 3, j = 5;
    for (size_t i = 0; i < 64; i++) /* not one of the entries the old check compared */
        assert_false(i * l2->out / 64 == o && (i * 2654435761u) % l2->in == j);
    l2->w.data[o * l2->w.ld + j] += 0.5f;
    assert_int_equal(lr_mlp_weights_changed(&net, 1, NULL), LR_OK);
    make_batch(x, y, 10, 30, 10, 120);
    unfrozen_twin(&ref, lwr, &net, lw);
    assert_same_lora_gradients(&net, lw, &ref, lwr, x, y);
    for (size_t l = 0; l < 3; l++) lr_lora_weights_free(&lwr[l]);
    lr_mlp_free(&ref);
    /* linear2 trains for a step behind the net's back, then is frozen again */
    l2->frozen = false;
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, NULL, 10, &ap, NULL), LR_OK);
    l2->frozen = true;
    make_batch(x, y, 10, 30, 10, 121);
    unfrozen_twin(&ref, lwr, &net, lw);
    assert_same_lora_gradients(&net, lw, &ref, lwr, x, y);
    for (size_t l = 0; l < 3; l++) lr_lora_weights_free(&lwr[l]), lr_lora_weights_free(&lw[l]);
    lr_mlp_free(&ref);
    lr_mlp_free(&net);
}

/* A frozen layer whose optimizer state waits to be zeroed lends its moments to that copy.
 * Unfrozen behind the net's back (the field written, not lr_mlp_set_frozen) and trained,
 * the layer must start from zero moments, as a net that never made a copy does. */
static void test_lent_moments_are_zeroed_before_use(void **state)
{
    (void)state;
    lr_mlp net, ref;
    lr_lora_weights lw[3], lwr[3];
    frozen_lora_net(&net, lw, 91, 2);
    lr_mlp_reset_optimizer(&net); /* frozen: the moments are zeroed only when first needed */
    float x[10 * 30], loss;
    uint8_t y[10];
    lr_adam_opts ap = lr_adam_opts_default();
    for (int t = 0; t < 3; t++) {
        make_batch(x, y, 10, 30, 10, 90 + (uint64_t)t);
        assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, NULL, 10, &ap, NULL), LR_OK);
    }
    frozen_lora_net(&ref, lwr, 91, 1);
    memcpy(ref.params, net.params, net.n_params * sizeof(float));
    copy_adapters(lwr, lw);
    net.layer[1].frozen = false;
    assert_int_equal(lr_mlp_set_frozen(&ref, 1, false, NULL), LR_OK);
    lr_mlp_reset_optimizer(&ref);
    ref.adam_t = net.adam_t; /* the same bias correction */
    make_batch(x, y, 10, 30, 10, 99);
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, NULL, 10, &ap, NULL), LR_OK);
    assert_int_equal(lr_mlp_train_step(&ref, &loss, x, y, NULL, 10, &ap, NULL), LR_OK);
    const lr_layer *a = &net.layer[1], *b = &ref.layer[1];
    assert_memory_equal(a->w.data, b->w.data, a->out * a->in * sizeof(float));
    assert_memory_equal(a->b, b->b, a->out * sizeof(float));
    for (size_t l = 0; l < 3; l++) lr_lora_weights_free(&lw[l]), lr_lora_weights_free(&lwr[l]);
    lr_mlp_free(&net);
    lr_mlp_free(&ref);
}

static void test_threads_and_batch_paths_agree(void **state)
{
    (void)state;
    size_t sizes[4] = { 50, 64, 40, 10 };
    lr_mlp a, b;
    assert_int_equal(lr_mlp_init(&a, sizes, 4, NULL), LR_OK);
    assert_int_equal(lr_mlp_init(&b, sizes, 4, NULL), LR_OK);
    lr_rng r;
    lr_rng_seed(&r, 11);
    lr_mlp_reset_params(&a, &r);
    memcpy(b.params, a.params, a.n_params * sizeof(float));
    assert_int_equal(lr_mlp_set_threads(&b, 3, NULL), LR_OK); /* more threads than cores: still exact */
    float x[10 * 50], la, lb;
    uint8_t y[10];
    lr_adam_opts ap = lr_adam_opts_default();
    for (int t = 0; t < 4; t++) {
        make_batch(x, y, 10, 50, 10, 30 + (uint64_t)t);
        assert_int_equal(lr_mlp_train_step(&a, &la, x, y, NULL, 10, &ap, NULL), LR_OK);
        assert_int_equal(lr_mlp_train_step(&b, &lb, x, y, NULL, 10, &ap, NULL), LR_OK);
        assert_true(la == lb);
    }
    assert_memory_equal(a.params, b.params, a.n_params * sizeof(float));
    /* a big batch (sgemm path) agrees with small batches (row-streaming kernel) */
    size_t n = 1500;
    float *xs = malloc(n * 50 * sizeof *xs), *big = malloc(n * 10 * sizeof *big), small[10 * 10];
    uint8_t *ys = malloc(n);
    make_batch(xs, ys, n, 50, 10, 40);
    assert_int_equal(lr_mlp_forward(&a, big, xs, n, NULL, NULL), LR_OK);
    for (size_t i = 0; i < n; i += 300) {
        assert_int_equal(lr_mlp_forward(&a, small, xs + i * 50, 10, NULL, NULL), LR_OK);
        assert_mat_allclose(lr_cmat_view(small, 10, 10, 10), lr_cmat_view(big + i * 10, 10, 10, 10), 1e-5, 1e-5);
    }
    free(xs), free(big), free(ys);
    lr_mlp_free(&a);
    lr_mlp_free(&b);
}

/* One const model evaluated by four threads at once, each with its own workspace, the model
 * with a 2-thread pool and a rank-2 adapter: every thread gets the serial logits to the bit. */
typedef struct {
    const lr_mlp *net;
    const float *x;
    float *logits; /* (40, 10) */
    lr_status st;
} eval_job;

static void *eval_thread(void *arg)
{
    eval_job *j = arg;
    lr_mlp_ws ws;
    lr_mlp_ws_init(&ws);
    for (int rep = 0; rep < 20 && !j->st; rep++) j->st = lr_mlp_forward(j->net, j->logits, j->x, 40, &ws, NULL);
    lr_mlp_ws_free(&ws);
    return NULL;
}

static void test_const_model_from_several_threads(void **state)
{
    (void)state;
    const size_t sizes[4] = { 50, 300, 200, 10 };
    lr_mlp net;
    lr_lora_weights lw;
    assert_int_equal(lr_mlp_init(&net, sizes, 4, NULL), LR_OK);
    assert_int_equal(lr_mlp_set_threads(&net, 2, NULL), LR_OK);
    lr_rng r;
    lr_rng_seed(&r, 12);
    lr_mlp_reset_params(&net, &r);
    assert_int_equal(lr_lora_weights_init(&lw, 2, 300, 200, 0.5f, NULL), LR_OK);
    lr_rng_fill_normal(&r, lw.a, 0, 1);
    lr_rng_fill_normal(&r, lw.b, 0, 1);
    assert_int_equal(lr_mlp_set_lora(&net, 1, &lw, NULL), LR_OK);
    float x[40 * 50], want[40 * 10], got[4][40 * 10];
    uint8_t y[40];
    make_batch(x, y, 40, 50, 10, 77);
    assert_int_equal(lr_mlp_forward(&net, want, x, 40, NULL, NULL), LR_OK);
    pthread_t t[4];
    eval_job j[4];
    for (int k = 0; k < 4; k++) {
        j[k] = (eval_job){ &net, x, got[k], LR_OK };
        assert_int_equal(pthread_create(&t[k], NULL, eval_thread, &j[k]), 0);
    }
    for (int k = 0; k < 4; k++) {
        pthread_join(t[k], NULL);
        assert_int_equal(j[k].st, LR_OK);
        assert_memory_equal(got[k], want, sizeof want);
    }
    lr_mlp_free(&net);
    lr_lora_weights_free(&lw);
}

/* lr_mlp_reset_optimizer zeroes a frozen layer's moments lazily, when it is first updated:
 * freezing, resetting and unfreezing must train exactly like a reset with nothing frozen. */
static void test_reset_optimizer_with_frozen_layer(void **state)
{
    (void)state;
    lr_mlp a, b;
    make_net(&a, 5);
    make_net(&b, 5);
    float x[10 * 9], la, lb;
    uint8_t y[10];
    lr_adam_opts ap = lr_adam_opts_default();
    for (int t = 0; t < 3; t++) { /* both get non-zero moments */
        make_batch(x, y, 10, 9, 4, 60 + (uint64_t)t);
        assert_int_equal(lr_mlp_train_step(&a, &la, x, y, NULL, 10, &ap, NULL), LR_OK);
        assert_int_equal(lr_mlp_train_step(&b, &lb, x, y, NULL, 10, &ap, NULL), LR_OK);
    }
    assert_int_equal(lr_mlp_set_frozen(&a, 1, true, NULL), LR_OK);
    lr_mlp_reset_optimizer(&a);
    assert_int_equal(lr_mlp_set_frozen(&a, 1, false, NULL), LR_OK);
    lr_mlp_reset_optimizer(&b);
    for (int t = 0; t < 2; t++) {
        make_batch(x, y, 10, 9, 4, 70 + (uint64_t)t);
        assert_int_equal(lr_mlp_train_step(&a, &la, x, y, NULL, 10, &ap, NULL), LR_OK);
        assert_int_equal(lr_mlp_train_step(&b, &lb, x, y, NULL, 10, &ap, NULL), LR_OK);
    }
    assert_memory_equal(a.params, b.params, a.n_params * sizeof(float));
    lr_mlp_free(&a);
    lr_mlp_free(&b);
}

static void test_nonfinite_names_step_and_layer(void **state)
{
    (void)state;
    lr_mlp net;
    make_net(&net, 12);
    float x[3 * 9], loss;
    uint8_t y[3];
    make_batch(x, y, 3, 9, 4, 13);
    lr_adam_opts ap = lr_adam_opts_default();
    lr_err e;
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, NULL, 3, &ap, &e), LR_OK);
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, NULL, 3, &ap, &e), LR_OK);
    /* a NaN weight in linear2 at step 3 */
    net.layer[1].w.data[5] = NAN;
    float *before = malloc(net.n_params * sizeof *before);
    memcpy(before, net.params, net.n_params * sizeof *before);
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, NULL, 3, &ap, &e), LR_ENONFINITE);
    assert_msg_contains(e.msg, "step 3");
    assert_msg_contains(e.msg, "linear2");
    assert_memory_equal(before, net.params, net.n_params * sizeof *before); /* nothing updated */
    net.layer[1].w.data[5] = 0.1f;
    /* an infinite input: linear1 */
    x[4] = INFINITY;
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, NULL, 3, &ap, &e), LR_ENONFINITE);
    assert_msg_contains(e.msg, "linear1");
    free(before);
    lr_mlp_free(&net);
}

/* A forward pass whose outputs are not finite says so: a NaN input, or an adapter whose
 * finite entries overflow float32 (B = 3e38), used to give NaN logits and LR_OK. */
static void test_forward_reports_nonfinite_outputs(void **state)
{
    (void)state;
    const size_t sizes[3] = { 4, 6, 3 };
    lr_mlp net;
    lr_err e = { { 0 } };
    assert_int_equal(lr_mlp_init(&net, sizes, 3, NULL), LR_OK);
    lr_rng r;
    lr_rng_seed(&r, 3);
    lr_mlp_reset_params(&net, &r);
    float x[2 * 4] = { 1, 2, 3, 4, 5, 6, 7, 8 }, logits[2 * 3];
    assert_int_equal(lr_mlp_forward(&net, logits, x, 2, NULL, &e), LR_OK);
    x[5] = NAN;
    assert_int_equal(lr_mlp_forward(&net, logits, x, 2, NULL, &e), LR_ENONFINITE);
    assert_msg_contains(e.msg, "mlp_forward: output (1,");
    x[5] = 6;
    lr_lora_weights lw;
    assert_int_equal(lr_lora_weights_init(&lw, 1, 6, 3, 3e38f, NULL), LR_OK);
    lr_mat_fill(lw.a, 3e38f);
    lr_mat_fill(lw.b, 3e38f);
    assert_int_equal(lr_mlp_set_lora(&net, 1, &lw, NULL), LR_OK);
    assert_int_equal(lr_mlp_forward(&net, logits, x, 2, NULL, &e), LR_ENONFINITE);
    assert_msg_contains(e.msg, "output (0,0) is");
    lr_mlp_free(&net);
    lr_lora_weights_free(&lw);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    lr_mlp net;
    lr_err e;
    assert_int_equal(lr_mlp_init(NULL, small_sizes, 4, &e), LR_EINVAL);
    assert_int_equal(lr_mlp_init(&net, NULL, 4, &e), LR_EINVAL);
    assert_int_equal(lr_mlp_init(&net, small_sizes, 1, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "1 layer sizes");
    assert_int_equal(lr_mlp_init(&net, (size_t[]){ 3, 0, 2 }, 3, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "entry 1");
    size_t many[LR_MLP_MAX_LAYERS + 2];
    for (size_t i = 0; i < LR_MLP_MAX_LAYERS + 2; i++) many[i] = 2;
    assert_int_equal(lr_mlp_init(&net, many, LR_MLP_MAX_LAYERS + 2, &e), LR_EINVAL);
    lr_mlp_free(&net); /* empty after a failed init: no-op */
    make_net(&net, 14);
    float x[2 * 9], out[2 * 4], loss;
    uint8_t y[2] = { 1, 3 }, ybad[2] = { 1, 4 };
    lr_adam_opts ap = lr_adam_opts_default();
    assert_int_equal(lr_mlp_forward(&net, out, NULL, 2, NULL, &e), LR_EINVAL);
    assert_int_equal(lr_mlp_forward(&net, out, x, 0, NULL, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "batch is 0");
    assert_int_equal(lr_mlp_forward(NULL, out, x, 2, NULL, &e), LR_EINVAL);
    memset(x, 0, sizeof x);
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, ybad, NULL, 2, &ap, &e), LR_ERANGE);
    assert_msg_contains(e.msg, "label 4 of example 1");
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, NULL, NULL, 2, &ap, &e), LR_EINVAL);
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, NULL, 2, NULL, &e), LR_OK); /* NULL: the defaults */
    ap.beta2 = 1.0;
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, NULL, 2, &ap, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "betas");
    lr_lora_weights lw;
    assert_int_equal(lr_lora_weights_init(&lw, 2, 7, 5, 1.0f, NULL), LR_OK);
    assert_int_equal(lr_mlp_set_lora(&net, 1, &lw, &e), LR_EDIM);
    assert_msg_contains(e.msg, "linear2 is 7 -> 6");
    assert_int_equal(lr_mlp_set_lora(&net, 3, NULL, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "layer 3 does not exist");
    assert_int_equal(lr_mlp_set_frozen(&net, 9, true, &e), LR_EINVAL);
    assert_int_equal(lr_mlp_weights_changed(&net, 3, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "layer 3 does not exist");
    assert_int_equal(lr_mlp_weights_changed(NULL, 0, &e), LR_EINVAL);
    float *g = malloc(net.n_params * sizeof *g);
    assert_int_equal(lr_mlp_gradients(&net, NULL, NULL, &loss, x, y, NULL, 2, &e), LR_EINVAL);
    assert_int_equal(lr_mlp_gradients(&net, g, NULL, &loss, x, ybad, NULL, 2, &e), LR_ERANGE);
    free(g);
    lr_lora_weights_free(&lw);
    lr_mlp_free(&net);
}

/* ---- lr_mlp_train_step: per-example label weights and soft targets ---- */

/* q: (batch, k) <- softmax of the logits z, in double, rounded to float. */
static void softmax_rows(float *q, const float *z, size_t batch, size_t k)
{
    for (size_t i = 0; i < batch; i++) {
        double mx = z[i * k], s = 0;
        for (size_t j = 0; j < k; j++) mx = fmax(mx, z[i * k + j]);
        for (size_t j = 0; j < k; j++) s += exp(z[i * k + j] - mx);
        for (size_t j = 0; j < k; j++) q[i * k + j] = (float)(exp(z[i * k + j] - mx) / s);
    }
}

/* Without targets (tg NULL, all fields NULL, or label weights all 1) the step is
 * lr_mlp_train_step's to the bit, over 5 steps; with lora, a rank-2 adapter on linear2 and
 * linear1 frozen. */
static void check_ex_bit_equal(bool lora)
{
    lr_mlp net[4];
    lr_lora_weights lw[4];
    float ones[10], x[10 * 9], loss[4];
    uint8_t y[10];
    for (int i = 0; i < 10; i++) ones[i] = 1.0f;
    lr_mlp_targets none = { NULL, NULL, NULL }, unit = { ones, NULL, NULL };
    const lr_mlp_targets *tg[4] = { NULL, NULL, &none, &unit };
    for (int k = 0; k < 4; k++) {
        make_net(&net[k], 21);
        if (!lora) continue;
        assert_int_equal(lr_lora_weights_init(&lw[k], 2, 7, 6, 0.5f, NULL), LR_OK);
        lr_rng r;
        lr_rng_seed(&r, 22);
        lr_rng_fill_normal(&r, lw[k].a, 0, 1);
        assert_int_equal(lr_mlp_set_lora(&net[k], 1, &lw[k], NULL), LR_OK);
        assert_int_equal(lr_mlp_set_frozen(&net[k], 0, true, NULL), LR_OK);
    }
    lr_adam_opts ap = lr_adam_opts_default();
    ap.lr = 0.01;
    for (int t = 0; t < 5; t++) {
        make_batch(x, y, 10, 9, 4, 80 + (uint64_t)t);
        assert_int_equal(lr_mlp_train_step(&net[0], &loss[0], x, y, NULL, 10, &ap, NULL), LR_OK);
        for (int k = 1; k < 4; k++)
            assert_int_equal(lr_mlp_train_step(&net[k], &loss[k], x, y, tg[k], 10, &ap, NULL), LR_OK);
        for (int k = 1; k < 4; k++) assert_true(loss[k] == loss[0]);
    }
    for (int k = 1; k < 4; k++) {
        assert_int_equal(net[k].adam_t, 5);
        assert_memory_equal(net[k].params, net[0].params, net[0].n_params * sizeof(float));
        if (!lora) continue;
        assert_memory_equal(lw[k].a.data, lw[0].a.data, 2 * 7 * sizeof(float));
        assert_memory_equal(lw[k].b.data, lw[0].b.data, 6 * 2 * sizeof(float));
    }
    if (lora) assert_true(lr_mat_norm_fro(lr_cm(lw[0].b)) > 0); /* the adapter did train */
    for (int k = 0; k < 4; k++) {
        lr_mlp_free(&net[k]);
        if (lora) lr_lora_weights_free(&lw[k]);
    }
}

static void test_targets_null_is_cross_entropy(void **state)
{
    (void)state;
    check_ex_bit_equal(false);
    check_ex_bit_equal(true);
}

/* Label weights 0 and the net's own softmax as soft targets: the loss and every gradient are
 * ~0 (q is p rounded to float), so a step moves no parameter by more than Adam's
 * lr·|g|/(|g| + eps) — here < 1e-6, where a cross-entropy step moves them by ~lr. */
static void test_own_softmax_is_a_fixed_point(void **state)
{
    (void)state;
    enum { B = 8 };
    lr_mlp net;
    make_net(&net, 23);
    float x[B * 9], logits[B * 4], q[B * 4], zero[B] = { 0 }, dx[B * 9], loss;
    uint8_t y[B];
    make_batch(x, y, B, 9, 4, 24);
    assert_int_equal(lr_mlp_forward(&net, logits, x, B, NULL, NULL), LR_OK);
    softmax_rows(q, logits, B, 4);
    lr_mlp_targets tg = { zero, q, NULL };
    float *g = malloc(net.n_params * sizeof *g), *before = malloc(net.n_params * sizeof *before);
    assert_int_equal(lr_mlp_gradients(&net, g, dx, &loss, x, NULL, &tg, B, NULL), LR_OK);
    assert_true(fabs(loss) < 1e-6);
    for (size_t k = 0; k < net.n_params; k++) assert_true(fabs(g[k]) < 1e-7);
    for (size_t k = 0; k < B * 9; k++) assert_true(fabs(dx[k]) < 1e-7);
    memcpy(before, net.params, net.n_params * sizeof *before);
    lr_adam_opts ap = lr_adam_opts_default();
    ap.eps = 1e-4; /* PyTorch's 1e-8 would turn a rounding-level gradient into a step of ~lr/10 */
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, NULL, &tg, B, &ap, NULL), LR_OK);
    assert_int_equal(net.adam_t, 1);
    for (size_t k = 0; k < net.n_params; k++) assert_true(fabs(net.params[k] - before[k]) < 1e-6);
    /* the same step on the labels does move them */
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, NULL, B, &ap, NULL), LR_OK);
    double moved = 0;
    for (size_t k = 0; k < net.n_params; k++) moved = fmax(moved, fabs(net.params[k] - before[k]));
    assert_true(moved > 1e-4);
    free(g), free(before);
    lr_mlp_free(&net);
}

/* A 3-4-2 net with a rank-1 adapter on linear2: the weighted mix's gradients (base, A, B, dx)
 * against central differences; then the fused step = gradients_ex + Adam over 3 steps. */
static void test_targets_gradients(void **state)
{
    (void)state;
    enum { B = 4 };
    const size_t sizes[3] = { 3, 4, 2 };
    lr_mlp net, ref;
    lr_lora_weights lw, lwr;
    lr_rng r;
    lr_rng_seed(&r, 25);
    assert_int_equal(lr_mlp_init(&net, sizes, 3, NULL), LR_OK);
    assert_int_equal(lr_mlp_init(&ref, sizes, 3, NULL), LR_OK);
    lr_mlp_reset_params(&net, &r);
    memcpy(ref.params, net.params, net.n_params * sizeof(float));
    assert_int_equal(lr_lora_weights_init(&lw, 1, 4, 2, 0.5f, NULL), LR_OK);
    assert_int_equal(lr_lora_weights_init(&lwr, 1, 4, 2, 0.5f, NULL), LR_OK);
    lr_rng_fill_normal(&r, lw.a, 0, 1);
    lr_rng_fill_normal(&r, lw.b, 0, 0.5f);
    lr_mat_copy(lwr.a, lr_cm(lw.a), NULL);
    lr_mat_copy(lwr.b, lr_cm(lw.b), NULL);
    assert_int_equal(lr_mlp_set_lora(&net, 1, &lw, NULL), LR_OK);
    assert_int_equal(lr_mlp_set_lora(&ref, 1, &lwr, NULL), LR_OK);
    float x[B * 3], dx[B * 3], loss, lossr, c[B] = { 1, 0, 0.5f, 2 }, d[B] = { 0.5f, 1, 0, 3 };
    float q[B * 2] = { 0.3f, 0.7f, 1, 0, 0.5f, 0.5f, 0.9f, 0.1f };
    uint8_t y[B];
    make_batch(x, y, B, 3, 2, 26);
    lr_mlp_targets tg = { c, q, d };
    float *g = malloc(net.n_params * sizeof *g);
    assert_int_equal(lr_mlp_gradients(&ref, g, dx, &lossr, x, y, &tg, B, NULL), LR_OK);
    ref_t rf = { &ref, dcopy(ref.params, ref.n_params), { 0 }, { 0 }, dcopy(x, B * 3), y, B, c, q, d };
    rf.a[1] = dcopy(lwr.a.data, 4), rf.b[1] = dcopy(lwr.b.data, 2);
    assert_allclose(lossr, ref_loss(&rf), 1e-5, 0);
    for (size_t k = 0; k < ref.n_params; k++) assert_allclose(g[k], central(&rf, rf.p, k), 1e-3, 1e-5);
    for (size_t k = 0; k < B * 3; k++) assert_allclose(dx[k], central(&rf, rf.x, k), 1e-3, 1e-5);
    for (size_t k = 0; k < 4; k++) assert_allclose(lwr.ga.data[k], central(&rf, rf.a[1], k), 1e-3, 1e-5);
    for (size_t k = 0; k < 2; k++) assert_allclose(lwr.gb.data[k], central(&rf, rf.b[1], k), 1e-3, 1e-5);
    float *m = calloc(net.n_params, sizeof *m), *v = calloc(net.n_params, sizeof *v);
    lr_adam_opts ap = lr_adam_opts_default();
    ap.lr = 0.01;
    for (size_t t = 1; t <= 3; t++) {
        make_batch(x, y, B, 3, 2, 26 + t);
        assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, &tg, B, &ap, NULL), LR_OK);
        assert_int_equal(lr_mlp_gradients(&ref, g, NULL, &lossr, x, y, &tg, B, NULL), LR_OK);
        assert_allclose(loss, lossr, 1e-5, 1e-6);
        lr_adam_step s = lr_adam_step_for(t, &ap);
        lr_adam_update(ref.params, m, v, g, ref.n_params, &s);
        lr_adam_update(lwr.a.data, lwr.ma.data, lwr.va.data, lwr.ga.data, 4, &s);
        lr_adam_update(lwr.b.data, lwr.mb.data, lwr.vb.data, lwr.gb.data, 2, &s);
    }
    assert_mat_allclose(lr_cmat_view(net.params, 1, net.n_params, net.n_params),
                        lr_cmat_view(ref.params, 1, ref.n_params, ref.n_params), 1e-5, 1e-6);
    assert_mat_allclose(lr_cm(lw.a), lr_cm(lwr.a), 1e-5, 1e-6);
    assert_mat_allclose(lr_cm(lw.b), lr_cm(lwr.b), 1e-5, 1e-6);
    free(g), free(m), free(v), free(rf.p), free(rf.x), free(rf.a[1]), free(rf.b[1]);
    lr_lora_weights_free(&lw);
    lr_lora_weights_free(&lwr);
    lr_mlp_free(&net);
    lr_mlp_free(&ref);
}

/* Bad weights and soft targets: LR_EINVAL naming the example, nothing changed. */
static void test_targets_bad(void **state)
{
    (void)state;
    enum { B = 3 };
    lr_mlp net;
    make_net(&net, 27);
    float x[B * 9], loss, c[B] = { 1, 1, 1 }, d[B] = { 1, 1, 1 };
    float q[B * 4] = { 0.25f, 0.25f, 0.25f, 0.25f, 1, 0, 0, 0, 0.1f, 0.2f, 0.3f, 0.4f };
    uint8_t y[B];
    make_batch(x, y, B, 9, 4, 28);
    lr_mlp_targets tg = { c, q, d };
    lr_adam_opts ap = lr_adam_opts_default();
    lr_err e;
    float *before = malloc(net.n_params * sizeof *before), *g = malloc(net.n_params * sizeof *g);
    memcpy(before, net.params, net.n_params * sizeof *before);
    c[1] = -0.5f;
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, &tg, B, &ap, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "label weight -0.5 of example 1");
    c[1] = 1;
    d[2] = INFINITY;
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, &tg, B, &ap, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "soft weight inf of example 2");
    d[2] = 1;
    q[6] = NAN;
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, &tg, B, &ap, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "soft target 2 of example 1 is nan");
    q[6] = 0;
    q[11] = 0.45f;
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, &tg, B, &ap, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "soft targets of example 2 sum to 1.05");
    assert_int_equal(lr_mlp_gradients(&net, g, NULL, &loss, x, y, &tg, B, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "example 2");
    q[11] = 0.4f;
    c[2] = 0.5f; /* labels NULL: only with every label weight 0 */
    c[0] = c[1] = 0;
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, NULL, &tg, B, &ap, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "labels is NULL but example 2 has label weight 0.5");
    tg.label_weight = NULL;
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, NULL, &tg, B, &ap, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "example 0 has label weight 1");
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, NULL, NULL, B, &ap, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "labels is NULL");
    assert_int_equal(net.adam_t, 0);
    assert_memory_equal(before, net.params, net.n_params * sizeof *before);
    c[2] = 0;
    tg.label_weight = c;
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, NULL, &tg, B, &ap, &e), LR_OK);
    assert_int_equal(net.adam_t, 1);
    free(before), free(g);
    lr_mlp_free(&net);
}

int main(void)

{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_and_init),
        cmocka_unit_test(test_gradients_by_central_differences),
        cmocka_unit_test(test_train_step_equals_gradients_plus_adam),
        cmocka_unit_test(test_null_adam_is_default),
        cmocka_unit_test(test_packed_gradients_and_apply),
        cmocka_unit_test(test_lora_never_writes_frozen_base),
        cmocka_unit_test(test_frozen_copy_follows_the_weights),
        cmocka_unit_test(test_weights_changed_is_seen),
        cmocka_unit_test(test_lent_moments_are_zeroed_before_use),
        cmocka_unit_test(test_threads_and_batch_paths_agree),
        cmocka_unit_test(test_const_model_from_several_threads),
        cmocka_unit_test(test_reset_optimizer_with_frozen_layer),
        cmocka_unit_test(test_nonfinite_names_step_and_layer),
        cmocka_unit_test(test_forward_reports_nonfinite_outputs),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_targets_null_is_cross_entropy),
        cmocka_unit_test(test_own_softmax_is_a_fixed_point),
        cmocka_unit_test(test_targets_gradients),
        cmocka_unit_test(test_targets_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
