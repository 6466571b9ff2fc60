/* common.c — what every `lowrank` subcommand shares (tool.h). */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "tool.h"

const char tool_common_help[] =
"Tensor selection and SVD:\n"
"  --only REGEX       only tensors whose name matches (POSIX extended regex, unanchored);\n"
"                     naming a tensor that is not 2-D floating (--only a.bias) is an error\n"
"  --skip REGEX       leave out tensors whose name matches\n"
"  --method M         singular values: auto (exact up to 2048x2048 = 4,194,304 entries,\n"
"                     randomized above), exact (LAPACK sgesdd), randomized (block Krylov)\n"
"  --svd-rank K       values the randomized method computes (default 256)\n"
"  --seed N           seed of the randomized method (default 0)\n"
"  --threads N        threads for the SVDs and products (OpenBLAS; default: all cores)\n"
"  --progress         a line per tensor on stderr (shown anyway when stderr is a terminal)\n"
"  --json             one JSON object on stdout instead of the table\n"
"  --help             this text\n";

int tool_usage(const char *sub, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG "%s%s: ", sub ? " " : "", sub ? sub : "");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '" PROG "%s%s --help'.\n", sub ? " " : "", sub ? sub : "");
    return LR_CLI_USAGE;
}

int tool_fail(const char *sub, const lr_err *e)
{
    tool_lock();
    fprintf(stderr, PROG " %s: %s\n", sub, e->msg[0] ? e->msg : "failed");
    tool_unlock();
    return LR_CLI_RUNTIME;
}

int tool_failf(const char *sub, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tool_lock();
    fprintf(stderr, PROG " %s: ", sub);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    tool_unlock();
    va_end(ap);
    return LR_CLI_RUNTIME;
}

static int notes_off;
void tool_notes_off(void) { notes_off = 1; }

void tool_note(tool_opts *o, const char *sub, const char *tensor, const char *why)
{
    tool_lock();
    if (!notes_off) fprintf(stderr, PROG " %s: note: %s: %s\n", sub, tensor, why);
    json_t *n = json_object();
    if (n && !json_object_set_new(n, "tensor", json_string(tensor)) &&
        !json_object_set_new(n, "reason", json_string(why)))
        json_array_append(o->notes, n);
    json_decref(n);
    tool_unlock();
}

bool tool_is_matrix(const lr_st_tensor *t, const char **why)
{
    bool fl = t->dtype == LR_ST_F32 || t->dtype == LR_ST_F16 || t->dtype == LR_ST_BF16 || t->dtype == LR_ST_F64;
    *why = !fl ? "passed over: not F32, F16, BF16 or F64"
         : t->ndim != 2 ? "passed over: not 2-D"
         : t->shape[0] == 0 || t->shape[1] == 0 ? "passed over: empty" : NULL;
    return *why == NULL;
}

bool tool_selected(const tool_opts *o, const char *name)
{
    if (o->has_only && regexec(&o->only, name, 0, NULL, 0) != 0) return false;
    if (o->has_skip && regexec(&o->skip, name, 0, NULL, 0) == 0) return false;
    return true;
}

/* Is name one of the '|'-separated alternatives of the --only text, literally? */
static bool named(const char *only, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = only; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

int tool_fail_tensor(const char *sub, const lr_err *e, const lr_model *m, const char *name)
{
    if (strstr(e->msg, name)) return tool_fail(sub, e); /* the reader's: names the file and the tensor */
    return tool_failf(sub, "%s: %s: %s", lr_model_file_of(m, name), name, e->msg);
}

int tool_open(const char *sub, lr_model *m, const char *path)
{
    lr_err e = { 0 };
    return lr_model_open(m, path, &e) ? tool_fail(sub, &e) : 0;
}

int tool_candidates(tool_opts *o, const char *sub, lr_model *m, size_t **out, size_t *count)
{
    size_t n = lr_model_count(m), c = 0;
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx) return tool_failf(sub, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const lr_st_tensor *t = lr_model_at(m, i);
        const char *why;
        if (!tool_selected(o, t->name)) continue;
        if (tool_is_matrix(t, &why)) {
            idx[c++] = i;
            continue;
        }
        char msg[160];
        snprintf(msg, sizeof msg, "%s (%s, %zu-D)", why, lr_st_dtype_name(t->dtype), t->ndim);
        if (named(o->only_text, t->name)) { /* asked for by name: an error, not a note */
            free(idx);
            return tool_failf(sub, "%s: %s, selected by --only, is not a 2-D floating tensor: %s",
                              lr_model_file_of(m, t->name), t->name, msg + strlen("passed over: "));
        }
        tool_note(o, sub, t->name, msg);
    }
    *out = idx, *count = c;
    return 0;
}

