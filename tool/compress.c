/* compress.c — `lowrank compress MODEL --out OUT`: each selected weight P.weight (m, n)
 * becomes P.B.weight (m, r) = U_r·S_r and P.A.weight (r, n) = V_rᵀ, by a fixed rank, an
 * energy, an error, or a parameter budget allocated across the tensors (rankplan.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tool.h"

#define SUB "compress"
#define F16_MAX 65504.0 /* the largest finite F16 */

static const char help[] =
"usage: " PROG " compress MODEL (--rank R | --energy E | --error X | --budget F) --out OUT\n"
"                         [--max-shard-size SIZE] [options]\n"
"\n"
"MODEL is a .safetensors file, a directory holding model.safetensors or a sharded\n"
"model.safetensors.index.json, or that index file. OUT is written in MODEL's layout: a file\n"
"for one file; for shards a directory with the same shard names (each factor in the shard of\n"
"its tensor) and the index, written last. Tensors are read one at a time: --energy, --error\n"
"and --budget first read every selected tensor for its singular values (no vectors), plan,\n"
"then read them again for the factors the plan keeps; --rank needs one pass.\n"
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
"  --budget-of K   params (default) or macs: multiply-adds per input row. For a weight\n"
"                  applied as y = W.x both are m*n dense and r*(m+n) factored, so the plan\n"
"                  is the same; the report names the unit\n"
"  --out OUT       the compressed checkpoint (written crash-safely; see above)\n"
"  --max-shard-size SIZE  a directory of shards of at most SIZE (5GB, 500MB, 2GiB, bytes)\n"
"\n";

typedef struct {
    const lr_st_tensor *t;
    lr_spectrum sp;      /* pass 1 (not for --rank): the values the plan needs      */
    lr_plan_layer plan;
    const char *svd;     /* how the factors were found: krylov, exact, randomized   */
    double fro;          /* measured ‖W − B·A‖_F with the stored (rounded) factors */
    bool balanced;       /* B = U_r·√S_r, A = √S_r·V_rᵀ: U_r·S_r would overflow the dtype */
    char *name[2];       /* P.B.weight, P.A.weight */
    void *enc[2];        /* under mpirun, on a rank other than 0: B and A encoded, for rank 0 */
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

/* Pass 1: the tensor's singular values (no vectors), for the plan. */
static int analyse(item *it, lr_model *md, const lr_spectrum_opts *so)
{
    lr_err e = { 0 };
    return tool_spectrum(&it->sp, md, it->t, so, &e) ? tool_fail_tensor(SUB, &e, md, it->t->name) : 0;
}

typedef struct {
    item *it;
    lr_model *md;
    const lr_spectrum_opts *so;
    tool_progress *pg;
    int rank, size;      /* under mpirun: item i is rank i % size's */
} pass1;

static int analyse_item(void *ctx, size_t i, size_t worker)
{
    const pass1 *p = ctx;
    (void)worker;
    if ((int)(i % (size_t)p->size) != p->rank) return 0;
    int rc = analyse(&p->it[i], p->md, p->so);
    size_t nb = 0;
    lr_st_tensor_nbytes(p->it[i].t, &nb, NULL);
    tool_lock();
    tool_progress_step(p->pg, i + 1, p->it[i].t->name, (double)nb);
    tool_unlock();
    return rc;
}

/* Under mpirun, after pass 1: every rank gets every spectrum (through rank 0), so that all
 * make the same plan. */
static int share_spectra(const pass1 *p, size_t n)
{
    for (size_t i = 0; p->size > 1 && i < n; i++) {
        int owner = (int)(i % (size_t)p->size);
        lr_spectrum *sp = &p->it[i].sp;
        struct { size_t known; double energy; } h = { sp->known, sp->energy };
        float *s = NULL;
        if (p->rank == owner) s = sp->s;
        if (owner != 0 && p->rank == owner) tool_mpi_send(&h, sizeof h, 0), tool_mpi_send(s, h.known * sizeof *s, 0);
        if (owner != 0 && p->rank == 0) {
            tool_mpi_recv(&h, sizeof h, owner);
            if (!(s = malloc((h.known ? h.known : 1) * sizeof *s))) abort();
            tool_mpi_recv(s, h.known * sizeof *s, owner);
        }
        for (int k = 1; p->rank == 0 && k < p->size; k++)
            if (k != owner) tool_mpi_send(&h, sizeof h, k), tool_mpi_send(s, h.known * sizeof *s, k);
        if (p->rank != 0 && p->rank != owner) {
            tool_mpi_recv(&h, sizeof h, 0);
            if (!(s = malloc((h.known ? h.known : 1) * sizeof *s))) abort();
            tool_mpi_recv(s, h.known * sizeof *s, 0);
        }
        if (p->rank != owner) {
            const lr_st_tensor *t = p->it[i].t;
            lr_err e = { 0 };
            lr_status st = lr_spectrum_from_values(sp, s, h.known, t->shape[0], t->shape[1], h.energy, &e);
            free(s);
            if (st) return tool_fail(SUB, &e);
        }
    }
    return 0;
}

/* --rank R: the plan from the shapes alone (dense where R reaches break-even); the tail and
 * energy come when the tensor is factored. */
static void plan_rank(item *it, size_t r)
{
    size_t m = it->t->shape[0], n = it->t->shape[1], be = 0;
    lr_cost_break_even(&be, m, n, NULL);
    it->plan = (lr_plan_layer){ .rank = r, .dense = r > be, .dense_params = (uint64_t)m * n };
    it->plan.params = it->plan.dense ? it->plan.dense_params : (uint64_t)r * (m + n);
    if (it->plan.dense) it->plan.rank = m < n ? m : n;
}

/* does every value stay finite once stored as dtype? */
static bool fits(const float *x, size_t n, lr_st_dtype dtype)
{
    float lim = dtype == LR_ST_F16 ? (float)F16_MAX : 3.4e38f; /* F16's largest; BF16 and F32 alike */
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(x[i]) <= lim)) return false;
    return true;
}

