/* rsvd.c — randomized truncated SVD by subspace iteration (Halko, Martinsson &
 * Tropp, "Finding structure with randomness", SIAM Review 53(2), 2011).
 *
 * Algorithm 4.4 (randomized subspace iteration) for the range, then
 * Algorithm 5.1 (direct SVD of B = Qᵀ·a). Work on the orientation t = a or aᵀ
 * with more rows than columns (M >= N): the Gaussian test matrix then has the
 * short side N, and the small SVD is of an l x N matrix.
 *
 * Layout: the thin matrices are kept transposed, qt: (l,M) and zt: (l,N) in
 * row-major, which is exactly LAPACK's column-major (M,l) and (N,l). So the QR
 * factorisations (orth() below) run on them in place with no copies, and every
 * product with t is one sgemm reading a where it lies:
 *   qt <- zt·tᵀ   (l,M) = (l,N)·(N,M)
 *   zt <- qt·t    (l,N) = (l,M)·(M,N)
 * Workspace: two allocations per call, released before returning. The flop count is that of the
 * algorithm, (2q+2)·2·M·N·l in sgemm; docs/math.md gives the measurements.
 */
#include <float.h>
#include <limits.h>
#include <stdbool.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include <lapacke.h>
#include "lowrank/rsvd.h"
#include "internal.h"

lr_rsvd_opts lr_rsvd_default_opts(void)
{
    lr_rsvd_opts o = { 10, 4 };
    return o;
}

typedef struct {
    const float *a;   /* the caller's matrix, row-major (m,n) with ld */
    size_t lda;
    bool tr;          /* t = aᵀ (when m < n) */
    size_t M, N, l;
    float *tau, *work, *gram;
    lapack_int lwork;
} rs_ctx;

/* out: (l,M) = in: (l,N) · tᵀ */
static void mul_tt(const rs_ctx *c, float *out, const float *in)
{
    /* t = a: tᵀ = aᵀ (a is (M,N)); t = aᵀ: tᵀ = a (a is (N,M)) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, c->tr ? CblasNoTrans : CblasTrans, (blasint)c->l,
                (blasint)c->M, (blasint)c->N, 1.0f, in, (blasint)c->N, c->a, (blasint)c->lda, 0.0f,
                out, (blasint)c->M);
}

/* out: (l,N) = in: (l,M) · t */
static void mul_t(const rs_ctx *c, float *out, const float *in)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, c->tr ? CblasTrans : CblasNoTrans, (blasint)c->l,
                (blasint)c->N, (blasint)c->M, 1.0f, in, (blasint)c->M, c->a, (blasint)c->lda, 0.0f,
                out, (blasint)c->N);
}

/* Replaces the column-major (rows, l) matrix x by the Q of its Householder QR
 * (LAPACK sgeqrf + sorgqr). */
static lr_status orth_householder(const rs_ctx *c, float *x, size_t rows, lr_err *err)
{
    lapack_int info = LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, (lapack_int)rows, (lapack_int)c->l, x,
                                          (lapack_int)rows, c->tau, c->work, c->lwork);
    if (info == 0)
        info = LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, (lapack_int)rows, (lapack_int)c->l,
                                   (lapack_int)c->l, x, (lapack_int)rows, c->tau, c->work, c->lwork);
    if (info < 0)
        return lr__fail(err, LR_EINVAL, "rsvd: QR argument %d had an illegal value (a bug in lowrank)",
                        (int)-info);
    return LR_OK; /* geqrf/orgqr have no info > 0 */
}

/* One Cholesky-QR sweep: g = xᵀx + shift·I = rᵀr, x <- x·r⁻¹. Returns false
 * when the Cholesky factorisation breaks down (x numerically rank-deficient). */
static bool cholqr_sweep(const rs_ctx *c, float *x, size_t rows, bool shifted)
{
    const blasint l = (blasint)c->l, M = (blasint)rows;
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
    cblas_strsm(CblasColMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit, M, l, 1.0f, g, l, x, M);
    return true;
}

/* Orthonormalises the column-major (rows, l) matrix x in place, keeping its range.
 * Between power iterations we use shifted Cholesky-QR3 (Fukaya, Kannan,
 * Nakatsukasa, Yamamoto & Yanagisawa, SISC 2020): three Gram/Cholesky/triangular
 * solve sweeps, all level-3 BLAS, orthonormal to working precision for any
 * condition number up to about 1/u. Householder QR is level-2 bound on these
 * tall, thin panels and issues hundreds of small threaded BLAS calls, which is
 * where a contended 2-core machine loses most time. If a Cholesky factorisation
 * still breaks down (x exactly rank-deficient, e.g. a = 0), Householder QR
 * takes over; the last orthonormalisation, the one defining the final Q, is
 * always Householder (see lr_rsvd). */
static lr_status orth(const rs_ctx *c, float *x, size_t rows, bool householder, lr_err *err)
{
    if (householder || c->l > rows) return orth_householder(c, x, rows, err);
    if (cholqr_sweep(c, x, rows, true) && cholqr_sweep(c, x, rows, false) &&
        cholqr_sweep(c, x, rows, false))
        return LR_OK;
    return orth_householder(c, x, rows, err);
}

static lr_status lwork_for(rs_ctx *c, lr_err *err)
{
    float q1 = 0, q2 = 0;
    size_t rows = c->M; /* the larger of the two QR problems */
    lapack_int i1 = LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, (lapack_int)rows, (lapack_int)c->l, NULL,
                                        (lapack_int)rows, NULL, &q1, -1);
    lapack_int i2 = LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, (lapack_int)rows, (lapack_int)c->l,
                                        (lapack_int)c->l, NULL, (lapack_int)rows, NULL, &q2, -1);
    if (i1 || i2) return lr__fail(err, LR_EINVAL, "rsvd: QR workspace query failed (%d, %d)", (int)i1, (int)i2);
    double w = (q1 > q2 ? q1 : q2) * (1.0 + 1e-6) + 64.0;
    if (w < (double)c->l * 64) w = (double)c->l * 64;
    if (!(w < (double)INT_MAX)) return lr__fail(err, LR_ERANGE, "rsvd: QR workspace too large");
    c->lwork = (lapack_int)w;
    return LR_OK;
}

