/* spectrum.c — singular values with the matrix's energy, exact or randomized, and the ranks
 * they imply (energy kept, relative error, numpy's numerical rank).
 *
 * The energy ‖w‖_F² is summed from the entries in double rather than from the values: it is
 * the only way to know the tail when just the top values were computed (Rayleigh–Ritz values
 * are lower bounds, see spectrum.h), and it costs one pass over w.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "lowrank/linalg/spectrum.h"
#include "lowrank/linalg/rank.h"
#include "lowrank/base/rng.h"
#include "base/internal.h"

lr_spectrum_opts lr_spectrum_opts_default(void)
{
    lr_spectrum_opts o = { .method = LR_SPECTRUM_AUTO, .exact_max_elems = (size_t)1 << 22, .rank = 256,
                           .rsvd = lr_rsvd_opts_default(), .seed = 0 };
    return o;
}

static const char *const method_names[] = { "auto", "exact", "randomized" };

lr_status lr_spectrum_parse_method(lr_spectrum_method *m, const char *s, lr_err *err)
{
    for (int i = 0; i < 3 && s && m; i++)
        if (!strcmp(s, method_names[i])) {
            *m = (lr_spectrum_method)i;
            return LR_OK;
        }
    return lr__fail(err, LR_EINVAL, "unknown SVD method '%s': expected auto, exact or randomized",
                    s ? s : "(null)");
}

const char *lr_spectrum_method_name(lr_spectrum_method m)
{
    return (unsigned)m < 3 ? method_names[m] : NULL;
}

void lr_spectrum_free(lr_spectrum *sp)
{
    if (!sp) return;
    free(sp->s);
    memset(sp, 0, sizeof *sp);
}

static double sum_sq(const float *s, size_t n)
{
    double a = 0;
    for (size_t i = 0; i < n; i++) a += (double)s[i] * s[i];
    return a;
}

lr_status lr_spectrum_from_values(lr_spectrum *sp, const float *s, size_t known, size_t m, size_t n,
                                  double energy, lr_err *err)
{
    if (!sp) return lr__fail(err, LR_EINVAL, "spectrum: NULL argument");
    memset(sp, 0, sizeof *sp);
    size_t k = m < n ? m : n;
    if (known > k) return lr__fail(err, LR_EINVAL, "spectrum: %zu values for a %zu x %zu matrix", known, m, n);
    if (known && !s) return lr__fail(err, LR_EINVAL, "spectrum: NULL values");
    if (!(energy >= 0) || !isfinite(energy)) return lr__fail(err, LR_EINVAL, "spectrum: energy %g", energy);
    for (size_t i = 0; i < known; i++)
        if (!(s[i] >= 0) || !isfinite(s[i]) || (i && s[i] > s[i - 1]))
            return lr__fail(err, LR_EINVAL, "spectrum: value %zu (%g) is negative, not finite or out of "
                            "order", i, (double)s[i]);
    sp->s = malloc((known ? known : 1) * sizeof *sp->s);
    if (!sp->s) return lr__fail(err, LR_ENOMEM, "spectrum: out of memory");
    if (known) memcpy(sp->s, s, known * sizeof *s);
    sp->m = m, sp->n = n, sp->k = k, sp->known = known;
    sp->energy = energy;
    sp->captured = sum_sq(s, known);
    sp->exact = known == k;
    return LR_OK;
}

static double energy_of(lr_cmat w)
{
    double e = lr_mat_norm_fro(w);
    return e * e;
}

static lr_status values_exact(lr_spectrum *sp, lr_usv *vec, lr_cmat w, lr_err *err)
{
    size_t k = w.rows < w.cols ? w.rows : w.cols;
    if (vec) {
        lr_status st = lr_usv_from_svd(vec, w, err);
        return st ? st : lr_spectrum_from_values(sp, vec->s, k, w.rows, w.cols, energy_of(w), err);
    }
    float *s = malloc((k ? k : 1) * sizeof *s);
    if (!s) return lr__fail(err, LR_ENOMEM, "spectrum: out of memory");
    lr_status st = lr_svd_values(s, w, NULL, err);
    if (!st) st = lr_spectrum_from_values(sp, s, k, w.rows, w.cols, energy_of(w), err);
    free(s);
    return st;
}

static lr_status values_randomized(lr_spectrum *sp, lr_usv *vec, lr_cmat w, const lr_spectrum_opts *o,
                                   lr_err *err)
{
    size_t k = w.rows < w.cols ? w.rows : w.cols, r = o->rank < k ? o->rank : k;
    if (r == 0) return values_exact(sp, vec, w, err);
    lr_rng rng;
    lr_rng_seed(&rng, o->seed);
    lr_usv f, *p = vec ? vec : &f;
    lr_rsvd_opts ro = o->rsvd;
    if (ro.method == LR_RSVD_BLOCK_KRYLOV && ro.block == 0) ro.block = (r + 1) / 2; /* spectrum.h: why */
    lr_status st = lr_usv_from_rsvd(p, w, r, &ro, &rng, err);
    if (!st) st = lr_spectrum_from_values(sp, p->s, r, w.rows, w.cols, energy_of(w), err);
    /* the Ritz values can exceed the entries' energy by rounding only; keep tails >= 0 */
    if (!st && sp->captured > sp->energy) sp->energy = sp->captured;
    if (!vec || st) lr_usv_free(p);
    return st;
}

