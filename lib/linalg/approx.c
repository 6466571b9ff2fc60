/* approx.c — measured and Eckart–Young-predicted errors of rank-r approximations.
 *
 * Eckart–Young–Mirsky (1936): for w with singular values s_1 >= s_2 >= ..., the
 * best rank-r approximation (the truncated SVD) has ‖w − w_r‖_F² = Σ_{i>r} s_i²
 * and ‖w − w_r‖_2 = s_{r+1}. The measured side forms the residual explicitly
 * (one gemm) so any b·a, not only SVD factors, can be judged. Sums of squares
 * are accumulated in double; suffix ("tail") sums are added from the smallest
 * value up, so a tail that should be 0 is exactly 0.
 */
#include <math.h>
#include <stdlib.h>
#include "lowrank/linalg/approx.h"
#include "lowrank/linalg/blas.h"
#include "lowrank/linalg/svd.h"
#include "base/internal.h"

static lr_status check_spectrum(const float *s, size_t k, lr_err *err)
{
    if (k && !s) return lr__fail(err, LR_EINVAL, "spectrum: s is NULL (%zu values expected)", k);
    for (size_t i = 0; i < k; i++) {
        if (!isfinite(s[i]) || s[i] < 0)
            return lr__fail(err, LR_ENONFINITE, "spectrum: s[%zu] = %g is not a finite value >= 0", i,
                            (double)s[i]);
        if (i && s[i] > s[i - 1])
            return lr__fail(err, LR_EINVAL, "spectrum: s[%zu] = %g > s[%zu] = %g; values must be non-increasing",
                            i, (double)s[i], i - 1, (double)s[i - 1]);
    }
    return LR_OK;
}

static double sumsq(const float *s, size_t from, size_t k)
{
    double t = 0;
    for (size_t i = k; i > from; i--) t += (double)s[i - 1] * (double)s[i - 1];
    return t;
}

lr_status lr_approx_predict(lr_approx_err *out, const float *s, size_t k, size_t r, lr_err *err)
{
    lr_status st;
    if (!out) return lr__fail(err, LR_EINVAL, "approx: out is NULL");
    if ((st = check_spectrum(s, k, err))) return st;
    if (r > k) r = k;
    double total = sumsq(s, 0, k), tail = sumsq(s, r, k);
    out->fro = sqrt(tail);
    out->spec = r < k ? (double)s[r] : 0.0;
    out->rel_fro = total > 0 ? sqrt(tail / total) : 0.0;
    out->rel_spec = k && s[0] > 0 ? out->spec / (double)s[0] : 0.0;
    return LR_OK;
}

double lr_approx_energy(const float *s, size_t k, size_t r)
{
    if (!s || k == 0) return 1.0;
    if (r > k) r = k;
    double total = sumsq(s, 0, k);
    if (!(total > 0)) return 1.0;
    return 1.0 - sumsq(s, r, k) / total;
}

lr_status lr_approx_rank_for_energy(size_t *r, const float *s, size_t k, double target, lr_err *err)
{
    lr_status st;
    if (!r) return lr__fail(err, LR_EINVAL, "approx: the output rank is NULL");
    if (!(target >= 0 && target <= 1))
        return lr__fail(err, LR_EINVAL, "approx: energy target %g is not in [0, 1]", target);
    if ((st = check_spectrum(s, k, err))) return st;
    double total = sumsq(s, 0, k), tail = 0;
    size_t best = k;
    /* energy(j) = 1 - tail(j)/total falls as j falls: walk down while it holds */
    for (size_t j = k; ; j--) {
        if (j < k) tail += (double)s[j] * (double)s[j];
        double e = total > 0 ? 1.0 - tail / total : 1.0;
        if (e >= target) best = j; else break;
        if (j == 0) break;
    }
    *r = best;
    return LR_OK;
}

lr_status lr_approx_rank_for_error(size_t *r, const float *s, size_t k, lr_approx_kind kind, double target,
                                   lr_err *err)
{
    lr_status st;
    if (!r) return lr__fail(err, LR_EINVAL, "approx: the output rank is NULL");
    if ((unsigned)kind > (unsigned)LR_APPROX_REL_SPEC)
        return lr__fail(err, LR_EINVAL, "approx: unknown error kind %d", (int)kind);
    if (!(target >= 0) || isnan(target))
        return lr__fail(err, LR_EINVAL, "approx: error target %g must be >= 0", target);
    if ((st = check_spectrum(s, k, err))) return st;
    double total = sumsq(s, 0, k), tail = 0;
    size_t best = k;
    for (size_t j = k; ; j--) {
        if (j < k) tail += (double)s[j] * (double)s[j];
        double e;
        switch (kind) {
        case LR_APPROX_FRO: e = sqrt(tail); break;
        case LR_APPROX_SPEC: e = j < k ? s[j] : 0.0; break;
        case LR_APPROX_REL_FRO: e = total > 0 ? sqrt(tail / total) : 0.0; break;
        default: e = j < k && s[0] > 0 ? s[j] / (double)s[0] : 0.0; break;
        }
        if (e <= target) best = j; else break;
        if (j == 0) break;
    }
    *r = best;
    return LR_OK;
}

lr_status lr_approx_measure(lr_approx_err *out, lr_cmat w, lr_cmat b, lr_cmat a, bool with_spectral, lr_err *err)
{
    lr_status st;
    if (!out) return lr__fail(err, LR_EINVAL, "approx: out is NULL");
    if ((st = lr_mat_check(w, "approx w", err)) || (st = lr_mat_check(b, "approx b", err)) ||
        (st = lr_mat_check(a, "approx a", err)))
        return st;
    if (b.rows != w.rows || a.cols != w.cols || b.cols != a.rows)
        return lr__fail(err, LR_EDIM, "approx: w is %zu x %zu but b is %zu x %zu and a is %zu x %zu",
                        w.rows, w.cols, b.rows, b.cols, a.rows, a.cols);
    if ((st = lr_mat_check_finite(w, "approx w", err)) || (st = lr_mat_check_finite(b, "approx b", err)) ||
        (st = lr_mat_check_finite(a, "approx a", err)))
        return st;
    lr_mat e;
    if ((st = lr_mat_init(&e, w.rows, w.cols, err))) return st;
    if ((st = lr_mat_copy(e, w, err))) { lr_mat_free(&e); return st; }
    /* e: (m,n) = w - b·a */
    if ((st = lr_gemm(e, -1.0f, b, false, a, false, 1.0f, err))) { lr_mat_free(&e); return st; }
    double wf = lr_mat_norm_fro(w);
    out->fro = lr_mat_norm_fro(lr_cm(e));
    out->rel_fro = wf > 0 ? out->fro / wf : (out->fro > 0 ? INFINITY : 0.0);
    out->spec = out->rel_spec = NAN;
    size_t k = w.rows < w.cols ? w.rows : w.cols;
    if (with_spectral) {
        float *sv = malloc(2 * (k ? k : 1) * sizeof *sv);
        if (!sv) { lr_mat_free(&e); return lr__fail(err, LR_ENOMEM, "approx: cannot allocate %zu values", 2 * k); }
        st = lr_svd_values(sv, lr_cm(e), NULL, err);
        if (!st) st = lr_svd_values(sv + k, w, NULL, err);
        if (!st) {
            /* a residual with Inf (overflow in w - b·a) is reported by the SVD */
            double es = k ? sv[0] : 0.0, ws = k ? sv[k] : 0.0;
            out->spec = es;
            out->rel_spec = ws > 0 ? es / ws : (es > 0 ? INFINITY : 0.0);
        }
        free(sv);
    }
    lr_mat_free(&e);
    return st;
}
