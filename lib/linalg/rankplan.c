/* rankplan.c — per-layer ranks by rank, energy, error or a shared budget (rankplan.h), with
 * the Lagrangian certificate for the budget plan. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "lowrank/linalg/rankplan.h"
#include "lowrank/linalg/cost.h"
#include "base/internal.h"

lr_plan_opts lr_plan_opts_default(void)
{
    lr_plan_opts o = { .kind = LR_PLAN_RANK, .rank = 1, .energy = 0.99, .error = 0.1, .budget = 0.25 };
    return o;
}

static const char *nm(const char *const *names, size_t l)
{
    return names && names[l] ? names[l] : "layer";
}

/* The largest rank whose factors cost fewer parameters than the dense (m, n) tensor.
 * lr_cost_break_even fails only for an empty shape, which a spectrum never has; 0 (every
 * rank dense) if it did. */
static size_t break_even(const lr_spectrum *sp)
{
    size_t be = 0;
    if (lr_cost_break_even(&be, sp->m, sp->n, NULL) != LR_OK) be = 0;
    return be;
}

/* Fixes layer l at rank r (dense when r passes the break-even rank). */
static void set_rank(lr_plan_layer *o, const lr_spectrum *sp, size_t r)
{
    size_t be = break_even(sp);
    o->dense_params = (uint64_t)sp->m * sp->n;
    o->energy = sp->exact ? sp->captured : sp->energy;
    o->dense = r > be;
    o->rank = o->dense ? sp->k : r;
    o->params = o->dense ? o->dense_params : (uint64_t)r * (sp->m + sp->n);
    o->tail = o->dense ? 0 : lr_spectrum_tail(sp, r);
}

static lr_status plan_one(lr_plan_layer *o, const lr_spectrum *sp, const char *name, const lr_plan_opts *p,
                          lr_err *err)
{
    size_t r = p->rank;
    bool found = true;
    lr_status st = LR_OK;
    if (p->kind == LR_PLAN_RANK) {
        if (r == 0) return lr__fail(err, LR_EINVAL, "%s: rank 0; need >= 1", name);
        if (r > sp->k)
            return lr__fail(err, LR_EINVAL, "%s: rank %zu exceeds min(%zu, %zu) = %zu", name, r, sp->m, sp->n,
                            sp->k);
    } else if (p->kind == LR_PLAN_ENERGY) {
        st = lr_spectrum_rank_for_energy(sp, &r, &found, p->energy, err);
    } else {
        st = lr_spectrum_rank_for_error(sp, &r, &found, p->error, err);
    }
    if (st) return st;
    if (!found || (!sp->exact && r > sp->known && r <= sp->k))
        return lr__fail(err, LR_EINVAL, "%s: the %zu singular values computed (randomized) do not reach "
                        "the target: the rank is above %zu; compute them all (exact method) or more of them",
                        name, sp->known, sp->known);
    set_rank(o, sp, r ? r : 1);
    return LR_OK;
}

/* The next step of layer l from its current rank: to rank+1 (gain s_r², cost m+n) while that
 * stays below break-even and within the known values, else to dense (gain the rest, cost
 * the difference). false when the layer is dense already. */
static bool next_step(const lr_plan_layer *o, const lr_spectrum *sp, double *gain, double *cost, size_t *to)
{
    if (o->dense) return false;
    size_t be = break_even(sp), r = o->rank;
    if (r + 1 <= be && r < sp->known) {
        *gain = (double)sp->s[r] * sp->s[r];
        *cost = (double)(sp->m + sp->n);
        *to = r + 1;
    } else {
        *to = SIZE_MAX; /* past break-even: dense */
        *gain = o->tail;
        *cost = (double)(o->dense_params - o->params);
    }
    return true;
}

/* max over layer l's options of kept − λ·cost, options rank 1..min(be, known) and dense */
static double best_option(const lr_spectrum *sp, double lambda)
{
    size_t be = break_even(sp);
    double e = sp->exact ? sp->captured : sp->energy, mn = (double)sp->m * sp->n, per = (double)(sp->m + sp->n);
    double best = e - lambda * mn, kept = 0;
    size_t top = be < sp->known ? be : sp->known;
    for (size_t r = 1; r <= top; r++) {
        kept += (double)sp->s[r - 1] * sp->s[r - 1];
        double v = kept - lambda * per * (double)r;
        if (v > best) best = v;
    }
    return best;
}

static double dual(const lr_spectrum *const *sp, size_t count, double budget, double lambda)
{
    double d = lambda * budget;
    for (size_t l = 0; l < count; l++) d += best_option(sp[l], lambda);
    return d;
}