lr_status lr_spectrum_init(lr_spectrum *sp, lr_usv *vec, lr_cmat w, const lr_spectrum_opts *opts,
                           lr_err *err)
{
    if (!sp) return lr__fail(err, LR_EINVAL, "spectrum: NULL argument");
    memset(sp, 0, sizeof *sp);
    if (vec) memset(vec, 0, sizeof *vec);
    lr_spectrum_opts o = opts ? *opts : lr_spectrum_opts_default();
    lr_status st;
    if ((st = lr_mat_check(w, "spectrum w", err)) || (st = lr_mat_check_finite(w, "spectrum w", err)))
        return st;
    if (!lr_spectrum_method_name(o.method))
        return lr__fail(err, LR_EINVAL, "spectrum: unknown method %d", (int)o.method);
    if (o.method == LR_SPECTRUM_RANDOMIZED && o.rank == 0)
        return lr__fail(err, LR_EINVAL, "spectrum: randomized rank 0; need >= 1");
    double elems = (double)w.rows * (double)w.cols;
    bool exact = o.method == LR_SPECTRUM_EXACT ||
                 (o.method == LR_SPECTRUM_AUTO && elems <= (double)o.exact_max_elems);
    size_t k = w.rows < w.cols ? w.rows : w.cols;
    if (!exact && o.rank >= k) exact = true; /* asking for every value: LAPACK is the better tool */
    return exact ? values_exact(sp, vec, w, err) : values_randomized(sp, vec, w, &o, err);
}

/* The whole source as one matrix (for the exact route). */
static lr_status read_all(lr_mat *w, const lr_rows *src, lr_err *err)
{
    lr_status st = lr_mat_init(w, src->rows, src->cols, err);
    if (!st) st = src->read(src->ctx, w->data, 0, src->rows, err);
    if (st) lr_mat_free(w);
    return st;
}

