/* test_blas.c — gemm/gemv wrappers: results against a naive loop, shape checks. */
#include "lr_test.h"
#include "lowrank/linalg/blas.h"
#include "lowrank/base/rng.h"

static void naive(lr_mat c, lr_cmat a, bool ta, lr_cmat b, bool tb)
{
    size_t k = ta ? a.rows : a.cols;
    for (size_t i = 0; i < c.rows; i++)
        for (size_t j = 0; j < c.cols; j++) {
            double s = 0;
            for (size_t p = 0; p < k; p++)
                s += (double)(ta ? a.data[p * a.ld + i] : a.data[i * a.ld + p]) *
                     (tb ? b.data[j * b.ld + p] : b.data[p * b.ld + j]);
            c.data[i * c.ld + j] = (float)s;
        }
}

static void test_gemm_all_transposes(void **state)
{
    (void)state;
    lr_rng r;
    lr_rng_seed(&r, 1);
    float abuf[7 * 9], bbuf[9 * 8], cbuf[5 * 6], dbuf[5 * 6];
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            /* op(A): 5x4, op(B): 4x6, stored with padding (ld > cols) */
            lr_mat a = ta ? lr_mat_view(abuf, 4, 5, 7) : lr_mat_view(abuf, 5, 4, 7);
            lr_mat b = tb ? lr_mat_view(bbuf, 6, 4, 8) : lr_mat_view(bbuf, 4, 6, 8);
            lr_rng_fill_normal(&r, lr_mat_view(abuf, 7, 9, 9), 0, 1);
            lr_rng_fill_normal(&r, lr_mat_view(bbuf, 9, 8, 8), 0, 1);
            lr_mat c = lr_mat_view(cbuf, 5, 6, 6), d = lr_mat_view(dbuf, 5, 6, 6);
            assert_int_equal(lr_gemm(c, 1.0f, lr_cm(a), ta, lr_cm(b), tb, 0.0f, NULL), LR_OK);
            naive(d, lr_cm(a), ta, lr_cm(b), tb);
            assert_mat_allclose(lr_cm(c), lr_cm(d), 1e-5, 1e-5);
        }
}

static void test_gemm_shapes_and_empty(void **state)
{
    (void)state;
    float a[6] = { 1, 2, 3, 4, 5, 6 }, c[4] = { 9, 9, 9, 9 };
    lr_err e;
    lr_status s = lr_gemm(lr_mat_view(c, 2, 2, 2), 1, lr_cmat_view(a, 2, 3, 3), false,
                          lr_cmat_view(a, 2, 3, 3), false, 0, &e);
    assert_int_equal(s, LR_EDIM);
    assert_msg_contains(e.msg, "op(A) is 2 x 3, op(B) is 2 x 3");
    /* A·Aᵀ works */
    assert_int_equal(lr_gemm(lr_mat_view(c, 2, 2, 2), 1, lr_cmat_view(a, 2, 3, 3), false,
                             lr_cmat_view(a, 2, 3, 3), true, 0, &e), LR_OK);
    assert_allclose(c[0], 14, 0, 0);
    assert_allclose(c[3], 77, 0, 0);
    /* k = 0: C <- beta*C */
    assert_int_equal(lr_gemm(lr_mat_view(c, 2, 2, 2), 1, lr_cmat_view(a, 2, 0, 0), false,
                             lr_cmat_view(a, 0, 2, 2), false, 0.5f, &e), LR_OK);
    assert_allclose(c[0], 7, 0, 0);
    assert_int_equal(lr_gemm(lr_mat_view(c, 2, 2, 1), 1, lr_cmat_view(a, 2, 0, 0), false,
                             lr_cmat_view(a, 0, 2, 2), false, 0.5f, &e), LR_EDIM);
    assert_msg_contains(e.msg, "ld 1 is smaller than cols 2");
}

static void test_gemv(void **state)
{
    (void)state;
    float a[6] = { 1, 2, 3, 4, 5, 6 }, x[3] = { 1, 1, 1 }, y[3] = { 0 };
    assert_int_equal(lr_gemv(y, 1, lr_cmat_view(a, 2, 3, 3), false, x, 0, NULL), LR_OK);
    assert_allclose(y[0], 6, 0, 0);
    assert_allclose(y[1], 15, 0, 0);
    assert_int_equal(lr_gemv(y, 1, lr_cmat_view(a, 2, 3, 3), true, x, 0, NULL), LR_OK);
    assert_allclose(y[2], 9, 0, 0);
    lr_err e;
    assert_int_equal(lr_gemv(NULL, 1, lr_cmat_view(a, 2, 3, 3), true, x, 0, &e), LR_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_all_transposes),
        cmocka_unit_test(test_gemm_shapes_and_empty),
        cmocka_unit_test(test_gemv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
