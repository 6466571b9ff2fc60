/* tool_opts.c — the `lowrank` command lines (tool_opts.h). Moved here from the subcommands'
 * files unchanged in what they accept and say, so the program and the fuzz target
 * tests/fuzz/fuzz_toolcmd.c share them. */
#include "tool_opts.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const tool_command_names[TOOL_NCMD] = {
    "inspect", "compress", "extract", "combine", "merge", "clean-temps", "rsvd", "export",
};

int tool_command(const char *name)
{
    for (int k = 0; k < TOOL_NCMD; k++)
        if (!strcmp(name, tool_command_names[k])) return k;
    return -1;
}

size_t tool_msg_cap(int argc, char **argv)
{
    size_t n = 512;
    for (int i = 1; i < argc; i++) n += strlen(argv[i]);
    return n;
}

void tool_opts_init(tool_opts *o)
{
    memset(o, 0, sizeof *o);
    o->sp = lr_spectrum_opts_default();
    o->notes = json_array();
    o->changed = json_array();
}

void tool_opts_free(tool_opts *o)
{
    if (o->has_only) regfree(&o->only);
    if (o->has_skip) regfree(&o->skip);
    json_decref(o->notes);
    json_decref(o->changed);
    memset(o, 0, sizeof *o);
}

/* --only and --skip go to glibc's regcomp only when it can afford them (lr_regex_check,
 * io/regex.h: stacked or nested repetitions would take it gigabytes, deep nesting its stack;
 * found by the toolcmd fuzz target). */
static int regex_option(regex_t *rx, bool *has, const char *opt, const char *val, char *msg, size_t cap)
{
    lr_err e = { "" };
    if (*has) regfree(rx);
    *has = false;
    if (lr_regex_check(val, &e)) {
        snprintf(msg, cap, "%s: %s", opt, e.msg);
        return -1;
    }
    int rc = regcomp(rx, val, REG_EXTENDED | REG_NOSUB);
    *has = rc == 0;
    if (rc) {
        char why[128];
        regerror(rc, rx, why, sizeof why);
        snprintf(msg, cap, "%s: '%s' is not a valid regular expression: %s", opt, val, why);
        return -1;
    }
    return 1;
}

int tool_common_option(tool_opts *o, int argc, char **argv, int *i, char *msg, size_t cap)
{
    const char *v, *a = argv[*i];
    if (!strcmp(a, "--json")) return o->json = true, 1;
    if (!strcmp(a, "--progress")) return o->progress = true, 1;
    static const char *const with_value[] = { "--only", "--skip", "--method", "--svd-rank", "--seed", "--threads" };
    for (size_t k = 0; k < 6; k++) {
        if (!lr_cli_match(a, with_value[k])) continue;
        if (!lr_cli_value(argc, argv, i, with_value[k], &v, msg, cap)) return -1;
        switch (k) {
        case 0: o->only_text = v; return regex_option(&o->only, &o->has_only, "--only", v, msg, cap);
        case 1: return regex_option(&o->skip, &o->has_skip, "--skip", v, msg, cap);
        case 2:
            if (lr_spectrum_parse_method(&o->sp.method, v, NULL)) {
                snprintf(msg, cap, "--method: expected auto, exact or randomized, got '%s'", v);
                return -1;
            }
            return 1;
        case 3:
            o->svd_rank_given = true;
            return lr_cli_parse_size("--svd-rank", v, 1, 1 << 20, &o->sp.rank, msg, cap) ? 1 : -1;
        case 4: return lr_cli_parse_seed("--seed", v, &o->sp.seed, msg, cap) ? 1 : -1;
        default: return lr_cli_parse_size("--threads", v, 1, 1024, &o->threads, msg, cap) ? 1 : -1;
        }
    }
    return 0;
}

static bool is_help(const char *s)
{
    return !strcmp(s, "--help") || !strcmp(s, "-h");
}

