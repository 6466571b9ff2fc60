/* test_spectrum.c — singular-value spectra (exact and randomized), energies, tails and the
 * ranks they imply, on matrices U·diag(S)·Vᵀ built with known S. */
#include "lr_test.h"
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "lowrank/linalg/spectrum.h"
#include "lowrank/linalg/rank.h"
#include "lowrank/linalg/svd.h"
#include "lowrank/base/rng.h"

/* w: (m,n) <- U·diag(s)·Vᵀ (in double, rounded once) with U, Vᵀ the orthonormal factors of the
 * SVD of a Gaussian matrix; s: (min(m,n)). Caller frees w. */
static lr_mat make_usv(size_t m, size_t n, const double *s, uint64_t seed)
{
    lr_rng rng;
    lr_rng_seed(&rng, seed);
    lr_mat g, w;
    assert_int_equal(lr_mat_init(&g, m, n, NULL), LR_OK);
    assert_int_equal(lr_mat_init(&w, m, n, NULL), LR_OK);
    lr_rng_fill_normal(&rng, g, 0, 1);
    lr_usv f;
    assert_int_equal(lr_usv_from_svd(&f, lr_cm(g), NULL), LR_OK);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double a = 0;
            for (size_t t = 0; t < f.k; t++)
                a += (double)f.u.data[i * f.u.ld + t] * s[t] * f.vt.data[t * f.vt.ld + j];
            w.data[i * w.ld + j] = (float)a;
        }
    lr_usv_free(&f);
    lr_mat_free(&g);
    return w;
}

static double fro2(lr_cmat w)
{
    double e = 0;
    for (size_t i = 0; i < w.rows; i++)
        for (size_t j = 0; j < w.cols; j++) e += (double)w.data[i * w.ld + j] * w.data[i * w.ld + j];
    return e;
}

/* Σ_{i>=r} s_i², summed from the small end as the library does. */
static double tail_of(const float *s, size_t known, size_t r)
{
    double t = 0;
    for (size_t i = known; i > r; i--) t += (double)s[i - 1] * s[i - 1];
    return t;
}

static const double S12[12] = { 10, 8, 5, 3, 2, 1, 0.5, 0.25, 0.1, 0.05, 0.01, 0.001 };

static void check_exact(size_t m, size_t n)
{
    lr_mat w = make_usv(m, n, S12, 1 + m);
    lr_spectrum sp;
    lr_err e;
    lr_spectrum_opts o = lr_spectrum_opts_default();
    o.method = LR_SPECTRUM_EXACT;
    if (lr_spectrum_init(&sp, NULL, lr_cm(w), &o, &e)) fail_msg("%s", e.msg);
    assert_int_equal(sp.m, m);
    assert_int_equal(sp.n, n);
    assert_int_equal(sp.k, 12);
    assert_int_equal(sp.known, 12);
    assert_true(sp.exact);
    double sum = 0;
    for (size_t i = 0; i < 12; i++) {
        assert_allclose(sp.s[i], S12[i], 1e-5, 2e-6 * S12[0]);
        if (i) assert_true(sp.s[i] <= sp.s[i - 1]);
        sum += S12[i] * S12[i];
    }
    /* energy: ‖w‖_F² from the entries, and Σ s² */
    assert_allclose(sp.energy, fro2(lr_cm(w)), 1e-12, 0);
    assert_allclose(sp.energy, sum, 1e-5, 0);
    assert_allclose(sp.captured, sp.energy, 1e-5, 0);
    assert_allclose(sp.captured, tail_of(sp.s, 12, 0), 1e-14, 0);
    /* tails are the sums of the trailing values (not energy minus a head: digits kept) */
    for (size_t r = 0; r <= 12; r++) {
        assert_allclose(lr_spectrum_tail(&sp, r), tail_of(sp.s, 12, r), 1e-13, 0);
        double want = 0;
        for (size_t i = r; i < 12; i++) want += S12[i] * S12[i];
        assert_allclose(lr_spectrum_tail(&sp, r), want, 1e-4, 1e-10 * sum);
    }
    assert_true(lr_spectrum_tail(&sp, 12) == 0);
    assert_true(lr_spectrum_tail(&sp, 100) == 0);
    assert_true(lr_spectrum_tail(NULL, 0) == 0);
    /* the tail at r is what the smallest values hold: 0.001² at r = 11 */
    assert_allclose(lr_spectrum_tail(&sp, 11), 1e-6, 2e-2, 0);
    size_t rk;
    bool at_least;
    lr_spectrum_numerical_rank(&sp, &rk, &at_least);
    assert_int_equal(rk, 12);
    assert_false(at_least);
    lr_spectrum_free(&sp);
    assert_null(sp.s);
    lr_spectrum_free(&sp); /* twice is fine */
    lr_spectrum_free(NULL);
    lr_mat_free(&w);
}

static void test_exact_constructed(void **state)
{
    (void)state;
    check_exact(20, 12);
    check_exact(12, 20);
    check_exact(12, 12);
}

