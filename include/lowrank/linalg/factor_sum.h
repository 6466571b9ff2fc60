/* factor_sum.h — the SVD of a weighted sum of low-rank products, without forming the sum.
 *
 * For Δ = Σ_i w_i·b_i·a_i with b_i: (m, r_i), a_i: (r_i, n) and K = Σ r_i (the LoRA adapters
 * of one layer, say), stack P = [w_1·b_1 | … | w_c·b_c]: (m, K) and T = [a_1ᵀ | … | a_cᵀ]:
 * (n, K), so that Δ = P·Tᵀ. Householder QR gives P = Q_p·R_p and T = Q_t·R_t (LAPACK
 * sgeqrf/sorgqr); then Δ = Q_p·(R_p·R_tᵀ)·Q_tᵀ, and the SVD of the small core
 * R_p·R_tᵀ = U_c·S·V_cᵀ gives Δ = (Q_p·U_c)·S·(Q_t·V_c)ᵀ: an exact thin SVD of Δ of size
 * k = min(m, n, K). Cost O((m+n)·K² + K³) time and (m+n)·K floats, against O(m·n·min(m,n))
 * and m·n for forming Δ and calling LAPACK (peft's add_weighted_adapter with
 * combination_type "svd"). Truncating the result to r triplets (lr_factor_from_usv) is then
 * the optimal rank-r approximation of the sum (Eckart–Young), to rounding.
 */
#ifndef LOWRANK_FACTOR_SUM_H
#define LOWRANK_FACTOR_SUM_H

#include "lowrank/base/export.h"
#include <stddef.h>
#include "lowrank/base/mat.h"
#include "lowrank/base/status.h"
#include "lowrank/linalg/svd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* *out (k = min(m, n, K)) <- the thin SVD of Σ_{i<count} w[i]·bs[i]·as[i]; bs[i]: (m, r_i),
 * as[i]: (r_i, n), m, n >= 1, r_i >= 0 with K = Σ r_i >= 1; w NULL means every weight is 1. Shapes that
 * disagree are LR_EDIM naming the term; NaN/Inf LR_ENONFINITE. On failure *out is empty. */
LR_API lr_status lr_usv_from_factors(lr_usv *out, const lr_cmat *bs, const lr_cmat *as, const float *w,
                                     size_t count, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
