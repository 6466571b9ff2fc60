/* test_rsvd.c — randomized truncated SVD: within 1.01x of the Eckart–Young
 * optimum on a decaying spectrum, orthonormal factors, reproducible, exact on
 * exactly-low-rank input, and every bad input. */
#include "lr_test.h"
#include <math.h>
#include <stdlib.h>
#include "lowrank/approx.h"
#include "lowrank/rng.h"
#include "lowrank/rsvd.h"
#include "lowrank/svd.h"

/* w: (m,n) = U·diag(σ)·Vᵀ, σ_i = 1/(1+i) (or 0 beyond `rank`), U, V from the
 * SVD of a Gaussian matrix. Returns √Σ_{i>=r} σ_i², the optimal rank-r error. */
static double build(lr_mat w, size_t rank, size_t r, uint64_t seed)
{
    size_t m = w.rows, n = w.cols, k = m < n ? m : n;
    lr_rng rng;
    lr_rng_seed(&rng, seed);
    lr_mat g;
    lr_mat_init(&g, m, n, NULL);
    lr_rng_fill_normal(&rng, g, 0, 1);
    lr_usv f;
    if (lr_usv_from_svd(&f, lr_cm(g), NULL) != LR_OK) fail_msg("svd failed");
    double opt = 0;
    for (size_t p = 0; p < k; p++) {
        double sp = p < rank ? 1.0 / (1.0 + p) : 0.0;
        if (p >= r) opt += sp * sp;
    }
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double t = 0;
            for (size_t p = 0; p < k && p < rank; p++)
                t += (double)f.u.data[i * k + p] / (1.0 + p) * f.vt.data[p * n + j];
            w.data[i * w.ld + j] = (float)t;
        }
    lr_usv_free(&f);
    lr_mat_free(&g);
    return sqrt(opt);
}

static double orth(lr_cmat x, bool cols)
{
    size_t k = cols ? x.cols : x.rows, len = cols ? x.rows : x.cols;
    double e = 0;
    for (size_t p = 0; p < k; p++)
        for (size_t q = 0; q < k; q++) {
            double d = -(double)(p == q);
            for (size_t i = 0; i < len; i++)
                d += cols ? (double)x.data[i * x.ld + p] * x.data[i * x.ld + q]
                          : (double)x.data[p * x.ld + i] * x.data[q * x.ld + i];
            if (fabs(d) > e) e = fabs(d);
        }
    return e;
}

static void check_decaying(size_t m, size_t n, size_t r)
{
    lr_mat w;
    lr_mat_init(&w, m, n, NULL);
    double opt = build(w, (size_t)-1, r, 7 + m);
    lr_rng rng;
    lr_rng_seed(&rng, 42);
    lr_usv f;
    lr_err err = { { 0 } };
    if (lr_usv_from_rsvd(&f, lr_cm(w), r, NULL, &rng, &err) != LR_OK) fail_msg("%s", err.msg);
    double e = lr_test_svd_residual(lr_cm(w), f.s, lr_cm(f.u), lr_cm(f.vt));
    if (!(e <= 1.01 * opt)) fail_msg("%zu x %zu rank %zu: error %.6g > 1.01 x optimal %.6g", m, n, r, e, opt);
    assert_true(orth(lr_cm(f.u), true) < 1e-5);
    assert_true(orth(lr_cm(f.vt), false) < 1e-5);
    for (size_t i = 0; i < r; i++) {
        assert_allclose(f.s[i], 1.0 / (1.0 + i), 2e-2, 0);
        if (i) assert_true(f.s[i] <= f.s[i - 1]);
    }
    lr_usv_free(&f);
    lr_mat_free(&w);
}

static void test_decaying_tall(void **st) { (void)st; check_decaying(300, 160, 12); }
static void test_decaying_wide(void **st) { (void)st; check_decaying(160, 300, 12); }

static void test_exact_low_rank_and_clamp(void **st)
{
    (void)st;
    lr_mat w;
    lr_mat_init(&w, 60, 45, NULL);
    build(w, 5, 5, 99); /* rank exactly 5 */
    lr_rng rng;
    lr_rng_seed(&rng, 1);
    lr_usv f;
    lr_rsvd_opts o = lr_rsvd_default_opts();
    o.power_iters = 0;
    assert_int_equal(lr_usv_from_rsvd(&f, lr_cm(w), 5, &o, &rng, NULL), LR_OK);
    assert_true(lr_test_svd_residual(lr_cm(w), f.s, lr_cm(f.u), lr_cm(f.vt)) < 1e-5 * lr_mat_norm_fro(lr_cm(w)));
    lr_usv_free(&f);
    /* with power iterations the samples are rank-deficient (5 < l = 15): the
     * Cholesky-QR sweeps break down and Householder QR takes over */
    o.power_iters = 3;
    assert_int_equal(lr_usv_from_rsvd(&f, lr_cm(w), 5, &o, &rng, NULL), LR_OK);
    assert_true(lr_test_svd_residual(lr_cm(w), f.s, lr_cm(f.u), lr_cm(f.vt)) < 1e-5 * lr_mat_norm_fro(lr_cm(w)));
    assert_true(orth(lr_cm(f.u), true) < 1e-5);
    lr_usv_free(&f);
    /* the zero matrix: zero values, orthonormal factors all the same */
    lr_mat_fill(w, 0);
    assert_int_equal(lr_usv_from_rsvd(&f, lr_cm(w), 3, NULL, &rng, NULL), LR_OK);
    assert_true(f.s[0] == 0 && f.s[2] == 0);
    assert_true(orth(lr_cm(f.u), true) < 1e-5);
    assert_true(orth(lr_cm(f.vt), false) < 1e-5);
    lr_usv_free(&f);
    /* r + p > min(m,n): the sample is clamped to the whole space; error is optimal */
    lr_mat_free(&w);
    lr_mat_init(&w, 20, 15, NULL);
    double opt = build(w, (size_t)-1, 10, 5);
    assert_int_equal(lr_usv_from_rsvd(&f, lr_cm(w), 10, NULL, &rng, NULL), LR_OK);
    assert_allclose(lr_test_svd_residual(lr_cm(w), f.s, lr_cm(f.u), lr_cm(f.vt)), opt, 1e-3, 1e-6);
    lr_usv_free(&f);
    /* r = min(m,n) */
    assert_int_equal(lr_usv_from_rsvd(&f, lr_cm(w), 15, NULL, &rng, NULL), LR_OK);
    assert_true(lr_test_svd_residual(lr_cm(w), f.s, lr_cm(f.u), lr_cm(f.vt)) < 1e-5 * lr_mat_norm_fro(lr_cm(w)));
    lr_usv_free(&f);
    lr_mat_free(&w);
}