/* the default options on a small matrix: exact (AUTO under exact_max_elems) */
static void test_defaults(void **state)
{
    (void)state;
    lr_spectrum_opts o = lr_spectrum_opts_default();
    assert_int_equal(o.method, LR_SPECTRUM_AUTO);
    assert_int_equal(o.exact_max_elems, 4194304);
    assert_int_equal(o.rank, 256);
    assert_int_equal(o.seed, 0);
    lr_mat w = make_usv(15, 12, S12, 3);
    lr_spectrum sp;
    assert_int_equal(lr_spectrum_init(&sp, NULL, lr_cm(w), NULL, NULL), LR_OK);
    assert_true(sp.exact);
    assert_int_equal(sp.known, 12);
    lr_spectrum_free(&sp);
    lr_mat_free(&w);
}

/* s² = 16, 4, 4, 4, 4 (total 32): energy fractions 0.5, 0.625, 0.75, 0.875, 1 are exact in
 * binary, so the boundaries are sharp. */
static void test_rank_thresholds(void **state)
{
    (void)state;
    const float s[5] = { 4, 2, 2, 2, 2 };
    lr_spectrum sp;
    lr_err e;
    if (lr_spectrum_from_values(&sp, s, 5, 5, 7, 32.0, &e)) fail_msg("%s", e.msg);
    assert_true(sp.exact);
    assert_true(sp.captured == 32.0);
    struct { double energy; size_t r; } en[] = {
        { 0, 0 }, { 1e-12, 1 }, { 0.25, 1 }, { 0.5, 1 }, { 0.5 + 1e-9, 2 }, { 0.625, 2 },
        { 0.625 + 1e-9, 3 }, { 0.75, 3 }, { 0.875, 4 }, { 0.875 + 1e-9, 5 }, { 1, 5 },
    };
    for (size_t i = 0; i < sizeof en / sizeof *en; i++) {
        size_t r = 99;
        bool found = false;
        assert_int_equal(lr_spectrum_rank_for_energy(&sp, &r, &found, en[i].energy, NULL), LR_OK);
        if (r != en[i].r) fail_msg("energy %.12g: rank %zu, expected %zu", en[i].energy, r, en[i].r);
        assert_true(found);
    }
    /* relative error √(tail/energy): tails 32, 16, 12, 8, 4, 0 -> 1, .707, .612, .5, .354, 0 */
    struct { double err; size_t r; } er[] = {
        { 2, 0 }, { 1, 0 }, { 1 - 1e-9, 1 }, { 0.75, 1 }, { 0.7, 2 }, { 0.5, 3 }, { 0.5 - 1e-9, 4 },
        { 0.25, 5 }, { 0, 5 },
    };
    for (size_t i = 0; i < sizeof er / sizeof *er; i++) {
        size_t r = 99;
        bool found = false;
        assert_int_equal(lr_spectrum_rank_for_error(&sp, &r, &found, er[i].err, NULL), LR_OK);
        if (r != er[i].r) fail_msg("error %.12g: rank %zu, expected %zu", er[i].err, r, er[i].r);
        assert_true(found);
    }
    /* bad targets */
    size_t r;
    bool found;
    double bad_e[] = { -0.1, 1.1, NAN, INFINITY };
    for (size_t i = 0; i < 4; i++) {
        e.msg[0] = 0;
        assert_int_equal(lr_spectrum_rank_for_energy(&sp, &r, &found, bad_e[i], &e), LR_EINVAL);
        assert_msg_contains(e.msg, "energy");
    }
    double bad_r[] = { -0.1, NAN, INFINITY };
    for (size_t i = 0; i < 3; i++) {
        e.msg[0] = 0;
        assert_int_equal(lr_spectrum_rank_for_error(&sp, &r, &found, bad_r[i], &e), LR_EINVAL);
        assert_msg_contains(e.msg, "relative error");
    }
    assert_int_equal(lr_spectrum_rank_for_energy(NULL, &r, &found, 0.5, NULL), LR_EINVAL);
    assert_int_equal(lr_spectrum_rank_for_energy(&sp, NULL, &found, 0.5, NULL), LR_EINVAL);
    assert_int_equal(lr_spectrum_rank_for_energy(&sp, &r, NULL, 0.5, NULL), LR_EINVAL);
    assert_int_equal(lr_spectrum_rank_for_error(NULL, &r, &found, 0.5, NULL), LR_EINVAL);
    assert_int_equal(lr_spectrum_rank_for_error(&sp, NULL, &found, 0.5, NULL), LR_EINVAL);
    assert_int_equal(lr_spectrum_rank_for_error(&sp, &r, NULL, 0.5, NULL), LR_EINVAL);
    lr_spectrum_free(&sp);

    /* trailing zeros: energy 1 and error 0 need only the nonzero values */
    const float z[4] = { 2, 1, 0, 0 };
    assert_int_equal(lr_spectrum_from_values(&sp, z, 4, 4, 4, 5.0, NULL), LR_OK);
    assert_int_equal(lr_spectrum_rank_for_energy(&sp, &r, &found, 1, NULL), LR_OK);
    assert_int_equal(r, 2);
    assert_int_equal(lr_spectrum_rank_for_error(&sp, &r, &found, 0, NULL), LR_OK);
    assert_int_equal(r, 2);
    assert_true(found);
    lr_spectrum_free(&sp);
}

