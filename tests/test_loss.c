/* test_loss.c — softmax cross-entropy: known values, stability at 1e4, gradient by central
 * differences in double, bad inputs; the weighted cross-entropy + KL mix (lr_softmax_xent_kl,
 * lr_softmax_kl): gradient by central differences, KL = 0 at q = p, bit-equality with
 * lr_softmax_xent, bad weights and soft targets. */
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

/* The weighted mix in double: (1/B) Σ_b [ c_b CE + d_b KL(q_b || p_b) ] (c NULL: no CE term). */
static double ref_mix(const double *z, const uint8_t *y, const float *c, const float *q, const float *d,
                      size_t batch, size_t k)
{
    double tot = 0;
    for (size_t b = 0; b < batch; b++) {
        double mx = z[b * k];
        for (size_t j = 0; j < k; j++) mx = fmax(mx, z[b * k + j]);
        double se = 0;
        for (size_t j = 0; j < k; j++) se += exp(z[b * k + j] - mx);
        double lse = log(se) + mx;
        if (c) tot += c[b] * (lse - z[b * k + y[b]]);
        for (size_t j = 0; j < k; j++)
            if (q[b * k + j] > 0) tot += d[b] * q[b * k + j] * (log(q[b * k + j]) - (z[b * k + j] - lse));
    }
    return tot / (double)batch;
}

/* Soft targets: softmax of other logits, one row with an exact zero (0·log 0 = 0). */
static void make_soft(float *q, size_t batch, size_t k)
{
    for (size_t b = 0; b < batch; b++) {
        double s = 0, e[16];
        for (size_t j = 0; j < k; j++) s += e[j] = (b == 1 && j == 2) ? 0 : exp(cos(0.9 * (double)(b * k + j)) * 2);
        for (size_t j = 0; j < k; j++) q[b * k + j] = (float)(e[j] / s);
    }
}

static void test_mix_gradient_by_central_differences(void **state)
{
    (void)state;
    enum { B = 4, K = 5 };
    float z[B * K], g[B * K], q[B * K], loss;
    float c[B] = { 1.0f, 0.0f, 0.25f, 2.0f }, d[B] = { 0.5f, 1.0f, 0.0f, 3.0f }, ones[B] = { 1, 1, 1, 1 };
    double zd[B * K], h = 1e-5;
    uint8_t y[B] = { 0, 3, 4, 3 };
    for (int i = 0; i < B * K; i++) zd[i] = z[i] = (float)(sin(1.7 * i) * 3.0);
    make_soft(q, B, K);
    assert_int_equal(lr_softmax_xent_kl(&loss, g, z, y, c, q, d, B, K, NULL), LR_OK);
    assert_allclose(loss, ref_mix(zd, y, c, q, d, B, K), 1e-6, 0);
    for (int i = 0; i < B * K; i++) {
        double keep = zd[i];
        zd[i] = keep + h;
        double fp = ref_mix(zd, y, c, q, d, B, K);
        zd[i] = keep - h;
        double fm = ref_mix(zd, y, c, q, d, B, K);
        zd[i] = keep;
        assert_allclose(g[i], (fp - fm) / (2 * h), 1e-5, 1e-7);
    }
    /* the KL part alone, weights NULL = all 1, gradient aliasing the logits */
    assert_int_equal(lr_softmax_kl(&loss, g, z, q, NULL, B, K, NULL), LR_OK);
    assert_allclose(loss, ref_mix(zd, NULL, NULL, q, ones, B, K), 1e-6, 1e-9);
    for (int i = 0; i < B * K; i++) {
        double keep = zd[i];
        zd[i] = keep + h;
        double fp = ref_mix(zd, NULL, NULL, q, ones, B, K);
        zd[i] = keep - h;
        double fm = ref_mix(zd, NULL, NULL, q, ones, B, K);
        zd[i] = keep;
        assert_allclose(g[i], (fp - fm) / (2 * h), 1e-5, 1e-7);
    }
    assert_int_equal(lr_softmax_kl(&loss, z, z, q, NULL, B, K, NULL), LR_OK);
    for (int i = 0; i < B * K; i++) assert_true(z[i] == g[i]);
}

/* q = softmax(z): the KL is 0 and so is its gradient (to float rounding of q); at logits of
 * 1e4 too, where a naive log(softmax) would give log 0. */
static void test_kl_zero_at_own_softmax(void **state)
{
    (void)state;
    enum { B = 3, K = 4 };
    float z[B * K] = { 0.5f, -1, 2, 0, 1e4f, 1e4f - 3, -1e4f, 0, 3, 3, 3, 3 }, q[B * K], g[B * K], loss;
    for (int b = 0; b < B; b++) {
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < K; j++) mx = fmax(mx, z[b * K + j]);
        for (int j = 0; j < K; j++) s += exp(z[b * K + j] - mx);
        for (int j = 0; j < K; j++) q[b * K + j] = (float)(exp(z[b * K + j] - mx) / s);
    }
    assert_int_equal(lr_softmax_kl(&loss, g, z, q, NULL, B, K, NULL), LR_OK);
    assert_true(fabs(loss) < 1e-7);
    for (int i = 0; i < B * K; i++) assert_true(fabs(g[i]) < 1e-8);
}

