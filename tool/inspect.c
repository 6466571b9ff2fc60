/* inspect.c — `lowrank inspect MODEL`: per 2-D tensor the numerical rank, σ₁, the ranks that
 * keep 90 / 99 / 99.9 % of the energy, and what factoring at those ranks would cost. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tool.h"

#define SUB "inspect"
#define NLEVEL 3
static const double level[NLEVEL] = { 0.9, 0.99, 0.999 };
static const char *const level_key[NLEVEL] = { "0.9", "0.99", "0.999" };

static const char help[] =
"usage: " PROG " inspect MODEL [--spectrum FILE.svg] [options]\n"
"\n"
"MODEL is a .safetensors file, a directory holding model.safetensors or a sharded\n"
"model.safetensors.index.json, or that index file. Tensors are read one at a time.\n"
"A .gguf file is listed instead: a LoRA adapter (general.type adapter) with each adapted\n"
"tensor's lora_a and lora_b shapes (GGUF order, ne[0] first), rank and the scale llama.cpp\n"
"applies (adapter.lora.alpha / rank); any other GGUF with its tensors' types and shapes.\n"
"\n"
"One row per 2-D floating tensor (F32, F16, BF16, F64; others are passed over with a note):\n"
"shape, dtype, how the singular values were found, numpy's numerical rank\n"
"(s_i > s_1 * max(m,n) * 2^-23), sigma_1, the smallest ranks keeping 90 / 99 / 99.9 % of\n"
"the energy ||W||_F^2, the parameters (m*n) and the multiply-adds per input row, dense\n"
"(m*n) and factored at those ranks (r*(m+n); 'dense' where that is no saving). Totals last.\n"
"With the randomized method only the top values are known: they are lower bounds, so the\n"
"energy ranks are upper bounds, and the report states the energy they leave unexplained.\n"
"\n"
"  --spectrum FILE.svg   plot s_i / s_1 of every tensor against i\n"
"\n";

typedef struct {
    const char *name;
    lr_st_dtype dtype;
    size_t m, n, rank, r[NLEVEL], be;
    bool at_least, found[NLEVEL];
    lr_spectrum sp;
} row;

/* The row's figures from its spectrum. */
static void derive(row *rw, const lr_st_tensor *t)
{
    rw->name = t->name, rw->dtype = t->dtype, rw->m = t->shape[0], rw->n = t->shape[1];
    lr_spectrum_numerical_rank(&rw->sp, &rw->rank, &rw->at_least);
    lr_cost_break_even(&rw->be, rw->m, rw->n, NULL);
    for (int k = 0; k < NLEVEL; k++) lr_spectrum_rank_for_energy(&rw->sp, &rw->r[k], &rw->found[k], level[k], NULL);
}

static int analyse(row *rw, lr_model *m, const lr_st_tensor *t, const tool_opts *o)
{
    lr_err e = { 0 };
    if (tool_spectrum(&rw->sp, m, t, &o->sp, &e)) return tool_fail_tensor(SUB, &e, m, t->name);
    derive(rw, t);
    return 0;
}

typedef struct {
    row *rows;
    lr_model *m;
    const size_t *idx;
    const tool_opts *o;
    tool_progress *pg;
    int rank, size;      /* under mpirun: tensor i is rank i % size's */
} job;

static int item(void *ctx, size_t i, size_t worker)
{
    const job *j = ctx;
    const lr_st_tensor *t = lr_model_at(j->m, j->idx[i]);
    (void)worker;
    if ((int)(i % (size_t)j->size) != j->rank) return 0;
    int rc = analyse(&j->rows[i], j->m, t, j->o);
    tool_lock();
    tool_progress_step(j->pg, i + 1, t->name, tool_bytes_of(j->m, &j->idx[i], 1));
    tool_unlock();
    return rc;
}

/* Under mpirun: every rank's spectra to rank 0, in order. */
static int gather(const job *j, size_t n)
{
    for (size_t i = 0; j->size > 1 && i < n; i++) {
        int owner = (int)(i % (size_t)j->size);
        if (owner == 0 || (j->rank != 0 && j->rank != owner)) continue;
        lr_spectrum *sp = &j->rows[i].sp;
        struct { size_t known; double energy; } h = { sp->known, sp->energy };
        if (j->rank == owner) {
            tool_mpi_send(&h, sizeof h, 0), tool_mpi_send(sp->s, sp->known * sizeof *sp->s, 0);
            continue;
        }
        tool_mpi_recv(&h, sizeof h, owner);
        const lr_st_tensor *t = lr_model_at(j->m, j->idx[i]);
        float *s = malloc((h.known ? h.known : 1) * sizeof *s);
        if (!s) abort(); /* MPI itself would not survive this either */
        tool_mpi_recv(s, h.known * sizeof *s, owner);
        lr_err e = { 0 };
        lr_status st = lr_spectrum_from_values(sp, s, h.known, t->shape[0], t->shape[1], h.energy, &e);
        free(s);
        if (st) return tool_fail(SUB, &e);
        derive(&j->rows[i], t);
    }
    return 0;
}

