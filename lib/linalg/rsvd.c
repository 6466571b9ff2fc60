/* rsvd.c — randomized truncated SVD: randomized block Krylov (Musco & Musco,
 * "Randomized block Krylov methods for stronger and faster approximate singular
 * value decomposition", NeurIPS 2015, Algorithm 2) or randomized subspace
 * iteration (Halko, Martinsson & Tropp, "Finding structure with randomness",
 * SIAM Review 53(2), 2011, Algorithm 4.4), each followed by Rayleigh–Ritz
 * (HMT Algorithm 5.1: the direct SVD of B = Qᵀ·a).
 *
 * Work on the orientation t = a or aᵀ with more rows than columns (M >= N): the
 * Gaussian test matrix then has the short side N, and the small SVD is of a
 * wide L x N matrix.
 *
 * Layout: thin matrices are kept transposed, qt: (L,M) and zt: (L,N) in
 * row-major, which is exactly LAPACK's column-major (M,L) and (N,L); a block of
 * k consecutive rows is again such a matrix. So the QR factorisations (orth()
 * below) run on them in place with no copies, and every product with t is one
 * sgemm reading a where it lies:
 *   qt <- zt·tᵀ   (k,M) = (k,N)·(N,M)
 *   zt <- qt·t    (k,N) = (k,M)·(M,N)
 * Workspace is allocated inside the call (one block, plus one for the small SVD)
 * and released before returning.
 */
#include <float.h>
#include <limits.h>
#include <stdbool.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include <lapacke.h>
#include "lowrank/linalg/rsvd.h"
#include "base/internal.h"

#define OVERFLOW_MSG "rsvd: the products overflowed float32 (entries of a near FLT_MAX); scale a down"

lr_rsvd_opts lr_rsvd_opts_default(void)
{
    lr_rsvd_opts o = { 10, 4, LR_RSVD_BLOCK_KRYLOV, 0, 3 };
    return o;
}

typedef struct {
    const float *a;   /* the caller's matrix, row-major (m,n) with ld; NULL with src */
    size_t lda;
    const lr_rows *src; /* or read a block of rows at a time (lr_rsvd_rows) */
    float *blk;       /* (br, n) a block of src's rows */
    size_t br;
    lr_err *err;      /* where a failed read says why */
    bool tr;          /* t = aᵀ (when m < n) */
    size_t M, N;
    size_t kmax;      /* widest panel orth() sees: tau, gram and work are sized for it */
    float *tau, *work, *gram;
    lapack_int *iwork; /* (kmax), for strcon */
    lapack_int lwork;
    double *n2;       /* (2·b) row norms for the Krylov deflation */
} rs_ctx;

/* Rows [r0, r0 + n) of the source into c->blk; LR_EIO etc. from the reader. */
static lr_status read_rows(const rs_ctx *c, size_t r0, size_t n)
{
    return c->src->read(c->src->ctx, c->blk, r0, n, c->err);
}

/* The products below, a block of the source's rows at a time. With t = a (a: (M,N)) a row
 * block is a block of t's rows; with t = aᵀ a block of its columns. */
static lr_status mul_rows(const rs_ctx *c, float *out, const float *in, size_t k, bool tt)
{
    const size_t M = c->M, N = c->N, rows = c->src->rows, cols = c->src->cols;
    for (size_t r0 = 0; r0 < rows; r0 += c->br) {
        size_t n = rows - r0 < c->br ? rows - r0 : c->br;
        lr_status st = read_rows(c, r0, n);
        if (st) return st;
        if (tt != c->tr) /* out[:, r0:r0+n] = in · blkᵀ: (k, cols) · (cols, n) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)k, (blasint)n, (blasint)cols, 1.0f, in,
                        (blasint)cols, c->blk, (blasint)cols, 0.0f, out + r0, (blasint)(tt ? M : N));
        else /* out += in[:, r0:r0+n] · blk: (k, n) · (n, cols) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)k, (blasint)cols, (blasint)n, 1.0f,
                        in + r0, (blasint)(tt ? N : M), c->blk, (blasint)cols, r0 ? 1.0f : 0.0f, out, (blasint)cols);
    }
    return LR_OK;
}

/* out: (k,M) = in: (k,N) · tᵀ */
static lr_status mul_tt(const rs_ctx *c, float *out, const float *in, size_t k)
{
    if (c->src) return mul_rows(c, out, in, k, true);
    /* t = a: tᵀ = aᵀ (a is (M,N)); t = aᵀ: tᵀ = a (a is (N,M)) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, c->tr ? CblasNoTrans : CblasTrans, (blasint)k,
                (blasint)c->M, (blasint)c->N, 1.0f, in, (blasint)c->N, c->a, (blasint)c->lda, 0.0f,
                out, (blasint)c->M);
    return LR_OK;
}

/* out: (k,N) = in: (k,M) · t */
static lr_status mul_t(const rs_ctx *c, float *out, const float *in, size_t k)
{
    if (c->src) return mul_rows(c, out, in, k, false);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, c->tr ? CblasTrans : CblasNoTrans, (blasint)k,
                (blasint)c->N, (blasint)c->M, 1.0f, in, (blasint)c->M, c->a, (blasint)c->lda, 0.0f,
                out, (blasint)c->N);
    return LR_OK;
}

/* Replaces the column-major (rows, k) matrix x by the Q of its Householder QR
 * (LAPACK sgeqrf + sorgqr). */
static lr_status orth_householder(const rs_ctx *c, float *x, size_t rows, size_t k, lr_err *err)
{
    lapack_int info = LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, (lapack_int)rows, (lapack_int)k, x,
                                          (lapack_int)rows, c->tau, c->work, c->lwork);
    if (info == 0)
        info = LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, (lapack_int)rows, (lapack_int)k, (lapack_int)k, x,
                                   (lapack_int)rows, c->tau, c->work, c->lwork);
    if (info < 0)
        return lr__fail(err, LR_EINVAL, "rsvd: QR argument %d had an illegal value (a bug in lowrank)",
                        (int)-info);
    return LR_OK; /* geqrf/orgqr have no info > 0 */
}

