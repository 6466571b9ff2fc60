/* blas.c — shape-checked CBLAS gemm/gemv over row-major views. */
#include <cblas.h>
#include "lowrank/linalg/blas.h"
#include "base/internal.h"

/* OpenBLAS extensions (declared in its cblas.h, repeated here for other CBLAS). */
void openblas_set_num_threads(int n);
int openblas_get_num_threads(void);

lr_status lr_gemm(lr_mat c, float alpha, lr_cmat a, bool ta, lr_cmat b, bool tb, float beta,
                  lr_err *err)
{
    lr_status s;
    if ((s = lr_mat_check(lr_cm(c), "gemm C", err)) || (s = lr_mat_check(a, "gemm A", err)) ||
        (s = lr_mat_check(b, "gemm B", err)))
        return s;
    size_t m = ta ? a.cols : a.rows, k = ta ? a.rows : a.cols;
    size_t kb = tb ? b.cols : b.rows, n = tb ? b.rows : b.cols;
    if (k != kb || c.rows != m || c.cols != n)
        return lr__fail(err, LR_EDIM, "gemm: op(A) is %zu x %zu, op(B) is %zu x %zu, C is %zu x %zu",
                        m, k, kb, n, c.rows, c.cols);
    if (m == 0 || n == 0) return LR_OK;
    if (k == 0 || alpha == 0.0f) {
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) {
                float *p = c.data + i * c.ld + j;
                *p = beta == 0.0f ? 0.0f : beta * *p;
            }
        return LR_OK;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (blasint)m, (blasint)n, (blasint)k, alpha, a.data, (blasint)a.ld, b.data,
                (blasint)b.ld, beta, c.data, (blasint)c.ld);
    return LR_OK;
}

lr_status lr_gemv(float *y, float alpha, lr_cmat a, bool ta, const float *x, float beta, lr_err *err)
{
    lr_status s;
    if ((s = lr_mat_check(a, "gemv A", err))) return s;
    size_t m = ta ? a.cols : a.rows, n = ta ? a.rows : a.cols;
    if ((m && !y) || (n && !x)) return lr__fail(err, LR_EINVAL, "gemv: x or y is NULL");
    if (m == 0) return LR_OK;
    if (n == 0 || alpha == 0.0f) {
        for (size_t i = 0; i < m; i++) y[i] = beta == 0.0f ? 0.0f : beta * y[i];
        return LR_OK;
    }
    cblas_sgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, (blasint)a.rows, (blasint)a.cols,
                alpha, a.data, (blasint)a.ld, x, 1, beta, y, 1);
    return LR_OK;
}

void lr_blas_set_threads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }
int lr_blas_get_threads(void) { return openblas_get_num_threads(); }
