/* compress.c — `lowrank compress MODEL --out OUT`: each selected weight P.weight (m, n)
 * becomes P.B.weight (m, r) = U_r·S_r and P.A.weight (r, n) = V_rᵀ, by a fixed rank, an
 * energy, an error, or a parameter budget allocated across the tensors (rankplan.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tool.h"

#define SUB "compress"

static const char help[] =
"usage: " PROG " compress MODEL.safetensors (--rank R | --energy E | --error X | --budget F)\n"
"                         --out OUT.safetensors [options]\n"
"\n"
"Factors each selected 2-D weight W (m x n) by its truncated SVD as B.A, B = U_r.S_r (m x r),\n"
"A = V_r^T (r x n), the best rank-r approximation (Eckart-Young). A tensor P.weight is stored\n"
"as P.B.weight and P.A.weight (other names X as X.B and X.A) in the tensor's own dtype;\n"
"every other tensor is copied unchanged and __metadata__[\"lowrank\"] records what was done.\n"
"A tensor whose rank reaches break-even (r*(m+n) >= m*n) stays dense. Where U_r.S_r would\n"
"overflow an F16 tensor's range, sqrt(S_r) goes to each side instead (noted, and recorded).\n"
"\n"
"  --rank R        the same rank for every tensor (at most min(m, n))\n"
"  --energy E      per tensor, the smallest rank keeping the fraction E of ||W||_F^2, (0, 1]\n"
"  --error X       per tensor, the smallest rank with ||W - BA||_F / ||W||_F <= X, [0, 1)\n"
"  --budget F      keep at most the fraction F, (0, 1], of the selected tensors' parameters,\n"
"                  ranks chosen to minimise the total squared error (greedy marginal\n"
"                  analysis with a Lagrangian certificate: the report's 'gap' bounds how\n"
"                  far the total error can be above the optimum)\n"
"  --budget-of K   params (default) or flops: multiply-adds per input row. For a weight\n"
"                  applied as y = W.x both are m*n dense and r*(m+n) factored, so the plan\n"
"                  is the same; the report names the unit\n"
"  --out FILE      the compressed checkpoint (written crash-safely)\n"
"\n";

typedef struct {
    const lr_st_tensor *t;
    lr_spectrum sp;
    lr_usv vec;
    lr_plan_layer plan;
    double fro;          /* measured ‖W − B·A‖_F with the stored (rounded) factors */
    void *buf[2];        /* B, A encoded in the tensor's dtype */
    bool balanced;       /* B = U_r·√S_r, A = √S_r·V_rᵀ: U_r·S_r would overflow the dtype */
    char *name[2];       /* P.B.weight, P.A.weight */
} item;

static char *factor_name(const char *t, char which)
{
    size_t n = strlen(t), w = strlen(".weight");
    bool wt = n > w && !strcmp(t + n - w, ".weight");
    char *s = malloc(n + 8);
    if (s && wt) snprintf(s, n + 8, "%.*s.%c.weight", (int)(n - w), t, which);
    else if (s) snprintf(s, n + 8, "%s.%c", t, which);
    return s;
}

static int analyse(item *it, lr_safetensors *st, const lr_spectrum_opts *so)
{
    lr_err e = { 0 };
    lr_mat w;
    lr_status s = tool_load(&w, st, it->t, &e);
    if (!s) s = lr_spectrum_init(&it->sp, &it->vec, lr_cm(w), so, &e);
    lr_mat_free(&w);
    return s ? tool_failf(SUB, "%s: %s: %s", lr_safetensors_path(st), it->t->name, e.msg) : 0;
}

/* does every value stay finite once stored as dtype? */
static bool fits(const float *x, size_t n, lr_st_dtype dtype)
{
    float lim = dtype == LR_ST_F16 ? 65504.0f : 3.4e38f; /* F16's largest; BF16 and F32 alike */
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(x[i]) <= lim)) return false;
    return true;
}

