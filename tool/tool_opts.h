/* tool_opts.h — the `lowrank` command lines: the subcommand names, the options every
 * subcommand shares, and one parser per subcommand, apart from what the subcommand does so
 * that the fuzz target tests/fuzz/fuzz_toolcmd.c runs the very code the program runs.
 *
 * A parser reads argv[1..argc) (argv[0] is the subcommand's name) into its struct, defaults
 * first, and checks across options. It returns 0, TOOL_HELP at --help or -h (what follows is
 * not read), or LR_CLI_USAGE with the reason in msg. It never prints, exits or touches a
 * file: the subcommand prints the help or the message (tool_parsed) and then checks that no
 * output is an input (tool_check_out). Strings in the structs point into argv.
 */
#ifndef LR_TOOL_OPTS_H
#define LR_TOOL_OPTS_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "lowrank/lowrank.h"
#include "cli.h"

/* A parser's result besides 0 and LR_CLI_USAGE. */
enum { TOOL_HELP = -1 };

/* The subcommands, in the order of main.c's table; tool_command(name) is one of them or -1. */
enum { TOOL_INSPECT, TOOL_COMPRESS, TOOL_EXTRACT, TOOL_COMBINE, TOOL_MERGE, TOOL_CLEAN, TOOL_RSVD, TOOL_EXPORT, TOOL_NCMD };
extern const char *const tool_command_names[TOOL_NCMD];
int tool_command(const char *name);

/* Room for any message a parser writes for this argv: a quoted argument or two beside a
 * short text, or a value parser's message (those are cut at 511 bytes). */
size_t tool_msg_cap(int argc, char **argv);

/* The options inspect, compress and extract share. */
typedef struct {
    bool json;
    bool has_only, has_skip;
    regex_t only, skip;          /* --only REGEX, --skip REGEX (POSIX extended, unanchored) */
    const char *only_text;       /* --only as given                                        */
    lr_spectrum_opts sp;         /* --method, --svd-rank, --seed                           */
    bool svd_rank_given;         /* --svd-rank was given (else sized for the target)       */
    size_t threads;              /* --threads N: OpenBLAS's threads; 0 = its default      */
    bool progress;               /* --progress: a line per tensor on stderr                */
    json_t *notes;               /* tensors passed over, for --json                        */
    json_t *changed;             /* extract: changed tensors no LoRA layer holds           */
} tool_opts;

void tool_opts_init(tool_opts *o);
void tool_opts_free(tool_opts *o);
/* Consumes a shared option at argv[*i]: 1 consumed, 0 not one of them, -1 bad (msg set). */
int tool_common_option(tool_opts *o, int argc, char **argv, int *i, char *msg, size_t cap);

/* "5GB", "500MB", "2GiB", "1000000": bytes into *out (1 KB = 1000, 1 KiB = 1024, as
 * transformers' max_shard_size); false with msg. */
bool tool_parse_bytes(const char *opt, const char *v, size_t *out, char *msg, size_t cap);

#define TOOL_MAX_IN 64 /* combine's adapters, clean-temps' directories */

/* inspect MODEL [--spectrum FILE.svg] + the shared options */
typedef struct {
    const char *model, *svg;
} tool_inspect_args;
int tool_inspect_parse(int argc, char **argv, tool_opts *o, tool_inspect_args *a, char *msg, size_t cap);

/* compress MODEL (--rank R | --energy E | --error X | --budget F) --out OUT [--budget-of K]
 * [--max-shard-size SIZE] */
typedef struct {
    const char *model, *out;
    lr_plan_opts plan;
    int modes;                   /* how many of --rank, --energy, --error, --budget: 1 */
    bool macs;                   /* --budget-of macs (multiply-adds per input row) */
    size_t max_shard;            /* --max-shard-size BYTES; 0 = the input's layout */
} tool_compress_args;
int tool_compress_parse(int argc, char **argv, tool_opts *o, tool_compress_args *a, char *msg, size_t cap);

/* extract BASE TUNED (--rank R | --energy E | --error X) --out DIR [--dtype D] [--embed] */
typedef struct {
    const char *in[2], *out;
    lr_plan_opts plan;
    int modes;
    lr_st_dtype dtype;
    bool embed;                  /* --embed: changed input embeddings as lora_embedding_A/B */
} tool_extract_args;
int tool_extract_parse(int argc, char **argv, tool_opts *o, tool_extract_args *a, char *msg, size_t cap);

/* combine DIR... [--weights LIST] [--rank R] [--dtype D] --out DIR [--json] */
typedef struct {
    const char *in[TOOL_MAX_IN], *out;
    size_t nin, nw, rank;        /* nw: weights given (0 or nin); rank 0: the exact sum */
    double w[TOOL_MAX_IN];       /* all 1 without --weights */
    lr_st_dtype dtype;
    bool json;
    size_t threads;              /* --threads N: OpenBLAS's; 0 = its default */
} tool_combine_args;
int tool_combine_parse(int argc, char **argv, tool_combine_args *a, char *msg, size_t cap);

/* merge BASE ADAPTER_DIR --out F [--unmerge] [--reference REF] [--json] [--threads N] [--progress]
 * [--max-shard-size SIZE] */
typedef struct {
    const char *base, *adapter, *out, *ref;
    bool unmerge, json, progress;
    size_t threads, max_shard;   /* --threads, --max-shard-size (0: the base's layout) */
} tool_merge_args;
int tool_merge_parse(int argc, char **argv, tool_merge_args *a, char *msg, size_t cap);

/* export ADAPTER_DIR --gguf OUT.gguf [--arch A] [--check BASE.gguf] [--heads N] [--kv-heads N]
 * [--dtype D] [--skip-unsupported] [--json] */
typedef struct {
    const char *adapter, *out, *check, *arch; /* arch NULL: the base's (--check), else llama */
    size_t heads, kv_heads;      /* 0: from --check (llama's q/k permutation) */
    lr_st_dtype dtype;
    bool skip, json;
} tool_export_args;
int tool_export_parse(int argc, char **argv, tool_export_args *a, char *msg, size_t cap);

/* clean-temps DIR... [--older-than S] [--dry-run] [--json] */
typedef struct {
    const char *dirs[TOOL_MAX_IN];
    size_t nd;
    double age;                  /* seconds, default 3600 */
    bool json, dry;
} tool_clean_args;
int tool_clean_parse(int argc, char **argv, tool_clean_args *a, char *msg, size_t cap);

/* rsvd FILE.npy --rank R [--method krylov|subspace] [--oversample P] [--power-iters Q] [--seed N] [--json] */
typedef struct {
    const char *path;
    size_t rank, oversample, power_iters;
    uint64_t seed;
    bool json;
    lr_rsvd_method method;       /* --method, default block Krylov (lr_rsvd's default) */
    size_t threads;              /* --threads N: OpenBLAS's; 0 = its default */
} tool_rsvd_args;
int tool_rsvd_parse(int argc, char **argv, tool_rsvd_args *a, char *msg, size_t cap);

#endif
