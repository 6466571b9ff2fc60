/* tool.h — the `lowrank` program's shared parts: showing what the command-line parsers
 * (tool_opts.h) found, choosing the 2-D floating tensors of a safetensors file, reading them
 * as float32, tables and JSON. The program is a client of the public lowrank API (like the
 * demos) and shares their option parsers (cli/cli.h). */
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
/* No more notes on stderr (ranks other than 0 under mpirun). */
void tool_notes_off(void);
/* A failure about tensor `name` of m: e's message as it is when it already names the tensor
 * (the reader's, which name the file too), else prefixed with the file and the tensor (an
 * SVD's); returns 1. */
int tool_fail_tensor(const char *sub, const lr_err *e, const lr_model *m, const char *name);
/* A note on stderr, also kept for --json ("skipped": [...]). */
void tool_note(tool_opts *o, const char *sub, const char *tensor, const char *why);

/* Is t a 2-D F32/F16/BF16/F64 tensor? why <- the reason when not. */
bool tool_is_matrix(const lr_st_tensor *t, const char **why);
/* Selected by --only / --skip? */
bool tool_selected(const tool_opts *o, const char *name);
/* Opens MODEL (a .safetensors file, a directory, or an index: io/model.h) into m; 0, or 1
 * with the library's message printed (it names the file). */
int tool_open(const char *sub, lr_model *m, const char *path);
/* Candidates of m in its stable order: the 2-D floating tensors --only/--skip select, as
 * *idx: (count) indices into m (free it). The other tensors get a note, except one that
 * --only names literally (an alternative of "a|b|c" equal to its name): that is an error (1). */
int tool_candidates(tool_opts *o, const char *sub, lr_model *m, size_t **idx, size_t *count);

/* The tensor as an owned float32 matrix (m, n), every entry finite: a failure's message names
 * the file and the tensor once ("m.st: w: entry (0,3) is NaN"). */
lr_status tool_load(lr_mat *w, lr_model *m, const lr_st_tensor *t, lr_err *err);

/* Tensors whose float32 copy would pass this are read a block of rows at a time for their
 * singular values (lr_rows, rsvd.h) instead of whole: Llama-3's 128256×4096 embedding is
 * 2.1 GB as float32. */
