/* test_approx.c — Eckart–Young: measured errors equal the predicted ones; pure
 * functions on spectra pinned on small exact cases. */
#include "lr_test.h"
#include <math.h>
#include <stdlib.h>
#include "lowrank/linalg/approx.h"
#include "lowrank/linalg/factor.h"
#include "lowrank/base/rng.h"
#include "lowrank/linalg/svd.h"

static void test_spectrum_functions(void **st)
{
    (void)st;
    const float s[3] = { 3, 2, 1 }; /* Σ s² = 14 */
    lr_approx_err e;
    assert_int_equal(lr_approx_predict(&e, s, 3, 1, NULL), LR_OK);
    assert_allclose(e.fro, sqrt(5.0), 1e-12, 0);
    assert_allclose(e.spec, 2.0, 0, 0);
    assert_allclose(e.rel_fro, sqrt(5.0 / 14.0), 1e-12, 0);
    assert_allclose(e.rel_spec, 2.0 / 3.0, 1e-12, 0);
    assert_int_equal(lr_approx_predict(&e, s, 3, 3, NULL), LR_OK);
    assert_true(e.fro == 0 && e.spec == 0 && e.rel_fro == 0);
    assert_int_equal(lr_approx_predict(&e, s, 3, 0, NULL), LR_OK);
    assert_allclose(e.fro, sqrt(14.0), 1e-12, 0);
    assert_allclose(e.rel_fro, 1.0, 1e-12, 0);
    assert_allclose(lr_approx_energy(s, 3, 0), 0.0, 0, 0);
    assert_allclose(lr_approx_energy(s, 3, 1), 9.0 / 14.0, 1e-12, 0);
    assert_allclose(lr_approx_energy(s, 3, 2), 13.0 / 14.0, 1e-12, 0);
    assert_allclose(lr_approx_energy(s, 3, 9), 1.0, 0, 0);
    const float z[2] = { 0, 0 };
    assert_allclose(lr_approx_energy(z, 2, 0), 1.0, 0, 0);
    size_t r;
    assert_int_equal(lr_approx_rank_for_energy(&r, s, 3, 0.9, NULL), LR_OK);
    assert_int_equal(r, 2);
    assert_int_equal(lr_approx_rank_for_energy(&r, s, 3, 9.0 / 14.0 - 1e-12, NULL), LR_OK);
    assert_int_equal(r, 1);
    assert_int_equal(lr_approx_rank_for_energy(&r, s, 3, 0.0, NULL), LR_OK);
    assert_int_equal(r, 0);
    assert_int_equal(lr_approx_rank_for_energy(&r, s, 3, 1.0, NULL), LR_OK);
    assert_int_equal(r, 3);
    assert_int_equal(lr_approx_rank_for_error(&r, s, 3, LR_APPROX_FRO, 1.0, NULL), LR_OK);
    assert_int_equal(r, 2);
    assert_int_equal(lr_approx_rank_for_error(&r, s, 3, LR_APPROX_FRO, 0.99, NULL), LR_OK);
    assert_int_equal(r, 3);
    assert_int_equal(lr_approx_rank_for_error(&r, s, 3, LR_APPROX_SPEC, 2.5, NULL), LR_OK);
    assert_int_equal(r, 1);
    assert_int_equal(lr_approx_rank_for_error(&r, s, 3, LR_APPROX_REL_SPEC, 0.5, NULL), LR_OK);
    assert_int_equal(r, 2);
    assert_int_equal(lr_approx_rank_for_error(&r, s, 3, LR_APPROX_REL_FRO, 1.0, NULL), LR_OK);
    assert_int_equal(r, 0);
    assert_int_equal(lr_approx_rank_for_error(&r, s, 3, LR_APPROX_REL_FRO, 0.3, NULL), LR_OK);
    assert_int_equal(r, 2); /* sqrt(1/14) = 0.267 */
}

