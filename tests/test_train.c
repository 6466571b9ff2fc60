/* test_train.c — the data loop on a small synthetic set: the loss falls, the run is
 * reproducible bit for bit, the label filter / step limit / loss curve / progress callback
 * behave, and bad inputs are refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "lr_test.h"
#include "lowrank/train.h"

/* 4x4 images: the label's row is bright, the rest noise. */
static void synth(lr_mnist *m, size_t n, uint64_t seed)
{
    lr_rng r;
    lr_rng_seed(&r, seed);
    m->n = n, m->rows = 4, m->cols = 4;
    m->pixels = malloc(n * 16);
    m->labels = malloc(n);
    for (size_t i = 0; i < n; i++) {
        uint8_t y = (uint8_t)lr_rng_below(&r, 4);
        m->labels[i] = y;
        for (size_t j = 0; j < 16; j++)
            m->pixels[i * 16 + j] = (uint8_t)(j / 4 == y ? 200 + lr_rng_below(&r, 56) : lr_rng_below(&r, 80));
    }
}

typedef struct { size_t calls, last_step, total; float last_avg; } progress_t;
static void on_progress(void *ctx, size_t step, size_t total, float avg)
{
    progress_t *p = ctx;
    p->calls++;
    assert_true(step > p->last_step && step <= total);
    p->last_step = step, p->total = total, p->last_avg = avg;
}

static void run(lr_mnist *data, float *params_out, float *curve, size_t ncurve, lr_train_result *res)
{
    lr_mlp net;
    assert_int_equal(lr_mlp_init(&net, (size_t[]){ 16, 32, 16, 4 }, 4, NULL), LR_OK);
    lr_rng r;
    lr_rng_seed(&r, 7);
    lr_mlp_init_params(&net, &r);
    lr_train_params p = lr_train_default_params();
    p.seed = 42;
    p.epochs = 3;
    p.loss_curve = curve;
    p.loss_curve_len = ncurve;
    lr_err e;
    assert_int_equal(lr_train(&net, data, &p, res, &e), LR_OK);
    memcpy(params_out, net.params, net.n_params * sizeof(float));
    lr_mlp_free(&net);
}

static void test_loss_falls_and_runs_repeat_exactly(void **state)
{
    (void)state;
    lr_mnist d = { 0 };
    synth(&d, 300, 1);
    size_t np = lr_mlp_count_params((size_t[]){ 16, 32, 16, 4 }, 4);
    float *p1 = malloc(np * 4), *p2 = malloc(np * 4), c1[90], c2[90];
    lr_train_result r1, r2;
    run(&d, p1, c1, 90, &r1);
    run(&d, p2, c2, 90, &r2);
    assert_int_equal(r1.steps, 90); /* 3 epochs of 30 batches of 10 */
    assert_int_equal(r1.examples, 900);
    assert_memory_equal(p1, p2, np * 4);
    assert_memory_equal(c1, c2, sizeof c1);
    double first = 0, last = 0;
    for (int i = 0; i < 10; i++) first += c1[i], last += c1[80 + i];
    assert_true(last < 0.5 * first);
    assert_allclose(r1.last_loss, c1[89], 0, 0);
    double mean = 0;
    for (int i = 0; i < 90; i++) mean += c1[i];
    assert_allclose(r1.avg_loss, mean / 90, 1e-6, 0);
    lr_mnist_free(&d);
    free(p1), free(p2);
}

/* lr_train is lr_mlp_train_step over lr_rng_permutation's batches, bit for bit: what a
 * caller writing the loop by hand gets. 305 examples: batches of 10 and a last one of 5,
 * over 2 epochs. */
static void test_train_equals_plain_steps(void **state)
{
    (void)state;
    lr_mnist d = { 0 };
    synth(&d, 305, 3);
    const size_t sizes[4] = { 16, 32, 16, 4 };
    lr_mlp a, b;
    assert_int_equal(lr_mlp_init(&a, sizes, 4, NULL), LR_OK);
    assert_int_equal(lr_mlp_init(&b, sizes, 4, NULL), LR_OK);
    lr_rng r;
    lr_rng_seed(&r, 8);
    lr_mlp_init_params(&a, &r);
    memcpy(b.params, a.params, a.n_params * sizeof(float));
    lr_train_params p = lr_train_default_params();
    p.seed = 5;
    p.epochs = 2;
    lr_train_result res;
    assert_int_equal(lr_train(&a, &d, &p, &res, NULL), LR_OK);
    /* the same run by hand: lr_train's shuffle is lr_rng_permutation per epoch */
    lr_rng_seed(&r, p.seed);
    size_t perm[305], idx[10];
    float x[10 * 16], loss;
    uint8_t y[10];
    size_t steps = 0;
    for (size_t e = 0; e < 2; e++) {
        lr_rng_permutation(&r, perm, d.n);
        for (size_t b0 = 0; b0 < d.n; b0 += 10) {
            size_t bs = d.n - b0 < 10 ? d.n - b0 : 10;
            for (size_t k = 0; k < bs; k++) idx[k] = perm[b0 + k], y[k] = d.labels[idx[k]];
            lr_mnist_normalize(x, &d, idx, bs);
            assert_int_equal(lr_mlp_train_step(&b, x, y, bs, &p.adam, &loss, NULL), LR_OK);
            steps++;
        }
    }
    assert_int_equal(res.steps, steps);
    assert_memory_equal(a.params, b.params, a.n_params * sizeof(float));
    lr_mlp_free(&a);
    lr_mlp_free(&b);
    lr_mnist_free(&d);
}