lr_status lr_spectrum_init_rows(lr_spectrum *sp, const lr_rows *w, const lr_spectrum_opts *opts, lr_err *err)
{
    if (!sp || !w || !w->read) return lr__fail(err, LR_EINVAL, "spectrum: NULL argument");
    memset(sp, 0, sizeof *sp);
    lr_spectrum_opts o = opts ? *opts : lr_spectrum_opts_default();
    if (!lr_spectrum_method_name(o.method)) return lr__fail(err, LR_EINVAL, "spectrum: unknown method %d", (int)o.method);
    if (o.method == LR_SPECTRUM_RANDOMIZED && o.rank == 0)
        return lr__fail(err, LR_EINVAL, "spectrum: randomized rank 0; need >= 1");
    size_t k = w->rows < w->cols ? w->rows : w->cols, r = o.rank < k ? o.rank : k;
    bool exact = o.method == LR_SPECTRUM_EXACT || r == 0 || r >= k ||
                 (o.method == LR_SPECTRUM_AUTO && (double)w->rows * (double)w->cols <= (double)o.exact_max_elems);
    lr_status st;
    if (exact) {
        lr_mat a;
        if ((st = read_all(&a, w, err))) return st;
        st = lr_spectrum_init(sp, NULL, lr_cm(a), &o, err);
        lr_mat_free(&a);
        return st;
    }
    lr_rng rng;
    lr_rng_seed(&rng, o.seed);
    lr_rsvd_opts ro = o.rsvd;
    if (ro.method == LR_RSVD_BLOCK_KRYLOV && ro.block == 0) ro.block = (r + 1) / 2; /* as values_randomized */
    lr_usv f;
    lr_rsvd_bound bd;
    if ((st = lr_usv_init(&f, w->rows, w->cols, r, err))) return st;
    st = lr_rsvd_rows(f.s, f.u, f.vt, &bd, w, r, &ro, &rng, err);
    if (!st) st = lr_spectrum_from_values(sp, f.s, r, w->rows, w->cols, bd.energy, err);
    if (!st && sp->captured > sp->energy) sp->energy = sp->captured;
    lr_usv_free(&f);
    return st;
}

double lr_spectrum_tail(const lr_spectrum *sp, size_t r)
{
    if (!sp || r >= sp->k) return 0;
    if (r > sp->known) r = sp->known;
    if (sp->exact) { /* from the small end, as rank_for_tail sums, so the two agree to the bit */
        double t = 0;
        for (size_t i = sp->known; i > r; i--) t += (double)sp->s[i - 1] * sp->s[i - 1];
        return t;
    }
    double t = sp->energy - sum_sq(sp->s, r);
    return t > 0 ? t : 0;
}

/* smallest r with tail(r) <= limit; found = false when even tail(known) is above it. Exact:
 * tails summed from the small end (no cancellation); otherwise energy minus the head. */
static void rank_for_tail(const lr_spectrum *sp, double limit, size_t *r, bool *found)
{
    if (sp->exact) {
        size_t i = sp->known;
        double tail = 0;
        while (i > 0 && tail + (double)sp->s[i - 1] * sp->s[i - 1] <= limit) {
            i--;
            tail += (double)sp->s[i] * sp->s[i];
        }
        *r = i;
        *found = true;
        return;
    }
    double tail = sp->energy;
    size_t i = 0;
    while (i < sp->known && tail > limit) {
        tail -= (double)sp->s[i] * sp->s[i];
        i++;
    }
    *r = i;
    *found = tail <= limit;
}

lr_status lr_spectrum_rank_for_energy(const lr_spectrum *sp, size_t *r, bool *found, double energy,
                                      lr_err *err)
{
    if (!sp || !r || !found) return lr__fail(err, LR_EINVAL, "lr_spectrum_rank_for_energy: NULL argument");
    if (!(energy >= 0 && energy <= 1))
        return lr__fail(err, LR_EINVAL, "energy fraction %g is outside [0, 1]", energy);
    double total = sp->exact ? sp->captured : sp->energy;
    rank_for_tail(sp, (1 - energy) * total, r, found);
    return LR_OK;
}

lr_status lr_spectrum_rank_for_error(const lr_spectrum *sp, size_t *r, bool *found, double rel_err,
                                     lr_err *err)
{
    if (!sp || !r || !found) return lr__fail(err, LR_EINVAL, "lr_spectrum_rank_for_error: NULL argument");
    if (!(rel_err >= 0) || !isfinite(rel_err))
        return lr__fail(err, LR_EINVAL, "relative error %g: expected a finite number >= 0", rel_err);
    double total = sp->exact ? sp->captured : sp->energy;
    rank_for_tail(sp, rel_err * rel_err * total, r, found);
    return LR_OK;
}

void lr_spectrum_numerical_rank(const lr_spectrum *sp, size_t *rank, bool *at_least)
{
    size_t r = 0;
    if (sp && sp->known) {
        double tol = lr_rank_default_tol(sp->s[0], sp->m, sp->n);
        while (r < sp->known && sp->s[r] > tol) r++;
    }
    if (rank) *rank = r;
    if (at_least) *at_least = sp && !sp->exact && r == sp->known;
}
