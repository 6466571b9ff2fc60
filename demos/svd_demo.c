/* svd_demo.c — lr-svd-demo: low-rank factoring of a linear layer, shown end to end.
 *
 * With no matrix it retells the seed notebook svd.ipynb (hkproj/pytorch-lora) in C:
 * a 10x10 W = randn(10,2)·randn(2,10) has rank 2, so its truncated SVD gives
 * B = U_r·S_r (10x2) and A = V_rᵀ (2x10) with W = B·A, and y = Wx + b can be computed
 * as y' = B(Ax) + b with 40 instead of 100 parameters and multiply-adds.
 *
 * Given a .npy matrix it does the same for real weights: numerical rank, leading
 * singular values, the reconstruction error of a few ranks measured against the
 * Eckart–Young optimum, the multiply-add/parameter table, and B and A written as .npy.
 * --json prints the same results as one JSON object. `lr-svd-demo --help` lists
 * every option; docs/svd-demo.md has sample output.
 *
 * Exit status: 0 on success, 2 for usage errors (bad option or value), 1 for
 * runtime errors (unreadable file, malformed .npy, non-finite entries, ...).
 * Every message goes to stderr; with --json stdout holds the JSON object only.
 */
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "svd_opts.h"
#include "lowrank/linalg/approx.h"
#include "lowrank/linalg/blas.h"
#include "lowrank/linalg/cost.h"
#include "lowrank/linalg/factor.h"
#include "lowrank/base/mat.h"
#include "lowrank/io/atomicfile.h"
#include "lowrank/io/npy.h"
#include "lowrank/linalg/rank.h"
#include "lowrank/base/rng.h"
#include "lowrank/linalg/rsvd.h"
#include "lowrank/linalg/svd.h"

#define PROG SVD_PROG

/* numpy's allclose defaults, for the seed mode's verdict (see seed_mode) */
#define ALLCLOSE_RTOL 1e-5

typedef svd_opts options; /* svd_opts.h: shared with the fuzz target */

static int runtime_error(const char *what)
{
    fprintf(stderr, PROG ": %s\n", what);
    return LR_CLI_RUNTIME;
}

static int usage_error(const char *what)
{
    fprintf(stderr, PROG ": %s\nTry '" PROG " --help'.\n", what);
    return LR_CLI_USAGE;
}

static const char *tol_words(lr_tol_kind k)
{
    return k == LR_TOL_ABS ? "absolute --tol" : k == LR_TOL_REL ? "--rtol * s_max"
                                                                : "s_max * max(m,n) * eps";
}

static const char *tol_key(lr_tol_kind k)
{
    return k == LR_TOL_ABS ? "absolute" : k == LR_TOL_REL ? "relative" : "default";
}

/* "PFX_B.npy", malloc'd. */
static char *out_name(const char *prefix, const char *what)
{
    size_t n = strlen(prefix) + strlen(what) + 6;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s_%s.npy", prefix, what);
    return p;
}

/* Saves each (name, matrix) pair as PFX_name.npy, all or nothing: every file is written to
 * its temporary first, and only when all are complete are they renamed over their targets,
 * so a failure (disk full, a target that is a directory, ...) leaves every old file as it
 * was. `input` (may be NULL) must not be among the targets. */
static lr_status save_outputs(const char *prefix, const char *const *names, const lr_cmat *mats,
                              size_t count, char **paths, const char *input, lr_err *err)
{
    lr_atomic_file af[3] = { { 0 }, { 0 }, { 0 } };
    lr_status st = LR_OK;
    struct stat sb;
    for (size_t i = 0; i < count && !st; i++) {
        if (!(paths[i] = out_name(prefix, names[i]))) {
            snprintf(err->msg, sizeof err->msg, "out of memory");
            st = LR_ENOMEM;
        } else if (lr_cli_same_file(paths[i], input)) {
            snprintf(err->msg, sizeof err->msg, "%s is the input matrix: refusing to overwrite it", paths[i]);
            st = LR_EINVAL;
        } else if (stat(paths[i], &sb) == 0 && !S_ISREG(sb.st_mode)) {
            snprintf(err->msg, sizeof err->msg, "%s: exists and is not a regular file", paths[i]);
            st = LR_EIO;
        } else if (!(st = lr_atomic_open(&af[i], paths[i], err))) {
            st = lr_npy_write(mats[i], af[i].f, paths[i], err);
        }
    }
    for (size_t i = 0; i < count && !st; i++) st = lr_atomic_commit(&af[i], err);
    for (size_t i = 0; i < count; i++) lr_atomic_abort(&af[i]); /* no-op once committed */
    if (st)
        for (size_t i = 0; i < count; i++) {
            free(paths[i]);
            paths[i] = NULL;
        }
    return st;
}

