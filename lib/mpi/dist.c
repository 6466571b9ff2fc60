/* dist.c — the MPI layer (dist.h): statuses agreed over a communicator, row blocks of a
 * .npy read by offset, and the randomized SVD of a row-distributed matrix: randomized
 * block Krylov (Musco & Musco, NeurIPS 2015, Algorithm 2), built block by block as
 * lr_rsvd builds it, or randomized subspace iteration (Halko, Martinsson & Tropp, SIAM
 * Review 53(2), 2011, Algorithm 4.4), then Rayleigh–Ritz (HMT Algorithm 5.1), with the
 * tall basis orthonormalised by Cholesky-QR2 (Yamamoto, Nakatsukasa, Yanagisawa & Fukaya,
 * ETNA 44, 2015) over the ranks.
 *
 * Layout: this rank's rows a_k: (m_k, n) row-major as given; the tall basis y: (m_k, L)
 * row-major (ld = L), worked on in panels of l columns (the whole of it for subspace
 * iteration, one Krylov block at a time); the replicated thin side kept transposed as
 * zt: (L, n) row-major, which is LAPACK's column-major (n, L), so its Householder QR runs
 * in place, and which at the end is B = Qᵀ·a itself. An empty block (m_k = 0) skips every
 * local BLAS call (a k = 0 product would still have to be zero-filled) and contributes
 * zeros.
 *
 * Collective discipline: every rank takes the same branches. Local failures (arguments,
 * memory) are agreed (lr_dist_agree) before the first collective that depends on them;
 * after that each decision is taken on data that an Allreduce made identical on every
 * rank (the Gram matrix, the Krylov projections, B), with the same deterministic code, so
 * the ranks cannot diverge into different collectives.
 */
#include "lowrank/mpi/dist.h"

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include <lapacke.h>

#include "lowrank/io/npy.h"
#include "lowrank/linalg/svd.h"
#include "base/internal.h"
#include "mpi/dist_internal.h"

#define OVERFLOW_MSG "dist rsvd: the products overflowed float32 (entries of a near FLT_MAX); scale a down"

/* ---- collectives, counted ------------------------------------------------------- */

lr_status lr__mpi_fail(lr_err *err, const char *what, int rc)
{
    char s[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, s, &len);
    return lr__fail(err, LR_EIO, "%s failed: %s", what, s);
}

lr_status lr__dist_init(lr__dctx *d, MPI_Comm comm, lr_dist_stats *stats, lr_err *err)
{
    d->comm = comm;
    d->st = stats;
    int rc = MPI_Comm_rank(comm, &d->rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(comm, &d->size);
    return rc == MPI_SUCCESS ? LR_OK : lr__mpi_fail(err, "MPI_Comm_rank/size", rc);
}

void lr__dist_count(lr__dctx *d, double t0, size_t bytes)
{
    if (!d->st) return;
    d->st->seconds += MPI_Wtime() - t0;
    d->st->bytes += bytes;
    d->st->calls++;
}

lr_status lr__dist_allreduce(lr__dctx *d, void *buf, size_t n, MPI_Datatype t, size_t width, MPI_Op op, lr_err *err)
{
    double t0 = MPI_Wtime();
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, t, op, d->comm);
    lr__dist_count(d, t0, n * width);
    return rc == MPI_SUCCESS ? LR_OK : lr__mpi_fail(err, "MPI_Allreduce", rc);
}

lr_status lr__dist_bcast(lr__dctx *d, void *buf, size_t n, MPI_Datatype t, size_t width, lr_err *err)
{
    double t0 = MPI_Wtime();
    int rc = MPI_Bcast(buf, (int)n, t, 0, d->comm);
    lr__dist_count(d, t0, n * width);
    return rc == MPI_SUCCESS ? LR_OK : lr__mpi_fail(err, "MPI_Bcast", rc);
}

/* lr_dist_agree, counted in d's stats. */
lr_status lr__dist_agree(lr__dctx *d, lr_status st, lr_err *err)
{
    double t0 = MPI_Wtime();
    lr_status r = lr_dist_agree(st, d->comm, err);
    lr__dist_count(d, t0, sizeof(int));
    return r;
}