/* c all 1 (or NULL), no soft targets: lr_softmax_xent's loss and gradient to the bit. */
static void test_mix_equals_xent_bit_for_bit(void **state)
{
    (void)state;
    enum { B = 6, K = 7 };
    float z[B * K], g1[B * K], g2[B * K], g3[B * K], ones[B], l1, l2, l3;
    uint8_t y[B] = { 0, 6, 3, 3, 1, 5 };
    for (int i = 0; i < B * K; i++) z[i] = (float)(sin(0.37 * i) * 7.0);
    for (int b = 0; b < B; b++) ones[b] = 1.0f;
    assert_int_equal(lr_softmax_xent(&l1, g1, z, y, B, K, NULL), LR_OK);
    assert_int_equal(lr_softmax_xent_kl(&l2, g2, z, y, NULL, NULL, NULL, B, K, NULL), LR_OK);
    assert_int_equal(lr_softmax_xent_kl(&l3, g3, z, y, ones, NULL, NULL, B, K, NULL), LR_OK);
    assert_true(l1 == l2 && l1 == l3);
    assert_memory_equal(g1, g2, sizeof g1);
    assert_memory_equal(g1, g3, sizeof g1);
}

static void test_mix_bad_inputs(void **state)
{
    (void)state;
    enum { B = 3, K = 2 };
    float z[B * K] = { 0, 1, 2, 3, 4, 5 }, q[B * K] = { 0.5f, 0.5f, 1, 0, 0.25f, 0.75f }, loss;
    float c[B] = { 1, 1, 1 }, d[B] = { 1, 1, 1 }, zero[B] = { 0, 0, 0 };
    uint8_t y[B] = { 0, 1, 1 }, ybad[B] = { 0, 2, 1 };
    lr_err e;
    assert_int_equal(lr_softmax_xent_kl(&loss, NULL, z, y, c, q, d, B, K, &e), LR_OK);
    c[2] = -1;
    assert_int_equal(lr_softmax_xent_kl(&loss, NULL, z, y, c, q, d, B, K, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "label weight -1 of example 2");
    c[2] = INFINITY;
    assert_int_equal(lr_softmax_xent_kl(&loss, NULL, z, y, c, q, d, B, K, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "example 2");
    c[2] = 1;
    d[1] = NAN;
    assert_int_equal(lr_softmax_xent_kl(&loss, NULL, z, y, c, q, d, B, K, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "soft weight nan of example 1");
    d[1] = 1;
    q[3] = NAN;
    assert_int_equal(lr_softmax_xent_kl(&loss, NULL, z, y, c, q, d, B, K, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "soft target 1 of example 1 is nan");
    q[3] = 0;
    q[4] = -0.25f, q[5] = 1.25f; /* sums to 1, but a negative probability */
    assert_int_equal(lr_softmax_kl(&loss, NULL, z, q, NULL, B, K, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "soft target 0 of example 2");
    q[4] = 0.25f, q[5] = 0.7f;
    assert_int_equal(lr_softmax_xent_kl(&loss, NULL, z, y, c, q, d, B, K, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "soft targets of example 2 sum to 0.95");
    q[5] = 0.7505f; /* within 1e-3 */
    assert_int_equal(lr_softmax_xent_kl(&loss, NULL, z, y, c, q, d, B, K, &e), LR_OK);
    /* labels NULL: fine when every c is 0, not with c NULL (all 1) or one nonzero c */
    assert_int_equal(lr_softmax_xent_kl(&loss, NULL, z, NULL, zero, q, d, B, K, &e), LR_OK);
    assert_int_equal(lr_softmax_xent_kl(&loss, NULL, z, NULL, NULL, q, d, B, K, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "labels is NULL but example 0 has label weight 1");
    zero[1] = 0.5f;
    assert_int_equal(lr_softmax_xent_kl(&loss, NULL, z, NULL, zero, q, d, B, K, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "example 1 has label weight 0.5");
    assert_int_equal(lr_softmax_xent_kl(&loss, NULL, z, ybad, c, q, d, B, K, &e), LR_ERANGE);
    assert_msg_contains(e.msg, "label 2 of example 1");
    assert_int_equal(lr_softmax_xent_kl(&loss, NULL, z, y, c, NULL, d, B, K, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "without soft targets");
    assert_int_equal(lr_softmax_kl(&loss, NULL, z, NULL, NULL, B, K, &e), LR_EINVAL);
    assert_int_equal(lr_softmax_kl(NULL, NULL, z, q, NULL, B, K, &e), LR_EINVAL);
    assert_int_equal(lr_softmax_kl(&loss, NULL, z, q, NULL, 0, K, &e), LR_EINVAL);
    z[3] = NAN;
    assert_int_equal(lr_softmax_kl(&loss, NULL, z, q, NULL, B, K, &e), LR_ENONFINITE);
    assert_msg_contains(e.msg, "(1,1) is NaN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_stable_for_large_logits),
        cmocka_unit_test(test_gradient_by_central_differences),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_mix_gradient_by_central_differences),
        cmocka_unit_test(test_kl_zero_at_own_softmax),
        cmocka_unit_test(test_mix_equals_xent_bit_for_bit),
        cmocka_unit_test(test_mix_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
