/* rank.c — numerical rank: count the singular values above a tolerance.
 *
 * The default tolerance is numpy.linalg.matrix_rank's, s_max · max(m,n) · eps
 * with eps the float32 machine epsilon: singular values below it are
 * indistinguishable from the rounding noise of a float32 SVD (Golub & Van Loan,
 * §5.4.1). The comparison is strict (s_i > tol), as in numpy, so a zero matrix
 * has rank 0 even with tol = 0.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include "lowrank/linalg/rank.h"
#include "lowrank/linalg/svd.h"
#include "base/internal.h"

lr_rank_opts lr_rank_opts_default(void)
{
    lr_rank_opts o = { LR_TOL_DEFAULT, 0.0 };
    return o;
}

double lr_rank_default_tol(double s_max, size_t m, size_t n)
{
    return s_max * (double)(m > n ? m : n) * (double)FLT_EPSILON;
}

lr_status lr_rank_from_values(size_t *rank, double *tol_used, const float *s, size_t k, size_t m, size_t n,
                              const lr_rank_opts *opts, lr_err *err)
{
    lr_rank_opts o = opts ? *opts : lr_rank_opts_default();
    if (!rank) return lr__fail(err, LR_EINVAL, "rank: the output rank is NULL");
    if (k && !s) return lr__fail(err, LR_EINVAL, "rank: s is NULL (%zu values expected)", k);
    if (o.kind != LR_TOL_DEFAULT && o.kind != LR_TOL_ABS && o.kind != LR_TOL_REL)
        return lr__fail(err, LR_EINVAL, "rank: unknown tolerance kind %d", (int)o.kind);
    if (o.kind != LR_TOL_DEFAULT && !(o.tol >= 0 && isfinite(o.tol)))
        return lr__fail(err, LR_EINVAL, "rank: tolerance %g must be finite and >= 0", o.tol);
    double smax = 0;
    for (size_t i = 0; i < k; i++) {
        if (!isfinite(s[i]) || s[i] < 0)
            return lr__fail(err, LR_ENONFINITE, "rank: singular value %zu is %g", i, (double)s[i]);
        if (s[i] > smax) smax = s[i];
    }
    double tol = o.kind == LR_TOL_ABS ? o.tol
               : o.kind == LR_TOL_REL ? o.tol * smax
                                      : lr_rank_default_tol(smax, m, n);
    size_t r = 0;
    for (size_t i = 0; i < k; i++) r += (double)s[i] > tol;
    *rank = r;
    if (tol_used) *tol_used = k ? tol : 0.0;
    return LR_OK;
}

lr_status lr_rank(size_t *rank, double *tol_used, lr_cmat a, const lr_rank_opts *opts, lr_err *err)
{
    lr_status st;
    if (!rank) return lr__fail(err, LR_EINVAL, "lr_rank: the output rank is NULL");
    if ((st = lr_mat_check(a, "lr_rank: a", err)) || (st = lr_mat_check_finite(a, "lr_rank: a", err))) return st;
    size_t k = a.rows < a.cols ? a.rows : a.cols;
    float *s = malloc((k ? k : 1) * sizeof *s);
    if (!s) return lr__fail(err, LR_ENOMEM, "rank: cannot allocate %zu singular values", k);
    st = lr_svd_values(s, a, NULL, err);
    if (!st) st = lr_rank_from_values(rank, tol_used, s, k, a.rows, a.cols, opts, err);
    free(s);
    return st;
}
