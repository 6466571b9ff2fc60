/* fuzz_cmdline.c — the demos' whole command lines: lr-mnist's and lr-svd-demo's option
 * parsers (demos/mnist_opts.c, demos/svd_opts.c: the tables, the value parsers and the
 * checks across options, the code the demos run) on arbitrary argument vectors.
 *
 * Input: NUL-separated strings, the arguments after argv[0] (at most 64; a last string
 * without a NUL counts). Both parsers run on the same vector; lr-mnist's without its
 * filesystem step (its output-directory and same-file checks), so no input touches a file.
 * Besides the sanitizers, the contract is checked and a breach aborts: a parse either fails
 * with a message, stops at --help / -h (which must be among the arguments), or gives options
 * within the ranges the --help texts promise and free of the conflicts they refuse. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "fuzz_argv.h"
#include "../../cli/cli.h"
#include "../../demos/mnist_opts.h"
#include "../../demos/svd_opts.h"
#include "lowrank/base/pool.h"

/* A learning rate or alpha as --help promises it: in (0, 1e6] and positive in float32. */
static bool pos_float(double x) { return isfinite(x) && x > 0 && x <= 1e6 && (float)x > 0.0f; }

static void check_mnist(void)
{
    mnist_opts o;
    char msg[1024];
    memset(&o, 0xA5, sizeof o); /* the parser must set every field it leaves valid */
    msg[0] = '\0';
    int rc = mnist_opts_parse(g_argc, g_argv, &o, false, msg, sizeof msg);
    CHECK(rc == 0 || rc == MNIST_OPTS_HELP || rc == 2);
    if (rc == MNIST_OPTS_HELP) {
        CHECK(has_help());
        return;
    }
    if (rc) {
        CHECK(msg[0] != '\0');
        return;
    }
    /* Data and files: paths are non-empty and come from argv; --save is not --load */
    const char *paths[] = { o.data_dir, o.load, o.save, o.adapter_out, o.plot, o.adapter, o.lora_layers };
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) CHECK(!paths[i] || (paths[i][0] && in_argv(paths[i])));
    CHECK(!(o.save && o.load && !strcmp(o.save, o.load)));
    /* --adapter needs --load and takes no fine-tuning option; --layers conflicts with --load */
    CHECK(!o.adapter || (o.load && !o.train_only));
    CHECK(!(o.load && o.sizes_given));
    /* Pretraining */
    CHECK(o.seed <= INT64_MAX);
    CHECK(o.epochs >= 1 && o.epochs <= 1000);
    CHECK(o.batch >= 1 && o.batch <= 60000);
    CHECK(pos_float(o.lr));
    CHECK(o.n_sizes >= 2 && o.n_sizes <= LR_MLP_MAX_LAYERS + 1);
    CHECK(o.sizes[0] == 784 && o.sizes[o.n_sizes - 1] == 10);
    for (size_t i = 0; i < o.n_sizes; i++) CHECK(o.sizes[i] >= 1 && o.sizes[i] <= 100000);
    CHECK(o.threads >= 0 && o.threads <= LR_POOL_MAX_THREADS); /* 0: the number of CPUs */
    /* LoRA fine-tuning */
    CHECK(o.rank >= 1 && o.rank <= 100000);
    CHECK(pos_float(o.alpha) && pos_float(o.ft_lr));
    CHECK(o.steps >= 1 && o.steps <= 10000000);
    CHECK(o.digit >= -1 && o.digit <= 9);
    if (!o.load) { /* the layers are known: the selection is valid and admits the rank */
        bool sel[LR_MLP_MAX_LAYERS];
        CHECK(mnist_opts_select_layers(o.lora_layers, o.n_sizes - 1, sel, msg, sizeof msg));
        CHECK(mnist_opts_check_rank(o.sizes, o.n_sizes - 1, sel, o.rank, msg, sizeof msg));
    }
    /* Forgetting-aware fine-tuning */
    const preserve_cfg *p = &o.preserve;
    CHECK((p->mask & ~7u) == 0 && !(p->all && p->mask));
    CHECK(isfinite(p->energy) && p->energy > 0 && p->energy <= 1);
    CHECK(isfinite(p->replay_fraction) && p->replay_fraction > 0 && p->replay_fraction <= 0.9);
    CHECK(isfinite(p->distill_weight) && p->distill_weight > 0 && p->distill_weight <= 1e6);
    CHECK(p->samples >= 1 && p->samples <= 60000);
    CHECK(!(o.pissa && (p->all || (p->mask & PRESERVE_NULLSPACE))));
}

static void check_svd(void)
{
    svd_opts o;
    char msg[1024];
    memset(&o, 0xA5, sizeof o);
    msg[0] = '\0';
    int rc = svd_opts_parse(g_argc, g_argv, &o, msg, sizeof msg);
    CHECK(rc == 0 || rc == SVD_OPTS_HELP || rc == LR_CLI_USAGE);
    if (rc == SVD_OPTS_HELP) {
        CHECK(has_help());
        return;
    }
    if (rc) {
        CHECK(msg[0] != '\0');
        return;
    }
    /* MATRIX.npy: one argument that is not an option ("-" is a name) */
    CHECK(in_argv(o.path) && (!o.path || o.path[0] != '-' || o.path[1] == '\0'));
    /* at most one of --rank R >= 1 and --energy E in (0, 1]; --energy, --randomized and
     * --ranks need a matrix */
    CHECK(!(o.has_rank && o.has_energy));
    CHECK(!o.has_rank || o.rank >= 1);
    CHECK(!o.has_energy || (isfinite(o.energy) && o.energy > 0 && o.energy <= 1));
    CHECK(o.path || (!o.has_energy && !o.randomized && o.nranks == 0));
    /* --tol / --rtol T >= 0, one of them */
    CHECK(o.has_tol ? (o.tol.kind == LR_TOL_ABS || o.tol.kind == LR_TOL_REL) && isfinite(o.tol.tol) && o.tol.tol >= 0
                    : o.tol.kind == LR_TOL_DEFAULT);
    /* the randomized method's options need --randomized and belong to one method */
    const lr_rsvd_opts *r = &o.rsvd;
    bool sub = o.has_oversample || o.has_power, kry = o.has_block || o.has_depth;
    CHECK(!(sub || kry || o.has_method) || o.randomized);
    CHECK(!(sub && kry));
    CHECK(r->method == LR_RSVD_BLOCK_KRYLOV || r->method == LR_RSVD_SUBSPACE);
    CHECK(!sub || r->method == LR_RSVD_SUBSPACE);
    CHECK(!kry || r->method == LR_RSVD_BLOCK_KRYLOV);
    CHECK(!o.has_block || (r->block >= 1 && r->block <= 100000));
    CHECK(r->krylov_depth <= 1000 && r->power_iters <= 1000 && r->oversample <= 100000);
    CHECK(o.seed <= INT64_MAX);
    CHECK(o.split == LR_SPLIT_US || o.split == LR_SPLIT_BALANCED);
    /* --ranks LIST: 1..16 ranks >= 1 */
    CHECK(o.nranks <= MAX_RANKS);
    for (size_t i = 0; i < o.nranks; i++) CHECK(o.ranks[i] >= 1);
    CHECK(!o.out_prefix || (o.out_prefix[0] && in_argv(o.out_prefix)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *argv[MAX_ARGS + 2];
    int argc;
    char *buf = fuzz_split_args(data, size, "fuzz_cmdline", argv, &argc);
    if (!buf) return 0;
    g_argc = argc;
    g_argv = argv;
    check_mnist();
    check_svd();
    free(buf);
    return 0;
}
