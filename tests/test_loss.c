/* test_loss.c — softmax cross-entropy: known values, stability at 1e4, gradient by central
 * differences in double, bad inputs. */
#include <math.h>
#include "lr_test.h"
#include "lowrank/nn/loss.h"

/* The mean loss in double, the reference the differences are taken of. */
static double ref_loss(const double *z, const uint8_t *y, size_t batch, size_t k)
{
    double tot = 0;
    for (size_t b = 0; b < batch; b++) {
        double mx = z[b * k];
        for (size_t j = 0; j < k; j++) mx = fmax(mx, z[b * k + j]);
        double se = 0;
        for (size_t j = 0; j < k; j++) se += exp(z[b * k + j] - mx);
        tot += log(se) + mx - z[b * k + y[b]];
    }
    return tot / (double)batch;
}

static void test_known_values(void **state)
{
    (void)state;
    float z[4] = { 0, 0, 1, 1 }, loss;
    uint8_t y[2] = { 0, 1 };
    assert_int_equal(lr_softmax_xent(&loss, NULL, z, y, 2, 2, NULL), LR_OK);
    assert_allclose(loss, log(2.0), 1e-7, 0);
    float z3[3] = { 1, 2, 3 };
    uint8_t y3 = 2;
    assert_int_equal(lr_softmax_xent(&loss, NULL, z3, &y3, 1, 3, NULL), LR_OK);
    assert_allclose(loss, log(exp(1) + exp(2) + exp(3)) - 3, 1e-6, 0);
}

static void test_stable_for_large_logits(void **state)
{
    (void)state;
    float z[6] = { 1e4f, 0.0f, -1e4f, 1e4f, 1e4f, -1e4f }, d[6], loss;
    uint8_t y[2] = { 1, 0 };
    assert_int_equal(lr_softmax_xent(&loss, d, z, y, 2, 3, NULL), LR_OK);
    /* row 0: loss 1e4; row 1: two equal maxima, loss ln 2 */
    assert_true(isfinite(loss));
    assert_allclose(loss, (1e4 + log(2.0)) / 2, 1e-7, 0);
    for (int i = 0; i < 6; i++) assert_true(isfinite(d[i]));
    assert_allclose(d[0], 0.5, 1e-6, 0);   /* (1 - 0) / 2 */
    assert_allclose(d[1], -0.5, 1e-6, 0);  /* (0 - 1) / 2 */
    assert_allclose(d[3], -0.25, 1e-6, 0); /* (0.5 - 1) / 2 */
}

static void test_gradient_by_central_differences(void **state)
{
    (void)state;
    enum { B = 4, K = 5 };
    float z[B * K], d[B * K], loss;
    double zd[B * K];
    uint8_t y[B] = { 0, 3, 4, 3 };
    for (int i = 0; i < B * K; i++) zd[i] = z[i] = (float)(sin(1.7 * i) * 3.0);
    assert_int_equal(lr_softmax_xent(&loss, d, z, y, B, K, NULL), LR_OK);
    assert_allclose(loss, ref_loss(zd, y, B, K), 1e-6, 0);
    double h = 1e-5;
    for (int i = 0; i < B * K; i++) {
        double keep = zd[i];
        zd[i] = keep + h;
        double fp = ref_loss(zd, y, B, K);
        zd[i] = keep - h;
        double fm = ref_loss(zd, y, B, K);
        zd[i] = keep;
        assert_allclose(d[i], (fp - fm) / (2 * h), 1e-5, 1e-7);
    }
    /* dlogits may alias logits */
    assert_int_equal(lr_softmax_xent(&loss, z, z, y, B, K, NULL), LR_OK);
    for (int i = 0; i < B * K; i++) assert_true(z[i] == d[i]);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    float z[4] = { 0, 1, 2, 3 }, loss;
    uint8_t y[2] = { 0, 1 }, bad[2] = { 0, 2 };
    lr_err e;
    assert_int_equal(lr_softmax_xent(NULL, NULL, z, y, 2, 2, &e), LR_EINVAL);
    assert_int_equal(lr_softmax_xent(&loss, NULL, NULL, y, 2, 2, &e), LR_EINVAL);
    assert_int_equal(lr_softmax_xent(&loss, NULL, z, NULL, 2, 2, &e), LR_EINVAL);
    assert_int_equal(lr_softmax_xent(&loss, NULL, z, y, 0, 2, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "batch 0");
    assert_int_equal(lr_softmax_xent(&loss, NULL, z, y, 2, 0, &e), LR_EINVAL);
    assert_int_equal(lr_softmax_xent(&loss, NULL, z, bad, 2, 2, &e), LR_ERANGE);
    assert_msg_contains(e.msg, "label 2 of example 1");
    z[3] = NAN;
    assert_int_equal(lr_softmax_xent(&loss, NULL, z, y, 2, 2, &e), LR_ENONFINITE);
    assert_msg_contains(e.msg, "(1,1) is NaN");
    z[3] = INFINITY;
    assert_int_equal(lr_softmax_xent(&loss, NULL, z, y, 2, 2, &e), LR_ENONFINITE);
    assert_msg_contains(e.msg, "Inf");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_stable_for_large_logits),
        cmocka_unit_test(test_gradient_by_central_differences),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