/* One Cholesky-QR sweep on the column-major (rows, k) x: g = xᵀx + shift·I = rᵀr,
 * x <- x·r⁻¹. Returns false, x untouched, when the Cholesky factorisation breaks
 * down or r's estimated reciprocal condition (LAPACK strcon, 1-norm) is below
 * min_rcond: an unshifted sweep is only accurate while κ(x)²·u << 1. */
static bool cholqr_sweep(const rs_ctx *c, float *x, size_t rows, size_t k, bool shifted, float min_rcond)
{
    const blasint l = (blasint)k, M = (blasint)rows;
    float *g = c->gram;
    cblas_ssyrk(CblasColMajor, CblasUpper, CblasTrans, l, M, 1.0f, x, M, 0.0f, g, l);
    if (shifted) {
        /* Fukaya et al. 2020, shift 11·(M·l + l(l+1))·u·‖x‖², with ‖x‖_2 <= ‖x‖_F */
        double fro2 = 0;
        for (blasint i = 0; i < l; i++) fro2 += g[i * l + i];
        float sh = (float)(11.0 * ((double)M * l + (double)l * (l + 1)) * (FLT_EPSILON / 2) * fro2);
        for (blasint i = 0; i < l; i++) g[i * l + i] += sh;
    }
    if (LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'U', l, g, l) != 0) return false;
    for (blasint i = 0; i < l; i++)
        if (!(g[i * l + i] > 0) || !isfinite(g[i * l + i])) return false;
    if (min_rcond > 0) {
        float rcond = 0;
        if (LAPACKE_strcon_work(LAPACK_COL_MAJOR, '1', 'U', 'N', l, g, l, &rcond, c->work, c->iwork) != 0 ||
            !(rcond >= min_rcond))
            return false;
    }
    cblas_strsm(CblasColMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit, M, l, 1.0f, g, l, x, M);
    return true;
}

/* Orthonormalises the column-major (rows, k) matrix x in place, keeping its range.
 * Shifted Cholesky-QR3 (Fukaya, Kannan, Nakatsukasa, Yamamoto & Yanagisawa, SISC
 * 2020): three Gram/Cholesky/triangular-solve sweeps, all level-3 BLAS,
 * orthonormal to working precision for any condition number up to about 1/u.
 * Householder QR is level-2 bound on these tall, thin panels and issues hundreds
 * of small threaded BLAS calls, which is where a contended 2-core machine loses
 * most time. x numerically rank-deficient (a = 0, rank(a) < k, a converged Krylov
 * block) is beyond that bound: the shifted first sweep leaves κ(x) near 1/√u, the
 * unshifted ones would return a non-orthonormal x, so they refuse (rcond < 1e-3,
 * then < 0.1 for the last) and Householder QR (sgeqrf + sorgqr) finishes from the
 * last accepted sweep's x, which has the range of the input (the shifted r₁ has
 * κ <= ‖x‖/√shift, the accepted unshifted ones κ <= ~1e3). */
static lr_status orth(const rs_ctx *c, float *x, size_t rows, size_t k, bool householder, lr_err *err)
{
    if (householder || k > rows) return orth_householder(c, x, rows, k, err);
    if (cholqr_sweep(c, x, rows, k, true, 0) && cholqr_sweep(c, x, rows, k, false, 1e-3f) &&
        cholqr_sweep(c, x, rows, k, false, 0.1f))
        return LR_OK;
    return orth_householder(c, x, rows, k, err);
}

