/* cost.c — multiply-add and parameter counts, dense against factored layers.
 *
 * Pure integer arithmetic so tests can pin every number. Dense y = W·x + b with
 * W: (m,n) takes m·n multiply-adds; the factored y = B·(A·x) + b takes r·n for
 * A·x and m·r for B·(A·x). Parameters add the m bias entries when asked.
 */
#include <stdint.h>
#include "lowrank/linalg/cost.h"
#include "base/internal.h"

static int mul_ovf(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a != 0 && b > UINT64_MAX / a) return 1;
    *out = a * b;
    return 0;
}

static int add_ovf(uint64_t a, uint64_t b, uint64_t *out)
{
    if (b > UINT64_MAX - a) return 1;
    *out = a + b;
    return 0;
}

static double pct(uint64_t dense, uint64_t fact)
{
    return dense ? 100.0 * (1.0 - (double)fact / (double)dense) : 0.0;
}

lr_status lr_cost_layer(lr_cost *out, size_t m, size_t n, size_t r, bool bias, lr_err *err)
{
    if (!out) return lr__fail(err, LR_EINVAL, "cost: out is NULL");
    uint64_t mn, mpn, rmn, dp, fp;
    if (mul_ovf(m, n, &mn) || add_ovf(m, n, &mpn) || mul_ovf(r, mpn, &rmn) ||
        add_ovf(mn, bias ? m : 0, &dp) || add_ovf(rmn, bias ? m : 0, &fp))
        return lr__fail(err, LR_ERANGE, "cost: counts for a %zu x %zu layer at rank %zu overflow 64 bits",
                        m, n, r);
    out->dense_macs = mn;
    out->factored_macs = rmn;
    out->dense_params = dp;
    out->factored_params = fp;
    out->mac_reduction_pct = pct(mn, rmn);
    out->param_reduction_pct = pct(dp, fp);
    return LR_OK;
}

lr_status lr_cost_break_even(size_t *r, size_t m, size_t n, lr_err *err)
{
    if (!r) return lr__fail(err, LR_EINVAL, "cost: the output rank is NULL");
    uint64_t mn, mpn;
    if (mul_ovf(m, n, &mn) || add_ovf(m, n, &mpn))
        return lr__fail(err, LR_ERANGE, "cost: %zu x %zu overflows 64 bits", m, n);
    /* largest r with r·(m+n) <= m·n − 1, i.e. r·(m+n) < m·n */
    uint64_t q = mn ? (mn - 1) / mpn : 0;
    if (q > SIZE_MAX) return lr__fail(err, LR_ERANGE, "cost: break-even rank %llu exceeds size_t",
                                      (unsigned long long)q);
    *r = (size_t)q;
    return LR_OK;
}

lr_status lr_cost_table(lr_cost *per_layer, lr_cost *total, const lr_layer_shape *layers, size_t count,
                        lr_err *err)
{
    lr_status st;
    if (!total) return lr__fail(err, LR_EINVAL, "cost: total is NULL");
    if (count && !layers) return lr__fail(err, LR_EINVAL, "cost: layers is NULL for %zu layers", count);
    lr_cost t = { 0, 0, 0, 0, 0.0, 0.0 };
    for (size_t i = 0; i < count; i++) {
        lr_cost c;
        const lr_layer_shape *L = &layers[i];
        if ((st = lr_cost_layer(&c, L->m, L->n, L->r, L->bias, err))) {
            lr_err inner = { { 0 } };
            if (err) inner = *err;
            return lr__fail(err, st, "cost: layer %zu (%s): %s", i, L->name ? L->name : "unnamed",
                            err ? inner.msg : "overflow");
        }
        if (add_ovf(t.dense_macs, c.dense_macs, &t.dense_macs) ||
            add_ovf(t.factored_macs, c.factored_macs, &t.factored_macs) ||
            add_ovf(t.dense_params, c.dense_params, &t.dense_params) ||
            add_ovf(t.factored_params, c.factored_params, &t.factored_params))
            return lr__fail(err, LR_ERANGE, "cost: totals overflow 64 bits at layer %zu (%s)", i,
                            L->name ? L->name : "unnamed");
        if (per_layer) per_layer[i] = c;
    }
    t.mac_reduction_pct = pct(t.dense_macs, t.factored_macs);
    t.param_reduction_pct = pct(t.dense_params, t.factored_params);
    *total = t;
    return LR_OK;
}
