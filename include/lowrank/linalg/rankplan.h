/* rankplan.h — choosing a rank for each of several matrices: by a fixed rank, an energy to
 * keep, a relative error to stay under, or a parameter budget shared by all of them.
 *
 * Layer l is w_l: (m_l, n_l) with spectrum sp[l] (spectrum.h). Factored at rank r it costs
 * r·(m+n) parameters (and as many multiply-adds per input row, cost.h), dense m·n; by
 * Eckart–Young its best squared Frobenius error is tail_l(r) = Σ_{i>=r} s_i². A rank at which
 * factoring no longer saves (r above the break-even rank, r·(m+n) >= m·n) keeps the layer
 * dense, at error 0. Every factored layer keeps rank >= 1.
 *
 * LR_PLAN_BUDGET minimises Σ_l tail_l(r_l) subject to Σ_l cost_l <= budget · Σ_l m_l·n_l.
 * Each layer's next rank buys s_r² of error for m+n parameters, and s_r² does not grow with r,
 * so the greedy rule — always take the step with the largest error removed per parameter that
 * still fits — is marginal analysis for a separable concave problem (Fox 1966): up to the
 * first step that does not fit, it is the Lagrangian solution and so exactly optimal for the
 * budget it spends (Everett 1963); it then goes on with the steps that still fit. Rather
 * than quote a bound, the plan computes a certificate: for any λ >= 0, weak duality gives
 *     max kept energy <= λ·budget + Σ_l max_options (kept_l − λ·cost_l),
 * minimised over λ by a convex search; `gap` is that bound minus the energy the plan keeps,
 * so the plan's total error is within `gap` of the optimum (typically 0 to a few 1e-4 of the
 * energy). The option "dense" (cost m·n, error 0) is part of both.
 */
#ifndef LOWRANK_RANKPLAN_H
#define LOWRANK_RANKPLAN_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lowrank/base/status.h"
#include "lowrank/linalg/spectrum.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { LR_PLAN_RANK = 0, LR_PLAN_ENERGY, LR_PLAN_ERROR, LR_PLAN_BUDGET } lr_plan_kind;

typedef struct {
    lr_plan_kind kind; /* default LR_PLAN_RANK                                           */
    size_t rank;       /* RANK: r >= 1 for every layer; above min(m,n) is LR_EINVAL        */
    double energy;     /* ENERGY: fraction of each layer's ‖w‖_F² to keep, in (0, 1]       */
    double error;      /* ERROR: each layer's relative Frobenius error, in [0, 1)          */
    double budget;     /* BUDGET: fraction of Σ m·n to keep, in (0, 1]                     */
} lr_plan_opts;

LR_API lr_plan_opts lr_plan_opts_default(void);

typedef struct {
    size_t rank;           /* the rank kept; min(m,n) when dense                           */
    bool dense;            /* left dense: factoring at this rank would not save            */
    uint64_t dense_params; /* m·n                                                          */
    uint64_t params;       /* r·(m+n), or m·n when dense                                   */
    double tail;           /* predicted ‖w − w_r‖_F² (an upper bound if the spectrum is not */
                           /* exact); 0 when dense                                         */
    double energy;         /* ‖w‖_F²                                                       */
} lr_plan_layer;

typedef struct {
    uint64_t dense_params, params; /* sums over the layers                                 */
    uint64_t budget_params;        /* BUDGET: the limit; otherwise 0                       */
    double tail, energy;           /* sums                                                 */
    double gap;                    /* BUDGET: Σ tail − optimum <= gap (see above); else 0   */
} lr_plan_total;

/* out[0..count) and *tot (may be NULL) <- the plan for sp[0..count). names[l] (names may be
 * NULL) names layer l in messages: "linear1.weight: rank 900 exceeds min(1000, 784) = 784".
 * A spectrum that does not know enough values for the target (randomized, spectrum.h) is
 * LR_EINVAL naming the layer; so is a budget that rank 1 everywhere already exceeds. opts
 * NULL = lr_plan_opts_default(). */
LR_API lr_status lr_plan_ranks(lr_plan_layer *out, lr_plan_total *tot, const lr_spectrum *const *sp,
                               const char *const *names, size_t count, const lr_plan_opts *opts, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