lr_status lr_dist_agree(lr_status st, MPI_Comm comm, lr_err *err)
{
    int rank, size, rc = MPI_Comm_rank(comm, &rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(comm, &size);
    if (rc != MPI_SUCCESS) return lr__mpi_fail(err, "MPI_Comm_rank/size", rc);
    int first = st != LR_OK ? rank : size;
    if ((rc = MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, comm)) != MPI_SUCCESS)
        return lr__mpi_fail(err, "MPI_Allreduce", rc);
    if (first == size) return LR_OK;
    struct { int st; char msg[sizeof err->msg]; } pkt;
    memset(&pkt, 0, sizeof pkt);
    if (rank == first) {
        pkt.st = (int)st;
        if (err) memcpy(pkt.msg, err->msg, sizeof pkt.msg - 1);
    }
    if ((rc = MPI_Bcast(&pkt, (int)sizeof pkt, MPI_BYTE, first, comm)) != MPI_SUCCESS)
        return lr__mpi_fail(err, "MPI_Bcast", rc);
    if (err) {
        int n = snprintf(err->msg, sizeof err->msg, "rank %d: ", first);
        size_t k = strlen(pkt.msg), room = sizeof err->msg - (size_t)n - 1;
        memcpy(err->msg + n, pkt.msg, k < room ? k : room);
        err->msg[(size_t)n + (k < room ? k : room)] = '\0';
    }
    return (lr_status)pkt.st;
}

/* ---- row blocks ---------------------------------------------------------------- */

lr_status lr_dist_block(size_t *first, size_t *count, size_t rows, int rank, int nranks, lr_err *err)
{
    if (!first || !count) return lr__fail(err, LR_EINVAL, "lr_dist_block: first or count is NULL");
    *first = *count = 0;
    if (nranks < 1) return lr__fail(err, LR_EINVAL, "lr_dist_block: nranks %d < 1", nranks);
    if (rank < 0 || rank >= nranks)
        return lr__fail(err, LR_EINVAL, "lr_dist_block: rank %d outside 0..%d", rank, nranks - 1);
    size_t n = (size_t)nranks, k = (size_t)rank, base = rows / n, extra = rows % n;
    *count = base + (k < extra);
    *first = k * base + (k < extra ? k : extra);
    return LR_OK;
}

lr_status lr_dist_npy_load_rows(lr_mat *out, size_t *first, size_t *rows, const char *path, MPI_Comm comm,
                                lr_err *err)
{
    lr__dctx d;
    lr_status st = lr__dist_init(&d, comm, NULL, err);
    if (st) return st;
    size_t r = 0, c = 0, f = 0, k = 0;
    if (out) *out = (lr_mat){ NULL, 0, 0, 0 };
    if (!out || !first || !rows) st = lr__fail(err, LR_EINVAL, "lr_dist_npy_load_rows: out, first or rows is NULL");
    else if (!path) st = lr__fail(err, LR_EINVAL, "lr_dist_npy_load_rows: path is NULL");
    if (!st) st = lr_npy_shape(&r, &c, path, err);
    if (!st) st = lr_dist_block(&f, &k, r, d.rank, d.size, err);
    if (!st) st = lr_npy_load_rows(out, path, f, k, err);
    if ((st = lr__dist_agree(&d, st, err))) {
        if (out) lr_mat_free(out);
        return st;
    }
    /* every rank read the same shape (the file could differ between nodes, or change
     * between the ranks' reads): max and, through ~x, min of both dimensions */
    unsigned long long v[4] = { r, c, ~(unsigned long long)r, ~(unsigned long long)c };
    if ((st = lr__dist_allreduce(&d, v, 4, MPI_UNSIGNED_LONG_LONG, 8, MPI_MAX, err))) {
        lr_mat_free(out);
        return st;
    }
    if (v[0] != ~v[2] || v[1] != ~v[3]) {
        lr_mat_free(out);
        return lr__fail(err, LR_EFORMAT, "%s: the ranks read different shapes: (%llu..%llu, %llu..%llu)", path,
                        ~v[2], v[0], ~v[3], v[1]);
    }
    *first = f;
    *rows = r;
    return LR_OK;
}

lr_status lr_dist_frob2(double *f2, lr_dist_stats *stats, lr_cmat a, MPI_Comm comm, lr_err *err)
{
    lr__dctx d;
    lr_status st = lr__dist_init(&d, comm, stats, err);
    if (st) return st;
    double sum = 0;
    if (!f2) st = lr__fail(err, LR_EINVAL, "lr_dist_frob2: f2 is NULL");
    else st = lr_mat_check(a, "dist frob2 input", err);
    if ((st = lr__dist_agree(&d, st, err))) return st;
    for (size_t i = 0; i < a.rows; i++)
        for (size_t j = 0; j < a.cols; j++) sum += (double)a.data[i * a.ld + j] * a.data[i * a.ld + j];
    if ((st = lr__dist_allreduce(&d, &sum, 1, MPI_DOUBLE, 8, MPI_SUM, err))) return st;
    *f2 = sum;
    return LR_OK;
}