/* A usage error: the reason in msg; LR_CLI_USAGE. */
static int usage(char *msg, size_t cap, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static int usage(char *msg, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return LR_CLI_USAGE;
}

/* --help / -h (TOOL_HELP), a shared option at argv[*i] (1 consumed, 0 not one of them) or a
 * bad one (LR_CLI_USAGE). Its message is cut at 511 bytes, as the value parsers' are. */
static int shared(tool_opts *o, int argc, char **argv, int *i, char *msg, size_t cap)
{
    char m[512];
    if (is_help(argv[*i])) return TOOL_HELP;
    int c = tool_common_option(o, argc, argv, i, m, sizeof m);
    return c < 0 ? usage(msg, cap, "%s", m) : c;
}

bool tool_parse_bytes(const char *opt, const char *v, size_t *out, char *msg, size_t cap)
{
    static const struct { const char *u; double f; } units[] = {
        { "", 1 }, { "B", 1 }, { "KB", 1e3 }, { "MB", 1e6 }, { "GB", 1e9 }, { "TB", 1e12 },
        { "KiB", 1024.0 }, { "MiB", 1048576.0 }, { "GiB", 1073741824.0 }, { "TiB", 1099511627776.0 },
    };
    char *end = NULL;
    double x = v && *v ? strtod(v, &end) : -1;
    for (size_t k = 0; end && k < sizeof units / sizeof *units; k++)
        if (!strcmp(end, units[k].u) && x * units[k].f >= 1 && x * units[k].f <= 1e18) {
            *out = (size_t)(x * units[k].f);
            return true;
        }
    snprintf(msg, cap, "%s: expected a size such as 5GB, 500MB, 2GiB or a byte count, got '%s'", opt, v ? v : "");
    return false;
}

/* --dtype D of the outputs: F32, F16 or BF16. */
static int dtype_option(lr_st_dtype *dtype, const char *v, char *msg, size_t cap)
{
    if (lr_st_dtype_parse(dtype, v, NULL) || (*dtype != LR_ST_F32 && *dtype != LR_ST_F16 && *dtype != LR_ST_BF16))
        return usage(msg, cap, "--dtype: expected F32, F16 or BF16, got '%s'", v);
    return 0;
}

int tool_inspect_parse(int argc, char **argv, tool_opts *o, tool_inspect_args *a, char *msg, size_t cap)
{
    char m[512];
    *a = (tool_inspect_args){ NULL, NULL };
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int c = shared(o, argc, argv, &i, msg, cap);
        if (c == TOOL_HELP || c == LR_CLI_USAGE) return c;
        if (c) continue;
        if (lr_cli_match(s, "--spectrum")) {
            if (!lr_cli_path(argc, argv, &i, "--spectrum", &a->svg, m, sizeof m)) return usage(msg, cap, "%s", m);
        } else if (s[0] == '-' && s[1]) {
            return usage(msg, cap, "unknown option '%s'", s);
        } else if (!*s) {
            return usage(msg, cap, "an empty path among the arguments");
        } else if (!a->model) {
            a->model = s;
        } else {
            return usage(msg, cap, "one MODEL expected, got '%s' and '%s'", a->model, s);
        }
    }
    return a->model ? 0 : usage(msg, cap, "missing MODEL.safetensors");
}

/* compress's --rank, --energy, --error or --budget (opt) with its value v; false with msg. */
static bool compress_mode(tool_compress_args *a, const char *opt, const char *v, char *msg, size_t cap)
{
    a->modes++;
    if (!strcmp(opt, "--rank")) {
        a->plan.kind = LR_PLAN_RANK;
        return lr_cli_parse_size(opt, v, 1, (size_t)1 << 40, &a->plan.rank, msg, cap);
    }
    if (!strcmp(opt, "--energy")) {
        a->plan.kind = LR_PLAN_ENERGY;
        return lr_cli_parse_double(opt, v, 0, true, 1, false, &a->plan.energy, msg, cap);
    }
    if (!strcmp(opt, "--error")) {
        a->plan.kind = LR_PLAN_ERROR;
        return lr_cli_parse_double(opt, v, 0, false, 1, true, &a->plan.error, msg, cap);
    }
    a->plan.kind = LR_PLAN_BUDGET;
    return lr_cli_parse_double(opt, v, 0, true, 1, false, &a->plan.budget, msg, cap);
}