static void print_json(json_t *root)
{
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
    if (s) {
        puts(s);
        free(s);
    }
}

/* ---- the seed notebook ----------------------------------------------------------- */

enum { SEED_D = 10, SEED_K = 10, SEED_TRUE_RANK = 2 };

/* Everything seed mode computes, then renders as text or JSON. */
typedef struct {
    lr_mat w, b, a;                           /* W: (D,K); B: (D,r); A: (r,K) */
    float s[SEED_D], x[SEED_K], bias[SEED_D], y[SEED_D], yp[SEED_D];
    size_t rank, r;
    double tol, atol, maxdiff;
    bool close;                               /* y' allclose to y */
    lr_cost cost;
    char *paths[3];                           /* --out-prefix: W, B, A written */
} seed_result;

static void seed_free(seed_result *x)
{
    for (int i = 0; i < 3; i++) free(x->paths[i]);
    lr_mat_free(&x->w);
    lr_mat_free(&x->b);
    lr_mat_free(&x->a);
}

/* W = randn(d, 2) · randn(2, k): rank 2 by construction; its singular values and rank. */
static lr_status seed_matrix(const options *o, seed_result *x, lr_rng *rng, lr_err *err)
{
    lr_mat p = { 0 }, q = { 0 };
    lr_status st;
    if (!(st = lr_mat_init(&p, SEED_D, SEED_TRUE_RANK, err)) && !(st = lr_mat_init(&q, SEED_TRUE_RANK, SEED_K, err)) &&
        !(st = lr_mat_init(&x->w, SEED_D, SEED_K, err))) {
        lr_rng_fill_normal(rng, p, 0.0f, 1.0f);
        lr_rng_fill_normal(rng, q, 0.0f, 1.0f);
        if (!(st = lr_gemm(x->w, 1.0f, lr_cm(p), false, lr_cm(q), false, 0.0f, err)) &&
            !(st = lr_svd_values(x->s, lr_cm(x->w), NULL, err)))
            st = lr_rank_from_values(&x->rank, &x->tol, x->s, SEED_D, SEED_D, SEED_K, &o->tol, err);
    }
    lr_mat_free(&p);
    lr_mat_free(&q);
    return st;
}

/* The same layer both ways, y = Wx + b and y' = B(Ax) + b, with random x and b. numpy's
 * rtol, but an atol scaled to y: numpy's fixed atol = 1e-8 is meant for float64, while in
 * float32 an entry of y near 0 carries an absolute rounding error of order eps·‖W‖·‖x‖
 * from the SVD and the two products. */
static lr_status seed_compare(seed_result *x, lr_rng *rng, lr_err *err)
{
    float ax[SEED_D];
    for (size_t i = 0; i < SEED_K; i++) x->x[i] = lr_rng_normal(rng);
    for (size_t i = 0; i < SEED_D; i++) x->bias[i] = lr_rng_normal(rng);
    memcpy(x->y, x->bias, sizeof x->y);
    memcpy(x->yp, x->bias, sizeof x->yp);
    lr_status st;
    if ((st = lr_gemv(x->y, 1.0f, lr_cm(x->w), false, x->x, 1.0f, err)) ||
        (st = lr_gemv(ax, 1.0f, lr_cm(x->a), false, x->x, 0.0f, err)) ||
        (st = lr_gemv(x->yp, 1.0f, lr_cm(x->b), false, ax, 1.0f, err)))
        return st;
    double ymax = 0;
    for (size_t i = 0; i < SEED_D; i++) {
        if (fabs(x->y[i]) > ymax) ymax = fabs(x->y[i]);
        if (fabs(x->y[i] - x->yp[i]) > x->maxdiff) x->maxdiff = fabs(x->y[i] - x->yp[i]);
    }
    x->atol = ALLCLOSE_RTOL * ymax;
    x->close = lr_mat_allclose(lr_cmat_view(x->yp, SEED_D, 1, 1), lr_cmat_view(x->y, SEED_D, 1, 1),
                               (float)ALLCLOSE_RTOL, (float)x->atol);
    return LR_OK;
}

