/* rsvd.h — randomized truncated SVD (Halko, Martinsson & Tropp 2011).
 *
 * Rank-r approximation a ≈ u · diag(s) · vt of a: (m,n) by randomized subspace
 * iteration (HMT 2011, Algorithm 4.4 with Algorithm 5.1):
 *   l = r + p;  Ω: (n,l) Gaussian from the caller's lr_rng;
 *   Q = qr(a·Ω);  q times { Q̃ = qr(aᵀ·Q); Q = qr(a·Q̃) };
 *   B = Qᵀ·a: (l,n);  B = Ũ·S·Vᵀ (small thin SVD);  u = Q·Ũ[:, :r], s = S[:r],
 *   vt = Vᵀ[:r, :].
 * Re-orthonormalisation between the power iterations keeps the columns from
 * collapsing onto the leading singular vector in float32 (HMT §4.5). The
 * intermediate ones use shifted Cholesky-QR3 (level-3 BLAS, falls back to
 * Householder on breakdown); the last one, which defines Q, is Householder QR
 * (LAPACK sgeqrf/sorgqr). The work is done on the shorter side:
 * when m < n the same steps run on aᵀ (no copy is made, only the roles of the
 * products change). docs/math.md says more, and what was measured.
 *
 * Cost: (2q+2)·2·m·n·l flops in sgemm plus O((m+n)·l²); memory: a few (m+n)·l
 * float buffers, allocated inside the call. a is not modified.
 * If l exceeds min(m,n) it is clamped to min(m,n) (the range is then exact).
 */
#ifndef LOWRANK_RSVD_H
#define LOWRANK_RSVD_H

#include "lowrank/export.h"
#include <stddef.h>
#include "lowrank/mat.h"
#include "lowrank/rng.h"
#include "lowrank/svd.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    size_t oversample;  /* p, default 10                                           */
    size_t power_iters; /* q, default 4                                            */
} lr_rsvd_opts;

LR_API lr_rsvd_opts lr_rsvd_default_opts(void);

/* a: (m,n) in; u: (m,r); s: (r); vt: (r,n); 1 <= r <= min(m,n).
 * rng supplies the Gaussian test matrix (same seed -> same result for the same
 * OpenBLAS thread count). opts NULL = defaults. */
LR_API lr_status lr_rsvd(lr_cmat a, size_t r, float *s, lr_mat u, lr_mat vt, const lr_rsvd_opts *opts,
                         lr_rng *rng, lr_err *err);

/* Allocates *out (k = r) and fills it by lr_rsvd. On failure *out is empty. */
LR_API lr_status lr_usv_from_rsvd(lr_usv *out, lr_cmat a, size_t r, const lr_rsvd_opts *opts,
                                  lr_rng *rng, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
