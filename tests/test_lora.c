/* test_lora.c — the LoRA module through its public API: forward against the merged dense
 * model, A/B gradients against central differences in double, frozen base bytes, disabled =
 * base exactly, merge/unmerge drift and exact restore, PiSSA, extraction of a planted
 * low-rank ΔW, the seed's parameter table, several adapters, and every bad input. */
#include "lr_test.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "lowrank/linalg/blas.h"
#include "lowrank/lora/lora.h"
#include "lowrank/nn/mlp.h"

static const size_t SIZES[4] = { 7, 6, 5, 4 };
#define BATCH 3

typedef struct {
    lr_mlp net;
    lr_lora lm_store, *lm;  /* lm = &lm_store */
    float x[BATCH * 7];
    uint8_t y[BATCH];
} fixture;

static void fx_init(fixture *f, uint64_t seed)
{
    lr_rng rng;
    lr_rng_seed(&rng, seed);
    assert_int_equal(lr_mlp_init(&f->net, SIZES, 4, NULL), LR_OK);
    lr_mlp_reset_params(&f->net, &rng);
    f->lm = &f->lm_store;
    assert_int_equal(lr_lora_init(f->lm, &f->net, NULL), LR_OK);
    for (size_t i = 0; i < BATCH * 7; i++) f->x[i] = lr_rng_normal(&rng);
    for (size_t i = 0; i < BATCH; i++) f->y[i] = (uint8_t)(i % 4);
}

static void fx_free(fixture *f)
{
    lr_lora_free(f->lm);
    lr_mlp_free(&f->net);
}

static void forward(lr_mlp *net, const float *x, float *out)
{
    lr_err e;
    if (lr_mlp_forward(net, out, x, BATCH, NULL, &e) != LR_OK) fail_msg("forward: %s", e.msg);
}

static lr_cmat logits_view(const float *o) { return lr_cmat_view(o, BATCH, 4, 4); }

/* ------------------------------------------------------------- parameter table ----- */

static void test_param_count_seed(void **state)
{
    (void)state;
    lr_lora_param_table t;
    assert_int_equal(lr_lora_param_count(&t, lr_mlp_default_sizes, 4, 0, 1, NULL), LR_OK);
    assert_int_equal(t.original, 2807010);
    assert_int_equal(t.with_lora, 2813804);
    assert_int_equal(t.added, 6794);
    assert_allclose(t.increment_pct, 100.0 * 6794 / 2807010, 1e-12, 0);
    assert_allclose(round(t.increment_pct * 1000) / 1000, 0.242, 0, 1e-12);
    assert_int_equal(t.base_macs, 784 * 1000 + 1000 * 2000 + 2000 * 10);
    assert_int_equal(t.lora_macs, 6794);
    assert_string_equal(t.row[1].name, "linear2");
    assert_int_equal(t.row[1].w_params, 2000000);
    assert_int_equal(t.row[1].b_params, 2000);
    assert_int_equal(t.row[1].a_rows, 1);
    assert_int_equal(t.row[1].a_cols, 1000);
    assert_int_equal(t.row[1].b_rows, 2000);
    assert_int_equal(t.row[1].b_cols, 1);
    assert_int_equal(t.row[2].lora_params, 2010);
    /* rank 4 on linear1 and linear3 only */
    assert_int_equal(lr_lora_param_count(&t, lr_mlp_default_sizes, 4, 0x5, 4, NULL), LR_OK);
    assert_int_equal(t.added, 4 * (1784 + 2010));
    assert_false(t.row[1].lora);
    assert_int_equal(t.row[1].a_rows, 0);
    assert_int_equal(t.row[1].lora_macs, 0);
}

