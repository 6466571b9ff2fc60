/* svd_opts.c — lr-svd-demo's options (svd_opts.h). Moved here from svd_demo.c unchanged in
 * what they accept and say, so the demo and the fuzz target tests/fuzz/fuzz_cmdline.c share
 * them.
 */
#include "svd_opts.h"

#include <math.h>
#include <string.h>

#include "cli.h"

#define PROG SVD_PROG

void svd_opts_usage(FILE *f)
{
    fprintf(f,
"Usage: " PROG " [OPTIONS]              the seed notebook svd.ipynb, in C\n"
"       " PROG " MATRIX.npy [OPTIONS]   factor a matrix of your own\n"
"\n"
"Factor a weight matrix W (m x n) as B (m x r) times A (r x n) by its truncated SVD,\n"
"B = U_r S_r and A = V_r^T, and show what is gained: y = Wx + b becomes\n"
"y' = B(Ax) + b with r(m+n) instead of m*n parameters and multiply-adds.\n"
"\n"
"Without MATRIX.npy: a 10 x 10 W = randn(10,2) randn(2,10) from --seed (default 0);\n"
"prints W, its rank (2), B, A, y and y' side by side with an allclose verdict, and the\n"
"parameter and multiply-add counts (100 vs 40).\n"
"\n"
"With MATRIX.npy (2-D, float32 '<f4' or float64 '<f8', C order; float64 is rounded\n"
"to float32): prints the shape, the numerical rank, the leading singular values, the\n"
"error of a few ranks (measured ||W - BA||_F against the Eckart-Young optimum), and\n"
"the cost table at the chosen rank r.\n"
"\n"
"Choosing r (at most one; default: the numerical rank):\n"
"  --rank R           use rank R (1 <= R <= min(m, n))\n"
"  --energy E         smallest r whose singular values capture a fraction E of the\n"
"                     energy sum(s_i^2), 0 < E <= 1 (e.g. 0.99)\n"
"Numerical rank (count of singular values above a tolerance):\n"
"  --tol T            absolute tolerance T >= 0\n"
"  --rtol T           relative tolerance: T * s_max, T >= 0\n"
"                     (default: numpy's s_max * max(m, n) * eps, eps = 2^-23)\n"
"Method:\n"
"  --randomized       randomized SVD instead of the full thin SVD (LAPACK sgesdd); for\n"
"                     large matrices and small r\n"
"  --method krylov|subspace  randomized method: block Krylov (Musco & Musco 2015, the\n"
"                     default) or subspace iteration (Halko, Martinsson & Tropp 2011)\n"
"  --block B          Krylov block size, B >= 1 (default r)\n"
"  --krylov-depth Q   Krylov depth, Q >= 0 (default 3)\n"
"  --oversample P     subspace: extra random directions, P >= 0 (default 10)\n"
"  --power-iters Q    subspace: power iterations, Q >= 0 (default 4); either of these two\n"
"                     alone selects --method subspace. All need --randomized\n"
"  --seed S           seed of the random numbers, S >= 0 (default 0); the seed-notebook\n"
"                     matrix, x and b, and the randomized SVD's test matrix\n"
"  --split us|balanced  us: B = U_r S_r, A = V_r^T (default, as in the notebook);\n"
"                     balanced: B = U_r sqrt(S_r), A = sqrt(S_r) V_r^T\n"
"Output:\n"
"  --top N            show the leading N singular values (default 10; 0 = all)\n"
"  --ranks LIST       ranks for the error table, e.g. 1,2,4,8 (default: powers of two\n"
"                     up to min(m, n), plus r and min(m, n); randomized: up to r)\n"
"  --out-prefix PFX   write B and A as PFX_B.npy and PFX_A.npy (float32); in the\n"
"                     seed mode also W as PFX_W.npy. Files are written atomically.\n"
"  --json             print the results as one JSON object on stdout, nothing else\n"
"  -h, --help         show this help and exit\n"
"\n"
"Exit status: 0 success, 1 runtime error (file, format, numerics), 2 usage error.\n"
"Example:  " PROG " W.npy --energy 0.95 --randomized --out-prefix W_r\n");
}

/* The valued options; --randomized and --json are flags. */
static const char *const valued_opts[] = {
    "--rank", "--energy", "--tol", "--rtol", "--method", "--block", "--krylov-depth", "--oversample",
    "--power-iters", "--seed", "--split", "--top", "--ranks", "--out-prefix",
};

/* Notes that an option was given (for the checks across options); true. */
static bool given(bool *flag)
{
    *flag = true;
    return true;
}

static bool bad_value(char *msg, size_t cap, const char *name, const char *want, const char *v)
{
    snprintf(msg, cap, "%s: expected %s, got '%s'", name, want, v);
    return false;
}

/* The randomized SVD's options (--method, --block, --krylov-depth, --oversample, --power-iters). */
static bool set_rsvd_option(svd_opts *o, const char *name, const char *v, char *msg, size_t cap)
{
    lr_rsvd_opts *r = &o->rsvd;
    if (!strcmp(name, "--method")) {
        if (strcmp(v, "krylov") && strcmp(v, "subspace")) return bad_value(msg, cap, name, "krylov or subspace", v);
        r->method = v[0] == 'k' ? LR_RSVD_BLOCK_KRYLOV : LR_RSVD_SUBSPACE;
        return given(&o->has_method);
    }
    if (!strcmp(name, "--block")) return given(&o->has_block) && lr_cli_parse_size(name, v, 1, 100000, &r->block, msg, cap);
    if (!strcmp(name, "--krylov-depth"))
        return given(&o->has_depth) && lr_cli_parse_size(name, v, 0, 1000, &r->krylov_depth, msg, cap);
    if (!strcmp(name, "--oversample"))
        return given(&o->has_oversample) && lr_cli_parse_size(name, v, 0, 100000, &r->oversample, msg, cap);
    return given(&o->has_power) && lr_cli_parse_size(name, v, 0, 1000, &r->power_iters, msg, cap);
}

