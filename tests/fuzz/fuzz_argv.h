/* fuzz_argv.h — what the command-line fuzz targets (fuzz_cmdline.c, fuzz_toolcmd.c) share:
 * the input cut into an argument vector, the contract check that aborts, and the two
 * questions every contract asks of the vector. Each target includes it once; g_argc and
 * g_argv are that target's current vector. */
#ifndef LR_FUZZ_ARGV_H
#define LR_FUZZ_ARGV_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* a breach of the contract: libFuzzer reports the abort as a crash */
#define CHECK(c)                                                                          \
    do {                                                                                  \
        if (!(c)) {                                                                       \
            fprintf(stderr, "%s: contract broken: %s (line %d)\n", __FILE__, #c, __LINE__); \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

enum { MAX_ARGS = 64 };

static int g_argc;
static char **g_argv;

/* argv[0] <- arg0, then the NUL-separated strings of data (at most MAX_ARGS; a last string
 * without a NUL counts), argv[argc] <- NULL; argv holds MAX_ARGS + 2. Returns the copy the
 * strings point into (the caller frees it), or NULL without memory. */
static inline char *fuzz_split_args(const uint8_t *data, size_t size, const char *arg0, char **argv, int *argc)
{
    char *buf = malloc(size + 1);
    if (!buf) return NULL;
    if (size) memcpy(buf, data, size);
    buf[size] = '\0';
    int n = 0;
    argv[n++] = (char *)arg0;
    for (size_t i = 0; i < size && n <= MAX_ARGS; i += strlen(buf + i) + 1) argv[n++] = buf + i;
    argv[n] = NULL;
    *argc = n;
    return buf;
}

/* --help or -h is among the arguments */
static inline bool has_help(void)
{
    for (int i = 1; i < g_argc; i++)
        if (!strcmp(g_argv[i], "--help") || !strcmp(g_argv[i], "-h")) return true;
    return false;
}

/* s is NULL or one of the arguments (or a value after its '='): options point into argv. */
static inline bool in_argv(const char *s)
{
    if (!s) return true;
    for (int i = 1; i < g_argc; i++)
        if (s >= g_argv[i] && s <= g_argv[i] + strlen(g_argv[i])) return true;
    return false;
}

#endif
