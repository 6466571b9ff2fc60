/* common.c — what every `lowrank` subcommand shares (tool.h). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "tool.h"

const char tool_common_help[] =
"Tensor selection and SVD:\n"
"  --only REGEX       only tensors whose name matches (POSIX extended regex, unanchored);\n"
"                     naming a tensor that is not 2-D floating (--only a.bias) is an error\n"
"  --skip REGEX       leave out tensors whose name matches\n"
"  --method M         singular values: auto (exact up to 2048x2048 = 4,194,304 entries,\n"
"                     randomized above), exact (LAPACK sgesdd), randomized (block Krylov)\n"
"  --svd-rank K       values the randomized method computes (default 256)\n"
"  --seed N           seed of the randomized method (default 0)\n"
"  --json             one JSON object on stdout instead of the table\n"
"  --help             this text\n";

int tool_usage(const char *sub, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG "%s%s: ", sub ? " " : "", sub ? sub : "");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '" PROG "%s%s --help'.\n", sub ? " " : "", sub ? sub : "");
    return LR_CLI_USAGE;
}

int tool_fail(const char *sub, const lr_err *e)
{
    fprintf(stderr, PROG " %s: %s\n", sub, e->msg[0] ? e->msg : "failed");
    return LR_CLI_RUNTIME;
}

int tool_failf(const char *sub, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG " %s: ", sub);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return LR_CLI_RUNTIME;
}

void tool_note(tool_opts *o, const char *sub, const char *tensor, const char *why)
{
    fprintf(stderr, PROG " %s: note: %s: %s\n", sub, tensor, why);
    json_t *n = json_object();
    if (n && !json_object_set_new(n, "tensor", json_string(tensor)) &&
        !json_object_set_new(n, "reason", json_string(why)))
        json_array_append(o->notes, n);
    json_decref(n);
}

bool tool_is_matrix(const lr_st_tensor *t, const char **why)
{
    bool fl = t->dtype == LR_ST_F32 || t->dtype == LR_ST_F16 || t->dtype == LR_ST_BF16 || t->dtype == LR_ST_F64;
    *why = !fl ? "passed over: not F32, F16, BF16 or F64"
         : t->ndim != 2 ? "passed over: not 2-D"
         : t->shape[0] == 0 || t->shape[1] == 0 ? "passed over: empty" : NULL;
    return *why == NULL;
}

bool tool_selected(const tool_opts *o, const char *name)
{
    if (o->has_only && regexec(&o->only, name, 0, NULL, 0) != 0) return false;
    if (o->has_skip && regexec(&o->skip, name, 0, NULL, 0) == 0) return false;
    return true;
}

/* Is name one of the '|'-separated alternatives of the --only text, literally? */
static bool named(const char *only, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = only; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

int tool_candidates(tool_opts *o, const char *sub, lr_safetensors *st, size_t **out, size_t *count)
{
    size_t n = lr_safetensors_count(st), c = 0;
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx) return tool_failf(sub, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const lr_st_tensor *t = lr_safetensors_at(st, i);
        const char *why;
        if (!tool_selected(o, t->name)) continue;
        if (tool_is_matrix(t, &why)) {
            idx[c++] = i;
            continue;
        }
        char msg[160];
        snprintf(msg, sizeof msg, "%s (%s, %zu-D)", why, lr_st_dtype_name(t->dtype), t->ndim);
        if (named(o->only_text, t->name)) { /* asked for by name: an error, not a note */
            free(idx);
            return tool_failf(sub, "%s: %s, selected by --only, is not a 2-D floating tensor: %s",
                              lr_safetensors_path(st), t->name, msg + strlen("passed over: "));
        }
        tool_note(o, sub, t->name, msg);
    }
    *out = idx, *count = c;
    return 0;
}

lr_status tool_load(lr_mat *w, lr_safetensors *st, const lr_st_tensor *t, lr_err *err)
{
    lr_status s = lr_mat_init(w, t->shape[0], t->shape[1], err);
    if (!s) s = lr_safetensors_get_f32(st, w->data, t->name, 2, t->shape, err);
    if (s) lr_mat_free(w);
    return s;
}

void tool_round(float *x, size_t n, lr_st_dtype dtype)
{
    for (size_t i = 0; i < n; i++)
        x[i] = dtype == LR_ST_F16 ? lr_f16_to_f32(lr_f32_to_f16(x[i]))
             : dtype == LR_ST_BF16 ? lr_bf16_to_f32(lr_f32_to_bf16(x[i])) : x[i];
}

int tool_check_out(const char *sub, const char *out, const char *const *inputs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lr_cli_same_file(out, inputs[i]))
            return tool_usage(sub, "--out '%s' is the input '%s': refusing to write over an input", out,
                              inputs[i]);
    return 0;
}

json_t *tool_json_size(size_t v)
{
    return json_integer((json_int_t)v);
}

json_t *tool_json_shape(size_t m, size_t n)
{
    return json_pack("[II]", (json_int_t)m, (json_int_t)n);
}

int tool_json_print(json_t *o)
{
    if (!o || json_dumpf(o, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(9)) != 0 || fputc('\n', stdout) == EOF ||
        fflush(stdout) != 0) {
        fprintf(stderr, PROG ": cannot print the JSON report\n");
        return LR_CLI_RUNTIME;
    }
    return LR_CLI_OK;
}

int tool_write_st(const char *sub, const char *out, const lr_safetensors *src, const lr_st_tensor *t, size_t nt,
                  const char *record)
{
    size_t nm = lr_safetensors_meta_count(src), k = 0;
    lr_st_meta *meta = calloc(nm + 1, sizeof *meta);
    if (!meta || !record) {
        free(meta);
        return tool_failf(sub, "out of memory");
    }
    for (size_t i = 0; i < nm; i++)
        if (strcmp(lr_safetensors_meta_at(src, i)->key, "lowrank")) meta[k++] = *lr_safetensors_meta_at(src, i);
    meta[k++] = (lr_st_meta){ "lowrank", record };
    lr_err e = { 0 };
    int rc = lr_safetensors_write(out, t, nt, meta, k, &e) ? tool_fail(sub, &e) : 0;
    free(meta);
    return rc;
}

int tool_parsed(const char *sub, int rc, const char *msg, const char *help, bool shared)
{
    if (rc == TOOL_HELP) printf("%s%s", help, shared ? tool_common_help : "");
    return rc == LR_CLI_USAGE ? tool_usage(sub, "%s", msg) : rc;
}
