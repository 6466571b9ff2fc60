/* svd_opts.h — lr-svd-demo's command line: the option table, the value parsers and the checks
 * across options, apart from the program (svd_demo.c) so that the fuzz target
 * tests/fuzz/fuzz_cmdline.c runs the very code the demo runs. Nothing here prints, exits or
 * touches a file: the output paths are checked when the outputs are written. A demo helper,
 * not part of the library.
 */
#ifndef LOWRANK_DEMO_SVD_OPTS_H
#define LOWRANK_DEMO_SVD_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "lowrank/linalg/factor.h"
#include "lowrank/linalg/rank.h"
#include "lowrank/linalg/rsvd.h"

#define SVD_PROG "lr-svd-demo"
#define MAX_RANKS 16

typedef struct {
    const char *path;        /* the .npy matrix; NULL = the seed notebook       */
    bool has_rank, has_energy;
    size_t rank;             /* --rank R                                        */
    double energy;           /* --energy E, in (0, 1]                           */
    bool randomized;         /* --randomized                                    */
    bool has_oversample, has_power, has_method, has_block, has_depth, has_tol;
    lr_rsvd_opts rsvd;       /* --method, --block, --krylov-depth, --oversample, --power-iters */
    uint64_t seed;           /* --seed S (default 0)                            */
    lr_rank_opts tol;        /* --tol T (absolute) / --rtol T (relative)        */
    lr_split split;          /* --split us|balanced                             */
    size_t top;              /* --top N singular values shown (default 10)      */
    size_t ranks[MAX_RANKS]; /* --ranks LIST for the error table                */
    size_t nranks;
    const char *out_prefix;  /* --out-prefix PFX -> PFX_B.npy, PFX_A.npy        */
    bool json;               /* --json                                          */
} svd_opts;

/* svd_opts_parse's results besides 0 (parsed and checked) and LR_CLI_USAGE (2). */
enum { SVD_OPTS_HELP = -1 };

/* The --help text. */
void svd_opts_usage(FILE *f);

/* Parses argv[1..argc) into *o (defaults first) and checks across options. Returns 0,
 * SVD_OPTS_HELP at --help or -h (what follows it is not read), or LR_CLI_USAGE with the
 * reason in msg. o's strings point into argv. */
int svd_opts_parse(int argc, char **argv, svd_opts *o, char *msg, size_t cap);

#endif
