/* rsvd.h — randomized truncated SVD: randomized block Krylov (Musco & Musco,
 * NeurIPS 2015) or randomized subspace iteration (Halko, Martinsson & Tropp 2011),
 * each followed by Rayleigh–Ritz.
 *
 * Rank-r approximation a ≈ u · diag(s) · vt of a: (m,n). Work is done on t = a, or
 * on aᵀ when m < n (no copy is made, only the roles of the products change), so t
 * is (M,N) with M >= N. Ω is Gaussian from the caller's lr_rng. Both methods find
 * an orthonormal Q: (M,L), then Rayleigh–Ritz (HMT Algorithm 5.1):
 * B = Qᵀ·t = Ũ·S·Vᵀ (small SVD), u = Q·Ũ[:, :r], s = S[:r], vt = Vᵀ[:r, :].
 *
 * LR_RSVD_BLOCK_KRYLOV (default): Ω: (N,b), b = block (0 = r), q = krylov_depth,
 *   Q = orth[tΩ, (ttᵀ)tΩ, ..., (ttᵀ)^q tΩ], L = b·(q+1), built block by block
 *   (block Gram–Schmidt twice, Cholesky-QR within a block). B's rows are the
 *   products Q_jᵀ·t the iteration needs anyway, so the cost is 2(q+1) passes over a
 *   with b columns each: 2(q+1)·2·M·N·b flops in sgemm, plus O((M+N)·L²).
 * LR_RSVD_SUBSPACE: l = r + oversample columns, q = power_iters;
 *   Q = qr(t·Ω); q times { Q̃ = qr(tᵀ·Q); Q = qr(t·Q̃) }; B = Qᵀ·t:
 *   2q+2 passes with l columns, (2q+2)·2·M·N·l flops (HMT Algorithm 4.4).
 *
 * Why Krylov is the default (measured: docs/math.md, docs/performance.md): its space
 * contains the subspace iterate for the same b and q, so it is never worse per
 * pass. On σ_i = 1/(1+i), rank 32, it reaches 1.001x the Eckart–Young error with 6
 * passes of 32 columns where subspace iteration (ours or scikit-learn's) needs 8
 * passes of 42, and the default q = 3 (8 passes of r columns) gives 1.000003x,
 * faster and more accurate than the old default (subspace, p = 10, q = 4: 10
 * passes of 42, 1.00015x). The default b = r is Musco & Musco's: a block Krylov
 * space holds at most b directions of a repeated singular value, so b >= r keeps
 * exact clusters safe; smaller blocks with more depth are cheaper per pass but
 * lose that guarantee.
 *
 * If L reaches N (Krylov: b·(q+1) >= N; subspace: r + p >= N), one block of N
 * columns is used and the range is exact. Memory: about 2·(M+N)·L + 4·L² floats,
 * allocated inside the call and freed before it returns. a is not modified.
 */
#ifndef LOWRANK_RSVD_H
#define LOWRANK_RSVD_H

#include "lowrank/base/export.h"
#include <stddef.h>
#include "lowrank/base/mat.h"
#include "lowrank/base/rng.h"
#include "lowrank/linalg/svd.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LR_RSVD_BLOCK_KRYLOV = 0, /* Musco & Musco 2015, Algorithm 2 (the default)      */
    LR_RSVD_SUBSPACE = 1      /* HMT 2011, Algorithm 4.4: randomized subspace iteration */
} lr_rsvd_method;

typedef struct {
    size_t oversample;     /* subspace: p, l = r + p columns; default 10            */
    size_t power_iters;    /* subspace: q, 0..1000; default 4                       */
    lr_rsvd_method method; /* default LR_RSVD_BLOCK_KRYLOV                          */
    size_t block;          /* Krylov: b columns per block, 0 = r; default 0         */
    size_t krylov_depth;   /* Krylov: q, products with t·tᵀ, 0..1000; default 3;    */
                           /* block·(krylov_depth+1) must be >= r                    */
} lr_rsvd_opts;