/* Sets one valued option; false with the reason in msg. */
static bool set_option(svd_opts *o, const char *name, const char *v, char *msg, size_t cap)
{
    if (!strcmp(name, "--rank")) return given(&o->has_rank) && lr_cli_parse_size(name, v, 1, SIZE_MAX, &o->rank, msg, cap);
    if (!strcmp(name, "--energy"))
        return given(&o->has_energy) && lr_cli_parse_double(name, v, 0.0, true, 1.0, false, &o->energy, msg, cap);
    if (!strcmp(name, "--tol") || !strcmp(name, "--rtol")) {
        if (o->has_tol) {
            snprintf(msg, cap, "%s: only one of --tol and --rtol may be given", name);
            return false;
        }
        o->has_tol = true;
        o->tol.kind = name[2] == 't' ? LR_TOL_ABS : LR_TOL_REL;
        return lr_cli_parse_double(name, v, 0.0, false, INFINITY, false, &o->tol.tol, msg, cap);
    }
    if (!strcmp(name, "--seed")) return lr_cli_parse_seed(name, v, &o->seed, msg, cap);
    if (!strcmp(name, "--split")) {
        if (strcmp(v, "us") && strcmp(v, "balanced")) return bad_value(msg, cap, name, "'us' or 'balanced'", v);
        o->split = v[0] == 'u' ? LR_SPLIT_US : LR_SPLIT_BALANCED;
        return true;
    }
    if (!strcmp(name, "--top")) return lr_cli_parse_size(name, v, 0, SIZE_MAX, &o->top, msg, cap);
    if (!strcmp(name, "--ranks"))
        return lr_cli_parse_size_list(name, v, 1, SIZE_MAX, o->ranks, MAX_RANKS, &o->nranks, msg, cap);
    if (!strcmp(name, "--out-prefix")) {
        if (!*v) return bad_value(msg, cap, name, "a path prefix", v);
        o->out_prefix = v;
        return true;
    }
    return set_rsvd_option(o, name, v, msg, cap);
}

/* Which randomized method the options ask for, and that they agree with it. */
static bool check_rsvd_options(svd_opts *o, char *msg, size_t cap)
{
    const char *rs_opt = o->has_oversample ? "--oversample" : o->has_power ? "--power-iters"
                       : o->has_method ? "--method" : o->has_block ? "--block"
                       : o->has_depth ? "--krylov-depth" : NULL;
    if (rs_opt && !o->randomized) {
        snprintf(msg, cap, "%s: needs --randomized", rs_opt);
        return false;
    }
    bool sub_opt = o->has_oversample || o->has_power, kry_opt = o->has_block || o->has_depth;
    const char *sub_name = o->has_oversample ? "--oversample" : "--power-iters";
    const char *kry_name = o->has_block ? "--block" : "--krylov-depth";
    if (!o->has_method && sub_opt) o->rsvd.method = LR_RSVD_SUBSPACE;
    if (sub_opt && kry_opt) {
        snprintf(msg, cap, "%s applies to --method subspace, %s to --method krylov: give one method's options",
                 sub_name, kry_name);
        return false;
    }
    if ((sub_opt && o->rsvd.method != LR_RSVD_SUBSPACE) || (kry_opt && o->rsvd.method != LR_RSVD_BLOCK_KRYLOV)) {
        snprintf(msg, cap, "%s does not apply to --method %s", sub_opt ? sub_name : kry_name,
                 o->rsvd.method == LR_RSVD_SUBSPACE ? "subspace" : "krylov");
        return false;
    }
    return true;
}

/* Checks across options. */
static bool check_args(svd_opts *o, char *msg, size_t cap)
{
    if (o->has_rank && o->has_energy) {
        snprintf(msg, cap, "--rank and --energy: give one or the other, not both");
        return false;
    }
    if (!check_rsvd_options(o, msg, cap)) return false;
    const char *bad = o->path ? NULL : o->has_energy ? "--energy" : o->randomized ? "--randomized"
                                     : o->nranks     ? "--ranks" : NULL;
    if (bad) {
        snprintf(msg, cap, "%s: needs a matrix file (MATRIX.npy)", bad);
        return false;
    }
    return true;
}

int svd_opts_parse(int argc, char **argv, svd_opts *o, char *msg, size_t cap)
{
    memset(o, 0, sizeof *o);
    o->rsvd = lr_rsvd_opts_default();
    o->tol = lr_rank_opts_default();
    o->split = LR_SPLIT_US;
    o->top = 10;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        size_t k = 0, n = sizeof valued_opts / sizeof *valued_opts;
        while (k < n && !lr_cli_match(a, valued_opts[k])) k++;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return SVD_OPTS_HELP;
        if (k < n) {
            if (!lr_cli_value(argc, argv, &i, valued_opts[k], &v, msg, cap) || !set_option(o, valued_opts[k], v, msg, cap))
                return LR_CLI_USAGE;
        } else if (!strcmp(a, "--randomized") || !strcmp(a, "--json")) {
            *(a[2] == 'r' ? &o->randomized : &o->json) = true;
        } else if (a[0] == '-' && a[1] != '\0') {
            snprintf(msg, cap, "unknown option '%s'", a);
            return LR_CLI_USAGE;
        } else if (o->path) {
            snprintf(msg, cap, "one matrix file at a time: got '%s' and '%s'", o->path, a);
            return LR_CLI_USAGE;
        } else {
            o->path = a;
        }
    }
    return check_args(o, msg, cap) ? 0 : LR_CLI_USAGE;
}