static bool seed_render_json(const options *o, const seed_result *x)
{
    bool ok = true;
    json_t *root = json_object();
    if (!root) return false;
    lr_cli_json_set(root, "mode", json_string("seed"), &ok);
    lr_cli_json_set(root, "seed", json_integer((json_int_t)o->seed), &ok);
    lr_cli_json_set(root, "W", lr_cli_json_mat(lr_cm(x->w)), &ok);
    lr_cli_json_set(root, "singular_values", lr_cli_json_vec(x->s, SEED_D), &ok);
    lr_cli_json_set(root, "rank", json_integer((json_int_t)x->rank), &ok);
    lr_cli_json_set(root, "tol", lr_cli_json_real(x->tol), &ok);
    lr_cli_json_set(root, "r", json_integer((json_int_t)x->r), &ok);
    lr_cli_json_set(root, "split", json_string(o->split == LR_SPLIT_US ? "us" : "balanced"), &ok);
    lr_cli_json_set(root, "B", lr_cli_json_mat(lr_cm(x->b)), &ok);
    lr_cli_json_set(root, "A", lr_cli_json_mat(lr_cm(x->a)), &ok);
    lr_cli_json_set(root, "x", lr_cli_json_vec(x->x, SEED_K), &ok);
    lr_cli_json_set(root, "b", lr_cli_json_vec(x->bias, SEED_D), &ok);
    lr_cli_json_set(root, "y", lr_cli_json_vec(x->y, SEED_D), &ok);
    lr_cli_json_set(root, "y_prime", lr_cli_json_vec(x->yp, SEED_D), &ok);
    lr_cli_json_set(root, "allclose", json_boolean(x->close), &ok);
    lr_cli_json_set(root, "rtol", lr_cli_json_real(ALLCLOSE_RTOL), &ok);
    lr_cli_json_set(root, "atol", lr_cli_json_real(x->atol), &ok);
    lr_cli_json_set(root, "max_abs_diff", lr_cli_json_real(x->maxdiff), &ok);
    lr_cli_json_set(root, "params_W", json_integer((json_int_t)x->cost.dense_params), &ok);
    lr_cli_json_set(root, "params_BA", json_integer((json_int_t)x->cost.factored_params), &ok);
    lr_cli_json_set(root, "macs_Wx", json_integer((json_int_t)x->cost.dense_macs), &ok);
    lr_cli_json_set(root, "macs_BAx", json_integer((json_int_t)x->cost.factored_macs), &ok);
    if (o->out_prefix) {
        json_t *files = json_object();
        lr_cli_json_set(files, "W", json_string(x->paths[0]), &ok);
        lr_cli_json_set(files, "B", json_string(x->paths[1]), &ok);
        lr_cli_json_set(files, "A", json_string(x->paths[2]), &ok);
        lr_cli_json_set(root, "files", files, &ok);
    }
    if (ok) print_json(root);
    json_decref(root);
    return ok;
}

static void seed_render_text(const options *o, const seed_result *x)
{
    printf("The seed notebook svd.ipynb, in C (seed %llu)\n\n", (unsigned long long)o->seed);
    printf("A rank-deficient W = randn(%d,%d) @ randn(%d,%d):\n", SEED_D, SEED_TRUE_RANK, SEED_TRUE_RANK, SEED_K);
    lr_cli_print_mat(stdout, "W", lr_cm(x->w), 4, 12, 12);
    lr_cli_print_vec(stdout, "\nsingular values of W", x->s, SEED_D, 3, SEED_D);
    printf("Rank of W: %zu  (singular values above tol = %s = %.3g)\n\n", x->rank, tol_words(o->tol.kind), x->tol);
    printf("Truncated SVD at r = %zu: %s\n", x->r,
           o->split == LR_SPLIT_US ? "B = U_r @ diag(S_r), A = V_r^T"
                                   : "B = U_r @ diag(sqrt(S_r)), A = diag(sqrt(S_r)) @ V_r^T");
    lr_cli_print_mat(stdout, "B", lr_cm(x->b), 4, 12, 12);
    lr_cli_print_mat(stdout, "A", lr_cm(x->a), 4, 12, 12);
    printf("\nThe same layer computed both ways, with random x and b:\n");
    printf("  %3s  %12s  %14s  %10s\n", "i", "y = Wx + b", "y' = B(Ax) + b", "|y - y'|");
    for (size_t i = 0; i < SEED_D; i++)
        printf("  %3zu  %12.6f  %14.6f  %10.2e\n", i, (double)x->y[i], (double)x->yp[i],
               fabs((double)x->y[i] - x->yp[i]));
    printf("allclose: %s  (|y - y'| <= atol + rtol*|y| with rtol = %g, atol = rtol*max|y| = %.2g;"
           " max |y - y'| = %.2g)\n\n", x->close ? "True" : "False", ALLCLOSE_RTOL, x->atol, x->maxdiff);
    printf("Total parameters of W: %llu\n", (unsigned long long)x->cost.dense_params);
    printf("Total parameters of B and A: %llu\n", (unsigned long long)x->cost.factored_params);
    printf("Multiply-adds of Wx: %llu  (%d x %d)\n", (unsigned long long)x->cost.dense_macs, SEED_D, SEED_K);
    printf("Multiply-adds of B(Ax): %llu  (Ax: %zu x %d, then B(Ax): %d x %zu)\n",
           (unsigned long long)x->cost.factored_macs, x->r, SEED_K, SEED_D, x->r);
    printf("Saving: %.0f%% of the parameters and of the multiply-adds.\n", x->cost.param_reduction_pct);
    if (o->out_prefix) printf("\nwrote %s, %s, %s\n", x->paths[0], x->paths[1], x->paths[2]);
}

