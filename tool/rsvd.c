/* rsvd.c — `lowrank rsvd FILE.npy --rank R`: the top singular values of a 2-D .npy matrix
 * by randomized block Krylov (the default) or subspace iteration (--method), the same
 * method on both sides, in one process (lr_rsvd) or, built with MPI and run
 * under `mpirun -np N` (N > 1), over N processes that each read only their rows of the
 * file (lr_dist_npy_load_rows, lr_dist_rsvd): a matrix larger than one node's memory.
 *
 * Under MPI only rank 0 prints: the other ranks' stdout and stderr go to /dev/null, and
 * their failures reach rank 0 through the library's agreed statuses ("rank R: ..."). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "tool.h"
#ifdef LOWRANK_HAVE_MPI
#include <mpi.h>
#include "lowrank/mpi/dist.h"
#endif

#define SUB "rsvd"

static const char help[] =
"usage: " PROG " rsvd FILE.npy --rank R [--method krylov|subspace] [--oversample P] [--power-iters Q]\n"
"       [--seed N] [--json]\n"
"\n"
"The R largest singular values of the 2-D .npy matrix W (float32 or float64) by randomized\n"
"block Krylov (Musco & Musco 2015; the default: blocks of R Gaussian columns, depth 3, 8\n"
"passes over W) or randomized subspace iteration (Halko, Martinsson & Tropp 2011:\n"
"l = R + P columns, Q power iterations, 2Q + 2 passes), then the small SVD. Prints them\n"
"with the unexplained energy ||W||_F^2 - sum sigma_i^2 (what a rank-R truncation leaves\n"
"out, up to the estimate's error).\n"
"\n"
"Built with MPI (meson -Dmpi), `mpirun -np N " PROG " rsvd ...` with N > 1 splits W's rows\n"
"over the N processes: each reads only its rows of the file (by offset), products with W\n"
"stay local, products with W^T are summed by MPI_Allreduce, and only rank 0 prints. The\n"
"output then also gives the bytes each process handed to MPI. One process (or a build\n"
"without MPI) reads the whole file and runs lr_rsvd with the same method.\n"
"\n"
"  --rank R          singular values to compute, 1 <= R <= min(rows, cols)\n"
"  --method M        krylov (default) or subspace\n"
"  --oversample P    subspace: extra sample columns (default 10)\n"
"  --power-iters Q   subspace: power iterations, 0..1000 (default 4)\n"
"  --seed N          seed of the Gaussian test matrix (default 0)\n"
"  --json            one JSON object on stdout\n"
"  --threads N       OpenBLAS threads in each process (default: all cores)\n"
"  --help            this text\n";

/* What the computation found, for the renderers. */
typedef struct {
    size_t m, n, nranks;
    size_t *rows;          /* (nranks) rows per process */
    float *s;              /* (rank) */
    double frob2, captured2;
    unsigned long long bytes, calls;
    double comm_s, read_s, compute_s;
    const char *algo;
} rs_result;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static lr_rsvd_opts opts_of(const tool_rsvd_args *a)
{
    lr_rsvd_opts o = lr_rsvd_opts_default();
    o.method = a->method;
    o.oversample = a->oversample;
    o.power_iters = a->power_iters;
    return o;
}

/* One process: the whole file, lr_rsvd. */
static lr_status run_local(rs_result *res, const tool_rsvd_args *a, lr_err *e)
{
    double t0 = now();
    lr_mat w = { 0 }, u = { 0 }, vt = { 0 };
    lr_status st = lr_npy_load(&w, a->path, e);
    res->read_s = now() - t0;
    if (st) return st;
    t0 = now();
    res->m = w.rows;
    res->n = w.cols;
    res->nranks = 1;
    res->algo = "lr_rsvd";
    res->rows = malloc(sizeof *res->rows);
    res->s = malloc(a->rank * sizeof *res->s);
    if (!res->rows || !res->s) st = LR_ENOMEM, snprintf(e->msg, sizeof e->msg, "out of memory");
    else res->rows[0] = w.rows;
    if (!st && (w.rows == 0 || w.cols == 0 || a->rank > (w.rows < w.cols ? w.rows : w.cols)))
        st = LR_EINVAL, snprintf(e->msg, sizeof e->msg, "%s: --rank %zu, expected 1..min(%zu, %zu) for its shape (%zu, %zu)",
                                 a->path, a->rank, w.rows, w.cols, w.rows, w.cols);
    if (!st) st = lr_mat_init(&u, w.rows, a->rank, e);
    if (!st) st = lr_mat_init(&vt, a->rank, w.cols, e);
    if (!st) {
        lr_rsvd_opts o = opts_of(a);
        lr_rng rng;
        lr_rng_seed(&rng, a->seed);
        st = lr_rsvd(res->s, u, vt, lr_cm(w), a->rank, &o, &rng, e);
    }
    if (!st) {
        double f2 = 0;
        for (size_t i = 0; i < w.rows * w.cols; i++) f2 += (double)w.data[i] * w.data[i];
        res->frob2 = f2;
    }
    res->compute_s = now() - t0;
    lr_mat_free(&w);
    lr_mat_free(&u);
    lr_mat_free(&vt);
    return st;
}