#define TOOL_STREAM_BYTES ((double)(256u << 20))
typedef struct { lr_model *m; const lr_st_tensor *t; } tool_src;
/* t of m as a row source (blocks checked finite; messages name the file and tensor). */
lr_rows tool_rows(tool_src *s, lr_model *m, const lr_st_tensor *t);
bool tool_streamed(const lr_st_tensor *t);
/* *sp <- t's singular values (no vectors): read whole, or by rows when tool_streamed. */
lr_status tool_spectrum(lr_spectrum *sp, lr_model *m, const lr_st_tensor *t, const lr_spectrum_opts *o, lr_err *err);
/* err <- the message; returns s. */
lr_status tool_seterr(lr_err *err, lr_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Buffers a worker keeps from tensor to tensor (fresh pages cost a fault each: in this VM a
 * fault is dearer than reading the page from the file). */
typedef struct {
    float *p[3];
    size_t cap[3];
} tool_scratch;
/* Slot k (0..2) with room for n floats (contents undefined); NULL when out of memory. */
float *tool_scratch_get(tool_scratch *s, int k, size_t n);
void tool_scratch_free(tool_scratch *s);
/* tool_load into scratch slot k: *w views it. */
lr_status tool_load_into(lr_mat *w, tool_scratch *s, int k, lr_model *m, const lr_st_tensor *t, lr_err *err);
/* ‖src − b·a‖_F², reading src's rows in blocks; NAN with err set on failure. */
double tool_residual2_rows(const lr_rows *src, lr_cmat b, lr_cmat a, lr_err *err);
/* ‖d − b·a‖_F², by blocks of rows (no (m, n) temporary); NAN when out of memory. */
double tool_residual2(lr_cmat d, lr_cmat b, lr_cmat a);

/* Runs fn(ctx, i, worker) for i = 0..n-1 on `threads` threads (each item whole on one thread;
 * OpenBLAS is set to one thread meanwhile, and back after, whatever `threads` is, so results
 * are the same bits for any --threads). A tensor of a language model is
 * too small for OpenBLAS to use two threads well: on SmolLM2-135M's extract, tensors on two
 * workers took 0.93-0.96 s, two OpenBLAS threads on one tensor at a time 1.5 s (AMD EPYC
 * family 25, 2 vCPUs on two cores). Items are taken in order; after
 * an item returns non-zero no new one starts, and the return is the failing item's with the
 * lowest index. progress (may be NULL) is stepped once per item, under a lock. */
typedef int (*tool_item_fn)(void *ctx, size_t i, size_t worker);
int tool_parallel(size_t n, size_t threads, tool_item_fn fn, void *ctx);
/* The threads to use for tensors: --threads, else the online CPUs. */
size_t tool_workers(size_t threads_opt);
/* A lock for what workers share (the writer, notes, stderr). */
void tool_lock(void);
void tool_unlock(void);
/* Are the bytes of tensor name the same in a and b (same dtype and shape)? Read in pieces. */
lr_status tool_same_bytes(bool *same, lr_model *a, lr_model *b, const char *name, lr_err *err);
/* Copies tensor name from src into the writer, in pieces of at most 64 MiB. */
lr_status tool_copy_tensor(lr_model_writer *w, lr_model *src, const lr_st_tensor *t, lr_err *err);
/* The rank-r factors of d for a fixed rank: block Krylov (rsvd.h, block r, depth 4, then 8), kept
 * when the run's own figures put its error within 1.001x of the optimum, proven
 * (err² / Σ_{r<i<=L} σ̃_i²) or estimated from the gains of the last two blocks (err² / (err² −
 * what more blocks would add), Aitken's extrapolation of a geometric series);
 * else the exact thin SVD. info: energy ‖d‖², tail = the factors' error², svd = "krylov" or
 * "exact", bound = the accepted bound on error / optimum (1 for exact). */
typedef struct {
    double energy, tail, bound;
    const char *svd;
} tool_svd_info;
/* d in memory, or src non-NULL: the rows read a block at a time, and no exact fallback (it
 * would need the matrix whole and several times more): the bound says how far the factors
 * may be from the optimum. The exact SVDs of matrices above 256 MB run one at a time. */
lr_status tool_factor_rank(lr_usv *vec, tool_svd_info *info, lr_cmat d, const lr_rows *src, size_t r, uint64_t seed,
                           lr_err *err);
/* x rounded to dtype and back, in place (what a file of that dtype will hold). */
void tool_round(float *x, size_t n, lr_st_dtype dtype);
/* --threads: OpenBLAS's thread count (0 leaves its default). */
void tool_threads(size_t n);

/* A line per tensor on stderr: "[k/N] name  MB/s  ETA", rewritten in place on a terminal;
 * with --progress also when stderr is not one. Off under neither. */
typedef struct {
    bool on, tty;
    size_t n;
    double t0, done, total; /* seconds; bytes read so far, of all */
} tool_progress;
void tool_progress_init(tool_progress *p, bool asked, size_t n, double total_bytes);
void tool_progress_step(tool_progress *p, size_t k, const char *name, double bytes);
void tool_progress_end(tool_progress *p);
/* The bytes of the tensors idx[0..n) of m (for the progress line). */
double tool_bytes_of(const lr_model *m, const size_t *idx, size_t n);

/* Writes OUT in the layout of model m: OUT is a file when m is one file and max_shard is 0,
 * else a directory of m's shard names (or of shards of at most max_shard bytes) with an
 * index. The entries' shard fields are set from m by tool_entry. */
lr_model_entry tool_entry(const lr_model *m, const lr_st_tensor *src, lr_st_tensor t, size_t max_shard);
/* The output's __metadata__: m's first shard's, its "lowrank" entry replaced by record; and
 * the index metadata. Opens the writer; 0 or 1 with the message printed. */
int tool_writer_init(const char *sub, lr_model_writer *w, const char *out, const lr_model *m, const lr_model_entry *e,
                     size_t n, const char *record, size_t max_shard);

/* --out must not be a file of an open model (a shard, its index) nor a sharded model's
 * directory, by whatever path it is reached: 2 with a message. */
int tool_check_out_model(const char *sub, const char *out, const lr_model *m);
/* Output paths must not be inputs: 2 with a message when they are the same file. */
int tool_check_out(const char *sub, const char *out, const char *const *inputs, size_t n);

/* Under `mpirun -np N` (N > 1, and built with MPI) *rank and *size of this process; 0 and 1
 * otherwise (MPI is not started then). Ranks other than 0 print nothing on stdout. */
int tool_mpi_start(int *rank, int *size);
void tool_mpi_end(void);
/* The largest rc over the processes (rc itself in one process). */
int tool_mpi_agree(int rc);
/* n bytes to / from another rank (no-ops in one process). */
void tool_mpi_send(const void *buf, size_t n, int to);
void tool_mpi_recv(void *buf, size_t n, int from);

/* The subcommands: argc/argv start at the subcommand's name. */
int tool_inspect(int argc, char **argv);
int tool_compress(int argc, char **argv);
int tool_extract(int argc, char **argv);
int tool_combine(int argc, char **argv);
int tool_merge(int argc, char **argv);
int tool_clean(int argc, char **argv);
int tool_rsvd(int argc, char **argv);
int tool_export(int argc, char **argv);
/* Does path end in ".gguf"? */
bool tool_is_gguf(const char *path);
/* inspect FILE.gguf: an adapter's pairs (rank, scale) or a model's tensors; 0 or 1. */
int tool_inspect_gguf(const char *path, bool json);

/* inspect's --spectrum: normalised singular values, one line per tensor (svgplot.c). */
int tool_spectrum_svg(const char *path, const char *const *names, const float *const *s, const size_t *k,
                      size_t count, char *msg, size_t cap);

/* JSON helpers: json_t for a size_t / a shape */
json_t *tool_json_size(size_t v);
json_t *tool_json_shape(size_t m, size_t n);
/* Prints the object on stdout (indented); returns 0, or 1 when it cannot be printed. */
int tool_json_print(json_t *o);

#endif