/* min over λ >= 0 of the convex dual, by golden-section search on [0, λ_max] */
static double dual_min(const lr_spectrum *const *sp, size_t count, double budget)
{
    double hi = 0;
    for (size_t l = 0; l < count; l++) {
        double e = sp[l]->exact ? sp[l]->captured : sp[l]->energy;
        double c = (double)(sp[l]->m + sp[l]->n);
        if (e / c > hi) hi = e / c;
    }
    double lo = 0, g = (sqrt(5.0) - 1) / 2;
    double a = hi - g * (hi - lo), b = lo + g * (hi - lo), fa = dual(sp, count, budget, a),
           fb = dual(sp, count, budget, b);
    for (int it = 0; it < 200 && hi - lo > 1e-15 * hi; it++) {
        if (fa <= fb) hi = b, b = a, fb = fa, a = hi - g * (hi - lo), fa = dual(sp, count, budget, a);
        else lo = a, a = b, fa = fb, b = lo + g * (hi - lo), fb = dual(sp, count, budget, b);
    }
    double m = fa < fb ? fa : fb, f0 = dual(sp, count, budget, 0), fh = dual(sp, count, budget, hi);
    return fmin(m, fmin(f0, fh));
}

static lr_status plan_budget(lr_plan_layer *out, lr_plan_total *tot, const lr_spectrum *const *sp,
                             const char *const *names, size_t count, double frac, lr_err *err)
{
    double dense = 0, used = 0;
    for (size_t l = 0; l < count; l++) {
        set_rank(&out[l], sp[l], 1);
        dense += (double)out[l].dense_params;
        used += (double)out[l].params;
    }
    double budget = floor(frac * dense);
    if (used > budget)
        return lr__fail(err, LR_EINVAL, "budget %g keeps %.0f of %.0f parameters, but rank 1 on every "
                        "selected tensor already needs %.0f (budget %.4g)%s%s", frac, budget, dense, used,
                        used / dense, count ? "; first tensor: " : "", count ? nm(names, 0) : "");
    bool *frozen = calloc(count ? count : 1, sizeof *frozen);
    if (!frozen) return lr__fail(err, LR_ENOMEM, "rank plan: out of memory");
    for (;;) {
        size_t best = count, bto = 0, to;
        double bg = 0, bc = 1, g, c;
        for (size_t l = 0; l < count; l++)
            if (!frozen[l] && next_step(&out[l], sp[l], &g, &c, &to) && (best == count || g * bc > bg * c))
                best = l, bg = g, bc = c, bto = to;
        if (best == count) break;
        if (used + bc > budget) {
            frozen[best] = true; /* its next step does not fit; later ones cost no less */
            continue;
        }
        set_rank(&out[best], sp[best], bto);
        used += bc;
    }
    free(frozen);
    if (tot) {
        tot->budget_params = (uint64_t)budget;
        double kept = 0;
        for (size_t l = 0; l < count; l++) kept += out[l].energy - out[l].tail;
        double gap = dual_min(sp, count, budget) - kept;
        tot->gap = gap > 0 ? gap : 0;
    }
    return LR_OK;
}

lr_status lr_plan_ranks(lr_plan_layer *out, lr_plan_total *tot, const lr_spectrum *const *sp,
                        const char *const *names, size_t count, const lr_plan_opts *opts, lr_err *err)
{
    if (!out || (count && !sp)) return lr__fail(err, LR_EINVAL, "rank plan: NULL argument");
    lr_plan_opts p = opts ? *opts : lr_plan_opts_default();
    for (size_t l = 0; l < count; l++)
        if (!sp[l] || (sp[l]->known && !sp[l]->s))
            return lr__fail(err, LR_EINVAL, "rank plan: %s: no spectrum", nm(names, l));
    if (tot) memset(tot, 0, sizeof *tot);
    lr_status st = LR_OK;
    switch (p.kind) {
    case LR_PLAN_RANK: break;
    case LR_PLAN_ENERGY:
        if (!(p.energy > 0 && p.energy <= 1))
            return lr__fail(err, LR_EINVAL, "energy %g is outside (0, 1]", p.energy);
        break;
    case LR_PLAN_ERROR:
        if (!(p.error >= 0 && p.error < 1))
            return lr__fail(err, LR_EINVAL, "relative error %g is outside [0, 1)", p.error);
        break;
    case LR_PLAN_BUDGET:
        if (!(p.budget > 0 && p.budget <= 1))
            return lr__fail(err, LR_EINVAL, "budget %g is outside (0, 1]", p.budget);
        break;
    default: return lr__fail(err, LR_EINVAL, "rank plan: unknown kind %d", (int)p.kind);
    }
    if (p.kind == LR_PLAN_BUDGET) st = plan_budget(out, tot, sp, names, count, p.budget, err);
    for (size_t l = 0; l < count && !st && p.kind != LR_PLAN_BUDGET; l++)
        st = plan_one(&out[l], sp[l], nm(names, l), &p, err);
    if (st || !tot) return st;
    for (size_t l = 0; l < count; l++) {
        tot->dense_params += out[l].dense_params;
        tot->params += out[l].params;
        tot->tail += out[l].tail;
        tot->energy += out[l].energy;
    }
    return LR_OK;
}
