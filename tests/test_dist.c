/* test_dist.c — the MPI layer (dist.h), run by meson test under
 * `mpirun --allow-run-as-root --oversubscribe -np N` for N = 1, 2, 3 (suite 'dist').
 *
 * A plain C MPI program (cmocka's runner would report from every rank): every check that
 * fails prints the rank, file and line and calls MPI_Abort, so the job exits non-zero.
 * Each rank builds the whole test matrix from the same seed to have something to compare
 * with; the library calls only ever see the rank's own rows.
 *   - lr_dist_block: the balanced split, pure;
 *   - lr_dist_rsvd, block Krylov (the default; blocks of r and narrower ones, with and
 *     without deflation) and subspace iteration, against lr_svd_values of the whole
 *     matrix and against the one-process lr_rsvd (same options and seed): singular values
 *     to 1e-5 relative, over the balanced split and uneven ones (an empty block on a
 *     rank, everything on one rank, rows not divisible by the ranks); U orthonormal over
 *     the ranks, the residual at the tail's level, vt bit-identical on every rank; the
 *     bytes handed to MPI against the formulas of dist.h;
 *   - rank-deficient inputs (rank 3 with 13 subspace columns or 20 and 8 Krylov columns,
 *     a = 0): deflation, no error;
 *   - ranks that disagree on n, r, the method or its fields, a bad method, too few Krylov
 *     columns, a bad argument on one rank, a NaN on one rank: the same status on every
 *     rank, the message naming the rank and the entry;
 *   - lr_dist_npy_load_rows: each rank's rows of a file rank 0 wrote; lr_dist_frob2.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lapacke.h>
#include <mpi.h>

#include "lowrank/lowrank.h"
#include "lowrank/mpi/dist.h"
#include "lr_mpi_test.h"

int g_rank, g_size;

/* q: (rows, k) with orthonormal columns (Householder QR of a Gaussian). */
static void orthonormal(float *q, size_t rows, size_t k, lr_rng *rng)
{
    lr_rng_fill_normal(rng, lr_mat_view(q, rows, k, k), 0.0f, 1.0f);
    float *tau = malloc(k * sizeof *tau);
    CHECK(LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, (lapack_int)rows, (lapack_int)k, q, (lapack_int)k, tau) == 0, "geqrf");
    CHECK(LAPACKE_sorgqr(LAPACK_ROW_MAJOR, (lapack_int)rows, (lapack_int)k, (lapack_int)k, q, (lapack_int)k, tau) == 0,
          "orgqr");
    free(tau);
}

/* w: (m, n) = U·diag(sig)·Vᵀ with k = len(sig) terms, the same on every rank (seeded). */
static lr_mat make_matrix(size_t m, size_t n, const float *sig, size_t k, uint64_t seed)
{
    lr_rng rng;
    lr_rng_seed(&rng, seed);
    lr_mat w;
    CHECK(lr_mat_init(&w, m, n, NULL) == LR_OK, "alloc");
    float *u = malloc(m * k * sizeof *u), *v = malloc(n * k * sizeof *v);
    orthonormal(u, m, k, &rng);
    orthonormal(v, n, k, &rng);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double acc = 0;
            for (size_t p = 0; p < k; p++) acc += (double)u[i * k + p] * sig[p] * v[j * k + p];
            w.data[i * n + j] = (float)acc;
        }
    free(u);
    free(v);
    return w;
}

/* Rows first..first+count of every rank from a per-rank row count list. */
static void split_of(const size_t *counts, size_t *first, size_t *count)
{
    size_t f = 0;
    for (int k = 0; k < g_rank; k++) f += counts[k];
    *first = f;
    *count = counts[g_rank];
}

/* lr_dist_rsvd on the block [first, first+count) of w; returns s (r) malloc'd and checks
 * the factorisation: U orthonormal over the ranks, vt the same bits everywhere, the
 * residual ‖w − U·S·vt‖_F (over the ranks) <= resid_max. */
