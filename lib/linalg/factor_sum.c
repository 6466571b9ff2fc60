/* factor_sum.c — the SVD of Σ w_i·b_i·a_i from the factors: QR of the stacked b's and of the
 * stacked aᵀ's, then the SVD of the K×K core (factor_sum.h has the algebra). */
#include <lapacke.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "lowrank/linalg/factor_sum.h"
#include "lowrank/linalg/blas.h"
#include "base/internal.h"

static lr_status check_terms(size_t *m, size_t *n, size_t *K, const lr_cmat *bs, const lr_cmat *as,
                             const float *w, size_t count, lr_err *err)
{
    if (!bs || !as || count == 0) return lr__fail(err, LR_EINVAL, "factor sum: no terms");
    *m = bs[0].rows, *n = as[0].cols, *K = 0;
    for (size_t i = 0; i < count; i++) {
        lr_status st;
        if ((st = lr_mat_check(bs[i], "factor sum b", err)) || (st = lr_mat_check(as[i], "factor sum a", err)) ||
            (st = lr_mat_check_finite(bs[i], "factor sum b", err)) ||
            (st = lr_mat_check_finite(as[i], "factor sum a", err)))
            return st;
        if (bs[i].rows != *m || as[i].cols != *n || bs[i].cols != as[i].rows)
            return lr__fail(err, LR_EDIM, "factor sum: term %zu is (%zu x %zu)·(%zu x %zu), expected "
                            "(%zu x r)·(r x %zu)", i, bs[i].rows, bs[i].cols, as[i].rows, as[i].cols, *m, *n);
        if (w && !isfinite(w[i])) return lr__fail(err, LR_ENONFINITE, "factor sum: weight %zu is %g", i, (double)w[i]);
        *K += bs[i].cols;
    }
    if (*K == 0) return lr__fail(err, LR_EINVAL, "factor sum: every term has rank 0");
    if (*m == 0 || *n == 0) return lr__fail(err, LR_EINVAL, "factor sum: an empty %zu x %zu matrix", *m, *n);
    if (*m > INT_MAX / 2 || *n > INT_MAX / 2 || *K > INT_MAX / 2)
        return lr__fail(err, LR_ERANGE, "factor sum: sizes exceed LAPACK's 32-bit range");
    return LR_OK;
}

/* x: (rows, K) column-major (ld rows) -> in place, its first kq columns the orthonormal Q,
 * and r: (kq, K) row-major upper trapezoidal, x = Q·r, kq = min(rows, K). Column-major
 * spares LAPACKE's transposed copies: this routine's peak memory is the point of it. */
static lr_status qr_inplace(float *x, size_t rows, size_t K, float *r, lr_err *err)
{
    size_t kq = rows < K ? rows : K;
    lapack_int m = (lapack_int)rows, n = (lapack_int)K, k = (lapack_int)kq, info;
    float q1 = 0, q2 = 0;
    info = LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, m, n, x, m, NULL, &q1, -1);
    if (!info) info = LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, m, k, k, x, m, NULL, &q2, -1);
    size_t lw = (size_t)fmaxf(fmaxf(q1, q2), 1.0f);
    float *tau = malloc((kq + lw) * sizeof *tau);
    if (!tau) return lr__fail(err, LR_ENOMEM, "factor sum: out of memory");
    if (!info) info = LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, m, n, x, m, tau, tau + kq, (lapack_int)lw);
    if (!info) {
        for (size_t i = 0; i < kq; i++)
            for (size_t j = 0; j < K; j++) r[i * K + j] = j >= i ? x[j * rows + i] : 0.0f;
        info = LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, m, k, k, x, m, tau, tau + kq, (lapack_int)lw);
    }
    free(tau);
    if (info) return lr__fail(err, info < 0 ? LR_EINVAL : LR_ENOMEM, "factor sum: QR failed (LAPACK info %d)",
                              (int)info);
    return LR_OK;
}

/* column-major p: (m,K) <- [w_i·b_i], t: (n,K) <- [a_iᵀ] */
static void stack(float *p, float *t, const lr_cmat *bs, const lr_cmat *as, const float *w, size_t count,
                  size_t m, size_t n)
{
    size_t c0 = 0;
    for (size_t i = 0; i < count; i++) {
        size_t r = bs[i].cols;
        float wi = w ? w[i] : 1.0f;
        for (size_t j = 0; j < r; j++) {
            for (size_t row = 0; row < m; row++) p[(c0 + j) * m + row] = wi * bs[i].data[row * bs[i].ld + j];
            memcpy(t + (c0 + j) * n, as[i].data + j * as[i].ld, n * sizeof *t);
        }
        c0 += r;
    }
}

lr_status lr_usv_from_factors(lr_usv *out, const lr_cmat *bs, const lr_cmat *as, const float *w,
                              size_t count, lr_err *err)
{
    if (!out) return lr__fail(err, LR_EINVAL, "factor sum: out is NULL");
    memset(out, 0, sizeof *out);
    size_t m = 0, n = 0, K = 0;
    lr_status st = check_terms(&m, &n, &K, bs, as, w, count, err);
    if (st) return st;
    size_t kp = m < K ? m : K, kt = n < K ? n : K, k = kp < kt ? kp : kt;
    /* p (m·K) and t (n·K), column-major, become Q_p and Q_t; rp (kp·K), rt (kt·K), core (kp·kt) */
    size_t total = (m + n) * K + (kp + kt) * K + kp * kt;
    float *buf = lr__alloc_floats64(total);
    if (!buf) return lr__fail(err, LR_ENOMEM, "factor sum: cannot allocate %zu floats", total);
    float *p = buf, *t = p + m * K, *rp = t + n * K, *rt = rp + kp * K, *core = rt + kt * K;
    stack(p, t, bs, as, w, count, m, n);
    lr_usv c = { 0 };
    if (!(st = qr_inplace(p, m, K, rp, err)) && !(st = qr_inplace(t, n, K, rt, err)))
        st = lr_gemm(lr_mat_view(core, kp, kt, kt), 1.0f, lr_cmat_view(rp, kp, K, K), false,
                     lr_cmat_view(rt, kt, K, K), true, 0.0f, err);
    if (!st) st = lr_usv_from_svd(&c, lr_cmat_view(core, kp, kt, kt), err);
    if (!st) st = lr_usv_init(out, m, n, k, err);
    /* Q_p column-major is Q_pᵀ row-major: u = Q_p·U_c (m,k); vt = V_cᵀ·Q_tᵀ (k,n) */
    if (!st) st = lr_gemm(out->u, 1.0f, lr_cmat_view(p, kp, m, m), true, lr_cm(c.u), false, 0.0f, err);
    if (!st) st = lr_gemm(out->vt, 1.0f, lr_cm(c.vt), false, lr_cmat_view(t, kt, n, n), false, 0.0f, err);
    if (!st) memcpy(out->s, c.s, k * sizeof *c.s);
    else lr_usv_free(out);
    lr_usv_free(&c);
    free(buf);
    return st;
}
