/* extract.c — `lowrank extract BASE TUNED --out DIR`: a PEFT LoRA adapter holding the best
 * rank-r approximation of ΔW = TUNED − BASE for every 2-D weight that differs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tool.h"

#define SUB "extract"

static const char help[] =
"usage: " PROG " extract BASE TUNED (--rank R | --energy E | --error X) --out ADAPTER_DIR [options]\n"
"\n"
"BASE and TUNED are each a .safetensors file, a directory holding model.safetensors or a\n"
"sharded model.safetensors.index.json, or that index file; they are read one tensor at a\n"
"time. For every selected 2-D weight P.weight that differs, factors dW = TUNED - BASE as\n"
"B = U_r.S_r, A = V_r^T and writes a PEFT adapter directory (adapter_model.safetensors +\n"
"adapter_config.json) with lora_alpha = r per layer, so the scale is 1 and W + B.A\n"
"approximates the tuned weight. Layers of different ranks go to rank_pattern. The two\n"
"models must hold the same tensor names, shapes and dtypes. A changed tensor that is not a\n"
"2-D floating weight (a norm, a bias), or an input embedding without --embed, is not made a\n"
"LoRA layer: it is named in a note and under \"changed_other\" in --json.\n"
"\n"
"With --rank and --method auto (the default) the factors come from a randomized block\n"
"Krylov SVD (block R, depth 4) whose own figures bound its error: kept when they put it\n"
"within 1.001x of the optimal rank-R error, else the exact SVD is taken (the JSON's \"svd\"\n"
"says which). --method exact forces LAPACK; --method randomized uses --svd-rank values.\n"
"\n"
"  --rank R        the same rank for every layer (at most min(m, n))\n"
"  --energy E      per layer, the smallest rank keeping the fraction E of ||dW||_F^2\n"
"  --error X       per layer, the smallest rank with ||dW - BA||_F / ||dW||_F <= X\n"
"  --dtype D       F32 (default), F16 or BF16 for the adapter's tensors\n"
"  --embed         also a changed input embedding (embed_tokens, wte, word_embeddings), as\n"
"                  PEFT's lora_embedding_A (r, vocab) / lora_embedding_B (dim, r)\n"
"  --out DIR       the adapter directory (created if missing; written crash-safely)\n"
"\n";

/* "F32 (40, 30)": a tensor's dtype and shape, for messages */
static const char *describe(char *buf, size_t cap, const lr_st_tensor *t)
{
    size_t k = (size_t)snprintf(buf, cap, "%s (", lr_st_dtype_name(t->dtype));
    for (size_t d = 0; d < t->ndim && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%zu", d ? ", " : "", t->shape[d]);
    if (k < cap) snprintf(buf + k, cap - k, ")");
    return buf;
}

/* Same names, shapes and dtypes in both models; a message names the first difference. */
static int check_match(lr_model *base, lr_model *tuned)
{
    lr_model *f[2] = { base, tuned };
    for (int q = 0; q < 2; q++)
        for (size_t i = 0; i < lr_model_count(f[q]); i++) {
            const lr_st_tensor *t = lr_model_at(f[q], i), *u = lr_model_find(f[!q], t->name);
            if (!u)
                return tool_failf(SUB, "%s: tensor %s is missing (it is in %s)", lr_model_path(f[!q]), t->name,
                                  lr_model_file_of(f[q], t->name));
            bool same = t->ndim == u->ndim && t->dtype == u->dtype;
            for (size_t d = 0; same && d < t->ndim; d++) same = t->shape[d] == u->shape[d];
            char dt[128], du[128];
            if (!same)
                return tool_failf(SUB, "%s: %s differs between the models: %s in %s, %s in %s "
                                  "(shapes and dtypes must match)", lr_model_path(tuned), t->name,
                                  describe(dt, sizeof dt, t), lr_model_file_of(f[q], t->name),
                                  describe(du, sizeof du, u), lr_model_file_of(f[!q], t->name));
        }
    return 0;
}

/* An input embedding: a LoRA adapter on it is PEFT's lora_embedding_A/B, not lora_A/B. */
static bool is_embedding(const char *name)
{
    return strstr(name, "embed_tokens") || strstr(name, "word_embeddings") || strstr(name, ".wte.") ||
           strstr(name, "embed_in");
}

typedef struct {
    const char *name;
    size_t m, n, r;
    const char *svd;  /* "krylov" (checked), "exact", "randomized" */
    double energy, tail, fro, base_fro; /* ‖ΔW‖², predicted tail, measured ‖ΔW − BA‖, ‖W_base‖ */
    double bound;     /* krylov: the accepted bound on error / optimum; 0 otherwise */
} layer;

/* Does the spectrum reach the --energy / --error target? *r <- the rank when it does. */
static bool reaches(const tool_extract_args *a, const lr_spectrum *sp, size_t *r)
{
    bool found = true;
    *r = a->plan.rank;
    if (a->plan.kind == LR_PLAN_ENERGY) lr_spectrum_rank_for_energy(sp, r, &found, a->plan.energy, NULL);
    if (a->plan.kind == LR_PLAN_ERROR) lr_spectrum_rank_for_error(sp, r, &found, a->plan.error, NULL);
    if (*r == 0) *r = 1;
    return found && *r <= sp->known;
}

/* vec <- the top triplets of d and ly->r for an --energy / --error target, or a rank with an
 * explicit --method: the spectrum route (spectrum.h). A randomized spectrum that does not
 * reach the target (its values are lower bounds, the ranks upper bounds) is computed again
 * with twice the values, up to the exact SVD, unless --svd-rank fixed their number. */
static int factor_spectrum(const tool_extract_args *a, const tool_opts *o, lr_usv *vec, layer *ly, lr_cmat d,
                           const char *where, lr_err *e)
{
    lr_spectrum_opts so = o->sp;
    size_t k = d.rows < d.cols ? d.rows : d.cols;
    if (a->plan.kind == LR_PLAN_RANK && so.rank < a->plan.rank) so.rank = a->plan.rank;
    for (;;) {
        lr_spectrum sp = { 0 };
        if (lr_spectrum_init(&sp, vec, d, &so, e)) return tool_failf(SUB, "%s: %s", where, e->msg);
        bool ok = reaches(a, &sp, &ly->r);
        ly->energy = sp.energy, ly->tail = lr_spectrum_tail(&sp, ly->r), ly->svd = sp.exact ? "exact" : "randomized";
        bool exact = sp.exact;
        lr_spectrum_free(&sp);
        if (ok) return 0;
        lr_usv_free(vec);
        if (exact || o->svd_rank_given)
            return tool_failf(SUB, "%s: the %zu singular values computed (randomized) do not reach the target; use "
                              "--method exact or a larger --svd-rank", where, so.rank);
        so.rank *= 2; /* doubling: at most log2(k / 256) more runs, each cheaper than the exact SVD */
        if (so.rank >= k / 2) so.method = LR_SPECTRUM_EXACT;
    }
}

/* What became of one tensor of TUNED. */
enum { SKIPPED, UNCHANGED, EXTRACTED, CHANGED };

typedef struct {
    const tool_extract_args *a;
    tool_opts *o;
    lr_model *bm, *tm;
    layer *ly;           /* (nt) by tensor index */
    float **fa, **fb;    /* (nt) A: (r, n) and B: (m, r) of the extracted ones */
    unsigned char *kind; /* (nt) */
    unsigned char *emb;  /* (nt) extracted as an embedding (--embed) */
    tool_scratch *scr;   /* (workers) */
    tool_progress *pg;
    int rank, size;      /* under mpirun: tensor i is rank i % size's */
} job;

/* ΔW of one tensor: B, A and its layer row (or nothing when ΔW = 0) */
static int extract_one(const job *j, const lr_st_tensor *t, size_t i, tool_scratch *scr)
{
    const tool_extract_args *a = j->a;
    layer *ly = &j->ly[i];
    lr_err e = { 0 };
    lr_mat wb, d, b = { 0 }, A = { 0 };
    lr_usv vec = { 0 };
    char where[1200];
    size_t m = t->shape[0], n = t->shape[1];
    snprintf(where, sizeof where, "%s: %s", lr_model_file_of(j->tm, t->name), t->name);
    *ly = (layer){ .name = t->name, .m = m, .n = n, .r = a->plan.rank };
    if (tool_load_into(&wb, scr, 0, j->bm, lr_model_find(j->bm, t->name), &e) || tool_load_into(&d, scr, 1, j->tm, t, &e))
        return tool_fail(SUB, &e); /* names the file and the tensor */
    bool any = false;
    for (size_t k = 0; k < m * n; k++) any |= (d.data[k] -= wb.data[k]) != 0;
    if (!any) return j->kind[i] = UNCHANGED, 0; /* equal as floats, if not as bytes (-0, NaN payloads) */
    if (a->plan.kind == LR_PLAN_RANK && a->plan.rank > (m < n ? m : n))
        return tool_failf(SUB, "%s: rank %zu exceeds min(%zu, %zu) = %zu", where, a->plan.rank, m, n, m < n ? m : n);
    ly->base_fro = lr_mat_norm_fro(lr_cm(wb));
    int rc = 0;
    lr_status s = LR_OK;
    if (a->plan.kind == LR_PLAN_RANK && j->o->sp.method == LR_SPECTRUM_AUTO) {
        tool_svd_info si;
        s = tool_factor_rank(&vec, &si, lr_cm(d), NULL, a->plan.rank, j->o->sp.seed, &e);
        ly->energy = si.energy, ly->tail = si.tail, ly->svd = si.svd, ly->bound = si.bound;
    } else {
        rc = factor_spectrum(a, j->o, &vec, ly, lr_cm(d), where, &e);
    }
    size_t r = ly->r;
    if (!s && !rc) s = lr_mat_init(&b, m, r, &e);
    if (!s && !rc) s = lr_mat_init(&A, r, n, &e);
    if (!s && !rc) s = lr_factor_from_usv(b, A, &vec, r, LR_SPLIT_US, &e);
    if (!s && !rc) {
        tool_round(b.data, m * r, a->dtype);
        tool_round(A.data, r * n, a->dtype);
        ly->fro = sqrt(tool_residual2(lr_cm(d), lr_cm(b), lr_cm(A)));
        if (isnan(ly->fro)) s = LR_ENOMEM, snprintf(e.msg, sizeof e.msg, "out of memory");
    }
    if (!s && !rc) j->fa[i] = A.data, j->fb[i] = b.data, j->kind[i] = EXTRACTED;
    else lr_mat_free(&b), lr_mat_free(&A);
    if (s && !rc) rc = tool_failf(SUB, "%s: %s", where, e.msg);
    lr_usv_free(&vec);
    return rc;
}

/* ΔW = TUNED − BASE of one tensor as a row source: both read a block of rows at a time. */
typedef struct {
    lr_model *bm, *tm;
    const lr_st_tensor *t;
    tool_scratch tmp;    /* BASE's rows, kept from read to read (one run reads the rows 10+ times) */
} delta;

static lr_status delta_read(void *ctx, float *dst, size_t r0, size_t k, lr_err *err)
{
    delta *d = ctx;
    size_t n = d->t->shape[1];
    float *tmp = tool_scratch_get(&d->tmp, 0, k * n);
    if (!tmp) return tool_seterr(err, LR_ENOMEM, "%s: out of memory", d->t->name);
    tool_src sb, st;
    lr_rows rb = tool_rows(&sb, d->bm, lr_model_find(d->bm, d->t->name)), rt = tool_rows(&st, d->tm, d->t);
    lr_status s = rt.read(rt.ctx, dst, r0, k, err);
    if (!s) s = rb.read(rb.ctx, tmp, r0, k, err);
    for (size_t i = 0; !s && i < k * n; i++) dst[i] -= tmp[i];
    return s;
}

/* A tensor too large to hold twice as float32 (an untied lm_head: 2.1 GB a copy): compared
 * as bytes first, then factored from ΔW read a block of rows at a time (checked Krylov, no
 * exact fallback: tool_factor_rank). */
static int extract_streamed(const job *j, const lr_st_tensor *t, size_t i)
{
    const tool_extract_args *a = j->a;
    layer *ly = &j->ly[i];
    size_t m = t->shape[0], n = t->shape[1], r = a->plan.rank;
    bool same = true;
    lr_err e = { 0 };
    if (tool_same_bytes(&same, j->bm, j->tm, t->name, &e)) return tool_fail(SUB, &e);
    if (same) return j->kind[i] = UNCHANGED, 0;
    char where[1200];
    snprintf(where, sizeof where, "%s: %s", lr_model_file_of(j->tm, t->name), t->name);
    if (a->plan.kind != LR_PLAN_RANK || j->o->sp.method != LR_SPECTRUM_AUTO)
        return tool_failf(SUB, "%s: %zu x %zu is too large to hold twice in memory for --energy, --error or --method; "
                          "use --rank with --method auto, or --skip it", where, m, n);
    if (r > (m < n ? m : n))
        return tool_failf(SUB, "%s: rank %zu exceeds min(%zu, %zu) = %zu", where, r, m, n, m < n ? m : n);
    *ly = (layer){ .name = t->name, .m = m, .n = n, .r = r };
    delta dc = { .bm = j->bm, .tm = j->tm, .t = t };
    lr_rows src = { m, n, delta_read, &dc };
    lr_usv vec = { 0 };
    lr_mat b = { 0 }, A = { 0 };
    tool_svd_info si;
    lr_status s = tool_factor_rank(&vec, &si, (lr_cmat){ 0 }, &src, r, j->o->sp.seed, &e);
    if (!s) ly->energy = si.energy, ly->tail = si.tail, ly->svd = si.svd, ly->bound = si.bound;
    if (!s) s = lr_mat_init(&b, m, r, &e);
    if (!s) s = lr_mat_init(&A, r, n, &e);
    if (!s) s = lr_factor_from_usv(b, A, &vec, r, LR_SPLIT_US, &e);
    if (!s) {
        tool_round(b.data, m * r, a->dtype);
        tool_round(A.data, r * n, a->dtype);
        ly->fro = sqrt(tool_residual2_rows(&src, lr_cm(b), lr_cm(A), &e));
        if (isnan(ly->fro)) s = LR_EIO;
    }
    lr_usv_free(&vec);
    tool_scratch_free(&dc.tmp);
    if (!s) {
        tool_src sb;
        lr_rows rb = tool_rows(&sb, j->bm, lr_model_find(j->bm, t->name));
        ly->base_fro = 0; /* ‖W_base‖ a block at a time */
        float *blk = malloc(1024 * n * sizeof *blk);
        for (size_t r0 = 0; blk && !s && r0 < m; r0 += 1024) {
            size_t k = m - r0 < 1024 ? m - r0 : 1024;
            if (!(s = rb.read(rb.ctx, blk, r0, k, &e))) {
                double f = lr_mat_norm_fro(lr_cmat_view(blk, k, n, n));
                ly->base_fro += f * f;
            }
        }
        if (!blk) s = LR_ENOMEM, snprintf(e.msg, sizeof e.msg, "out of memory");
        free(blk);
        ly->base_fro = sqrt(ly->base_fro);
    }
    if (!s) return j->fa[i] = A.data, j->fb[i] = b.data, j->kind[i] = EXTRACTED, 0;
    lr_mat_free(&b), lr_mat_free(&A);
    return tool_fail_tensor(SUB, &e, j->tm, t->name);
}

/* One tensor of TUNED, on worker w. */
static int item(void *ctx, size_t i, size_t w)
{
    const job *j = ctx;
    const lr_st_tensor *t = lr_model_at(j->tm, i);
    const char *why;
    int rc = 0;
    if ((int)(i % (size_t)j->size) != j->rank) return 0; /* another process's */
    if (tool_selected(j->o, t->name)) {
        bool emb = is_embedding(t->name);
        if (tool_is_matrix(t, &why) && (!emb || j->a->embed)) {
            j->emb[i] = emb;
            rc = tool_streamed(t) ? extract_streamed(j, t, i) : extract_one(j, t, i, &j->scr[w]);
        } else {
            bool same = true;
            lr_err e = { 0 };
            if (tool_same_bytes(&same, j->bm, j->tm, t->name, &e)) rc = tool_fail(SUB, &e);
            else j->kind[i] = same ? UNCHANGED : CHANGED;
        }
    }
    tool_lock();
    tool_progress_step(j->pg, i + 1, t->name, 2 * tool_bytes_of(j->tm, &i, 1));
    tool_unlock();
    return rc;
}

static double rel(double fro2, double energy)
{
    return energy > 0 ? sqrt(fro2 / energy) : 0;
}

static int report(const tool_extract_args *a, const layer *ly, size_t n, size_t unchanged, tool_opts *o)
{
    if (!o->json) {
        printf("%-32s %-13s %6s %10s %10s %10s %12s\n", "tensor", "shape", "rank", "energy", "pred.err", "meas.err",
               "|dW|/|W|");
        for (size_t i = 0; i < n; i++) {
            char shape[32];
            snprintf(shape, sizeof shape, "%zux%zu", ly[i].m, ly[i].n);
            printf("%-32s %-13s %6zu %9.4f%% %10.3g %10.3g %12.3g\n", ly[i].name, shape, ly[i].r,
                   100 * (1 - (ly[i].energy > 0 ? ly[i].tail / ly[i].energy : 0)), rel(ly[i].tail, ly[i].energy),
                   rel(ly[i].fro * ly[i].fro, ly[i].energy), ly[i].base_fro > 0 ? sqrt(ly[i].energy) / ly[i].base_fro : 0);
        }
        printf("\n%zu layer%s extracted, %zu tensor%s unchanged; errors are relative to ||dW||_F\nwrote %s/\n", n,
               n == 1 ? "" : "s", unchanged, unchanged == 1 ? "" : "s", a->out);
        return 0;
    }
    bool ok = true;
    json_t *js = json_object(), *ts = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_object();
        lr_cli_json_set(r, "name", json_string(ly[i].name), &ok);
        lr_cli_json_set(r, "shape", tool_json_shape(ly[i].m, ly[i].n), &ok);
        lr_cli_json_set(r, "rank", tool_json_size(ly[i].r), &ok);
        lr_cli_json_set(r, "svd", json_string(ly[i].svd), &ok);
        if (ly[i].bound > 0) lr_cli_json_set(r, "error_bound_vs_optimum", lr_cli_json_real(ly[i].bound), &ok);
        lr_cli_json_set(r, "energy_kept", lr_cli_json_real(1 - (ly[i].energy > 0 ? ly[i].tail / ly[i].energy : 0)), &ok);
        lr_cli_json_set(r, "predicted_rel_error", lr_cli_json_real(rel(ly[i].tail, ly[i].energy)), &ok);
        lr_cli_json_set(r, "measured_rel_error", lr_cli_json_real(rel(ly[i].fro * ly[i].fro, ly[i].energy)), &ok);
        lr_cli_json_set(r, "delta_fro", lr_cli_json_real(sqrt(ly[i].energy)), &ok);
        lr_cli_json_set(r, "base_fro", lr_cli_json_real(ly[i].base_fro), &ok);
        ok = ok && !json_array_append_new(ts, r);
    }
    lr_cli_json_set(js, "command", json_string(SUB), &ok);
    lr_cli_json_set(js, "base", json_string(a->in[0]), &ok);
    lr_cli_json_set(js, "tuned", json_string(a->in[1]), &ok);
    lr_cli_json_set(js, "out", json_string(a->out), &ok);
    lr_cli_json_set(js, "layers", ts, &ok);
    lr_cli_json_set(js, "unchanged", tool_json_size(unchanged), &ok);
    lr_cli_json_set(js, "changed_other", json_incref(o->changed), &ok);
    lr_cli_json_set(js, "skipped", json_incref(o->notes), &ok);
    int rc = ok ? tool_json_print(js) : tool_failf(SUB, "out of memory building the JSON report");
    json_decref(js);
    return rc;
}

