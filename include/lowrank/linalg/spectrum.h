/* spectrum.h — the singular-value spectrum of a matrix, and what it says about its ranks.
 *
 * For w: (m,n) with k = min(m,n), an lr_spectrum holds the largest singular values it knows,
 * s: (known) non-increasing, and the energy ‖w‖_F² = Σ_i s_i² computed from the entries in
 * double, so that energy fractions and tails are right even when only the top values are
 * known:
 *   LR_SPECTRUM_EXACT       every value, from LAPACK's values-only sgesdd (svd.h), or from
 *                           the thin SVD when vectors are asked for; known = k.
 *   LR_SPECTRUM_RANDOMIZED  the top `rank` values from lr_rsvd (rsvd.h); known = rank. With
 *                           the block-Krylov method and rsvd.block = 0 the block is rank/2
 *                           (not rsvd's rank): depth 3 then spans 2·rank directions. On a
 *                           4096×4096 matrix, rank 256, that took 0.46 s instead of 1.39 s,
 *                           with every value within 8.6e-4·s_1 of the exact one (1.6e-4 with
 *                           block 256); set rsvd.block = rank for the latter.
 *                           Rayleigh–Ritz values never exceed the true ones (σ̃_i <= σ_i, by
 *                           interlacing), so the energy the known values capture is a lower
 *                           bound, the energy ranks below are upper bounds, and
 *                           unexplained = ‖w‖_F² − Σ σ̃_i² bounds from above both the energy
 *                           beyond the known values and Σ_i (σ_i² − σ̃_i²) over them.
 *   LR_SPECTRUM_AUTO        EXACT when m·n <= exact_max_elems, else RANDOMIZED. The default
 *                           limit 2²² = 4,194,304 entries (2048×2048) keeps the exact route
 *                           under about 1 s on a 2-core machine (docs/performance.md).
 * Timing on an AMD EPYC (Zen 5 class), 2 threads: values-only sgesdd of a 4096×4096 Gaussian
 * matrix 5.7 s, of 2048×2048 0.78 s; on a 4096×4096 matrix with a decaying spectrum (the one
 * bench_tool writes) the exact values took 5.2 s and the randomized rank 256 0.46 s.
 */
#ifndef LOWRANK_SPECTRUM_H
#define LOWRANK_SPECTRUM_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lowrank/base/mat.h"
#include "lowrank/base/status.h"
#include "lowrank/linalg/rsvd.h"
#include "lowrank/linalg/svd.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { LR_SPECTRUM_AUTO = 0, LR_SPECTRUM_EXACT, LR_SPECTRUM_RANDOMIZED } lr_spectrum_method;

typedef struct {
    lr_spectrum_method method; /* default LR_SPECTRUM_AUTO                              */
    size_t exact_max_elems;    /* AUTO: exact when m·n <= this; default 4,194,304       */
    size_t rank;               /* RANDOMIZED: values computed (clamped to k); default 256 */
    lr_rsvd_opts rsvd;         /* RANDOMIZED: the lr_rsvd options; default its defaults  */
    uint64_t seed;             /* RANDOMIZED: seed of the test matrix; default 0         */
} lr_spectrum_opts;

LR_API lr_spectrum_opts lr_spectrum_opts_default(void);

typedef struct {
    size_t m, n, k;     /* shape of w, k = min(m,n)                                     */
    size_t known;       /* values in s: k when exact                                    */
    float *s;           /* (known) non-increasing, owned                                */
    double energy;      /* ‖w‖_F², from the entries                                     */
    double captured;    /* Σ s_i² over the known values                                 */
    bool exact;         /* every value known                                            */
} lr_spectrum;

/* "auto" / "exact" / "randomized" <-> method. */
LR_API lr_status lr_spectrum_parse_method(lr_spectrum_method *m, const char *s, lr_err *err);
LR_API const char *lr_spectrum_method_name(lr_spectrum_method m);

/* *sp <- the spectrum of w: (m,n) (NaN/Inf: LR_ENONFINITE). vec (may be NULL) <- the matching
 * singular vectors as well: the thin SVD when exact (vec->k = k), the rsvd's when randomized
 * (vec->k = known). On failure *sp and *vec are empty. opts NULL = defaults. */
LR_API lr_status lr_spectrum_init(lr_spectrum *sp, lr_usv *vec, lr_cmat w, const lr_spectrum_opts *opts,
                                  lr_err *err);
/* The same from a row source (rsvd.h's lr_rows), without vectors: the randomized route reads
 * the rows once per product (never all of w in memory as float32), the energy from one more
 * read; where the exact route is taken (AUTO's small matrices, EXACT, or a rank reaching
 * min(m, n)) w is read whole and lr_spectrum_init runs on it. Entries are not checked for
 * finiteness here: the reader does that. opts NULL = defaults. */
LR_API lr_status lr_spectrum_init_rows(lr_spectrum *sp, const lr_rows *w, const lr_spectrum_opts *opts, lr_err *err);
/* The same from values already known: s: (known) non-increasing of an (m,n) matrix with
 * ‖w‖_F² = energy; exact when known = min(m,n). */
LR_API lr_status lr_spectrum_from_values(lr_spectrum *sp, const float *s, size_t known, size_t m, size_t n,
                                         double energy, lr_err *err);
LR_API void lr_spectrum_free(lr_spectrum *sp);

/* Energy the first r values leave out: Σ_{i>=r} s_i² when exact (summed from the values, so
 * small tails keep their digits), energy − Σ_{i<r} s_i² otherwise (an upper bound); >= 0. r is
 * clamped to known; r >= k gives 0. */
LR_API double lr_spectrum_tail(const lr_spectrum *sp, size_t r);

/* Smallest r whose first r values keep at least the fraction `energy` (0..1) of ‖w‖_F².
 * *found = false when the known values do not reach it (only possible when not exact); then
 * *r = known. An all-zero matrix needs r = 0. */
LR_API lr_status lr_spectrum_rank_for_energy(const lr_spectrum *sp, size_t *r, bool *found, double energy,
                                             lr_err *err);

/* Smallest r whose relative Frobenius error √(tail(r)/energy) is <= rel_err (>= 0). *found as
 * above. */
LR_API lr_status lr_spectrum_rank_for_error(const lr_spectrum *sp, size_t *r, bool *found, double rel_err,
                                            lr_err *err);

/* numpy's numerical rank (rank.h, LR_TOL_DEFAULT: s_i > s_1·max(m,n)·FLT_EPSILON). When not
 * exact and every known value is above the threshold, *at_least = true and *rank = known is a
 * lower bound. */
LR_API void lr_spectrum_numerical_rank(const lr_spectrum *sp, size_t *rank, bool *at_least);

#ifdef __cplusplus
}
#endif
#endif