/* Cholesky-QR2 (Yamamoto, Nakatsukasa, Yanagisawa & Fukaya 2015), two sweeps
 * instead of three, when x is well enough conditioned for it: the first sweep's
 * R must have rcond >= 1e-3 and the second's >= 0.1 (x then nearly
 * orthonormal); otherwise x is restored from `orig` (a copy of the input, which
 * the caller keeps) and orth() does it the robust way. */
static lr_status orth_fast(const rs_ctx *c, float *x, const float *orig, size_t rows, size_t k, lr_err *err)
{
    if (k <= rows && cholqr_sweep(c, x, rows, k, false, 1e-3f)) {
        if (cholqr_sweep(c, x, rows, k, false, 0.1f)) return LR_OK;
        memcpy(x, orig, rows * k * sizeof *x);
    }
    return orth(c, x, rows, k, false, err);
}

/* x: (k,rows) row-major <- x − (x·qᵀ)·q, q: (kq,rows) row-major with orthonormal
 * rows; proj: (k,kq) scratch. One block classical Gram–Schmidt step; returns the
 * largest 2-norm of a row of x·qᵀ (how much of a column of x lay in span q). */
static double project_out(float *x, const float *q, float *proj, size_t rows, size_t kq, size_t k)
{
    const blasint R = (blasint)rows, K = (blasint)k, KQ = (blasint)kq;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, K, KQ, R, 1.0f, x, R, q, R, 0.0f, proj, KQ);
    double cmax = 0;
    for (size_t i = 0; i < k; i++) {
        double c2 = 0;
        for (size_t p = 0; p < kq; p++) c2 += (double)proj[i * kq + p] * proj[i * kq + p];
        if (c2 > cmax) cmax = c2;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, K, R, KQ, -1.0f, proj, KQ, q, R, 1.0f, x, R);
    return sqrt(cmax);
}

static lr_status lwork_for(rs_ctx *c, lr_err *err)
{
    float q1 = 0, q2 = 0;
    size_t rows = c->M; /* the larger of the two QR problems */
    lapack_int i1 = LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, (lapack_int)rows, (lapack_int)c->kmax, NULL,
                                        (lapack_int)rows, NULL, &q1, -1);
    lapack_int i2 = LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, (lapack_int)rows, (lapack_int)c->kmax,
                                        (lapack_int)c->kmax, NULL, (lapack_int)rows, NULL, &q2, -1);
    if (i1 || i2) return lr__fail(err, LR_EINVAL, "rsvd: QR workspace query failed (%d, %d)", (int)i1, (int)i2);
    double w = (q1 > q2 ? q1 : q2) * (1.0 + 1e-6) + 64.0;
    if (w < (double)c->kmax * 64) w = (double)c->kmax * 64;
    if (!(w < (double)INT_MAX)) return lr__fail(err, LR_ERANGE, "rsvd: QR workspace too large");
    c->lwork = (lapack_int)w;
    return LR_OK;
}

/* The first sample y: (k,M) = Ωᵀ·tᵀ is finite iff a is (a NaN or ±Inf entry
 * reaches every entry of its row or column of y, whatever the Gaussian weight) and
 * the product did not overflow. Scanning y instead of a saves a pass over a; a is
 * scanned only on failure, to name the entry. */
static lr_status check_sample(const rs_ctx *c, const float *y, size_t k, lr_err *err)
{
    for (size_t i = 0; i < k * c->M; i++)
        if (!isfinite(y[i])) {
            if (c->src)
                return lr__fail(err, LR_ENONFINITE, "rsvd: a product with the row source is not finite: an entry it "
                                "read is NaN or Inf, or the products overflowed float32");
            lr_cmat a = c->tr ? lr_cmat_view(c->a, c->N, c->M, c->lda) : lr_cmat_view(c->a, c->M, c->N, c->lda);
            lr_status st = lr_mat_check_finite(a, "rsvd input", err);
            return st ? st : lr__fail(err, LR_ENONFINITE, OVERFLOW_MSG);
        }
    return LR_OK;
}

/* HMT Algorithm 4.4: qt: (l,M) <- Q, zt: (l,N) <- B = Qᵀ·t. Q = qr(t·Ω);
 * q times { Q̃ = qr(tᵀ·Q); Q = qr(t·Q̃) }. Re-orthonormalising between the
 * products keeps the columns from collapsing onto the leading singular vector
 * in float32 (HMT §4.5); the last QR, the one defining Q, is Householder. */