lr_status lr_rsvd(lr_cmat a, size_t r, float *s, lr_mat u, lr_mat vt, const lr_rsvd_opts *opts,
                  lr_rng *rng, lr_err *err)
{
    lr_rsvd_opts o = opts ? *opts : lr_rsvd_default_opts();
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
    if (o.oversample > (size_t)INT_MAX || o.power_iters > 1000)
        return lr__fail(err, LR_EINVAL, "rsvd: oversample %zu or power_iters %zu out of range",
                        o.oversample, o.power_iters);
    if (m > INT_MAX || n > INT_MAX || a.ld > INT_MAX || u.ld > INT_MAX || vt.ld > INT_MAX)
        return lr__fail(err, LR_ERANGE, "rsvd: a %zu x %zu matrix exceeds BLAS/LAPACK's 32-bit sizes", m, n);
    if ((st = lr_mat_check_finite(a, "rsvd input", err))) return st;

    rs_ctx c = { a.data, a.ld, m < n, m < n ? n : m, m < n ? m : n, 0, NULL, NULL, NULL, 0 };
    c.l = r + o.oversample > k ? k : r + o.oversample;
    const size_t M = c.M, N = c.N, l = c.l;
    if ((double)l * (double)M > (double)INT_MAX)
        return lr__fail(err, LR_ERANGE, "rsvd: %zu x %zu sample exceeds LAPACK's 32-bit sizes", M, l);
    if ((st = lwork_for(&c, err))) return st;

    /* one allocation: qt (l,M), zt (l,N), ub (l,l), sb (l), tau (l), gram (l,l), work */
    size_t total = l * M + l * N + l * l + l + l + l * l + (size_t)c.lwork;
    float *buf = malloc(total * sizeof *buf);
    if (!buf) return lr__fail(err, LR_ENOMEM, "rsvd: cannot allocate %zu floats of workspace", total);
    float *qt = buf, *zt = qt + l * M, *ub = zt + l * N, *sb = ub + l * l;
    c.tau = sb + l;
    c.gram = c.tau + l;
    c.work = c.gram + l * l;

    /* Ωᵀ: (l,N) Gaussian, filled row by row (the same seed gives the same Ω) */
    lr_rng_fill_normal(rng, lr_mat_view(zt, l, N, N), 0.0f, 1.0f);
    mul_tt(&c, qt, zt);                                   /* Y = t·Ω        */
    if ((st = orth(&c, qt, M, o.power_iters == 0, err))) goto done;    /* Q = qr(Y)  */
    for (size_t it = 0; it < o.power_iters; it++) {
        const bool last = it + 1 == o.power_iters;
        mul_t(&c, zt, qt);                                             /* Z = tᵀ·Q   */
        if ((st = orth(&c, zt, N, false, err))) goto done;             /* Q̃ = qr(Z) */
        mul_tt(&c, qt, zt);                                            /* Y = t·Q̃   */
        if ((st = orth(&c, qt, M, last, err))) goto done;              /* Q = qr(Y)  */
    }
    mul_t(&c, zt, qt);                                    /* B = Qᵀ·t: (l,N) */

    /* B = Ub·S·Vbᵀ, the small thin SVD; vb: (l,N) holds Vbᵀ (qt is still needed) */
    {
        float *vb = malloc(l * N * sizeof *vb);
        if (!vb) { st = lr__fail(err, LR_ENOMEM, "rsvd: cannot allocate %zu floats", l * N); goto done; }
        st = lr_svd(lr_cmat_view(zt, l, N, N), sb, lr_mat_view(ub, l, l, l), lr_mat_view(vb, l, N, N), err);
        if (st == LR_ENONFINITE)
            st = lr__fail(err, LR_ENONFINITE,
                          "rsvd: the products overflowed float32 (entries of a near FLT_MAX); scale a down");
        if (!st) {
            memcpy(s, sb, r * sizeof *s);
            if (!c.tr) {
                /* t = a: u = Q·Ub[:, :r] = qtᵀ·ub[:, :r];  vt = Vbᵀ[:r, :] */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)m, (blasint)r, (blasint)l,
                            1.0f, qt, (blasint)M, ub, (blasint)l, 0.0f, u.data, (blasint)u.ld);
                for (size_t i = 0; i < r; i++) memcpy(vt.data + i * vt.ld, vb + i * N, n * sizeof(float));
            } else {
                /* t = aᵀ ≈ (Q·Ub)·S·Vbᵀ, so a ≈ Vb·S·(Q·Ub)ᵀ:
                 * u = Vb[:, :r] = (Vbᵀ[:r, :])ᵀ;  vt = Ub[:, :r]ᵀ·qt */
                for (size_t i = 0; i < m; i++)
                    for (size_t j = 0; j < r; j++) u.data[i * u.ld + j] = vb[j * N + i];
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)r, (blasint)n, (blasint)l,
                            1.0f, ub, (blasint)l, qt, (blasint)M, 0.0f, vt.data, (blasint)vt.ld);
            }
        }
        free(vb);
    }
done:
    free(buf);
    return st;
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
    if ((st = lr_rsvd(a, r, out->s, out->u, out->vt, opts, rng, err))) lr_usv_free(out);
    return st;
}