static void test_param_count_bad(void **state)
{
    (void)state;
    lr_lora_param_table t;
    lr_err e;
    assert_int_equal(lr_lora_param_count(&t, lr_mlp_default_sizes, 1, 0, 1, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "1 sizes");
    assert_int_equal(lr_lora_param_count(&t, lr_mlp_default_sizes, 4, 0x8, 1, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "beyond");
    size_t big[2] = { SIZE_MAX / 2, 3 };
    assert_int_equal(lr_lora_param_count(&t, big, 2, 0, 1, &e), LR_ERANGE);
    assert_int_equal(lr_lora_param_count(&t, NULL, 2, 0, 1, &e), LR_EINVAL);
}

/* ------------------------------------------------------------- config ------------- */

static void test_config(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, 1);
    lr_err e;
    lr_lora_opts c = lr_lora_opts_default();
    assert_int_equal(c.rank, 1);
    assert_true(c.alpha == 1.0f);
    assert_int_equal(lr_lora_opts_check(&c, &f.net, &e), LR_OK);
    assert_true(lr_lora_scale(4, 2.0f, false) == 0.5f);
    assert_true(lr_lora_scale(4, 2.0f, true) == 1.0f);
    c.rank = 0;
    assert_int_equal(lr_lora_insert(f.lm, "a", &c, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "rank must be >= 1");
    c = lr_lora_opts_default();
    c.alpha = 0.0f;
    assert_int_equal(lr_lora_insert(f.lm, "a", &c, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "alpha must be > 0");
    c.alpha = NAN;
    assert_int_equal(lr_lora_insert(f.lm, "a", &c, &e), LR_EINVAL);
    c = lr_lora_opts_default();
    c.targets = 1u << 3;
    assert_int_equal(lr_lora_insert(f.lm, "a", &c, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "target layer 3 does not exist");
    c = lr_lora_opts_default();
    c.init = LR_LORA_INIT_PISSA;
    c.rank = 5; /* linear3 is 5 -> 4 */
    assert_int_equal(lr_lora_insert(f.lm, "a", &c, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "min(in, out) = 4 of linear3");
    c = lr_lora_opts_default();
    assert_int_equal(lr_lora_insert(f.lm, "", &c, &e), LR_EINVAL);
    assert_int_equal(lr_lora_insert(f.lm, NULL, &c, &e), LR_EINVAL);
    assert_int_equal(lr_lora_insert(f.lm, "a", &c, &e), LR_OK);
    assert_int_equal(lr_lora_insert(f.lm, "a", &c, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "\"a\" already exists");
    assert_int_equal(lr_lora_count(f.lm), 1);
    /* NULL options: the defaults */
    assert_int_equal(lr_lora_insert(f.lm, "dflt", NULL, &e), LR_OK);
    assert_int_equal(lr_lora_count(f.lm), 2);
    assert_int_equal(lr_lora_remove(f.lm, "dflt", &e), LR_OK);
    assert_int_equal(lr_lora_select(f.lm, "zz", &e), LR_EINVAL);
    assert_msg_contains(e.msg, "no adapter named \"zz\"");
    assert_int_equal(lr_lora_remove(f.lm, "zz", &e), LR_EINVAL);
    assert_int_equal(lr_lora_set_layer_enabled(f.lm, 3, false, &e), LR_EINVAL);
    assert_int_equal(lr_lora_init(NULL, &f.net, &e), LR_EINVAL);
    lr_lora lm2;
    lr_mlp empty = { 0 };
    assert_int_equal(lr_lora_init(&lm2, &empty, &e), LR_EINVAL);
    assert_null(lm2.net); /* left empty */
    lr_lora_free(&lm2);   /* a no-op on an empty module */
    lr_lora_free(NULL);
    fx_free(&f);
}

static void test_parse(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, 1);
    uint32_t m = 99;
    lr_err e;
    assert_int_equal(lr_lora_parse_targets(&m, "all", f.net.n_layers, &e), LR_OK);
    assert_int_equal(m, 0);
    assert_int_equal(lr_lora_parse_targets(&m, "", f.net.n_layers, &e), LR_OK);
    assert_int_equal(m, 0);
    assert_int_equal(lr_lora_parse_targets(&m, "linear1,3", f.net.n_layers, &e), LR_OK);
    assert_int_equal(m, 0x5);
    assert_int_equal(lr_lora_parse_targets(&m, "linear2", f.net.n_layers, &e), LR_OK);
    assert_int_equal(m, 0x2);
    assert_int_equal(lr_lora_parse_targets(&m, "linear4", f.net.n_layers, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "\"linear4\" is not a layer");
    assert_int_equal(lr_lora_parse_targets(&m, "0", f.net.n_layers, &e), LR_EINVAL);
    assert_int_equal(lr_lora_parse_targets(&m, "1,,2", f.net.n_layers, &e), LR_EINVAL);
    assert_int_equal(lr_lora_parse_targets(&m, "-1", f.net.n_layers, &e), LR_EINVAL);
    assert_int_equal(lr_lora_parse_targets(&m, "linear0", f.net.n_layers, &e), LR_EINVAL);
    assert_int_equal(lr_lora_parse_targets(&m, "linear01", f.net.n_layers, &e), LR_EINVAL);
    assert_int_equal(lr_lora_parse_targets(&m, "2x", f.net.n_layers, &e), LR_EINVAL);
    assert_int_equal(lr_lora_parse_targets(&m, "1", 0, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "0 layers");
    lr_lora_initializer k;
    assert_int_equal(lr_lora_parse_initializer(&k, "pissa", &e), LR_OK);
    assert_int_equal(k, LR_LORA_INIT_PISSA);
    assert_string_equal(lr_lora_initializer_name(k), "pissa");
    assert_int_equal(lr_lora_parse_initializer(&k, "kaiming", &e), LR_EINVAL);
    assert_msg_contains(e.msg, "\"kaiming\"");
    fx_free(&f);
}

/* ------------------------------------------------------------- forward ------------ */

static void test_gaussian_init(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, 2);
    lr_lora_opts c = lr_lora_opts_default();
    c.rank = 2;
    c.seed = 42;
    float base[BATCH * 4], out[BATCH * 4];
    forward(&f.net, f.x, base);
    assert_int_equal(lr_lora_insert(f.lm, "g", &c, NULL), LR_OK);
    assert_null(lr_lora_selected(f.lm));
    assert_int_equal(lr_lora_select(f.lm, "g", NULL), LR_OK);
    assert_string_equal(lr_lora_selected(f.lm), "g");
    /* A: the draws of a generator seeded like the config, layer after layer; B = 0 */
    lr_rng rng;
    lr_rng_seed(&rng, 42);
    for (size_t i = 0; i < 3; i++) {
        lr_lora_weights *w = lr_lora_layer(f.lm, "g", i);
        assert_non_null(w);
        assert_true(f.net.layer[i].lora == w);
        for (size_t k = 0; k < w->a.rows * w->a.cols; k++)
            assert_true(w->a.data[k] == lr_rng_normal(&rng));
        for (size_t k = 0; k < w->b.rows * w->b.cols; k++) assert_true(w->b.data[k] == 0.0f);
    }
    forward(&f.net, f.x, out);
    assert_mat_allclose(logits_view(out), logits_view(base), 0, 0); /* ΔW = 0 */
    fx_free(&f);
}

/* The dense model with W₀ + s·B·A (in double, rounded once) gives the LoRA output. */
static void test_forward_equals_merged_dense(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, 3);
    lr_lora_opts c = lr_lora_opts_default();
    c.rank = 3;
    c.alpha = 5.0f;
    c.targets = 0x5; /* linear1, linear3 */
    assert_int_equal(lr_lora_insert(f.lm, "a", &c, NULL), LR_OK);
    lr_test_randomize_lora_b(f.lm, "a", 7);
    assert_int_equal(lr_lora_select(f.lm, "a", NULL), LR_OK);
    assert_null(f.net.layer[1].lora);
    float got[BATCH * 4], want[BATCH * 4];
    forward(&f.net, f.x, got);

    lr_mlp dense;
    assert_int_equal(lr_mlp_init(&dense, SIZES, 4, NULL), LR_OK);
    memcpy(dense.params, f.net.params, f.net.n_params * sizeof(float));
    for (size_t l = 0; l < 3; l++) {
        lr_lora_weights *w = lr_lora_layer(f.lm, "a", l);
        if (!w) continue;
        assert_true(w->scale == 5.0f / 3.0f);
        for (size_t o = 0; o < w->out; o++)
            for (size_t i = 0; i < w->in; i++) {
                double d = 0;
                for (size_t r = 0; r < w->rank; r++)
                    d += (double)w->b.data[o * w->b.ld + r] * w->a.data[r * w->a.ld + i];
                float *p = &dense.layer[l].w.data[o * dense.layer[l].w.ld + i];
                *p = (float)((double)*p + (double)w->scale * d);
            }
    }
    forward(&dense, f.x, want);
    assert_mat_allclose(logits_view(got), logits_view(want), 1e-5, 1e-5);
    /* and it is not the base output */
    assert_int_equal(lr_lora_select(f.lm, NULL, NULL), LR_OK);
    float base[BATCH * 4];
    forward(&f.net, f.x, base);
    assert_true(lr_mat_max_abs_diff(logits_view(base), logits_view(got)) > 1e-3);
    lr_mlp_free(&dense);
    fx_free(&f);
}

/* ------------------------------------------------------------- gradients ---------- */

/* Mean cross-entropy of the net in double, with the attached, enabled adapters; the entry
 * *probe (if non-NULL) of an adapter matrix is replaced by value. */
static double loss_double(const fixture *f, const float *probe, double value)
{
    const lr_mlp *n = &f->net;
    double total = 0;
    for (size_t s = 0; s < BATCH; s++) {
        double h[8], g[8];
        for (size_t i = 0; i < 7; i++) h[i] = f->x[s * 7 + i];
        size_t in = 7;
        for (size_t l = 0; l < n->n_layers; l++) {
            const lr_layer *ly = &n->layer[l];
            for (size_t o = 0; o < ly->out; o++) {
                double acc = ly->b[o];
                for (size_t i = 0; i < in; i++) acc += (double)ly->w.data[o * ly->w.ld + i] * h[i];
                g[o] = acc;
            }
            const lr_lora_weights *w = ly->lora;
            if (w && w->enabled) {
                double u[8] = { 0 };
                for (size_t r = 0; r < w->rank; r++)
                    for (size_t i = 0; i < in; i++) {
                        const float *p = &w->a.data[r * w->a.ld + i];
                        u[r] += (p == probe ? value : (double)*p) * h[i];
                    }
                for (size_t o = 0; o < ly->out; o++)
                    for (size_t r = 0; r < w->rank; r++) {
                        const float *p = &w->b.data[o * w->b.ld + r];
                        g[o] += (double)w->scale * (p == probe ? value : (double)*p) * u[r];
                    }
            }
            for (size_t o = 0; o < ly->out; o++)
                h[o] = (l + 1 < n->n_layers && g[o] < 0) ? 0 : g[o];
            in = ly->out;
        }
        double mx = h[0], z = 0;
        for (size_t o = 1; o < in; o++) mx = h[o] > mx ? h[o] : mx;
        for (size_t o = 0; o < in; o++) z += exp(h[o] - mx);
        total += -(h[f->y[s]] - mx - log(z));
    }
    return total / BATCH;
}

static void test_gradients_central_differences(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, 4);
    lr_lora_opts c = lr_lora_opts_default();
    c.rank = 2;
    c.alpha = 3.0f;
    c.use_rslora = true;
    assert_int_equal(lr_lora_insert(f.lm, "a", &c, NULL), LR_OK);
    lr_test_randomize_lora_b(f.lm, "a", 9);
    assert_int_equal(lr_lora_select(f.lm, "a", NULL), LR_OK);
    lr_lora_freeze_base(f.lm, true);
    float *grad = calloc(f.net.n_params, sizeof(float));
    float loss;
    lr_err e;
    if (lr_mlp_gradients(&f.net, grad, NULL, &loss, f.x, f.y, NULL, BATCH, &e)) fail_msg("%s", e.msg);
    assert_allclose(loss, loss_double(&f, NULL, 0), 1e-5, 1e-6);
    for (size_t k = 0; k < f.net.n_params; k++) assert_true(grad[k] == 0.0f); /* frozen base */
    const double h = 1e-3;
    size_t checked = 0;
    for (size_t l = 0; l < 3; l++) {
        lr_lora_weights *w = lr_lora_layer(f.lm, "a", l);
        lr_mat mats[2] = { w->a, w->b }, grads[2] = { w->ga, w->gb };
        for (int m = 0; m < 2; m++)
            for (size_t r = 0; r < mats[m].rows; r++)
                for (size_t q = 0; q < mats[m].cols; q++) {
                    const float *p = &mats[m].data[r * mats[m].ld + q];
                    double num = (loss_double(&f, p, (double)*p + h) -
                                  loss_double(&f, p, (double)*p - h)) / (2 * h);
                    assert_allclose(grads[m].data[r * grads[m].ld + q], num, 1e-3, 1e-5);
                    checked++;
                }
    }
    assert_int_equal(checked, 2 * (7 + 6) + 2 * (6 + 5) + 2 * (5 + 4));
    free(grad);
    fx_free(&f);
}

/* ------------------------------------------------------------- training ----------- */

static void test_training_leaves_base_bytes(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, 5);
    lr_lora_opts c = lr_lora_opts_default();
    assert_int_equal(lr_lora_insert(f.lm, "a", &c, NULL), LR_OK);
    assert_int_equal(lr_lora_select(f.lm, "a", NULL), LR_OK);
    lr_lora_freeze_base(f.lm, true);
    lr_mlp_reset_optimizer(&f.net);
    float *before = malloc(f.net.n_params * sizeof(float));
    memcpy(before, f.net.params, f.net.n_params * sizeof(float));
    lr_adam_opts ap = lr_adam_opts_default();
    ap.lr = 1e-2f;
    float l0 = 0, l;
    lr_err e;
    for (int step = 0; step < 20; step++) {
        if (lr_mlp_train_step(&f.net, &l, f.x, f.y, NULL, BATCH, &ap, &e)) fail_msg("%s", e.msg);
        if (step == 0) l0 = l;
    }
    assert_memory_equal(before, f.net.params, f.net.n_params * sizeof(float));
    assert_true(l < l0); /* the adapter learned */
    double bnorm = 0;
    for (size_t i = 0; i < 3; i++) bnorm += lr_mat_norm_fro(lr_cm(lr_lora_layer(f.lm, "a", i)->b));
    assert_true(bnorm > 0);
    /* unfrozen, the same steps do change the base (so the check above can fail) */
    lr_lora_freeze_base(f.lm, false);
    if (lr_mlp_train_step(&f.net, &l, f.x, f.y, NULL, BATCH, &ap, &e)) fail_msg("%s", e.msg);
    assert_true(memcmp(before, f.net.params, f.net.n_params * sizeof(float)) != 0);
    free(before);
    fx_free(&f);
}

/* ------------------------------------------------------------- enable/disable ----- */

static void test_disabled_equals_base(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, 6);
    float base[BATCH * 4], out[BATCH * 4], on[BATCH * 4];
    forward(&f.net, f.x, base);
    lr_lora_opts c = lr_lora_opts_default();
    c.rank = 2;
    assert_int_equal(lr_lora_insert(f.lm, "a", &c, NULL), LR_OK);
    lr_test_randomize_lora_b(f.lm, "a", 3);
    assert_int_equal(lr_lora_select(f.lm, "a", NULL), LR_OK);
    forward(&f.net, f.x, on);
    assert_true(memcmp(on, base, sizeof base) != 0);
    lr_lora_set_enabled(f.lm, false);
    forward(&f.net, f.x, out);
    assert_memory_equal(out, base, sizeof base);
    lr_lora_set_enabled(f.lm, true);
    forward(&f.net, f.x, out);
    assert_memory_equal(out, on, sizeof on);
    /* per layer: all three off is the base; one off differs from both */
    for (size_t i = 0; i < 3; i++) assert_int_equal(lr_lora_set_layer_enabled(f.lm, i, false, NULL), LR_OK);
    assert_false(lr_lora_layer_enabled(f.lm, 1));
    forward(&f.net, f.x, out);
    assert_memory_equal(out, base, sizeof base);
    assert_int_equal(lr_lora_set_layer_enabled(f.lm, 0, true, NULL), LR_OK);
    assert_int_equal(lr_lora_set_layer_enabled(f.lm, 2, true, NULL), LR_OK);
    forward(&f.net, f.x, out);
    assert_true(memcmp(out, base, sizeof base) != 0 && memcmp(out, on, sizeof on) != 0);
    /* the flags are the module's: a newly selected adapter gets them */
    assert_int_equal(lr_lora_insert(f.lm, "b", &c, NULL), LR_OK);
    assert_int_equal(lr_lora_select(f.lm, "b", NULL), LR_OK);
    assert_false(lr_lora_layer(f.lm, "b", 1)->enabled);
    assert_true(lr_lora_layer(f.lm, "b", 0)->enabled);
    fx_free(&f);
}

/* ------------------------------------------------------------- merge -------------- */

static void test_merge_unmerge(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, 7);
    lr_err e;
    float *w0 = malloc(f.net.n_params * sizeof(float));
    memcpy(w0, f.net.params, f.net.n_params * sizeof(float));
    lr_lora_opts c = lr_lora_opts_default();
    c.rank = 2;
    c.alpha = 3.0f;
    assert_int_equal(lr_lora_insert(f.lm, "a", &c, NULL), LR_OK);
    lr_test_randomize_lora_b(f.lm, "a", 5);
    assert_int_equal(lr_lora_merge(f.lm, LR_LORA_MERGE_KEEP_COPY, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "no adapter is selected");
    assert_int_equal(lr_lora_unmerge(f.lm, NULL, false, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "nothing is merged");
    assert_int_equal(lr_lora_select(f.lm, "a", NULL), LR_OK);
    assert_int_equal(lr_lora_set_layer_enabled(f.lm, 1, false, NULL), LR_OK);
    float lora[BATCH * 4], merged[BATCH * 4], out[BATCH * 4];
    forward(&f.net, f.x, lora);

    assert_int_equal(lr_lora_merge(f.lm, LR_LORA_MERGE_KEEP_COPY, &e), LR_OK);
    assert_true(lr_lora_is_merged(f.lm));
    for (size_t i = 0; i < 3; i++) assert_null(f.net.layer[i].lora);
    forward(&f.net, f.x, merged);
    assert_mat_allclose(logits_view(merged), logits_view(lora), 1e-5, 1e-5);
    /* disabled linear2 was not merged */
    assert_memory_equal(f.net.layer[1].w.data, w0 + (7 * 6 + 6), 5 * 6 * sizeof(float));
    assert_int_equal(lr_lora_select(f.lm, NULL, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "unmerge it first");
    assert_int_equal(lr_lora_insert(f.lm, "b", &c, &e), LR_EINVAL);
    assert_int_equal(lr_lora_remove(f.lm, "a", &e), LR_EINVAL);
    assert_int_equal(lr_lora_merge(f.lm, LR_LORA_MERGE_KEEP_COPY, &e), LR_EINVAL);

    lr_lora_drift d;
    assert_int_equal(lr_lora_unmerge(f.lm, &d, false, &e), LR_OK);
    assert_true(d.measured);
    assert_false(d.restored);
    assert_true(d.merged[0] && !d.merged[1] && d.merged[2]);
    assert_true(isnan(d.max_abs[1]));
    assert_true(d.max_abs_all >= 0 && d.max_abs_all < 1e-5);
    double want = 0;
    for (size_t k = 0; k < f.net.n_params; k++) {
        double dd = fabs((double)f.net.params[k] - w0[k]);
        want = dd > want ? dd : want;
    }
    assert_allclose(d.max_abs_all, want, 0, 0);
    forward(&f.net, f.x, out);
    assert_mat_allclose(logits_view(out), logits_view(lora), 1e-5, 1e-5);
    assert_string_equal(lr_lora_selected(f.lm), "a");

    /* with restore: bit for bit */
    assert_int_equal(lr_lora_merge(f.lm, LR_LORA_MERGE_KEEP_COPY, &e), LR_OK);
    assert_int_equal(lr_lora_unmerge(f.lm, &d, true, &e), LR_OK);
    assert_true(d.restored);
    /* (w0 was the original before the first round trip; compare with the state after it) */
    memcpy(w0, f.net.params, f.net.n_params * sizeof(float));
    assert_int_equal(lr_lora_merge(f.lm, LR_LORA_MERGE_KEEP_COPY, &e), LR_OK);
    assert_true(memcmp(w0, f.net.params, f.net.n_params * sizeof(float)) != 0);
    assert_int_equal(lr_lora_unmerge(f.lm, &d, true, &e), LR_OK);
    assert_memory_equal(w0, f.net.params, f.net.n_params * sizeof(float));

    /* no copy: no drift, no restore */
    assert_int_equal(lr_lora_merge(f.lm, LR_LORA_MERGE_NO_COPY, &e), LR_OK);
    assert_int_equal(lr_lora_unmerge(f.lm, &d, true, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "kept no copy");
    assert_true(lr_lora_is_merged(f.lm));
    assert_int_equal(lr_lora_unmerge(f.lm, &d, false, &e), LR_OK);
    assert_false(d.measured);
    assert_true(isnan(d.max_abs_all));
    free(w0);
    fx_free(&f);
}

/* ------------------------------------------------------------- PiSSA -------------- */

static void test_pissa(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, 8);
    lr_err e;
    float *w0 = malloc(f.net.n_params * sizeof(float));
    memcpy(w0, f.net.params, f.net.n_params * sizeof(float));
    float base[BATCH * 4], out[BATCH * 4];
    forward(&f.net, f.x, base);
    lr_lora_opts c = lr_lora_opts_default();
    c.rank = 3;
    c.alpha = 7.0f; /* any α: s·B·A = U_r S_r V_rᵀ */
    c.init = LR_LORA_INIT_PISSA;
    if (lr_lora_insert(f.lm, "p", &c, &e)) fail_msg("%s", e.msg);
    assert_int_equal(lr_lora_select(f.lm, "p", NULL), LR_OK);
    forward(&f.net, f.x, out);
    assert_mat_allclose(logits_view(out), logits_view(base), 1e-5, 1e-5);
    /* the base is now the residual: without the adapter the output differs */
    assert_true(memcmp(w0, f.net.params, f.net.n_params * sizeof(float)) != 0);
    lr_lora_set_enabled(f.lm, false);
    forward(&f.net, f.x, out);
    assert_true(lr_mat_max_abs_diff(logits_view(out), logits_view(base)) > 1e-3);
    lr_lora_set_enabled(f.lm, true);
    /* B = U_r√(S_r/s), A = √(S_r/s)V_rᵀ: the columns of B and rows of A have equal norms */
    lr_lora_weights *w = lr_lora_layer(f.lm, "p", 0);
    for (size_t r = 0; r < 3; r++) {
        double na = 0, nb = 0;
        for (size_t i = 0; i < w->in; i++) na += (double)w->a.data[r * w->a.ld + i] * w->a.data[r * w->a.ld + i];
        for (size_t o = 0; o < w->out; o++) nb += (double)w->b.data[o * w->b.ld + r] * w->b.data[o * w->b.ld + r];
        assert_allclose(na, nb, 1e-4, 1e-7);
    }
    /* PEFT's scale convention: s·B·A = U_r S_r V_rᵀ, so the residual is orthogonal to it
     * and ‖W_res‖² + ‖s·B·A‖² = ‖W₀‖² (this fails if S_r is not divided by s) */
    for (size_t l = 0; l < 3; l++) {
        lr_lora_weights *lw = lr_lora_layer(f.lm, "p", l);
        lr_mat sba;
        assert_int_equal(lr_mat_init(&sba, lw->out, lw->in, NULL), LR_OK);
        assert_int_equal(lr_gemm(sba, lw->scale, lr_cm(lw->b), false, lr_cm(lw->a), false, 0.0f, NULL), LR_OK);
        size_t off = 0;
        for (size_t j = 0; j < l; j++) off += SIZES[j] * SIZES[j + 1] + SIZES[j + 1];
        double n0 = lr_mat_norm_fro(lr_cmat_view(w0 + off, lw->out, lw->in, lw->in));
        double nr = lr_mat_norm_fro(lr_cm(f.net.layer[l].w)), ns = lr_mat_norm_fro(lr_cm(sba));
        assert_allclose(nr * nr + ns * ns, n0 * n0, 1e-5, 0);
        assert_true(ns > 0.1 * n0);
        lr_mat_free(&sba);
    }
    /* only one PiSSA adapter at a time */
    assert_int_equal(lr_lora_insert(f.lm, "q", &c, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "\"p\" already rewrote the base");
    /* removing it restores W₀ bit for bit */
    assert_int_equal(lr_lora_remove(f.lm, "p", &e), LR_OK);
    assert_null(lr_lora_selected(f.lm));
    assert_memory_equal(w0, f.net.params, f.net.n_params * sizeof(float));
    free(w0);
    fx_free(&f);
}

/* ------------------------------------------------------------- extraction --------- */

static void test_extract_planted(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, 9);
    lr_err e;
    lr_mlp ft;
    assert_int_equal(lr_mlp_init(&ft, SIZES, 4, NULL), LR_OK);
    memcpy(ft.params, f.net.params, f.net.n_params * sizeof(float));
    /* plant ΔW = P·Q with P: (out, 2), Q: (2, in) on every layer */
    lr_rng rng;
    lr_rng_seed(&rng, 77);
    double dnorm[3];
    for (size_t l = 0; l < 3; l++) {
        lr_layer *ly = &ft.layer[l];
        lr_mat p, q, d;
        assert_int_equal(lr_mat_init(&p, ly->out, 2, NULL), LR_OK);
        assert_int_equal(lr_mat_init(&q, 2, ly->in, NULL), LR_OK);
        assert_int_equal(lr_mat_init(&d, ly->out, ly->in, NULL), LR_OK);
        lr_rng_fill_normal(&rng, p, 0, 1);
        lr_rng_fill_normal(&rng, q, 0, 1);
        assert_int_equal(lr_gemm(d, 1.0f, lr_cm(p), false, lr_cm(q), false, 0.0f, NULL), LR_OK);
        for (size_t k = 0; k < ly->out * ly->in; k++) ly->w.data[k] += d.data[k];
        /* the ΔW the extraction sees, rounded like it */
        double s2 = 0;
        for (size_t k = 0; k < ly->out * ly->in; k++) {
            double dd = (double)(ly->w.data[k] - f.net.layer[l].w.data[k]);
            s2 += dd * dd;
        }
        dnorm[l] = sqrt(s2);
        lr_mat_free(&p);
        lr_mat_free(&q);
        lr_mat_free(&d);
    }
    lr_lora_opts c = lr_lora_opts_default();
    c.rank = 2;
    c.alpha = 4.0f;
    lr_lora_extract_report rep;
    if (lr_lora_extract(f.lm, &rep, "x", &ft, &c, &e)) fail_msg("%s", e.msg);
    for (size_t l = 0; l < 3; l++) {
        assert_true(rep.row[l].targeted);
        assert_int_equal(rep.row[l].rank, 2);
        assert_allclose(rep.row[l].delta_fro, dnorm[l], 1e-6, 0);
        assert_true(rep.row[l].err_fro < 1e-5 * dnorm[l]);
        assert_true(rep.row[l].err_eckart_young < 1e-5 * dnorm[l]);
        assert_true(rep.row[l].bias_max_change == 0.0);
        assert_int_equal(rep.row[l].params_dense, SIZES[l] * SIZES[l + 1]);
        assert_int_equal(rep.row[l].params_lora, 2 * (SIZES[l] + SIZES[l + 1]));
    }
    assert_int_equal(rep.params_saved, (long long)rep.params_dense - (long long)rep.params_lora);
    /* base + extracted adapter computes the fine-tuned model */
    float want[BATCH * 4], got[BATCH * 4];
    forward(&ft, f.x, want);
    assert_int_equal(lr_lora_select(f.lm, "x", NULL), LR_OK);
    forward(&f.net, f.x, got);
    assert_mat_allclose(logits_view(got), logits_view(want), 1e-4, 1e-5);

    /* rank 1 of a rank-2 ΔW: the measured error is the Eckart–Young bound */
    c.rank = 1;
    if (lr_lora_extract(f.lm, &rep, "x1", &ft, &c, &e)) fail_msg("%s", e.msg);
    for (size_t l = 0; l < 3; l++) {
        assert_true(rep.row[l].err_eckart_young > 1e-2 * dnorm[l]);
        assert_allclose(rep.row[l].err_fro, rep.row[l].err_eckart_young, 1e-3, 1e-6);
        assert_allclose(rep.row[l].err_spectral, rep.row[l].err_eckart_young, 1e-3, 1e-6); /* one value left */
    }
    /* NULL options: the defaults (rank 1, alpha 1), the same error as rank 1 */
    if (lr_lora_extract(f.lm, &rep, "xd", &ft, NULL, &e)) fail_msg("%s", e.msg);
    for (size_t l = 0; l < 3; l++) assert_int_equal(rep.row[l].rank, 1);
    /* bad inputs */
    assert_int_equal(lr_lora_extract(f.lm, &rep, "x", &ft, &c, &e), LR_EINVAL); /* name taken */
    c.rank = 5;
    assert_int_equal(lr_lora_extract(f.lm, &rep, "y", &ft, &c, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "exceeds min(in, out) = 4 of linear3");
    lr_mlp other;
    size_t sz[4] = { 7, 6, 6, 4 };
    assert_int_equal(lr_mlp_init(&other, sz, 4, NULL), LR_OK);
    c.rank = 1;
    assert_int_equal(lr_lora_extract(f.lm, &rep, "y", &other, &c, &e), LR_EDIM);
    assert_msg_contains(e.msg, "size 2 is 6 in the fine-tuned net, 5 in the base");
    assert_int_equal(lr_lora_count(f.lm), 3);
    lr_mlp_free(&other);
    lr_mlp_free(&ft);
    fx_free(&f);
}

/* ------------------------------------------------------------- several adapters --- */

static void test_switching(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, 10);
    lr_lora_opts c = lr_lora_opts_default();
    float base[BATCH * 4], a1[BATCH * 4], b1[BATCH * 4], out[BATCH * 4];
    forward(&f.net, f.x, base);
    float *w0 = malloc(f.net.n_params * sizeof(float));
    memcpy(w0, f.net.params, f.net.n_params * sizeof(float));
    /* "a" alone */
    c.seed = 1;
    assert_int_equal(lr_lora_insert(f.lm, "a", &c, NULL), LR_OK);
    lr_test_randomize_lora_b(f.lm, "a", 11);
    assert_int_equal(lr_lora_select(f.lm, "a", NULL), LR_OK);
    forward(&f.net, f.x, a1);
    assert_int_equal(lr_lora_remove(f.lm, "a", NULL), LR_OK);
    assert_int_equal(lr_lora_count(f.lm), 0);
    forward(&f.net, f.x, out);
    assert_memory_equal(out, base, sizeof base);
    /* "b" alone, rank 2 on linear2 only */
    c.seed = 2;
    c.rank = 2;
    c.targets = 0x2;
    assert_int_equal(lr_lora_insert(f.lm, "b", &c, NULL), LR_OK);
    lr_test_randomize_lora_b(f.lm, "b", 12);
    assert_int_equal(lr_lora_select(f.lm, "b", NULL), LR_OK);
    forward(&f.net, f.x, b1);
    /* now "a" again beside "b", switched back and forth */
    c = lr_lora_opts_default();
    c.seed = 1;
    assert_int_equal(lr_lora_insert(f.lm, "a", &c, NULL), LR_OK);
    lr_test_randomize_lora_b(f.lm, "a", 11);
    assert_int_equal(lr_lora_count(f.lm), 2);
    assert_string_equal(lr_lora_name(f.lm, 0), "b");
    assert_string_equal(lr_lora_name(f.lm, 1), "a");
    assert_null(lr_lora_name(f.lm, 2));
    assert_int_equal(lr_lora_opts_of(f.lm, "b")->rank, 2);
    for (int rep = 0; rep < 3; rep++) {
        assert_int_equal(lr_lora_select(f.lm, "a", NULL), LR_OK);
        forward(&f.net, f.x, out);
        assert_memory_equal(out, a1, sizeof out);
        assert_int_equal(lr_lora_select(f.lm, "b", NULL), LR_OK);
        forward(&f.net, f.x, out);
        assert_memory_equal(out, b1, sizeof out);
        assert_null(f.net.layer[0].lora);
        assert_int_equal(lr_lora_select(f.lm, NULL, NULL), LR_OK);
        forward(&f.net, f.x, out);
        assert_memory_equal(out, base, sizeof base);
    }
    assert_true(memcmp(a1, b1, sizeof a1) != 0);
    /* the base was never touched */
    assert_memory_equal(w0, f.net.params, f.net.n_params * sizeof(float));
    /* removing the selected one runs with none */
    assert_int_equal(lr_lora_select(f.lm, "a", NULL), LR_OK);
    assert_int_equal(lr_lora_remove(f.lm, "a", NULL), LR_OK);
    assert_null(lr_lora_selected(f.lm));
    for (size_t i = 0; i < 3; i++) assert_null(f.net.layer[i].lora);
    free(w0);
    fx_free(&f);
}

/* A merge writes the base. Training reads a frozen layer through a copy of its weights, used
 * only while it is of the weights' generation (mlp.h); this merge changes only row 1 of
 * linear1, so only the module's counting its write (the copy remade) makes the next step's
 * loss the one a fresh net with the merged weights gives. */
static void test_merge_refreshes_frozen_copies(void **state)
{
    (void)state;
    const size_t sizes[3] = { 30, 200, 10 };
    lr_mlp net, ref;
    lr_lora lm;
    assert_int_equal(lr_mlp_init(&net, sizes, 3, NULL), LR_OK);
    lr_rng r;
    lr_rng_seed(&r, 5);
    lr_mlp_reset_params(&net, &r);
    lr_mlp_set_frozen(&net, 0, true, NULL); /* linear1 frozen (the copy), linear2 trains */
    assert_int_equal(lr_lora_init(&lm, &net, NULL), LR_OK);
    lr_lora_opts c = lr_lora_opts_default();
    c.targets = 1u << 0;
    assert_int_equal(lr_lora_insert(&lm, "a", &c, NULL), LR_OK);
    assert_int_equal(lr_lora_select(&lm, "a", NULL), LR_OK);
    float x[10 * 30], loss, lref, z0[10 * 10], z1[10 * 10];
    uint8_t y[10];
    for (size_t k = 0; k < 10 * 30; k++) x[k] = lr_rng_normal(&r);
    for (size_t k = 0; k < 10; k++) y[k] = (uint8_t)(k % 10);
    lr_adam_opts ap = lr_adam_opts_default();
    for (int t = 0; t < 2; t++) assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, NULL, 10, &ap, NULL), LR_OK);
    lr_lora_weights *w = lr_lora_layer(&lm, "a", 0);
    assert_non_null(w);
    lr_mat_fill(w->b, 0.0f);
    w->b.data[1 * w->b.ld] = 2.0f; /* s·B·A touches row 1 of W only */
    lr_lora_set_enabled(&lm, false);
    assert_int_equal(lr_mlp_forward(&net, z0, x, 10, NULL, NULL), LR_OK);
    lr_lora_set_enabled(&lm, true);
    assert_int_equal(lr_lora_merge(&lm, LR_LORA_MERGE_NO_COPY, NULL), LR_OK);
    assert_int_equal(lr_mlp_forward(&net, z1, x, 10, NULL, NULL), LR_OK);
    assert_true(memcmp(z0, z1, sizeof z0) != 0); /* the changed row shows in the output */
    assert_int_equal(lr_mlp_init(&ref, sizes, 3, NULL), LR_OK);
    memcpy(ref.params, net.params, net.n_params * sizeof(float));
    lr_mlp_set_frozen(&ref, 0, true, NULL);
    ref.adam_t = net.adam_t;
    assert_int_equal(lr_mlp_train_step(&ref, &lref, x, y, NULL, 10, &ap, NULL), LR_OK);
    assert_int_equal(lr_mlp_train_step(&net, &loss, x, y, NULL, 10, &ap, NULL), LR_OK);
    assert_memory_equal(&loss, &lref, sizeof loss);
    lr_lora_free(&lm);
    lr_mlp_free(&ref);
    lr_mlp_free(&net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_count_seed),
        cmocka_unit_test(test_param_count_bad),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_gaussian_init),
        cmocka_unit_test(test_forward_equals_merged_dense),
        cmocka_unit_test(test_gradients_central_differences),
        cmocka_unit_test(test_training_leaves_base_bytes),
        cmocka_unit_test(test_disabled_equals_base),
        cmocka_unit_test(test_merge_unmerge),
        cmocka_unit_test(test_pissa),
        cmocka_unit_test(test_extract_planted),
        cmocka_unit_test(test_switching),
        cmocka_unit_test(test_merge_refreshes_frozen_copies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