/* ---- distributed randomized SVD ------------------------------------------------ */

typedef struct {
    lr__dctx d;
    lr_cmat a;          /* this rank's rows */
    size_t mk, n;       /* local rows, columns */
    size_t l, ld;       /* the panel y's width and leading dimension (ld >= l) */
    size_t offset;      /* global index of this rank's first row */
    uint64_t seed;      /* of the deflation's Gaussian rows (from rank 0's rng) */
    uint64_t salt;      /* added to those draws: distinct per Krylov block and pass (0: subspace) */
    float *y;           /* (mk, l), ld: the panel, a column block of the basis */
    double *yd;         /* (mk, l) the panel in double for Cholesky-QR */
    double *g;          /* (l, l) Gram matrix, then its Cholesky factor */
    double *row;        /* (l) */
    lapack_int *piv;    /* (l) */
} dr_ctx;

/* y: (mk, l) = a · ztᵀ, zt: (l, n) */
static void mul_a(const dr_ctx *c, const float *zt)
{
    if (!c->mk) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)c->mk, (blasint)c->l, (blasint)c->n, 1.0f,
                c->a.data, (blasint)c->a.ld, zt, (blasint)c->n, 0.0f, c->y, (blasint)c->ld);
}

/* zt: (l, n) = Σ_k y_kᵀ · a_k: local product, then an Allreduce; a non-finite result (the
 * same on every rank) is LR_ENONFINITE */
static lr_status mul_at(dr_ctx *c, float *zt, lr_err *err)
{
    const size_t l = c->l, n = c->n;
    if (c->mk)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)l, (blasint)n, (blasint)c->mk, 1.0f, c->y,
                    (blasint)c->ld, c->a.data, (blasint)c->a.ld, 0.0f, zt, (blasint)n);
    else
        memset(zt, 0, l * n * sizeof *zt);
    lr_status st = lr__dist_allreduce(&c->d, zt, l * n, MPI_FLOAT, sizeof(float), MPI_SUM, err);
    if (st) return st;
    for (size_t i = 0; i < l * n; i++)
        if (!isfinite(zt[i])) return LR_ENONFINITE;
    return LR_OK;
}

/* g <- Σ_k yd_kᵀ·yd_k (full upper triangle, zeros below); false when not finite. */
static lr_status gram(dr_ctx *c, bool *finite, lr_err *err)
{
    const size_t l = c->l;
    memset(c->g, 0, l * l * sizeof *c->g);
    if (c->mk)
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (blasint)l, (blasint)c->mk, 1.0, c->yd, (blasint)l, 0.0,
                    c->g, (blasint)l);
    lr_status st = lr__dist_allreduce(&c->d, c->g, l * l, MPI_DOUBLE, sizeof(double), MPI_SUM, err);
    *finite = true;
    for (size_t i = 0; i < l * l; i++)
        if (!isfinite(c->g[i])) *finite = false;
    return st;
}

/* Columns cols[0..nc) of y <- Gaussian, row i of the matrix drawn from a generator
 * seeded by its global row, the attempt and c->salt: the same numbers whatever the split. */
static void gaussian_columns(dr_ctx *c, const size_t *cols, size_t nc, unsigned attempt)
{
    for (size_t i = 0; i < c->mk; i++) {
        lr_rng g;
        lr_rng_seed(&g, c->seed ^ ((uint64_t)(c->offset + i) * 0x9E3779B97F4A7C15ull + attempt + c->salt));
        for (size_t j = 0; j < nc; j++) c->y[i * c->ld + cols[j]] = lr_rng_normal(&g);
    }
}

/* The pivoted sweep's rank deficiency: piv[rank..l) (1-based) are the dependent columns,
 * all of them when the panel is 0; they are drawn again (gaussian_columns). */
static void redraw_dependent(dr_ctx *c, double gmax, lapack_int rank, unsigned attempt)
{
    size_t nc = 0, *cols = (size_t *)(void *)c->row; /* l doubles hold l size_t */
    if (gmax > 0)
        for (size_t j = (size_t)rank; j < c->l; j++) cols[nc++] = (size_t)c->piv[j] - 1;
    else
        for (size_t j = 0; j < c->l; j++) cols[nc++] = j;
    gaussian_columns(c, cols, nc, attempt);
}

