/* test_rankplan.c — per-layer ranks by rank, energy, error and a shared parameter budget;
 * the budget plan against an exhaustive search, and its Lagrangian certificate. */
#include "lr_test.h"
#include <math.h>
#include <stdlib.h>
#include "lowrank/linalg/rankplan.h"
#include "lowrank/linalg/spectrum.h"
#include "lowrank/base/rng.h"

/* An exact spectrum of an (m,n) matrix with values s_i = scale·decay^i (+ floor). */
static void geometric(lr_spectrum *sp, size_t m, size_t n, double scale, double decay, double floor_)
{
    size_t k = m < n ? m : n;
    float *s = malloc(k * sizeof *s);
    double e = 0;
    for (size_t i = 0; i < k; i++) {
        s[i] = (float)(scale * pow(decay, (double)i) + floor_);
        e += (double)s[i] * s[i];
    }
    lr_err err;
    if (lr_spectrum_from_values(sp, s, k, m, n, e, &err)) fail_msg("%s", err.msg);
    free(s);
}

static void test_defaults(void **state)
{
    (void)state;
    lr_plan_opts o = lr_plan_opts_default();
    assert_int_equal(o.kind, LR_PLAN_RANK);
    assert_int_equal(o.rank, 1);
    assert_true(o.energy > 0 && o.energy <= 1);
    assert_true(o.error >= 0 && o.error < 1);
    assert_true(o.budget > 0 && o.budget <= 1);
}

