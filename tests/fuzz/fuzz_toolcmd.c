/* fuzz_toolcmd.c — the `lowrank` tool's command lines: the subcommand lookup and the seven
 * subcommands' option parsers (tool/tool_opts.c: the shared options, the value parsers and
 * the checks across options, the code the program runs) on arbitrary argument vectors.
 *
 * Input: NUL-separated strings, the arguments after argv[0] (at most 64; a last string
 * without a NUL counts). The first names the subcommand, as in `lowrank COMMAND ...`; a name
 * that is none of them must be unknown to the lookup too. Besides the sanitizers, the
 * contract is checked and a breach aborts: a parse either fails with a whole message (never
 * cut by the room tool_msg_cap promises), stops at --help / -h (which must be among the
 * arguments), or gives options within the ranges the --help texts promise and free of the
 * conflicts they refuse, every string pointing into argv. The parsers touch no file; they do
 * compile --only / --skip with regcomp, after lr_regex_check (io/regex.h) says it can afford
 * them (the target's findings: tests/fuzz/regressions/toolcmd/). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "fuzz_argv.h"
#include "../../tool/tool_opts.h"

/* A positional argument: a whole argument that is not an option and not empty ("-" is a
 * name; "" is refused as an empty path). */
static bool positional(const char *s)
{
    for (int i = 1; s && i < g_argc; i++)
        if (s == g_argv[i]) return s[0] && !(s[0] == '-' && s[1]);
    return false;
}

/* A path option's value: absent, or a non-empty string in argv. */
static bool path_opt(const char *s)
{
    return !s || (in_argv(s) && s[0]);
}

/* The common part of every check: rc is one of the three results and fits the arguments;
 * true when the parse succeeded and its options are to be checked. */
static bool parsed(int rc, const char *msg, size_t cap)
{
    CHECK(rc == 0 || rc == TOOL_HELP || rc == LR_CLI_USAGE);
    if (rc == TOOL_HELP) CHECK(has_help());
    if (rc == LR_CLI_USAGE) CHECK(msg[0] != '\0' && strlen(msg) + 1 < cap);
    return rc == 0;
}

/* --only, --skip, --method, --svd-rank, --seed, --json */
static void check_shared(const tool_opts *o)
{
    CHECK(o->has_only == (o->only_text != NULL) && in_argv(o->only_text));
    CHECK(o->sp.method == LR_SPECTRUM_AUTO || o->sp.method == LR_SPECTRUM_EXACT ||
          o->sp.method == LR_SPECTRUM_RANDOMIZED);
    CHECK(o->sp.rank >= 1 && o->sp.rank <= (size_t)1 << 20);
    CHECK(o->sp.seed <= INT64_MAX);
    CHECK(o->json == true || o->json == false);
}

/* --rank R >= 1 (at most 2^40), --energy E in (0, 1], --error X in [0, 1), --budget F in (0, 1] */
static bool plan_ok(const lr_plan_opts *p)
{
    switch (p->kind) {
    case LR_PLAN_RANK: return p->rank >= 1 && p->rank <= (size_t)1 << 40;
    case LR_PLAN_ENERGY: return isfinite(p->energy) && p->energy > 0 && p->energy <= 1;
    case LR_PLAN_ERROR: return isfinite(p->error) && p->error >= 0 && p->error < 1;
    case LR_PLAN_BUDGET: return isfinite(p->budget) && p->budget > 0 && p->budget <= 1;
    }
    return false;
}

static bool dtype_ok(lr_st_dtype d)
{
    return d == LR_ST_F32 || d == LR_ST_F16 || d == LR_ST_BF16;
}

/* inspect MODEL [--spectrum FILE.svg], compress, extract: the shared options */
static void check_inspect(char *msg, size_t cap)
{
    tool_opts o;
    tool_inspect_args a;
    tool_opts_init(&o);
    memset(&a, 0xA5, sizeof a); /* the parser must set every field it leaves valid */
    if (parsed(tool_inspect_parse(g_argc, g_argv, &o, &a, msg, cap), msg, cap)) {
        check_shared(&o);
        CHECK(positional(a.model) && path_opt(a.svg));
    }
    tool_opts_free(&o);
}

/* exactly one of --rank, --energy, --error, --budget; --out; --budget-of params|macs (flops: the old name) */
static void check_compress(char *msg, size_t cap)
{
    tool_opts o;
    tool_compress_args a;
    tool_opts_init(&o);
    memset(&a, 0xA5, sizeof a);
    if (parsed(tool_compress_parse(g_argc, g_argv, &o, &a, msg, cap), msg, cap)) {
        check_shared(&o);
        CHECK(positional(a.model) && a.out && path_opt(a.out));
        CHECK(a.modes == 1 && plan_ok(&a.plan));
        CHECK(a.macs == true || a.macs == false);
    }
    tool_opts_free(&o);
}

/* BASE TUNED, exactly one of --rank, --energy, --error (no --budget), --dtype, --out */
static void check_extract(char *msg, size_t cap)
{
    tool_opts o;
    tool_extract_args a;
    tool_opts_init(&o);
    memset(&a, 0xA5, sizeof a);
    if (parsed(tool_extract_parse(g_argc, g_argv, &o, &a, msg, cap), msg, cap)) {
        check_shared(&o);
        CHECK(positional(a.in[0]) && positional(a.in[1]) && a.in[0] != a.in[1]);
        CHECK(a.out && path_opt(a.out));
        CHECK(a.modes == 1 && a.plan.kind != LR_PLAN_BUDGET && plan_ok(&a.plan));
        CHECK(dtype_ok(a.dtype));
    }
    tool_opts_free(&o);
}