static lr_status range_subspace(const rs_ctx *c, size_t l, size_t q, float *qt, float *zt, lr_rng *rng,
                                lr_err *err)
{
    const size_t M = c->M, N = c->N;
    lr_status st;
    lr_rng_fill_normal(rng, lr_mat_view(zt, l, N, N), 0.0f, 1.0f); /* Ωᵀ: (l,N) */
    if ((st = mul_tt(c, qt, zt, l))) return st;                      /* Y = t·Ω     */
    if ((st = check_sample(c, qt, l, err))) return st;
    if ((st = orth(c, qt, M, l, q == 0, err))) return st;
    for (size_t it = 0; it < q; it++) {
        if ((st = mul_t(c, zt, qt, l))) return st;                   /* Z = tᵀ·Q    */
        if ((st = orth(c, zt, N, l, false, err))) return st;
        if ((st = mul_tt(c, qt, zt, l))) return st;                  /* Y = t·Q̃    */
        if ((st = orth(c, qt, M, l, it + 1 == q, err))) return st;
    }
    return mul_t(c, zt, qt, l);                                      /* B = Qᵀ·t    */
}

/* Musco & Musco 2015, Algorithm 2, with the basis built block by block:
 *   Q_0 = qr(t·Ω),  Ω: (N,b);   W_j = tᵀ·Q_j;   Q_j = qr((I − P_{<j})·t·W_{j−1}),
 * P_{<j} the projector on Q_0..Q_{j−1}. span Q = span [tΩ, (ttᵀ)tΩ, ..., (ttᵀ)^q tΩ],
 * L = b·(q+1) columns. Block classical Gram–Schmidt run twice (BCGS2, Barlow &
 * Smoktunowicz 2013) with shifted Cholesky-QR3 inside each block keeps Q
 * orthonormal to working precision. A column of a block that is numerically in the
 * span of the earlier ones (an invariant subspace was found: t has low rank, or the
 * space is exhausted) is rounding noise once projected, and orthonormalising noise
 * gives vectors that are not orthogonal to the earlier ones (Q lost its
 * orthogonality and the Ritz values came out above the true ones on a rank-7
 * matrix, block 8, depth 2). Such a column shows itself in the second pass, losing
 * more than half its norm again; it is replaced by a Gaussian one and projected
 * again (deflation, as in block Lanczos): an extra random direction only widens the
 * space. Since W_j = (Q_jᵀ·t)ᵀ, the rows of
 * wt: (L,N) are B = Qᵀ·t when the loop ends: 2(q+1) products of b columns in all,
 * no separate projection pass. qt: (L,M) <- Q; proj: (L,b), save: (b,M) scratch. */
/* Squared 2-norms of the k rows of x: (k,rows) into n2. */
static void row_norms2(double *n2, const float *x, size_t rows, size_t k)
{
    for (size_t i = 0; i < k; i++) {
        double a = 0;
        for (size_t p = 0; p < rows; p++) a += (double)x[i * rows + p] * x[i * rows + p];
        n2[i] = a;
    }
}

/* Projects span q out of x: (k,rows) (project_out) whose rows are orthonormal already (a
 * block after its first orthonormalisation), then replaces every row that kept less than
 * half its norm by a Gaussian row and projects again: such a row was rounding noise of a
 * vector in span q, and another pass would only renormalise the noise (Kahan–Parlett: a
 * vector that loses that much in a second projection is numerically in the span).
 * n2: (2k) scratch. Returns the largest component in span q, as project_out. */
static double project_deflate(float *x, const float *q, float *proj, double *n2, size_t rows, size_t kq, size_t k,
                              lr_rng *rng)
{
    row_norms2(n2, x, rows, k);
    double cn = project_out(x, q, proj, rows, kq, k);
    row_norms2(n2 + k, x, rows, k);
    bool any = false;
    for (size_t i = 0; i < k; i++)
        if (!(n2[k + i] > 0.25 * n2[i])) {
            lr_rng_fill_normal(rng, lr_mat_view(x + i * rows, 1, rows, rows), 0.0f, 1.0f);
            any = true;
        }
    if (any) {
        double c2 = project_out(x, q, proj, rows, kq, k);
        if (c2 > cn) cn = c2;
    }
    return cn;
}