/* A selected tensor that is not extracted as a LoRA layer but changed: named in a note and
 * in the JSON's changed_other (1-D norms and biases, embeddings without --embed, ...). */
static void note_changed(tool_opts *o, const lr_st_tensor *t)
{
    const char *why;
    char msg[200];
    if (t->ndim == 1) snprintf(msg, sizeof msg, "changed 1-D tensor (a norm or a bias?): a LoRA adapter cannot hold it");
    else if (is_embedding(t->name) && tool_is_matrix(t, &why))
        snprintf(msg, sizeof msg, "changed embedding: left out; --embed writes it as PEFT's lora_embedding_A/B");
    else snprintf(msg, sizeof msg, "changed, but is not a 2-D floating weight: a LoRA adapter cannot hold it");
    tool_note(o, SUB, t->name, msg);
    json_array_append_new(o->changed, json_string(t->name));
}

/* One tensor's result as it travels from its rank to rank 0. */
typedef struct {
    unsigned char kind, emb, svd; /* svd: 0 krylov, 1 exact, 2 randomized */
    size_t m, n, r;
    double energy, tail, fro, base_fro, bound;
} wire;

static const char *const SVD_NAMES[3] = { "krylov", "exact", "randomized" };

/* Under mpirun: every rank's results to rank 0, in tensor order (rank 0 then holds them all). */
static int gather(const job *j, size_t nt)
{
    for (size_t i = 0; j->size > 1 && i < nt; i++) {
        int owner = (int)(i % (size_t)j->size);
        if (owner == 0 || (j->rank != 0 && j->rank != owner)) continue;
        layer *ly = &j->ly[i];
        wire w = { j->kind[i], j->emb[i], 0, ly->m, ly->n, ly->r, ly->energy, ly->tail, ly->fro, ly->base_fro, ly->bound };
        for (unsigned char k = 0; k < 3; k++)
            if (ly->svd && !strcmp(ly->svd, SVD_NAMES[k])) w.svd = k;
        if (j->rank == owner) {
            tool_mpi_send(&w, sizeof w, 0);
            if (w.kind == EXTRACTED) tool_mpi_send(j->fa[i], w.r * w.n * sizeof(float), 0), tool_mpi_send(j->fb[i], w.m * w.r * sizeof(float), 0);
            continue;
        }
        tool_mpi_recv(&w, sizeof w, owner);
        j->kind[i] = w.kind, j->emb[i] = w.emb;
        *ly = (layer){ lr_model_at(j->tm, i)->name, w.m, w.n, w.r, SVD_NAMES[w.svd % 3], w.energy, w.tail, w.fro,
                       w.base_fro, w.bound };
        if (w.kind != EXTRACTED) continue;
        j->fa[i] = malloc(w.r * w.n * sizeof(float)), j->fb[i] = malloc(w.m * w.r * sizeof(float));
        if (!j->fa[i] || !j->fb[i]) abort(); /* MPI itself would not survive this either */
        tool_mpi_recv(j->fa[i], w.r * w.n * sizeof(float), owner), tool_mpi_recv(j->fb[i], w.m * w.r * sizeof(float), owner);
    }
    return 0;
}

