/* mnist_opts.h — lr-mnist's command line: the option table, the value parsers and the checks
 * across options, apart from the program (mnist_lora.c) so that the fuzz target
 * tests/fuzz/fuzz_cmdline.c runs the very code the demo runs. Nothing here prints or exits:
 * a refusal is a message ("--rank: expected a positive integer, got 'abc'") that the program
 * shows before exiting with status 2. A demo helper, not part of the library.
 */
#ifndef LOWRANK_DEMO_MNIST_OPTS_H
#define LOWRANK_DEMO_MNIST_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "lowrank/nn/mlp.h"
#include "preserve_demo.h"

#define MNIST_PROG "lr-mnist"

typedef struct {
    const char *data_dir;       /* NULL: data/mnist relative to the current directory */
    const char *load, *save, *adapter_out, *plot;
    const char *adapter;        /* --adapter DIR: evaluate a saved adapter, no training */
    const char *train_only;     /* the first fine-tuning option given (conflicts with --adapter) */
    uint64_t seed;
    size_t epochs, batch;
    size_t limit_train;         /* 0: all training images; else the first N */
    size_t limit_test;          /* 0: all test images; else the first N */
    double lr;                  /* kept in double so --json shows what was typed */
    size_t sizes[LR_MLP_MAX_LAYERS + 1];
    size_t n_sizes;
    bool sizes_given;
    int threads;                /* 0: number of online CPUs */
    size_t rank;
    double alpha;
    bool rslora;
    bool pissa;
    const char *lora_layers;    /* NULL: every layer */
    size_t steps;
    double ft_lr;
    int digit;                  /* 0..9, or -1 for "worst" */
    bool json, quiet;
    bool keep_subnormals;       /* LR_FP_IEEE instead of the default flush-to-zero */
    bool dist_sum_mpi;          /* --dist-sum mpi: MPI_Allreduce instead of the rank-ordered sum */
    size_t shards;              /* --shards N: one process computing N processes' slices; 0: fused */
    preserve_cfg preserve;      /* --preserve and its settings */
} mnist_opts;

/* mnist_opts_parse's results besides 0 (parsed and checked) and 2 (a usage error). */
enum { MNIST_OPTS_HELP = -1 };

/* The --help text. */
void mnist_opts_usage(FILE *f);

/* Parses argv[1..argc) into *o (defaults first), then checks across options. With check_files
 * it also looks at the filesystem: an output's directory must exist (and be one, or not be
 * one), and --save must not be --load's file (device and inode); without, only what the
 * strings themselves show (an empty path, --save spelled as --load) is checked. Returns 0,
 * MNIST_OPTS_HELP at --help or -h (what follows it is not read), or 2 with the reason in
 * msg. o's strings point into argv. */
int mnist_opts_parse(int argc, char **argv, mnist_opts *o, bool check_files, char *msg, size_t cap);

/* Layers selected by --lora-layers (spec; NULL = all) of a net of n layers into sel[0..n):
 * lr_lora_parse_targets' "all", 1-based numbers and "linearK" names. False with msg. */
bool mnist_opts_select_layers(const char *spec, size_t n, bool *sel, char *msg, size_t cap);

/* Every selected layer of sizes[0..n_layers] must admit the rank: r <= min(in, out). False
 * with msg. */
bool mnist_opts_check_rank(const size_t *sizes, size_t n_layers, const bool *sel, size_t rank, char *msg,
                           size_t cap);

#endif
