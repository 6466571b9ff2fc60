/* safetensors.h — read and write the safetensors format (Hugging Face), strictly.
 *
 * Layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON
 *   {"__metadata__": {"k": "v", ...},
 *    "linear1.weight": {"dtype": "F32", "shape": [1000, 784], "data_offsets": [0, 3136000]}, ...}
 * then the raw little-endian, C-ordered tensor data; offsets count from the start of the data.
 *
 * The reader checks what the reference implementation (huggingface/safetensors,
 * safetensors/src/tensor.rs) checks, and a little more (see docs/formats.md): header length
 * <= 100,000,000 and inside the file, valid UTF-8 starting with '{', JSON without duplicate
 * keys, known dtypes, non-negative integer shapes, offsets that start at 0 and tile the data
 * section with no gap or overlap, byte counts equal to prod(shape) x dtype size without
 * overflow, a file length that is exactly header + data, and __metadata__ a string-to-string
 * map. Every message starts with the file name.
 *
 * The writer produces what the reference's serialize_to_file produces: tensors sorted by
 * dtype alignment (largest first) then name, compact JSON with __metadata__ first, the header
 * padded with spaces to a multiple of 8 bytes so the data is 8-byte aligned. It writes through
 * lr_atomic_file: a failed write leaves the old file intact and no temp file behind.
 */
#ifndef LOWRANK_SAFETENSORS_H
#define LOWRANK_SAFETENSORS_H

#include "lowrank/base/export.h"
#include <stddef.h>
#include <stdint.h>
#include "lowrank/base/status.h"
#include "lowrank/io/atomicfile.h"