int tool_compress_parse(int argc, char **argv, tool_opts *o, tool_compress_args *a, char *msg, size_t cap)
{
    char m[512];
    static const char *const modes[] = { "--rank", "--energy", "--error", "--budget" };
    *a = (tool_compress_args){ .plan = lr_plan_opts_default() };
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v;
        int c = shared(o, argc, argv, &i, msg, cap), k = 0;
        if (c == TOOL_HELP || c == LR_CLI_USAGE) return c;
        if (c) continue;
        while (k < 4 && !lr_cli_match(s, modes[k])) k++;
        if (k < 4) {
            if (!lr_cli_value(argc, argv, &i, modes[k], &v, m, sizeof m) || !compress_mode(a, modes[k], v, m, sizeof m))
                return usage(msg, cap, "%s", m);
        } else if (lr_cli_match(s, "--out")) {
            if (!lr_cli_path(argc, argv, &i, "--out", &a->out, m, sizeof m)) return usage(msg, cap, "%s", m);
        } else if (lr_cli_match(s, "--max-shard-size")) {
            if (!lr_cli_value(argc, argv, &i, "--max-shard-size", &v, m, sizeof m) ||
                !tool_parse_bytes("--max-shard-size", v, &a->max_shard, m, sizeof m))
                return usage(msg, cap, "%s", m);
        } else if (lr_cli_match(s, "--budget-of")) {
            if (!lr_cli_value(argc, argv, &i, "--budget-of", &v, m, sizeof m)) return usage(msg, cap, "%s", m);
            if (strcmp(v, "params") && strcmp(v, "macs") && strcmp(v, "flops"))
                return usage(msg, cap, "--budget-of: expected params or macs, got '%s'", v);
            a->macs = strcmp(v, "params") != 0; /* "flops": the old name of the same count */
        } else if (s[0] == '-' && s[1]) {
            return usage(msg, cap, "unknown option '%s'", s);
        } else if (!*s) {
            return usage(msg, cap, "an empty path among the arguments");
        } else if (!a->model) {
            a->model = s;
        } else {
            return usage(msg, cap, "one MODEL expected, got '%s' and '%s'", a->model, s);
        }
    }
    if (!a->model) return usage(msg, cap, "missing MODEL.safetensors");
    if (a->modes != 1)
        return usage(msg, cap, "give exactly one of --rank, --energy, --error, --budget (got %d)", a->modes);
    return a->out ? 0 : usage(msg, cap, "missing --out OUT.safetensors");
}

/* extract's --rank, --energy or --error (modes[k]) with its value v; false with msg. */
static bool extract_mode(tool_extract_args *a, int k, const char *opt, const char *v, char *msg, size_t cap)
{
    a->plan.kind = (lr_plan_kind)k;
    return k == 0 ? lr_cli_parse_size(opt, v, 1, (size_t)1 << 40, &a->plan.rank, msg, cap)
         : k == 1 ? lr_cli_parse_double(opt, v, 0, true, 1, false, &a->plan.energy, msg, cap)
                  : lr_cli_parse_double(opt, v, 0, false, 1, true, &a->plan.error, msg, cap);
}

int tool_extract_parse(int argc, char **argv, tool_opts *o, tool_extract_args *a, char *msg, size_t cap)
{
    char m[512];
    size_t nin = 0;
    static const char *const modes[] = { "--rank", "--energy", "--error" };
    *a = (tool_extract_args){ .plan = lr_plan_opts_default(), .dtype = LR_ST_F32 };
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v;
        int c = shared(o, argc, argv, &i, msg, cap), k = 0;
        if (c == TOOL_HELP || c == LR_CLI_USAGE) return c;
        if (c) continue;
        while (k < 3 && !lr_cli_match(s, modes[k])) k++;
        if (k < 3) {
            a->modes++;
            if (!lr_cli_value(argc, argv, &i, modes[k], &v, m, sizeof m) || !extract_mode(a, k, modes[k], v, m, sizeof m))
                return usage(msg, cap, "%s", m);
        } else if (lr_cli_match(s, "--out")) {
            if (!lr_cli_path(argc, argv, &i, "--out", &a->out, m, sizeof m)) return usage(msg, cap, "%s", m);
        } else if (lr_cli_match(s, "--dtype")) {
            if (!lr_cli_value(argc, argv, &i, "--dtype", &v, m, sizeof m)) return usage(msg, cap, "%s", m);
            if (dtype_option(&a->dtype, v, msg, cap)) return LR_CLI_USAGE;
        } else if (!strcmp(s, "--embed")) {
            a->embed = true;
        } else if (s[0] == '-' && s[1]) {
            return usage(msg, cap, "unknown option '%s'", s);
        } else if (!*s) {
            return usage(msg, cap, "an empty path among the arguments");
        } else if (nin < 2) {
            a->in[nin++] = s;
        } else {
            return usage(msg, cap, "two files expected (BASE TUNED), got a third: '%s'", s);
        }
    }
    if (nin < 2) return usage(msg, cap, "expected BASE.safetensors TUNED.safetensors");
    if (a->modes != 1) return usage(msg, cap, "give exactly one of --rank, --energy, --error (got %d)", a->modes);
    return a->out ? 0 : usage(msg, cap, "missing --out ADAPTER_DIR");
}