static void test_reproducible(void **st)
{
    (void)st;
    lr_mat w;
    lr_mat_init(&w, 50, 70, NULL);
    build(w, (size_t)-1, 4, 3);
    lr_usv f1, f2;
    lr_rng r1, r2;
    lr_rng_seed(&r1, 2024);
    lr_rng_seed(&r2, 2024);
    assert_int_equal(lr_usv_from_rsvd(&f1, lr_cm(w), 4, NULL, &r1, NULL), LR_OK);
    assert_int_equal(lr_usv_from_rsvd(&f2, lr_cm(w), 4, NULL, &r2, NULL), LR_OK);
    assert_true(lr_mat_equal(lr_cm(f1.u), lr_cm(f2.u)));
    assert_true(lr_mat_equal(lr_cm(f1.vt), lr_cm(f2.vt)));
    assert_memory_equal(f1.s, f2.s, 4 * sizeof(float));
    lr_usv_free(&f1);
    lr_usv_free(&f2);
    lr_mat_free(&w);
}

static void test_bad_input(void **st)
{
    (void)st;
    float a[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 }, s[3], u[9], vt[12];
    lr_cmat A = lr_cmat_view(a, 3, 4, 4);
    lr_mat U = lr_mat_view(u, 3, 2, 2), VT = lr_mat_view(vt, 2, 4, 4);
    lr_rng rng;
    lr_rng_seed(&rng, 0);
    lr_err err;
    assert_int_equal(lr_rsvd(A, 2, s, U, VT, NULL, NULL, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "rng is NULL");
    assert_int_equal(lr_rsvd(A, 0, s, U, VT, NULL, &rng, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "r = 0");
    assert_int_equal(lr_rsvd(A, 4, s, U, VT, NULL, &rng, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "r = 4 exceeds min(3, 4) = 3");
    assert_int_equal(lr_rsvd(A, 2, NULL, U, VT, NULL, &rng, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "s is NULL");
    assert_int_equal(lr_rsvd(A, 2, s, lr_mat_view(u, 3, 3, 3), VT, NULL, &rng, &err), LR_EDIM);
    assert_msg_contains(err.msg, "u is 3 x 3, expected 3 x 2");
    assert_int_equal(lr_rsvd(A, 2, s, U, lr_mat_view(vt, 2, 3, 3), NULL, &rng, &err), LR_EDIM);
    assert_msg_contains(err.msg, "vt is 2 x 3, expected 2 x 4");
    assert_int_equal(lr_rsvd(lr_cmat_view(a, 3, 4, 3), 2, s, U, VT, NULL, &rng, &err), LR_EDIM);
    assert_msg_contains(err.msg, "ld 3 is smaller than cols 4");
    assert_int_equal(lr_rsvd(lr_cmat_view(NULL, 3, 4, 4), 2, s, U, VT, NULL, &rng, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "NULL");
    assert_int_equal(lr_rsvd(lr_cmat_view(a, SIZE_MAX / 2, 4, 4), 2, s, U, VT, NULL, &rng, &err), LR_ERANGE);
    assert_msg_contains(err.msg, "overflows");
    lr_rsvd_opts o = { 10, 100000 };
    assert_int_equal(lr_rsvd(A, 2, s, U, VT, &o, &rng, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "power_iters 100000");
    const float bad[3] = { NAN, INFINITY, -INFINITY };
    for (int i = 0; i < 3; i++) {
        float b[12];
        memcpy(b, a, sizeof b);
        b[11] = bad[i];
        assert_int_equal(lr_rsvd(lr_cmat_view(b, 3, 4, 4), 2, s, U, VT, NULL, &rng, &err), LR_ENONFINITE);
        assert_msg_contains(err.msg, "(2,3)");
    }
    /* finite entries whose products overflow float32 */
    lr_mat big;
    lr_mat_init(&big, 60, 40, NULL);
    lr_mat_fill(big, 3e38f);
    lr_usv f;
    assert_int_equal(lr_usv_from_rsvd(&f, lr_cm(big), 2, NULL, &rng, &err), LR_ENONFINITE);
    assert_msg_contains(err.msg, "overflowed");
    assert_null(f.u.data);
    lr_mat_free(&big);
    assert_int_equal(lr_usv_from_rsvd(&f, A, 9, NULL, &rng, &err), LR_EINVAL);
    assert_null(f.u.data);
    assert_int_equal(lr_usv_from_rsvd(NULL, A, 2, NULL, &rng, &err), LR_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decaying_tall),
        cmocka_unit_test(test_decaying_wide),
        cmocka_unit_test(test_exact_low_rank_and_clamp),
        cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