#ifdef LOWRANK_HAVE_MPI
/* N processes: each its rows, lr_dist_rsvd. */
static lr_status run_dist(rs_result *res, const tool_rsvd_args *a, int rank, int size, lr_err *e)
{
    double t0 = MPI_Wtime();
    lr_mat w = { 0 }, u = { 0 }, vt = { 0 };
    size_t first = 0, m = 0;
    lr_status st = lr_dist_npy_load_rows(&w, &first, &m, a->path, MPI_COMM_WORLD, e);
    res->read_s = MPI_Wtime() - t0;
    if (st) return st;
    MPI_Barrier(MPI_COMM_WORLD); /* the compute time starts together */
    t0 = MPI_Wtime();
    res->m = m;
    res->n = w.cols;
    res->nranks = (size_t)size;
    res->algo = "lr_dist_rsvd";
    res->rows = malloc((size_t)size * sizeof *res->rows);
    res->s = malloc(a->rank * sizeof *res->s);
    if (!res->rows || !res->s) st = LR_ENOMEM, snprintf(e->msg, sizeof e->msg, "out of memory");
    /* the shape is the same on every rank: so is this check */
    if (!st && (m == 0 || w.cols == 0 || a->rank > (m < w.cols ? m : w.cols)))
        st = LR_EINVAL, snprintf(e->msg, sizeof e->msg, "%s: --rank %zu, expected 1..min(%zu, %zu) for its shape (%zu, %zu)",
                                 a->path, a->rank, m, w.cols, m, w.cols);
    if (!st) st = lr_mat_init(&u, w.rows, a->rank, e);
    if (!st) st = lr_mat_init(&vt, a->rank, w.cols, e);
    if ((st = lr_dist_agree(st, MPI_COMM_WORLD, e))) goto done;
    unsigned long long mine = w.rows, *all = malloc((size_t)size * sizeof *all);
    if (!all) abort(); /* a few bytes; MPI itself would not survive */
    MPI_Allgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, all, 1, MPI_UNSIGNED_LONG_LONG, MPI_COMM_WORLD);
    for (int k = 0; k < size; k++) res->rows[k] = (size_t)all[k];
    free(all);
    lr_rsvd_opts o = opts_of(a);
    lr_rng rng;
    lr_rng_seed(&rng, a->seed);
    lr_dist_stats stats = { 0, 0, 0 };
    st = lr_dist_rsvd(res->s, u, vt, &stats, lr_cm(w), a->rank, &o, &rng, MPI_COMM_WORLD, e);
    if (!st) st = lr_dist_frob2(&res->frob2, &stats, lr_cm(w), MPI_COMM_WORLD, e);
    res->bytes = stats.bytes;
    res->calls = stats.calls;
    res->comm_s = stats.seconds;
    res->compute_s = MPI_Wtime() - t0;
    (void)rank;
done:
    lr_mat_free(&w);
    lr_mat_free(&u);
    lr_mat_free(&vt);
    return st;
}
#endif

/* The method and the parameters it reads: "method", then block and krylov_depth, or
 * oversample and power_iters. */
static void json_method(json_t *o, const tool_rsvd_args *a, bool *ok)
{
    lr_rsvd_opts m = opts_of(a);
    bool sub = m.method == LR_RSVD_SUBSPACE;
    lr_cli_json_set(o, "method", json_string(sub ? "subspace" : "krylov"), ok);
    lr_cli_json_set(o, sub ? "oversample" : "block", tool_json_size(sub ? m.oversample : a->rank), ok);
    lr_cli_json_set(o, sub ? "power_iters" : "krylov_depth", tool_json_size(sub ? m.power_iters : m.krylov_depth), ok);
}

/* "block Krylov, blocks of R, depth 3" or "oversample P, Q power iterations" */
static const char *method_text(char *buf, size_t cap, const tool_rsvd_args *a)
{
    lr_rsvd_opts m = opts_of(a);
    if (m.method == LR_RSVD_SUBSPACE)
        snprintf(buf, cap, "oversample %zu, %zu power iterations", m.oversample, m.power_iters);
    else
        snprintf(buf, cap, "block Krylov, blocks of %zu, depth %zu", a->rank, m.krylov_depth);
    return buf;
}