/* The seed notebook: a rank-2 W, its rank, B·A at r, the layer both ways, the costs. */
static int seed_mode(const options *o)
{
    seed_result x;
    memset(&x, 0, sizeof x);
    lr_err err = { "" };
    lr_rng rng;
    lr_rng_seed(&rng, o->seed);
    int rc = LR_CLI_OK;
    if (seed_matrix(o, &x, &rng, &err)) rc = runtime_error(err.msg);
    if (!rc) {
        x.r = o->has_rank ? o->rank : x.rank;
        if (x.r > SEED_D) rc = usage_error("--rank: at most 10 for the 10 x 10 seed matrix");
        else if (x.r == 0) {
            snprintf(err.msg, sizeof err.msg, "W has no singular value above the tolerance %g: nothing to factor", x.tol);
            rc = runtime_error(err.msg);
        }
    }
    if (!rc && (lr_factor_alloc(&x.b, &x.a, lr_cm(x.w), x.r, o->split, &err) || seed_compare(&x, &rng, &err) ||
                lr_cost_layer(&x.cost, SEED_D, SEED_K, x.r, false, &err)))
        rc = runtime_error(err.msg);
    if (!rc && o->out_prefix) {
        const char *names[3] = { "W", "B", "A" };
        lr_cmat mats[3] = { lr_cm(x.w), lr_cm(x.b), lr_cm(x.a) };
        if (save_outputs(o->out_prefix, names, mats, 3, x.paths, NULL, &err)) rc = runtime_error(err.msg);
    }
    if (!rc && o->json && !seed_render_json(o, &x)) rc = runtime_error("out of memory building the JSON output");
    if (!rc && !o->json) seed_render_text(o, &x);
    seed_free(&x);
    return rc;
}

/* ---- a matrix of your own ------------------------------------------------------- */

typedef struct {
    size_t rank;
    lr_approx_err measured, predicted;
    double energy;
    double spec_predicted; /* s_{r+1} */
} table_row;

static int cmp_size(const void *x, const void *y)
{
    size_t a = *(const size_t *)x, b = *(const size_t *)y;
    return a < b ? -1 : a > b;
}

/* Sorted, duplicates dropped. */
static size_t sort_unique(size_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_size);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || v[i] != v[k - 1]) v[k++] = v[i];
    return k;
}

/* Everything matrix mode computes, then renders as text or JSON. */
typedef struct {
    lr_mat w, b, a;                 /* W: (m,n); the chosen factors B: (m,r), A: (r,n) */
    size_t m, n, k;                 /* k = min(m, n) */
    float *s;                       /* (k) singular values */
    size_t rank, r, rmax;           /* numerical rank; the factoring rank; the table's largest */
    double tol;
    const char *why;                /* how r was chosen */
    table_row rows[MAX_RANKS + 3];
    size_t nr;
    lr_cost cost, cost_bias;
    size_t break_even;
    char *paths[2];                 /* --out-prefix: the files written */
} mx_result;

static void mx_free(mx_result *x)
{
    for (int i = 0; i < 2; i++) free(x->paths[i]);
    free(x->s);
    lr_mat_free(&x->w);
    lr_mat_free(&x->b);
    lr_mat_free(&x->a);
}