/* multiply-adds per input row at rank r: r(m+n), or m·n when factoring does not save */
static double macs_at(const row *rw, size_t r)
{
    return r > rw->be ? (double)rw->m * rw->n : (double)r * (rw->m + rw->n);
}

static void print_table(const row *rows, size_t n, const char *path)
{
    printf("%s: %zu tensor%s\n\n", path, n, n == 1 ? "" : "s");
    printf("%-32s %-13s %-5s %-5s %7s %10s %6s %6s %6s %12s | MACs/row: %10s %10s %10s %10s\n", "tensor",
           "shape", "dtype", "svd", "rank", "sigma1", "r90", "r99", "r99.9", "params", "dense", "@90%",
           "@99%", "@99.9%");
    double tp = 0, tl[NLEVEL] = { 0 };
    for (size_t i = 0; i < n; i++) {
        const row *r = &rows[i];
        char shape[32], rank[16], rk[NLEVEL][16], mac[NLEVEL][16];
        snprintf(shape, sizeof shape, "%zux%zu", r->m, r->n);
        snprintf(rank, sizeof rank, "%s%zu", r->at_least ? ">=" : "", r->rank);
        for (int k = 0; k < NLEVEL; k++) {
            snprintf(rk[k], sizeof rk[k], "%s%zu", r->found[k] ? "" : ">", r->r[k]);
            if (r->r[k] > r->be) snprintf(mac[k], sizeof mac[k], "dense");
            else snprintf(mac[k], sizeof mac[k], "%s%.0f", r->found[k] ? "" : ">", macs_at(r, r->r[k]));
            tl[k] += macs_at(r, r->r[k]);
        }
        tp += (double)r->m * r->n;
        printf("%-32s %-13s %-5s %-5s %7s %10.4g %6s %6s %6s %12.0f | %20.0f %10s %10s %10s\n", r->name, shape,
               lr_st_dtype_name(r->dtype), r->sp.exact ? "exact" : "rand", rank, r->sp.known ? (double)r->sp.s[0] : 0.0,
               rk[0], rk[1], rk[2], (double)r->m * r->n, (double)r->m * r->n, mac[0], mac[1], mac[2]);
    }
    printf("%-32s %-13s %-5s %-5s %7s %10s %6s %6s %6s %12.0f | %20.0f %10.0f %10.0f %10.0f\n", "total", "", "",
           "", "", "", "", "", "", tp, tp, tl[0], tl[1], tl[2]);
    for (size_t i = 0; i < n; i++)
        if (!rows[i].sp.exact)
            printf("%s: randomized, top %zu values (lower bounds): they leave at most %.3g%% of the energy "
                   "unexplained\n", rows[i].name, rows[i].sp.known,
                   100 * fmax(0, rows[i].sp.energy - rows[i].sp.captured) / fmax(rows[i].sp.energy, 1e-300));
}

static json_t *row_json(const row *r)
{
    bool ok = true;
    json_t *o = json_object(), *er = json_object(), *fm = json_object();
    lr_cli_json_set(o, "name", json_string(r->name), &ok);
    lr_cli_json_set(o, "shape", tool_json_shape(r->m, r->n), &ok);
    lr_cli_json_set(o, "dtype", json_string(lr_st_dtype_name(r->dtype)), &ok);
    lr_cli_json_set(o, "svd", json_string(r->sp.exact ? "exact" : "randomized"), &ok);
    lr_cli_json_set(o, "values_known", tool_json_size(r->sp.known), &ok);
    lr_cli_json_set(o, "numerical_rank", tool_json_size(r->rank), &ok);
    lr_cli_json_set(o, "numerical_rank_is_lower_bound", json_boolean(r->at_least), &ok);
    lr_cli_json_set(o, "sigma1", lr_cli_json_real(r->sp.known ? r->sp.s[0] : 0), &ok);
    lr_cli_json_set(o, "energy", lr_cli_json_real(r->sp.energy), &ok);
    lr_cli_json_set(o, "unexplained_energy", lr_cli_json_real(fmax(0, r->sp.energy - r->sp.captured)), &ok);
    for (int k = 0; k < NLEVEL; k++) {
        lr_cli_json_set(er, level_key[k], r->found[k] ? tool_json_size(r->r[k]) : json_null(), &ok);
        lr_cli_json_set(fm, level_key[k], r->found[k] ? lr_cli_json_real(macs_at(r, r->r[k])) : json_null(), &ok);
    }
    lr_cli_json_set(o, "energy_ranks", er, &ok);
    lr_cli_json_set(o, "params", lr_cli_json_real((double)r->m * r->n), &ok);
    lr_cli_json_set(o, "macs_per_row_dense", lr_cli_json_real((double)r->m * r->n), &ok);
    lr_cli_json_set(o, "macs_per_row_factored", fm, &ok);
    lr_cli_json_set(o, "break_even_rank", tool_json_size(r->be), &ok);
    lr_cli_json_set(o, "singular_values", lr_cli_json_vec(r->sp.s, r->sp.known), &ok);
    if (!ok) json_decref(o);
    return ok ? o : NULL;
}

