/* approx.h — how good is a rank-r approximation: measured and predicted errors.
 *
 * Measured: for w: (m,n) and factors b: (m,r), a: (r,n), the residual
 * E = w − b·a, its Frobenius norm ‖E‖_F, its spectral norm ‖E‖_2 (largest
 * singular value, from a values-only SVD of E), and both relative to w.
 * Predicted (Eckart–Young–Mirsky), from the singular values s_1 >= s_2 >= ...
 * of w: the best rank-r approximation has
 *   ‖E‖_F = √(Σ_{i>r} s_i²),   ‖E‖_2 = s_{r+1}  (0 when r >= k),
 * and captures the energy Σ_{i<=r} s_i² / Σ_i s_i².
 * The functions on spectra are pure: they take s: (k) non-increasing,
 * non-negative, and accumulate in double.
 */
#ifndef LOWRANK_APPROX_H
#define LOWRANK_APPROX_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include <stddef.h>
#include "lowrank/base/mat.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    double fro;      /* ‖w − b·a‖_F                                              */
    double spec;     /* ‖w − b·a‖_2 (NAN when not asked for)                      */
    double rel_fro;  /* fro / ‖w‖_F   (0 when w = 0 and the error is 0)            */
    double rel_spec; /* spec / ‖w‖_2  (NAN when not asked for)                      */
} lr_approx_err;

/* Measured error of b·a against w. with_spectral = true also computes the
 * spectral norms (two values-only SVDs: of the residual and of w). */
LR_API lr_status lr_approx_measure(lr_approx_err *out, lr_cmat w, lr_cmat b, lr_cmat a, bool with_spectral,
                                   lr_err *err);

/* Eckart–Young prediction for rank r (0 <= r; r >= k means exact) from the
 * singular values s: (k) of w. */
LR_API lr_status lr_approx_predict(lr_approx_err *out, const float *s, size_t k, size_t r, lr_err *err);

/* Energy captured by the first r values: Σ_{i<r} s_i² / Σ s_i², in [0,1];
 * 1 for an all-zero spectrum; r is clamped to k. */
LR_API double lr_approx_energy(const float *s, size_t k, size_t r);

/* Smallest r whose captured energy is >= target (0 <= target <= 1). */
LR_API lr_status lr_approx_rank_for_energy(size_t *r, const float *s, size_t k, double target, lr_err *err);

typedef enum {
    LR_APPROX_FRO = 0,  /* absolute Frobenius  √Σ_{i>r} s_i²           */
    LR_APPROX_SPEC,     /* absolute spectral   s_{r+1}                 */
    LR_APPROX_REL_FRO,  /* Frobenius / ‖w‖_F                           */
    LR_APPROX_REL_SPEC  /* spectral / s_1                              */
} lr_approx_kind;

/* Smallest r whose predicted error of the given kind is <= target (>= 0). */
LR_API lr_status lr_approx_rank_for_error(size_t *r, const float *s, size_t k, lr_approx_kind kind, double target,
                                          lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
