/* test_factor_sum.c — the SVD of Σ w_i·b_i·a_i from the factors, against the dense SVD of the
 * formed sum: values, reconstruction, Eckart–Young truncation, and every bad input. */
#include "lr_test.h"
#include <math.h>
#include <stdlib.h>
#include "lowrank/linalg/factor_sum.h"
#include "lowrank/linalg/factor.h"
#include "lowrank/linalg/approx.h"
#include "lowrank/linalg/blas.h"
#include "lowrank/linalg/svd.h"
#include "lowrank/base/rng.h"

#define MAXT 4

typedef struct {
    size_t m, n, count;
    size_t r[MAXT];
    lr_mat b[MAXT], a[MAXT];
    lr_cmat bs[MAXT], as[MAXT];
    float w[MAXT];
    lr_mat d; /* the formed sum, in double then rounded */
} terms;

/* b_i: (m, r_i), a_i: (r_i, n) Gaussian; b_i is a view with ld = r_i + 3 (strided input). */
static void terms_init(terms *t, size_t m, size_t n, size_t count, const size_t *r, const float *w,
                       uint64_t seed)
{
    lr_rng rng;
    lr_rng_seed(&rng, seed);
    t->m = m, t->n = n, t->count = count;
    for (size_t i = 0; i < count; i++) {
        t->r[i] = r[i];
        t->w[i] = w ? w[i] : 1.0f;
        assert_int_equal(lr_mat_init(&t->b[i], m, r[i] + 3, NULL), LR_OK);
        assert_int_equal(lr_mat_init(&t->a[i], r[i] ? r[i] : 1, n, NULL), LR_OK);
        lr_rng_fill_normal(&rng, t->b[i], 0, 1);
        lr_rng_fill_normal(&rng, t->a[i], 0, 1);
        t->bs[i] = lr_cmat_view(t->b[i].data, m, r[i], t->b[i].ld);
        t->as[i] = lr_cmat_view(t->a[i].data, r[i], n, n);
    }
    assert_int_equal(lr_mat_init(&t->d, m, n, NULL), LR_OK);
    for (size_t p = 0; p < m; p++)
        for (size_t q = 0; q < n; q++) {
            double s = 0;
            for (size_t i = 0; i < count; i++)
                for (size_t j = 0; j < r[i]; j++)
                    s += (double)t->w[i] * t->bs[i].data[p * t->bs[i].ld + j] * t->as[i].data[j * n + q];
            t->d.data[p * n + q] = (float)s;
        }
}

static void terms_free(terms *t)
{
    for (size_t i = 0; i < t->count; i++) {
        lr_mat_free(&t->b[i]);
        lr_mat_free(&t->a[i]);
    }
    lr_mat_free(&t->d);
}