/* B, A at the planned rank, rounded to the tensor's dtype, measured against W, encoded */
static int factor(item *it, lr_safetensors *st)
{
    lr_err e = { 0 };
    size_t m = it->t->shape[0], n = it->t->shape[1], r = it->plan.rank, es = lr_st_dtype_bits(it->t->dtype) / 8;
    lr_mat w = { 0 }, b = { 0 }, a = { 0 };
    lr_approx_err ae;
    lr_status s = lr_mat_init(&b, m, r, &e);
    if (!s) s = lr_mat_init(&a, r, n, &e);
    if (!s) s = lr_factor_from_usv(b, a, &it->vec, r, LR_SPLIT_US, &e);
    /* U_r·S_r can leave F16's range (65504) where B·A does not: split √S to each side then */
    it->balanced = !s && !fits(b.data, m * r, it->t->dtype);
    if (it->balanced) s = lr_factor_from_usv(b, a, &it->vec, r, LR_SPLIT_BALANCED, &e);
    if (!s && (!fits(b.data, m * r, it->t->dtype) || !fits(a.data, r * n, it->t->dtype))) {
        snprintf(e.msg, sizeof e.msg, "the factors at rank %zu exceed %s's range even with sqrt(S) on each side "
                 "(sigma_1 = %g)", r, lr_st_dtype_name(it->t->dtype), (double)it->vec.s[0]);
        s = LR_ERANGE;
    }
    if (!s) {
        tool_round(b.data, m * r, it->t->dtype);
        tool_round(a.data, r * n, it->t->dtype);
        s = tool_load(&w, st, it->t, &e);
    }
    if (!s) s = lr_approx_measure(&ae, lr_cm(w), lr_cm(b), lr_cm(a), false, &e);
    if (!s) {
        it->fro = ae.fro;
        it->name[0] = factor_name(it->t->name, 'B'), it->name[1] = factor_name(it->t->name, 'A');
        it->buf[0] = malloc(m * r * es), it->buf[1] = malloc(r * n * es);
        if (!it->name[0] || !it->name[1] || !it->buf[0] || !it->buf[1]) {
            snprintf(e.msg, sizeof e.msg, "out of memory");
            s = LR_ENOMEM;
        }
    }
    if (!s) s = lr_st_encode_f32(it->buf[0], it->t->dtype, b.data, m * r, &e);
    if (!s) s = lr_st_encode_f32(it->buf[1], it->t->dtype, a.data, r * n, &e);
    lr_mat_free(&w), lr_mat_free(&b), lr_mat_free(&a);
    lr_usv_free(&it->vec);
    return s ? tool_failf(SUB, "%s: %s: %s", lr_safetensors_path(st), it->t->name, e.msg) : 0;
}

/* the output's tensors: factored ones as B and A, the rest as they are (file order) */
static int out_tensors(lr_st_tensor **out, size_t *nout, lr_safetensors *st, item *it, size_t n)
{
    size_t nt = lr_safetensors_count(st), k = 0;
    lr_st_tensor *t = calloc(nt + n + 1, sizeof *t);
    if (!t) return tool_failf(SUB, "out of memory");
    for (size_t i = 0; i < nt; i++) {
        const lr_st_tensor *src = lr_safetensors_at(st, i);
        item *f = NULL;
        for (size_t j = 0; j < n && !f; j++)
            if (it[j].t == src && !it[j].plan.dense) f = &it[j];
        if (!f) {
            t[k++] = *src; /* the file's little-endian bytes: this is a little-endian host */
            continue;
        }
        for (int q = 0; q < 2; q++) {
            if (lr_safetensors_find(st, f->name[q])) {
                free(t);
                return tool_failf(SUB, "%s: %s: the factor's name %s is already a tensor of the file",
                                  lr_safetensors_path(st), src->name, f->name[q]);
            }
            size_t m = src->shape[0], nn = src->shape[1], r = f->plan.rank;
            t[k++] = (lr_st_tensor){ .name = f->name[q], .dtype = src->dtype, .ndim = 2,
                                     .shape = { q ? r : m, q ? nn : r }, .data = f->buf[q] };
        }
    }
    *out = t, *nout = k;
    return 0;
}

static char *record(const tool_compress_args *a, const item *it, size_t n)
{
    json_t *o = json_object(), *ranks = json_object();
    bool ok = true;
    static const char *const kind[] = { "rank", "energy", "error", "budget" };
    const double val[] = { (double)a->plan.rank, a->plan.energy, a->plan.error, a->plan.budget };
    lr_cli_json_set(o, "command", json_string(SUB), &ok);
    lr_cli_json_set(o, "version", json_string(LOWRANK_VERSION), &ok);
    lr_cli_json_set(o, kind[a->plan.kind], json_real(val[a->plan.kind]), &ok);
    lr_cli_json_set(o, "split", json_string("B = U_r S_r, A = V_r^T"), &ok);
    json_t *bal = json_array();
    for (size_t i = 0; i < n; i++) {
        if (!it[i].plan.dense) lr_cli_json_set(ranks, it[i].t->name, tool_json_size(it[i].plan.rank), &ok);
        if (it[i].balanced) ok = ok && !json_array_append_new(bal, json_string(it[i].t->name));
    }
    lr_cli_json_set(o, "ranks", ranks, &ok);
    lr_cli_json_set(o, "balanced_split", bal, &ok); /* tensors stored as U_r sqrt(S_r), sqrt(S_r) V_r^T */
    char *s = ok ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return s;
}

