/* test_rank.c — numerical rank with numpy's default tolerance and the caller's. */
#include "lr_test.h"
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include "lowrank/linalg/rank.h"
#include "lowrank/base/rng.h"

static size_t rank_of(lr_cmat a, const lr_rank_opts *o)
{
    size_t r = 999;
    lr_err err = { { 0 } };
    if (lr_rank(&r, NULL, a, o, &err) != LR_OK) fail_msg("lr_rank: %s", err.msg);
    return r;
}

static void test_pinned_cases(void **st)
{
    (void)st;
    float eye[16] = { 0 };
    for (int i = 0; i < 4; i++) eye[i * 5] = 1;
    assert_int_equal(rank_of(lr_cmat_view(eye, 4, 4, 4), NULL), 4);
    eye[2 * 5] = 0; /* eye(4) with a zero on the diagonal */
    assert_int_equal(rank_of(lr_cmat_view(eye, 4, 4, 4), NULL), 3);
    float zeros[15] = { 0 };
    assert_int_equal(rank_of(lr_cmat_view(zeros, 3, 5, 5), NULL), 0);
    float ones[12];
    for (int i = 0; i < 12; i++) ones[i] = 1;
    assert_int_equal(rank_of(lr_cmat_view(ones, 3, 4, 4), NULL), 1);
    /* empty matrices have rank 0 */
    assert_int_equal(rank_of(lr_cmat_view(NULL, 0, 3, 3), NULL), 0);
    assert_int_equal(rank_of(lr_cmat_view(NULL, 3, 0, 0), NULL), 0);
    assert_int_equal(rank_of(lr_cmat_view(NULL, 0, 0, 0), NULL), 0);
}

static void test_tiny_singular_value(void **st)
{
    (void)st;
    /* diag(1, 1e-8): the default tolerance 1·2·eps ≈ 2.4e-7 drops it */
    float a[4] = { 1, 0, 0, 1e-8f };
    lr_cmat A = lr_cmat_view(a, 2, 2, 2);
    size_t r;
    double tol;
    assert_int_equal(lr_rank(&r, &tol, A, NULL, NULL), LR_OK);
    assert_int_equal(r, 1);
    assert_allclose(tol, 2.0 * FLT_EPSILON, 1e-6, 0);
    lr_rank_opts o = lr_rank_opts_default();
    o.kind = LR_TOL_ABS;
    o.tol = 1e-9; /* below 1e-8: counted */
    assert_int_equal(rank_of(A, &o), 2);
    o.tol = 1e-7; /* above: not counted */
    assert_int_equal(rank_of(A, &o), 1);
    o.kind = LR_TOL_REL;
    o.tol = 0.9e-8;
    assert_int_equal(rank_of(A, &o), 2);
    o.tol = 1.1e-8;
    assert_int_equal(rank_of(A, &o), 1);
    /* the same rule on given values; strict comparison: s == tol is not counted */
    float s[3] = { 2, 1e-8f, 0 };
    o.kind = LR_TOL_ABS;
    o.tol = 1e-8f;
    assert_int_equal(lr_rank_from_values(&r, &tol, s, 3, 3, 3, &o, NULL), LR_OK);
    assert_int_equal(r, 1);
    o.tol = 0;
    assert_int_equal(lr_rank_from_values(&r, NULL, s, 3, 3, 3, &o, NULL), LR_OK);
    assert_int_equal(r, 2);
    assert_int_equal(lr_rank_from_values(&r, &tol, s, 3, 30, 3, NULL, NULL), LR_OK);
    assert_allclose(tol, 2.0 * 30 * FLT_EPSILON, 1e-12, 0);
    assert_allclose(lr_rank_default_tol(2.0, 3, 30), 2.0 * 30 * FLT_EPSILON, 1e-12, 0);
}

/* random 40x10 with `dep` columns that are combinations of the others */
static void test_dependent_columns(void **st)
{
    (void)st;
    for (uint64_t seed = 0; seed < 50; seed++)
        for (int dep = 1; dep <= 2; dep++) {
            lr_rng rng;
            lr_rng_seed(&rng, seed);
            float a[400];
            lr_mat A = lr_mat_view(a, 40, 10, 10);
            lr_rng_fill_normal(&rng, A, 0, 1);
            for (int d = 0; d < dep; d++) {
                size_t col = 9 - (size_t)d;
                float c1 = lr_rng_normal(&rng), c2 = lr_rng_normal(&rng);
                for (size_t i = 0; i < 40; i++) a[i * 10 + col] = c1 * a[i * 10 + 0] + c2 * a[i * 10 + 1 + d];
            }
            size_t r = rank_of(lr_cm(A), NULL);
            if (r != (size_t)(10 - dep)) fail_msg("seed %llu, %d dependent: rank %zu", (unsigned long long)seed, dep, r);
        }
}

static void test_bad_input(void **st)
{
    (void)st;
    float a[4] = { 1, 2, 3, NAN };
    size_t r;
    lr_err err;
    assert_int_equal(lr_rank(NULL, NULL, lr_cmat_view(a, 2, 2, 2), NULL, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "rank is NULL");
    assert_int_equal(lr_rank(&r, NULL, lr_cmat_view(a, 2, 2, 2), NULL, &err), LR_ENONFINITE);
    assert_msg_contains(err.msg, "NaN");
    a[3] = -INFINITY; /* the message names the call made, not the SVD inside it */
    assert_int_equal(lr_rank(&r, NULL, lr_cmat_view(a, 2, 2, 2), NULL, &err), LR_ENONFINITE);
    assert_string_equal(err.msg, "lr_rank: a: entry (1,1) is -Inf");
    a[3] = 4;
    assert_int_equal(lr_rank(&r, NULL, lr_cmat_view(a, 2, 2, 1), NULL, &err), LR_EDIM);
    assert_msg_contains(err.msg, "ld 1");
    assert_int_equal(lr_rank(&r, NULL, lr_cmat_view(NULL, 2, 2, 2), NULL, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "NULL");
    assert_int_equal(lr_rank(&r, NULL, lr_cmat_view(a, SIZE_MAX / 4, 8, 8), NULL, &err), LR_ERANGE);
    assert_msg_contains(err.msg, "overflows");
    lr_rank_opts o = { LR_TOL_ABS, -1.0 };
    assert_int_equal(lr_rank(&r, NULL, lr_cmat_view(a, 2, 2, 2), &o, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "tolerance -1");
    o.tol = NAN;
    assert_int_equal(lr_rank(&r, NULL, lr_cmat_view(a, 2, 2, 2), &o, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "finite");
    o.kind = (lr_tol_kind)9;
    o.tol = 1;
    assert_int_equal(lr_rank(&r, NULL, lr_cmat_view(a, 2, 2, 2), &o, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "unknown tolerance kind 9");
    float s[2] = { 1, -1 };
    assert_int_equal(lr_rank_from_values(&r, NULL, s, 2, 2, 2, NULL, &err), LR_ENONFINITE);
    assert_msg_contains(err.msg, "singular value 1");
    assert_int_equal(lr_rank_from_values(&r, NULL, NULL, 2, 2, 2, NULL, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "s is NULL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pinned_cases),
        cmocka_unit_test(test_tiny_singular_value),
        cmocka_unit_test(test_dependent_columns),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