/* The factored SVD equals the dense one of the formed sum; truncations match Eckart–Young. */
static void check_sum(terms *t, const float *w)
{
    lr_usv f, g;
    lr_err e;
    size_t K = 0;
    for (size_t i = 0; i < t->count; i++) K += t->r[i];
    if (lr_usv_from_factors(&f, t->bs, t->as, w, t->count, &e)) fail_msg("%s", e.msg);
    size_t k = t->m < t->n ? t->m : t->n;
    if (K < k) k = K;
    assert_int_equal(f.k, k);
    assert_int_equal(f.m, t->m);
    assert_int_equal(f.n, t->n);
    assert_int_equal(f.u.rows, t->m);
    assert_int_equal(f.u.cols, k);
    assert_int_equal(f.vt.rows, k);
    assert_int_equal(f.vt.cols, t->n);
    assert_int_equal(lr_usv_from_svd(&g, lr_cm(t->d), NULL), LR_OK);
    double norm = lr_mat_norm_fro(lr_cm(t->d));
    assert_true(norm > 0);
    for (size_t i = 0; i < k; i++) {
        assert_allclose(f.s[i], g.s[i], 1e-5, 1e-6 * g.s[0]);
        if (i) assert_true(f.s[i] <= f.s[i - 1]);
        assert_true(f.s[i] >= 0);
    }
    /* beyond K the dense values are rounding noise */
    for (size_t i = k; i < g.k; i++) assert_true(g.s[i] <= 1e-5 * g.s[0]);
    /* u·diag(s)·vt is the sum */
    double res = lr_test_svd_residual(lr_cm(t->d), f.s, lr_cm(f.u), lr_cm(f.vt));
    if (!(res <= 1e-5 * norm)) fail_msg("residual %g of a sum of norm %g", res, norm);
    /* orthonormal u columns and vt rows */
    for (size_t p = 0; p < k; p++)
        for (size_t q = 0; q < k; q++) {
            double du = 0, dv = 0;
            for (size_t i = 0; i < t->m; i++) du += (double)f.u.data[i * f.u.ld + p] * f.u.data[i * f.u.ld + q];
            for (size_t j = 0; j < t->n; j++) dv += (double)f.vt.data[p * f.vt.ld + j] * f.vt.data[q * f.vt.ld + j];
            assert_allclose(du, p == q, 0, 1e-5);
            assert_allclose(dv, p == q, 0, 1e-5);
        }
    /* truncation at every R: the error of the dense Eckart–Young truncation */
    for (size_t R = 1; R <= k; R++) {
        lr_mat b1, a1, b2, a2;
        assert_int_equal(lr_mat_init(&b1, t->m, R, NULL), LR_OK);
        assert_int_equal(lr_mat_init(&a1, R, t->n, NULL), LR_OK);
        assert_int_equal(lr_factor_from_usv(b1, a1, &f, R, LR_SPLIT_US, NULL), LR_OK);
        assert_int_equal(lr_factor_alloc(&b2, &a2, lr_cm(t->d), R, LR_SPLIT_US, NULL), LR_OK);
        lr_approx_err e1, e2;
        assert_int_equal(lr_approx_measure(&e1, lr_cm(t->d), lr_cm(b1), lr_cm(a1), false, NULL), LR_OK);
        assert_int_equal(lr_approx_measure(&e2, lr_cm(t->d), lr_cm(b2), lr_cm(a2), false, NULL), LR_OK);
        double pred = 0;
        for (size_t i = R; i < g.k; i++) pred += (double)g.s[i] * g.s[i];
        pred = sqrt(pred);
        assert_allclose(e1.fro, e2.fro, 1e-4, 5e-6 * norm);
        assert_allclose(e1.fro, pred, 1e-4, 5e-6 * norm);
        lr_mat_free(&b1);
        lr_mat_free(&a1);
        lr_mat_free(&b2);
        lr_mat_free(&a2);
    }
    lr_usv_free(&g);
    lr_usv_free(&f);
}

static void test_one_to_four_terms(void **state)
{
    (void)state;
    const size_t ranks[4][4] = { { 3 }, { 2, 5 }, { 1, 4, 2 }, { 3, 1, 2, 4 } };
    const float w[4] = { 0.7f, -1.3f, 2.0f, 0.25f };
    for (size_t c = 1; c <= 4; c++) {
        terms t;
        terms_init(&t, 15, 11, c, ranks[c - 1], w, 100 + c);
        check_sum(&t, w);
        terms_free(&t);
    }
    /* one term: its own product's SVD, rank r */
    terms t;
    const size_t r1[1] = { 5 };
    terms_init(&t, 9, 13, 1, r1, NULL, 7);
    check_sum(&t, NULL);
    terms_free(&t);
}

/* More total rank than the matrix has rows or columns. */
static void test_more_rank_than_size(void **state)
{
    (void)state;
    const size_t r[3] = { 4, 5, 3 };
    const float w[3] = { 1, -0.5f, 3 };
    terms t;
    terms_init(&t, 6, 9, 3, r, w, 11);   /* K = 12 > m = 6, > n = 9 */
    check_sum(&t, w);
    terms_free(&t);
    terms_init(&t, 10, 4, 2, r, w, 12);  /* K = 9 > n = 4 */
    check_sum(&t, w);
    terms_free(&t);
    terms_init(&t, 3, 10, 2, r, w, 13);  /* K = 9 > m = 3 */
    check_sum(&t, w);
    terms_free(&t);
}

