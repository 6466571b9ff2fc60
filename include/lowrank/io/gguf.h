/* gguf.h — read and write GGUF (ggml's model file format, version 3), strictly.
 *
 * Layout (all integers little-endian; a "string" is a u64 length then that many bytes, with
 * no NUL):
 *   "GGUF", u32 version (3; 2 has the same layout and is read too), u64 tensor_count,
 *   u64 kv_count;
 *   kv_count pairs: string key, u32 value type (lr_gguf_type), value (an array is u32
 *   element type, u64 count, the elements);
 *   tensor_count infos: string name, u32 n_dims, u64 ne[n_dims] (ne[0] innermost: a
 *   PyTorch (out, in) weight is ne = {in, out}), u32 ggml type, u64 offset in the data
 *   section;
 *   zero padding to a multiple of the alignment (u32 general.alignment, else 32);
 *   the data section: each tensor at its offset, padded to the alignment.
 *
 * The reader checks what ggml's own reader (ggml/src/gguf.cpp) checks, and a little more
 * (docs/formats.md): the magic and version, counts that fit in what is left of the file, keys
 * of 1..65535 printable ASCII bytes and unique, known value types, booleans 0 or 1, arrays
 * whose counts fit in what is left of the file and nest at most LR_GGUF_MAX_DEPTH deep,
 * general.alignment a u32 power of two, tensor names of 1..63 bytes (ggml's limit), valid
 * UTF-8 without control characters and unique, 1..4 dimensions, known ggml types, rows a
 * whole number of blocks, sizes without overflow, offsets that are multiples of the alignment
 * and lay the tensors out in the order of their infos each padded to the alignment (the
 * layout ggml reads and both ggml's and gguf-py's writers produce), and a file that ends
 * where the last tensor's padding ends. Every message starts with the file name and names the
 * key or tensor: "x.gguf: tensor 3 (blk.0.attn_q.weight): offset 96 is not a multiple of the
 * alignment 64". The metadata is read into memory; tensor data is read when asked for (pread).
 *
 * The writer takes the metadata and the tensors' names, shapes and types (F32, F16, BF16),
 * then each tensor's bytes in any order, and writes through lr_atomic_file: a failed write
 * leaves the old file intact and no temp file behind.
 *
 *     lr_gguf g;
 *     if (lr_gguf_open(&g, "adapter.gguf", &err)) ...;
 *     const char *arch;
 *     if (lr_gguf_meta_get_string(&g, &arch, "general.architecture", &err)) ...;
 *     for (size_t i = 0; i < lr_gguf_count(&g); i++) {
 *         const lr_gguf_tensor *t = lr_gguf_at(&g, i);
 *         ... t->name, t->ne[0], t->ne[1], lr_ggml_type_name(t->type) ...
 *     }
 *     lr_gguf_free(&g);
 */
#ifndef LOWRANK_GGUF_H
#define LOWRANK_GGUF_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lowrank/base/status.h"
#include "lowrank/io/atomicfile.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LR_GGUF_MAX_DIMS 4            /* ggml's GGML_MAX_DIMS                                  */
#define LR_GGUF_MAX_NAME 63           /* bytes of a tensor name: GGML_MAX_NAME 64 with its NUL   */
#define LR_GGUF_MAX_KEY 65535         /* bytes of a key (the specification's limit)             */
#define LR_GGUF_MAX_DEPTH 8           /* arrays of arrays: at most this many levels              */
#define LR_GGUF_DEFAULT_ALIGNMENT 32  /* when general.alignment is absent                        */

/* Metadata value types, numbered as in the file. */
typedef enum {
    LR_GGUF_UINT8 = 0, LR_GGUF_INT8 = 1, LR_GGUF_UINT16 = 2, LR_GGUF_INT16 = 3,
    LR_GGUF_UINT32 = 4, LR_GGUF_INT32 = 5, LR_GGUF_FLOAT32 = 6, LR_GGUF_BOOL = 7,
    LR_GGUF_STRING = 8, LR_GGUF_ARRAY = 9, LR_GGUF_UINT64 = 10, LR_GGUF_INT64 = 11,
    LR_GGUF_FLOAT64 = 12,
    LR_GGUF_NTYPES = 13
} lr_gguf_type;