/* W, its singular values and numerical rank. */
static lr_status mx_load(const options *o, mx_result *x, lr_err *err)
{
    lr_status st;
    if ((st = lr_npy_load(&x->w, o->path, err)) || (st = lr_mat_check_finite(lr_cm(x->w), o->path, err)))
        return st;
    x->m = x->w.rows, x->n = x->w.cols, x->k = x->m < x->n ? x->m : x->n;
    if (x->k == 0) {
        snprintf(err->msg, sizeof err->msg, "%s: the matrix is %zu x %zu: nothing to decompose", o->path, x->m,
                 x->n);
        return LR_EDIM;
    }
    if (!(x->s = malloc(x->k * sizeof *x->s))) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return LR_ENOMEM;
    }
    if (!(st = lr_svd_values(x->s, lr_cm(x->w), NULL, err)))
        st = lr_rank_from_values(&x->rank, &x->tol, x->s, x->k, x->m, x->n, &o->tol, err);
    if (st && strncmp(err->msg, o->path, strlen(o->path)) != 0) { /* name the file */
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s: %s", o->path, err->msg);
        memcpy(err->msg, msg, sizeof msg);
    }
    return st;
}

/* r from --rank, --energy or the numerical rank; the ranks of the error table. Returns a
 * demo exit code (usage errors: 2). */
static int mx_choose_ranks(const options *o, mx_result *x, size_t *ranks)
{
    char msg[512];
    lr_err err = { "" };
    if (o->has_rank && o->rank > x->k) {
        snprintf(msg, sizeof msg, "--rank: %zu is more than min(m, n) = %zu for %s (%zu x %zu)", o->rank, x->k,
                 o->path, x->m, x->n);
        return usage_error(msg);
    }
    x->r = o->has_rank ? o->rank : x->rank;
    x->why = o->has_rank ? "--rank" : o->has_energy ? "--energy" : "numerical rank";
    if (o->has_energy && lr_approx_rank_for_energy(&x->r, x->s, x->k, o->energy, &err))
        return runtime_error(err.msg);
    if (x->r == 0) {
        snprintf(msg, sizeof msg, "%s: no singular value above the tolerance %g (the matrix is zero"
                 " to working precision): nothing to factor", o->path, x->tol);
        return runtime_error(msg);
    }
    size_t nr = 0;
    for (size_t i = 0; i < o->nranks; i++) {
        if (o->ranks[i] > x->k) {
            snprintf(msg, sizeof msg, "--ranks: %zu is more than min(m, n) = %zu for %s (%zu x %zu)",
                     o->ranks[i], x->k, o->path, x->m, x->n);
            return usage_error(msg);
        }
        ranks[nr++] = o->ranks[i];
    }
    if (!o->nranks) {
        size_t top = o->randomized ? x->r : x->k;
        for (size_t t = 1; t <= top && nr < MAX_RANKS; t *= 2) ranks[nr++] = t;
        if (!o->randomized) ranks[nr++] = x->k;
    }
    ranks[nr++] = x->r;
    x->nr = sort_unique(ranks, nr);
    x->rmax = ranks[x->nr - 1];
    return LR_CLI_OK;
}

/* One decomposition, truncated to each rank of the table (the leading singular triplets of a
 * rank-rmax randomized SVD are its rank-t answer for t < rmax); keeps the factors at r. */