/* ΔW ≈ b·a, b: (m, r), a: (r, n), as the adapter's layer: a LoRA layer A = a, B = b; an
 * embedding (vocab m, dim n; PEFT's ΔW = (B·A)ᵀ) lora_embedding_A = bᵀ: (r, m) and
 * lora_embedding_B = aᵀ: (n, r). */
static lr_status add_layer(lr_peft *ad, const char *module, const layer *ly, const float *a, const float *b, bool emb,
                           lr_err *e)
{
    size_t m = ly->m, n = ly->n, r = ly->r;
    if (!emb) return lr_peft_insert(ad, module, m, n, r, (double)r, a, b, e);
    float *ea = malloc(r * m * sizeof *ea), *eb = malloc(n * r * sizeof *eb);
    lr_status s = ea && eb ? LR_OK : LR_ENOMEM;
    if (s) snprintf(e->msg, sizeof e->msg, "out of memory");
    for (size_t i = 0; !s && i < m; i++)
        for (size_t k = 0; k < r; k++) ea[k * m + i] = b[i * r + k];
    for (size_t k = 0; !s && k < r; k++)
        for (size_t c = 0; c < n; c++) eb[c * r + k] = a[k * n + c];
    if (!s) s = lr_peft_insert_embedding(ad, module, n, m, r, (double)r, ea, eb, e);
    free(ea), free(eb);
    return s;
}

