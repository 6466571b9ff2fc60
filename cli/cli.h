/* cli.h — small helpers shared by the programs (the demos in demos/ and the lowrank tool
 * in tool/): strict option parsing, printing matrices and vectors, and building JSON
 * output with jansson.
 *
 * The programs are clients of the public lowrank API; these helpers are not part of the
 * library, and tool/ and demos/ link them as a static helper (cli/meson.build). Parsers
 * never print: they fill a message ("--rank: expected a positive integer, got 'abc'")
 * that the program shows before exiting with status 2.
 */
#ifndef LR_CLI_H
#define LR_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>
#include "lowrank/base/mat.h"

/* Exit statuses shared by the programs. */
enum { LR_CLI_OK = 0, LR_CLI_RUNTIME = 1, LR_CLI_USAGE = 2 };

/* Command-line scanning: "--name value" and "--name=value" both work.
 * lr_cli_match returns true when argv[*i] is `name` (with or without "=value");
 * lr_cli_value then yields the value, advancing *i past a separate argument,
 * or false with "--name: needs a value" in msg. */
bool lr_cli_match(const char *arg, const char *name);
bool lr_cli_value(int argc, char **argv, int *i, const char *name, const char **value,
                  char *msg, size_t cap);
/* lr_cli_value for a file or directory name: an empty one is "--name: empty path". */
bool lr_cli_path(int argc, char **argv, int *i, const char *name, const char **value, char *msg, size_t cap);

/* Whether two existing paths name the same file (device and inode, so links and other
 * spellings count): an output must never be written over an input. */
bool lr_cli_same_file(const char *a, const char *b);

/* Strict parsers: the whole string must be the number, no sign on unsigned values,
 * no surrounding space, in range. On failure they write e.g.
 * "--rank: expected a positive integer, got 'abc'" into msg and return false. */
bool lr_cli_parse_size(const char *opt, const char *s, size_t lo, size_t hi, size_t *out,
                       char *msg, size_t cap);
bool lr_cli_parse_u64(const char *opt, const char *s, uint64_t *out, char *msg, size_t cap);
/* A seed: 0..2^63-1, so that --json reports it exactly. */
bool lr_cli_parse_seed(const char *opt, const char *s, uint64_t *out, char *msg, size_t cap);
/* A finite double in [lo, hi] (lo_open/hi_open make that end exclusive). */
bool lr_cli_parse_double(const char *opt, const char *s, double lo, bool lo_open, double hi,
                         bool hi_open, double *out, char *msg, size_t cap);
/* Comma-separated list of sizes in [lo, hi], at most `max` of them. */
bool lr_cli_parse_size_list(const char *opt, const char *s, size_t lo, size_t hi, size_t *out,
                            size_t max, size_t *count, char *msg, size_t cap);

/* Prints "name: (rows x cols)" then the rows with `prec` significant digits,
 * eliding the middle when there are more than max_rows/max_cols. */
void lr_cli_print_mat(FILE *f, const char *name, lr_cmat m, int prec, size_t max_rows,
                      size_t max_cols);
/* Prints "name: [v0, v1, ...]" with at most `max` entries shown. */
void lr_cli_print_vec(FILE *f, const char *name, const float *v, size_t n, int prec, size_t max);

/* JSON builders (NULL on allocation failure). Non-finite numbers become null,
 * since JSON has no NaN or Inf. */
json_t *lr_cli_json_real(double x);
json_t *lr_cli_json_vec(const float *v, size_t n);
json_t *lr_cli_json_mat(lr_cmat m);
/* json_object_set_new that remembers a failure in *ok (so building reads linearly). */
void lr_cli_json_set(json_t *obj, const char *key, json_t *value, bool *ok);

#endif