static lr_status range_krylov(const rs_ctx *c, size_t b, size_t q, float *qt, float *wt, float *proj,
                              float *save, lr_rng *rng, lr_err *err)
{
    const size_t M = c->M, N = c->N;
    lr_status st = LR_OK;
    lr_rng_fill_normal(rng, lr_mat_view(wt, b, N, N), 0.0f, 1.0f); /* Ωᵀ: (b,N), overwritten by W_0 */
    for (size_t j = 0; j <= q; j++) {
        float *qj = qt + j * b * M, *wj = wt + j * b * N;
        if ((st = mul_tt(c, qj, j ? wj - b * N : wj, b))) return st; /* Y_j = t·W_{j−1} (t·Ω) */
        if (!j && (st = check_sample(c, qj, b, err))) return st;
        /* BCGS2 (pass 0 projects and orthonormalises the block, pass 1 repeats
         * it on a block already orthonormal, where one Cholesky-QR sweep is
         * exact to working precision); a third or fourth pass only when the
         * second still removed most of the block (Kahan–Parlett "twice is enough"
         * test, ‖Q_{<j}ᵀ·x_col‖ > 1/2): the block was numerically in the earlier
         * span, so what the first pass left was rounding error, largely inside it */
        for (int pass = 0; pass < 4; pass++) {
            double cn = !j ? 0 : pass ? project_deflate(qj, qt, proj, c->n2, M, j * b, b, rng)
                                      : project_out(qj, qt, proj, M, j * b, b);
            if (pass == 0) {
                memcpy(save, qj, M * b * sizeof *save);
                st = orth_fast(c, qj, save, M, b, err);
            } else if (cn > 0.5 || !cholqr_sweep(c, qj, M, b, false, 0.5f)) {
                st = orth(c, qj, M, b, false, err);
            }
            if (st) return st;
            if (!j || (pass >= 1 && cn <= 0.5)) break;
        }
        if ((st = mul_t(c, wj, qj, b))) return st;                  /* W_jᵀ = Q_jᵀ·t */
    }
    return LR_OK;
}

/* Rayleigh–Ritz (HMT Algorithm 5.1): the thin SVD of B = zt: (L,N), taken through
 * the QR of the tall Bᵀ: (N,L) = Qw·R (Cholesky-QR2 or -QR3, level-3 BLAS,
 * rather than the LQ-first path of sgesdd on a wide matrix): G = B·Qw = Rᵀ: (L,L)
 * = Ub·S·V1ᵀ, hence B = Ub·S·(Qw·V1)ᵀ. Then u = Q·Ub[:, :r], s = S[:r],
 * vt = (Qw·V1[:, :r])ᵀ, mapped back to a's orientation. */
static lr_status ritz(const rs_ctx *c, size_t L, size_t r, const float *qt, const float *zt, float *s,
                      float *sall, lr_mat u, lr_mat vt, lr_err *err)
{
    const size_t M = c->M, N = c->N;
    const size_t nbuf = L * N + 3 * L * L + L + r * N;
    float *qw = malloc(nbuf * sizeof *qw);
    if (!qw) return lr__fail(err, LR_ENOMEM, "rsvd: cannot allocate %zu floats", nbuf);
    /* qw: (L,N) rows = Qw's columns; g, ub, v1t: (L,L); sb: (L); vr: (r,N) = Vbᵀ[:r, :] */
    float *g = qw + L * N, *ub = g + L * L, *v1t = ub + L * L, *sb = v1t + L * L, *vr = sb + L;
    memcpy(qw, zt, L * N * sizeof *qw);
    lr_status st = orth_fast(c, qw, zt, N, L, err);
    if (!st) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)L, (blasint)L, (blasint)N, 1.0f, zt,
                    (blasint)N, qw, (blasint)N, 0.0f, g, (blasint)L);
        st = lr_svd(sb, lr_mat_view(ub, L, L, L), lr_mat_view(v1t, L, L, L), lr_cmat_view(g, L, L, L), NULL, err);
    }
    if (st == LR_ENONFINITE)
        st = lr__fail(err, LR_ENONFINITE, OVERFLOW_MSG);
    if (!st) {
        memcpy(s, sb, r * sizeof *s);
        if (sall) memcpy(sall, sb, L * sizeof *sall);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)r, (blasint)N, (blasint)L, 1.0f, v1t,
                    (blasint)L, qw, (blasint)N, 0.0f, vr, (blasint)N);
        if (!c->tr) {
            /* t = a: u = Q·Ub[:, :r] = qtᵀ·ub[:, :r];  vt = Vbᵀ[:r, :] */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)M, (blasint)r, (blasint)L, 1.0f, qt,
                        (blasint)M, ub, (blasint)L, 0.0f, u.data, (blasint)u.ld);
            for (size_t i = 0; i < r; i++) memcpy(vt.data + i * vt.ld, vr + i * N, N * sizeof(float));
        } else {
            /* t = aᵀ ≈ (Q·Ub)·S·Vbᵀ, so a ≈ Vb·S·(Q·Ub)ᵀ: u = Vb[:, :r];  vt = Ub[:, :r]ᵀ·qt */
            for (size_t i = 0; i < N; i++)
                for (size_t j = 0; j < r; j++) u.data[i * u.ld + j] = vr[j * N + i];
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)r, (blasint)M, (blasint)L, 1.0f, ub,
                        (blasint)L, qt, (blasint)M, 0.0f, vt.data, (blasint)vt.ld);
        }
    }
    free(qw);
    return st;
}

