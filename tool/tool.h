/* tool.h — the `lowrank` program's shared parts: showing what the command-line parsers
 * (tool_opts.h) found, choosing the 2-D floating tensors of a safetensors file, reading them
 * as float32, tables and JSON. The program is a client of the public lowrank API (like the
 * demos) and reuses their option parsers (demos/cli.h). */
#ifndef LR_TOOL_H
#define LR_TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <jansson.h>
#include "lowrank/lowrank.h"
#include "cli.h"
#include "tool_opts.h"

#define PROG "lowrank"

/* Help text for the shared options (tool_opts.h). */
extern const char tool_common_help[];

/* What a parser's result rc means for the run: TOOL_HELP prints help (with shared, followed
 * by tool_common_help) and gives TOOL_HELP; LR_CLI_USAGE prints msg as tool_usage does and
 * gives 2; 0 stays 0. A subcommand returns 0 after its help. */
int tool_parsed(const char *sub, int rc, const char *msg, const char *help, bool shared);
/* Writes tensors t[0..nt) to out with src's __metadata__, its "lowrank" entry replaced by
 * record (a JSON text); 0, or 1 with the message printed. */
int tool_write_st(const char *sub, const char *out, const lr_safetensors *src, const lr_st_tensor *t, size_t nt,
                  const char *record);

/* A usage error: prints it with a pointer to --help; returns 2. */
int tool_usage(const char *sub, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* A failure from the library: prints "lowrank SUB: message"; returns 1. */
int tool_fail(const char *sub, const lr_err *e);
int tool_failf(const char *sub, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* A note on stderr, also kept for --json ("skipped": [...]). */
void tool_note(tool_opts *o, const char *sub, const char *tensor, const char *why);

/* Is t a 2-D F32/F16/BF16/F64 tensor? why <- the reason when not. */
bool tool_is_matrix(const lr_st_tensor *t, const char **why);
/* Selected by --only / --skip? */
bool tool_selected(const tool_opts *o, const char *name);
/* Candidates of st in file order: the 2-D floating tensors --only/--skip select, as *idx:
 * (count) indices into st (free it). The other tensors get a note, except one that --only
 * names literally (an alternative of "a|b|c" equal to its name): that is an error (1). */
int tool_candidates(tool_opts *o, const char *sub, lr_safetensors *st, size_t **idx, size_t *count);

/* The tensor as an owned float32 matrix (m, n). */
lr_status tool_load(lr_mat *w, lr_safetensors *st, const lr_st_tensor *t, lr_err *err);
/* x rounded to dtype and back, in place (what a file of that dtype will hold). */
void tool_round(float *x, size_t n, lr_st_dtype dtype);

/* Output paths must not be inputs: 2 with a message when they are the same file. */
int tool_check_out(const char *sub, const char *out, const char *const *inputs, size_t n);

/* The subcommands: argc/argv start at the subcommand's name. */
int tool_inspect(int argc, char **argv);
int tool_compress(int argc, char **argv);
int tool_extract(int argc, char **argv);
int tool_combine(int argc, char **argv);
int tool_merge(int argc, char **argv);
int tool_clean(int argc, char **argv);
int tool_rsvd(int argc, char **argv);

/* inspect's --spectrum: normalised singular values, one line per tensor (svgplot.c). */
int tool_spectrum_svg(const char *path, const char *const *names, const float *const *s, const size_t *k,
                      size_t count, char *msg, size_t cap);

/* JSON helpers: json_t for a size_t / a shape */
json_t *tool_json_size(size_t v);
json_t *tool_json_shape(size_t m, size_t n);
/* Prints the object on stdout (indented); returns 0, or 1 when it cannot be printed. */
int tool_json_print(json_t *o);

#endif