#ifdef __cplusplus
extern "C" {
#endif

/* In the reference's order (increasing alignment); the writer sorts by it. */
typedef enum {
    LR_ST_BOOL, LR_ST_F4, LR_ST_F6_E2M3, LR_ST_F6_E3M2, LR_ST_U8, LR_ST_I8,
    LR_ST_F8_E5M2, LR_ST_F8_E4M3, LR_ST_F8_E8M0, LR_ST_F8_E4M3FNUZ, LR_ST_F8_E5M2FNUZ,
    LR_ST_I16, LR_ST_U16, LR_ST_F16, LR_ST_BF16,
    LR_ST_I32, LR_ST_U32, LR_ST_F32, LR_ST_C64, LR_ST_F64, LR_ST_I64, LR_ST_U64,
    LR_ST_NDTYPES
} lr_st_dtype;

#define LR_ST_MAX_DIMS 8
#define LR_ST_MAX_HEADER 100000000u

/* "F32"; NULL for a value out of range. */
LR_API const char *lr_st_dtype_name(lr_st_dtype d);
/* Bits per element (4 for F4, 6 for F6_*, 8 for U8, 32 for F32, 64 for C64...); 0 if invalid. */
LR_API size_t lr_st_dtype_bits(lr_st_dtype d);
/* The dtype named `name` exactly; LR_EFORMAT if unknown. */
LR_API lr_status lr_st_dtype_parse(lr_st_dtype *out, const char *name, lr_err *err);

/* One tensor. For writing, data is in host byte order (swapped to little-endian on
 * big-endian hosts) and may be NULL only when it has no bytes. In a file opened for reading,
 * data is NULL: the bytes stay on disk until lr_safetensors_get_f32 or
 * lr_safetensors_get_bytes reads them. ndim 0 is a scalar. */
typedef struct {
    const char *name;
    lr_st_dtype dtype;
    size_t ndim;
    size_t shape[LR_ST_MAX_DIMS];
    const void *data;
} lr_st_tensor;

typedef struct { const char *key, *value; } lr_st_meta;

/* Bytes of a tensor's data: prod(shape) * bits / 8. LR_ERANGE on overflow, LR_EFORMAT if a
 * sub-byte dtype does not fill whole bytes or ndim > LR_ST_MAX_DIMS. */
LR_API lr_status lr_st_tensor_nbytes(const lr_st_tensor *t, size_t *nbytes, lr_err *err);

/* Writes tensors t[0..nt) and metadata m[0..nm) (m may be NULL when nm is 0; then there is
 * no __metadata__ entry) to path, crash-safely. Names must be unique, valid UTF-8, not
 * "__metadata__"; metadata keys unique. */
LR_API lr_status lr_safetensors_write(const char *path, const lr_st_tensor *t, size_t nt,
                                      const lr_st_meta *m, size_t nm, lr_err *err);

/* A file written a piece at a time, for outputs larger than memory. lr_st_writer_init fixes
 * the header from t[0..nt) (names, dtypes and shapes; data is ignored) and m[0..nm), with the
 * checks and the bytes of lr_safetensors_write, and opens a temp file beside path.
 * lr_st_writer_put appends n bytes (host order) to tensor `name`: the pieces of one tensor
 * come in order, the tensors in any order. lr_st_writer_commit checks that every tensor is
 * complete ("out.st: tensor w has 12 of its 48 bytes"), then flushes, fsyncs and renames the
 * file into place; lr_st_writer_free discards a file not committed, leaving the old one. A
 * failed put or commit leaves the writer to be freed. The fields belong to the library. */
typedef struct lr_st_writer {
    lr_atomic_file af;
    char *path;
    size_t nt;
    char **name;       /* (nt) copies, sorted                          */
    size_t *pos;       /* (nt) where each tensor's bytes begin in the file */
    size_t *nbytes;    /* (nt) */
    size_t *done;      /* (nt) bytes put so far                        */
    lr_st_dtype *dtype; /* (nt) */
    int failed;
} lr_st_writer;

LR_API lr_status lr_st_writer_init(lr_st_writer *w, const char *path, const lr_st_tensor *t, size_t nt,
                                   const lr_st_meta *m, size_t nm, lr_err *err);
LR_API lr_status lr_st_writer_put(lr_st_writer *w, const char *name, const void *data, size_t n, lr_err *err);
LR_API lr_status lr_st_writer_commit(lr_st_writer *w, lr_err *err);
LR_API void lr_st_writer_free(lr_st_writer *w);

/* An open file: its header, parsed and validated; tensor data is read on demand, so memory
 * is the header's, whatever the file's size. The caller owns the struct; its fields belong
 * to the library (read them through the functions below). */
typedef struct lr_safetensors {
    char *path;
    int fd;              /* the open file, when has_fd                          */
    int has_fd;
    unsigned char *mem;  /* lr_safetensors_from_memory: a copy of the bytes      */
    size_t size;         /* file length in bytes                                 */
    size_t data_start;   /* 8 + header length: where the data section begins     */
    size_t nt;
    lr_st_tensor *t;     /* (nt), file (offset) order; data is NULL               */
    size_t *begin;       /* (nt) each tensor's offset in the data section         */
    unsigned char *used; /* (nt) */
    size_t *by_name;     /* (nt) indices into t sorted by name */
    size_t nm;
    lr_st_meta *meta;    /* (nm), sorted by key */
} lr_safetensors;

/* Opens path and validates its header into *st; the file stays open until
 * lr_safetensors_free (tensor data is read when asked for). On failure *st is empty
 * (lr_safetensors_free on it is a no-op). Several threads may read tensors of one open file
 * at once (pread); opening and freeing are not concurrent with reads. */
LR_API lr_status lr_safetensors_open(lr_safetensors *st, const char *path, lr_err *err);
/* The same from a buffer of n bytes (copied); `name` stands for the file in messages. */
LR_API lr_status lr_safetensors_from_memory(lr_safetensors *st, const void *buf, size_t n,
                                            const char *name, lr_err *err);
/* Frees what st holds and empties it; a no-op on NULL or an empty struct. */
LR_API void lr_safetensors_free(lr_safetensors *st);

/* The file name given at open. */
LR_API const char *lr_safetensors_path(const lr_safetensors *st);
/* Tensors in file (offset) order: count, and the i-th (NULL if i >= count). */
LR_API size_t lr_safetensors_count(const lr_safetensors *st);
LR_API const lr_st_tensor *lr_safetensors_at(const lr_safetensors *st, size_t i);
/* The tensor called name, or NULL. Does not mark it used. */
LR_API const lr_st_tensor *lr_safetensors_find(const lr_safetensors *st, const char *name);
/* Metadata: the value for key or NULL; count and i-th pair (sorted by key). */
LR_API const char *lr_safetensors_meta(const lr_safetensors *st, const char *key);
LR_API size_t lr_safetensors_meta_count(const lr_safetensors *st);
LR_API const lr_st_meta *lr_safetensors_meta_at(const lr_safetensors *st, size_t i);

/* dst: (prod(shape)) <- tensor `name` as float32, checked: it must exist (LR_EFORMAT
 * "m.st: missing tensor linear1.weight"), have exactly this shape (LR_EDIM "m.st:
 * linear1.weight: expected shape (1000, 784), got (784, 1000)") and be F32, F16, BF16 or F64
 * (LR_EFORMAT otherwise). F16 and BF16 widen exactly; F64 rounds to nearest and a finite
 * value outside float's range is LR_ERANGE ("m.st: w: element 0 = 1e+300 is outside
 * float32's range"). A read error is LR_EIO naming the file and tensor. Marks the tensor
 * used. */
LR_API lr_status lr_safetensors_get_f32(lr_safetensors *st, float *dst, const char *name, size_t ndim,
                                        const size_t *shape, lr_err *err);
/* dst: (k, row) <- rows [r0, r0 + k) of tensor `name` (float dtypes as above; row = the
 * product of its dimensions after the first) as float32, for reading a large tensor a block at
 * a time. Does not mark it used. */
LR_API lr_status lr_safetensors_get_f32_rows(lr_safetensors *st, float *dst, const char *name, size_t r0, size_t k,
                                             lr_err *err);
/* dst <- n bytes of tensor `name` from byte `off` of its data, in host byte order (as
 * lr_safetensors_write takes them). off and n must lie inside the tensor and be multiples of
 * its dtype's swap unit (its element size, 4 for C64; any for sub-byte and 1-byte dtypes), so
 * a large tensor can be copied in pieces. Does not mark it used (a copy is not a use). */
LR_API lr_status lr_safetensors_get_bytes(lr_safetensors *st, void *dst, const char *name, size_t off, size_t n,
                                          lr_err *err);
/* Marks a tensor used (for tensors read through find/at); LR_EFORMAT if missing. */
LR_API lr_status lr_safetensors_mark_used(lr_safetensors *st, const char *name, lr_err *err);
/* Number of tensors not marked used; names[0..min(count,cap)) gets them in file order. */
LR_API size_t lr_safetensors_unused(const lr_safetensors *st, const char **names, size_t cap);
/* LR_OK if every tensor was used, else LR_EFORMAT listing the unexpected ones
 * ("m.st: 2 unexpected tensors: extra.weight, extra.bias"). */
LR_API lr_status lr_safetensors_check_all_used(const lr_safetensors *st, lr_err *err);

/* Exact conversions, exposed for tests and for callers reading F16/BF16 themselves. */
LR_API float lr_f16_to_f32(uint16_t h);
LR_API float lr_bf16_to_f32(uint16_t b);
/* float32 -> binary16 / bfloat16, rounding to nearest with ties to even (numpy's
 * astype(float16), torch's .half() and .bfloat16()); overflow gives ±inf, NaN stays NaN. */
LR_API uint16_t lr_f32_to_f16(float f);
LR_API uint16_t lr_f32_to_bf16(float f);
/* dst <- src[0..n) encoded in host byte order as dtype (F32, F16, BF16 or F64; dst holds
 * n·bits/8 bytes), for writing float32 results in a file's own dtype. Other dtypes LR_EINVAL. */
LR_API lr_status lr_st_encode_f32(void *dst, lr_st_dtype dtype, const float *src, size_t n, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