/* The option fields that apply to o.method, each against its range. */
static lr_status check_opts(const lr_rsvd_opts *o, size_t r, lr_err *err)
{
    if (o->method != LR_RSVD_BLOCK_KRYLOV && o->method != LR_RSVD_SUBSPACE)
        return lr__fail(err, LR_EINVAL,
                        "rsvd: method %d is not LR_RSVD_BLOCK_KRYLOV (%d) or LR_RSVD_SUBSPACE (%d)",
                        (int)o->method, (int)LR_RSVD_BLOCK_KRYLOV, (int)LR_RSVD_SUBSPACE);
    if (o->method == LR_RSVD_SUBSPACE) {
        if (o->oversample > (size_t)INT_MAX)
            return lr__fail(err, LR_EINVAL, "rsvd: oversample %zu out of range 0..%d", o->oversample, INT_MAX);
        if (o->power_iters > 1000)
            return lr__fail(err, LR_EINVAL, "rsvd: power_iters %zu out of range 0..1000", o->power_iters);
        return LR_OK;
    }
    if (o->block > (size_t)INT_MAX)
        return lr__fail(err, LR_EINVAL, "rsvd: block %zu out of range 0..%d (0 = r)", o->block, INT_MAX);
    if (o->krylov_depth > 1000)
        return lr__fail(err, LR_EINVAL, "rsvd: krylov_depth %zu out of range 0..1000", o->krylov_depth);
    size_t b = o->block ? o->block : r;
    if (b * (o->krylov_depth + 1) < r)
        return lr__fail(err, LR_EINVAL,
                        "rsvd: block %zu x (krylov_depth %zu + 1) = %zu Krylov columns < rank r = %zu; "
                        "need block*(krylov_depth+1) >= r", b, o->krylov_depth, b * (o->krylov_depth + 1), r);
    return LR_OK;
}

/* Validates everything but the options; 0 = fine. */
static lr_status check_args(lr_cmat a, size_t r, const float *s, lr_mat u, lr_mat vt, const lr_rng *rng,
                            lr_err *err)
{
    lr_status st;
    if (!rng) return lr__fail(err, LR_EINVAL, "rsvd: rng is NULL (randomness must be seeded explicitly)");
    if ((st = lr_mat_check(a, "rsvd input", err))) return st;
    const size_t m = a.rows, n = a.cols, k = m < n ? m : n;
    if (r == 0) return lr__fail(err, LR_EINVAL, "rsvd: rank r = 0; need 1 <= r <= min(%zu, %zu)", m, n);
    if (r > k) return lr__fail(err, LR_EINVAL, "rsvd: rank r = %zu exceeds min(%zu, %zu) = %zu", r, m, n, k);
    if (!s) return lr__fail(err, LR_EINVAL, "rsvd: s is NULL (needs %zu values)", r);
    if ((st = lr_mat_check(lr_cm(u), "rsvd u", err)) || (st = lr_mat_check(lr_cm(vt), "rsvd vt", err)))
        return st;
    if (u.rows != m || u.cols != r)
        return lr__fail(err, LR_EDIM, "rsvd: u is %zu x %zu, expected %zu x %zu", u.rows, u.cols, m, r);
    if (vt.rows != r || vt.cols != n)
        return lr__fail(err, LR_EDIM, "rsvd: vt is %zu x %zu, expected %zu x %zu", vt.rows, vt.cols, r, n);
    return LR_OK;
}

/* *e <- Σ_{i<=r} σ_i² of the first rows of zt: (rows, N), the Rayleigh–Ritz problem of an
 * earlier depth. */
static lr_status top_energy(double *e, const float *zt, size_t rows, size_t N, size_t r, lr_err *err)
{
    float *s0 = malloc(rows * sizeof *s0);
    if (!s0) return lr__fail(err, LR_ENOMEM, "rsvd: cannot allocate %zu floats", rows);
    lr_status st = lr_svd_values(s0, lr_cmat_view(zt, rows, N, N), NULL, err);
    *e = 0;
    for (size_t i = 0; !st && i < r && i < rows; i++) *e += (double)s0[i] * s0[i];
    free(s0);
    return st;
}

/* bd <- the run's a-posteriori figures from the L Ritz values sall and, for block Krylov
 * with depth >= 1, the first L0 rows of zt (Q_{<q}ᵀ·t: the previous depth's Rayleigh–Ritz
 * problem), whose values give the gain of the last block. */
