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
    if (*m > INT_MAX / 2 || *n > INT_MAX / 2 || *K > INT_MAX / 2)
        return lr__fail(err, LR_ERANGE, "factor sum: sizes exceed LAPACK's 32-bit range");
    return LR_OK;
}

/* x: (rows, K) row-major -> q: (rows, kq) orthonormal columns, r: (kq, K) upper
 * trapezoidal, x = q·r, kq = min(rows, K). x is overwritten. */
static lr_status qr_thin(float *x, size_t rows, size_t K, float *q, float *r, lr_err *err)
{
    size_t kq = rows < K ? rows : K;
    float *tau = malloc(kq * sizeof *tau);
    if (!tau) return lr__fail(err, LR_ENOMEM, "factor sum: out of memory");
    lapack_int info = LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, (lapack_int)rows, (lapack_int)K, x, (lapack_int)K, tau);
    if (!info) {
        for (size_t i = 0; i < kq; i++)
            for (size_t j = 0; j < K; j++) r[i * K + j] = j >= i ? x[i * K + j] : 0.0f;
        info = LAPACKE_sorgqr(LAPACK_ROW_MAJOR, (lapack_int)rows, (lapack_int)kq, (lapack_int)kq, x,
                              (lapack_int)K, tau);
    }
    free(tau);
    if (info) return lr__fail(err, info < 0 ? LR_EINVAL : LR_ENOMEM, "factor sum: QR failed (LAPACK info %d)",
                              (int)info);
    for (size_t i = 0; i < rows; i++) memcpy(q + i * kq, x + i * K, kq * sizeof *q);
    return LR_OK;
}

/* p: (m,K) <- [w_i·b_i], t: (n,K) <- [a_iᵀ] */
static void stack(float *p, float *t, const lr_cmat *bs, const lr_cmat *as, const float *w, size_t count,
                  size_t m, size_t n, size_t K)
{
    size_t c0 = 0;
    for (size_t i = 0; i < count; i++) {
        size_t r = bs[i].cols;
        float wi = w ? w[i] : 1.0f;
        for (size_t row = 0; row < m; row++)
            for (size_t j = 0; j < r; j++) p[row * K + c0 + j] = wi * bs[i].data[row * bs[i].ld + j];
        for (size_t j = 0; j < r; j++)
            for (size_t col = 0; col < n; col++) t[col * K + c0 + j] = as[i].data[j * as[i].ld + col];
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
    /* p (m·K), t (n·K), qp (m·kp), qt (n·kt), rp (kp·K), rt (kt·K), core (kp·kt) */
    size_t total = (m + n) * K + m * kp + n * kt + (kp + kt) * K + kp * kt;
    float *buf = lr__alloc_floats64(total);
    if (!buf) return lr__fail(err, LR_ENOMEM, "factor sum: cannot allocate %zu floats", total);
    float *p = buf, *t = p + m * K, *qp = t + n * K, *qt = qp + m * kp, *rp = qt + n * kt, *rt = rp + kp * K,
          *core = rt + kt * K;
    stack(p, t, bs, as, w, count, m, n, K);
    lr_usv c = { 0 };
    if (!(st = qr_thin(p, m, K, qp, rp, err)) && !(st = qr_thin(t, n, K, qt, rt, err)))
        st = lr_gemm(lr_mat_view(core, kp, kt, kt), 1.0f, lr_cmat_view(rp, kp, K, K), false,
                     lr_cmat_view(rt, kt, K, K), true, 0.0f, err);
    if (!st) st = lr_usv_from_svd(&c, lr_cmat_view(core, kp, kt, kt), err);
    if (!st) st = lr_usv_init(out, m, n, k, err);
    /* u = qp·U_c (m,k); vt = V_cᵀ·qtᵀ (k,n) */
    if (!st) st = lr_gemm(out->u, 1.0f, lr_cmat_view(qp, m, kp, kp), false, lr_cm(c.u), false, 0.0f, err);
    if (!st) st = lr_gemm(out->vt, 1.0f, lr_cm(c.vt), false, lr_cmat_view(qt, n, kt, kt), true, 0.0f, err);
    if (!st) memcpy(out->s, c.s, k * sizeof *c.s);
    else lr_usv_free(out);
    lr_usv_free(&c);
    free(buf);
    return st;
}