/* vec <- the top r triplets of w: checked block Krylov by default (tool_factor_rank), else
 * the spectrum route of --method exact / randomized. */
static lr_status triplets(item *it, lr_usv *vec, lr_cmat w, const lr_rows *src, size_t r, const tool_opts *o,
                          bool rank_mode, lr_err *e)
{
    if (o->sp.method == LR_SPECTRUM_AUTO || src) {
        tool_svd_info si;
        lr_status s = tool_factor_rank(vec, &si, w, src, r, o->sp.seed, e);
        it->svd = si.svd;
        if (!s && rank_mode) it->plan.tail = si.tail, it->plan.energy = si.energy;
        return s;
    }
    lr_spectrum sp = { 0 };
    lr_spectrum_opts so = o->sp;
    if (so.rank < r) so.rank = r;
    lr_status s = lr_spectrum_init(&sp, vec, w, &so, e);
    it->svd = sp.exact ? "exact" : "randomized";
    if (!s && rank_mode) it->plan.tail = lr_spectrum_tail(&sp, r), it->plan.energy = sp.energy;
    lr_spectrum_free(&sp);
    return s;
}

/* U_r·S_r can leave F16's range where B·A does not: then √S_r goes to each side. The split is
 * in the header's record, so it is decided before anything is written, from σ_1 (pass 1) or
 * from ‖W‖_F >= σ_1 (--rank, which has no pass 1): |U_r·S_r| <= σ_1. */
static int decide_split(item *it, lr_model *md)
{
    if (it->t->dtype != LR_ST_F16 || it->plan.dense) return 0;
    if (it->sp.known) {
        it->balanced = it->sp.s[0] > F16_MAX;
        return 0;
    }
    lr_err e = { 0 };
    lr_mat w;
    if (tool_load(&w, md, it->t, &e)) return tool_fail(SUB, &e);
    it->balanced = lr_mat_norm_fro(lr_cm(w)) > F16_MAX;
    lr_mat_free(&w);
    return 0;
}