static float *dist_rsvd_checked(lr_cmat w, size_t first, size_t count, size_t r, const lr_rsvd_opts *o, uint64_t seed,
                                double resid_max, lr_dist_stats *stats)
{
    const size_t n = w.cols;
    lr_mat u, vt;
    float *s = malloc(r * sizeof *s);
    CHECK_OK(lr_mat_init(&u, count, r, NULL));
    CHECK_OK(lr_mat_init(&vt, r, n, NULL));
    lr_rng rng;
    lr_rng_seed(&rng, seed);
    lr_err e = { "" };
    lr_cmat blk = lr_cmat_view(count ? w.data + first * w.ld : NULL, count, n, w.ld);
    lr_status st = lr_dist_rsvd(s, u, vt, stats, blk, r, o, g_rank == 0 ? &rng : NULL, MPI_COMM_WORLD, &e);
    CHECK(st == LR_OK, "lr_dist_rsvd: %s: %s", lr_status_str(st), e.msg);
    /* UᵀU = I over the ranks */
    double *g = calloc(r * r, sizeof *g);
    for (size_t i = 0; i < count; i++)
        for (size_t a = 0; a < r; a++)
            for (size_t b = 0; b < r; b++) g[a * r + b] += (double)u.data[i * r + a] * u.data[i * r + b];
    MPI_Allreduce(MPI_IN_PLACE, g, (int)(r * r), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    for (size_t a = 0; a < r; a++)
        for (size_t b = 0; b < r; b++)
            CHECK(fabs(g[a * r + b] - (a == b)) < 1e-4, "UtU[%zu,%zu] = %g", a, b, g[a * r + b]);
    free(g);
    /* vt and s the same bits on every rank */
    size_t nv = r * n + r;
    float *mx = malloc(nv * sizeof *mx), *mn = malloc(nv * sizeof *mn);
    memcpy(mx, vt.data, r * n * sizeof *mx);
    memcpy(mx + r * n, s, r * sizeof *mx);
    memcpy(mn, mx, nv * sizeof *mn);
    MPI_Allreduce(MPI_IN_PLACE, mx, (int)nv, MPI_FLOAT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, mn, (int)nv, MPI_FLOAT, MPI_MIN, MPI_COMM_WORLD);
    CHECK(memcmp(mx, mn, nv * sizeof *mx) == 0, "vt or s differ between the ranks");
    free(mx);
    free(mn);
    /* residual */
    double res = 0;
    for (size_t i = 0; i < count; i++)
        for (size_t j = 0; j < n; j++) {
            double acc = 0;
            for (size_t p = 0; p < r; p++) acc += (double)u.data[i * r + p] * s[p] * vt.data[p * n + j];
            double d = w.data[(first + i) * w.ld + j] - acc;
            res += d * d;
        }
    MPI_Allreduce(MPI_IN_PLACE, &res, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    CHECK(sqrt(res) <= resid_max, "residual %g > %g", sqrt(res), resid_max);
    lr_mat_free(&u);
    lr_mat_free(&vt);
    return s;
}

static void check_close(const float *got, const float *want, size_t r, double rtol, const char *what)
{
    for (size_t i = 0; i < r; i++)
        CHECK(fabs((double)got[i] - want[i]) <= rtol * fabs((double)want[i]), "%s: s[%zu] = %.9g, expected %.9g",
              what, i, (double)got[i], (double)want[i]);
}

static void test_block(void)
{
    size_t f, c, total = 0;
    lr_err e;
    for (int n = 1; n <= 5; n++)
        for (size_t rows = 0; rows <= 11; rows++) {
            size_t next = 0;
            for (int k = 0; k < n; k++) {
                CHECK(lr_dist_block(&f, &c, rows, k, n, &e) == LR_OK, "%s", e.msg);
                CHECK(f == next, "rows %zu over %d: rank %d starts at %zu, expected %zu", rows, n, k, f, next);
                CHECK(c == rows / (size_t)n || c == rows / (size_t)n + 1, "uneven");
                next += c;
            }
            CHECK(next == rows, "covers");
            total += next;
        }
    CHECK(total > 0, "ran");
    CHECK(lr_dist_block(&f, &c, 10, 0, 0, &e) == LR_EINVAL, "nranks 0");
    CHECK(strstr(e.msg, "nranks 0 < 1"), "%s", e.msg);
    CHECK(lr_dist_block(&f, &c, 10, 3, 3, &e) == LR_EINVAL, "rank 3 of 3");
    CHECK(strstr(e.msg, "rank 3 outside 0..2"), "%s", e.msg);
    CHECK(lr_dist_block(NULL, &c, 10, 0, 1, &e) == LR_EINVAL, "NULL");
}

/* The bytes lr_dist_rsvd hands to MPI beside the handful of small agreements (dist.h):
 * subspace, l columns and q power iterations: Bcast n·l + 2 floats, q + 1 Allreduces of
 * n·l floats, 2(q + 1) of l² doubles; */
static uint64_t subspace_bytes(size_t n, size_t l, size_t q)
{
    return (n * l + 2) * 4 + (q + 1) * n * l * 4 + 2 * (q + 1) * l * l * 8;
}

/* Krylov, blocks of b, depth q, no deflation: Bcast n·b + 2 floats, q + 1 Allreduces of
 * b·n floats, 2 + 3q of b² doubles, and 2 projections of j·b·b floats for each block j. */
static uint64_t krylov_bytes(size_t n, size_t b, size_t q)
{
    return (n * b + 2) * 4 + (q + 1) * b * n * 4 + (2 + 3 * q) * b * b * 8 + q * (q + 1) * b * b * 4;
}

/* The small collectives: two agreements (an int each), the options' agreement (10
 * uint64), the row counts' Allgather (8 bytes per rank). */
static uint64_t small_bytes(void)
{
    return 2 * 4 + 10 * 8 + 8 * (uint64_t)g_size;
}

/* The splits of m rows: balanced; everything on rank 0 (empty blocks elsewhere); rank 0
 * empty, rank 1 17 rows (with 3 ranks), the last the rest; one row on every rank but the
 * last. */
static void make_splits(size_t counts[4][8], size_t m)
{
    const int last = g_size - 1;
    for (int k2 = 0; k2 < g_size; k2++) {
        size_t f, c;
        lr_dist_block(&f, &c, m, k2, g_size, NULL);
        counts[0][k2] = c;
        counts[1][k2] = k2 == 0 ? m : 0;
        counts[2][k2] = g_size == 1 ? m : k2 == last ? (g_size > 2 ? m - 17 : m) : k2 == 1 ? 17 : 0;
        counts[3][k2] = k2 == last ? m - (size_t)last : 1;
    }
}

/* lr_dist_rsvd with o over every split against exact (r values) and against the
 * one-process lr_rsvd (same options, seed 7), to 1e-5 relative; want_bytes (0: not
 * checked) is the formula's count, which stats may exceed only by the small agreements. */
static void check_splits(lr_cmat w, const float *exact, size_t r, const lr_rsvd_opts *o, double resid_max,
                         uint64_t want_bytes, const char *what)
{
    const size_t m = w.rows, n = w.cols;
    lr_mat u1, vt1;
    float *s1 = malloc(r * sizeof *s1);
    CHECK_OK(lr_mat_init(&u1, m, r, NULL));
    CHECK_OK(lr_mat_init(&vt1, r, n, NULL));
    lr_rng rng;
    lr_rng_seed(&rng, 7);
    CHECK_OK(lr_rsvd(s1, u1, vt1, w, r, o, &rng, NULL));
    check_close(s1, exact, r, 1e-5, what);
    size_t counts[4][8];
    make_splits(counts, m);
    for (int sp = 0; sp < 4; sp++) {
        size_t first, count, sum = 0;
        for (int k2 = 0; k2 < g_size; k2++) sum += counts[sp][k2];
        CHECK(sum == m, "split %d sums to %zu", sp, sum);
        split_of(counts[sp], &first, &count);
        lr_dist_stats stats = { 0, 0, 0 };
        float *s = dist_rsvd_checked(w, first, count, r, o, 7, resid_max, &stats);
        check_close(s, exact, r, 1e-5, what);
        check_close(s, s1, r, 1e-5, what);
        if (want_bytes)
            CHECK(stats.bytes == want_bytes + small_bytes(), "%s, split %d: bytes %llu, expected %llu", what, sp,
                  (unsigned long long)stats.bytes, (unsigned long long)(want_bytes + small_bytes()));
        CHECK(stats.calls >= 8, "calls %llu", (unsigned long long)stats.calls);
        free(s);
    }
    free(s1);
    lr_mat_free(&u1);
    lr_mat_free(&vt1);
}

/* Well-conditioned spectrum: 8 values 10..3.7 and a tail 0.01.. (rank 20); the distributed
 * values equal lr_svd's and the one-process lr_rsvd's to 1e-5 over every split, for both
 * methods. */
static void test_rsvd_splits(void)
{
    const size_t m = 301, n = 40, r = 8, k = 20; /* 301 rows: not divisible by 2 or 3 */
    float sig[20];
    for (size_t i = 0; i < k; i++) sig[i] = i < r ? 10.0f * powf(0.88f, (float)i) : 0.01f * powf(0.9f, (float)(i - r));
    lr_mat w = make_matrix(m, n, sig, k, 42);
    float exact[40];
    CHECK_OK(lr_svd_values(exact, lr_cm(w), NULL, NULL));
    double tail = 0;
    for (size_t i = r; i < n; i++) tail += (double)exact[i] * exact[i];
    const double resid = 3 * sqrt(tail) + 1e-4;
    lr_rsvd_opts o = lr_rsvd_opts_default();
    o.method = LR_RSVD_SUBSPACE;
    o.oversample = 5;
    o.power_iters = 2;
    check_splits(lr_cm(w), exact, r, &o, resid, subspace_bytes(n, r + 5, 2), "subspace p 5 q 2");
    /* Krylov, b = r, depth 1: L = 16 < rank 20, no deflation, so the bytes are the formula's */
    lr_rsvd_opts ok = lr_rsvd_opts_default();
    ok.krylov_depth = 1;
    check_splits(lr_cm(w), exact, r, &ok, resid, krylov_bytes(n, r, 1), "krylov b 8 q 1");
    /* blocks of 3, depth 4: 15 columns, blocks narrower than r */
    ok.block = 3;
    ok.krylov_depth = 4;
    check_splits(lr_cm(w), exact, r, &ok, resid, krylov_bytes(n, 3, 4), "krylov b 3 q 4");
    /* the defaults (Krylov, b = 8, q = 3): L = 32 > rank 20, the third block deflates */
    check_splits(lr_cm(w), exact, r, NULL, resid, 0, "defaults");

    size_t first, count;
    lr_dist_block(&first, &count, m, g_rank, g_size, NULL);
    lr_dist_stats stats = { 0, 0, 0 };
    float *s = dist_rsvd_checked(lr_cm(w), first, count, r, NULL, 3, resid, &stats);
    check_close(s, exact, r, 1e-5, "defaults, seed 3");
    free(s);
    /* r = min(m, n): the sample is the whole range, for both methods */
    float *sall = dist_rsvd_checked(lr_cm(w), first, count, n, &o, 3, 1e-3, NULL);
    check_close(sall, exact, r, 1e-5, "subspace r = n");
    free(sall);
    sall = dist_rsvd_checked(lr_cm(w), first, count, n, NULL, 3, 1e-3, NULL);
    check_close(sall, exact, r, 1e-5, "krylov r = n");
    free(sall);
    lr_mat_free(&w);
}

/* Rank 3 with l = 13 columns (subspace) or 4 blocks of 5 (Krylov), and a = 0: the
 * dependent columns are replaced, no error. */
static void test_rank_deficient(void)
{
    const size_t m = 97, n = 30, r = 5;
    const float sig[3] = { 5, 4, 3 };
    lr_mat w = make_matrix(m, n, sig, 3, 9);
    float exact[30] = { 5, 4, 3 };
    lr_rsvd_opts o[3] = { lr_rsvd_opts_default(), lr_rsvd_opts_default(), lr_rsvd_opts_default() };
    o[0].method = LR_RSVD_SUBSPACE;
    o[0].oversample = 8;
    o[0].power_iters = 1;
    o[2].block = 2; /* blocks of 2, depth 3: 8 columns, the rank is reached in the second block */
    for (int i = 0; i < 3; i++) {
        size_t first, count;
        lr_dist_block(&first, &count, m, g_rank, g_size, NULL);
        float *s1, *s = dist_rsvd_checked(lr_cm(w), first, count, r, &o[i], 5, 1e-4, NULL);
        check_close(s, sig, 3, 1e-5, "rank 3");
        CHECK(s[3] < 1e-4 && s[4] < 1e-4, "s[3] = %g, s[4] = %g", (double)s[3], (double)s[4]);
        /* the one-process lr_rsvd with the same options: the same three values */
        lr_mat u1, vt1;
        s1 = malloc(r * sizeof *s1);
        CHECK_OK(lr_mat_init(&u1, m, r, NULL));
        CHECK_OK(lr_mat_init(&vt1, r, n, NULL));
        lr_rng rng;
        lr_rng_seed(&rng, 5);
        CHECK_OK(lr_rsvd(s1, u1, vt1, lr_cm(w), r, &o[i], &rng, NULL));
        check_close(s, s1, 3, 1e-5, "rank 3 vs lr_rsvd");
        check_close(s1, exact, 3, 1e-5, "lr_rsvd rank 3");
        free(s);
        free(s1);
        lr_mat_free(&u1);
        lr_mat_free(&vt1);
    }
    memset(w.data, 0, m * n * sizeof(float));
    size_t first, count;
    lr_dist_block(&first, &count, m, g_rank, g_size, NULL);
    for (int i = 0; i < 3; i++) {
        float *s = dist_rsvd_checked(lr_cm(w), first, count, r, &o[i], 5, 0, NULL);
        for (size_t j = 0; j < r; j++) CHECK(s[j] == 0, "a = 0, opts %d: s[%zu] = %g", i, j, (double)s[j]);
        free(s);
    }
    lr_mat_free(&w);
}

/* Disagreements and failures: every rank returns the same status and message. */
static void test_errors(void)
{
    const size_t m = 20, n = 6, r = 2;
    lr_mat w = make_matrix(m, n, (const float[]){ 3, 2, 1 }, 3, 1);
    size_t first, count;
    lr_dist_block(&first, &count, m, g_rank, g_size, NULL);
    lr_mat u, vt;
    float s[3];
    CHECK_OK(lr_mat_init(&u, count, r + 1, NULL));
    CHECK_OK(lr_mat_init(&vt, r + 1, n, NULL));
    lr_rng rng;
    lr_rng_seed(&rng, 1);
    lr_err e = { "" };
    lr_cmat blk = lr_cmat_view(w.data + first * n, count, n, n);
    const int last = g_size - 1;
    if (g_size > 1) {
        /* the last rank has one column less */
        lr_cmat b2 = lr_cmat_view(blk.data, count, g_rank == last ? n - 1 : n, n);
        lr_mat vt2 = lr_mat_view(vt.data, r, g_rank == last ? n - 1 : n, n);
        lr_status st = lr_dist_rsvd(s, lr_mat_view(u.data, count, r, r + 1), vt2, NULL, b2, r, NULL, &rng, MPI_COMM_WORLD, &e);
        CHECK(st == LR_EDIM, "status %s: %s", lr_status_str(st), e.msg);
        CHECK(strstr(e.msg, "the ranks disagree on n (the columns of a): from 5 to 6"), "%s", e.msg);
        /* the last rank asks for one more value */
        size_t rr = g_rank == last ? r + 1 : r;
        st = lr_dist_rsvd(s, lr_mat_view(u.data, count, rr, r + 1), lr_mat_view(vt.data, rr, n, n), NULL, blk, rr, NULL,
                          &rng, MPI_COMM_WORLD, &e);
        CHECK(st == LR_EINVAL && strstr(e.msg, "disagree on the rank r: from 2 to 3"), "%s", e.msg);
    }
    /* a bad u on the last rank: every rank gets its message */
    lr_status st = lr_dist_rsvd(s, lr_mat_view(u.data, count, g_rank == last ? r + 1 : r, r + 1),
                                lr_mat_view(vt.data, r, n, n), NULL, blk, r, NULL, &rng, MPI_COMM_WORLD, &e);
    CHECK(st == LR_EDIM, "status %s", lr_status_str(st));
    char want[64];
    snprintf(want, sizeof want, "rank %d: dist rsvd: u is", last);
    CHECK(strstr(e.msg, want), "%s", e.msg);
    /* rng NULL on rank 0 */
    st = lr_dist_rsvd(s, lr_mat_view(u.data, count, r, r + 1), lr_mat_view(vt.data, r, n, n), NULL, blk, r, NULL,
                      NULL, MPI_COMM_WORLD, &e);
    CHECK(st == LR_EINVAL && strstr(e.msg, "rank 0: dist rsvd: rng is NULL on rank 0"), "%s", e.msg);
    /* r > min(m, n) */
    st = lr_dist_rsvd(s, lr_mat_view(u.data, count, r, r + 1), lr_mat_view(vt.data, r, n, n), NULL, blk, 7, NULL,
                      &rng, MPI_COMM_WORLD, &e);
    CHECK(st != LR_OK, "r = 7");
    /* a method that is none, too few Krylov columns for r, ranks on different methods */
    lr_rsvd_opts bad = lr_rsvd_opts_default();
    bad.method = (lr_rsvd_method)7;
    st = lr_dist_rsvd(s, lr_mat_view(u.data, count, r, r + 1), lr_mat_view(vt.data, r, n, n), NULL, blk, r, &bad,
                      &rng, MPI_COMM_WORLD, &e);
    CHECK(st == LR_EINVAL && strstr(e.msg, "rank 0: dist rsvd: method 7 is not LR_RSVD_BLOCK_KRYLOV"), "%s", e.msg);
    bad = lr_rsvd_opts_default();
    bad.block = 1;
    bad.krylov_depth = 0;
    st = lr_dist_rsvd(s, lr_mat_view(u.data, count, r, r + 1), lr_mat_view(vt.data, r, n, n), NULL, blk, r, &bad,
                      &rng, MPI_COMM_WORLD, &e);
    CHECK(st == LR_EINVAL && strstr(e.msg, "= 1 Krylov columns < rank r = 2"), "%s", e.msg);
    if (g_size > 1) {
        bad = lr_rsvd_opts_default();
        if (g_rank == last) bad.method = LR_RSVD_SUBSPACE;
        st = lr_dist_rsvd(s, lr_mat_view(u.data, count, r, r + 1), lr_mat_view(vt.data, r, n, n), NULL, blk, r, &bad,
                          &rng, MPI_COMM_WORLD, &e);
        CHECK(st == LR_EINVAL && strstr(e.msg, "disagree on the method: from 0 to 1"), "%s", e.msg);
        bad = lr_rsvd_opts_default();
        if (g_rank == last) bad.krylov_depth = 2;
        st = lr_dist_rsvd(s, lr_mat_view(u.data, count, r, r + 1), lr_mat_view(vt.data, r, n, n), NULL, blk, r, &bad,
                          &rng, MPI_COMM_WORLD, &e);
        CHECK(st == LR_EINVAL && strstr(e.msg, "disagree on krylov_depth: from 2 to 3"), "%s", e.msg);
    }
    /* a NaN in the last rank's block, named by its global row */
    if (count) w.data[(first + count - 1) * n + 2] = g_rank == last ? NAN : w.data[(first + count - 1) * n + 2];
    st = lr_dist_rsvd(s, lr_mat_view(u.data, count, r, r + 1), lr_mat_view(vt.data, r, n, n), NULL, blk, r, NULL,
                      &rng, MPI_COMM_WORLD, &e);
    snprintf(want, sizeof want, "(global row %zu) is NaN", m - 1);
    CHECK(st == LR_ENONFINITE && strstr(e.msg, want), "%s: %s", lr_status_str(st), e.msg);
    /* lr_dist_agree */
    strcpy(e.msg, "boom");
    st = lr_dist_agree(g_rank == last ? LR_EIO : LR_OK, MPI_COMM_WORLD, &e);
    snprintf(want, sizeof want, "rank %d: boom", last);
    CHECK(st == LR_EIO && strcmp(e.msg, want) == 0, "%s", e.msg);
    CHECK(lr_dist_agree(LR_OK, MPI_COMM_WORLD, &e) == LR_OK, "all ok");
    lr_mat_free(&u);
    lr_mat_free(&vt);
    lr_mat_free(&w);
}

/* Each rank reads its rows of a file rank 0 wrote; ‖a‖²_F over the ranks. */
static void test_npy_rows(void)
{
    const size_t m = 23, n = 4;
    lr_mat w = make_matrix(m, n, (const float[]){ 2, 1 }, 2, 3);
    char path[256];
    int pid = (int)getpid();
    MPI_Bcast(&pid, 1, MPI_INT, 0, MPI_COMM_WORLD);
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/lr-test-dist-%d.npy", tmp && *tmp ? tmp : "/tmp", pid);
    if (g_rank == 0) CHECK_OK(lr_npy_save(lr_cm(w), path, NULL));
    MPI_Barrier(MPI_COMM_WORLD);
    lr_mat blk;
    size_t first = 99, rows = 0;
    lr_err e = { "" };
    lr_status st = lr_dist_npy_load_rows(&blk, &first, &rows, path, MPI_COMM_WORLD, &e);
    CHECK(st == LR_OK, "%s", e.msg);
    size_t f, c;
    lr_dist_block(&f, &c, m, g_rank, g_size, NULL);
    CHECK(rows == m && first == f && blk.rows == c && blk.cols == n, "block %zu x %zu at %zu", blk.rows, blk.cols, first);
    if (c) CHECK(memcmp(blk.data, w.data + f * n, c * n * sizeof(float)) == 0, "rows differ");
    double f2 = 0, want = 0;
    lr_dist_stats stats = { 0, 0, 0 };
    CHECK_OK(lr_dist_frob2(&f2, &stats, lr_cm(blk), MPI_COMM_WORLD, NULL));
    for (size_t i = 0; i < m * n; i++) want += (double)w.data[i] * w.data[i];
    CHECK(fabs(f2 - want) <= 1e-9 * want, "frob2 %g vs %g", f2, want);
    CHECK(stats.bytes == sizeof(int) + sizeof(double) && stats.calls == 2, "frob2 stats %llu bytes",
          (unsigned long long)stats.bytes);
    lr_mat_free(&blk);
    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank == 0) unlink(path);
    /* a missing file: every rank fails with the file named */
    st = lr_dist_npy_load_rows(&blk, &first, &rows, path, MPI_COMM_WORLD, &e);
    CHECK(st == LR_EIO && strstr(e.msg, "rank 0: cannot open") && strstr(e.msg, "lr-test-dist-"), "%s", e.msg);
    CHECK(blk.data == NULL, "out not empty");
    lr_mat_free(&w);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    CHECK(g_size <= 8, "at most 8 ranks");
    test_block();
    test_rsvd_splits();
    test_rank_deficient();
    test_errors();
    test_npy_rows();
    if (g_rank == 0) printf("dist: all checks passed on %d rank%s\n", g_size, g_size == 1 ? "" : "s");
    MPI_Finalize();
    return 0;
}