/* A constructed matrix: energy 1 is full rank, and the ranks match a direct count. */
static void test_rank_for_energy_constructed(void **state)
{
    (void)state;
    lr_mat w = make_usv(16, 12, S12, 7);
    lr_spectrum sp;
    assert_int_equal(lr_spectrum_init(&sp, NULL, lr_cm(w), NULL, NULL), LR_OK);
    size_t r;
    bool found;
    assert_int_equal(lr_spectrum_rank_for_energy(&sp, &r, &found, 1.0, NULL), LR_OK);
    assert_int_equal(r, 12);
    assert_true(found);
    assert_int_equal(lr_spectrum_rank_for_error(&sp, &r, &found, 0.0, NULL), LR_OK);
    assert_int_equal(r, 12);
    double total = sp.captured;
    for (double f = 0.05; f < 1; f += 0.05) {
        assert_int_equal(lr_spectrum_rank_for_energy(&sp, &r, &found, f, NULL), LR_OK);
        /* smallest r with Σ_{i<r} s² >= f·total, counted directly (tails from the small end) */
        size_t want = 0;
        while (want < 12 && tail_of(sp.s, 12, want) > (1 - f) * total) want++;
        assert_int_equal(r, want);
        assert_true(tail_of(sp.s, 12, r) <= (1 - f) * total);
        assert_true(r == 0 || tail_of(sp.s, 12, r - 1) > (1 - f) * total);
        assert_int_equal(lr_spectrum_rank_for_error(&sp, &r, &found, f, NULL), LR_OK);
        assert_true(sqrt(tail_of(sp.s, 12, r) / total) <= f * (1 + 1e-12));
        assert_true(r == 0 || sqrt(tail_of(sp.s, 12, r - 1) / total) > f);
    }
    lr_spectrum_free(&sp);
    lr_mat_free(&w);
}

static void test_zero_and_empty(void **state)
{
    (void)state;
    float zero[5 * 4] = { 0 };
    lr_spectrum sp;
    assert_int_equal(lr_spectrum_init(&sp, NULL, lr_cmat_view(zero, 5, 4, 4), NULL, NULL), LR_OK);
    assert_true(sp.exact);
    assert_true(sp.energy == 0);
    assert_true(sp.captured == 0);
    size_t r = 9;
    bool found = false, at_least = true;
    assert_int_equal(lr_spectrum_rank_for_energy(&sp, &r, &found, 0.9, NULL), LR_OK);
    assert_int_equal(r, 0);
    assert_true(found);
    assert_int_equal(lr_spectrum_rank_for_energy(&sp, &r, &found, 1, NULL), LR_OK);
    assert_int_equal(r, 0);
    assert_int_equal(lr_spectrum_rank_for_error(&sp, &r, &found, 0, NULL), LR_OK);
    assert_int_equal(r, 0);
    lr_spectrum_numerical_rank(&sp, &r, &at_least);
    assert_int_equal(r, 0);
    assert_false(at_least);
    assert_true(lr_spectrum_tail(&sp, 0) == 0);
    lr_spectrum_free(&sp);
    /* no values at all (a 0 x 6 matrix) */
    assert_int_equal(lr_spectrum_from_values(&sp, NULL, 0, 0, 6, 0, NULL), LR_OK);
    assert_true(sp.exact);
    assert_int_equal(sp.k, 0);
    assert_int_equal(lr_spectrum_rank_for_energy(&sp, &r, &found, 1, NULL), LR_OK);
    assert_int_equal(r, 0);
    assert_true(found);
    lr_spectrum_numerical_rank(&sp, &r, &at_least);
    assert_int_equal(r, 0);
    lr_spectrum_free(&sp);
}

/* numpy's rule: s_i > s_1·max(m,n)·FLT_EPSILON, strictly. */
static void test_numerical_rank(void **state)
{
    (void)state;
    /* rank 5 of 30 x 20, built exactly */
    double s[20] = { 9, 7, 3, 1, 0.5 };
    lr_mat w = make_usv(30, 20, s, 11);
    lr_spectrum sp;
    assert_int_equal(lr_spectrum_init(&sp, NULL, lr_cm(w), NULL, NULL), LR_OK);
    size_t r, want;
    bool at_least;
    lr_spectrum_numerical_rank(&sp, &r, &at_least);
    assert_int_equal(r, 5);
    assert_false(at_least);
    assert_int_equal(lr_rank(&want, NULL, lr_cm(w), NULL, NULL), LR_OK);
    assert_int_equal(r, want);
    /* the rule by hand on the values */
    double tol = sp.s[0] * 30 * (double)FLT_EPSILON;
    size_t count = 0;
    for (size_t i = 0; i < sp.known; i++) count += sp.s[i] > tol;
    assert_int_equal(r, count);
    lr_spectrum_numerical_rank(&sp, NULL, NULL); /* NULL outputs are fine */
    lr_spectrum_free(&sp);
    lr_mat_free(&w);

    /* at the threshold: max(m,n) = 8, s_1 = 1 -> tol = 8·2^-23 = 2^-20 */
    const float v[4] = { 1, 0x1p-19f, 0x1p-20f, 0 };
    assert_int_equal(lr_spectrum_from_values(&sp, v, 4, 8, 4, 1, NULL), LR_OK);
    lr_spectrum_numerical_rank(&sp, &r, &at_least);
    assert_int_equal(r, 2); /* 2^-20 is not > tol */
    assert_false(at_least);
    lr_spectrum_free(&sp);
    const float v2[4] = { 1, 0x1p-19f, 0x1.000002p-20f, 0 };
    assert_int_equal(lr_spectrum_from_values(&sp, v2, 4, 8, 4, 1, NULL), LR_OK);
    lr_spectrum_numerical_rank(&sp, &r, &at_least);
    assert_int_equal(r, 3);
    lr_spectrum_free(&sp);
    /* not exact: every known value above tol -> a lower bound */
    assert_int_equal(lr_spectrum_from_values(&sp, v, 2, 8, 4, 2, NULL), LR_OK);
    assert_false(sp.exact);
    lr_spectrum_numerical_rank(&sp, &r, &at_least);
    assert_int_equal(r, 2);
    assert_true(at_least);
    lr_spectrum_free(&sp);
    assert_int_equal(lr_spectrum_from_values(&sp, v, 3, 8, 4, 2, NULL), LR_OK);
    lr_spectrum_numerical_rank(&sp, &r, &at_least);
    assert_int_equal(r, 2);
    assert_false(at_least); /* a known value at or below tol: the rank is known */
    lr_spectrum_free(&sp);
    lr_spectrum_numerical_rank(NULL, &r, &at_least);
    assert_int_equal(r, 0);
    assert_false(at_least);
}