/* Every entry finite? A branch-free scan first (the compiler vectorises it); the entry and
 * the message only when one is not. */
static lr_status check_finite(lr_cmat w, lr_model *m, const char *name, lr_err *err)
{
    unsigned bad = 0;
    for (size_t i = 0; i < w.rows * w.cols; i++) {
        uint32_t u;
        memcpy(&u, &w.data[i], 4);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    if (!bad) return LR_OK;
    char where[1200];
    snprintf(where, sizeof where, "%s: %s", lr_model_file_of(m, name), name);
    return lr_mat_check_finite(w, where, err);
}

lr_status tool_load(lr_mat *w, lr_model *m, const lr_st_tensor *t, lr_err *err)
{
    lr_status s = lr_mat_init(w, t->shape[0], t->shape[1], err);
    if (!s) s = lr_model_get_f32(m, w->data, t->name, 2, t->shape, err);
    if (!s) s = check_finite(lr_cm(*w), m, t->name, err);
    if (s) lr_mat_free(w);
    return s;
}

/* A tensor of the model as an lr_rows source: blocks of rows read from the file, checked finite. */
static lr_status rows_read(void *ctx, float *dst, size_t r0, size_t k, lr_err *err)
{
    tool_src *s = ctx;
    lr_status st = lr_model_get_f32_rows(s->m, dst, s->t->name, r0, k, err);
    size_t n = s->t->shape[1];
    for (size_t i = 0; !st && i < k * n; i++)
        if (!isfinite(dst[i]))
            st = tool_seterr(err, LR_ENONFINITE, "%s: %s: entry (%zu,%zu) is %s", lr_model_file_of(s->m, s->t->name),
                               s->t->name, r0 + i / n, i % n, isnan(dst[i]) ? "NaN" : dst[i] > 0 ? "+Inf" : "-Inf");
    return st;
}

lr_rows tool_rows(tool_src *s, lr_model *m, const lr_st_tensor *t)
{
    *s = (tool_src){ m, t };
    return (lr_rows){ t->shape[0], t->shape[1], rows_read, s };
}

bool tool_streamed(const lr_st_tensor *t)
{
    return (double)t->shape[0] * (double)t->shape[1] * 4 > TOOL_STREAM_BYTES;
}

lr_status tool_spectrum(lr_spectrum *sp, lr_model *m, const lr_st_tensor *t, const lr_spectrum_opts *o, lr_err *err)
{
    if (tool_streamed(t)) {
        tool_src src;
        lr_rows rows = tool_rows(&src, m, t);
        return lr_spectrum_init_rows(sp, &rows, o, err);
    }
    lr_mat w;
    lr_status s = tool_load(&w, m, t, err);
    if (!s) s = lr_spectrum_init(sp, NULL, lr_cm(w), o, err);
    lr_mat_free(&w);
    return s;
}

float *tool_scratch_get(tool_scratch *s, int k, size_t n)
{
    if (s->cap[k] >= n && s->p[k]) return s->p[k];
    free(s->p[k]);
    s->p[k] = malloc((n ? n : 1) * sizeof(float));
    s->cap[k] = s->p[k] ? n : 0;
    return s->p[k];
}

void tool_scratch_free(tool_scratch *s)
{
    for (int k = 0; k < 3; k++) free(s->p[k]);
    memset(s, 0, sizeof *s);
}

lr_status tool_load_into(lr_mat *w, tool_scratch *s, int k, lr_model *m, const lr_st_tensor *t, lr_err *err)
{
    size_t r = t->shape[0], c = t->shape[1];
    float *p = tool_scratch_get(s, k, r * c);
    if (!p) return snprintf(err->msg, sizeof err->msg, "%s: %s: out of memory", lr_model_file_of(m, t->name), t->name),
                  LR_ENOMEM;
    *w = (lr_mat){ p, r, c, c };
    lr_status st = lr_model_get_f32(m, p, t->name, 2, t->shape, err);
    return st ? st : check_finite(lr_cm(*w), m, t->name, err);
}

double tool_residual2_rows(const lr_rows *src, lr_cmat b, lr_cmat a, lr_err *err)
{
    const size_t rows = 1024;
    lr_mat e;
    if (lr_mat_init(&e, rows < src->rows ? rows : src->rows, src->cols, err)) return NAN;
    /* e: (rows, n) = a block of src − b·a */
    double acc = 0;
    for (size_t i0 = 0; i0 < src->rows; i0 += rows) {
        size_t k = src->rows - i0 < rows ? src->rows - i0 : rows;
        lr_mat eb = { e.data, k, src->cols, e.ld };
        if (src->read(src->ctx, eb.data, i0, k, err)) {
            acc = NAN;
            break;
        }
        lr_gemm(eb, -1.0f, (lr_cmat){ b.data + i0 * b.ld, k, b.cols, b.ld }, false, a, false, 1.0f, NULL);
        double f = lr_mat_norm_fro(lr_cm(eb));
        acc += f * f;
    }
    lr_mat_free(&e);
    return acc;
}

/* rows [r0, r0 + k) of the matrix at ctx (an lr_cmat) */
static lr_status mem_read(void *ctx, float *dst, size_t r0, size_t k, lr_err *err)
{
    const lr_cmat *d = ctx;
    (void)err;
    for (size_t i = 0; i < k; i++) memcpy(dst + i * d->cols, d->data + (r0 + i) * d->ld, d->cols * sizeof *dst);
    return LR_OK;
}

double tool_residual2(lr_cmat d, lr_cmat b, lr_cmat a)
{
    lr_rows src = { d.rows, d.cols, mem_read, &d };
    return tool_residual2_rows(&src, b, a, NULL);
}

lr_status tool_seterr(lr_err *err, lr_status s, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return s;
}

static pthread_mutex_t tool_mu = PTHREAD_MUTEX_INITIALIZER;
void tool_lock(void) { pthread_mutex_lock(&tool_mu); }
void tool_unlock(void) { pthread_mutex_unlock(&tool_mu); }

size_t tool_workers(size_t threads_opt)
{
    if (threads_opt) return threads_opt;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (size_t)n : 1;
}

typedef struct {
    size_t n, next, fail_at;
    int fail_rc;
    tool_item_fn fn;
    void *ctx;
    size_t worker;
} par_ctx;

typedef struct { par_ctx *c; size_t id; } par_arg;

static void *par_worker(void *p)
{
    par_arg *a = p;
    par_ctx *c = a->c;
    for (;;) {
        tool_lock();
        size_t i = c->fail_rc ? c->n : c->next++;
        tool_unlock();
        if (i >= c->n) break;
        int rc = c->fn(c->ctx, i, a->id);
        if (rc) {
            tool_lock();
            if (!c->fail_rc || i < c->fail_at) c->fail_rc = rc, c->fail_at = i;
            tool_unlock();
        }
    }
    return NULL;
}

int tool_parallel(size_t n, size_t threads, tool_item_fn fn, void *ctx)
{
    par_ctx c = { .n = n, .fn = fn, .ctx = ctx };
    size_t t = threads < n ? threads : n, started = 0;
    int blas = lr_blas_get_threads();
    lr_blas_set_threads(1); /* every item on one thread: the same bits for any --threads */
    if (t <= 1) {
        int rc = 0;
        for (size_t i = 0; i < n && !rc; i++) rc = fn(ctx, i, 0);
        lr_blas_set_threads(blas);
        return rc;
    }
    pthread_t *th = calloc(t, sizeof *th);
    par_arg *args = calloc(t, sizeof *args);
    for (size_t k = 1; th && args && k < t; k++) {
        args[k] = (par_arg){ &c, k };
        if (pthread_create(&th[k], NULL, par_worker, &args[k]) == 0) started = k;
        else break;
    }
    par_arg self = { &c, 0 };
    par_worker(&self); /* the calling thread is worker 0 */
    for (size_t k = 1; k <= started; k++) pthread_join(th[k], NULL);
    free(th), free(args);
    lr_blas_set_threads(blas);
    return c.fail_rc;
}

#define PIECE ((size_t)4 << 20) /* small: a changed tensor differs in its first piece */

lr_status tool_same_bytes(bool *same, lr_model *a, lr_model *b, const char *name, lr_err *err)
{
    size_t nb = 0;
    lr_status s = lr_st_tensor_nbytes(lr_model_find(a, name), &nb, err);
    unsigned char *p = malloc(nb < PIECE ? (nb ? nb : 1) : PIECE), *q = malloc(nb < PIECE ? (nb ? nb : 1) : PIECE);
    if (!s && (!p || !q)) s = LR_ENOMEM, snprintf(err->msg, sizeof err->msg, "out of memory");
    *same = true;
    for (size_t off = 0; !s && *same && off < nb; off += PIECE) {
        size_t k = nb - off < PIECE ? nb - off : PIECE;
        if (!(s = lr_model_get_bytes(a, p, name, off, k, err)) && !(s = lr_model_get_bytes(b, q, name, off, k, err)))
            *same = !memcmp(p, q, k);
    }
    free(p), free(q);
    return s;
}

lr_status tool_copy_tensor(lr_model_writer *w, lr_model *src, const lr_st_tensor *t, lr_err *err)
{
    size_t nb = 0;
    lr_status s = lr_st_tensor_nbytes(t, &nb, err);
    unsigned char *p = s ? NULL : malloc(nb < PIECE ? (nb ? nb : 1) : PIECE);
    if (!s && !p) s = LR_ENOMEM, snprintf(err->msg, sizeof err->msg, "out of memory");
    for (size_t off = 0; !s && off < nb; off += PIECE) {
        size_t k = nb - off < PIECE ? nb - off : PIECE;
        if ((s = lr_model_get_bytes(src, p, t->name, off, k, err))) break;
        tool_lock(); /* workers share the writer */
        s = lr_model_writer_put(w, t->name, p, k, err);
        tool_unlock();
    }
    free(p);
    return s;
}

#define CHECK_RATIO 1.001 /* accept the Krylov factors within this of the optimal error */

/* vec <- the top r triplets of d by block Krylov (block r, depth 4), kept when its own
 * figures say the error is within CHECK_RATIO of the optimum: proven (err² / Σ_{r<i<=L} σ̃²)
 * or estimated (err² / (err² − the last block's gain)); else the exact SVD. */
static pthread_mutex_t exact_mu = PTHREAD_MUTEX_INITIALIZER;

/* vec <- block Krylov at this depth (block r); *ok when its figures put the error within
 * CHECK_RATIO of the optimum: proven, or estimated (what more blocks would add: the gains shrink
 * at rate ρ = gain / gain_prev, so the rest of the series is gain·ρ/(1 − ρ), Aitken's; without
 * a rate, the last gain itself). */
static lr_status krylov_try(lr_usv *vec, tool_svd_info *ly, lr_cmat d, const lr_rows *src, size_t r, size_t depth,
                            uint64_t seed, bool *ok, lr_err *e)
{
    lr_rsvd_opts ro = lr_rsvd_opts_default();
    ro.block = r, ro.krylov_depth = depth;
    lr_rsvd_bound bd;
    lr_rng rng;
    lr_rng_seed(&rng, seed);
    lr_status s = lr_usv_init(vec, d.rows, d.cols, r, e);
    if (!s) s = src ? lr_rsvd_rows(vec->s, vec->u, vec->vt, &bd, src, r, &ro, &rng, e)
                    : lr_rsvd_bounded(vec->s, vec->u, vec->vt, &bd, d, r, &ro, &rng, e);
    if (s) return s;
    double rho = bd.gain_prev > 0 ? bd.gain / bd.gain_prev : -1;
    double more = rho < 0 ? bd.gain : rho < 1 ? bd.gain * rho / (1 - rho) : INFINITY;
    double c2 = CHECK_RATIO * CHECK_RATIO, proven = bd.opt2_lb > 0 ? bd.err2 / bd.opt2_lb : INFINITY;
    double est = bd.err2 > more ? bd.err2 / (bd.err2 - more) : INFINITY;
    /* below float's resolution of the energy the difference is rounding: the Ritz tail then */
    ly->energy = bd.energy, ly->svd = "krylov";
    ly->tail = bd.err2 > 1e-5 * bd.energy ? bd.err2 : fmax(bd.opt2_lb, 0);
    ly->bound = sqrt(fmin(proven, est));
    *ok = proven <= c2 || est <= c2 || bd.err2 == 0;
    return LR_OK;
}

/* vec <- the top r triplets of d by LAPACK's thin SVD. */
static lr_status exact_triplets(lr_usv *vec, tool_svd_info *ly, lr_cmat d, size_t r, lr_err *e)
{
    lr_usv full = { 0 };
    /* one big exact SVD at a time: its workspace is a few times the matrix */
    bool big = (double)d.rows * (double)d.cols * 4 > (double)(256u << 20);
    if (big) pthread_mutex_lock(&exact_mu);
    lr_status s = lr_usv_from_svd(&full, d, e);
    if (big) pthread_mutex_unlock(&exact_mu);
    if (s) return s;
    s = lr_usv_init(vec, d.rows, d.cols, r, e);
    for (size_t i = 0; !s && i < r; i++) vec->s[i] = full.s[i];
    if (!s) s = lr_mat_copy(vec->u, lr_cmat_view(full.u.data, d.rows, r, full.u.ld), e);
    if (!s) s = lr_mat_copy(vec->vt, lr_cmat_view(full.vt.data, r, d.cols, full.vt.ld), e);
    double top = 0;
    for (size_t i = 0; i < r; i++) top += (double)full.s[i] * full.s[i];
    ly->tail = ly->energy > top ? ly->energy - top : 0, ly->svd = "exact", ly->bound = 1;
    lr_usv_free(&full);
    return s;
}

lr_status tool_factor_rank(lr_usv *vec, tool_svd_info *ly, lr_cmat d, const lr_rows *src, size_t r, uint64_t seed,
                           lr_err *e)
{
    if (src) d = (lr_cmat){ NULL, src->rows, src->cols, src->cols };
    /* depth 4, then 8 if the check fails (on a flat spectrum at rank 256 of a 14336x4096 weight
     * that took 31 s where the exact SVD took 50 s), then the exact SVD; shallower where the
     * basis, (depth+1)·r x max(m, n) floats, would pass 64M (256 MB): a streamed 128256 x 4096
     * embedding at rank 256 */
    double cap = (double)(64u << 20) / ((double)r * (double)(d.rows > d.cols ? d.rows : d.cols));
    size_t first = cap >= 5 ? 4 : cap >= 3 ? (size_t)cap - 1 : 2;
    bool ok = false;
    lr_status s = krylov_try(vec, ly, d, src, r, first, seed, &ok, e);
    if (!s && !ok && cap >= 9) {
        lr_usv_free(vec);
        s = krylov_try(vec, ly, d, src, r, 8, seed, &ok, e);
    }
    if (s || ok || src) return s; /* streamed: the exact SVD would need it whole, and more; the bound says how far */
    lr_usv_free(vec);
    return exact_triplets(vec, ly, d, r, e);
}

void tool_threads(size_t n)
{
    if (n) lr_blas_set_threads((int)n);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void tool_progress_init(tool_progress *p, bool asked, size_t n, double total_bytes)
{
    *p = (tool_progress){ .tty = isatty(STDERR_FILENO) != 0, .n = n, .t0 = now_s(), .total = total_bytes };
    p->on = asked || p->tty;
}

void tool_progress_step(tool_progress *p, size_t k, const char *name, double bytes)
{
    if (!p->on) return;
    p->done += bytes;
    double dt = now_s() - p->t0, rate = dt > 0 ? p->done / dt : 0;
    double left = rate > 0 ? (p->total - p->done) / rate : 0;
    fprintf(stderr, "%s[%zu/%zu] %-48.48s %8.1f MB/s  %4.0f s left%s", p->tty ? "\r" : "", k, p->n, name, rate / 1e6,
            left > 0 ? left : 0, p->tty ? "\033[K" : "\n");
    fflush(stderr);
}

void tool_progress_end(tool_progress *p)
{
    if (p->on && p->tty) fputc('\n', stderr);
}

double tool_bytes_of(const lr_model *m, const size_t *idx, size_t n)
{
    double t = 0;
    for (size_t i = 0; i < n; i++) {
        size_t nb = 0;
        lr_st_tensor_nbytes(lr_model_at(m, idx[i]), &nb, NULL);
        t += (double)nb;
    }
    return t;
}

lr_model_entry tool_entry(const lr_model *m, const lr_st_tensor *src, lr_st_tensor t, size_t max_shard)
{
    lr_model_entry e = { t, NULL };
    if (!max_shard && lr_model_index_path(m)) {
        for (size_t i = 0; i < lr_model_count(m); i++)
            if (lr_model_at(m, i) == src) e.shard = lr_model_shard_name(m, lr_model_shard_of(m, i));
    }
    return e;
}

int tool_writer_init(const char *sub, lr_model_writer *w, const char *out, const lr_model *m, const lr_model_entry *e,
                     size_t n, const char *record, size_t max_shard)
{
    const lr_safetensors *src = lr_model_shard_at(m, 0);
    size_t nm = lr_safetensors_meta_count(src), k = 0;
    lr_st_meta *meta = calloc(nm + 1, sizeof *meta);
    if (!meta || !record) {
        free(meta);
        return tool_failf(sub, "out of memory");
    }
    for (size_t i = 0; i < nm; i++)
        if (strcmp(lr_safetensors_meta_at(src, i)->key, "lowrank")) meta[k++] = *lr_safetensors_meta_at(src, i);
    meta[k++] = (lr_st_meta){ "lowrank", record };
    lr_model_write_opts o = lr_model_write_opts_default();
    o.max_shard_bytes = max_shard;
    lr_err err = { 0 };
    int rc = lr_model_writer_init(w, out, e, n, meta, k, lr_model_index_meta(m), &o, &err) ? tool_fail(sub, &err) : 0;
    free(meta);
    return rc;
}

void tool_round(float *x, size_t n, lr_st_dtype dtype)
{
    for (size_t i = 0; i < n; i++)
        x[i] = dtype == LR_ST_F16 ? lr_f16_to_f32(lr_f32_to_f16(x[i]))
             : dtype == LR_ST_BF16 ? lr_bf16_to_f32(lr_f32_to_bf16(x[i])) : x[i];
}

int tool_check_out(const char *sub, const char *out, const char *const *inputs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lr_cli_same_file(out, inputs[i]))
            return tool_usage(sub, "--out '%s' is the input '%s': refusing to write over an input", out,
                              inputs[i]);
    return 0;
}

int tool_check_out_model(const char *sub, const char *out, const lr_model *m)
{
    for (size_t k = 0; k < lr_model_shard_count(m); k++) {
        const char *f = lr_safetensors_path(lr_model_shard_at(m, k));
        if (lr_cli_same_file(out, f))
            return tool_usage(sub, "--out '%s' is '%s', a file of the input %s: refusing to write over an input", out, f,
                              lr_model_path(m));
    }
    const char *ix = lr_model_index_path(m);
    if (ix && (lr_cli_same_file(out, ix) || lr_cli_same_file(out, lr_model_dir(m))))
        return tool_usage(sub, "--out '%s' is the input %s (or its directory): refusing to write over an input", out,
                          lr_model_path(m));
    return 0;
}

json_t *tool_json_size(size_t v)
{
    return json_integer((json_int_t)v);
}

json_t *tool_json_shape(size_t m, size_t n)
{
    return json_pack("[II]", (json_int_t)m, (json_int_t)n);
}

int tool_json_print(json_t *o)
{
    if (!o || json_dumpf(o, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(9)) != 0 || fputc('\n', stdout) == EOF ||
        fflush(stdout) != 0) {
        fprintf(stderr, PROG ": cannot print the JSON report\n");
        return LR_CLI_RUNTIME;
    }
    return LR_CLI_OK;
}

int tool_parsed(const char *sub, int rc, const char *msg, const char *help, bool shared)
{
    if (rc == TOOL_HELP) printf("%s%s", help, shared ? tool_common_help : "");
    return rc == LR_CLI_USAGE ? tool_usage(sub, "%s", msg) : rc;
}