static int write_out(const tool_compress_args *a, lr_safetensors *st, item *it, size_t n)
{
    lr_st_tensor *t = NULL;
    size_t nt = 0;
    int rc = out_tensors(&t, &nt, st, it, n);
    char *rec = rc ? NULL : record(a, it, n);
    if (!rc) rc = tool_write_st(SUB, a->out, st, t, nt, rec);
    free(t), free(rec);
    return rc;
}

static double rel(double fro2, double energy)
{
    return energy > 0 ? sqrt(fro2 / energy) : 0;
}

static void print_table(const tool_compress_args *a, const item *it, size_t n, const lr_plan_total *tot)
{
    const char *unit = a->flops ? "MACs/row" : "params";
    printf("%-32s %-13s %6s %12s %12s %10s %10s\n", "tensor", "shape", "rank", unit, "after", "pred.err", "meas.err");
    double fro2 = 0;
    for (size_t i = 0; i < n; i++) {
        const item *x = &it[i];
        char shape[32], rank[16];
        snprintf(shape, sizeof shape, "%zux%zu", x->t->shape[0], x->t->shape[1]);
        snprintf(rank, sizeof rank, x->plan.dense ? "dense" : "%zu", x->plan.rank);
        fro2 += x->fro * x->fro;
        printf("%-32s %-13s %6s %12llu %12llu %10.3g %10.3g\n", x->t->name, shape, rank,
               (unsigned long long)x->plan.dense_params, (unsigned long long)x->plan.params,
               rel(x->plan.tail, x->plan.energy), rel(x->fro * x->fro, x->plan.energy));
    }
    printf("%-32s %-13s %6s %12llu %12llu %10.3g %10.3g\n", "total", "", "", (unsigned long long)tot->dense_params,
           (unsigned long long)tot->params, rel(tot->tail, tot->energy), rel(fro2, tot->energy));
    printf("\nkept %.2f%% of the %s of %zu tensor%s", 100.0 * (double)tot->params / (double)tot->dense_params,
           unit, n, n == 1 ? "" : "s");
    if (a->plan.kind == LR_PLAN_BUDGET)
        printf(" (budget %llu); optimality gap <= %.3g of the energy (Lagrangian bound)",
               (unsigned long long)tot->budget_params, tot->energy > 0 ? tot->gap / tot->energy : 0);
    printf("\nerrors are ||W - BA||_F / ||W||_F: predicted from the spectrum (Eckart-Young), measured "
           "with the stored factors\nwrote %s\n", a->out);
}

static int report_json(const tool_compress_args *a, const item *it, size_t n, const lr_plan_total *tot, tool_opts *o)
{
    bool ok = true;
    json_t *js = json_object(), *ts = json_array(), *t = json_object();
    double fro2 = 0;
    for (size_t i = 0; i < n; i++) {
        const item *x = &it[i];
        json_t *r = json_object();
        fro2 += x->fro * x->fro;
        lr_cli_json_set(r, "name", json_string(x->t->name), &ok);
        lr_cli_json_set(r, "shape", tool_json_shape(x->t->shape[0], x->t->shape[1]), &ok);
        lr_cli_json_set(r, "dtype", json_string(lr_st_dtype_name(x->t->dtype)), &ok);
        lr_cli_json_set(r, "svd", json_string(x->sp.exact ? "exact" : "randomized"), &ok);
        lr_cli_json_set(r, "dense", json_boolean(x->plan.dense), &ok);
        lr_cli_json_set(r, "rank", tool_json_size(x->plan.rank), &ok);
        lr_cli_json_set(r, "params_before", json_integer((json_int_t)x->plan.dense_params), &ok);
        lr_cli_json_set(r, "params_after", json_integer((json_int_t)x->plan.params), &ok);
        lr_cli_json_set(r, "predicted_rel_error", lr_cli_json_real(rel(x->plan.tail, x->plan.energy)), &ok);
        lr_cli_json_set(r, "measured_rel_error", lr_cli_json_real(rel(x->fro * x->fro, x->plan.energy)), &ok);
        ok = ok && !json_array_append_new(ts, r);
    }
    lr_cli_json_set(t, "params_before", json_integer((json_int_t)tot->dense_params), &ok);
    lr_cli_json_set(t, "params_after", json_integer((json_int_t)tot->params), &ok);
    lr_cli_json_set(t, "fraction_kept", lr_cli_json_real((double)tot->params / (double)tot->dense_params), &ok);
    lr_cli_json_set(t, "predicted_rel_error", lr_cli_json_real(rel(tot->tail, tot->energy)), &ok);
    lr_cli_json_set(t, "measured_rel_error", lr_cli_json_real(rel(fro2, tot->energy)), &ok);
    if (a->plan.kind == LR_PLAN_BUDGET) {
        lr_cli_json_set(t, "budget", json_integer((json_int_t)tot->budget_params), &ok);
        lr_cli_json_set(t, "gap_rel_energy", lr_cli_json_real(tot->energy > 0 ? tot->gap / tot->energy : 0), &ok);
    }
    lr_cli_json_set(js, "command", json_string(SUB), &ok);
    lr_cli_json_set(js, "file", json_string(a->model), &ok);
    lr_cli_json_set(js, "out", json_string(a->out), &ok);
    lr_cli_json_set(js, "unit", json_string(a->flops ? "macs_per_row" : "params"), &ok);
    lr_cli_json_set(js, "tensors", ts, &ok);
    lr_cli_json_set(js, "totals", t, &ok);
    lr_cli_json_set(js, "skipped", json_incref(o->notes), &ok);
    int rc = ok ? tool_json_print(js) : tool_failf(SUB, "out of memory building the JSON report");
    json_decref(js);
    return rc;
}