/* w = U·diag(σ)·Vᵀ with σ_i = 1/(1+i); factor at several ranks and compare. */
static void test_eckart_young(void **st)
{
    (void)st;
    lr_rng rng;
    lr_rng_seed(&rng, 11);
    const size_t m = 40, n = 25, k = 25;
    lr_mat w, g;
    lr_mat_init(&w, m, n, NULL);
    lr_mat_init(&g, m, n, NULL);
    lr_rng_fill_normal(&rng, g, 0, 1);
    lr_usv f;
    assert_int_equal(lr_usv_from_svd(&f, lr_cm(g), NULL), LR_OK); /* random orthonormal U, V */
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double t = 0;
            for (size_t p = 0; p < k; p++) t += (double)f.u.data[i * k + p] / (1.0 + p) * f.vt.data[p * n + j];
            w.data[i * n + j] = (float)t;
        }
    float *s = malloc(k * sizeof *s);
    assert_int_equal(lr_svd_values(s, lr_cm(w), NULL, NULL), LR_OK);
    for (size_t r = 1; r <= k; r += 6) {
        lr_mat b, a;
        assert_int_equal(lr_factor_alloc(&b, &a, lr_cm(w), r, LR_SPLIT_US, NULL), LR_OK);
        lr_approx_err got, want;
        assert_int_equal(lr_approx_measure(&got, lr_cm(w), lr_cm(b), lr_cm(a), true, NULL), LR_OK);
        assert_int_equal(lr_approx_predict(&want, s, k, r, NULL), LR_OK);
        assert_allclose(got.fro, want.fro, 1e-4, 1e-6);
        assert_allclose(got.spec, want.spec, 1e-4, 1e-6);
        assert_allclose(got.rel_fro, want.rel_fro, 1e-4, 1e-6);
        assert_allclose(got.rel_spec, want.rel_spec, 1e-4, 1e-6);
        /* and the spectrum we built: σ_{r+1} = 1/(r+1) */
        if (r < k) assert_allclose(want.spec, 1.0 / (1.0 + r), 1e-5, 0);
        lr_mat_free(&b);
        lr_mat_free(&a);
    }
    /* without the spectral part: NAN there */
    lr_approx_err e;
    assert_int_equal(lr_approx_measure(&e, lr_cm(w), lr_cmat_view(NULL, m, 0, 0), lr_cmat_view(NULL, 0, n, n),
                                       false, NULL), LR_OK);
    assert_allclose(e.rel_fro, 1.0, 1e-6, 0);
    assert_true(isnan(e.spec) && isnan(e.rel_spec));
    /* zero w and zero factors: zero error, zero relative error */
    lr_mat_fill(w, 0);
    float zb[40] = { 0 }, za[25] = { 0 };
    assert_int_equal(lr_approx_measure(&e, lr_cm(w), lr_cmat_view(zb, m, 1, 1), lr_cmat_view(za, 1, n, n), true,
                                       NULL), LR_OK);
    assert_true(e.fro == 0 && e.rel_fro == 0 && e.spec == 0 && e.rel_spec == 0);
    free(s);
    lr_usv_free(&f);
    lr_mat_free(&w);
    lr_mat_free(&g);
}

static void test_bad_input(void **st)
{
    (void)st;
    lr_approx_err e;
    lr_err err;
    size_t r;
    const float up[3] = { 1, 2, 3 }, neg[2] = { 1, -1 }, nan_[2] = { NAN, 1 };
    assert_int_equal(lr_approx_predict(&e, up, 3, 1, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "non-increasing");
    assert_int_equal(lr_approx_predict(&e, neg, 2, 1, &err), LR_ENONFINITE);
    assert_msg_contains(err.msg, "s[1]");
    assert_int_equal(lr_approx_predict(&e, nan_, 2, 1, &err), LR_ENONFINITE);
    assert_int_equal(lr_approx_predict(&e, NULL, 2, 1, &err), LR_EINVAL);
    assert_int_equal(lr_approx_predict(NULL, up, 1, 1, &err), LR_EINVAL);
    assert_int_equal(lr_approx_rank_for_energy(&r, up, 1, 1.5, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "energy target 1.5");
    assert_int_equal(lr_approx_rank_for_energy(&r, up, 1, NAN, &err), LR_EINVAL);
    assert_int_equal(lr_approx_rank_for_energy(NULL, up, 1, 0.5, &err), LR_EINVAL);
    assert_int_equal(lr_approx_rank_for_error(&r, up, 1, LR_APPROX_FRO, -1, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "error target -1");
    assert_int_equal(lr_approx_rank_for_error(&r, up, 1, (lr_approx_kind)9, 1, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "unknown error kind 9");
    float w[6] = { 1, 2, 3, 4, 5, 6 }, b[2] = { 1, 1 }, a[3] = { 1, 1, 1 };
    assert_int_equal(lr_approx_measure(&e, lr_cmat_view(w, 2, 3, 3), lr_cmat_view(b, 1, 2, 2),
                                       lr_cmat_view(a, 2, 1, 1), false, &err), LR_EDIM);
    assert_msg_contains(err.msg, "w is 2 x 3 but b is 1 x 2 and a is 2 x 1");
    assert_int_equal(lr_approx_measure(&e, lr_cmat_view(w, 2, 3, 2), lr_cmat_view(b, 2, 1, 1),
                                       lr_cmat_view(a, 1, 3, 3), false, &err), LR_EDIM);
    assert_msg_contains(err.msg, "ld 2");
    b[1] = NAN;
    assert_int_equal(lr_approx_measure(&e, lr_cmat_view(w, 2, 3, 3), lr_cmat_view(b, 2, 1, 1),
                                       lr_cmat_view(a, 1, 3, 3), false, &err), LR_ENONFINITE);
    assert_msg_contains(err.msg, "approx b");
    assert_int_equal(lr_approx_measure(NULL, lr_cmat_view(w, 2, 3, 3), lr_cmat_view(b, 2, 1, 1),
                                       lr_cmat_view(a, 1, 3, 3), false, &err), LR_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spectrum_functions),
        cmocka_unit_test(test_eckart_young),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