/* RANK: 100 x 100 breaks even at 49 (49·200 = 9800 < 10000 <= 50·200). */
static void test_rank_plan(void **state)
{
    (void)state;
    lr_spectrum a, b;
    geometric(&a, 100, 100, 10, 0.95, 0);
    geometric(&b, 120, 80, 5, 0.9, 0.01); /* k = 80, break-even (9600-1)/200 = 47 */
    const lr_spectrum *sp[2] = { &a, &b };
    const char *names[2] = { "linear1.weight", "linear2.weight" };
    lr_plan_layer out[2];
    lr_plan_total tot;
    lr_plan_opts o = lr_plan_opts_default();
    lr_err e;
    struct { size_t r; bool dense_a, dense_b; } cases[] = {
        { 1, false, false }, { 10, false, false }, { 47, false, false }, { 48, false, true },
        { 49, false, true }, { 50, true, true }, { 80, true, true },
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        o.kind = LR_PLAN_RANK;
        o.rank = cases[c].r;
        memset(&tot, 0xcd, sizeof tot);
        if (lr_plan_ranks(out, &tot, sp, names, 2, &o, &e)) fail_msg("%s", e.msg);
        for (size_t l = 0; l < 2; l++) {
            const lr_spectrum *s = sp[l];
            bool dense = l ? cases[c].dense_b : cases[c].dense_a;
            assert_int_equal(out[l].dense, dense);
            assert_int_equal(out[l].dense_params, s->m * s->n);
            assert_true(out[l].energy == s->captured);
            if (dense) {
                assert_int_equal(out[l].rank, s->k);
                assert_int_equal(out[l].params, s->m * s->n);
                assert_true(out[l].tail == 0);
            } else {
                assert_int_equal(out[l].rank, cases[c].r);
                assert_int_equal(out[l].params, cases[c].r * (s->m + s->n));
                assert_true(out[l].params < out[l].dense_params);
                assert_true(out[l].tail == lr_spectrum_tail(s, cases[c].r));
                assert_true(out[l].tail > 0);
            }
        }
        assert_int_equal(tot.dense_params, 10000 + 9600);
        assert_int_equal(tot.params, out[0].params + out[1].params);
        assert_true(tot.tail == out[0].tail + out[1].tail);
        assert_true(tot.energy == a.captured + b.captured);
        assert_int_equal(tot.budget_params, 0);
        assert_true(tot.gap == 0);
    }
    /* above min(m, n): LR_EINVAL naming the layer and both sizes */
    o.rank = 81;
    e.msg[0] = 0;
    assert_int_equal(lr_plan_ranks(out, &tot, sp, names, 2, &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "linear2.weight: rank 81 exceeds min(120, 80) = 80");
    o.rank = 101;
    e.msg[0] = 0;
    assert_int_equal(lr_plan_ranks(out, &tot, sp, names, 2, &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "linear1.weight: rank 101 exceeds min(100, 100) = 100");
    o.rank = 81;
    e.msg[0] = 0;
    assert_int_equal(lr_plan_ranks(out, NULL, sp, NULL, 2, &o, &e), LR_EINVAL); /* names NULL */
    assert_msg_contains(e.msg, "layer: rank 81 exceeds");
    o.rank = 0;
    assert_int_equal(lr_plan_ranks(out, &tot, sp, names, 2, &o, NULL), LR_EINVAL);
    /* tot may be NULL */
    o.rank = 3;
    assert_int_equal(lr_plan_ranks(out, NULL, sp, names, 2, &o, NULL), LR_OK);
    assert_int_equal(out[1].rank, 3);
    lr_spectrum_free(&a);
    lr_spectrum_free(&b);
}

/* ENERGY and ERROR: each layer's own smallest rank (spectrum.h), dense past break-even. */
static void test_energy_error_plans(void **state)
{
    (void)state;
    lr_spectrum a, b, c;
    geometric(&a, 100, 100, 10, 0.8, 0);   /* fast decay: small ranks */
    geometric(&b, 100, 100, 10, 0.99, 0);  /* slow decay: past break-even */
    geometric(&c, 100, 100, 10, 0.9, 0);
    const lr_spectrum *sp[3] = { &a, &b, &c };
    lr_plan_layer out[3];
    lr_plan_total tot;
    lr_plan_opts o = lr_plan_opts_default();
    lr_err e;
    double energies[] = { 0.5, 0.9, 0.99, 0.999, 1.0 };
    for (size_t i = 0; i < 5; i++) {
        o.kind = LR_PLAN_ENERGY;
        o.energy = energies[i];
        if (lr_plan_ranks(out, &tot, sp, NULL, 3, &o, &e)) fail_msg("%s", e.msg);
        for (size_t l = 0; l < 3; l++) {
            size_t r;
            bool found;
            assert_int_equal(lr_spectrum_rank_for_energy(sp[l], &r, &found, energies[i], NULL), LR_OK);
            if (r == 0) r = 1;
            if (r > 49) {
                assert_true(out[l].dense);
                assert_int_equal(out[l].params, 10000);
                assert_true(out[l].tail == 0);
            } else {
                assert_false(out[l].dense);
                assert_int_equal(out[l].rank, r);
                assert_int_equal(out[l].params, r * 200);
                /* the energy kept reaches the target */
                assert_true(out[l].tail <= (1 - energies[i]) * out[l].energy * (1 + 1e-12));
            }
        }
        if (energies[i] == 1.0)
            for (size_t l = 0; l < 3; l++) assert_true(out[l].dense);
    }
    /* slow decay at 0.9: past break-even, so dense; fast decay: few ranks */
    o.energy = 0.9;
    assert_int_equal(lr_plan_ranks(out, &tot, sp, NULL, 3, &o, NULL), LR_OK);
    assert_true(out[1].dense);
    assert_false(out[0].dense);
    assert_true(out[0].rank <= 10);
    double errors[] = { 0, 0.01, 0.1, 0.3, 0.9 };
    for (size_t i = 0; i < 5; i++) {
        o.kind = LR_PLAN_ERROR;
        o.error = errors[i];
        if (lr_plan_ranks(out, &tot, sp, NULL, 3, &o, &e)) fail_msg("%s", e.msg);
        for (size_t l = 0; l < 3; l++) {
            size_t r;
            bool found;
            assert_int_equal(lr_spectrum_rank_for_error(sp[l], &r, &found, errors[i], NULL), LR_OK);
            if (r == 0) r = 1;
            assert_int_equal(out[l].dense, r > 49);
            if (!out[l].dense) {
                assert_int_equal(out[l].rank, r);
                assert_true(sqrt(out[l].tail / out[l].energy) <= errors[i] * (1 + 1e-9));
            }
        }
        if (errors[i] == 0)
            for (size_t l = 0; l < 3; l++) assert_true(out[l].dense);
    }
    /* bad targets */
    o.kind = LR_PLAN_ENERGY;
    double bad_e[] = { 0, -0.5, 1.0000001, NAN };
    for (size_t i = 0; i < 4; i++) {
        o.energy = bad_e[i];
        e.msg[0] = 0;
        assert_int_equal(lr_plan_ranks(out, &tot, sp, NULL, 3, &o, &e), LR_EINVAL);
        assert_msg_contains(e.msg, "outside (0, 1]");
    }
    o.kind = LR_PLAN_ERROR;
    double bad_r[] = { 1, -0.1, 2, NAN };
    for (size_t i = 0; i < 4; i++) {
        o.error = bad_r[i];
        e.msg[0] = 0;
        assert_int_equal(lr_plan_ranks(out, &tot, sp, NULL, 3, &o, &e), LR_EINVAL);
        assert_msg_contains(e.msg, "outside [0, 1)");
    }
    o.kind = (lr_plan_kind)9;
    assert_int_equal(lr_plan_ranks(out, &tot, sp, NULL, 3, &o, NULL), LR_EINVAL);
    lr_spectrum_free(&a);
    lr_spectrum_free(&b);
    lr_spectrum_free(&c);
}

/* A randomized spectrum (top values only) that cannot reach the target names the layer. */
static void test_partial_spectrum(void **state)
{
    (void)state;
    const float s[5] = { 5, 4, 3, 2, 1 }; /* Σ s² = 55 of energy 100 */
    lr_spectrum p;
    assert_int_equal(lr_spectrum_from_values(&p, s, 5, 40, 30, 100, NULL), LR_OK);
    assert_false(p.exact);
    const lr_spectrum *sp[1] = { &p };
    const char *names[1] = { "enc.q.weight" };
    lr_plan_layer out[1];
    lr_plan_opts o = lr_plan_opts_default();
    lr_err e;
    o.kind = LR_PLAN_ENERGY;
    o.energy = 0.3; /* 25 < 30 <= 25 + 16: rank 2 */
    assert_int_equal(lr_plan_ranks(out, NULL, sp, names, 1, &o, &e), LR_OK);
    assert_int_equal(out[0].rank, 2);
    assert_true(out[0].tail == 100 - 41);
    assert_true(out[0].energy == 100);
    o.energy = 0.9;
    e.msg[0] = 0;
    assert_int_equal(lr_plan_ranks(out, NULL, sp, names, 1, &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "enc.q.weight");
    assert_msg_contains(e.msg, "5 singular values");
    o.kind = LR_PLAN_ERROR;
    o.error = 0.5; /* tail <= 25: never with 45 unexplained */
    e.msg[0] = 0;
    assert_int_equal(lr_plan_ranks(out, NULL, sp, names, 1, &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "enc.q.weight");
    o.kind = LR_PLAN_RANK;
    o.rank = 5;
    assert_int_equal(lr_plan_ranks(out, NULL, sp, names, 1, &o, NULL), LR_OK);
    assert_true(out[0].tail == 45);
    o.rank = 6;
    e.msg[0] = 0;
    assert_int_equal(lr_plan_ranks(out, NULL, sp, names, 1, &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "enc.q.weight");
    lr_spectrum_free(&p);
}

/* ---------------------------------------------------------------- budget ------------ */

/* The best Σ tail over every combination (ranks 1..break-even, or dense) within `budget`. */
typedef struct {
    const lr_spectrum *const *sp;
    size_t count;
    uint64_t budget;
    double best;
} search;

static void exhaust(search *s, size_t l, uint64_t used, double tail)
{
    if (used > s->budget) return;
    if (l == s->count) {
        if (tail < s->best) s->best = tail;
        return;
    }
    const lr_spectrum *p = s->sp[l];
    size_t be = (p->m * p->n - 1) / (p->m + p->n);
    exhaust(s, l + 1, used + (uint64_t)p->m * p->n, tail); /* dense */
    for (size_t r = 1; r <= be; r++) exhaust(s, l + 1, used + (uint64_t)r * (p->m + p->n), tail + lr_spectrum_tail(p, r));
}

static void check_budget_plan(const lr_spectrum *const *sp, size_t count, double frac, double *gap_out,
                              double *excess_out)
{
    lr_plan_layer out[4];
    lr_plan_total tot;
    lr_plan_opts o = lr_plan_opts_default();
    o.kind = LR_PLAN_BUDGET;
    o.budget = frac;
    lr_err e;
    uint64_t dense = 0, rank1 = 0;
    for (size_t l = 0; l < count; l++) {
        size_t be = (sp[l]->m * sp[l]->n - 1) / (sp[l]->m + sp[l]->n);
        dense += sp[l]->m * sp[l]->n;
        rank1 += be >= 1 ? sp[l]->m + sp[l]->n : sp[l]->m * sp[l]->n;
    }
    uint64_t budget = (uint64_t)floor(frac * (double)dense);
    lr_status st = lr_plan_ranks(out, &tot, sp, NULL, count, &o, &e);
    if (rank1 > budget) {
        assert_int_equal(st, LR_EINVAL);
        assert_msg_contains(e.msg, "rank 1 on every");
        *gap_out = *excess_out = -1;
        return;
    }
    if (st) fail_msg("%s", e.msg);
    assert_int_equal(tot.budget_params, budget);
    assert_int_equal(tot.dense_params, dense);
    assert_true(tot.params <= tot.budget_params);
    uint64_t params = 0;
    double tail = 0, energy = 0;
    for (size_t l = 0; l < count; l++) {
        const lr_spectrum *p = sp[l];
        size_t be = (p->m * p->n - 1) / (p->m + p->n);
        assert_true(out[l].rank >= 1);
        if (out[l].dense) {
            assert_int_equal(out[l].params, p->m * p->n);
            assert_true(out[l].tail == 0);
        } else {
            assert_true(out[l].rank <= be);
            assert_int_equal(out[l].params, out[l].rank * (p->m + p->n));
            assert_true(out[l].tail == lr_spectrum_tail(p, out[l].rank));
        }
        params += out[l].params;
        tail += out[l].tail;
        energy += out[l].energy;
    }
    assert_int_equal(tot.params, params);
    assert_true(tot.tail == tail);
    assert_true(tot.energy == energy);
    search s = { sp, count, budget, INFINITY };
    exhaust(&s, 0, 0, 0);
    assert_true(isfinite(s.best));
    /* it cannot beat the optimum, and the certificate holds */
    if (!(tot.tail >= s.best - 1e-12 * energy))
        fail_msg("plan tail %.17g below the optimum %.17g", tot.tail, s.best);
    assert_true(tot.gap >= 0);
    if (!(tot.tail - s.best <= tot.gap + 1e-9 * energy))
        fail_msg("plan tail %.17g - optimum %.17g exceeds the gap %.17g", tot.tail, s.best, tot.gap);
    *gap_out = tot.gap / energy;
    *excess_out = (tot.tail - s.best) / energy;
}

static void test_budget_vs_exhaustive(void **state)
{
    (void)state;
    lr_rng rng;
    lr_rng_seed(&rng, 2024);
    size_t planned = 0, suboptimal = 0;
    for (size_t trial = 0; trial < 300; trial++) {
        size_t count = 2 + lr_rng_below(&rng, 3);
        lr_spectrum sps[4];
        const lr_spectrum *sp[4];
        for (size_t l = 0; l < count; l++) {
            size_t m = 2 + lr_rng_below(&rng, 11), n = 2 + lr_rng_below(&rng, 9);
            lr_mat w;
            assert_int_equal(lr_mat_init(&w, m, n, NULL), LR_OK);
            lr_rng_fill_normal(&rng, w, 0, 1);
            /* scale the columns unevenly so the spectra decay at different rates */
            double decay = 0.3 + 0.7 * lr_rng_uniform(&rng), scale = 0.1 + 3 * lr_rng_uniform(&rng);
            for (size_t i = 0; i < m; i++)
                for (size_t j = 0; j < n; j++) w.data[i * w.ld + j] *= (float)(scale * pow(decay, (double)j));
            assert_int_equal(lr_spectrum_init(&sps[l], NULL, lr_cm(w), NULL, NULL), LR_OK);
            sp[l] = &sps[l];
            lr_mat_free(&w);
        }
        double frac = 0.1 + 0.85 * lr_rng_uniform(&rng), gap, excess;
        check_budget_plan(sp, count, frac, &gap, &excess);
        if (gap >= 0) {
            planned++;
            suboptimal += excess > 1e-12;
        }
        for (size_t l = 0; l < count; l++) lr_spectrum_free(&sps[l]);
    }
    assert_true(planned >= 150); /* most trials planned, so the comparisons ran */
    print_message("budget plans: %zu compared with the exhaustive optimum, %zu not optimal (within their gap)\n",
                  planned, suboptimal);
}

/* Equal m+n everywhere, a budget of whole steps: the greedy is the optimum, gap ~ 0. */
static void test_budget_exact(void **state)
{
    (void)state;
    lr_spectrum a, b, c;
    geometric(&a, 100, 100, 10, 0.9, 0);
    geometric(&b, 100, 100, 6, 0.95, 0);
    geometric(&c, 100, 100, 3, 0.97, 0.01);
    const lr_spectrum *sp[3] = { &a, &b, &c };
    double energy = a.captured + b.captured + c.captured;
    /* 0.2 · 30000 = 6000 = 30 steps of 200 */
    lr_plan_layer out[3];
    lr_plan_total tot;
    lr_plan_opts o = lr_plan_opts_default();
    o.kind = LR_PLAN_BUDGET;
    o.budget = 0.2;
    lr_err e;
    if (lr_plan_ranks(out, &tot, sp, NULL, 3, &o, &e)) fail_msg("%s", e.msg);
    assert_int_equal(tot.budget_params, 6000);
    assert_int_equal(tot.params, 6000);
    assert_int_equal(out[0].rank + out[1].rank + out[2].rank, 30);
    assert_true(tot.gap <= 1e-9 * energy);
    /* the optimum: the 27 largest s² beyond each layer's first value */
    search s = { sp, 3, 6000, INFINITY };
    exhaust(&s, 0, 0, 0);
    assert_allclose(tot.tail, s.best, 1e-12, 1e-12 * energy);
    /* and the largest removed s² is >= every one left out (marginal analysis) */
    double min_in = INFINITY, max_out = 0;
    for (size_t l = 0; l < 3; l++) {
        for (size_t i = 1; i < out[l].rank; i++) min_in = fmin(min_in, (double)sp[l]->s[i] * sp[l]->s[i]);
        max_out = fmax(max_out, (double)sp[l]->s[out[l].rank] * sp[l]->s[out[l].rank]);
    }
    assert_true(min_in >= max_out);
    /* budget 1: everything dense, no error */
    o.budget = 1;
    if (lr_plan_ranks(out, &tot, sp, NULL, 3, &o, &e)) fail_msg("%s", e.msg);
    for (size_t l = 0; l < 3; l++) assert_true(out[l].dense);
    assert_int_equal(tot.params, 30000);
    assert_true(tot.tail == 0);
    assert_true(tot.gap <= 1e-9 * energy);
    /* too small: rank 1 everywhere is 600 > floor(0.019·30000) = 570 */
    o.budget = 0.019;
    e.msg[0] = 0;
    const char *names[3] = { "a.weight", "b.weight", "c.weight" };
    assert_int_equal(lr_plan_ranks(out, &tot, sp, names, 3, &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "rank 1 on every");
    assert_msg_contains(e.msg, "a.weight");
    o.budget = 0.02; /* exactly 600: rank 1 everywhere */
    if (lr_plan_ranks(out, &tot, sp, names, 3, &o, &e)) fail_msg("%s", e.msg);
    for (size_t l = 0; l < 3; l++) assert_int_equal(out[l].rank, 1);
    /* outside (0, 1] */
    double bad[] = { 0, -0.5, 1.5, NAN, INFINITY };
    for (size_t i = 0; i < 5; i++) {
        o.budget = bad[i];
        e.msg[0] = 0;
        assert_int_equal(lr_plan_ranks(out, &tot, sp, names, 3, &o, &e), LR_EINVAL);
        assert_msg_contains(e.msg, "outside (0, 1]");
    }
    lr_spectrum_free(&a);
    lr_spectrum_free(&b);
    lr_spectrum_free(&c);
}

static void test_bad_args(void **state)
{
    (void)state;
    lr_spectrum a;
    geometric(&a, 10, 10, 1, 0.5, 0);
    const lr_spectrum *sp[2] = { &a, NULL };
    const char *names[2] = { "x", "second.weight" };
    lr_plan_layer out[2];
    lr_err e;
    assert_int_equal(lr_plan_ranks(NULL, NULL, sp, names, 1, NULL, NULL), LR_EINVAL);
    assert_int_equal(lr_plan_ranks(out, NULL, NULL, names, 1, NULL, NULL), LR_EINVAL);
    e.msg[0] = 0;
    assert_int_equal(lr_plan_ranks(out, NULL, sp, names, 2, NULL, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "second.weight");
    /* opts NULL = defaults (rank 1); no layers is fine */
    assert_int_equal(lr_plan_ranks(out, NULL, sp, names, 1, NULL, NULL), LR_OK);
    assert_int_equal(out[0].rank, 1);
    lr_plan_total tot;
    assert_int_equal(lr_plan_ranks(out, &tot, NULL, NULL, 0, NULL, NULL), LR_OK);
    assert_int_equal(tot.params, 0);
    lr_spectrum_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_rank_plan),
        cmocka_unit_test(test_energy_error_plans),
        cmocka_unit_test(test_partial_spectrum),
        cmocka_unit_test(test_budget_vs_exhaustive),
        cmocka_unit_test(test_budget_exact),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
