/* factor.c — rank-r factors b·a of a matrix from its (truncated) SVD.
 *
 * Eckart–Young: keeping the r largest singular triplets gives the best rank-r
 * approximation in the Frobenius and spectral norms. The seed's split puts the
 * singular values on the left, b = U_r·S_r, a = V_rᵀ; the balanced split puts
 * √S_r on each side, so b and a have the same scale (PiSSA, Meng et al. 2024).
 */
#include <math.h>
#include "lowrank/linalg/factor.h"
#include "base/internal.h"

static lr_status check_r(size_t r, size_t m, size_t n, lr_err *err)
{
    size_t k = m < n ? m : n;
    if (r == 0) return lr__fail(err, LR_EINVAL, "factor: rank r = 0; need 1 <= r <= min(%zu, %zu)", m, n);
    if (r > k)
        return lr__fail(err, LR_EINVAL, "factor: rank r = %zu exceeds min(%zu, %zu) = %zu", r, m, n, k);
    return LR_OK;
}

static lr_status check_out(lr_mat b, lr_mat a, size_t m, size_t n, size_t r, lr_err *err)
{
    lr_status st;
    if ((st = lr_mat_check(lr_cm(b), "factor b", err)) || (st = lr_mat_check(lr_cm(a), "factor a", err)))
        return st;
    if (b.rows != m || b.cols != r)
        return lr__fail(err, LR_EDIM, "factor: b is %zu x %zu, expected %zu x %zu", b.rows, b.cols, m, r);
    if (a.rows != r || a.cols != n)
        return lr__fail(err, LR_EDIM, "factor: a is %zu x %zu, expected %zu x %zu", a.rows, a.cols, r, n);
    return LR_OK;
}

lr_status lr_factor_from_usv(lr_mat b, lr_mat a, const lr_usv *svd, size_t r, lr_split split,
                             lr_err *err)
{
    lr_status st;
    if (!svd) return lr__fail(err, LR_EINVAL, "factor: svd is NULL");
    if (split != LR_SPLIT_US && split != LR_SPLIT_BALANCED)
        return lr__fail(err, LR_EINVAL, "factor: unknown split %d", (int)split);
    const size_t m = svd->m, n = svd->n;
    if ((st = check_r(r, m, n, err))) return st;
    if (r > svd->k)
        return lr__fail(err, LR_EINVAL, "factor: rank r = %zu exceeds the %zu singular triplets given", r,
                        svd->k);
    if (!svd->s || svd->u.rows != m || svd->u.cols != svd->k || svd->vt.rows != svd->k ||
        svd->vt.cols != n)
        return lr__fail(err, LR_EDIM,
                        "factor: svd is inconsistent (u %zu x %zu, vt %zu x %zu, s %s) for m=%zu n=%zu k=%zu",
                        svd->u.rows, svd->u.cols, svd->vt.rows, svd->vt.cols, svd->s ? "set" : "NULL", m,
                        n, svd->k);
    if ((st = lr_mat_check(lr_cm(svd->u), "svd u", err)) || (st = lr_mat_check(lr_cm(svd->vt), "svd vt", err)))
        return st;
    if ((st = check_out(b, a, m, n, r, err))) return st;
    for (size_t j = 0; j < r; j++)
        if (!(svd->s[j] >= 0) || !isfinite(svd->s[j]))
            return lr__fail(err, LR_ENONFINITE, "factor: singular value %zu is %g", j, (double)svd->s[j]);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < r; j++) {
            float sj = split == LR_SPLIT_US ? svd->s[j] : sqrtf(svd->s[j]);
            b.data[i * b.ld + j] = svd->u.data[i * svd->u.ld + j] * sj;
        }
    for (size_t j = 0; j < r; j++) {
        float sj = split == LR_SPLIT_US ? 1.0f : sqrtf(svd->s[j]);
        for (size_t c = 0; c < n; c++) a.data[j * a.ld + c] = svd->vt.data[j * svd->vt.ld + c] * sj;
    }
    return LR_OK;
}

lr_status lr_factor(lr_mat b, lr_mat a, lr_cmat w, size_t r, lr_split split, lr_err *err)
{
    lr_status st;
    lr_usv f;
    if ((st = lr_mat_check(w, "factor w", err))) return st;
    if ((st = check_r(r, w.rows, w.cols, err))) return st;
    if ((st = check_out(b, a, w.rows, w.cols, r, err))) return st;
    if (split != LR_SPLIT_US && split != LR_SPLIT_BALANCED)
        return lr__fail(err, LR_EINVAL, "factor: unknown split %d", (int)split);
    if ((st = lr_usv_from_svd(&f, w, err))) return st;
    st = lr_factor_from_usv(b, a, &f, r, split, err);
    lr_usv_free(&f);
    return st;
}

lr_status lr_factor_alloc(lr_mat *b, lr_mat *a, lr_cmat w, size_t r, lr_split split, lr_err *err)
{
    lr_status st;
    if (!b || !a) return lr__fail(err, LR_EINVAL, "factor: output b or a is NULL");
    *b = (lr_mat){ NULL, 0, 0, 0 };
    *a = (lr_mat){ NULL, 0, 0, 0 };
    if ((st = lr_mat_check(w, "factor w", err))) return st;
    if ((st = check_r(r, w.rows, w.cols, err))) return st;
    if ((st = lr_mat_init(b, w.rows, r, err))) return st;
    if ((st = lr_mat_init(a, r, w.cols, err))) { lr_mat_free(b); return st; }
    if ((st = lr_factor(*b, *a, w, r, split, err))) { lr_mat_free(b); lr_mat_free(a); }
    return st;
}
