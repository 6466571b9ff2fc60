/* svd.h — thin and values-only singular value decomposition (LAPACK sgesdd).
 *
 * For a: (m,n) with k = min(m,n), the thin SVD is a = u · diag(s) · vt with
 * u: (m,k) orthonormal columns, s: (k) non-negative and non-increasing,
 * vt: (k,n) orthonormal rows. The input is never modified: LAPACK works on a
 * private copy. The driver is LAPACK's divide-and-conquer sgesdd; when it
 * reports no convergence (info > 0) the QR-iteration driver sgesvd is tried,
 * unless the options say otherwise.
 *
 * Workspace is allocated inside each call (one copy of a plus LAPACK's own
 * workspace, about m·n + 4k² + 7k floats for the full SVD) and released before
 * returning; nothing is kept between calls.
 *
 * Bad input is rejected before LAPACK sees it: NULL data, ld < cols, shapes
 * that do not fit, sizes above LAPACK's 32-bit int range, NaN and ±Inf
 * (LAPACKE does not catch Inf). Empty matrices (0×n, m×0) are fine: k = 0 and
 * nothing is written.
 */
#ifndef LOWRANK_SVD_H
#define LOWRANK_SVD_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include <stddef.h>
#include "lowrank/base/mat.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LR_SVD_GESDD = 0, /* divide and conquer: fastest for the full thin SVD       */
    LR_SVD_GESVD      /* QR iteration: slower, the classic fallback                */
} lr_svd_driver;

typedef struct {
    lr_svd_driver driver; /* default LR_SVD_GESDD                                 */
    bool fallback;        /* default true: gesdd info > 0 -> retry with gesvd      */
} lr_svd_opts;

LR_API lr_svd_opts lr_svd_opts_default(void);

/* a: (m,n) in; s: (k); u: (m,k); vt: (k,n); k = min(m,n). a is not modified.
 * u and vt may have any ld >= cols. opts NULL = lr_svd_opts_default(). */
LR_API lr_status lr_svd(float *s, lr_mat u, lr_mat vt, lr_cmat a, const lr_svd_opts *opts, lr_err *err);

/* Singular values only, s: (k), non-increasing. Cheaper than the full SVD. opts NULL =
 * lr_svd_opts_default(). */
LR_API lr_status lr_svd_values(float *s, lr_cmat a, const lr_svd_opts *opts, lr_err *err);

/* An owning U, S, Vᵀ triple, as produced by lr_usv_from_svd / lr_usv_from_rsvd
 * (rsvd.h) and consumed by factor.h. u: (m,k); s: (k); vt: (k,n).
 * For a truncated SVD k is the rank asked for, otherwise min(m,n). */
typedef struct {
    lr_mat u;
    float *s;
    lr_mat vt;
    size_t m, n, k;
} lr_usv;

/* Allocates a zero-filled triple of the given sizes (k <= min(m,n)). */
LR_API lr_status lr_usv_init(lr_usv *f, size_t m, size_t n, size_t k, lr_err *err);
/* Releases it; lr_usv_free(NULL) and freeing an empty triple are no-ops. */
LR_API void lr_usv_free(lr_usv *f);
/* Allocates *out (k = min(m,n)) and fills it with the thin SVD of a.
 * On failure *out is empty and needs no free. */
LR_API lr_status lr_usv_from_svd(lr_usv *out, lr_cmat a, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
