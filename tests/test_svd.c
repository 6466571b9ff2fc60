/* test_svd.c — thin and values-only SVD, checked the way LAPACK checks its own
 * drivers (TESTING/EIG/ddrvbd.f): for every matrix type and size,
 *   residual   ‖A − U·S·Vᵀ‖_F / (‖A‖_F · max(m,n) · eps)
 *   orthogonality ‖I − UᵀU‖_F / (m · eps),  ‖I − V·Vᵀ‖_F / (n · eps)
 *   values-only S against the full run's S, / (s_max · max(m,n) · eps)
 * must all be below 50, and S must be non-negative and non-increasing.
 * Both drivers (gesdd, gesvd) run every case. Then every bad input. */
#include "lr_test.h"
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include "lowrank/base/rng.h"
#include "lowrank/linalg/svd.h"

#define THRESH 50.0
static const double EPS = FLT_EPSILON;

enum { T_ZERO, T_IDENTITY, T_RANDOM, T_GRADED, T_CLUSTERED, T_RANKDEF, T_BIG, T_SMALL, T_COUNT };
static const char *type_name[T_COUNT] = { "zero", "identity", "random", "graded", "clustered",
                                          "rank-deficient", "near-overflow", "near-underflow" };

/* q: (rows, k) with orthonormal columns, from Gaussian vectors by modified
 * Gram–Schmidt done twice in double (k <= rows). */
static void random_orthonormal(double *q, size_t rows, size_t k, lr_rng *rng)
{
    for (size_t j = 0; j < k; j++) {
        for (size_t i = 0; i < rows; i++) q[i * k + j] = lr_rng_normal(rng);
        for (int pass = 0; pass < 2; pass++)
            for (size_t p = 0; p < j; p++) {
                double d = 0;
                for (size_t i = 0; i < rows; i++) d += q[i * k + p] * q[i * k + j];
                for (size_t i = 0; i < rows; i++) q[i * k + j] -= d * q[i * k + p];
            }
        double nrm = 0;
        for (size_t i = 0; i < rows; i++) nrm += q[i * k + j] * q[i * k + j];
        nrm = sqrt(nrm);
        for (size_t i = 0; i < rows; i++) q[i * k + j] /= nrm;
    }
}

/* a: (m,n) = U·diag(sig)·Vᵀ with random orthonormal U, V, summed in double. */
static void build_usv(lr_mat a, const double *sig, lr_rng *rng)
{
    size_t m = a.rows, n = a.cols, k = m < n ? m : n;
    double *u = malloc((m * k + 1) * sizeof *u), *v = malloc((n * k + 1) * sizeof *v);
    random_orthonormal(u, m, k, rng);
    random_orthonormal(v, n, k, rng);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double t = 0;
            for (size_t p = 0; p < k; p++) t += u[i * k + p] * sig[p] * v[j * k + p];
            a.data[i * a.ld + j] = (float)t;
        }
    free(u);
    free(v);
}

static void make_matrix(lr_mat a, int type, lr_rng *rng)
{
    size_t m = a.rows, n = a.cols, k = m < n ? m : n;
    double *sig = malloc((k + 1) * sizeof *sig);
    lr_mat_fill(a, 0.0f);
    switch (type) {
    case T_ZERO: break;
    case T_IDENTITY:
        for (size_t i = 0; i < k; i++) a.data[i * a.ld + i] = 1.0f;
        break;
    case T_RANDOM: lr_rng_fill_normal(rng, a, 0.0f, 1.0f); break;
    case T_BIG:   /* entries near 1e37: ‖A‖ close to FLT_MAX / 10 */
    case T_SMALL: /* entries near 1e-36: a few orders above FLT_MIN */
        lr_rng_fill_normal(rng, a, 0.0f, 1.0f);
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) a.data[i * a.ld + j] *= type == T_BIG ? 1e37f : 1e-36f;
        break;
    default:
        for (size_t i = 0; i < k; i++) {
            if (type == T_GRADED) sig[i] = k > 1 ? pow(10.0, -6.0 * (double)i / (double)(k - 1)) : 1.0;
            else if (type == T_CLUSTERED) sig[i] = i < k / 2 ? 1.0 + 1e-6 * (double)i : 1e-3 * (1.0 + 1e-6 * (double)i);
            else sig[i] = i < k / 2 ? (double)(k - i) : 0.0; /* rank k/2 */
        }
        build_usv(a, sig, rng);
    }
    free(sig);
}