/* Only the top values known: tails are upper bounds, energy ranks may fall short. */
static void test_partial_values(void **state)
{
    (void)state;
    const float s[2] = { 4, 2 };
    lr_spectrum sp;
    assert_int_equal(lr_spectrum_from_values(&sp, s, 2, 5, 5, 32, NULL), LR_OK);
    assert_false(sp.exact);
    assert_int_equal(sp.known, 2);
    assert_int_equal(sp.k, 5);
    assert_true(sp.captured == 20);
    assert_true(lr_spectrum_tail(&sp, 0) == 32);
    assert_true(lr_spectrum_tail(&sp, 1) == 16);
    assert_true(lr_spectrum_tail(&sp, 2) == 12);
    assert_true(lr_spectrum_tail(&sp, 3) == 12); /* clamped to known */
    assert_true(lr_spectrum_tail(&sp, 5) == 0);
    size_t r;
    bool found;
    assert_int_equal(lr_spectrum_rank_for_energy(&sp, &r, &found, 0.5, NULL), LR_OK);
    assert_int_equal(r, 1);
    assert_true(found);
    assert_int_equal(lr_spectrum_rank_for_energy(&sp, &r, &found, 0.625, NULL), LR_OK);
    assert_int_equal(r, 2);
    assert_true(found);
    assert_int_equal(lr_spectrum_rank_for_energy(&sp, &r, &found, 0.7, NULL), LR_OK);
    assert_int_equal(r, 2);
    assert_false(found);
    assert_int_equal(lr_spectrum_rank_for_energy(&sp, &r, &found, 1, NULL), LR_OK);
    assert_false(found);
    assert_int_equal(lr_spectrum_rank_for_error(&sp, &r, &found, 0.75, NULL), LR_OK); /* 18 */
    assert_int_equal(r, 1);
    assert_true(found);
    assert_int_equal(lr_spectrum_rank_for_error(&sp, &r, &found, 0.5, NULL), LR_OK); /* 8 < 12 */
    assert_int_equal(r, 2);
    assert_false(found);
    lr_spectrum_free(&sp);
}

static void test_from_values_validation(void **state)
{
    (void)state;
    lr_spectrum sp;
    lr_err e;
    const float order[3] = { 1, 2, 0.5f }, neg[3] = { 2, 1, -0.5f }, nan3[3] = { 2, NAN, 1 },
                inf3[3] = { INFINITY, 1, 0 }, ok[3] = { 3, 2, 1 };
    const float *bad[4] = { order, neg, nan3, inf3 };
    for (size_t i = 0; i < 4; i++) {
        e.msg[0] = 0;
        assert_int_equal(lr_spectrum_from_values(&sp, bad[i], 3, 3, 4, 20, &e), LR_EINVAL);
        assert_msg_contains(e.msg, "value");
        assert_null(sp.s);
        assert_int_equal(sp.known, 0);
    }
    e.msg[0] = 0;
    assert_int_equal(lr_spectrum_from_values(&sp, ok, 3, 2, 4, 20, &e), LR_EINVAL); /* known > k */
    assert_msg_contains(e.msg, "3 values for a 2 x 4 matrix");
    assert_null(sp.s);
    assert_int_equal(lr_spectrum_from_values(&sp, NULL, 3, 3, 4, 20, NULL), LR_EINVAL);
    assert_int_equal(lr_spectrum_from_values(&sp, ok, 3, 3, 4, -1, NULL), LR_EINVAL);
    assert_int_equal(lr_spectrum_from_values(&sp, ok, 3, 3, 4, NAN, NULL), LR_EINVAL);
    assert_int_equal(lr_spectrum_from_values(&sp, ok, 3, 3, 4, INFINITY, NULL), LR_EINVAL);
    assert_int_equal(lr_spectrum_from_values(NULL, ok, 3, 3, 4, 14, NULL), LR_EINVAL);
    /* equal values are in order; the values are copied */
    float eq[3] = { 2, 2, 2 };
    assert_int_equal(lr_spectrum_from_values(&sp, eq, 3, 3, 4, 12, NULL), LR_OK);
    eq[0] = 100;
    assert_true(sp.s[0] == 2);
    assert_true(sp.captured == 12);
    assert_true(sp.energy == 12);
    lr_spectrum_free(&sp);
}