static lr_status mx_factor(const options *o, mx_result *x, const size_t *ranks, lr_err *err)
{
    lr_usv usv = { 0 };
    lr_mat tb = { 0 }, ta = { 0 };
    lr_rng rng;
    lr_rng_seed(&rng, o->seed);
    lr_status st = o->randomized ? lr_usv_from_rsvd(&usv, lr_cm(x->w), x->rmax, &o->rsvd, &rng, err)
                                 : lr_usv_from_svd(&usv, lr_cm(x->w), err);
    for (size_t i = 0; !st && i < x->nr; i++) {
        size_t t = ranks[i];
        table_row *row = &x->rows[i];
        row->rank = t;
        if ((st = lr_mat_init(&tb, x->m, t, err)) || (st = lr_mat_init(&ta, t, x->n, err)) ||
            (st = lr_factor_from_usv(tb, ta, &usv, t, o->split, err)) ||
            (st = lr_approx_measure(&row->measured, lr_cm(x->w), lr_cm(tb), lr_cm(ta), false, err)) ||
            (st = lr_approx_predict(&row->predicted, x->s, x->k, t, err)))
            break;
        row->energy = lr_approx_energy(x->s, x->k, t);
        row->spec_predicted = t < x->k ? (double)x->s[t] : 0.0;
        if (t == x->r) { /* keep the chosen factors */
            x->b = tb, x->a = ta;
            tb = (lr_mat){ 0 }, ta = (lr_mat){ 0 };
        }
        lr_mat_free(&tb);
        lr_mat_free(&ta);
    }
    lr_mat_free(&tb);
    lr_mat_free(&ta);
    lr_usv_free(&usv);
    if (!st && !(st = lr_cost_layer(&x->cost, x->m, x->n, x->r, false, err)) &&
        !(st = lr_cost_layer(&x->cost_bias, x->m, x->n, x->r, true, err)))
        st = lr_cost_break_even(&x->break_even, x->m, x->n, err);
    if (!st && o->out_prefix) {
        const char *names[2] = { "B", "A" };
        lr_cmat mats[2] = { lr_cm(x->b), lr_cm(x->a) };
        st = save_outputs(o->out_prefix, names, mats, 2, x->paths, o->path, err);
    }
    return st;
}

static json_t *mx_json_method(const options *o, const mx_result *x, bool *ok)
{
    json_t *method = json_object();
    if (!method) return NULL;
    lr_cli_json_set(method, "name", json_string(o->randomized ? "randomized" : "svd"), ok);
    if (o->randomized && o->rsvd.method == LR_RSVD_SUBSPACE) {
        lr_cli_json_set(method, "algorithm", json_string("subspace"), ok);
        lr_cli_json_set(method, "oversample", json_integer((json_int_t)o->rsvd.oversample), ok);
        lr_cli_json_set(method, "power_iters", json_integer((json_int_t)o->rsvd.power_iters), ok);
    } else if (o->randomized) {
        lr_cli_json_set(method, "algorithm", json_string("block_krylov"), ok);
        lr_cli_json_set(method, "block", json_integer((json_int_t)(o->rsvd.block ? o->rsvd.block : x->rmax)), ok);
        lr_cli_json_set(method, "krylov_depth", json_integer((json_int_t)o->rsvd.krylov_depth), ok);
    }
    if (o->randomized) lr_cli_json_set(method, "seed", json_integer((json_int_t)o->seed), ok);
    return method;
}

static json_t *mx_json_errors(const mx_result *x, bool *ok)
{
    json_t *errs = json_array();
    for (size_t i = 0; errs && i < x->nr; i++) {
        const table_row *row = &x->rows[i];
        json_t *e = json_object();
        if (!e) { *ok = false; break; }
        lr_cli_json_set(e, "rank", json_integer((json_int_t)row->rank), ok);
        lr_cli_json_set(e, "params", json_integer((json_int_t)(row->rank * (x->m + x->n))), ok);
        lr_cli_json_set(e, "fro", lr_cli_json_real(row->measured.fro), ok);
        lr_cli_json_set(e, "fro_predicted", lr_cli_json_real(row->predicted.fro), ok);
        lr_cli_json_set(e, "rel_fro", lr_cli_json_real(row->measured.rel_fro), ok);
        lr_cli_json_set(e, "rel_fro_predicted", lr_cli_json_real(row->predicted.rel_fro), ok);
        lr_cli_json_set(e, "spectral_predicted", lr_cli_json_real(row->spec_predicted), ok);
        lr_cli_json_set(e, "energy", lr_cli_json_real(row->energy), ok);
        if (json_array_append_new(errs, e) != 0) *ok = false;
    }
    return errs;
}

static json_t *mx_json_cost(const mx_result *x, bool *ok)
{
    json_t *c = json_object();
    if (!c) return NULL;
    lr_cli_json_set(c, "dense_macs", json_integer((json_int_t)x->cost.dense_macs), ok);
    lr_cli_json_set(c, "factored_macs", json_integer((json_int_t)x->cost.factored_macs), ok);
    lr_cli_json_set(c, "dense_params", json_integer((json_int_t)x->cost.dense_params), ok);
    lr_cli_json_set(c, "factored_params", json_integer((json_int_t)x->cost.factored_params), ok);
    lr_cli_json_set(c, "dense_params_with_bias", json_integer((json_int_t)x->cost_bias.dense_params), ok);
    lr_cli_json_set(c, "factored_params_with_bias", json_integer((json_int_t)x->cost_bias.factored_params), ok);
    lr_cli_json_set(c, "mac_reduction_pct", lr_cli_json_real(x->cost.mac_reduction_pct), ok);
    lr_cli_json_set(c, "param_reduction_pct", lr_cli_json_real(x->cost.param_reduction_pct), ok);
    lr_cli_json_set(c, "break_even_rank", json_integer((json_int_t)x->break_even), ok);
    return c;
}