/* yd <- yd·P·R⁻¹, the pivoted sweep's Q (P the permutation dpstrf chose). */
static void apply_pivoted(dr_ctx *c)
{
    const size_t l = c->l, mk = c->mk;
    for (size_t i = 0; i < mk; i++) {
        double *yi = c->yd + i * l;
        for (size_t j = 0; j < l; j++) c->row[j] = yi[c->piv[j] - 1];
        memcpy(yi, c->row, l * sizeof *yi);
    }
    if (mk)
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit, (blasint)mk, (blasint)l, 1.0,
                    c->g, (blasint)l, c->yd, (blasint)l);
}

/* y <- an orthonormal basis of its range (over all ranks' rows): Cholesky-QR2 in double,
 * the first sweep pivoted (dpstrf) so that numerically dependent columns show; those are
 * replaced by Gaussian columns and the whole is tried again (at most l+2 attempts; each
 * removes every dependent column at once, so one retry is the rule). sweeps = 1 stops
 * after the pivoted sweep: enough for a panel whose Gram matrix is near I already (the
 * Krylov basis's second projection pass). */
static lr_status dist_orth(dr_ctx *c, int sweeps, lr_err *err)
{
    const size_t l = c->l, mk = c->mk;
    lr_status st;
    bool finite;
    for (unsigned attempt = 0; attempt < l + 2; attempt++) {
        for (size_t i = 0; i < mk; i++)
            for (size_t j = 0; j < l; j++) c->yd[i * l + j] = c->y[i * c->ld + j];
        if ((st = gram(c, &finite, err))) return st;
        if (!finite) return LR_ENONFINITE;
        double gmax = 0;
        for (size_t j = 0; j < l; j++) gmax = c->g[j * l + j] > gmax ? c->g[j * l + j] : gmax;
        lapack_int rank = 0;
        lapack_int info = gmax > 0 ? LAPACKE_dpstrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)l, c->g, (lapack_int)l, c->piv,
                                                    &rank, 1e-12 * gmax)
                                   : 1;
        if (info < 0)
            return lr__fail(err, LR_EINVAL, "dist rsvd: dpstrf argument %d had an illegal value (a bug in lowrank)",
                            (int)-info);
        if (info > 0) {
            redraw_dependent(c, gmax, rank, attempt);
            continue;
        }
        apply_pivoted(c);
        /* second sweep: Q is orthonormal to about u·κ² now, one more makes it exact */
        if (sweeps > 1) {
            if ((st = gram(c, &finite, err))) return st;
            if (!finite) return LR_ENONFINITE;
            info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)l, c->g, (lapack_int)l);
            if (info < 0)
                return lr__fail(err, LR_EINVAL, "dist rsvd: dpotrf argument %d had an illegal value (a bug in lowrank)",
                                (int)-info);
            if (info == 0 && mk)
                cblas_dtrsm(CblasRowMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit, (blasint)mk,
                            (blasint)l, 1.0, c->g, (blasint)l, c->yd, (blasint)l);
        }
        for (size_t i = 0; i < mk; i++)
            for (size_t j = 0; j < l; j++) c->y[i * c->ld + j] = (float)c->yd[i * l + j];
        if (info == 0) return LR_OK;
        /* not reached for κ(y) below 1e7; otherwise the pivoted sweep looks again */
    }
    return lr__fail(err, LR_ENOCONV, "dist rsvd: the sample could not be orthonormalised in %zu attempts", l + 2);
}

/* HMT Algorithm 4.4 on the panel y (l = ld columns), zt: (l, n) holding Ωᵀ; on return
 * y = Q and zt = B = Qᵀ·a. tau: (l) scratch. */
static lr_status range_subspace(dr_ctx *c, size_t q, float *zt, float *tau, lr_err *err)
{
    const size_t l = c->l, n = c->n;
    lr_status st;
    mul_a(c, zt);                                      /* Y = a·Ω         */
    if ((st = dist_orth(c, 2, err))) return st;
    for (size_t it = 0; it < q; it++) {
        if ((st = mul_at(c, zt, err))) return st;      /* Z = aᵀ·Q        */
        lapack_int info = LAPACKE_sgeqrf(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)l, zt, (lapack_int)n, tau);
        if (info == 0)
            info = LAPACKE_sorgqr(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)l, (lapack_int)l, zt, (lapack_int)n,
                                  tau);
        if (info != 0)
            return lr__fail(err, info < 0 ? LR_EINVAL : LR_ENOMEM, "dist rsvd: Householder QR failed (info %d)",
                            (int)info);
        mul_a(c, zt);                                  /* Y = a·Q̃         */
        if ((st = dist_orth(c, 2, err))) return st;
    }
    return mul_at(c, zt, err);                         /* B = Qᵀ·a        */
}

