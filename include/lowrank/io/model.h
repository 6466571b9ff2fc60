/* model.h — a checkpoint as Hugging Face's save_pretrained lays it out, opened as one set of
 * named tensors: a single safetensors file, or shards listed by an index
 * (model.safetensors.index.json: {"metadata": {"total_size": N}, "weight_map": {tensor:
 * shard file}}). Every shard is opened header-only (safetensors.h streams): a tensor's bytes
 * are read when asked for, so a 16 GB checkpoint costs its headers.
 *
 * lr_model_open takes any of what users pass for a model:
 *   a .safetensors file;
 *   a directory holding model.safetensors (taken first, as transformers does) or
 *   model.safetensors.index.json;
 *   the index file itself (any name ending in .json).
 * An index is checked against its shards, each refusal naming the index and the tensor or
 * shard: a weight_map that is not an object of strings or lists no tensor, a shard path that leaves the
 * directory (absolute, or with a ".." part), a shard that cannot be opened or is not a
 * valid safetensors file, a tensor the index lists but its shard lacks, a tensor its shard
 * holds but the index does not list (or lists in another shard), a tensor in two shards, and
 * a shard file beside the index named like the listed ones (PREFIX-NNNNN-of-MMMMM.safetensors)
 * that the index does not list.
 *
 * Tensors come in a stable order: shards sorted by file name, and within a shard by offset
 * (the order a sequential read of the files takes). The tensors' data fields are NULL.
 *
 *     lr_model m;
 *     if (lr_model_open(&m, "Llama-3-8B/", &err)) ...;
 *     for (size_t i = 0; i < lr_model_count(&m); i++) {
 *         const lr_st_tensor *t = lr_model_at(&m, i);
 *         ... lr_model_get_f32(&m, w, t->name, t->ndim, t->shape, &err) ...
 *     }
 *     lr_model_free(&m);
 *
 * lr_model_writer writes a model in the layout of one that was read (the same shard file
 * names, each tensor in the shard given for it), or in shards of at most max_shard_bytes
 * named PREFIX-NNNNN-of-MMMMM.safetensors, with an index whose weight_map and
 * metadata.total_size (the sum of the tensors' bytes) are right; when max_shard_bytes holds
 * everything, the directory gets one model.safetensors and no index, as transformers does.
 * A directory that holds shards of another layout, or a model.safetensors that readers would
 * take before the new index, is refused: write into an empty one. Every shard is written
 * through lr_st_writer (a temp file beside it); lr_model_writer_commit flushes and fsyncs
 * every shard, renames them into place only once all are on disk, and writes the index last,
 * so a failure before the renames leaves the old model as it was and no temp file behind.
 */
#ifndef LOWRANK_MODEL_H
#define LOWRANK_MODEL_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include <stddef.h>
#include "lowrank/base/status.h"
#include "lowrank/io/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LR_MODEL_FILE "model.safetensors"
#define LR_MODEL_INDEX "model.safetensors.index.json"

/* The caller owns the struct; its fields belong to the library. */
typedef struct lr_model {
    char *path;          /* as given                                              */
    char *index;         /* the index file; NULL for a single file                */
    char *dir;           /* the directory the shard names are relative to         */
    char *index_meta;    /* the index's "metadata" object as JSON text, or NULL   */
    size_t nshards;
    lr_safetensors *shard; /* (nshards), sorted by name                           */
    char **shard_name;   /* (nshards) as the index names them (the file's base name) */
    size_t nt;
    size_t *ts, *ti;     /* (nt) tensor i is tensor ti[i] of shard ts[i]          */
    size_t *by_name;     /* (nt) indices sorted by name                           */
} lr_model;

/* Opens path (a file, a directory or an index, above) into *m. On failure *m is empty
 * (lr_model_free on it is a no-op). */
LR_API lr_status lr_model_open(lr_model *m, const char *path, lr_err *err);
/* Closes every shard and empties m; a no-op on NULL or an empty struct. */
LR_API void lr_model_free(lr_model *m);

/* The path given at open; the index file or NULL; the directory the shards are in; the
 * index's "metadata" object as JSON text, or NULL. */