/* The JSON object of matrix mode, printed; false when out of memory. */
static bool mx_render_json(const options *o, const mx_result *x, size_t shown)
{
    bool ok = true;
    json_t *root = json_object(), *shape = json_array();
    if (!root) { json_decref(shape); return false; }
    if (shape) {
        json_array_append_new(shape, json_integer((json_int_t)x->m));
        json_array_append_new(shape, json_integer((json_int_t)x->n));
    }
    lr_cli_json_set(root, "mode", json_string("matrix"), &ok);
    lr_cli_json_set(root, "file", json_string(o->path), &ok);
    lr_cli_json_set(root, "shape", shape, &ok);
    lr_cli_json_set(root, "numerical_rank", json_integer((json_int_t)x->rank), &ok);
    lr_cli_json_set(root, "tol", lr_cli_json_real(x->tol), &ok);
    lr_cli_json_set(root, "tol_kind", json_string(tol_key(o->tol.kind)), &ok);
    lr_cli_json_set(root, "singular_values", lr_cli_json_vec(x->s, shown), &ok);
    lr_cli_json_set(root, "singular_values_total", json_integer((json_int_t)x->k), &ok);
    lr_cli_json_set(root, "r", json_integer((json_int_t)x->r), &ok);
    lr_cli_json_set(root, "r_from", json_string(o->has_rank ? "rank" : o->has_energy ? "energy" : "numerical_rank"), &ok);
    if (o->has_energy) lr_cli_json_set(root, "energy_target", lr_cli_json_real(o->energy), &ok);
    lr_cli_json_set(root, "split", json_string(o->split == LR_SPLIT_US ? "us" : "balanced"), &ok);
    lr_cli_json_set(root, "method", mx_json_method(o, x, &ok), &ok);
    lr_cli_json_set(root, "errors", mx_json_errors(x, &ok), &ok);
    lr_cli_json_set(root, "cost", mx_json_cost(x, &ok), &ok);
    if (o->out_prefix) {
        json_t *files = json_object();
        if (files) {
            lr_cli_json_set(files, "B", json_string(x->paths[0]), &ok);
            lr_cli_json_set(files, "A", json_string(x->paths[1]), &ok);
        }
        lr_cli_json_set(root, "files", files, &ok);
    }
    if (ok) print_json(root);
    json_decref(root);
    return ok;
}

static void mx_text_header(const options *o, const mx_result *x, size_t shown)
{
    printf("matrix: %s, %zu x %zu float32\n", o->path, x->m, x->n);
    printf("numerical rank: %zu of %zu  (tol = %s = %.3g)\n", x->rank, x->k, tol_words(o->tol.kind), x->tol);
    char label[96];
    snprintf(label, sizeof label, "leading singular values (%zu of %zu)", shown, x->k);
    lr_cli_print_vec(stdout, label, x->s, shown, 4, shown);
    if (o->has_energy)
        printf("rank r = %zu  (smallest rank capturing %.4g of the energy: %.6f)\n", x->r, o->energy,
               lr_approx_energy(x->s, x->k, x->r));
    else
        printf("rank r = %zu  (%s)\n", x->r, x->why);
    if (o->randomized && o->rsvd.method == LR_RSVD_SUBSPACE)
        printf("method: randomized SVD, subspace iteration (Halko-Martinsson-Tropp) at rank %zu, "
               "oversample %zu, power iterations %zu, seed %llu\n", x->rmax, o->rsvd.oversample,
               o->rsvd.power_iters, (unsigned long long)o->seed);
    else if (o->randomized)
        printf("method: randomized SVD, block Krylov (Musco-Musco) at rank %zu, block %zu, depth %zu, "
               "seed %llu\n", x->rmax, o->rsvd.block ? o->rsvd.block : x->rmax, o->rsvd.krylov_depth,
               (unsigned long long)o->seed);
    else
        printf("method: thin SVD (LAPACK sgesdd)\n");
    printf("factors: %s\n\n", o->split == LR_SPLIT_US ? "B = U_r S_r (m x r), A = V_r^T (r x n)"
                                                      : "B = U_r sqrt(S_r) (m x r), A = sqrt(S_r) V_r^T (r x n)");
}