/* A rank-0 term among others changes nothing; weights NULL mean 1. */
static void test_zero_rank_and_weights(void **state)
{
    (void)state;
    const size_t r[3] = { 3, 0, 2 };
    const float ones[3] = { 1, 1, 1 };
    terms t;
    terms_init(&t, 8, 7, 3, r, NULL, 21);
    check_sum(&t, NULL);
    lr_usv f1, f2, f3;
    assert_int_equal(lr_usv_from_factors(&f1, t.bs, t.as, NULL, 3, NULL), LR_OK);
    assert_int_equal(lr_usv_from_factors(&f2, t.bs, t.as, ones, 3, NULL), LR_OK);
    assert_int_equal(f1.k, 5);
    assert_memory_equal(f1.s, f2.s, 5 * sizeof(float));
    assert_memory_equal(f1.u.data, f2.u.data, 8 * 5 * sizeof(float));
    /* the empty term with NULL data */
    lr_cmat bs[3] = { t.bs[0], lr_cmat_view(NULL, 8, 0, 0), t.bs[2] },
           as[3] = { t.as[0], lr_cmat_view(NULL, 0, 7, 7), t.as[2] };
    assert_int_equal(lr_usv_from_factors(&f3, bs, as, NULL, 3, NULL), LR_OK);
    assert_memory_equal(f1.s, f3.s, 5 * sizeof(float));
    lr_usv_free(&f1);
    lr_usv_free(&f2);
    lr_usv_free(&f3);
    terms_free(&t);
}

/* Negative weights subtract: b·a − b·a = 0, and 2·X − 0.5·X = 1.5·X. */
static void test_negative_weights(void **state)
{
    (void)state;
    const size_t r[1] = { 3 };
    terms t;
    terms_init(&t, 9, 8, 1, r, NULL, 31);
    lr_cmat bs[2] = { t.bs[0], t.bs[0] }, as[2] = { t.as[0], t.as[0] };
    lr_usv one, f;
    assert_int_equal(lr_usv_from_factors(&one, t.bs, t.as, NULL, 1, NULL), LR_OK);
    const float cancel[2] = { 1, -1 };
    assert_int_equal(lr_usv_from_factors(&f, bs, as, cancel, 2, NULL), LR_OK);
    assert_int_equal(f.k, 6);
    for (size_t i = 0; i < f.k; i++) assert_true(f.s[i] <= 1e-5 * one.s[0]);
    lr_usv_free(&f);
    const float w[2] = { 2, -0.5f };
    assert_int_equal(lr_usv_from_factors(&f, bs, as, w, 2, NULL), LR_OK);
    for (size_t i = 0; i < 3; i++) assert_allclose(f.s[i], 1.5 * one.s[i], 1e-5, 1e-6 * one.s[0]);
    for (size_t i = 3; i < 6; i++) assert_true(f.s[i] <= 1e-5 * one.s[0]);
    lr_usv_free(&f);
    /* a single negative weight: the same values, the sign in the vectors */
    const float neg[1] = { -2 };
    assert_int_equal(lr_usv_from_factors(&f, t.bs, t.as, neg, 1, NULL), LR_OK);
    for (size_t i = 0; i < 3; i++) assert_allclose(f.s[i], 2 * one.s[i], 1e-5, 1e-6 * one.s[0]);
    lr_mat_free(&t.d);
    assert_int_equal(lr_mat_init(&t.d, 9, 8, NULL), LR_OK);
    assert_int_equal(lr_gemm(t.d, -2, t.bs[0], false, t.as[0], false, 0, NULL), LR_OK);
    assert_true(lr_test_svd_residual(lr_cm(t.d), f.s, lr_cm(f.u), lr_cm(f.vt)) <= 1e-5 * lr_mat_norm_fro(lr_cm(t.d)));
    lr_usv_free(&f);
    lr_usv_free(&one);
    terms_free(&t);
}

static void expect_fail(const lr_cmat *bs, const lr_cmat *as, const float *w, size_t count, lr_status want,
                        const char *needle)
{
    lr_usv f;
    memset(&f, 0xab, sizeof f);
    lr_err e;
    e.msg[0] = 0;
    assert_int_equal(lr_usv_from_factors(&f, bs, as, w, count, &e), want);
    if (needle) assert_msg_contains(e.msg, needle);
    assert_null(f.s);
    assert_null(f.u.data);
    assert_null(f.vt.data);
    assert_int_equal(f.k, 0);
}