/* Pass 2: B, A at the planned rank, rounded to the tensor's dtype, measured against W, encoded
 * and put into the writer. */
static int factor(item *it, lr_model *md, const tool_opts *o, bool rank_mode, lr_model_writer *wr)
{
    lr_err e = { 0 };
    size_t m = it->t->shape[0], n = it->t->shape[1], r = it->plan.rank, es = lr_st_dtype_bits(it->t->dtype) / 8;
    lr_mat w = { 0 }, b = { 0 }, a = { 0 };
    lr_usv vec = { 0 };
    void *buf[2] = { NULL, NULL };
    tool_src ts;
    lr_rows rows = tool_rows(&ts, md, it->t), *src = tool_streamed(it->t) ? &rows : NULL;
    if (!src && tool_load(&w, md, it->t, &e)) return tool_fail(SUB, &e);
    lr_status s = triplets(it, &vec, lr_cm(w), src, r, o, rank_mode, &e);
    if (!s) s = lr_mat_init(&b, m, r, &e);
    if (!s) s = lr_mat_init(&a, r, n, &e);
    /* decided before the header was written (decide_split) */
    if (!s) s = lr_factor_from_usv(b, a, &vec, r, it->balanced ? LR_SPLIT_BALANCED : LR_SPLIT_US, &e);
    if (!s && (!fits(b.data, m * r, it->t->dtype) || !fits(a.data, r * n, it->t->dtype))) {
        snprintf(e.msg, sizeof e.msg, "the factors at rank %zu exceed %s's range even with sqrt(S) on each side "
                 "(sigma_1 = %g)", r, lr_st_dtype_name(it->t->dtype), (double)vec.s[0]);
        s = LR_ERANGE;
    }
    if (!s) {
        tool_round(b.data, m * r, it->t->dtype);
        tool_round(a.data, r * n, it->t->dtype);
        it->fro = sqrt(src ? tool_residual2_rows(src, lr_cm(b), lr_cm(a), &e) : tool_residual2(lr_cm(w), lr_cm(b), lr_cm(a)));
        if (isnan(it->fro) && !e.msg[0]) s = LR_ENOMEM, snprintf(e.msg, sizeof e.msg, "out of memory");
        else if (isnan(it->fro)) s = LR_EIO;
    }
    if (!s) {
        buf[0] = malloc(m * r * es), buf[1] = malloc(r * n * es);
        if (!buf[0] || !buf[1]) snprintf(e.msg, sizeof e.msg, "out of memory"), s = LR_ENOMEM;
    }
    if (!s) s = lr_st_encode_f32(buf[0], it->t->dtype, b.data, m * r, &e);
    if (!s) s = lr_st_encode_f32(buf[1], it->t->dtype, a.data, r * n, &e);
    tool_lock(); /* one writer for every worker */
    if (!s && wr) s = lr_model_writer_put(wr, it->name[0], buf[0], m * r * es, &e);
    if (!s && wr) s = lr_model_writer_put(wr, it->name[1], buf[1], r * n * es, &e);
    tool_unlock();
    if (!s && !wr) it->enc[0] = buf[0], it->enc[1] = buf[1], buf[0] = buf[1] = NULL; /* rank 0 puts them */
    lr_mat_free(&w), lr_mat_free(&b), lr_mat_free(&a);
    lr_usv_free(&vec);
    free(buf[0]), free(buf[1]);
    return s ? tool_failf(SUB, "%s: %s: %s", lr_model_file_of(md, it->t->name), it->t->name, e.msg) : 0;
}

/* The output's tensors in the model's order, each with its source's shard: factored ones as
 * P.B.weight (m, r) and P.A.weight (r, n), the rest as they are. */