/* Tensor types, numbered as in ggml.h (the gaps are types ggml removed). */
typedef enum {
    LR_GGML_F32 = 0, LR_GGML_F16 = 1, LR_GGML_Q4_0 = 2, LR_GGML_Q4_1 = 3,
    LR_GGML_Q5_0 = 6, LR_GGML_Q5_1 = 7, LR_GGML_Q8_0 = 8, LR_GGML_Q8_1 = 9,
    LR_GGML_Q2_K = 10, LR_GGML_Q3_K = 11, LR_GGML_Q4_K = 12, LR_GGML_Q5_K = 13,
    LR_GGML_Q6_K = 14, LR_GGML_Q8_K = 15, LR_GGML_IQ2_XXS = 16, LR_GGML_IQ2_XS = 17,
    LR_GGML_IQ3_XXS = 18, LR_GGML_IQ1_S = 19, LR_GGML_IQ4_NL = 20, LR_GGML_IQ3_S = 21,
    LR_GGML_IQ2_S = 22, LR_GGML_IQ4_XS = 23, LR_GGML_I8 = 24, LR_GGML_I16 = 25,
    LR_GGML_I32 = 26, LR_GGML_I64 = 27, LR_GGML_F64 = 28, LR_GGML_IQ1_M = 29,
    LR_GGML_BF16 = 30, LR_GGML_TQ1_0 = 34, LR_GGML_TQ2_0 = 35, LR_GGML_MXFP4 = 39,
    LR_GGML_NVFP4 = 40, LR_GGML_Q1_0 = 41, LR_GGML_Q2_0 = 42,
    LR_GGML_NTYPES = 43
} lr_ggml_type;

/* "u8", "i32", "f32", "bool", "string", "array", ...; NULL for a value out of range. */
LR_API const char *lr_gguf_type_name(lr_gguf_type type);
/* "F32", "Q4_K", "IQ2_XXS", ... as gguf-py spells them; NULL for a number ggml does not
 * define (or has removed). */
LR_API const char *lr_ggml_type_name(uint32_t type);
/* A ggml type's block: elements per block (1 for F32, 32 for Q4_0, 256 for Q4_K) and bytes
 * per block (4, 18, 144), as ggml's type traits and gguf-py's GGML_QUANT_SIZES; 0 for an
 * unknown type. A tensor of type T takes ne[0]·ne[1]·ne[2]·ne[3] / elems(T) · bytes(T) bytes,
 * and ne[0] must be a multiple of elems(T). */
LR_API size_t lr_ggml_block_elems(uint32_t type);
LR_API size_t lr_ggml_block_bytes(uint32_t type);

/* A string value: len bytes at s (any bytes, NUL included). In a file that was read, s is
 * also NUL-terminated (s[len] == 0). */
typedef struct {
    const char *s;
    size_t len;
} lr_gguf_str;

/* An array value: n elements of `type` at data, as C arrays of uint8_t (UINT8, and BOOL as 0
 * or 1), int8_t, uint16_t, int16_t, uint32_t, int32_t, float, lr_gguf_str (STRING),
 * lr_gguf_value (ARRAY: each element an array value itself), uint64_t, int64_t or double, in
 * host byte order. data may be NULL when n is 0. */
typedef struct {
    lr_gguf_type type;
    size_t n;
    const void *data;
} lr_gguf_array;

/* A metadata value. Scalars are held widened: u for UINT8/16/32/64 and BOOL (0 or 1), i for
 * INT8/16/32/64, f for FLOAT32 (exact) and FLOAT64; str for STRING; arr for ARRAY. The writer
 * refuses a value outside its type's range ("u 300 is not a u8", a finite f beyond float's
 * range for FLOAT32). */
typedef struct lr_gguf_value {
    lr_gguf_type type;
    union {
        uint64_t u;
        int64_t i;
        double f;
        lr_gguf_str str;
        lr_gguf_array arr;
    };
} lr_gguf_value;

/* One key/value pair. Keys the writer takes are the specification's: lower_snake_case
 * segments of [a-z0-9_] joined by '.', at most LR_GGUF_MAX_KEY bytes ("general.name",
 * "llama.block_count"). */
typedef struct {
    const char *key;
    lr_gguf_value value;
} lr_gguf_kv;

/* One tensor. ne[0] is the innermost (contiguous) dimension, the reverse of PyTorch's order;
 * ne[d] for d >= n_dims is 1 in a file that was read (the writer ignores it). offset (from the
 * start of the data section) and nbytes are filled by the reader; the writer ignores them. */
typedef struct {
    const char *name;
    uint32_t n_dims;                /* 1..LR_GGUF_MAX_DIMS */
    size_t ne[LR_GGUF_MAX_DIMS];
    lr_ggml_type type;
    size_t offset;
    size_t nbytes;
} lr_gguf_tensor;