static lr_status bound(lr_rsvd_bound *bd, const rs_ctx *c, lr_cmat a, const float *sall, size_t L, size_t r,
                       const float *zt, size_t L0, size_t b, size_t N, lr_err *err)
{
    double e = 0, top = 0, rest = 0;
    for (size_t r0 = 0; c->src && r0 < a.rows; r0 += c->br) { /* one more read of the rows */
        size_t n = a.rows - r0 < c->br ? a.rows - r0 : c->br;
        lr_status st = read_rows(c, r0, n);
        if (st) return st;
        double f = lr_mat_norm_fro(lr_cmat_view(c->blk, n, a.cols, a.cols));
        e += f * f;
    }
    if (!c->src) e = lr_mat_norm_fro(a), e *= e;
    for (size_t i = 0; i < L; i++) *(i < r ? &top : &rest) += (double)sall[i] * sall[i];
    *bd = (lr_rsvd_bound){ .energy = e, .err2 = e > top ? e - top : 0, .opt2_lb = rest, .gain = 0, .gain_prev = 0 };
    if (!zt || L0 == 0) return LR_OK; /* the whole range (L = N) or no earlier depth */
    double prev = 0, prev2 = 0;
    lr_status st = top_energy(&prev, zt, L0, N, r, err);
    if (!st && L0 > b) st = top_energy(&prev2, zt, L0 - b, N, r, err);
    if (!st) bd->gain = top > prev ? top - prev : 0, bd->gain_prev = prev > prev2 && L0 > b ? prev - prev2 : 0;
    return st;
}

/* The rsvd arguments when a is a row source (lr_rsvd_rows): check_args' checks but a's. */
static lr_status check_src(const lr_rows *a, size_t r, const float *s, lr_mat u, lr_mat vt, const lr_rng *rng,
                           lr_err *err)
{
    if (!a->read || a->rows == 0 || a->cols == 0)
        return lr__fail(err, LR_EINVAL, "rsvd: the row source has no reader or no entries (%zu x %zu)", a->rows, a->cols);
    float one = 0;
    lr_cmat probe = lr_cmat_view(&one, 1, 1, 1);
    lr_status st = check_args(probe, 1, s, lr_mat_view(&one, 1, 1, 1), lr_mat_view(&one, 1, 1, 1), rng, err);
    if (st) return st;
    size_t m = a->rows, n = a->cols, k = m < n ? m : n;
    if (r == 0 || r > k) return lr__fail(err, LR_EINVAL, "rsvd: rank r = %zu; need 1 <= r <= min(%zu, %zu)", r, m, n);
    if (u.rows != m || u.cols != r || vt.rows != r || vt.cols != n || !u.data || !vt.data)
        return lr__fail(err, LR_EDIM, "rsvd: u is %zu x %zu and vt %zu x %zu, expected %zu x %zu and %zu x %zu", u.rows,
                        u.cols, vt.rows, vt.cols, m, r, r, n);
    return LR_OK;
}

/* lr_rsvd on a (or on the row source src), and with bd non-NULL what the run knows of its own
 * accuracy (lr_rsvd_bounded, lr_rsvd_rows). */