static int render(const rs_result *r, const tool_rsvd_args *a)
{
    double unexplained = r->frob2 - r->captured2;
    if (a->json) {
        json_t *rows = json_array(), *o;
        for (size_t k = 0; k < r->nranks; k++) json_array_append_new(rows, tool_json_size(r->rows[k]));
        bool ok = rows != NULL;
        o = json_object();
        ok = ok && o;
        if (ok) {
            lr_cli_json_set(o, "command", json_string(SUB), &ok);
            lr_cli_json_set(o, "file", json_string(a->path), &ok);
            lr_cli_json_set(o, "shape", tool_json_shape(r->m, r->n), &ok);
            lr_cli_json_set(o, "rank", tool_json_size(a->rank), &ok);
            json_method(o, a, &ok);
            lr_cli_json_set(o, "seed", json_integer((json_int_t)a->seed), &ok);
            lr_cli_json_set(o, "implementation", json_string(r->algo), &ok);
            lr_cli_json_set(o, "ranks", tool_json_size(r->nranks), &ok);
            lr_cli_json_set(o, "rows_per_rank", json_incref(rows), &ok);
            lr_cli_json_set(o, "singular_values", lr_cli_json_vec(r->s, a->rank), &ok);
            lr_cli_json_set(o, "frobenius2", lr_cli_json_real(r->frob2), &ok);
            lr_cli_json_set(o, "captured2", lr_cli_json_real(r->captured2), &ok);
            lr_cli_json_set(o, "unexplained_energy", lr_cli_json_real(unexplained), &ok);
            lr_cli_json_set(o, "relative_error",
                            lr_cli_json_real(r->frob2 > 0 && unexplained > 0 ? sqrt(unexplained / r->frob2) : 0), &ok);
            lr_cli_json_set(o, "bytes_communicated", json_integer((json_int_t)r->bytes), &ok);
            lr_cli_json_set(o, "collectives", json_integer((json_int_t)r->calls), &ok);
            lr_cli_json_set(o, "comm_seconds", lr_cli_json_real(r->comm_s), &ok);
            lr_cli_json_set(o, "read_seconds", lr_cli_json_real(r->read_s), &ok);
            lr_cli_json_set(o, "compute_seconds", lr_cli_json_real(r->compute_s), &ok);
        }
        json_decref(rows);
        int rc = ok ? tool_json_print(o) : tool_failf(SUB, "out of memory");
        json_decref(o);
        return rc;
    }
    char how[96];
    printf("%s: %zu x %zu, rank %zu (%s, seed %llu), %zu process%s (%s)\n", a->path, r->m, r->n, a->rank,
           method_text(how, sizeof how, a), (unsigned long long)a->seed, r->nranks, r->nranks == 1 ? "" : "es",
           r->algo);
    if (r->nranks > 1) {
        printf("rows per process:");
        for (size_t k = 0; k < r->nranks; k++) printf(" %zu", r->rows[k]);
        printf("\n");
    }
    printf("%6s %14s\n", "i", "sigma_i");
    for (size_t i = 0; i < a->rank; i++) printf("%6zu %14.7g\n", i + 1, (double)r->s[i]);
    printf("||W||_F^2 %.7g, captured %.7g, unexplained %.4g (%.4g%%)\n", r->frob2, r->captured2, unexplained,
           r->frob2 > 0 ? 100.0 * unexplained / r->frob2 : 0.0);
    if (r->nranks > 1)
        printf("communicated %llu bytes per process in %llu collectives (%.3f s in MPI)\n", r->bytes, r->calls, r->comm_s);
    printf("read %.3f s, compute %.3f s\n", r->read_s, r->compute_s);
    return 0;
}

int tool_rsvd(int argc, char **argv)
{
    tool_rsvd_args a;
    int rank = 0, size = 1;
#ifdef LOWRANK_HAVE_MPI
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) MPI_Init(NULL, NULL);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank != 0) { /* only rank 0 prints */
        FILE *o = freopen("/dev/null", "w", stdout), *e = freopen("/dev/null", "w", stderr);
        (void)o;
        (void)e;
    }
#endif
    size_t cap = tool_msg_cap(argc, argv);
    char *msg = malloc(cap);
    int rc = msg ? tool_parsed(SUB, tool_rsvd_parse(argc, argv, &a, msg, cap), msg, help, false)
                 : tool_failf(SUB, "out of memory");
    free(msg);
    if (rc == 0) tool_threads(a.threads);
    if (rc == 0) {
        rs_result res;
        memset(&res, 0, sizeof res);
        lr_err e = { "" };
        lr_status st;
#ifdef LOWRANK_HAVE_MPI
        st = size > 1 ? run_dist(&res, &a, rank, size, &e) : run_local(&res, &a, &e);
#else
        st = run_local(&res, &a, &e);
#endif
        if (st) rc = tool_fail(SUB, &e);
        else {
            for (size_t i = 0; i < a.rank; i++) res.captured2 += (double)res.s[i] * res.s[i];
            rc = rank == 0 ? render(&res, &a) : 0;
        }
        free(res.rows);
        free(res.s);
    }
    if (rc < 0) rc = 0; /* --help */
#ifdef LOWRANK_HAVE_MPI
    MPI_Finalize();
#endif
    (void)rank;
    (void)size;
    return rc;
}