static void test_bad_input(void **state)
{
    (void)state;
    const size_t r[3] = { 2, 3, 1 };
    terms t;
    terms_init(&t, 6, 5, 3, r, NULL, 41);
    float big[7 * 6], nan_at[3 * 5];
    for (size_t i = 0; i < 42; i++) big[i] = 1;
    /* shapes: b rows, a cols, inner sizes; the message names the term */
    lr_cmat bs[3] = { t.bs[0], t.bs[1], t.bs[2] }, as[3] = { t.as[0], t.as[1], t.as[2] };
    bs[2] = lr_cmat_view(big, 7, 1, 1);
    expect_fail(bs, as, NULL, 3, LR_EDIM, "term 2");
    bs[2] = t.bs[2];
    as[1] = lr_cmat_view(big, 3, 6, 6);
    expect_fail(bs, as, NULL, 3, LR_EDIM, "term 1");
    as[1] = lr_cmat_view(big, 2, 5, 5);
    expect_fail(bs, as, NULL, 3, LR_EDIM, "term 1 is (6 x 3)·(2 x 5)");
    as[1] = t.as[1];
    /* NaN / Inf in a factor or a weight */
    memcpy(nan_at, t.as[1].data, sizeof nan_at);
    nan_at[7] = NAN;
    as[1] = lr_cmat_view(nan_at, 3, 5, 5);
    expect_fail(bs, as, NULL, 3, LR_ENONFINITE, "NaN");
    as[1] = t.as[1];
    float b0[6 * 2];
    for (size_t i = 0; i < 6; i++)
        for (size_t j = 0; j < 2; j++) b0[i * 2 + j] = t.bs[0].data[i * t.bs[0].ld + j];
    b0[5] = -INFINITY;
    bs[0] = lr_cmat_view(b0, 6, 2, 2);
    expect_fail(bs, as, NULL, 3, LR_ENONFINITE, "Inf");
    bs[0] = t.bs[0];
    const float wnan[3] = { 1, NAN, 1 }, winf[3] = { 1, 1, INFINITY };
    expect_fail(bs, as, wnan, 3, LR_ENONFINITE, "weight 1");
    expect_fail(bs, as, winf, 3, LR_ENONFINITE, "weight 2");
    /* every rank 0, no terms, NULLs */
    lr_cmat zb[2] = { lr_cmat_view(big, 6, 0, 0), lr_cmat_view(big, 6, 0, 0) },
           za[2] = { lr_cmat_view(big, 0, 5, 5), lr_cmat_view(big, 0, 5, 5) };
    expect_fail(zb, za, NULL, 2, LR_EINVAL, "rank 0");
    /* an empty matrix: m = 0 (b: 0 x 2) or n = 0 (a: 2 x 0) */
    lr_cmat eb[1] = { lr_cmat_view(big, 0, 2, 2) }, ea[1] = { lr_cmat_view(big, 2, 5, 5) };
    expect_fail(eb, ea, NULL, 1, LR_EINVAL, "empty 0 x 5");
    lr_cmat fb[1] = { lr_cmat_view(big, 6, 2, 2) }, fa[1] = { lr_cmat_view(big, 2, 0, 0) };
    expect_fail(fb, fa, NULL, 1, LR_EINVAL, "empty 6 x 0");
    expect_fail(bs, as, NULL, 0, LR_EINVAL, NULL);
    expect_fail(NULL, as, NULL, 3, LR_EINVAL, NULL);
    expect_fail(bs, NULL, NULL, 3, LR_EINVAL, NULL);
    assert_int_equal(lr_usv_from_factors(NULL, bs, as, NULL, 3, NULL), LR_EINVAL);
    /* NULL data, ld < cols */
    bs[1] = lr_cmat_view(NULL, 6, 3, 3);
    expect_fail(bs, as, NULL, 3, LR_EINVAL, NULL);
    bs[1] = lr_cmat_view(t.bs[1].data, 6, 3, 2);
    expect_fail(bs, as, NULL, 3, LR_EDIM, NULL);
    terms_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_to_four_terms),
        cmocka_unit_test(test_more_rank_than_size),
        cmocka_unit_test(test_zero_rank_and_weights),
        cmocka_unit_test(test_negative_weights),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