/* ‖I − XᵀX‖_F for the columns of x (cols = true) or ‖I − X·Xᵀ‖_F for its rows */
static double orth_err(lr_cmat x, bool cols)
{
    size_t k = cols ? x.cols : x.rows, len = cols ? x.rows : x.cols;
    double e = 0;
    for (size_t p = 0; p < k; p++)
        for (size_t q = 0; q < k; q++) {
            double d = 0;
            for (size_t i = 0; i < len; i++)
                d += cols ? (double)x.data[i * x.ld + p] * x.data[i * x.ld + q]
                          : (double)x.data[p * x.ld + i] * x.data[q * x.ld + i];
            d -= p == q;
            e += d * d;
        }
    return sqrt(e);
}

static double ratio(double num, double den)
{
    if (den > 0) return num / den;
    return num == 0 ? 0.0 : 1.0 / EPS;
}

static void check_one(size_t m, size_t n, int type, lr_svd_driver drv, size_t pad)
{
    size_t k = m < n ? m : n, mx = m > n ? m : n;
    lr_rng rng;
    lr_rng_seed(&rng, 1000 + 31 * m + 7 * n + (uint64_t)type);
    /* padded leading dimensions, to catch any ld mix-up */
    float *abuf = calloc(m * (n + pad) + 1, sizeof(float));
    float *ubuf = calloc(m * (k + pad) + 1, sizeof(float));
    float *vbuf = calloc(k * (n + pad) + 1, sizeof(float));
    float *s = calloc(k + 1, sizeof(float)), *s2 = calloc(k + 1, sizeof(float));
    float *keep = calloc(m * (n + pad) + 1, sizeof(float));
    lr_mat a = lr_mat_view(abuf, m, n, n + pad);
    lr_mat u = lr_mat_view(ubuf, m, k, k + pad), vt = lr_mat_view(vbuf, k, n, n + pad);
    make_matrix(a, type, &rng);
    memcpy(keep, abuf, (m * (n + pad) + 1) * sizeof(float));
    lr_svd_opts o = lr_svd_opts_default();
    o.driver = drv;
    lr_err err = { { 0 } };
    lr_status st = lr_svd(s, u, vt, lr_cm(a), &o, &err);
    if (st != LR_OK) fail_msg("%zu x %zu %s: %s", m, n, type_name[type], err.msg);
    assert_memory_equal(keep, abuf, (m * (n + pad) + 1) * sizeof(float)); /* input untouched */
    double anorm = lr_mat_norm_fro(lr_cm(a));
    double r_res = ratio(lr_test_svd_residual(lr_cm(a), s, lr_cm(u), lr_cm(vt)), anorm * (double)mx * EPS);
    double r_u = m ? orth_err(lr_cm(u), true) / ((double)m * EPS) : 0;
    double r_v = n ? orth_err(lr_cm(vt), false) / ((double)n * EPS) : 0;
    st = lr_svd_values(s2, lr_cm(a), &o, &err);
    if (st != LR_OK) fail_msg("values %zu x %zu %s: %s", m, n, type_name[type], err.msg);
    double dmax = 0;
    for (size_t i = 0; i < k; i++) {
        if (!(s[i] >= 0)) fail_msg("%zu x %zu %s: s[%zu] = %g < 0", m, n, type_name[type], i, (double)s[i]);
        if (i && s[i] > s[i - 1])
            fail_msg("%zu x %zu %s: s[%zu] = %g > s[%zu] = %g", m, n, type_name[type], i, (double)s[i],
                     i - 1, (double)s[i - 1]);
        double d = fabs((double)s[i] - s2[i]);
        if (d > dmax) dmax = d;
    }
    double r_val = ratio(dmax, (k ? s[0] : 0) * (double)mx * EPS);
    if (r_res >= THRESH || r_u >= THRESH || r_v >= THRESH || r_val >= THRESH)
        fail_msg("%s %zu x %zu %s: residual %.3g, U %.3g, V %.3g, values %.3g (limit %g)",
                 drv == LR_SVD_GESDD ? "gesdd" : "gesvd", m, n, type_name[type], r_res, r_u, r_v,
                 r_val, THRESH);
    /* padding of u and vt untouched (ld respected) */
    for (size_t i = 0; i < m; i++)
        for (size_t j = k; j < k + pad; j++) assert_true(ubuf[i * (k + pad) + j] == 0.0f);
    free(abuf); free(ubuf); free(vbuf); free(s); free(s2); free(keep);
}