static int report_json(const row *rows, size_t n, const char *path, tool_opts *o)
{
    bool ok = true;
    json_t *js = json_object(), *ts = json_array(), *tot = json_object();
    double tp = 0, tl[NLEVEL] = { 0 };
    for (size_t i = 0; i < n; i++) {
        json_t *r = row_json(&rows[i]);
        ok = ok && r && !json_array_append_new(ts, r);
        tp += (double)rows[i].m * rows[i].n;
        for (int k = 0; k < NLEVEL; k++) tl[k] += macs_at(&rows[i], rows[i].r[k]);
    }
    json_t *fm = json_object();
    for (int k = 0; k < NLEVEL; k++) lr_cli_json_set(fm, level_key[k], lr_cli_json_real(tl[k]), &ok);
    lr_cli_json_set(tot, "tensors", tool_json_size(n), &ok);
    lr_cli_json_set(tot, "params", lr_cli_json_real(tp), &ok);
    lr_cli_json_set(tot, "macs_per_row_dense", lr_cli_json_real(tp), &ok);
    lr_cli_json_set(tot, "macs_per_row_factored", fm, &ok);
    lr_cli_json_set(js, "command", json_string(SUB), &ok);
    lr_cli_json_set(js, "file", json_string(path), &ok);
    lr_cli_json_set(js, "tensors", ts, &ok);
    lr_cli_json_set(js, "totals", tot, &ok);
    lr_cli_json_set(js, "skipped", json_incref(o->notes), &ok);
    int rc = ok ? tool_json_print(js) : tool_failf(SUB, "out of memory building the JSON report");
    json_decref(js);
    return rc;
}

static int plot(const char *svg, const row *rows, size_t n)
{
    const char **names = calloc(n ? n : 1, sizeof *names);
    const float **s = calloc(n ? n : 1, sizeof *s);
    size_t *k = calloc(n ? n : 1, sizeof *k);
    char msg[512] = "out of memory";
    int rc = !names || !s || !k;
    for (size_t i = 0; i < n && !rc; i++) names[i] = rows[i].name, s[i] = rows[i].sp.s, k[i] = rows[i].sp.known;
    if (!rc) rc = tool_spectrum_svg(svg, names, s, k, n, msg, sizeof msg);
    free(names), free(s), free(k);
    return rc ? tool_failf(SUB, "--spectrum: %s", msg) : 0;
}

int tool_inspect(int argc, char **argv)
{
    tool_opts o;
    tool_opts_init(&o);
    tool_inspect_args a = { 0 };
    lr_model md = { 0 };
    tool_progress pg = { 0 };
    size_t n = 0, *idx = NULL, cap = tool_msg_cap(argc, argv);
    row *rows = NULL;
    int rank, size;
    tool_mpi_start(&rank, &size);
    char *msg = malloc(cap);
    int rc = msg ? tool_parsed(SUB, tool_inspect_parse(argc, argv, &o, &a, msg, cap), msg, help, true)
                 : tool_failf(SUB, "out of memory");
    free(msg);
    const char *model = a.model, *svg = a.svg;
    if (!rc && tool_is_gguf(model)) {
        rc = svg ? tool_usage(SUB, "--spectrum: %s is a GGUF file; its tensors are listed, not factored", model)
                 : tool_inspect_gguf(model, o.json);
        goto done;
    }
    if (!rc && svg) rc = tool_check_out(SUB, svg, &model, 1);
    if (!rc) tool_threads(o.threads);
    if (!rc) rc = tool_open(SUB, &md, model);
    if (!rc) rc = tool_candidates(&o, SUB, &md, &idx, &n);
    if (!rc && !(rows = calloc(n ? n : 1, sizeof *rows))) rc = tool_failf(SUB, "out of memory");
    if (!rc && n == 0) rc = tool_failf(SUB, "%s: no 2-D floating tensor is selected", model);
    if (!rc) tool_progress_init(&pg, o.progress && rank == 0, n, tool_bytes_of(&md, idx, n));
    if (rank != 0) pg.on = false;
    job j = { rows, &md, idx, &o, &pg, rank, size };
    if (!rc) rc = tool_parallel(n, tool_workers(o.threads), item, &j);
    if (size > 1) rc = tool_mpi_agree(rc); /* every process goes on, or none */
    if (n && !rc) tool_progress_end(&pg);
    if (!rc) rc = gather(&j, n);
    if (!rc && rank != 0) goto done; /* rank 0 reports */
    if (!rc && svg) rc = plot(svg, rows, n);
    if (!rc && o.json) rc = report_json(rows, n, model, &o);
    else if (!rc) print_table(rows, n, model);
    if (!rc && svg && !o.json) printf("\nspectrum plot: %s\n", svg);
done:
    for (size_t i = 0; rows && i < n; i++) lr_spectrum_free(&rows[i].sp);
    free(rows), free(idx);
    lr_model_free(&md);
    tool_opts_free(&o);
    tool_mpi_end();
    return rc < 0 ? 0 : rc; /* after --help */
}
