/* test_adam.c — Adam's scalars and update against hand-computed values and a double loop. */
#include <math.h>
#include "lr_test.h"
#include "lowrank/nn/adam.h"

static void test_defaults_and_step_scalars(void **state)
{
    (void)state;
    lr_adam_opts p = lr_adam_opts_default();
    assert_true(p.lr == 1e-3 && p.beta1 == 0.9 && p.beta2 == 0.999 && p.eps == 1e-8);
    lr_adam_step s = lr_adam_step_for(1, &p);
    /* t = 1: step_size = lr / (1 - 0.9) = 0.01, bc2_sqrt = sqrt(1 - 0.999) */
    assert_allclose(s.step_size, 1e-3 / (1.0 - 0.9), 1e-7, 0);
    assert_allclose(s.bc2_sqrt, sqrt(1.0 - 0.999), 1e-7, 0);
    s = lr_adam_step_for(1000, &p);
    assert_allclose(s.step_size, 1e-3 / (1.0 - pow(0.9, 1000)), 1e-7, 0);
    assert_allclose(s.bc2_sqrt, sqrt(1.0 - pow(0.999, 1000)), 1e-7, 0);
}

/* NULL options are the defaults (it used to dereference NULL). */
static void test_null_is_default(void **state)
{
    (void)state;
    lr_adam_opts p = lr_adam_opts_default();
    lr_adam_step a = lr_adam_step_for(7, NULL), b = lr_adam_step_for(7, &p);
    assert_memory_equal(&a, &b, sizeof a);
}

static void test_first_step_by_hand(void **state)
{
    (void)state;
    lr_adam_opts p = lr_adam_opts_default();
    lr_adam_step s = lr_adam_step_for(1, &p);
    /* g = 0.5: m = 0.05, v = 0.00025, denom = sqrt(v)/sqrt(0.001) + 1e-8 = 0.5 + 1e-8,
     * p = 1 - 0.01 * 0.05 / 0.5 = 0.999 (the first Adam step moves by ~lr, sign of g) */
    float w = 1.0f, m = 0.0f, v = 0.0f, g = 0.5f;
    w = lr_adam_elem(w, g, &m, &v, &s);
    assert_allclose(m, 0.05, 1e-6, 0);
    assert_allclose(v, 0.00025, 1e-6, 0);
    assert_allclose(w, 0.999, 0, 1e-7);
    /* a zero gradient at t = 1 leaves the parameter alone */
    float w2 = 2.0f, m2 = 0.0f, v2 = 0.0f;
    assert_true(lr_adam_elem(w2, 0.0f, &m2, &v2, &s) == 2.0f);
    /* negative gradient: moves up by lr */
    float w3 = 0.0f, m3 = 0.0f, v3 = 0.0f;
    assert_allclose(lr_adam_elem(w3, -3.0f, &m3, &v3, &s), 1e-3, 1e-5, 0);
}

static void test_update_matches_double_reference(void **state)
{
    (void)state;
    enum { N = 37, T = 25 };
    float p[N], m[N] = { 0 }, v[N] = { 0 }, g[N];
    double pd[N], md[N] = { 0 }, vd[N] = { 0 };
    for (int i = 0; i < N; i++) pd[i] = p[i] = 0.1f * (float)(i - 18);
    lr_adam_opts ap = { 0.01, 0.8, 0.99, 1e-6 };
    for (int t = 1; t <= T; t++) {
        for (int i = 0; i < N; i++) g[i] = (float)sin(0.3 * i + t) * (1.0f + (float)i);
        lr_adam_step s = lr_adam_step_for((size_t)t, &ap);
        lr_adam_update(p, m, v, g, N, &s);
        double b1 = ap.beta1, b2 = ap.beta2;
        for (int i = 0; i < N; i++) {
            md[i] = b1 * md[i] + (1 - b1) * g[i];
            vd[i] = b2 * vd[i] + (1 - b2) * (double)g[i] * g[i];
            double den = sqrt(vd[i]) / sqrt(1 - pow(b2, t)) + ap.eps;
            pd[i] -= ap.lr / (1 - pow(b1, t)) * md[i] / den;
        }
    }
    for (int i = 0; i < N; i++) {
        assert_allclose(p[i], pd[i], 1e-5, 1e-6);
        assert_allclose(m[i], md[i], 1e-5, 1e-6);
        assert_allclose(v[i], vd[i], 1e-5, 1e-6);
    }
    /* lr_adam_update is lr_adam_elem element-wise, bit for bit: over all N = 37 entries,
     * i.e. the 8-lane SIMD path (where the machine has it) and the scalar tail */
    float q[N], mq[N], vq[N];
    lr_adam_step s = lr_adam_step_for(T + 1, &ap);
    for (int i = 0; i < N; i++) {
        g[i] = 0.7f - 0.05f * (float)i;
        mq[i] = m[i], vq[i] = v[i];
        q[i] = lr_adam_elem(p[i], g[i], &mq[i], &vq[i], &s);
    }
    lr_adam_update(p, m, v, g, N, &s);
    assert_memory_equal(q, p, sizeof q);
    assert_memory_equal(mq, m, sizeof mq);
    assert_memory_equal(vq, v, sizeof vq);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_step_scalars),
        cmocka_unit_test(test_null_is_default),
        cmocka_unit_test(test_first_step_by_hand),
        cmocka_unit_test(test_update_matches_double_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