static int plan(tool_compress_args *a, item *it, size_t n, lr_plan_total *tot)
{
    const lr_spectrum **sp = calloc(n, sizeof *sp);
    const char **names = calloc(n, sizeof *names);
    lr_plan_layer *pl = calloc(n, sizeof *pl);
    lr_err e = { 0 };
    int rc = !sp || !names || !pl ? tool_failf(SUB, "out of memory") : 0;
    for (size_t i = 0; i < n && !rc; i++) sp[i] = &it[i].sp, names[i] = it[i].t->name;
    if (!rc && lr_plan_ranks(pl, tot, sp, names, n, &a->plan, &e)) rc = tool_failf(SUB, "%s: %s", a->model, e.msg);
    for (size_t i = 0; i < n && !rc; i++) it[i].plan = pl[i];
    free(sp), free(names), free(pl);
    return rc;
}

int tool_compress(int argc, char **argv)
{
    tool_opts o;
    tool_opts_init(&o);
    tool_compress_args a = { 0 };
    lr_safetensors st = { 0 };
    lr_err e = { 0 };
    size_t n = 0, *idx = NULL, cap = tool_msg_cap(argc, argv);
    item *it = NULL;
    lr_plan_total tot = { 0 };
    char *msg = malloc(cap);
    int rc = msg ? tool_parsed(SUB, tool_compress_parse(argc, argv, &o, &a, msg, cap), msg, help, true)
                 : tool_failf(SUB, "out of memory");
    free(msg);
    if (!rc) rc = tool_check_out(SUB, a.out, &a.model, 1);
    /* a fixed rank above the randomized default needs that many values */
    if (!rc && a.plan.kind == LR_PLAN_RANK && a.plan.rank > o.sp.rank) o.sp.rank = a.plan.rank;
    if (!rc && lr_safetensors_open(&st, a.model, &e)) rc = tool_fail(SUB, &e);
    if (!rc) rc = tool_candidates(&o, SUB, &st, &idx, &n);
    if (!rc && !(it = calloc(n ? n : 1, sizeof *it))) rc = tool_failf(SUB, "out of memory");
    if (!rc && n == 0) rc = tool_failf(SUB, "%s: no 2-D floating tensor is selected", a.model);
    for (size_t i = 0; i < n && !rc; i++) {
        it[i].t = lr_safetensors_at(&st, idx[i]);
        size_t m = it[i].t->shape[0], nn = it[i].t->shape[1], k = m < nn ? m : nn;
        if (a.plan.kind == LR_PLAN_RANK && a.plan.rank > k) /* before any SVD */
            rc = tool_failf(SUB, "%s: %s: rank %zu exceeds min(%zu, %zu) = %zu", a.model, it[i].t->name,
                            a.plan.rank, m, nn, k);
        else rc = analyse(&it[i], &st, &o.sp);
    }
    if (!rc) rc = plan(&a, it, n, &tot);
    for (size_t i = 0; i < n && !rc; i++)
        if (!it[i].plan.dense && !(rc = factor(&it[i], &st)) && it[i].balanced)
            tool_note(&o, SUB, it[i].t->name, "stored as B = U_r sqrt(S_r), A = sqrt(S_r) V_r^T: U_r S_r exceeds "
                      "the dtype's range (recorded in __metadata__ as balanced_split)");
    if (!rc) rc = write_out(&a, &st, it, n);
    if (!rc && o.json) rc = report_json(&a, it, n, &tot, &o);
    else if (!rc) print_table(&a, it, n, &tot);
    for (size_t i = 0; it && i < n; i++) {
        lr_spectrum_free(&it[i].sp);
        lr_usv_free(&it[i].vec);
        free(it[i].buf[0]), free(it[i].buf[1]), free(it[i].name[0]), free(it[i].name[1]);
    }
    free(it), free(idx);
    lr_safetensors_free(&st);
    tool_opts_free(&o);
    return rc < 0 ? 0 : rc; /* after --help */
}