/* An open file: its metadata and tensor infos, parsed and validated; tensor data is read on
 * demand. The caller owns the struct; its fields belong to the library, and version,
 * alignment and data_start may be read directly. */
typedef struct lr_gguf {
    char *path;
    int fd;                       /* the open file, when has_fd                            */
    int has_fd;
    unsigned char *mem;           /* lr_gguf_from_memory: a copy of the bytes               */
    size_t size;                  /* file length in bytes                                   */
    uint32_t version;             /* 2 or 3                                                 */
    uint32_t alignment;           /* general.alignment, or LR_GGUF_DEFAULT_ALIGNMENT        */
    size_t data_start;            /* where the data section begins in the file              */
    size_t nkv;
    lr_gguf_kv *kv;               /* (nkv) in file order                                    */
    size_t *kv_by_key;            /* (nkv) indices into kv sorted by key                    */
    size_t nt;
    lr_gguf_tensor *t;            /* (nt) in file order                                     */
    size_t *t_by_name;            /* (nt) indices into t sorted by name                     */
    struct lr__gguf_block *arena; /* the library's: names, strings and arrays               */
} lr_gguf;

/* Opens path and validates everything but the tensor data into *g; the file stays open
 * until lr_gguf_free. On failure *g is empty (lr_gguf_free on it is a no-op) and the status
 * is LR_EFORMAT for a malformed file (LR_EIO when it cannot be read, LR_ENOMEM). Several
 * threads may read tensors of one open file at once (pread). */
LR_API lr_status lr_gguf_open(lr_gguf *g, const char *path, lr_err *err);
/* The same from a buffer of n bytes (copied); `name` stands for the file in messages. */
LR_API lr_status lr_gguf_from_memory(lr_gguf *g, const void *buf, size_t n, const char *name, lr_err *err);
/* Frees what g holds and empties it; a no-op on NULL or an empty struct. */
LR_API void lr_gguf_free(lr_gguf *g);

/* The file name given at open. */
LR_API const char *lr_gguf_path(const lr_gguf *g);

/* Tensors in file order: count, the i-th (NULL if i >= count), the one called name (NULL if
 * none). */
LR_API size_t lr_gguf_count(const lr_gguf *g);
LR_API const lr_gguf_tensor *lr_gguf_at(const lr_gguf *g, size_t i);
LR_API const lr_gguf_tensor *lr_gguf_find(const lr_gguf *g, const char *name);

/* Metadata in file order: count, the i-th pair (NULL if i >= count), the pair for key (NULL
 * if none). */
LR_API size_t lr_gguf_meta_count(const lr_gguf *g);
LR_API const lr_gguf_kv *lr_gguf_meta_at(const lr_gguf *g, size_t i);
LR_API const lr_gguf_kv *lr_gguf_meta_find(const lr_gguf *g, const char *key);

/* *out <- the value of key, which must be stored with exactly the getter's type, as ggml's
 * getters require: LR_EFORMAT "x.gguf: missing key general.architecture" or "x.gguf: key
 * general.alignment: type u64, expected u32". A string may hold NUL bytes (its full length is
 * in lr_gguf_meta_find(g, key)->value.str.len). */
LR_API lr_status lr_gguf_meta_get_string(const lr_gguf *g, const char **out, const char *key, lr_err *err);
LR_API lr_status lr_gguf_meta_get_u32(const lr_gguf *g, uint32_t *out, const char *key, lr_err *err);
LR_API lr_status lr_gguf_meta_get_i32(const lr_gguf *g, int32_t *out, const char *key, lr_err *err);
LR_API lr_status lr_gguf_meta_get_u64(const lr_gguf *g, uint64_t *out, const char *key, lr_err *err);
LR_API lr_status lr_gguf_meta_get_i64(const lr_gguf *g, int64_t *out, const char *key, lr_err *err);
LR_API lr_status lr_gguf_meta_get_f32(const lr_gguf *g, float *out, const char *key, lr_err *err);
LR_API lr_status lr_gguf_meta_get_f64(const lr_gguf *g, double *out, const char *key, lr_err *err);
LR_API lr_status lr_gguf_meta_get_bool(const lr_gguf *g, bool *out, const char *key, lr_err *err);
/* *data, *n <- the elements and count of the array under key, whose elements must be of
 * type elem_type (the C types of lr_gguf_array: const float * for FLOAT32, const lr_gguf_str *
 * for STRING, ...): LR_EFORMAT "x.gguf: key tokenizer.ggml.scores: array of i32, expected an
 * array of f32" or "...: type f32, expected an array of f32". */