static const size_t sizes[][2] = { { 0, 0 }, { 0, 3 }, { 3, 0 }, { 1, 1 }, { 1, 2 }, { 2, 1 },
                                   { 10, 16 }, { 16, 10 }, { 30, 40 }, { 40, 30 } };

static void run_all(lr_svd_driver drv)
{
    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++)
        for (int t = 0; t < T_COUNT; t++) check_one(sizes[z][0], sizes[z][1], t, drv, z % 2 ? 3 : 0);
}

static void test_gesdd_all_types_and_sizes(void **st) { (void)st; run_all(LR_SVD_GESDD); }
static void test_gesvd_all_types_and_sizes(void **st) { (void)st; run_all(LR_SVD_GESVD); }

static void test_known_values(void **st)
{
    (void)st;
    /* diag(3, 1) embedded in 2 x 3, permuted: singular values 3, 1 exactly */
    float a[6] = { 0, 1, 0, -3, 0, 0 }, s[2], u[4], vt[6];
    assert_int_equal(lr_svd(s, lr_mat_view(u, 2, 2, 2), lr_mat_view(vt, 2, 3, 3), lr_cmat_view(a, 2, 3, 3), NULL, NULL), LR_OK);
    assert_allclose(s[0], 3.0, 1e-6, 0);
    assert_allclose(s[1], 1.0, 1e-6, 0);
    /* u[:,0] = ±e_1 (the row with -3) */
    assert_allclose(fabs(u[0 * 2 + 0]), 0.0, 0, 1e-6);
    assert_allclose(fabs(u[1 * 2 + 0]), 1.0, 1e-6, 0);
}

static void test_usv_alloc(void **st)
{
    (void)st;
    lr_rng rng;
    lr_rng_seed(&rng, 5);
    lr_mat a;
    lr_usv f;
    assert_int_equal(lr_mat_init(&a, 7, 4, NULL), LR_OK);
    lr_rng_fill_normal(&rng, a, 0, 1);
    assert_int_equal(lr_usv_from_svd(&f, lr_cm(a), NULL), LR_OK);
    assert_int_equal(f.k, 4);
    assert_int_equal(f.u.rows, 7);
    assert_int_equal(f.vt.cols, 4);
    assert_true(lr_test_svd_residual(lr_cm(a), f.s, lr_cm(f.u), lr_cm(f.vt)) < 50 * 7 * EPS * lr_mat_norm_fro(lr_cm(a)));
    lr_usv_free(&f);
    lr_usv_free(&f);   /* twice: no-op */
    lr_usv_free(NULL);
    lr_err err;
    assert_int_equal(lr_usv_init(&f, 3, 4, 5, &err), LR_EDIM);
    assert_msg_contains(err.msg, "k 5");
    /* failure leaves *out empty */
    a.data[3] = NAN;
    assert_int_equal(lr_usv_from_svd(&f, lr_cm(a), &err), LR_ENONFINITE);
    assert_null(f.u.data);
    assert_null(f.s);
    assert_int_equal(lr_usv_from_svd(NULL, lr_cm(a), &err), LR_EINVAL);
    lr_mat_free(&a);
}

