/* blas.h — shape-checked wrappers over CBLAS (OpenBLAS) for row-major views.
 *
 * c: (m,n) = alpha * op(a) · op(b) + beta * c, op(x) = x or x^T.
 * Shapes are checked before CBLAS sees them; a mismatch is LR_EDIM with the
 * shapes in the message. Empty products are handled here (CBLAS is not asked
 * to multiply zero-sized matrices).
 */
#ifndef LOWRANK_BLAS_H
#define LOWRANK_BLAS_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include "lowrank/base/mat.h"

#ifdef __cplusplus
extern "C" {
#endif

LR_API lr_status lr_gemm(lr_mat c, float alpha, lr_cmat a, bool trans_a, lr_cmat b, bool trans_b,
                         float beta, lr_err *err);

/* y: (op(a).rows) = alpha * op(a) · x + beta * y; x has op(a).cols entries. */
LR_API lr_status lr_gemv(float *y, float alpha, lr_cmat a, bool trans_a, const float *x,
                         float beta, lr_err *err);

/* Sets the number of threads OpenBLAS uses (n >= 1) and reports the current count. */
LR_API void lr_blas_set_threads(int n);
LR_API int lr_blas_get_threads(void);

#ifdef __cplusplus
}
#endif
#endif