/* The panel y (b = l columns) minus its part in span q: (mk, jb) (ld c->ld, orthonormal
 * columns over the ranks): p: (jb, b) = Σ_k q_kᵀ·y_k (local + Allreduce of jb·b floats),
 * y -= q·p, one block classical Gram–Schmidt step. pn2: (b) <- the squared column norms
 * of p (how much of each column lay in span q). */
static lr_status project(dr_ctx *c, const float *q, size_t jb, float *p, double *pn2, lr_err *err)
{
    const size_t b = c->l, mk = c->mk, ld = c->ld;
    if (mk)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)jb, (blasint)b, (blasint)mk, 1.0f, q,
                    (blasint)ld, c->y, (blasint)ld, 0.0f, p, (blasint)b);
    else
        memset(p, 0, jb * b * sizeof *p);
    lr_status st = lr__dist_allreduce(&c->d, p, jb * b, MPI_FLOAT, sizeof(float), MPI_SUM, err);
    if (st) return st;
    if (mk)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)mk, (blasint)b, (blasint)jb, -1.0f, q,
                    (blasint)ld, p, (blasint)b, 1.0f, c->y, (blasint)ld);
    for (size_t k = 0; k < b; k++) pn2[k] = 0;
    for (size_t i = 0; i < jb; i++)
        for (size_t k = 0; k < b; k++) pn2[k] += (double)p[i * b + k] * p[i * b + k];
    for (size_t k = 0; k < b; k++)
        if (!isfinite(pn2[k])) return LR_ENONFINITE;
    return LR_OK;
}

/* Block j of the Krylov basis, the panel y, orthonormalised against q: (mk, jb) before it
 * as lr_rsvd does it (rsvd.c, range_krylov): block classical Gram–Schmidt twice (BCGS2,
 * Barlow & Smoktunowicz 2013), Cholesky-QR2 within the block after the first projection,
 * one (pivoted) Cholesky-QR sweep after the second; a third or fourth pass only when the
 * second still removed more than half a column's norm (Kahan–Parlett). From the second
 * pass on the panel's columns have norm 1, so a column that loses more than half its norm
 * (‖p_col‖² > 3/4) was rounding noise of a vector in span q: it is replaced by a Gaussian
 * one and projected again (deflation). The decisions are taken on p, the same on every
 * rank. p: (jb, b), pn2: (b) scratch. */
static lr_status krylov_orth(dr_ctx *c, size_t j, const float *q, size_t jb, float *p, double *pn2, lr_err *err)
{
    lr_status st;
    c->salt = (uint64_t)(1 + 8 * j) << 32;
    if (!jb) return dist_orth(c, 2, err);
    for (unsigned pass = 0; pass < 4; pass++) {
        c->salt = (uint64_t)(1 + 8 * j + 2 * pass) << 32;
        if ((st = project(c, q, jb, p, pn2, err))) return st;
        double cn2 = 0;
        size_t nc = 0, *cols = (size_t *)(void *)c->row;
        for (size_t k = 0; k < c->l; k++) {
            cn2 = pn2[k] > cn2 ? pn2[k] : cn2;
            if (pass && pn2[k] > 0.75) cols[nc++] = k;
        }
        if (nc) {
            gaussian_columns(c, cols, nc, 0);
            if ((st = project(c, q, jb, p, pn2, err))) return st;
            for (size_t k = 0; k < c->l; k++) cn2 = pn2[k] > cn2 ? pn2[k] : cn2;
        }
        const bool done = pass > 0 && cn2 <= 0.25;
        c->salt++;
        if ((st = dist_orth(c, done ? 1 : 2, err))) return st;
        if (done) break;
    }
    return LR_OK;
}

/* Musco & Musco 2015, Algorithm 2, over the ranks, built block by block as lr_rsvd builds
 * it: Q_0 = orth(a·Ω), W_j = Q_jᵀ·a (local + Allreduce of b·n floats), Q_j =
 * orth((I − P_{<j})·a·W_{j−1}ᵀ). c->y: (mk, L) the basis (ld L, panel width l = b);
 * wt: (L, n) with Ωᵀ in its first b rows; on return its rows are the W_j, i.e. B = Qᵀ·a.
 * p: (L, b), pn2: (b) scratch. */
