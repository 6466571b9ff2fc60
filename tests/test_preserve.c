/* test_preserve.c — the nullspace method (preserve.h) on a small net and synthetic data whose
 * retained inputs live in a known subspace: the basis is orthonormal and holds the energy
 * asked for, the projection removes the adapter's action on the retained inputs (leakage 0,
 * their logits unchanged to rounding), and it keeps doing so through training with the
 * after-step hook while the adapter still learns the target. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "lr_test.h"
#include "lowrank/lora/preserve.h"
#include "lowrank/nn/eval.h"
#include "lowrank/nn/train.h"

enum { DIM = 8, N = 400 };

/* retained: features 0..2 only (a 3-dim subspace), labels 1..3 by the largest; target: label
 * 0, features 3..7 carry it */
typedef struct {
    float x[2 * N * DIM];
    uint8_t y[2 * N];
    lr_dataset retained, target;
} data_t;

static void make_data(data_t *d)
{
    lr_rng r;
    lr_rng_seed(&r, 11);
    memset(d->x, 0, sizeof d->x);
    for (size_t i = 0; i < N; i++) {
        float *x = d->x + i * DIM;
        size_t best = 0;
        for (size_t j = 0; j < 3; j++) {
            x[j] = lr_rng_uniform(&r);
            if (x[j] > x[best]) best = j;
        }
        d->y[i] = (uint8_t)(1 + best);
        float *t = d->x + (N + i) * DIM;
        for (size_t j = 0; j < DIM; j++) t[j] = j < 3 ? 0.3f * lr_rng_uniform(&r) : 0.5f + lr_rng_uniform(&r);
        d->y[N + i] = 0;
    }
    d->retained = (lr_dataset){ .n = N, .dim = DIM, .classes = 4, .type = LR_DATA_F32, .features = d->x, .labels = d->y };
    d->target = d->retained;
    d->target.features = d->x + N * DIM, d->target.labels = d->y + N;
}

static void make_net(lr_mlp *net, lr_lora_weights *lw, bool all_layers)
{
    assert_int_equal(lr_mlp_init(net, (size_t[]){ DIM, 12, 4 }, 3, NULL), LR_OK);
    lr_rng r;
    lr_rng_seed(&r, 5);
    lr_mlp_reset_params(net, &r);
    for (size_t l = 0; l < (all_layers ? 2u : 1u); l++) {
        lr_layer *ly = &net->layer[l];
        assert_int_equal(lr_lora_weights_init(&lw[l], 2, ly->in, ly->out, 1.0f, NULL), LR_OK);
        lr_rng_fill_normal(&r, lw[l].a, 0, 1);
        lr_rng_fill_normal(&r, lw[l].b, 0, 0.5f);
        assert_int_equal(lr_mlp_set_lora(net, l, &lw[l], NULL), LR_OK);
    }
}

static void logits_of(const lr_mlp *net, const lr_dataset *d, float *out)
{
    float x[N * DIM];
    lr_dataset_range(d, x, NULL, 0, d->n);
    assert_int_equal(lr_mlp_forward(net, out, x, d->n, NULL, NULL), LR_OK);
}

static void test_basis_and_projection(void **state)
{
    (void)state;
    static data_t d;
    make_data(&d);
    lr_mlp net;
    lr_lora_weights lw[2];
    make_net(&net, lw, false);
    lr_preserve_basis pb;
    lr_preserve_opts o = lr_preserve_opts_default();
    o.energy = 1.0;
    assert_int_equal(lr_preserve_basis_init(&pb, &net, 1u, &d.retained, &o, NULL), LR_OK);
    assert_int_equal(pb.samples, N);
    assert_int_equal(pb.k[0], 3); /* the retained inputs span 3 dimensions */
    assert_int_equal(pb.k[1], 0); /* not asked for */
    /* randomized with too few values for the energy asked: it falls back to the exact SVD */
    lr_preserve_basis pr;
    lr_preserve_opts few = o;
    few.svd.method = LR_SPECTRUM_RANDOMIZED, few.svd.rank = 2;
    assert_int_equal(lr_preserve_basis_init(&pr, &net, 1u, &d.retained, &few, NULL), LR_OK);
    assert_int_equal(pr.k[0], 3);
    lr_preserve_basis_free(&pr);
    /* NULL options: the defaults (energy 0.99 of 3 directions: still 3) */
    assert_int_equal(lr_preserve_basis_init(&pr, &net, 1u, &d.retained, NULL, NULL), LR_OK);
    assert_int_equal(pr.k[0], 3);
    lr_preserve_basis_free(&pr);
    for (size_t i = 0; i < 3; i++) /* orthonormal rows */
        for (size_t j = 0; j < 3; j++) {
            double dot = 0;
            for (size_t c = 0; c < DIM; c++) dot += (double)pb.v[0].data[i * DIM + c] * pb.v[0].data[j * DIM + c];
            assert_allclose(dot, i == j ? 1.0 : 0.0, 0, 1e-5);
        }
    double leak[2];
    assert_int_equal(lr_preserve_leakage(leak, &net, &d.retained, 0, NULL), LR_OK);
    assert_true(leak[0] > 0.1);
    assert_true(isnan(leak[1]));
    static float base[N * 4], before[N * 4], after[N * 4];
    lw[0].enabled = false;
    logits_of(&net, &d.retained, base);
    lw[0].enabled = true;
    logits_of(&net, &d.retained, before);
    assert_true(lr_mat_max_abs_diff(lr_cmat_view(base, N, 4, 4), lr_cmat_view(before, N, 4, 4)) > 1e-2);
    assert_int_equal(lr_preserve_project(&pb, &net, NULL), LR_OK);
    assert_int_equal(lr_preserve_leakage(leak, &net, &d.retained, 0, NULL), LR_OK);
    assert_true(leak[0] < 1e-6);
    logits_of(&net, &d.retained, after);
    assert_true(lr_mat_max_abs_diff(lr_cmat_view(base, N, 4, 4), lr_cmat_view(after, N, 4, 4)) < 1e-5);
    /* A is not zero: it still acts on the target's inputs */
    assert_true(lr_mat_norm_fro(lr_cm(lw[0].a)) > 0.5);
    lr_preserve_basis_free(&pb);
    lr_lora_weights_free(&lw[0]);
    lr_mlp_free(&net);
}