/* The adapter from the workers' results, in TUNED's order (so the notes and the file are the
 * same for any thread count or shard layout). */
static int collect(const job *j, size_t nt, lr_peft *ad, layer *out, size_t *n, size_t *unchanged)
{
    for (size_t i = 0; i < nt; i++) {
        const lr_st_tensor *t = lr_model_at(j->tm, i);
        lr_err e = { 0 };
        char module[1024];
        if (j->kind[i] == UNCHANGED) ++*unchanged;
        if (j->kind[i] == CHANGED) note_changed(j->o, t);
        if (j->kind[i] != EXTRACTED) continue;
        const layer *ly = &j->ly[i];
        if (lr_peft_module_of(module, sizeof module, t->name, &e) || add_layer(ad, module, ly, j->fa[i], j->fb[i],
                                                                                j->emb[i], &e))
            return tool_failf(SUB, "%s: %s: %s", lr_model_file_of(j->tm, t->name), t->name, e.msg);
        free(j->fa[i]), free(j->fb[i]); /* the adapter holds its copy */
        j->fa[i] = j->fb[i] = NULL;
        out[(*n)++] = *ly;
    }
    return 0;
}

static int run(const tool_extract_args *a, tool_opts *o, lr_model *bm, lr_model *tm, lr_peft *ad, int rank, int size)
{
    size_t nt = lr_model_count(tm), n = 0, unchanged = 0, nw = tool_workers(o->threads);
    tool_progress pg = { 0 };
    job j = { a, o, bm, tm, calloc(nt + 1, sizeof(layer)), calloc(nt + 1, sizeof(float *)),
              calloc(nt + 1, sizeof(float *)), calloc(nt + 1, 1), calloc(nt + 1, 1), calloc(nw, sizeof(tool_scratch)),
              &pg, rank, size };
    layer *ly = calloc(nt + 1, sizeof *ly);
    size_t *all = malloc((nt + 1) * sizeof *all);
    int rc = j.ly && j.fa && j.fb && j.kind && j.emb && j.scr && ly && all ? check_match(bm, tm) : tool_failf(SUB, "out of memory");
    for (size_t i = 0; all && i < nt; i++) all[i] = i;
    if (!rc) tool_progress_init(&pg, o->progress && rank == 0, nt, 2 * tool_bytes_of(tm, all, nt));
    if (rank != 0) pg.on = false;
    if (!rc) rc = tool_parallel(nt, nw, item, &j);
    rc = tool_mpi_agree(rc); /* every process goes on, or none */
    if (!rc && nt) tool_progress_end(&pg);
    if (!rc) rc = gather(&j, nt);
    if (!rc && j.rank != 0) goto done; /* rank 0 writes and reports */
    if (!rc) rc = collect(&j, nt, ad, ly, &n, &unchanged);
    if (!rc && n == 0)
        rc = tool_failf(SUB, "%s and %s: no selected 2-D weight differs: nothing to extract", a->in[0], a->in[1]);
    lr_err e = { 0 };
    if (!rc) {
        ad->base_model = malloc(strlen(a->in[0]) + 1);
        if (ad->base_model) strcpy(ad->base_model, a->in[0]);
        if (lr_peft_write(ad, a->out, a->dtype, &e)) rc = tool_fail(SUB, &e);
    }
    if (!rc) rc = report(a, ly, n, unchanged, o);
done:
    for (size_t i = 0; i < nt; i++) free(j.fa ? j.fa[i] : NULL), free(j.fb ? j.fb[i] : NULL);
    for (size_t w = 0; j.scr && w < nw; w++) tool_scratch_free(&j.scr[w]);
    free(j.ly), free(j.fa), free(j.fb), free(j.kind), free(j.emb), free(j.scr), free(ly), free(all);
    return rc;
}

int tool_extract(int argc, char **argv)
{
    tool_opts o;
    tool_opts_init(&o);
    tool_extract_args a = { 0 };
    lr_model bm = { 0 }, tm = { 0 };
    lr_peft ad = { 0 };
    int rank, size;
    tool_mpi_start(&rank, &size);
    size_t cap = tool_msg_cap(argc, argv);
    char *msg = malloc(cap);
    int rc = msg ? tool_parsed(SUB, tool_extract_parse(argc, argv, &o, &a, msg, cap), msg, help, true)
                 : tool_failf(SUB, "out of memory");
    free(msg);
    if (!rc) rc = tool_check_out(SUB, a.out, a.in, 2);
    if (!rc) tool_threads(o.threads);
    if (!rc) rc = tool_open(SUB, &bm, a.in[0]);
    if (!rc) rc = tool_open(SUB, &tm, a.in[1]);
    if (!rc) rc = run(&a, &o, &bm, &tm, &ad, rank, size);
    lr_peft_free(&ad);
    lr_model_free(&bm), lr_model_free(&tm);
    tool_opts_free(&o);
    tool_mpi_end();
    return rc < 0 ? 0 : rc; /* after --help */
}