LR_API const char *lr_model_path(const lr_model *m);
LR_API const char *lr_model_index_path(const lr_model *m);
LR_API const char *lr_model_dir(const lr_model *m);
LR_API const char *lr_model_index_meta(const lr_model *m);
/* Tensors in the stable order: count, the i-th (NULL if out of range), by name (NULL if none). */
LR_API size_t lr_model_count(const lr_model *m);
LR_API const lr_st_tensor *lr_model_at(const lr_model *m, size_t i);
LR_API const lr_st_tensor *lr_model_find(const lr_model *m, const char *name);
/* Shards: count, k-th shard's file name as the index lists it (for a single file, that file's
 * own base name) and its open file; the shard of tensor i (SIZE_MAX if out of range). */
LR_API size_t lr_model_shard_count(const lr_model *m);
LR_API const char *lr_model_shard_name(const lr_model *m, size_t k);
LR_API lr_safetensors *lr_model_shard_at(const lr_model *m, size_t k);
LR_API size_t lr_model_shard_of(const lr_model *m, size_t i);
/* The path of the file holding tensor `name` (its shard), or the model's path when no shard
 * holds it: what a message about the tensor names. */
LR_API const char *lr_model_file_of(const lr_model *m, const char *name);

/* dst: (prod(shape)) <- tensor `name` as float32, checked as lr_safetensors_get_f32 checks
 * it; messages name the shard file and the tensor ("m/model-00002-of-00004.safetensors:
 * lm_head.weight: expected shape ..."), a tensor in no shard names the model. */
LR_API lr_status lr_model_get_f32(lr_model *m, float *dst, const char *name, size_t ndim, const size_t *shape,
                                  lr_err *err);
/* dst: (k, row) <- rows [r0, r0 + k) of tensor `name` as float32 (lr_safetensors_get_f32_rows). */
LR_API lr_status lr_model_get_f32_rows(lr_model *m, float *dst, const char *name, size_t r0, size_t k, lr_err *err);
/* dst <- n bytes of tensor `name` from byte off, host order (lr_safetensors_get_bytes). */
LR_API lr_status lr_model_get_bytes(lr_model *m, void *dst, const char *name, size_t off, size_t n, lr_err *err);

/* ---- writing ---- */

/* One output tensor: its header (data ignored) and the shard it goes to. */
typedef struct {
    lr_st_tensor t;
    const char *shard; /* a shard file name; NULL: chosen by max_shard_bytes     */
} lr_model_entry;

typedef struct {
    size_t max_shard_bytes; /* 0: every entry names its shard (or one file)      */
                            /* >0: entries are packed in order into shards of at  */
                            /* most this many data bytes (a larger tensor alone)  */
    const char *prefix;     /* shard names PREFIX-NNNNN-of-MMMMM.safetensors;      */
                            /* default "model"                                    */
} lr_model_write_opts;

LR_API lr_model_write_opts lr_model_write_opts_default(void);

typedef struct lr_model_writer {
    char *out;           /* the output: a file, or a directory for shards        */
    bool sharded;
    char *index_meta;    /* metadata to keep in the index (JSON object text)     */
    size_t nshards;
    char **shard_name;   /* (nshards) */
    lr_st_writer *w;     /* (nshards) */
    size_t nt;
    char **name;         /* (nt) sorted */
    size_t *shard_of;    /* (nt) */
    size_t total_size;
    bool made_dir;       /* out was created by init: removed if nothing is committed */
    bool single_in_dir;  /* max_shard_bytes held everything: out/model.safetensors, no index */
} lr_model_writer;

/* Starts writing e[0..n) to out: a single file when every entry's shard is NULL or
 * LR_MODEL_FILE and opts does not shard (then out is the file's path), else the directory
 * out (created if missing) with the shards and LR_MODEL_INDEX. meta[0..nm) go into every
 * shard's __metadata__; index_meta (JSON object text or NULL) is kept in the index's
 * "metadata" beside the total_size it computes (anything but an object is LR_EINVAL).
 * opts NULL = defaults. */
LR_API lr_status lr_model_writer_init(lr_model_writer *w, const char *out, const lr_model_entry *e, size_t n,
                                      const lr_st_meta *meta, size_t nm, const char *index_meta,
                                      const lr_model_write_opts *opts, lr_err *err);
/* Appends n bytes (host order) to tensor `name` (lr_st_writer_put). */
LR_API lr_status lr_model_writer_put(lr_model_writer *w, const char *name, const void *data, size_t n, lr_err *err);
/* Checks every tensor is complete, renames every shard into place, then writes the index. */
LR_API lr_status lr_model_writer_commit(lr_model_writer *w, lr_err *err);
/* Discards whatever was not committed (and the directory init made, if still empty). */
LR_API void lr_model_writer_free(lr_model_writer *w);

#ifdef __cplusplus
}
#endif
#endif
