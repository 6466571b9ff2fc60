/* factor.h — the rank-r factors of a matrix from its truncated SVD.
 *
 * With w = U·diag(S)·Vᵀ and r <= min(m,n), Eckart–Young makes
 * w_r = U_r·diag(S_r)·V_rᵀ the best rank-r approximation. We write it as b·a:
 *   LR_SPLIT_US        b = U_r·S_r  (m,r),  a = V_rᵀ        (r,n)   — the PyTorch reference's split;
 *   LR_SPLIT_BALANCED  b = U_r·√S_r (m,r),  a = √S_r·V_rᵀ   (r,n)   — equal scale on
 *                      both sides (what LoRA's PiSSA initialisation uses).
 * y = w·x + bias is then approximated by y' = b·(a·x) + bias.
 * r = 0 or r > min(m,n) is LR_EINVAL.
 */
#ifndef LOWRANK_FACTOR_H
#define LOWRANK_FACTOR_H

#include "lowrank/base/export.h"
#include <stddef.h>
#include "lowrank/base/mat.h"
#include "lowrank/linalg/svd.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { LR_SPLIT_US = 0, LR_SPLIT_BALANCED } lr_split;

/* b: (m,r), a: (r,n) <- rank-r factors of w: (m,n), via a full thin SVD of w
 * (svd.h). w is not modified. */
LR_API lr_status lr_factor(lr_mat b, lr_mat a, lr_cmat w, size_t r, lr_split split, lr_err *err);

/* The same from an SVD already computed (lr_usv_from_svd or lr_usv_from_rsvd):
 * uses its first r columns of u, values of s, rows of vt; r <= svd->k. */
LR_API lr_status lr_factor_from_usv(lr_mat b, lr_mat a, const lr_usv *svd, size_t r, lr_split split,
                                    lr_err *err);

/* Allocating convenience: *b: (m,r), *a: (r,n) owned by the caller (lr_mat_free).
 * On failure both are empty. */
LR_API lr_status lr_factor_alloc(lr_mat *b, lr_mat *a, lr_cmat w, size_t r, lr_split split,
                                lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