static lr_status range_krylov(dr_ctx *c, size_t q, float *wt, float *p, double *pn2, lr_err *err)
{
    const size_t b = c->l, n = c->n;
    float *const q0 = c->y;
    lr_status st = LR_OK;
    for (size_t j = 0; j <= q && !st; j++) {
        float *wj = wt + j * b * n;
        c->y = q0 + j * b;
        mul_a(c, j ? wj - b * n : wj);                  /* Y_j = a·W_{j−1}ᵀ (a·Ω) */
        st = krylov_orth(c, j, q0, j * b, p, pn2, err);
        if (!st) st = mul_at(c, wj, err);               /* W_j = Q_jᵀ·a           */
    }
    c->y = q0;
    return st;
}

/* Rayleigh–Ritz, replicated: B = zt: (L, n) = Ũ·S·Vᵀ (lr_svd); s = S[:r], vt = Vᵀ[:r, :],
 * U_k = Q_k·Ũ[:, :r] with Q = c->y: (mk, L), ld L. ub: (L, L), sb: (L), vbt: (L, n). */
static lr_status ritz(dr_ctx *c, size_t L, size_t r, const float *zt, float *ub, float *sb, float *vbt, float *s,
                      lr_mat u, lr_mat vt, lr_err *err)
{
    const size_t n = c->n;
    lr_status st = lr_svd(sb, lr_mat_view(ub, L, L, L), lr_mat_view(vbt, L, n, n), lr_cmat_view(zt, L, n, n), NULL, err);
    if (st) return st;
    memcpy(s, sb, r * sizeof *s);
    for (size_t i = 0; i < r; i++) memcpy(vt.data + i * vt.ld, vbt + i * n, n * sizeof(float));
    if (c->mk)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)c->mk, (blasint)r, (blasint)L, 1.0f, c->y,
                    (blasint)c->ld, ub, (blasint)L, 0.0f, u.data, (blasint)u.ld);
    return LR_OK;
}

/* After a collective LR_ENONFINITE: the rank holding a NaN/Inf names it by its global
 * row; if none does, the products overflowed. */
