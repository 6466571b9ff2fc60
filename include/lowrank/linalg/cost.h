/* cost.h — multiply-adds (MACs: one is 2 FLOPs) and parameters of a dense layer against its
 * factored form.
 *
 * Dense  y = W·x + b,      W: (m,n):              m·n multiply-adds, m·n (+m) params.
 * Factor y = B·(A·x) + b,  B: (m,r), A: (r,n):    r·(m+n) multiply-adds, r·(m+n) (+m).
 * (The bias adds are m additions in both forms and are not counted as
 * multiply-adds.) Factoring pays off while r·(m+n) < m·n; the break-even rank is
 * the largest such r. All functions are pure; products that overflow uint64_t
 * return LR_ERANGE.
 */
#ifndef LOWRANK_COST_H
#define LOWRANK_COST_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lowrank/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *name; /* for the caller's table; may be NULL                     */
    size_t m, n;      /* W: (m,n) = (out, in)                                    */
    size_t r;         /* rank of the factored form (0 allowed: no parameters)    */
    bool bias;        /* count the m bias parameters in both forms               */
} lr_layer_shape;

typedef struct {
    uint64_t dense_macs;      /* m·n                                             */
    uint64_t factored_macs;   /* r·(m+n)                                         */
    uint64_t dense_params;    /* m·n (+m)                                        */
    uint64_t factored_params; /* r·(m+n) (+m)                                    */
    double mac_reduction_pct;   /* 100·(1 − factored/dense); 0 when dense = 0;   */
    double param_reduction_pct; /* negative when the factored form is larger     */
} lr_cost;

/* Cost of one layer. */
LR_API lr_status lr_cost_layer(lr_cost *out, size_t m, size_t n, size_t r, bool bias, lr_err *err);

/* Largest r with r·(m+n) < m·n (0 when none, e.g. m or n = 1 or 0). */
LR_API lr_status lr_cost_break_even(size_t *r, size_t m, size_t n, lr_err *err);

/* Per-layer costs into per_layer[0..count) (may be NULL) and their sum in *total
 * (percentages of the totals). count = 0 gives zero totals. */
LR_API lr_status lr_cost_table(lr_cost *per_layer, lr_cost *total, const lr_layer_shape *layers, size_t count,
                               lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