static lr_status run(float *s, lr_mat u, lr_mat vt, lr_rsvd_bound *bd, lr_cmat a, const lr_rows *src, size_t r,
                     const lr_rsvd_opts *opts, lr_rng *rng, lr_err *err)
{
    lr_rsvd_opts o = opts ? *opts : lr_rsvd_opts_default();
    lr_status st;
    if (src) a = (lr_cmat){ NULL, src->rows, src->cols, src->cols };
    if ((st = src ? check_src(src, r, s, u, vt, rng, err) : check_args(a, r, s, u, vt, rng, err)) ||
        (st = check_opts(&o, r, err)))
        return st;
    const size_t m = a.rows, n = a.cols;
    if (m > INT_MAX || n > INT_MAX || a.ld > INT_MAX || u.ld > INT_MAX || vt.ld > INT_MAX)
        return lr__fail(err, LR_ERANGE, "rsvd: a %zu x %zu matrix exceeds BLAS/LAPACK's 32-bit sizes", m, n);

    rs_ctx c = { .a = a.data, .lda = a.ld, .src = src, .err = err, .tr = m < n, .M = m < n ? n : m,
                 .N = m < n ? m : n };
    if (src) { /* blocks of about 16 MB of rows */
        c.br = ((size_t)4 << 20) / n;
        c.br = c.br < 1 ? 1 : c.br > m ? m : c.br;
        if (!(c.blk = malloc(c.br * n * sizeof *c.blk)))
            return lr__fail(err, LR_ENOMEM, "rsvd: cannot allocate a %zu x %zu block of rows", c.br, n);
    }
    const size_t M = c.M, N = c.N;
    /* panel width b and basis width L = b·(q+1); either clamped to N, where the
     * sample spans the whole range of t and the result is exact */
    size_t b, q, L;
    if (o.method == LR_RSVD_SUBSPACE) {
        b = L = r + o.oversample > N ? N : r + o.oversample;
        q = o.power_iters;
    } else {
        b = o.block ? o.block : r;
        q = o.krylov_depth;
        if (b * (q + 1) >= N) b = N, q = 0;
        L = b * (q + 1);
    }
    c.kmax = L; /* ritz() orthonormalises the (N,L) Bᵀ */
    if ((double)L * (double)M > (double)INT_MAX)
        return lr__fail(err, LR_ERANGE, "rsvd: %zu x %zu sample exceeds LAPACK's 32-bit sizes", M, L);
    if ((st = lwork_for(&c, err))) return st;

    /* one allocation: iwork (L lapack_ints, padded to 16 floats), qt (L,M), zt (L,N),
     * proj (L,b), save (b,M), tau (L), gram (L,L), work */
    const size_t iw = (L * sizeof(lapack_int) + 16 * sizeof(float) - 1) / (16 * sizeof(float)) * 16;
    size_t total = iw + L * M + L * N + L * b + b * M + L + L * L + (size_t)c.lwork;
    float *buf = malloc(total * sizeof *buf);
    c.n2 = malloc(2 * (b ? b : 1) * sizeof *c.n2);
    if (!buf || !c.n2) {
        free(buf), free(c.n2);
        return lr__fail(err, LR_ENOMEM, "rsvd: cannot allocate %zu floats of workspace", total);
    }
    c.iwork = (lapack_int *)(void *)buf;
    float *qt = buf + iw, *zt = qt + L * M, *proj = zt + L * N, *save = proj + L * b;
    c.tau = save + b * M;
    c.gram = c.tau + L;
    c.work = c.gram + L * L;

    st = o.method == LR_RSVD_SUBSPACE ? range_subspace(&c, L, q, qt, zt, rng, err)
                                      : range_krylov(&c, b, q, qt, zt, proj, save, rng, err);
    float *sall = bd ? malloc(L * sizeof *sall) : NULL;
    if (bd && !sall) st = lr__fail(err, LR_ENOMEM, "rsvd: cannot allocate %zu floats", L);
    if (!st) st = ritz(&c, L, r, qt, zt, s, sall, u, vt, err);
    if (!st && bd) st = bound(bd, &c, a, sall, L, r, o.method == LR_RSVD_BLOCK_KRYLOV && q ? zt : NULL, L - b, b, N, err);
    free(sall);
    free(buf);
    free(c.n2);
    free(c.blk);
    return st;
}

lr_status lr_rsvd(float *s, lr_mat u, lr_mat vt, lr_cmat a, size_t r, const lr_rsvd_opts *opts, lr_rng *rng,
                  lr_err *err)
{
    return run(s, u, vt, NULL, a, NULL, r, opts, rng, err);
}

lr_status lr_rsvd_bounded(float *s, lr_mat u, lr_mat vt, lr_rsvd_bound *bd, lr_cmat a, size_t r,
                          const lr_rsvd_opts *opts, lr_rng *rng, lr_err *err)
{
    if (!bd) return lr__fail(err, LR_EINVAL, "lr_rsvd_bounded: bd is NULL");
    return run(s, u, vt, bd, a, NULL, r, opts, rng, err);
}

lr_status lr_rsvd_rows(float *s, lr_mat u, lr_mat vt, lr_rsvd_bound *bd, const lr_rows *a, size_t r,
                       const lr_rsvd_opts *opts, lr_rng *rng, lr_err *err)
{
    if (!a) return lr__fail(err, LR_EINVAL, "lr_rsvd_rows: a is NULL");
    return run(s, u, vt, bd, (lr_cmat){ 0 }, a, r, opts, rng, err);
}

lr_status lr_usv_from_rsvd(lr_usv *out, lr_cmat a, size_t r, const lr_rsvd_opts *opts,
                           lr_rng *rng, lr_err *err)
{
    lr_status st;
    if (!out) return lr__fail(err, LR_EINVAL, "lr_usv_from_rsvd: out is NULL");
    memset(out, 0, sizeof *out);
    if ((st = lr_mat_check(a, "rsvd input", err))) return st;
    size_t k = a.rows < a.cols ? a.rows : a.cols;
    if (r == 0 || r > k)
        return lr__fail(err, LR_EINVAL, "rsvd: rank r = %zu; need 1 <= r <= min(%zu, %zu) = %zu", r,
                        a.rows, a.cols, k);
    if ((st = lr_usv_init(out, a.rows, a.cols, r, err))) return st;
    if ((st = lr_rsvd(out->s, out->u, out->vt, a, r, opts, rng, err))) lr_usv_free(out);
    return st;
}