static lr_status name_nonfinite(dr_ctx *c, lr_err *err)
{
    lr_status st = LR_OK;
    for (size_t i = 0; i < c->mk && !st; i++)
        for (size_t j = 0; j < c->n; j++) {
            float v = c->a.data[i * c->a.ld + j];
            if (!isfinite(v)) {
                st = lr__fail(err, LR_ENONFINITE, "dist rsvd: a[%zu, %zu] (global row %zu) is %s", i, j,
                              c->offset + i, isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
                break;
            }
        }
    if ((st = lr__dist_agree(&c->d, st, err))) return st;
    return lr__fail(err, LR_ENONFINITE, OVERFLOW_MSG);
}

/* The option fields of o->method against their ranges, as lr_rsvd checks them. */
static lr_status check_opts(const lr_rsvd_opts *o, size_t r, lr_err *err)
{
    if (o->method != LR_RSVD_BLOCK_KRYLOV && o->method != LR_RSVD_SUBSPACE)
        return lr__fail(err, LR_EINVAL,
                        "dist rsvd: method %d is not LR_RSVD_BLOCK_KRYLOV (%d) or LR_RSVD_SUBSPACE (%d)",
                        (int)o->method, (int)LR_RSVD_BLOCK_KRYLOV, (int)LR_RSVD_SUBSPACE);
    if (o->method == LR_RSVD_SUBSPACE) {
        if (o->oversample > (size_t)INT_MAX)
            return lr__fail(err, LR_EINVAL, "dist rsvd: oversample %zu out of range 0..%d", o->oversample, INT_MAX);
        if (o->power_iters > 1000)
            return lr__fail(err, LR_EINVAL, "dist rsvd: power_iters %zu out of range 0..1000", o->power_iters);
        return LR_OK;
    }
    if (o->block > (size_t)INT_MAX)
        return lr__fail(err, LR_EINVAL, "dist rsvd: block %zu out of range 0..%d (0 = r)", o->block, INT_MAX);
    if (o->krylov_depth > 1000)
        return lr__fail(err, LR_EINVAL, "dist rsvd: krylov_depth %zu out of range 0..1000", o->krylov_depth);
    size_t b = o->block ? o->block : r;
    if (b * (o->krylov_depth + 1) < r)
        return lr__fail(err, LR_EINVAL,
                        "dist rsvd: block %zu x (krylov_depth %zu + 1) = %zu Krylov columns < rank r = %zu; "
                        "need block*(krylov_depth+1) >= r", b, o->krylov_depth, b * (o->krylov_depth + 1), r);
    return LR_OK;
}

static lr_status check_local(const dr_ctx *c, const float *s, lr_mat u, lr_mat vt, size_t r, const lr_rsvd_opts *o,
                             const lr_rng *rng, lr_err *err)
{
    lr_status st;
    if (c->d.rank == 0 && !rng)
        return lr__fail(err, LR_EINVAL, "dist rsvd: rng is NULL on rank 0 (randomness must be seeded explicitly)");
    if ((st = lr_mat_check(c->a, "dist rsvd input", err))) return st;
    if (r == 0) return lr__fail(err, LR_EINVAL, "dist rsvd: rank r = 0; need r >= 1");
    if (!s) return lr__fail(err, LR_EINVAL, "dist rsvd: s is NULL (needs %zu values)", r);
    if ((st = lr_mat_check(lr_cm(u), "dist rsvd u", err)) || (st = lr_mat_check(lr_cm(vt), "dist rsvd vt", err)))
        return st;
    if (u.rows != c->mk || u.cols != r)
        return lr__fail(err, LR_EDIM, "dist rsvd: u is %zu x %zu, expected %zu x %zu (this rank's rows x r)", u.rows,
                        u.cols, c->mk, r);
    if (vt.rows != r || vt.cols != c->n)
        return lr__fail(err, LR_EDIM, "dist rsvd: vt is %zu x %zu, expected %zu x %zu", vt.rows, vt.cols, r, c->n);
    if ((st = check_opts(o, r, err))) return st;
    if (c->mk > INT_MAX || c->n > INT_MAX || c->a.ld > INT_MAX || u.ld > INT_MAX || vt.ld > INT_MAX)
        return lr__fail(err, LR_ERANGE, "dist rsvd: a %zu x %zu block exceeds BLAS's 32-bit sizes", c->mk, c->n);
    return LR_OK;
}

/* The ranks hold rows of one matrix and asked for one factorisation: n, r, the method and
 * its two fields agree (max and, through ~x, min of each in one Allreduce). */
static lr_status check_agree(dr_ctx *c, size_t r, const lr_rsvd_opts *o, lr_err *err)
{
    const bool sub = o->method == LR_RSVD_SUBSPACE;
    const char *const what[5] = { "n (the columns of a)", "the rank r", "the method", sub ? "oversample" : "block",
                                  sub ? "power_iters" : "krylov_depth" };
    const unsigned long long x[5] = { c->n, r, (unsigned long long)o->method, sub ? o->oversample : o->block,
                                      sub ? o->power_iters : o->krylov_depth };
    unsigned long long v[10];
    for (int i = 0; i < 5; i++) v[i] = x[i], v[5 + i] = ~x[i];
    lr_status st = lr__dist_allreduce(&c->d, v, 10, MPI_UNSIGNED_LONG_LONG, 8, MPI_MAX, err);
    if (st) return st;
    for (int i = 0; i < 5; i++)
        if (v[i] != ~v[5 + i])
            return lr__fail(err, i ? LR_EINVAL : LR_EDIM,
                            "dist rsvd: the ranks disagree on %s: from %llu to %llu (this rank: %llu)", what[i],
                            ~v[5 + i], v[i], x[i]);
    return LR_OK;
}

/* Arguments checked and agreed; *m <- Σ m_k and c->offset <- this rank's first row
 * (an Allgather of the row counts). */
static lr_status setup(dr_ctx *c, size_t *m, const float *s, lr_mat u, lr_mat vt, size_t r, const lr_rsvd_opts *o,
                       const lr_rng *rng, lr_err *err)
{
    unsigned long long *counts = malloc((size_t)c->d.size * sizeof *counts);
    lr_status st = counts ? check_local(c, s, u, vt, r, o, rng, err)
                          : lr__fail(err, LR_ENOMEM, "dist rsvd: cannot allocate %d counts", c->d.size);
    if ((st = lr__dist_agree(&c->d, st, err)) || (st = check_agree(c, r, o, err))) {
        free(counts);
        return st;
    }
    counts[c->d.rank] = c->mk;
    double t0 = MPI_Wtime();
    int rc = MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, counts, 1, MPI_UNSIGNED_LONG_LONG, c->d.comm);
    lr__dist_count(&c->d, t0, (size_t)c->d.size * 8);
    if (rc != MPI_SUCCESS) {
        free(counts);
        return lr__mpi_fail(err, "MPI_Allgather", rc);
    }
    *m = 0;
    for (int k = 0; k < c->d.size; k++) {
        if (k == c->d.rank) c->offset = *m;
        *m += (size_t)counts[k];
    }
    free(counts);
    return LR_OK;
}

