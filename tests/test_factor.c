/* test_factor.c — rank-r factors b·a from the SVD, the seed's split and the balanced one. */
#include "lr_test.h"
#include <math.h>
#include <stdlib.h>
#include "lowrank/linalg/blas.h"
#include "lowrank/linalg/factor.h"
#include "lowrank/base/rng.h"
#include "lowrank/linalg/rsvd.h"

/* The seed: W = randn(10,2)·randn(2,10), then y = Wx + b against (BA)x + b. */
static void test_seed_rank2(void **st)
{
    (void)st;
    lr_rng rng;
    lr_rng_seed(&rng, 0);
    float p[20], q[20], w[100], x[10], bias[10], y[10], y2[10], t[2];
    lr_rng_fill_normal(&rng, lr_mat_view(p, 10, 2, 2), 0, 1);
    lr_rng_fill_normal(&rng, lr_mat_view(q, 2, 10, 10), 0, 1);
    lr_rng_fill_normal(&rng, lr_mat_view(x, 10, 1, 1), 0, 1);
    lr_rng_fill_normal(&rng, lr_mat_view(bias, 10, 1, 1), 0, 1);
    lr_mat W = lr_mat_view(w, 10, 10, 10);
    assert_int_equal(lr_gemm(W, 1, lr_cmat_view(p, 10, 2, 2), false, lr_cmat_view(q, 2, 10, 10), false, 0, NULL), LR_OK);
    lr_mat B, A;
    lr_err err = { { 0 } };
    assert_int_equal(lr_factor_alloc(&B, &A, lr_cm(W), 2, LR_SPLIT_US, &err), LR_OK);
    assert_int_equal(B.rows, 10);
    assert_int_equal(B.cols, 2);
    assert_int_equal(A.rows, 2);
    assert_int_equal(A.cols, 10);
    /* b·a reproduces w */
    float ba[100];
    lr_gemm(lr_mat_view(ba, 10, 10, 10), 1, lr_cm(B), false, lr_cm(A), false, 0, NULL);
    assert_mat_allclose(lr_cmat_view(ba, 10, 10, 10), lr_cm(W), 1e-4, 1e-4);
    /* y = W x + b  vs  y' = B (A x) + b */
    memcpy(y, bias, sizeof y);
    memcpy(y2, bias, sizeof y2);
    lr_gemv(y, 1, lr_cm(W), false, x, 1, NULL);
    lr_gemv(t, 1, lr_cm(A), false, x, 0, NULL);
    lr_gemv(y2, 1, lr_cm(B), false, t, 1, NULL);
    assert_mat_allclose(lr_cmat_view(y2, 10, 1, 1), lr_cmat_view(y, 10, 1, 1), 1e-4, 1e-4);
    /* the seed's split: a = V_rᵀ has orthonormal rows, b = U_r S_r matches the SVD */
    lr_usv f;
    assert_int_equal(lr_usv_from_svd(&f, lr_cm(W), NULL), LR_OK);
    for (size_t i = 0; i < 10; i++)
        for (size_t j = 0; j < 2; j++) {
            assert_allclose(B.data[i * 2 + j], f.u.data[i * f.u.ld + j] * f.s[j], 1e-6, 1e-7);
            assert_allclose(A.data[j * 10 + i], f.vt.data[j * f.vt.ld + i], 1e-6, 1e-7);
        }
    float aat[4];
    lr_gemm(lr_mat_view(aat, 2, 2, 2), 1, lr_cm(A), false, lr_cm(A), true, 0, NULL);
    assert_allclose(aat[0], 1, 1e-5, 0);
    assert_allclose(aat[1], 0, 0, 1e-5);
    assert_allclose(aat[3], 1, 1e-5, 0);
    /* exact rank 2: the third singular value is rounding noise */
    assert_true(f.s[2] < 1e-5 * f.s[0]);
    lr_usv_free(&f);
    lr_mat_free(&B);
    lr_mat_free(&A);
}