LR_API lr_status lr_gguf_meta_get_array(const lr_gguf *g, const void **data, size_t *n, const char *key,
                                        lr_gguf_type elem_type, lr_err *err);

/* dst: (n) <- tensor `name` as float32, where n must be its element count (the product of
 * its ne) and its type F32, F16 or BF16 (both widen exactly): LR_EFORMAT "x.gguf: missing
 * tensor w", "x.gguf: blk.0.attn_q.weight: type Q4_K is quantized; lr_gguf_get_f32 reads F32,
 * F16 and BF16", LR_EDIM "x.gguf: w: 12 elements, expected 10". A read error is LR_EIO naming
 * the file and tensor. Read in pieces of 256 KiB, whatever the tensor's size. */
LR_API lr_status lr_gguf_get_f32(lr_gguf *g, float *dst, const char *name, size_t n, lr_err *err);
/* dst <- n bytes of tensor `name` from byte `off` of its data, as stored (little-endian,
 * quantized blocks as they are); [off, off + n) must lie inside the tensor. */
LR_API lr_status lr_gguf_get_bytes(lr_gguf *g, void *dst, const char *name, size_t off, size_t n, lr_err *err);

/* ---- writing ---- */

typedef struct {
    uint32_t alignment; /* of the data section and of every tensor: a power of two >= 8
                           (default LR_GGUF_DEFAULT_ALIGNMENT); written as general.alignment
                           when it is not the default */
} lr_gguf_write_opts;

LR_API lr_gguf_write_opts lr_gguf_write_opts_default(void);

/* A file written a piece at a time. The fields belong to the library. */
typedef struct lr_gguf_writer {
    lr_atomic_file af;
    char *path;
    uint32_t alignment;
    size_t nt;
    char **name;        /* (nt) copies, sorted                                 */
    size_t *pos;        /* (nt) where each tensor's bytes begin in the file    */
    size_t *nbytes;     /* (nt)                                                */
    size_t *done;       /* (nt) bytes put so far                               */
    lr_ggml_type *type; /* (nt)                                                */
    size_t end;         /* the file's length once complete                     */
    int failed;
} lr_gguf_writer;

/* Fixes the header from kv[0..nkv) (written in this order) and t[0..nt) (names, n_dims, ne
 * and types; the tensors are laid out in this order) and opens a temp file beside path. Keys
 * must be unique and of the specification's form, values of a known type and in its range,
 * strings valid UTF-8, arrays at most LR_GGUF_MAX_DEPTH deep. A general.alignment among kv
 * must be the u32 opts->alignment; when it is absent and the alignment is not 32, the writer
 * appends it. Tensor names must be unique, 1..63 bytes of UTF-8 without control
 * characters; n_dims 1..4; types F32, F16 or BF16 (others LR_EINVAL). opts NULL means
 * lr_gguf_write_opts_default(). Every refusal is LR_EINVAL naming the path and the key or
 * tensor ("out.gguf: key General.Name: not lower_snake_case segments joined by '.'"). */
LR_API lr_status lr_gguf_writer_init(lr_gguf_writer *w, const char *path, const lr_gguf_kv *kv, size_t nkv,
                                     const lr_gguf_tensor *t, size_t nt, const lr_gguf_write_opts *opts,
                                     lr_err *err);
/* Appends n bytes to tensor `name`: whole elements (4 bytes for F32, 2 for F16 and BF16) in
 * host byte order (swapped to little-endian on big-endian hosts). The pieces of one tensor
 * come in order, the tensors in any order. */
LR_API lr_status lr_gguf_writer_put(lr_gguf_writer *w, const char *name, const void *data, size_t n, lr_err *err);
/* Appends src[0..n) to tensor `name`, encoded as its type (F16 and BF16 rounded to nearest,
 * ties to even: lr_f32_to_f16, lr_f32_to_bf16). */
LR_API lr_status lr_gguf_writer_put_f32(lr_gguf_writer *w, const char *name, const float *src, size_t n,
                                        lr_err *err);
/* Checks that every tensor is complete ("out.gguf: tensor w has 12 of its 48 bytes"), writes
 * the padding, then flushes, fsyncs and renames the file into place. A failed put or commit
 * leaves the writer to be freed. */
LR_API lr_status lr_gguf_writer_commit(lr_gguf_writer *w, lr_err *err);
/* Discards a file not committed (the old file stays), frees and empties w; a no-op on NULL or
 * an empty writer. */
LR_API void lr_gguf_writer_free(lr_gguf_writer *w);

#ifdef __cplusplus
}
#endif
#endif