/* 1..64 adapters, a weight each (default 1) in [-1e30, 1e30], --rank R >= 1 or the exact sum */
static void check_combine(char *msg, size_t cap)
{
    tool_combine_args a;
    memset(&a, 0xA5, sizeof a);
    if (!parsed(tool_combine_parse(g_argc, g_argv, &a, msg, cap), msg, cap)) return;
    CHECK(a.nin >= 1 && a.nin <= TOOL_MAX_IN && (a.nw == 0 || a.nw == a.nin));
    for (size_t i = 0; i < a.nin; i++) {
        CHECK(positional(a.in[i]));
        CHECK(a.nw ? isfinite(a.w[i]) && fabs(a.w[i]) <= 1e30 : a.w[i] == 1);
    }
    CHECK(a.rank <= (size_t)1 << 40 && dtype_ok(a.dtype));
    CHECK(a.out && path_opt(a.out) && (a.json == true || a.json == false));
}

/* BASE ADAPTER_DIR --out F [--reference REF] [--unmerge] [--json] */
static void check_merge(char *msg, size_t cap)
{
    tool_merge_args a;
    memset(&a, 0xA5, sizeof a);
    if (!parsed(tool_merge_parse(g_argc, g_argv, &a, msg, cap), msg, cap)) return;
    CHECK(positional(a.base) && positional(a.adapter) && a.base != a.adapter);
    CHECK(a.out && path_opt(a.out) && path_opt(a.ref));
    CHECK((a.unmerge == true || a.unmerge == false) && (a.json == true || a.json == false));
}

/* 1..64 directories, --older-than S in [0, 1e12] (default 3600) */
static void check_clean(char *msg, size_t cap)
{
    tool_clean_args a;
    memset(&a, 0xA5, sizeof a);
    if (!parsed(tool_clean_parse(g_argc, g_argv, &a, msg, cap), msg, cap)) return;
    CHECK(a.nd >= 1 && a.nd <= TOOL_MAX_IN);
    for (size_t i = 0; i < a.nd; i++) CHECK(positional(a.dirs[i]));
    CHECK(isfinite(a.age) && a.age >= 0 && a.age <= 1e12);
    CHECK((a.dry == true || a.dry == false) && (a.json == true || a.json == false));
}

/* FILE.npy, --rank R in 1..2^30 (required), --oversample P <= 2^30, --power-iters 0..1000 */
static void check_rsvd(char *msg, size_t cap)
{
    tool_rsvd_args a;
    memset(&a, 0xA5, sizeof a);
    if (!parsed(tool_rsvd_parse(g_argc, g_argv, &a, msg, cap), msg, cap)) return;
    CHECK(positional(a.path));
    CHECK(a.rank >= 1 && a.rank <= (size_t)1 << 30 && a.oversample <= (size_t)1 << 30 && a.power_iters <= 1000);
    CHECK(a.seed <= INT64_MAX && (a.json == true || a.json == false));
    CHECK(a.method == LR_RSVD_BLOCK_KRYLOV || a.method == LR_RSVD_SUBSPACE);
}

/* ADAPTER_DIR --gguf OUT [--arch llama|qwen2] [--check BASE] [--heads N [--kv-heads N]] [--dtype D] */
static void check_export(char *msg, size_t cap)
{
    tool_export_args a;
    memset(&a, 0xA5, sizeof a);
    if (!parsed(tool_export_parse(g_argc, g_argv, &a, msg, cap), msg, cap)) return;
    CHECK(positional(a.adapter) && a.out && path_opt(a.out) && path_opt(a.check));
    CHECK(!a.arch || (in_argv(a.arch) && (!strcmp(a.arch, "llama") || !strcmp(a.arch, "qwen2"))));
    CHECK(a.heads <= (size_t)1 << 20 && a.kv_heads <= (size_t)1 << 20 && (!a.kv_heads || a.heads));
    CHECK(dtype_ok(a.dtype) && (a.skip == true || a.skip == false) && (a.json == true || a.json == false));
}

static void run(void)
{
    static void (*const check[TOOL_NCMD])(char *, size_t) = {
        check_inspect, check_compress, check_extract, check_combine, check_merge, check_clean, check_rsvd,
        check_export,
    };
    static const char *const names[TOOL_NCMD] = {
        "inspect", "compress", "extract", "combine", "merge", "clean-temps", "rsvd", "export",
    };
    int k = tool_command(g_argv[0]);
    CHECK(k >= -1 && k < TOOL_NCMD);
    for (int j = 0; j < TOOL_NCMD; j++) CHECK((j == k) == !strcmp(g_argv[0], names[j]));
    if (k < 0) return;
    /* the message buffer on the heap, exactly as large as promised, so ASan sees a write past it */
    size_t cap = tool_msg_cap(g_argc, g_argv);
    char *msg = malloc(cap);
    if (!msg) return;
    msg[0] = '\0';
    check[k](msg, cap);
    free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *argv[MAX_ARGS + 2];
    int argc;
    char *buf = fuzz_split_args(data, size, "lowrank", argv, &argc);
    if (!buf) return 0;
    if (argc >= 2) { /* `lowrank` alone is main.c's usage, no parser's */
        g_argc = argc - 1;
        g_argv = argv + 1;
        run();
    }
    free(buf);
    return 0;
}
