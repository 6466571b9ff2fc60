/* cli.c — strict option parsing, matrix printing and JSON helpers for the programs (demos, tool). */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

bool lr_cli_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return a && b && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

bool lr_cli_match(const char *arg, const char *name)
{
    size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

bool lr_cli_value(int argc, char **argv, int *i, const char *name, const char **value,
                  char *msg, size_t cap)
{
    const char *eq = strchr(argv[*i], '=');
    if (eq) {
        *value = eq + 1;
        return true;
    }
    if (*i + 1 >= argc) {
        snprintf(msg, cap, "%s: needs a value", name);
        return false;
    }
    *value = argv[++*i];
    return true;
}

bool lr_cli_path(int argc, char **argv, int *i, const char *name, const char **value, char *msg, size_t cap)
{
    if (!lr_cli_value(argc, argv, i, name, value, msg, cap)) return false;
    if (**value) return true;
    snprintf(msg, cap, "%s: empty path", name);
    return false;
}

/* Digits only, no sign or space: strtoull would accept " -1" and wrap it around. */
static bool all_digits(const char *s)
{
    if (!*s) return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return false;
    return true;
}

bool lr_cli_parse_u64(const char *opt, const char *s, uint64_t *out, char *msg, size_t cap)
{
    if (!all_digits(s)) {
        snprintf(msg, cap, "%s: expected a non-negative integer, got '%s'", opt, s);
        return false;
    }
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno == ERANGE || v > UINT64_MAX) {
        snprintf(msg, cap, "%s: '%s' is too large (max %llu)", opt, s, (unsigned long long)UINT64_MAX);
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

bool lr_cli_parse_seed(const char *opt, const char *s, uint64_t *out, char *msg, size_t cap)
{
    if (!lr_cli_parse_u64(opt, s, out, msg, cap)) return false;
    if (*out <= (uint64_t)INT64_MAX) return true;
    /* JSON integers (jansson's json_int_t) stop at 2^63 - 1: a larger seed could not be
     * reported exactly */
    snprintf(msg, cap, "%s: at most %lld, got '%s'", opt, (long long)INT64_MAX, s);
    return false;
}

bool lr_cli_parse_size(const char *opt, const char *s, size_t lo, size_t hi, size_t *out,
                       char *msg, size_t cap)
{
    const char *what = lo >= 1 ? "a positive integer" : "a non-negative integer";
    if (!all_digits(s)) {
        snprintf(msg, cap, "%s: expected %s, got '%s'", opt, what, s);
        return false;
    }
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno == ERANGE || v > SIZE_MAX || (size_t)v < lo || (size_t)v > hi) {
        if (lo >= 1 && v == 0 && errno != ERANGE)
            snprintf(msg, cap, "%s: expected %s, got '%s'", opt, what, s);
        else
            snprintf(msg, cap, "%s: expected an integer from %zu to %zu, got '%s'", opt, lo, hi, s);
        return false;
    }
    *out = (size_t)v;
    return true;
}

bool lr_cli_parse_double(const char *opt, const char *s, double lo, bool lo_open, double hi,
                         bool hi_open, double *out, char *msg, size_t cap)
{
    char *end = NULL;
    errno = 0;
    double v = *s && *s != ' ' && *s != '\t' ? strtod(s, &end) : 0.0;
    if (!end || end == s || *end != '\0' || !isfinite(v) || errno == ERANGE) {
        snprintf(msg, cap, "%s: expected a finite number, got '%s'", opt, s);
        return false;
    }
    if ((lo_open ? v <= lo : v < lo) || (hi_open ? v >= hi : v > hi)) {
        snprintf(msg, cap, "%s: expected a number in %c%g, %g%c, got '%s'", opt, lo_open ? '(' : '[', lo, hi,
                 hi_open ? ')' : ']', s);
        return false;
    }
    *out = v;
    return true;
}

bool lr_cli_parse_size_list(const char *opt, const char *s, size_t lo, size_t hi, size_t *out,
                            size_t max, size_t *count, char *msg, size_t cap)
{
    size_t n = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[32];
        if (len == 0 || len >= sizeof item) {
            snprintf(msg, cap, "%s: expected a comma-separated list of integers, got '%s'", opt, s);
            return false;
        }
        if (n == max) {
            snprintf(msg, cap, "%s: at most %zu values, got '%s'", opt, max, s);
            return false;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (!lr_cli_parse_size(opt, item, lo, hi, &out[n], msg, cap)) return false;
        n++;
        if (!comma) break;
        p = comma + 1;
    }
    *count = n;
    return true;
}

/* One number format for a whole matrix, as numpy does: fixed point when the
 * magnitudes allow it, otherwise scientific. */
static void pick_format(const float *v, size_t n, size_t stride, size_t cols, int prec, char *fmt,
                        size_t cap, int *width)
{
    double mx = 0, mn = INFINITY;
    bool nonfinite = false;
    for (size_t i = 0; i < n; i++) {
        double a = fabs(v[(i / cols) * stride + i % cols]);
        if (!isfinite(a)) { nonfinite = true; continue; }
        if (a > mx) mx = a;
        if (a > 0 && a < mn) mn = a;
    }
    bool fixed = mx == 0 || (mx < 1e5 && mn >= 1e-4 && mx / mn < 1e6);
    (void)nonfinite;
    if (fixed) {
        int ip = mx >= 1 ? (int)floor(log10(mx)) + 1 : 1;
        *width = 1 + ip + 1 + prec;
        snprintf(fmt, cap, "%% %d.%df", *width, prec);
    } else {
        *width = prec + 7;
        snprintf(fmt, cap, "%% %d.%de", *width, prec);
    }
}

void lr_cli_print_mat(FILE *f, const char *name, lr_cmat m, int prec, size_t max_rows,
                      size_t max_cols)
{
    fprintf(f, "%s: (%zu x %zu)\n", name, m.rows, m.cols);
    if (m.rows == 0 || m.cols == 0) return;
    char fmt[32];
    int width;
    pick_format(m.data, m.rows * m.cols, m.ld, m.cols, prec, fmt, sizeof fmt, &width);
    size_t hr = m.rows > max_rows ? max_rows / 2 : m.rows, hc = m.cols > max_cols ? max_cols / 2 : m.cols;
    for (size_t i = 0; i < m.rows; i++) {
        if (m.rows > max_rows && i == hr) {
            fprintf(f, "  %*s\n", width, "...");
            i = m.rows - (max_rows - hr) - 1;
            continue;
        }
        fputs("  [", f);
        for (size_t j = 0; j < m.cols; j++) {
            if (m.cols > max_cols && j == hc) {
                fprintf(f, "  ...");
                j = m.cols - (max_cols - hc) - 1;
                continue;
            }
            fprintf(f, j ? " " : "");
            fprintf(f, fmt, (double)m.data[i * m.ld + j]);
        }
        fputs(" ]\n", f);
    }
}

void lr_cli_print_vec(FILE *f, const char *name, const float *v, size_t n, int prec, size_t max)
{
    char fmt[32];
    int width;
    fprintf(f, "%s: [", name);
    if (n) pick_format(v, n, n, n, prec, fmt, sizeof fmt, &width);
    size_t shown = n > max ? max : n;
    for (size_t i = 0; i < shown; i++) {
        fputs(i ? ", " : "", f);
        char buf[64];
        snprintf(buf, sizeof buf, fmt, (double)v[i]);
        fputs(buf + strspn(buf, " "), f);
    }
    if (n > shown) fprintf(f, ", ... (%zu more)", n - shown);
    fputs("]\n", f);
}

json_t *lr_cli_json_real(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

json_t *lr_cli_json_vec(const float *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, lr_cli_json_real((double)v[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

json_t *lr_cli_json_mat(lr_cmat m)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < m.rows; i++)
        if (json_array_append_new(a, lr_cli_json_vec(m.data + i * m.ld, m.cols)) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

void lr_cli_json_set(json_t *obj, const char *key, json_t *value, bool *ok)
{
    if (!value || json_object_set_new(obj, key, value) != 0) *ok = false;
}