/* Training the adapter on the target with the projection after every step: the target is
 * learned, the retained logits stay the base's; without it they move. */
static void test_training_keeps_retained(void **state)
{
    (void)state;
    static data_t d;
    make_data(&d);
    double moved[2], target_acc[2];
    for (int keep = 0; keep < 2; keep++) {
        lr_mlp net;
        lr_lora_weights lw[2];
        make_net(&net, lw, true);
        for (size_t l = 0; l < 2; l++) lr_mat_fill(lw[l].b, 0); /* LoRA's init: B = 0 */
        lr_mlp_freeze_all(&net, true);
        static float base[N * 4], after[N * 4];
        logits_of(&net, &d.retained, base);
        lr_preserve_basis pb;
        lr_preserve_opts o = lr_preserve_opts_default();
        o.energy = 1.0;
        assert_int_equal(lr_preserve_basis_init(&pb, &net, 0, &d.retained, &o, NULL), LR_OK);
        lr_train_opts t = lr_train_opts_default();
        t.epochs = 5;
        t.adam.lr = 0.01f;
        if (keep) {
            assert_int_equal(lr_preserve_project(&pb, &net, NULL), LR_OK);
            t.after_step = lr_preserve_after_step, t.after_step_ctx = &pb;
        }
        assert_int_equal(lr_train(&net, NULL, &d.target, &t, NULL), LR_OK);
        logits_of(&net, &d.retained, after);
        moved[keep] = lr_mat_max_abs_diff(lr_cmat_view(base, N, 4, 4), lr_cmat_view(after, N, 4, 4));
        lr_eval_result ev;
        assert_int_equal(lr_eval(&net, &ev, &d.target, 0, NULL), LR_OK);
        target_acc[keep] = ev.accuracy;
        lr_preserve_basis_free(&pb);
        lr_lora_weights_free(&lw[0]);
        lr_lora_weights_free(&lw[1]);
        lr_mlp_free(&net);
    }
    print_message("retained logits moved by %.3g without, %.3g with the projection; target accuracy %.3f / %.3f\n",
                  moved[0], moved[1], target_acc[0], target_acc[1]);
    assert_true(moved[0] > 0.1);
    assert_true(moved[1] < 1e-4);
    assert_true(target_acc[1] > 0.95);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    static data_t d;
    make_data(&d);
    lr_mlp net;
    lr_lora_weights lw[2];
    make_net(&net, lw, false);
    lr_preserve_basis pb;
    lr_preserve_opts o = lr_preserve_opts_default();
    lr_err e;
    o.energy = 0;
    assert_int_equal(lr_preserve_basis_init(&pb, &net, 0, &d.retained, &o, &e), LR_EINVAL);
    assert_non_null(strstr(e.msg, "energy"));
    o = lr_preserve_opts_default();
    lr_dataset wrong = d.retained;
    wrong.dim = 5;
    assert_int_equal(lr_preserve_basis_init(&pb, &net, 0, &wrong, &o, &e), LR_EDIM);
    lr_dataset none = d.retained;
    none.n = 0;
    assert_int_equal(lr_preserve_basis_init(&pb, &net, 0, &none, &o, &e), LR_EINVAL);
    assert_int_equal(lr_preserve_basis_init(NULL, &net, 0, &d.retained, &o, NULL), LR_EINVAL);
    double leak[2];
    assert_int_equal(lr_preserve_leakage(NULL, &net, &d.retained, 0, NULL), LR_EINVAL);
    assert_int_equal(lr_preserve_leakage(leak, &net, &none, 0, NULL), LR_EINVAL);
    lr_preserve_basis_free(NULL);
    lr_lora_weights_free(&lw[0]);
    lr_mlp_free(&net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basis_and_projection),
        cmocka_unit_test(test_training_keeps_retained),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