static void test_parse_method(void **state)
{
    (void)state;
    const char *names[3] = { "auto", "exact", "randomized" };
    const lr_spectrum_method ms[3] = { LR_SPECTRUM_AUTO, LR_SPECTRUM_EXACT, LR_SPECTRUM_RANDOMIZED };
    for (size_t i = 0; i < 3; i++) {
        lr_spectrum_method m = (lr_spectrum_method)99;
        assert_int_equal(lr_spectrum_parse_method(&m, names[i], NULL), LR_OK);
        assert_int_equal(m, ms[i]);
        assert_string_equal(lr_spectrum_method_name(ms[i]), names[i]);
    }
    assert_null(lr_spectrum_method_name((lr_spectrum_method)3));
    assert_null(lr_spectrum_method_name((lr_spectrum_method)-1));
    lr_err e;
    lr_spectrum_method m = LR_SPECTRUM_EXACT;
    const char *bad[] = { "Exact", "", "rand", "exact " };
    for (size_t i = 0; i < 4; i++) {
        e.msg[0] = 0;
        assert_int_equal(lr_spectrum_parse_method(&m, bad[i], &e), LR_EINVAL);
        assert_msg_contains(e.msg, "expected auto, exact or randomized");
        assert_int_equal(m, LR_SPECTRUM_EXACT); /* unchanged */
    }
    assert_int_equal(lr_spectrum_parse_method(&m, NULL, &e), LR_EINVAL);
    assert_int_equal(lr_spectrum_parse_method(NULL, "exact", &e), LR_EINVAL);
}