static void test_label_filter_step_limit_progress(void **state)
{
    (void)state;
    lr_mnist d = { 0 };
    synth(&d, 200, 2);
    size_t n2 = 0;
    for (size_t i = 0; i < d.n; i++) n2 += d.labels[i] == 2;
    lr_mlp net;
    assert_int_equal(lr_mlp_init(&net, (size_t[]){ 16, 8, 4 }, 3, NULL), LR_OK);
    lr_rng r;
    lr_rng_seed(&r, 1);
    lr_mlp_init_params(&net, &r);
    lr_train_params p = lr_train_default_params();
    p.only_label = 2;
    size_t steps;
    assert_int_equal(lr_train_count_steps(&d, &p, &steps, NULL), LR_OK);
    assert_int_equal(steps, (n2 + 9) / 10);
    p.max_steps = 3;
    assert_int_equal(lr_train_count_steps(&d, &p, &steps, NULL), LR_OK);
    assert_int_equal(steps, 3);
    progress_t pr = { 0 };
    p.progress = on_progress;
    p.progress_ctx = &pr;
    p.progress_every = 2;
    float curve[2] = { -1, -1 };
    p.loss_curve = curve;
    p.loss_curve_len = 2; /* shorter than the run: only the first two are written */
    lr_train_result res;
    assert_int_equal(lr_train(&net, &d, &p, &res, NULL), LR_OK);
    assert_int_equal(res.steps, 3);
    assert_int_equal(res.examples, 30);
    assert_int_equal(pr.calls, 2); /* step 2, and the last step 3 */
    assert_int_equal(pr.last_step, 3);
    assert_int_equal(pr.total, 3);
    assert_allclose(pr.last_avg, res.avg_loss, 1e-6, 0);
    assert_true(curve[0] > 0 && curve[1] > 0);
    assert_int_equal(net.adam_t, 3); /* fresh Adam state per run */
    /* a batch larger than the set: one short batch per epoch */
    p.batch = 1000;
    p.max_steps = 0;
    p.progress = NULL;
    p.loss_curve = NULL, p.loss_curve_len = 0;
    assert_int_equal(lr_train(&net, &d, &p, &res, NULL), LR_OK);
    assert_int_equal(res.steps, 1);
    assert_int_equal(res.examples, n2);
    lr_mlp_free(&net);
    lr_mnist_free(&d);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    lr_mnist d = { 0 };
    synth(&d, 20, 3);
    lr_mlp net;
    assert_int_equal(lr_mlp_init(&net, (size_t[]){ 16, 4 }, 2, NULL), LR_OK);
    lr_train_params p = lr_train_default_params();
    lr_err e;
    assert_int_equal(lr_train(NULL, &d, &p, NULL, &e), LR_EINVAL);
    assert_int_equal(lr_train(&net, NULL, &p, NULL, &e), LR_EINVAL);
    assert_int_equal(lr_train(&net, &d, NULL, NULL, &e), LR_EINVAL);
    p.batch = 0;
    assert_int_equal(lr_train(&net, &d, &p, NULL, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "batch size is 0");
    p = lr_train_default_params();
    p.only_label = 7; /* no such examples */
    assert_int_equal(lr_train(&net, &d, &p, NULL, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "no examples");
    p.only_label = -1;
    p.loss_curve_len = 5;
    assert_int_equal(lr_train(&net, &d, &p, NULL, &e), LR_EINVAL);
    p.loss_curve_len = 0;
    d.labels[3] = 4; /* the net has 4 outputs */
    assert_int_equal(lr_train(&net, &d, &p, NULL, &e), LR_ERANGE);
    assert_msg_contains(e.msg, "label 4 of example 3");
    d.labels[3] = 0;
    d.cols = 5;
    assert_int_equal(lr_train(&net, &d, &p, NULL, &e), LR_EDIM);
    assert_msg_contains(e.msg, "the net takes 16 inputs");
    d.cols = 4;
    size_t steps;
    assert_int_equal(lr_train_count_steps(&d, &p, NULL, &e), LR_EINVAL);
    assert_int_equal(lr_train_count_steps(&d, &p, &steps, &e), LR_OK);
    assert_int_equal(steps, 2);
    lr_mlp_free(&net);
    lr_mnist_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_falls_and_runs_repeat_exactly),
        cmocka_unit_test(test_train_equals_plain_steps),
        cmocka_unit_test(test_label_filter_step_limit_progress),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
