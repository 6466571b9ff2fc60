/* mat.h — float32 row-major matrices with a leading dimension.
 *
 * lr_mat / lr_cmat are views: a pointer, a shape and a row stride (ld >= cols),
 * passed by value, never owning. Element (i,j) lives at data[i*ld + j].
 * lr_mat_init allocates an owning buffer (ld = cols, zero-filled) that the
 * caller releases with lr_mat_free; lr_mat_free on an empty matrix is a no-op.
 */
#ifndef LOWRANK_MAT_H
#define LOWRANK_MAT_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include <stddef.h>
#include "lowrank/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct { float *data; size_t rows, cols, ld; } lr_mat;
typedef struct { const float *data; size_t rows, cols, ld; } lr_cmat;

/* A mutable view seen as const. */
static inline lr_cmat lr_cm(lr_mat m) { lr_cmat c = { m.data, m.rows, m.cols, m.ld }; return c; }
/* Views over caller memory (no allocation, no checks: see lr_mat_check). */
static inline lr_mat lr_mat_view(float *data, size_t rows, size_t cols, size_t ld)
{ lr_mat m = { data, rows, cols, ld }; return m; }
static inline lr_cmat lr_cmat_view(const float *data, size_t rows, size_t cols, size_t ld)
{ lr_cmat m = { data, rows, cols, ld }; return m; }
static inline float *lr_mat_row(lr_mat m, size_t i) { return m.data + i * m.ld; }
static inline float lr_mat_get(lr_cmat m, size_t i, size_t j) { return m.data[i * m.ld + j]; }

/* Checks a view: ld >= cols, data non-NULL when rows*cols > 0, rows*ld fits in
 * size_t. `name` is used in the message ("W: ld 3 smaller than cols 4"). */
LR_API lr_status lr_mat_check(lr_cmat m, const char *name, lr_err *err);
/* LR_ENONFINITE naming the first NaN/Inf entry, else LR_OK. */
LR_API lr_status lr_mat_check_finite(lr_cmat m, const char *name, lr_err *err);

/* Owning allocation: rows x cols, ld = cols, zero-filled. On failure *m is empty. */
LR_API lr_status lr_mat_init(lr_mat *m, size_t rows, size_t cols, lr_err *err);
LR_API void lr_mat_free(lr_mat *m);

/* Sub-block view [r0, r0+rows) x [c0, c0+cols); LR_EDIM if it does not fit. */
LR_API lr_status lr_mat_block(lr_mat m, lr_mat *out, size_t r0, size_t c0, size_t rows,
                              size_t cols, lr_err *err);

/* dst <- src (same shape, any ld). */
LR_API lr_status lr_mat_copy(lr_mat dst, lr_cmat src, lr_err *err);
LR_API void lr_mat_fill(lr_mat m, float v);
/* dst <- src^T; dst must be (src.cols, src.rows). */
LR_API lr_status lr_mat_transpose(lr_mat dst, lr_cmat src, lr_err *err);

/* Comparisons. Shapes must match (otherwise false / +inf). allclose is numpy's
 * rule |a-b| <= atol + rtol*|b|, element-wise; equal is bitwise-exact. */
LR_API bool lr_mat_allclose(lr_cmat a, lr_cmat b, float rtol, float atol);
LR_API bool lr_mat_equal(lr_cmat a, lr_cmat b);
LR_API double lr_mat_max_abs_diff(lr_cmat a, lr_cmat b);

/* Frobenius norm, accumulated in double. */
LR_API double lr_mat_norm_fro(lr_cmat a);

/* Multiplies a and b, returning LR_ERANGE if the product overflows size_t. */
LR_API lr_status lr_size_mul(size_t *out, size_t a, size_t b, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