/* combine's --weights LIST: one number in [-1e30, 1e30] per adapter; false with msg. */
static bool combine_weights(tool_combine_args *a, const char *v, char *msg, size_t cap)
{
    char *copy = malloc(strlen(v) + 1), *save = NULL;
    if (!copy) return snprintf(msg, cap, "out of memory"), false;
    strcpy(copy, v);
    a->nw = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (a->nw == TOOL_MAX_IN ||
            !lr_cli_parse_double("--weights", t, -1e30, false, 1e30, false, &a->w[a->nw++], msg, cap)) {
            if (a->nw == TOOL_MAX_IN) snprintf(msg, cap, "--weights: more than %d values", TOOL_MAX_IN);
            free(copy);
            return false;
        }
    }
    free(copy);
    if (a->nw == 0) return snprintf(msg, cap, "--weights: expected numbers, got '%s'", v), false;
    return true;
}

int tool_combine_parse(int argc, char **argv, tool_combine_args *a, char *msg, size_t cap)
{
    char m[512];
    *a = (tool_combine_args){ .dtype = LR_ST_F32 };
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v;
        if (is_help(s)) return TOOL_HELP;
        if (!strcmp(s, "--json")) {
            a->json = true;
        } else if (lr_cli_match(s, "--threads")) {
            if (!lr_cli_value(argc, argv, &i, "--threads", &v, m, sizeof m) ||
                !lr_cli_parse_size("--threads", v, 1, 1024, &a->threads, m, sizeof m))
                return usage(msg, cap, "%s", m);
        } else if (lr_cli_match(s, "--weights")) {
            if (!lr_cli_value(argc, argv, &i, "--weights", &v, m, sizeof m) || !combine_weights(a, v, m, sizeof m))
                return usage(msg, cap, "%s", m);
        } else if (lr_cli_match(s, "--rank")) {
            if (!lr_cli_value(argc, argv, &i, "--rank", &v, m, sizeof m) ||
                !lr_cli_parse_size("--rank", v, 1, (size_t)1 << 40, &a->rank, m, sizeof m))
                return usage(msg, cap, "%s", m);
        } else if (lr_cli_match(s, "--out")) {
            if (!lr_cli_path(argc, argv, &i, "--out", &a->out, m, sizeof m)) return usage(msg, cap, "%s", m);
        } else if (lr_cli_match(s, "--dtype")) {
            if (!lr_cli_value(argc, argv, &i, "--dtype", &v, m, sizeof m)) return usage(msg, cap, "%s", m);
            if (dtype_option(&a->dtype, v, msg, cap)) return LR_CLI_USAGE;
        } else if (s[0] == '-' && s[1]) {
            return usage(msg, cap, "unknown option '%s'", s);
        } else if (!*s) {
            return usage(msg, cap, "an empty path among the arguments");
        } else if (a->nin == TOOL_MAX_IN) {
            return usage(msg, cap, "at most %d adapters", TOOL_MAX_IN);
        } else {
            a->in[a->nin++] = s;
        }
    }
    if (a->nin == 0) return usage(msg, cap, "expected one or more ADAPTER_DIRs");
    if (a->nw && a->nw != a->nin) return usage(msg, cap, "--weights has %zu values for %zu adapters", a->nw, a->nin);
    for (size_t i = 0; !a->nw && i < a->nin; i++) a->w[i] = 1;
    return a->out ? 0 : usage(msg, cap, "missing --out ADAPTER_DIR");
}