static int out_entries(lr_model_entry **out, size_t *nout, lr_model *md, item *it, size_t n, size_t max_shard)
{
    size_t nt = lr_model_count(md), k = 0;
    lr_model_entry *e = calloc(nt + n + 1, sizeof *e);
    if (!e) return tool_failf(SUB, "out of memory");
    for (size_t i = 0, j = 0; i < nt; i++) {
        const lr_st_tensor *src = lr_model_at(md, i);
        item *f = j < n && it[j].t == src ? &it[j++] : NULL; /* items are in the model's order */
        if (!f || f->plan.dense) {
            e[k] = tool_entry(md, src, *src, max_shard);
            e[k++].t.data = NULL;
            continue;
        }
        for (int q = 0; q < 2; q++) {
            if (!f->name[q] && !(f->name[q] = factor_name(src->name, q ? 'A' : 'B'))) {
                free(e);
                return tool_failf(SUB, "out of memory");
            }
            if (lr_model_find(md, f->name[q])) {
                free(e);
                return tool_failf(SUB, "%s: %s: the factor's name %s is already a tensor of the model",
                                  lr_model_file_of(md, src->name), src->name, f->name[q]);
            }
            size_t m = src->shape[0], nn = src->shape[1], r = f->plan.rank;
            lr_st_tensor t = { .name = f->name[q], .dtype = src->dtype, .ndim = 2, .shape = { q ? r : m, q ? nn : r } };
            e[k++] = tool_entry(md, src, t, max_shard);
        }
    }
    *out = e, *nout = k;
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

typedef struct {
    const tool_compress_args *a;
    tool_opts *o;
    lr_model *md;
    item **of;           /* (nt) the item of tensor i, or NULL */
    lr_model_writer *w;  /* rank 0's; NULL on the others */
    tool_progress *pg;
    int rank, size;      /* under mpirun: factored tensor i is rank i % size's; copies rank 0's */
} job;

/* Pass 2, tensor i: factor what the plan keeps, copy the rest. */
static int write_item(void *ctx, size_t i, size_t worker)
{
    const job *j = ctx;
    const lr_st_tensor *src = lr_model_at(j->md, i);
    item *f = j->of[i];
    bool rank_mode = j->a->plan.kind == LR_PLAN_RANK;
    lr_err err = { 0 };
    int rc = 0;
    (void)worker;
    bool mine = f && !f->plan.dense ? (int)(i % (size_t)j->size) == j->rank : j->rank == 0;
    if (!mine) return 0;
    if (f && !f->plan.dense) {
        rc = factor(f, j->md, j->o, rank_mode, j->w);
    } else if (tool_copy_tensor(j->w, j->md, src, &err)) {
        rc = tool_fail(SUB, &err);
    } else if (f && rank_mode) { /* dense at this rank: its energy still counts in the totals */
        lr_mat x;
        if (tool_load(&x, j->md, src, &err)) rc = tool_fail(SUB, &err);
        else f->plan.energy = lr_mat_norm_fro(lr_cm(x)) * lr_mat_norm_fro(lr_cm(x)), lr_mat_free(&x);
    }
    tool_lock();
    tool_progress_step(j->pg, i + 1, src->name, tool_bytes_of(j->md, &i, 1));
    tool_unlock();
    return rc;
}

/* Under mpirun, after pass 2: the factors the other ranks made, to rank 0's writer, in order. */
static int gather_factors(const job *j, size_t nt, bool rank_mode)
{
    for (size_t i = 0; j->size > 1 && i < nt; i++) {
        item *f = j->of[i];
        int owner = (int)(i % (size_t)j->size);
        if (!f || f->plan.dense || owner == 0 || (j->rank != 0 && j->rank != owner)) continue;
        size_t m = f->t->shape[0], n = f->t->shape[1], r = f->plan.rank, es = lr_st_dtype_bits(f->t->dtype) / 8;
        size_t nb[2] = { m * r * es, r * n * es };
        struct { double fro, tail, energy; int svd; } h = { f->fro, f->plan.tail, f->plan.energy, 0 };
        if (j->rank == owner) {
            h.svd = f->svd && !strcmp(f->svd, "exact") ? 1 : f->svd && !strcmp(f->svd, "randomized") ? 2 : 0;
            tool_mpi_send(&h, sizeof h, 0), tool_mpi_send(f->enc[0], nb[0], 0), tool_mpi_send(f->enc[1], nb[1], 0);
            free(f->enc[0]), free(f->enc[1]), f->enc[0] = f->enc[1] = NULL;
            continue;
        }
        tool_mpi_recv(&h, sizeof h, owner);
        static const char *const svd[3] = { "krylov", "exact", "randomized" };
        f->fro = h.fro, f->svd = svd[h.svd % 3];
        if (rank_mode) f->plan.tail = h.tail, f->plan.energy = h.energy;
        lr_err e = { 0 };
        lr_status s = LR_OK;
        for (int q = 0; q < 2 && !s; q++) {
            void *buf = malloc(nb[q] ? nb[q] : 1);
            if (!buf) abort(); /* MPI itself would not survive this either */
            tool_mpi_recv(buf, nb[q], owner);
            s = lr_model_writer_put(j->w, f->name[q], buf, nb[q], &e);
            free(buf);
        }
        if (s) return tool_fail(SUB, &e);
    }
    return 0;
}

/* Pass 2 over the model: the writer gets every output tensor, in any order (each has its
 * place in the header), then commits. */
static int write_out(const tool_compress_args *a, tool_opts *o, lr_model *md, item *it, size_t n, int rank, int size)
{
    lr_model_entry *e = NULL;
    size_t ne = 0, nt = lr_model_count(md);
    lr_model_writer w = { 0 };
    tool_progress pg = { 0 };
    job j = { a, o, md, calloc(nt + 1, sizeof(item *)), rank == 0 ? &w : NULL, &pg, rank, size };
    int rc = j.of ? out_entries(&e, &ne, md, it, n, a->max_shard) : tool_failf(SUB, "out of memory");
    for (size_t i = 0, k = 0; !rc && i < nt; i++)
        if (k < n && it[k].t == lr_model_at(md, i)) j.of[i] = &it[k++];
    char *rec = rc ? NULL : record(a, it, n);
    if (!rc && rank == 0) rc = tool_writer_init(SUB, &w, a->out, md, e, ne, rec, a->max_shard);
    size_t *all = malloc((nt + 1) * sizeof *all);
    for (size_t i = 0; all && i < nt; i++) all[i] = i;
    if (!rc) tool_progress_init(&pg, o->progress && rank == 0, nt, all ? tool_bytes_of(md, all, nt) : 0);
    free(all);
    if (rank != 0) pg.on = false;
    rc = tool_mpi_agree(rc); /* rank 0's writer is open, or every rank stops */
    if (!rc) rc = tool_parallel(nt, tool_workers(o->threads), write_item, &j);
    rc = tool_mpi_agree(rc);
    if (nt && !rc) tool_progress_end(&pg);
    if (!rc) rc = gather_factors(&j, nt, a->plan.kind == LR_PLAN_RANK);
    if (!rc && rank != 0) goto done;
    for (size_t i = 0; i < n && !rc; i++)
        if (it[i].balanced)
            tool_note(o, SUB, it[i].t->name, "stored as B = U_r sqrt(S_r), A = sqrt(S_r) V_r^T: U_r S_r exceeds "
                      "the dtype's range (recorded in __metadata__ as balanced_split)");
    lr_err err = { 0 };
    if (!rc && lr_model_writer_commit(&w, &err)) rc = tool_fail(SUB, &err);
done:
    lr_model_writer_free(&w);
    free(e), free(rec), free(j.of);
    return rc;
}

static double rel(double fro2, double energy)
{
    return energy > 0 ? sqrt(fro2 / energy) : 0;
}

static void print_table(const tool_compress_args *a, const item *it, size_t n, const lr_plan_total *tot)
{
    const char *unit = a->macs ? "MACs/row" : "params";
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
        lr_cli_json_set(r, "svd", json_string(x->svd ? x->svd : "none"), &ok);
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
    lr_cli_json_set(js, "unit", json_string(a->macs ? "macs_per_row" : "params"), &ok);
    lr_cli_json_set(js, "tensors", ts, &ok);
    lr_cli_json_set(js, "totals", t, &ok);
    lr_cli_json_set(js, "skipped", json_incref(o->notes), &ok);
    int rc = ok ? tool_json_print(js) : tool_failf(SUB, "out of memory building the JSON report");
    json_decref(js);
    return rc;
}

/* --rank: the totals, once every tensor's tail is known. */
static void totals(const item *it, size_t n, lr_plan_total *tot)
{
    *tot = (lr_plan_total){ 0 };
    for (size_t i = 0; i < n; i++) {
        tot->dense_params += it[i].plan.dense_params, tot->params += it[i].plan.params;
        tot->tail += it[i].plan.tail, tot->energy += it[i].plan.energy;
    }
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
    lr_model md = { 0 };
    size_t n = 0, *idx = NULL, cap = tool_msg_cap(argc, argv);
    item *it = NULL;
    lr_plan_total tot = { 0 };
    tool_progress pg = { 0 };
    int rank, size;
    tool_mpi_start(&rank, &size);
    char *msg = malloc(cap);
    int rc = msg ? tool_parsed(SUB, tool_compress_parse(argc, argv, &o, &a, msg, cap), msg, help, true)
                 : tool_failf(SUB, "out of memory");
    free(msg);
    if (!rc) rc = tool_check_out(SUB, a.out, &a.model, 1);
    bool rank_mode = a.plan.kind == LR_PLAN_RANK;
    if (!rc) tool_threads(o.threads);
    if (!rc) rc = tool_open(SUB, &md, a.model);
    if (!rc) rc = tool_check_out_model(SUB, a.out, &md);
    if (!rc) rc = tool_candidates(&o, SUB, &md, &idx, &n);
    if (!rc && !(it = calloc(n ? n : 1, sizeof *it))) rc = tool_failf(SUB, "out of memory");
    if (!rc && n == 0) rc = tool_failf(SUB, "%s: no 2-D floating tensor is selected", a.model);
    if (!rc && !rank_mode) tool_progress_init(&pg, o.progress && rank == 0, n, tool_bytes_of(&md, idx, n));
    if (rank != 0) pg.on = false;
    for (size_t i = 0; i < n && !rc; i++) {
        it[i].t = lr_model_at(&md, idx[i]);
        size_t m = it[i].t->shape[0], nn = it[i].t->shape[1], k = m < nn ? m : nn;
        if (rank_mode && a.plan.rank > k) /* before any SVD */
            rc = tool_failf(SUB, "%s: %s: rank %zu exceeds min(%zu, %zu) = %zu", lr_model_file_of(&md, it[i].t->name),
                            it[i].t->name, a.plan.rank, m, nn, k);
        else if (rank_mode) plan_rank(&it[i], a.plan.rank);
    }
    pass1 p1 = { it, &md, &o.sp, &pg, rank, size }; /* pass 1: values for the plan (not for --rank) */
    if (!rc && !rank_mode) rc = tool_parallel(n, tool_workers(o.threads), analyse_item, &p1);
    if (!rank_mode && size > 1) rc = tool_mpi_agree(rc);
    if (!rc && !rank_mode) rc = share_spectra(&p1, n);
    if (!rc && !rank_mode && n) tool_progress_end(&pg);
    if (!rc && !rank_mode) rc = plan(&a, it, n, &tot);
    for (size_t i = 0; i < n && !rc; i++) rc = decide_split(&it[i], &md);
    if (!rc) rc = write_out(&a, &o, &md, it, n, rank, size);
    if (!rc && rank_mode) totals(it, n, &tot);
    if (!rc && rank == 0 && o.json) rc = report_json(&a, it, n, &tot, &o);
    else if (!rc && rank == 0) print_table(&a, it, n, &tot);
    for (size_t i = 0; it && i < n; i++) {
        lr_spectrum_free(&it[i].sp);
        free(it[i].name[0]), free(it[i].name[1]), free(it[i].enc[0]), free(it[i].enc[1]);
    }
    free(it), free(idx);
    lr_model_free(&md);
    tool_opts_free(&o);
    tool_mpi_end();
    return rc < 0 ? 0 : rc; /* after --help */
}