/* Randomized: Ritz values are lower bounds, so the energy ranks are upper bounds. */
static void test_randomized(void **state)
{
    (void)state;
    enum { M = 60, N = 40 };
    double s[N];
    for (size_t i = 0; i < N; i++) s[i] = 10.0 * pow(0.8, (double)i) + 0.05;
    lr_mat w = make_usv(M, N, s, 13);
    lr_spectrum ex, rs;
    lr_spectrum_opts o = lr_spectrum_opts_default();
    o.method = LR_SPECTRUM_EXACT;
    assert_int_equal(lr_spectrum_init(&ex, NULL, lr_cm(w), &o, NULL), LR_OK);
    for (size_t variant = 0; variant < 2; variant++) {
        o = lr_spectrum_opts_default();
        o.method = LR_SPECTRUM_RANDOMIZED;
        o.rank = 10;
        o.seed = 5 + variant;
        if (variant) {
            o.rsvd.method = LR_RSVD_SUBSPACE;
            o.rsvd.power_iters = 1;
        }
        lr_err e;
        if (lr_spectrum_init(&rs, NULL, lr_cm(w), &o, &e)) fail_msg("%s", e.msg);
        assert_false(rs.exact);
        assert_int_equal(rs.known, 10);
        assert_int_equal(rs.k, N);
        for (size_t i = 0; i < 10; i++) {
            assert_true(rs.s[i] <= ex.s[i] * (1 + 1e-5));
            assert_true(rs.s[i] > 0.5 * ex.s[i]); /* and not nonsense */
            if (i) assert_true(rs.s[i] <= rs.s[i - 1]);
        }
        assert_true(rs.captured <= rs.energy);
        assert_allclose(rs.energy, ex.energy, 1e-12, 0);
        /* tails are upper bounds of the exact ones */
        for (size_t r = 0; r <= 10; r++)
            assert_true(lr_spectrum_tail(&rs, r) >= lr_spectrum_tail(&ex, r) - 1e-5 * ex.energy);
        for (double f = 0.1; f < 0.95; f += 0.1) {
            size_t rr, re;
            bool fr, fe;
            assert_int_equal(lr_spectrum_rank_for_energy(&rs, &rr, &fr, f, NULL), LR_OK);
            assert_int_equal(lr_spectrum_rank_for_energy(&ex, &re, &fe, f, NULL), LR_OK);
            assert_true(fe);
            if (fr) assert_true(rr >= re);
            else assert_int_equal(rr, 10);
        }
        /* the 10 values cannot reach all the energy nor a 1% error: 30 values of >= 0.05 remain */
        size_t r;
        bool found = true;
        assert_int_equal(lr_spectrum_rank_for_energy(&rs, &r, &found, 1.0, NULL), LR_OK);
        assert_false(found);
        assert_int_equal(r, 10);
        found = true;
        assert_int_equal(lr_spectrum_rank_for_error(&rs, &r, &found, 0.01, NULL), LR_OK);
        assert_false(found);
        assert_int_equal(r, 10);
        bool at_least = false;
        lr_spectrum_numerical_rank(&rs, &r, &at_least);
        assert_int_equal(r, 10);
        assert_true(at_least);
        lr_spectrum_free(&rs);
    }
    /* with vectors: vec->k = known, orthonormal columns of u */
    o = lr_spectrum_opts_default();
    o.method = LR_SPECTRUM_RANDOMIZED;
    o.rank = 6;
    lr_usv vec;
    assert_int_equal(lr_spectrum_init(&rs, &vec, lr_cm(w), &o, NULL), LR_OK);
    assert_int_equal(vec.k, 6);
    assert_int_equal(rs.known, 6);
    assert_memory_equal(vec.s, rs.s, 6 * sizeof(float));
    for (size_t a = 0; a < 6; a++)
        for (size_t b = 0; b < 6; b++) {
            double d = 0;
            for (size_t i = 0; i < M; i++) d += (double)vec.u.data[i * vec.u.ld + a] * vec.u.data[i * vec.u.ld + b];
            assert_allclose(d, a == b, 0, 1e-5);
        }
    lr_usv_free(&vec);
    lr_spectrum_free(&rs);
    /* the same seed gives the same values */
    lr_spectrum r2;
    assert_int_equal(lr_spectrum_init(&rs, NULL, lr_cm(w), &o, NULL), LR_OK);
    assert_int_equal(lr_spectrum_init(&r2, NULL, lr_cm(w), &o, NULL), LR_OK);
    assert_memory_equal(rs.s, r2.s, 6 * sizeof(float));
    lr_spectrum_free(&rs);
    lr_spectrum_free(&r2);
    /* asking for every value (rank >= k) goes exact */
    o.rank = 1000;
    assert_int_equal(lr_spectrum_init(&rs, NULL, lr_cm(w), &o, NULL), LR_OK);
    assert_true(rs.exact);
    assert_int_equal(rs.known, N);
    lr_spectrum_free(&rs);
    /* rank 0 is refused */
    o.rank = 0;
    lr_err e;
    e.msg[0] = 0;
    assert_int_equal(lr_spectrum_init(&rs, NULL, lr_cm(w), &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "rank 0");
    /* AUTO: exact up to exact_max_elems, randomized above */
    o = lr_spectrum_opts_default();
    o.rank = 8;
    o.exact_max_elems = M * N;
    assert_int_equal(lr_spectrum_init(&rs, NULL, lr_cm(w), &o, NULL), LR_OK);
    assert_true(rs.exact);
    assert_int_equal(rs.known, N);
    lr_spectrum_free(&rs);
    o.exact_max_elems = M * N - 1;
    assert_int_equal(lr_spectrum_init(&rs, NULL, lr_cm(w), &o, NULL), LR_OK);
    assert_false(rs.exact);
    assert_int_equal(rs.known, 8);
    lr_spectrum_free(&rs);
    lr_spectrum_free(&ex);
    lr_mat_free(&w);
}

/* vec: the thin SVD when exact, u·diag(s)·vt = w, with the same values as the spectrum. */
static void test_vectors_exact(void **state)
{
    (void)state;
    lr_mat w = make_usv(14, 9, S12, 17);
    lr_spectrum sp;
    lr_usv vec;
    lr_spectrum_opts o = lr_spectrum_opts_default();
    o.method = LR_SPECTRUM_EXACT;
    assert_int_equal(lr_spectrum_init(&sp, &vec, lr_cm(w), &o, NULL), LR_OK);
    assert_int_equal(vec.k, 9);
    assert_int_equal(vec.m, 14);
    assert_int_equal(vec.n, 9);
    assert_true(sp.exact);
    assert_memory_equal(vec.s, sp.s, 9 * sizeof(float));
    double res = lr_test_svd_residual(lr_cm(w), vec.s, lr_cm(vec.u), lr_cm(vec.vt));
    assert_true(res <= 1e-5 * sqrt(sp.energy));
    for (size_t i = 0; i < 9; i++) assert_allclose(sp.s[i], S12[i], 1e-5, 2e-6 * S12[0]);
    /* values-only and with-vectors agree */
    lr_spectrum v2;
    assert_int_equal(lr_spectrum_init(&v2, NULL, lr_cm(w), &o, NULL), LR_OK);
    for (size_t i = 0; i < 9; i++) assert_allclose(v2.s[i], sp.s[i], 1e-5, 1e-6 * sp.s[0]);
    assert_true(v2.energy == sp.energy);
    lr_spectrum_free(&v2);
    lr_usv_free(&vec);
    lr_spectrum_free(&sp);
    lr_mat_free(&w);
}

static void test_bad_input(void **state)
{
    (void)state;
    float a[12];
    for (size_t i = 0; i < 12; i++) a[i] = (float)i;
    lr_spectrum sp;
    lr_usv vec;
    lr_err e;
    for (int which = 0; which < 2; which++) {
        a[5] = which ? INFINITY : NAN;
        for (int method = 0; method < 3; method++) {
            lr_spectrum_opts o = lr_spectrum_opts_default();
            o.method = (lr_spectrum_method)method;
            o.rank = 2;
            memset(&sp, 0xab, sizeof sp);
            memset(&vec, 0xab, sizeof vec);
            e.msg[0] = 0;
            assert_int_equal(lr_spectrum_init(&sp, &vec, lr_cmat_view(a, 4, 3, 3), &o, &e), LR_ENONFINITE);
            assert_msg_contains(e.msg, "spectrum w");
            assert_null(sp.s);
            assert_int_equal(sp.known, 0);
            assert_null(vec.s);
            assert_null(vec.u.data);
        }
    }
    a[5] = 1;
    assert_int_equal(lr_spectrum_init(NULL, NULL, lr_cmat_view(a, 4, 3, 3), NULL, NULL), LR_EINVAL);
    assert_int_equal(lr_spectrum_init(&sp, NULL, lr_cmat_view(NULL, 4, 3, 3), NULL, NULL), LR_EINVAL);
    assert_int_equal(lr_spectrum_init(&sp, NULL, lr_cmat_view(a, 4, 3, 2), NULL, NULL), LR_EDIM); /* ld < cols */
    lr_spectrum_opts o = lr_spectrum_opts_default();
    o.method = (lr_spectrum_method)7;
    e.msg[0] = 0;
    assert_int_equal(lr_spectrum_init(&sp, NULL, lr_cmat_view(a, 4, 3, 3), &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "unknown method");
    assert_null(sp.s);
}

/* ---- lr_spectrum_init_rows: the same from a row source ---- */

/* A row source over a matrix in memory; counts calls and rows, fails on call fail_call. */
typedef struct {
    lr_cmat a;
    size_t calls, rows_read, max_k, fail_call;
    lr_status fail_status;
} rows_ctx;

static lr_status read_rows_cb(void *ctx, float *dst, size_t r0, size_t k, lr_err *err)
{
    rows_ctx *c = ctx;
    c->calls++;
    assert_true(k >= 1 && r0 < c->a.rows && k <= c->a.rows - r0);
    if (c->calls == c->fail_call) {
        if (err) snprintf(err->msg, sizeof err->msg, "reader: rows %zu..%zu unreadable", r0, r0 + k);
        return c->fail_status;
    }
    for (size_t i = 0; i < k; i++) memcpy(dst + i * c->a.cols, c->a.data + (r0 + i) * c->a.ld, c->a.cols * sizeof *dst);
    c->rows_read += k;
    if (k > c->max_k) c->max_k = k;
    return LR_OK;
}

static lr_rows rows_of(rows_ctx *c, lr_cmat a)
{
    *c = (rows_ctx){ a, 0, 0, 0, 0, LR_EIO };
    lr_rows r = { a.rows, a.cols, read_rows_cb, c };
    return r;
}

static void assert_same_shape(const lr_spectrum *a, const lr_spectrum *b)
{
    assert_int_equal(a->m, b->m);
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->k, b->k);
    assert_int_equal(a->known, b->known);
    assert_int_equal(a->exact, b->exact);
}

/* Randomized route: the values lr_spectrum_init finds on the same matrix with the same options
 * (within 1e-4: the products are summed in another order), the same energy, and so the same
 * tails and ranks. Both orientations, both rsvd methods, the default block (rank/2) and a set
 * one. */
static void test_init_rows_randomized(void **state)
{
    (void)state;
    for (int wide = 0; wide < 2; wide++) {
        const size_t M = wide ? 40 : 70, N = wide ? 70 : 40;
        double s[40];
        for (size_t i = 0; i < 40; i++) s[i] = 10.0 * pow(0.8, (double)i) + 0.05;
        lr_mat w = make_usv(M, N, s, 19 + (uint64_t)wide);
        for (int variant = 0; variant < 3; variant++) {
            lr_spectrum_opts o = lr_spectrum_opts_default();
            o.method = variant == 2 ? LR_SPECTRUM_AUTO : LR_SPECTRUM_RANDOMIZED;
            o.rank = 10;
            o.seed = 3 + (uint64_t)variant;
            if (variant == 1) {
                o.rsvd.method = LR_RSVD_SUBSPACE;
                o.rsvd.power_iters = 2;
            }
            if (variant == 2) { /* AUTO over its limit: randomized, with a set block */
                o.exact_max_elems = M * N - 1;
                o.rsvd.block = 10;
                o.rsvd.krylov_depth = 2;
            }
            lr_spectrum a, b;
            lr_err e = { { 0 } };
            if (lr_spectrum_init(&a, NULL, lr_cm(w), &o, &e)) fail_msg("%s", e.msg);
            rows_ctx c;
            lr_rows src = rows_of(&c, lr_cm(w));
            memset(&b, 0xab, sizeof b);
            if (lr_spectrum_init_rows(&b, &src, &o, &e)) fail_msg("variant %d: %s", variant, e.msg);
            assert_same_shape(&a, &b);
            assert_false(b.exact);
            assert_int_equal(b.known, 10);
            for (size_t i = 0; i < 10; i++) {
                assert_allclose(b.s[i], a.s[i], 1e-4, 1e-6 * a.s[0]);
                if (i) assert_true(b.s[i] <= b.s[i - 1]);
            }
            assert_allclose(b.energy, a.energy, 1e-6, 0);
            assert_allclose(b.energy, fro2(lr_cm(w)), 1e-6, 0);
            assert_allclose(b.captured, a.captured, 1e-4, 0);
            assert_true(b.captured <= b.energy);
            for (size_t r = 0; r <= 10; r++)
                assert_allclose(lr_spectrum_tail(&b, r), lr_spectrum_tail(&a, r), 1e-4, 1e-6 * a.energy);
            /* every read in range (checked by the reader), and whole passes over the rows */
            assert_true(c.calls >= 3);
            assert_int_equal(c.rows_read % M, 0);
            lr_spectrum_free(&a);
            lr_spectrum_free(&b);
            assert_null(b.s);
        }
        lr_mat_free(&w);
    }
}

/* Exact route (EXACT, AUTO on a small matrix, a rank reaching min(m, n)): w read whole, once,
 * and lr_spectrum_init's result exactly. */
static void test_init_rows_exact(void **state)
{
    (void)state;
    for (int wide = 0; wide < 2; wide++) {
        lr_mat w = make_usv(wide ? 12 : 20, wide ? 20 : 12, S12, 23 + (uint64_t)wide);
        for (int variant = 0; variant < 4; variant++) {
            lr_spectrum_opts o = lr_spectrum_opts_default(), *op = &o;
            if (variant == 0) o.method = LR_SPECTRUM_EXACT;
            if (variant == 1) op = NULL; /* defaults: AUTO, far under the limit */
            if (variant == 2) o.exact_max_elems = w.rows * w.cols; /* AUTO at the limit */
            if (variant == 3) {
                o.method = LR_SPECTRUM_RANDOMIZED;
                o.rank = 12; /* every value */
            }
            lr_spectrum a, b;
            lr_err e = { { 0 } };
            assert_int_equal(lr_spectrum_init(&a, NULL, lr_cm(w), op, &e), LR_OK);
            rows_ctx c;
            lr_rows src = rows_of(&c, lr_cm(w));
            if (lr_spectrum_init_rows(&b, &src, op, &e)) fail_msg("variant %d: %s", variant, e.msg);
            assert_same_shape(&a, &b);
            assert_true(b.exact);
            assert_int_equal(b.known, 12);
            assert_memory_equal(b.s, a.s, 12 * sizeof(float));
            assert_true(b.energy == a.energy);
            assert_true(b.captured == a.captured);
            for (size_t i = 0; i < 12; i++) assert_allclose(b.s[i], S12[i], 1e-5, 2e-6 * S12[0]);
            assert_int_equal(c.calls, 1);
            assert_int_equal(c.rows_read, w.rows);
            lr_spectrum_free(&a);
            lr_spectrum_free(&b);
        }
        lr_mat_free(&w);
    }
}

/* A failing reader: its status and message, on either route and at any read; *sp empty. */
static void test_init_rows_errors(void **state)
{
    (void)state;
    double s20[20];
    for (size_t i = 0; i < 20; i++) s20[i] = 5.0 / (1.0 + (double)i);
    lr_mat w = make_usv(30, 20, s20, 29);
    lr_spectrum sp;
    lr_err e;
    for (int route = 0; route < 2; route++) {
        lr_spectrum_opts o = lr_spectrum_opts_default();
        o.method = route ? LR_SPECTRUM_RANDOMIZED : LR_SPECTRUM_EXACT;
        o.rank = 4;
        rows_ctx c;
        lr_rows src = rows_of(&c, lr_cm(w));
        assert_int_equal(lr_spectrum_init_rows(&sp, &src, &o, NULL), LR_OK);
        size_t calls = c.calls;
        lr_spectrum_free(&sp);
        assert_int_equal(calls, route ? 9 : 1); /* randomized: 8 products and the energy */
        for (size_t at = 1; at <= calls; at++) {
            src = rows_of(&c, lr_cm(w));
            c.fail_call = at;
            c.fail_status = at % 2 ? LR_EIO : LR_EFORMAT;
            memset(&sp, 0xab, sizeof sp);
            e.msg[0] = 0;
            assert_int_equal(lr_spectrum_init_rows(&sp, &src, &o, &e), c.fail_status);
            assert_string_equal(e.msg, "reader: rows 0..30 unreadable");
            assert_null(sp.s);
            assert_int_equal(sp.known, 0);
            assert_int_equal(c.calls, at);
            lr_spectrum_free(&sp);
        }
    }
    /* bad arguments */
    rows_ctx c;
    lr_rows src = rows_of(&c, lr_cm(w));
    assert_int_equal(lr_spectrum_init_rows(NULL, &src, NULL, NULL), LR_EINVAL);
    assert_int_equal(lr_spectrum_init_rows(&sp, NULL, NULL, NULL), LR_EINVAL);
    lr_rows noread = src;
    noread.read = NULL;
    assert_int_equal(lr_spectrum_init_rows(&sp, &noread, NULL, NULL), LR_EINVAL);
    lr_spectrum_opts o = lr_spectrum_opts_default();
    o.method = (lr_spectrum_method)7;
    e.msg[0] = 0;
    assert_int_equal(lr_spectrum_init_rows(&sp, &src, &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "unknown method");
    assert_null(sp.s);
    o = lr_spectrum_opts_default();
    o.method = LR_SPECTRUM_RANDOMIZED;
    o.rank = 4;
    o.rsvd.krylov_depth = 5000;
    e.msg[0] = 0;
    assert_int_equal(lr_spectrum_init_rows(&sp, &src, &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "krylov_depth");
    assert_null(sp.s);
    assert_int_equal(c.calls, 0);
    /* randomized rank 0 is refused, as by lr_spectrum_init */
    o.rsvd = lr_rsvd_opts_default();
    o.rank = 0;
    e.msg[0] = 0;
    assert_int_equal(lr_spectrum_init_rows(&sp, &src, &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "rank 0");
    assert_null(sp.s);
    /* the exact route checks the entries (lr_spectrum_init does) */
    w.data[7] = NAN;
    o = lr_spectrum_opts_default();
    e.msg[0] = 0;
    assert_int_equal(lr_spectrum_init_rows(&sp, &src, &o, &e), LR_ENONFINITE);
    assert_null(sp.s);
    lr_mat_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_constructed),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_rank_thresholds),
        cmocka_unit_test(test_rank_for_energy_constructed),
        cmocka_unit_test(test_zero_and_empty),
        cmocka_unit_test(test_numerical_rank),
        cmocka_unit_test(test_partial_values),
        cmocka_unit_test(test_from_values_validation),
        cmocka_unit_test(test_parse_method),
        cmocka_unit_test(test_randomized),
        cmocka_unit_test(test_vectors_exact),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_init_rows_randomized),
        cmocka_unit_test(test_init_rows_exact),
        cmocka_unit_test(test_init_rows_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
