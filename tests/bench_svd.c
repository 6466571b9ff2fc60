/* bench_svd.c — timings of the SVD family on float32 matrices with a decaying
 * spectrum σ_i = 1/(1+i), the shape of a trained weight (as
 * ../shared/reference/numpy_svd.py builds them, so the figures compare):
 *   rank-32 randomized SVD (p = 10, q = 4) of 2000x1000 and 4096x4096, with its
 *   Frobenius error over the Eckart–Young optimum √Σ_{i>=32} σ_i²;
 *   thin SVD, values-only SVD and numerical rank of 2000x1000 and 1000x784.
 * W = H_1·H_2·diag(σ)·H_3·H_4 with random Householder reflectors H: orthogonal
 * factors, cheap to apply, and (the Gaussian test matrix being rotation
 * invariant) as hard for the randomized SVD as Haar-random ones.
 * Best of 3 back-to-back runs. Threads: argv[1], else OPENBLAS_NUM_THREADS, else OpenBLAS's
 * default. Prints a table, then one JSON line. Never fails on time. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "lowrank/approx.h"
#include "lowrank/blas.h"
#include "lowrank/rank.h"
#include "lowrank/rng.h"
#include "lowrank/rsvd.h"
#include "lowrank/svd.h"
#include "bench.h"

#define REPS 3

static void die(const char *what, lr_status st, const lr_err *err)
{
    fprintf(stderr, "bench_svd: %s: %s: %s\n", what, lr_status_str(st), err->msg);
    exit(1);
}

/* x <- (I − 2·h·hᵀ)·x on the left (side 0, h: (rows)) or x·(I − 2·h·hᵀ) on the right */
static void reflect(lr_mat x, const double *h, int right)
{
    size_t m = x.rows, n = x.cols;
    if (!right) {
        double *t = calloc(n, sizeof *t); /* t = hᵀ·x */
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) t[j] += h[i] * x.data[i * x.ld + j];
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) x.data[i * x.ld + j] -= (float)(2 * h[i] * t[j]);
        free(t);
    } else {
        for (size_t i = 0; i < m; i++) {
            double t = 0;
            for (size_t j = 0; j < n; j++) t += x.data[i * x.ld + j] * h[j];
            for (size_t j = 0; j < n; j++) x.data[i * x.ld + j] -= (float)(2 * t * h[j]);
        }
    }
}

static void unit_vector(double *h, size_t len, lr_rng *rng)
{
    double s = 0;
    for (size_t i = 0; i < len; i++) { h[i] = lr_rng_normal(rng); s += h[i] * h[i]; }
    s = sqrt(s);
    for (size_t i = 0; i < len; i++) h[i] /= s;
}

static void build(lr_mat w, uint64_t seed)
{
    size_t m = w.rows, n = w.cols, k = m < n ? m : n;
    lr_rng rng;
    lr_rng_seed(&rng, seed);
    lr_mat_fill(w, 0);
    for (size_t i = 0; i < k; i++) w.data[i * w.ld + i] = (float)(1.0 / (1.0 + (double)i));
    double *h = malloc((m > n ? m : n) * sizeof *h);
    for (int rep = 0; rep < 2; rep++) {
        unit_vector(h, m, &rng);
        reflect(w, h, 0);
        unit_vector(h, n, &rng);
        reflect(w, h, 1);
    }
    free(h);
}

typedef struct { size_t m, n; double t_rsvd, err_ratio, t_svd, t_vals, t_rank; size_t rank; int has_rsvd, has_svd; } row;

/* Like numpy_svd.py: the repetitions run back to back (the matrix stays warm in
 * cache, as it does there), and the error is measured once, after the timing. */
static void bench_rsvd(row *R, lr_mat w, size_t r)
{
    size_t m = w.rows, n = w.cols, k = m < n ? m : n;
    lr_err err = { { 0 } };
    lr_status st;
    double best = 1e30, opt = 0;
    for (size_t i = r; i < k; i++) opt += 1.0 / ((1.0 + i) * (1.0 + i));
    opt = sqrt(opt);
    lr_usv f = { { NULL, 0, 0, 0 }, NULL, { NULL, 0, 0, 0 }, 0, 0, 0 };
    for (int rep = 0; rep < REPS; rep++) {
        lr_rng rng;
        lr_rng_seed(&rng, 0);
        lr_usv_free(&f);
        double t = lr_bench_now();
        if ((st = lr_usv_from_rsvd(&f, lr_cm(w), r, NULL, &rng, &err))) die("rsvd", st, &err);
        t = lr_bench_now() - t;
        if (t < best) best = t;
    }
    /* error: b = u·diag(s), then ‖w − b·vt‖_F */
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < r; j++) f.u.data[i * f.u.ld + j] *= f.s[j];
    lr_approx_err e;
    if ((st = lr_approx_measure(lr_cm(w), lr_cm(f.u), lr_cm(f.vt), false, &e, &err))) die("error", st, &err);
    lr_usv_free(&f);
    R->t_rsvd = best;
    R->err_ratio = e.fro / opt;
    R->has_rsvd = 1;
}