LR_API lr_rsvd_opts lr_rsvd_opts_default(void);

/* a: (m,n) in; u: (m,r); s: (r); vt: (r,n); 1 <= r <= min(m,n).
 * rng supplies the Gaussian test matrix (same seed -> same result for the same
 * OpenBLAS thread count). opts NULL = defaults; only the fields of opts->method are
 * read. A bad field is LR_EINVAL naming it, its value and the allowed range;
 * NaN/Inf in a (or products overflowing float32) LR_ENONFINITE. */
LR_API lr_status lr_rsvd(float *s, lr_mat u, lr_mat vt, lr_cmat a, size_t r, const lr_rsvd_opts *opts,
                         lr_rng *rng, lr_err *err);

/* What a run knows of its own accuracy at rank r, for a: (m,n), with L = block·(depth+1)
 * Ritz values σ̃_1 >= ... >= σ̃_L (the first r are s):
 *   energy   ‖a‖_F², summed from the entries in double;
 *   err2     ‖a − u·diag(s)·vt‖_F² = energy − Σ_{i<=r} σ̃_i² (the factors are a projection
 *            of a, so this is exact up to rounding);
 *   opt2_lb  Σ_{r<i<=L} σ̃_i²: a proven lower bound on the optimal error² Σ_{i>r} σ_i², since
 *            σ̃_i <= σ_i for every i (interlacing). err2 / opt2_lb bounds (error/optimum)²; it
 *            is tight only when the L directions hold nearly all the energy beyond rank r;
 *   gain     block Krylov with depth >= 1: Σ_{i<=r} σ̃_i² minus the same sum at depth − 1
 *            (the spaces are nested, so it never shrinks): what the last block added, an
 *            estimate of what one more would add (0 when the range is exact, L = min(m,n));
 *   gain_prev  depth >= 2: the same for the block before (depth − 1 against depth − 2), 0
 *            otherwise: gain / gain_prev is the rate at which the gains shrink.
 * These cost one more pass over a and values-only SVDs of the (L − block, n) and
 * (L − 2·block, n) projections. */
typedef struct {
    double energy, err2, opt2_lb, gain, gain_prev;
} lr_rsvd_bound;

/* lr_rsvd, and *bd as above. opts NULL = defaults. */
LR_API lr_status lr_rsvd_bounded(float *s, lr_mat u, lr_mat vt, lr_rsvd_bound *bd, lr_cmat a, size_t r,
                                 const lr_rsvd_opts *opts, lr_rng *rng, lr_err *err);

/* A matrix a: (rows, cols) the randomized SVD reads a block of rows at a time, so it need not
 * be in memory as float32 (a 128256×4096 embedding is 2.1 GB so, 1 GB in its file's BF16):
 * read(ctx, dst, r0, k, err) fills dst: (k, cols) with rows [r0, r0 + k) and returns a status
 * (its message in err). Each product with a reads every row once, in blocks of about 16 MB. */
typedef struct {
    size_t rows, cols;
    lr_status (*read)(void *ctx, float *dst, size_t r0, size_t k, lr_err *err);
    void *ctx;
} lr_rows;

/* lr_rsvd on a row source, with *bd as lr_rsvd_bounded gives it when bd is not NULL (one more
 * read of the rows for the energy). The same numbers as lr_rsvd on the same matrix, up to the
 * products' summation order. opts NULL = defaults. */
LR_API lr_status lr_rsvd_rows(float *s, lr_mat u, lr_mat vt, lr_rsvd_bound *bd, const lr_rows *a, size_t r,
                              const lr_rsvd_opts *opts, lr_rng *rng, lr_err *err);

/* Allocates *out (k = r) and fills it by lr_rsvd. On failure *out is empty. opts NULL =
 * defaults. */
LR_API lr_status lr_usv_from_rsvd(lr_usv *out, lr_cmat a, size_t r, const lr_rsvd_opts *opts,
                                  lr_rng *rng, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
