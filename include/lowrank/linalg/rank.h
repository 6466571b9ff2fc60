/* rank.h — numerical rank from the singular values.
 *
 * rank(a) = #{ i : s_i > tol } (strictly greater, as numpy.linalg.matrix_rank),
 * where tol is, by the options' kind:
 *   LR_TOL_DEFAULT  tol = s_max · max(m,n) · eps,  eps = FLT_EPSILON = 2^-23
 *                   (numpy's default for a float32 matrix);
 *   LR_TOL_ABS      tol = opts.tol                  (caller's absolute tolerance);
 *   LR_TOL_REL      tol = opts.tol · s_max          (numpy's rtol).
 * The singular values come from a values-only SVD (svd.h).
 */
#ifndef LOWRANK_RANK_H
#define LOWRANK_RANK_H

#include "lowrank/base/export.h"
#include <stddef.h>
#include "lowrank/base/mat.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { LR_TOL_DEFAULT = 0, LR_TOL_ABS, LR_TOL_REL } lr_tol_kind;

typedef struct {
    lr_tol_kind kind; /* default LR_TOL_DEFAULT                                   */
    double tol;       /* absolute or relative tolerance (>= 0, finite); unused by */
                      /* LR_TOL_DEFAULT                                           */
} lr_rank_opts;

LR_API lr_rank_opts lr_rank_opts_default(void);

/* The tolerance numpy uses by default: s_max · max(m,n) · FLT_EPSILON. */
LR_API double lr_rank_default_tol(double s_max, size_t m, size_t n);

/* *rank <- numerical rank of a: (m,n). opts NULL = defaults. If tol_used is not
 * NULL it receives the threshold applied (0 for an empty matrix). */
LR_API lr_status lr_rank(size_t *rank, double *tol_used, lr_cmat a, const lr_rank_opts *opts, lr_err *err);

/* The same rule applied to singular values already computed: s: (k), any order
 * (the maximum is searched), of an (m,n) matrix; k may be 0. opts NULL = defaults. */
LR_API lr_status lr_rank_from_values(size_t *rank, double *tol_used, const float *s, size_t k, size_t m,
                                     size_t n, const lr_rank_opts *opts, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