int tool_merge_parse(int argc, char **argv, tool_merge_args *a, char *msg, size_t cap)
{
    char m[512];
    size_t npos = 0;
    *a = (tool_merge_args){ 0 };
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v;
        if (is_help(s)) return TOOL_HELP;
        if (!strcmp(s, "--json")) a->json = true;
        else if (!strcmp(s, "--unmerge")) a->unmerge = true;
        else if (!strcmp(s, "--progress")) a->progress = true;
        else if (lr_cli_match(s, "--threads")) {
            if (!lr_cli_value(argc, argv, &i, "--threads", &v, m, sizeof m) ||
                !lr_cli_parse_size("--threads", v, 1, 1024, &a->threads, m, sizeof m))
                return usage(msg, cap, "%s", m);
        } else if (lr_cli_match(s, "--max-shard-size")) {
            if (!lr_cli_value(argc, argv, &i, "--max-shard-size", &v, m, sizeof m) ||
                !tool_parse_bytes("--max-shard-size", v, &a->max_shard, m, sizeof m))
                return usage(msg, cap, "%s", m);
        } else if (lr_cli_match(s, "--out")) {
            if (!lr_cli_path(argc, argv, &i, "--out", &a->out, m, sizeof m)) return usage(msg, cap, "%s", m);
        } else if (lr_cli_match(s, "--reference")) {
            if (!lr_cli_path(argc, argv, &i, "--reference", &a->ref, m, sizeof m)) return usage(msg, cap, "%s", m);
        } else if (s[0] == '-' && s[1]) {
            return usage(msg, cap, "unknown option '%s'", s);
        } else if (!*s) {
            return usage(msg, cap, "an empty path among the arguments");
        } else if (npos == 0) {
            a->base = s, npos++;
        } else if (npos == 1) {
            a->adapter = s, npos++;
        } else {
            return usage(msg, cap, "two arguments expected (BASE ADAPTER_DIR), got a third: '%s'", s);
        }
    }
    if (npos < 2) return usage(msg, cap, "expected BASE.safetensors ADAPTER_DIR");
    return a->out ? 0 : usage(msg, cap, "missing --out MERGED.safetensors");
}

/* A value of --arch: one of the architectures gguf_lora.h has a table for. */
static int arch_option(const char **arch, const char *v, char *msg, size_t cap)
{
    char n[8];
    if (lr_gguf_lora_name(n, sizeof n, v, "lm_head", NULL) == LR_EINVAL)
        return usage(msg, cap, "--arch: expected llama or qwen2, got '%s'", v);
    *arch = v;
    return 0;
}

int tool_export_parse(int argc, char **argv, tool_export_args *a, char *msg, size_t cap)
{
    char m[512];
    const char *v;
    size_t npos = 0;
    *a = (tool_export_args){ .dtype = LR_ST_F32 };
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (is_help(s)) return TOOL_HELP;
        if (!strcmp(s, "--json")) a->json = true;
        else if (!strcmp(s, "--skip-unsupported")) a->skip = true;
        else if (lr_cli_match(s, "--gguf")) {
            if (!lr_cli_path(argc, argv, &i, "--gguf", &a->out, m, sizeof m)) return usage(msg, cap, "%s", m);
        } else if (lr_cli_match(s, "--check")) {
            if (!lr_cli_path(argc, argv, &i, "--check", &a->check, m, sizeof m)) return usage(msg, cap, "%s", m);
        } else if (lr_cli_match(s, "--arch")) {
            if (!lr_cli_value(argc, argv, &i, "--arch", &v, m, sizeof m)) return usage(msg, cap, "%s", m);
            if (arch_option(&a->arch, v, msg, cap)) return LR_CLI_USAGE;
        } else if (lr_cli_match(s, "--heads") || lr_cli_match(s, "--kv-heads")) {
            bool kv = lr_cli_match(s, "--kv-heads");
            const char *opt = kv ? "--kv-heads" : "--heads";
            if (!lr_cli_value(argc, argv, &i, opt, &v, m, sizeof m) ||
                !lr_cli_parse_size(opt, v, 1, 1 << 20, kv ? &a->kv_heads : &a->heads, m, sizeof m))
                return usage(msg, cap, "%s", m);
        } else if (lr_cli_match(s, "--dtype")) {
            if (!lr_cli_value(argc, argv, &i, "--dtype", &v, m, sizeof m)) return usage(msg, cap, "%s", m);
            if (dtype_option(&a->dtype, v, msg, cap)) return LR_CLI_USAGE;
        } else if (s[0] == '-' && s[1]) {
            return usage(msg, cap, "unknown option '%s'", s);
        } else if (!*s) {
            return usage(msg, cap, "an empty path among the arguments");
        } else if (npos++ == 0) {
            a->adapter = s;
        } else {
            return usage(msg, cap, "one ADAPTER_DIR expected, got a second: '%s'", s);
        }
    }
    if (!npos) return usage(msg, cap, "expected ADAPTER_DIR");
    if (a->kv_heads && !a->heads) return usage(msg, cap, "--kv-heads needs --heads");
    return a->out ? 0 : usage(msg, cap, "missing --gguf OUT.gguf");
}