static void mx_text_errors(const mx_result *x)
{
    printf("Error of W ~ B A (Frobenius; optimal = Eckart-Young sqrt(sum_{i>r} s_i^2);\n"
           "ratio = measured / optimal, '-' where the optimum is below float32 rounding):\n");
    printf("  %6s %10s %13s %13s %8s %10s %10s %11s\n", "rank", "params", "||W-BA||_F", "optimal", "ratio",
           "relative", "energy", "s_{r+1}");
    double rounding = 16 * FLT_EPSILON * sqrt((double)x->k) * lr_mat_norm_fro(lr_cm(x->w));
    for (size_t i = 0; i < x->nr; i++) {
        const table_row *t = &x->rows[i];
        /* below float32 rounding of W the optimum is 0 in all but name: no ratio */
        double ratio = t->predicted.fro > rounding ? t->measured.fro / t->predicted.fro : NAN;
        char rs[16];
        if (isfinite(ratio)) snprintf(rs, sizeof rs, "%.4f", ratio);
        else snprintf(rs, sizeof rs, "-");
        printf("  %6zu %10zu %13.4e %13.4e %8s %10.3e %10.6f %11.4e%s\n", t->rank, t->rank * (x->m + x->n),
               t->measured.fro, t->predicted.fro, rs, t->measured.rel_fro, t->energy, t->spec_predicted,
               t->rank == x->r ? "  <- r" : "");
    }
}

static void mx_text_cost(const options *o, const mx_result *x)
{
    const lr_cost *c = &x->cost, *cb = &x->cost_bias;
    printf("\nCost of y = Wx + b against y = B(Ax) + b at r = %zu:\n", x->r);
    printf("  %-22s %14s %14s %10s\n", "", "dense", "factored", "saving");
    printf("  %-22s %14llu %14llu %9.1f%%\n", "multiply-adds", (unsigned long long)c->dense_macs,
           (unsigned long long)c->factored_macs, c->mac_reduction_pct);
    printf("  %-22s %14llu %14llu %9.1f%%\n", "parameters", (unsigned long long)c->dense_params,
           (unsigned long long)c->factored_params, c->param_reduction_pct);
    printf("  %-22s %14llu %14llu %9.1f%%\n", "parameters with bias", (unsigned long long)cb->dense_params,
           (unsigned long long)cb->factored_params, cb->param_reduction_pct);
    if (x->break_even)
        printf("  factoring saves while r <= %zu (break-even: r(m+n) < mn)\n", x->break_even);
    else
        printf("  factoring never saves for this shape (r(m+n) >= mn for every r >= 1)\n");
    if (o->out_prefix)
        printf("\nwrote %s (%zu x %zu) and %s (%zu x %zu)\n", x->paths[0], x->m, x->r, x->paths[1], x->r, x->n);
}

/* A matrix of your own: load, rank, factor at r with an error table and costs, render. */
static int matrix_mode(const options *o)
{
    mx_result x;
    memset(&x, 0, sizeof x);
    lr_err err = { "" };
    size_t ranks[MAX_RANKS + 3];
    int rc;
    if (mx_load(o, &x, &err)) rc = runtime_error(err.msg);
    else if (!(rc = mx_choose_ranks(o, &x, ranks)) && mx_factor(o, &x, ranks, &err)) rc = runtime_error(err.msg);
    if (!rc) {
        size_t shown = o->top == 0 || o->top > x.k ? x.k : o->top;
        if (o->json) {
            if (!mx_render_json(o, &x, shown)) rc = runtime_error("out of memory building the JSON output");
        } else {
            mx_text_header(o, &x, shown);
            mx_text_errors(&x);
            mx_text_cost(o, &x);
        }
    }
    mx_free(&x);
    return rc;
}

int main(int argc, char **argv)
{
    options o;
    char msg[512] = "";
    /* over a file-size limit, report EFBIG from the write instead of dying of SIGXFSZ */
    signal(SIGXFSZ, SIG_IGN);
    int rc = svd_opts_parse(argc, argv, &o, msg, sizeof msg);
    if (rc == SVD_OPTS_HELP) {
        svd_opts_usage(stdout);
        return LR_CLI_OK;
    }
    if (rc) return usage_error(msg);
    return o.path ? matrix_mode(&o) : seed_mode(&o);
}