static void test_bad_input(void **st)
{
    (void)st;
    float a[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 }, s[3], u[9], vt[12];
    lr_cmat A = lr_cmat_view(a, 3, 4, 4);
    lr_mat U = lr_mat_view(u, 3, 3, 3), VT = lr_mat_view(vt, 3, 4, 4);
    lr_err err;

    assert_int_equal(lr_svd(s, U, VT, lr_cmat_view(NULL, 3, 4, 4), NULL, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "NULL");
    assert_int_equal(lr_svd(NULL, U, VT, A, NULL, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "s is NULL");
    assert_int_equal(lr_svd_values(NULL, A, NULL, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "s is NULL");
    assert_int_equal(lr_svd(s, lr_mat_view(NULL, 3, 3, 3), VT, A, NULL, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "svd u");
    assert_int_equal(lr_svd(s, U, VT, lr_cmat_view(a, 3, 4, 3), NULL, &err), LR_EDIM);
    assert_msg_contains(err.msg, "ld 3 is smaller than cols 4");
    assert_int_equal(lr_svd(s, lr_mat_view(u, 3, 2, 2), VT, A, NULL, &err), LR_EDIM);
    assert_msg_contains(err.msg, "u is 3 x 2, expected 3 x 3");
    assert_int_equal(lr_svd(s, U, lr_mat_view(vt, 4, 3, 3), A, NULL, &err), LR_EDIM);
    assert_msg_contains(err.msg, "vt is 4 x 3, expected 3 x 4");
    assert_int_equal(lr_svd(s, U, lr_mat_view(vt, 3, 4, 2), A, NULL, &err), LR_EDIM);
    assert_msg_contains(err.msg, "svd vt: ld 2");
    lr_svd_opts o = lr_svd_opts_default();
    o.driver = (lr_svd_driver)7;
    assert_int_equal(lr_svd(s, U, VT, A, &o, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "unknown driver 7");

    const float bad[3] = { NAN, INFINITY, -INFINITY };
    const char *names[3] = { "NaN", "+Inf", "-Inf" };
    for (int i = 0; i < 3; i++) {
        float b[12];
        memcpy(b, a, sizeof b);
        b[6] = bad[i];
        assert_int_equal(lr_svd(s, U, VT, lr_cmat_view(b, 3, 4, 4), NULL, &err), LR_ENONFINITE);
        assert_msg_contains(err.msg, names[i]);
        assert_msg_contains(err.msg, "(1,2)");
        assert_int_equal(lr_svd_values(s, lr_cmat_view(b, 3, 4, 4), NULL, &err), LR_ENONFINITE);
        assert_msg_contains(err.msg, names[i]);
    }
    /* size products that overflow size_t, and sizes beyond LAPACK's int */
    assert_int_equal(lr_svd_values(s, lr_cmat_view(a, SIZE_MAX / 2, 4, 4), NULL, &err), LR_ERANGE);
    assert_msg_contains(err.msg, "overflows");
    assert_int_equal(lr_svd_values(s, lr_cmat_view(a, (size_t)3 << 30, 1, 1), NULL, &err), LR_ERANGE);
    assert_msg_contains(err.msg, "32-bit");
    assert_int_equal(lr_svd_values(s, lr_cmat_view(a, 100000, 100000, 100000), NULL, &err), LR_ERANGE);
    assert_msg_contains(err.msg, "32-bit");
    /* a NULL err is fine */
    assert_int_equal(lr_svd(NULL, U, VT, A, NULL, NULL), LR_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gesdd_all_types_and_sizes),
        cmocka_unit_test(test_gesvd_all_types_and_sizes),
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_usv_alloc),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