int tool_clean_parse(int argc, char **argv, tool_clean_args *a, char *msg, size_t cap)
{
    char m[512];
    const char *v;
    *a = (tool_clean_args){ .age = 3600 };
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (is_help(s)) return TOOL_HELP;
        if (!strcmp(s, "--json")) a->json = true;
        else if (!strcmp(s, "--dry-run")) a->dry = true;
        else if (lr_cli_match(s, "--older-than")) {
            if (!lr_cli_value(argc, argv, &i, "--older-than", &v, m, sizeof m) ||
                !lr_cli_parse_double("--older-than", v, 0, false, 1e12, false, &a->age, m, sizeof m))
                return usage(msg, cap, "%s", m);
        } else if (s[0] == '-' && s[1]) return usage(msg, cap, "unknown option '%s'", s);
        else if (!*s) return usage(msg, cap, "an empty path among the arguments");
        else if (a->nd == TOOL_MAX_IN) return usage(msg, cap, "at most %d directories", TOOL_MAX_IN);
        else a->dirs[a->nd++] = s;
    }
    return a->nd ? 0 : usage(msg, cap, "expected one or more directories");
}

/* rsvd's valued option s (with its value v, at most 1000 power iterations); false with msg */
static bool rsvd_option(tool_rsvd_args *a, const char *s, const char *v, char *msg, size_t cap)
{
    if (!strcmp(s, "--method")) {
        if (!strcmp(v, "krylov")) a->method = LR_RSVD_BLOCK_KRYLOV;
        else if (!strcmp(v, "subspace")) a->method = LR_RSVD_SUBSPACE;
        else return snprintf(msg, cap, "--method: expected krylov or subspace, got '%s'", v), false;
        return true;
    }
    if (!strcmp(s, "--rank")) return lr_cli_parse_size(s, v, 1, (size_t)1 << 30, &a->rank, msg, cap);
    if (!strcmp(s, "--oversample")) return lr_cli_parse_size(s, v, 0, (size_t)1 << 30, &a->oversample, msg, cap);
    if (!strcmp(s, "--power-iters")) return lr_cli_parse_size(s, v, 0, 1000, &a->power_iters, msg, cap);
    return lr_cli_parse_seed(s, v, &a->seed, msg, cap);
}

int tool_rsvd_parse(int argc, char **argv, tool_rsvd_args *a, char *msg, size_t cap)
{
    char m[512];
    const char *v;
    static const char *const valued[] = { "--rank", "--oversample", "--power-iters", "--seed", "--method" };
    bool has_rank = false;
    *a = (tool_rsvd_args){ NULL, 0, 10, 4, 0, false, LR_RSVD_BLOCK_KRYLOV, 0 };
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int k = 0;
        if (is_help(s)) return TOOL_HELP;
        while (k < 5 && !lr_cli_match(s, valued[k])) k++;
        if (!strcmp(s, "--json")) a->json = true;
        else if (lr_cli_match(s, "--threads")) {
            if (!lr_cli_value(argc, argv, &i, "--threads", &v, m, sizeof m) ||
                !lr_cli_parse_size("--threads", v, 1, 1024, &a->threads, m, sizeof m))
                return usage(msg, cap, "%s", m);
        } else if (k < 5) {
            if (!lr_cli_value(argc, argv, &i, valued[k], &v, m, sizeof m) || !rsvd_option(a, valued[k], v, m, sizeof m))
                return usage(msg, cap, "%s", m);
            has_rank |= k == 0;
        } else if (s[0] == '-' && s[1]) return usage(msg, cap, "unknown option '%s'", s);
        else if (!*s) return usage(msg, cap, "an empty path among the arguments");
        else if (a->path) return usage(msg, cap, "expected one FILE.npy, got '%s' and '%s'", a->path, s);
        else a->path = s;
    }
    if (!a->path) return usage(msg, cap, "expected FILE.npy");
    return has_rank ? 0 : usage(msg, cap, "--rank R is required");
}