/* The panel width b, the depth q and the basis width L (the Krylov method's b·(q+1), the
 * subspace method's l), as lr_rsvd chooses them: clamped to kmin = min(m, n), where the
 * sample spans the whole range and the result is exact. */
static void widths(const lr_rsvd_opts *o, size_t r, size_t kmin, size_t *b, size_t *q, size_t *L)
{
    if (o->method == LR_RSVD_SUBSPACE) {
        *b = *L = r + o->oversample > kmin ? kmin : r + o->oversample;
        *q = o->power_iters;
        return;
    }
    *b = o->block ? o->block : r;
    *q = o->krylov_depth;
    if (*b * (*q + 1) >= kmin) *b = kmin, *q = 0;
    *L = *b * (*q + 1);
}

lr_status lr_dist_rsvd(float *s, lr_mat u, lr_mat vt, lr_dist_stats *stats, lr_cmat a, size_t r,
                       const lr_rsvd_opts *opts, lr_rng *rng, MPI_Comm comm, lr_err *err)
{
    dr_ctx c;
    memset(&c, 0, sizeof c);
    lr_status st = lr__dist_init(&c.d, comm, stats, err);
    if (st) return st;
    const lr_rsvd_opts o = opts ? *opts : lr_rsvd_opts_default();
    c.a = a;
    c.mk = a.rows;
    c.n = a.cols;
    size_t m = 0;
    if ((st = setup(&c, &m, s, u, vt, r, &o, rng, err))) return st;
    /* from here on every decision is the same on every rank */
    const size_t n = c.n, kmin = m < n ? m : n;
    if (r > kmin)
        return lr__fail(err, LR_EINVAL, "dist rsvd: rank r = %zu exceeds min(m, n) = min(%zu, %zu) = %zu", r, m, n,
                        kmin);
    size_t b, q, L;
    widths(&o, r, kmin, &b, &q, &L);
    if ((double)n * (double)L + 2 > (double)INT_MAX)
        return lr__fail(err, LR_ERANGE, "dist rsvd: the %zu x %zu thin side exceeds MPI's int counts", n, L);

    /* y: (mk, L) the basis; zt: (L, n) + 2 floats carrying the deflation seed; ub: (L, L);
     * sb: (L); vbt: (L, n); p: (L, b) (Krylov). yd: (mk, b); g: (b, b); row, pn2: (b). */
    const size_t np = o.method == LR_RSVD_SUBSPACE ? 0 : L * b;
    const size_t nf = c.mk * L + (L * n + 2) + L * L + L + L * n + np, nd = c.mk * b + b * b + 2 * b;
    float *fbuf = malloc(nf * sizeof *fbuf);
    double *dbuf = malloc(nd * sizeof *dbuf);
    c.piv = malloc(b * sizeof *c.piv);
    st = fbuf && dbuf && c.piv ? LR_OK
                               : lr__fail(err, LR_ENOMEM, "dist rsvd: cannot allocate %zu floats and %zu doubles", nf, nd);
    if ((st = lr__dist_agree(&c.d, st, err))) goto done;
    c.y = fbuf;
    c.l = b;
    c.ld = L;
    float *zt = c.y + c.mk * L, *ub = zt + L * n + 2, *sb = ub + L * L, *vbt = sb + L, *p = vbt + L * n;
    c.yd = dbuf;
    c.g = c.yd + c.mk * b;
    c.row = c.g + b * b;
    double *pn2 = c.row + b;

    /* Ωᵀ: (b, n) as lr_rsvd draws it, and the deflation seed, from rank 0 */
    if (c.d.rank == 0) {
        lr_rng_fill_normal(rng, lr_mat_view(zt, b, n, n), 0.0f, 1.0f);
        uint64_t seed = lr_rng_u64(rng);
        memcpy(zt + b * n, &seed, sizeof seed);
    }
    if ((st = lr__dist_bcast(&c.d, zt, b * n + 2, MPI_FLOAT, sizeof(float), err))) goto done;
    memcpy(&c.seed, zt + b * n, sizeof c.seed);

    st = o.method == LR_RSVD_SUBSPACE ? range_subspace(&c, q, zt, sb, err) : range_krylov(&c, q, zt, p, pn2, err);
    if (!st) st = ritz(&c, L, r, zt, ub, sb, vbt, s, u, vt, err);
done:
    if (st == LR_ENONFINITE) st = name_nonfinite(&c, err);
    free(fbuf);
    free(dbuf);
    free(c.piv);
    return st;
}