static void test_balanced_and_from_usv(void **st)
{
    (void)st;
    lr_rng rng;
    lr_rng_seed(&rng, 3);
    lr_mat W;
    lr_mat_init(&W, 12, 9, NULL);
    lr_rng_fill_normal(&rng, W, 0, 1);
    lr_usv f;
    assert_int_equal(lr_usv_from_svd(&f, lr_cm(W), NULL), LR_OK);
    float b[12 * 4], a[4 * 9], bt[16], aa[16];
    lr_mat B = lr_mat_view(b, 12, 4, 4), A = lr_mat_view(a, 4, 9, 9);
    assert_int_equal(lr_factor_from_usv(B, A, &f, 4, LR_SPLIT_BALANCED, NULL), LR_OK);
    /* balanced: bᵀb = a·aᵀ = diag(S_r) */
    lr_gemm(lr_mat_view(bt, 4, 4, 4), 1, lr_cm(B), true, lr_cm(B), false, 0, NULL);
    lr_gemm(lr_mat_view(aa, 4, 4, 4), 1, lr_cm(A), false, lr_cm(A), true, 0, NULL);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            double want = i == j ? f.s[i] : 0.0;
            assert_allclose(bt[i * 4 + j], want, 1e-4, 1e-5);
            assert_allclose(aa[i * 4 + j], want, 1e-4, 1e-5);
        }
    /* same product as the seed's split */
    float b2[12 * 4], a2[4 * 9], p1[108], p2[108];
    assert_int_equal(lr_factor(lr_mat_view(b2, 12, 4, 4), lr_mat_view(a2, 4, 9, 9), lr_cm(W), 4, LR_SPLIT_US, NULL), LR_OK);
    lr_gemm(lr_mat_view(p1, 12, 9, 9), 1, lr_cm(B), false, lr_cm(A), false, 0, NULL);
    lr_gemm(lr_mat_view(p2, 12, 9, 9), 1, lr_cmat_view(b2, 12, 4, 4), false, lr_cmat_view(a2, 4, 9, 9), false, 0, NULL);
    assert_mat_allclose(lr_cmat_view(p1, 12, 9, 9), lr_cmat_view(p2, 12, 9, 9), 1e-4, 1e-5);
    /* from a randomized SVD too (k = r) */
    lr_usv g;
    lr_rng_seed(&rng, 4);
    assert_int_equal(lr_usv_from_rsvd(&g, lr_cm(W), 4, NULL, &rng, NULL), LR_OK);
    assert_int_equal(lr_factor_from_usv(B, A, &g, 4, LR_SPLIT_US, NULL), LR_OK);
    lr_err err;
    assert_int_equal(lr_factor_from_usv(lr_mat_view(b, 12, 5, 5), lr_mat_view(a, 5, 9, 9), &g, 5, LR_SPLIT_US, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "exceeds the 4 singular triplets");
    lr_usv_free(&g);
    lr_usv_free(&f);
    lr_mat_free(&W);
}

static void test_bad_input(void **st)
{
    (void)st;
    float w[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 }, b[6], a[8];
    lr_cmat W = lr_cmat_view(w, 3, 4, 4);
    lr_mat B = lr_mat_view(b, 3, 2, 2), A = lr_mat_view(a, 2, 4, 4);
    lr_err err;
    assert_int_equal(lr_factor(lr_mat_view(b, 3, 0, 0), lr_mat_view(a, 0, 4, 4), W, 0, LR_SPLIT_US, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "r = 0");
    assert_int_equal(lr_factor(B, A, W, 4, LR_SPLIT_US, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "r = 4 exceeds min(3, 4) = 3");
    assert_int_equal(lr_factor(lr_mat_view(b, 2, 3, 3), A, W, 2, LR_SPLIT_US, &err), LR_EDIM);
    assert_msg_contains(err.msg, "b is 2 x 3, expected 3 x 2");
    assert_int_equal(lr_factor(B, lr_mat_view(a, 2, 3, 3), W, 2, LR_SPLIT_US, &err), LR_EDIM);
    assert_msg_contains(err.msg, "a is 2 x 3, expected 2 x 4");
    assert_int_equal(lr_factor(B, A, lr_cmat_view(w, 3, 4, 2), 2, LR_SPLIT_US, &err), LR_EDIM);
    assert_msg_contains(err.msg, "ld 2");
    assert_int_equal(lr_factor(B, A, W, 2, (lr_split)5, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "unknown split 5");
    assert_int_equal(lr_factor(B, A, lr_cmat_view(NULL, 3, 4, 4), 2, LR_SPLIT_US, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "NULL");
    w[5] = INFINITY;
    assert_int_equal(lr_factor(B, A, W, 2, LR_SPLIT_US, &err), LR_ENONFINITE);
    assert_msg_contains(err.msg, "+Inf");
    lr_mat b1, a1;
    assert_int_equal(lr_factor_alloc(&b1, &a1, W, 2, LR_SPLIT_US, &err), LR_ENONFINITE);
    assert_null(b1.data);
    assert_null(a1.data);
    assert_int_equal(lr_factor_alloc(NULL, &a1, W, 2, LR_SPLIT_US, &err), LR_EINVAL);
    assert_int_equal(lr_factor_from_usv(B, A, NULL, 2, LR_SPLIT_US, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "svd is NULL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_rank2),
        cmocka_unit_test(test_balanced_and_from_usv),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