static void bench_svd(row *R, lr_mat w)
{
    size_t k = w.rows < w.cols ? w.rows : w.cols;
    lr_err err = { { 0 } };
    lr_status st;
    float *s = malloc(k * sizeof *s);
    double b1 = 1e30, b2 = 1e30, b3 = 1e30, t;
    for (int rep = 0; rep < REPS; rep++) {
        lr_usv f;
        t = lr_bench_now();
        if ((st = lr_usv_from_svd(&f, lr_cm(w), &err))) die("svd", st, &err);
        t = lr_bench_now() - t;
        if (t < b1) b1 = t;
        lr_usv_free(&f);
    }
    for (int rep = 0; rep < REPS; rep++) {
        t = lr_bench_now();
        if ((st = lr_svd_values(lr_cm(w), s, &err))) die("svd values", st, &err);
        t = lr_bench_now() - t;
        if (t < b2) b2 = t;
    }
    for (int rep = 0; rep < REPS; rep++) {
        t = lr_bench_now();
        if ((st = lr_rank(lr_cm(w), NULL, &R->rank, NULL, &err))) die("rank", st, &err);
        t = lr_bench_now() - t;
        if (t < b3) b3 = t;
    }
    free(s);
    R->t_svd = b1;
    R->t_vals = b2;
    R->t_rank = b3;
    R->has_svd = 1;
}

int main(int argc, char **argv)
{
    if (argc > 1) lr_blas_set_threads(atoi(argv[1]));
    int threads = lr_blas_get_threads();
    const size_t r = 32;
    const size_t shapes[3][2] = { { 2000, 1000 }, { 4096, 4096 }, { 1000, 784 } };
    row rows[3];
    memset(rows, 0, sizeof rows);
    for (int i = 0; i < 3; i++) {
        lr_mat w;
        lr_err err = { { 0 } };
        lr_status st;
        if ((st = lr_mat_init(&w, shapes[i][0], shapes[i][1], &err))) die("alloc", st, &err);
        build(w, 7 + (uint64_t)i);
        rows[i].m = shapes[i][0];
        rows[i].n = shapes[i][1];
        /* numpy_svd.py's order: full SVD, values, rank, then the randomized SVD */
        if (i != 1) bench_svd(&rows[i], w); /* a 4096² full SVD takes tens of seconds */
        if (i < 2) bench_rsvd(&rows[i], w, r);
        lr_mat_free(&w);
    }
    printf("lowrank SVD benchmark: float32, σ_i = 1/(1+i), best of %d, %d OpenBLAS thread(s)\n", REPS, threads);
    printf("%-10s %14s %12s %12s %12s %12s %6s\n", "shape", "rsvd r=32 s", "err/opt", "svd s", "values s", "rank s", "rank");
    for (int i = 0; i < 3; i++) {
        char sh[32];
        snprintf(sh, sizeof sh, "%zux%zu", rows[i].m, rows[i].n);
        printf("%-10s", sh);
        if (rows[i].has_rsvd) printf(" %14.4f %12.5f", rows[i].t_rsvd, rows[i].err_ratio);
        else printf(" %14s %12s", "-", "-");
        if (rows[i].has_svd) printf(" %12.4f %12.4f %12.4f %6zu\n", rows[i].t_svd, rows[i].t_vals, rows[i].t_rank, rows[i].rank);
        else printf(" %12s %12s %12s %6s\n", "-", "-", "-", "-");
    }
    printf("{\"bench\":\"svd\",\"threads\":%d,\"reps\":%d,\"rank\":%zu,\"results\":[", threads, REPS, r);
    for (int i = 0; i < 3; i++) {
        printf("%s{\"shape\":\"%zux%zu\"", i ? "," : "", rows[i].m, rows[i].n);
        if (rows[i].has_rsvd) printf(",\"randomized_svd_s\":%.6f,\"rsvd_err_over_opt\":%.6f", rows[i].t_rsvd, rows[i].err_ratio);
        if (rows[i].has_svd)
            printf(",\"full_svd_s\":%.6f,\"values_only_s\":%.6f,\"matrix_rank_s\":%.6f,\"matrix_rank\":%zu", rows[i].t_svd,
                   rows[i].t_vals, rows[i].t_rank, rows[i].rank);
        printf("}");
    }
    printf("]}\n");
    return 0;
}
