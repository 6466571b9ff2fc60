/* safetensors.c — strict safetensors reader and crash-safe writer (see safetensors.h).
 *
 * Reading parses the header only and keeps the file open: a tensor's bytes are read with
 * pread(2) when asked for, in pieces of at most CHUNK bytes converted as they arrive, so a
 * 16 GB checkpoint costs its header plus the tensor being read (pread rather than mmap:
 * mapped pages count in the resident set until unmapped, and a read error would be a
 * SIGBUS instead of a status). The header is validated in the reference's order: length
 * bounds, UTF-8, JSON whitespace then '{', JSON (jansson, duplicate keys rejected), each
 * entry's fields, then offsets sorted and checked to tile the data section exactly, then the
 * file length. Integers are assembled byte by byte, so the code reads the same on little-
 * and big-endian hosts.
 */
#include "lowrank/io/safetensors.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/internal.h"
#include "io/readfile.h"
#include "lowrank/io/atomicfile.h"

/* ---- dtypes ---- */

static const struct { const char *name; unsigned bits; } dtypes[LR_ST_NDTYPES] = {
    [LR_ST_BOOL] = { "BOOL", 8 },       [LR_ST_F4] = { "F4", 4 },
    [LR_ST_F6_E2M3] = { "F6_E2M3", 6 }, [LR_ST_F6_E3M2] = { "F6_E3M2", 6 },
    [LR_ST_U8] = { "U8", 8 },           [LR_ST_I8] = { "I8", 8 },
    [LR_ST_F8_E5M2] = { "F8_E5M2", 8 }, [LR_ST_F8_E4M3] = { "F8_E4M3", 8 },
    [LR_ST_F8_E8M0] = { "F8_E8M0", 8 }, [LR_ST_F8_E4M3FNUZ] = { "F8_E4M3FNUZ", 8 },
    [LR_ST_F8_E5M2FNUZ] = { "F8_E5M2FNUZ", 8 }, [LR_ST_I16] = { "I16", 16 },
    [LR_ST_U16] = { "U16", 16 },        [LR_ST_F16] = { "F16", 16 },
    [LR_ST_BF16] = { "BF16", 16 },      [LR_ST_I32] = { "I32", 32 },
    [LR_ST_U32] = { "U32", 32 },        [LR_ST_F32] = { "F32", 32 },
    [LR_ST_C64] = { "C64", 64 },        [LR_ST_F64] = { "F64", 64 },
    [LR_ST_I64] = { "I64", 64 },        [LR_ST_U64] = { "U64", 64 },
};

const char *lr_st_dtype_name(lr_st_dtype d)
{
    return (unsigned)d < LR_ST_NDTYPES ? dtypes[d].name : NULL;
}

size_t lr_st_dtype_bits(lr_st_dtype d)
{
    return (unsigned)d < LR_ST_NDTYPES ? dtypes[d].bits : 0;
}

lr_status lr_st_dtype_parse(lr_st_dtype *out, const char *name, lr_err *err)
{
    for (int i = 0; name && i < LR_ST_NDTYPES; i++)
        if (!strcmp(name, dtypes[i].name)) {
            *out = (lr_st_dtype)i;
            return LR_OK;
        }
    return lr__fail(err, LR_EFORMAT, "unknown dtype \"%s\" (F64, F32, F16, BF16, I64, ... as safetensors spells them)",
                    name ? name : "(null)");
}

/* Bytes swapped as a unit when converting to/from little-endian (C64 is two F32s). */
static size_t swap_unit(lr_st_dtype d)
{
    size_t b = dtypes[d].bits;
    if (d == LR_ST_C64) return 4;
    return b >= 8 ? b / 8 : 1;
}

/* "(1000, 784)" into buf. */
static const char *fmt_shape(char *buf, size_t cap, size_t ndim, const size_t *shape)
{
    size_t len = 0;
    len += (size_t)snprintf(buf, cap, "(");
    for (size_t i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%zu", i ? ", " : "", shape[i]);
    if (len < cap) snprintf(buf + len, cap - len, ")");
    return buf;
}

static lr_status nbytes_of(lr_st_dtype dtype, size_t ndim, const size_t *shape, size_t *out,
                           const char *file, const char *name, lr_err *err)
{
    char sb[256];
    *out = 0;
    if ((unsigned)dtype >= LR_ST_NDTYPES)
        return lr__fail(err, LR_EINVAL, "%s: tensor %s: invalid dtype %d", file, name, (int)dtype);
    if (ndim > LR_ST_MAX_DIMS)
        return lr__fail(err, LR_EFORMAT, "%s: tensor %s has %zu dimensions, at most %d supported",
                        file, name, ndim, LR_ST_MAX_DIMS);
    size_t n = 1;
    for (size_t i = 0; i < ndim; i++) {
        if (shape[i] != 0 && n > SIZE_MAX / shape[i])
            return lr__fail(err, LR_ERANGE, "%s: tensor %s: element count of shape %s overflows",
                            file, name, fmt_shape(sb, sizeof sb, ndim, shape));
        n *= shape[i];
    }
    size_t bits = dtypes[dtype].bits;
    if (n > SIZE_MAX / bits)
        return lr__fail(err, LR_ERANGE, "%s: tensor %s: byte count of shape %s x %s overflows",
                        file, name, fmt_shape(sb, sizeof sb, ndim, shape), dtypes[dtype].name);
    if ((n * bits) % 8)
        return lr__fail(err, LR_EFORMAT, "%s: tensor %s: %zu elements of %s do not fill whole "
                        "bytes", file, name, n, dtypes[dtype].name);
    *out = n * bits / 8;
    return LR_OK;
}

lr_status lr_st_tensor_nbytes(const lr_st_tensor *t, size_t *nbytes, lr_err *err)
{
    if (!t || !nbytes) return lr__fail(err, LR_EINVAL, "lr_st_tensor_nbytes: NULL argument");
    return nbytes_of(t->dtype, t->ndim, t->shape, nbytes, "tensor", t->name ? t->name : "(null)",
                     err);
}

/* ---- little helpers ---- */

static int host_is_little(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Strict UTF-8 (as Rust's str::from_utf8): no overlong forms, no surrogates, <= U+10FFFF.
 * Returns the offset of the first bad byte, or n if all is well. */
static size_t utf8_check(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else return i;
        if (n - i < len) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return i;
        i += len;
    }
    return n;
}

static uint64_t le64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

float lr_f16_to_f32(uint16_t h)
{
    /* IEEE binary16: 1 sign, 5 exponent (bias 15), 10 fraction bits. Every value is exact
     * in binary32, subnormals included. */
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, frac = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | frac << 13; /* inf or NaN (payload kept) */
    } else if (exp != 0) {
        bits = sign | (exp + 112) << 23 | frac << 13; /* 112 = 127 - 15 */
    } else if (frac == 0) {
        bits = sign; /* +-0 */
    } else {
        /* subnormal: frac * 2^-24, normalise */
        int e = -1;
        do { frac <<= 1; e++; } while (!(frac & 0x400));
        bits = sign | (uint32_t)(112 - e) << 23 | (frac & 0x3ff) << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float lr_bf16_to_f32(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16; /* bfloat16 is the top half of a binary32 */
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest, ties to even, as numpy's astype(float16) and torch's .half(): overflow
 * goes to ±inf, values below half the smallest subnormal to ±0, NaN stays NaN (quiet). */
uint16_t lr_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) {                                    /* below 2^-14: subnormal */
        if (ax < 0x33000001u) return (uint16_t)sign;           /* <= 2^-25: rounds to 0 */
        uint32_t e = ax >> 23, mant = (ax & 0x7fffffu) | 0x800000u, shift = 126 - e; /* 14..24 */
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((ax >> 13) - (112u << 10)), rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;    /* may carry into the exponent */
    return (uint16_t)(sign | h);
}

uint16_t lr_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    uint32_t lsb = (x >> 16) & 1u;
    return (uint16_t)((x + 0x7fffu + lsb) >> 16);
}

lr_status lr_st_encode_f32(void *dst, lr_st_dtype dtype, const float *src, size_t n, lr_err *err)
{
    unsigned char *p = dst;
    if ((!dst || !src) && n) return lr__fail(err, LR_EINVAL, "st_encode_f32: NULL buffer");
    if (dtype != LR_ST_F32 && dtype != LR_ST_F16 && dtype != LR_ST_BF16 && dtype != LR_ST_F64)
        return lr__fail(err, LR_EINVAL, "st_encode_f32: dtype %s is not F32, F16, BF16 or F64",
                        lr_st_dtype_name(dtype) ? lr_st_dtype_name(dtype) : "(invalid)");
    /* host order, as lr_safetensors_write wants its data */
    for (size_t i = 0; i < n; i++) {
        if (dtype == LR_ST_F32) {
            memcpy(p, &src[i], 4), p += 4;
        } else if (dtype == LR_ST_F64) {
            double d = src[i];
            memcpy(p, &d, 8), p += 8;
        } else {
            uint16_t h = dtype == LR_ST_F16 ? lr_f32_to_f16(src[i]) : lr_f32_to_bf16(src[i]);
            memcpy(p, &h, 2), p += 2;
        }
    }
    return LR_OK;
}

/* ---- the open file ---- */

#define CHUNK ((size_t)1 << 18) /* bytes converted per read: 256 KiB stays in L2 */

void lr_safetensors_free(lr_safetensors *st)
{
    if (!st) return;
    for (size_t i = 0; i < st->nt; i++) free((char *)st->t[i].name);
    for (size_t i = 0; i < st->nm; i++) {
        free((char *)st->meta[i].key);
        free((char *)st->meta[i].value);
    }
    if (st->has_fd) close(st->fd);
    free(st->t);
    free(st->begin);
    free(st->used);
    free(st->by_name);
    free(st->meta);
    free(st->mem);
    free(st->path);
    memset(st, 0, sizeof *st);
}

/* dst <- n bytes at file offset off; LR_EIO naming the file and tensor on a short read. */
static lr_status read_at(const lr_safetensors *st, void *dst, size_t off, size_t n, const char *name, lr_err *err)
{
    if (!st->has_fd) {
        if (n) memcpy(dst, st->mem + off, n);
        return LR_OK;
    }
    unsigned char *p = dst;
    while (n) {
        ssize_t got = pread(st->fd, p, n, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0)
            return lr__fail(err, LR_EIO, "%s: %s: cannot read %zu bytes at offset %zu: %s", st->path, name, n, off,
                            got < 0 ? strerror(errno) : "the file is shorter than when it was opened");
        p += got, off += (size_t)got, n -= (size_t)got;
    }
    return LR_OK;
}

typedef struct { size_t begin, end, nbytes; } span;

static int cmp_meta(const void *a, const void *b)
{
    return strcmp(((const lr_st_meta *)a)->key, ((const lr_st_meta *)b)->key);
}

/* qsort has no context argument and is not stable; a bottom-up merge sort of index arrays
 * with a context pointer is both, in a few lines. */
typedef int (*cmp_fn)(size_t, size_t, const void *);

static void merge_sort(size_t *a, size_t *tmp, size_t n, cmp_fn cmp, const void *ctx)
{
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = cmp(a[j], a[i], ctx) < 0 ? a[j++] : a[i++];
            while (i < mid) tmp[k++] = a[i++];
            while (j < hi) tmp[k++] = a[j++];
        }
        memcpy(a, tmp, n * sizeof *a);
    }
}

typedef struct { const lr_st_tensor *t; const span *sp; } parse_ctx;

static int by_offsets(size_t x, size_t y, const void *c)
{
    const span *s = ((const parse_ctx *)c)->sp;
    if (s[x].begin != s[y].begin) return s[x].begin < s[y].begin ? -1 : 1;
    if (s[x].end != s[y].end) return s[x].end < s[y].end ? -1 : 1;
    return 0;
}

static int by_name(size_t x, size_t y, const void *c)
{
    const lr_st_tensor *t = ((const parse_ctx *)c)->t;
    return strcmp(t[x].name, t[y].name);
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* A JSON integer >= 0 into *out. */
static int json_size(const json_t *v, size_t *out)
{
    if (!json_is_integer(v)) return 0;
    json_int_t i = json_integer_value(v);
    if (i < 0) return 0;
    if ((unsigned long long)i > SIZE_MAX) return 0;
    *out = (size_t)i;
    return 1;
}

/* Parses one tensor entry into t (name already set) and its span. */
static lr_status parse_entry(const char *file, const char *name, json_t *v, lr_st_tensor *t,
                             span *sp, lr_err *err)
{
    if (!json_is_object(v))
        return lr__fail(err, LR_EFORMAT, "%s: tensor %s: entry is %s, expected an object with "
                        "dtype, shape, data_offsets", file, name, json_kind(v));
    const char *key;
    json_t *f;
    json_object_foreach(v, key, f) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return lr__fail(err, LR_EFORMAT, "%s: tensor %s: unexpected field \"%s\", expected "
                            "only dtype, shape, data_offsets", file, name, key);
    }
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
           *off = json_object_get(v, "data_offsets");
    if (!dt || !sh || !off)
        return lr__fail(err, LR_EFORMAT, "%s: tensor %s: missing field \"%s\"", file, name,
                        !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    if (!json_is_string(dt))
        return lr__fail(err, LR_EFORMAT, "%s: tensor %s: dtype is %s, expected a string", file,
                        name, json_kind(dt));
    if (lr_st_dtype_parse(&t->dtype, json_string_value(dt), NULL))
        return lr__fail(err, LR_EFORMAT, "%s: tensor %s: unknown dtype \"%s\"", file, name,
                        json_string_value(dt));
    if (!json_is_array(sh))
        return lr__fail(err, LR_EFORMAT, "%s: tensor %s: shape is %s, expected an array", file,
                        name, json_kind(sh));
    t->ndim = json_array_size(sh);
    if (t->ndim > LR_ST_MAX_DIMS)
        return lr__fail(err, LR_EFORMAT, "%s: tensor %s has %zu dimensions, at most %d supported",
                        file, name, t->ndim, LR_ST_MAX_DIMS);
    for (size_t i = 0; i < t->ndim; i++)
        if (!json_size(json_array_get(sh, i), &t->shape[i]))
            return lr__fail(err, LR_EFORMAT, "%s: tensor %s: shape[%zu] is not a non-negative "
                            "integer", file, name, i);
    if (!json_is_array(off) || json_array_size(off) != 2)
        return lr__fail(err, LR_EFORMAT, "%s: tensor %s: data_offsets must be an array [begin, "
                        "end]", file, name);
    if (!json_size(json_array_get(off, 0), &sp->begin) ||
        !json_size(json_array_get(off, 1), &sp->end))
        return lr__fail(err, LR_EFORMAT, "%s: tensor %s: data_offsets must be non-negative "
                        "integers", file, name);
    return nbytes_of(t->dtype, t->ndim, t->shape, &sp->nbytes, file, name, err);
}

/* *n <- the header length, read from the file's first 8 bytes and checked against the file. */
static lr_status header_length(const lr_safetensors *st, uint64_t *n, lr_err *err)
{
    const char *file = st->path;
    unsigned char len8[8];
    if (st->size < 8)
        return lr__fail(err, LR_EFORMAT, "%s: file is %zu bytes, too short for the 8-byte header "
                        "length", file, st->size);
    lr_status s = read_at(st, len8, 0, 8, "header length", err);
    if (s) return s;
    *n = le64(len8);
    if (*n > LR_ST_MAX_HEADER)
        return lr__fail(err, LR_EFORMAT, "%s: header length %llu exceeds the limit of %u bytes",
                        file, (unsigned long long)*n, LR_ST_MAX_HEADER);
    if (*n > st->size - 8)
        return lr__fail(err, LR_EFORMAT, "%s: header length %llu runs past the end of the file "
                        "(%zu bytes)", file, (unsigned long long)*n, st->size);
    return LR_OK;
}

/* The header h: (n) must be UTF-8 and, after JSON whitespace (safetensors #686), start
 * with '{'. */
static lr_status check_header(const lr_safetensors *st, const unsigned char *h, size_t n, lr_err *err)
{
    const char *file = st->path;
    size_t bad = utf8_check(h, n), i = 0;
    if (bad != n)
        return lr__fail(err, LR_EFORMAT, "%s: header is not valid UTF-8 (byte 0x%02x at header "
                        "offset %zu)", file, h[bad], bad);
    while (i < n && (h[i] == ' ' || h[i] == '\t' || h[i] == '\n' || h[i] == '\r')) i++;
    if (i == n || h[i] != '{') return lr__fail(err, LR_EFORMAT, "%s: header does not start with '{'", file);
    return LR_OK;
}

/* st->meta <- the __metadata__ object v (strings only), sorted by key. */
static lr_status parse_meta(lr_safetensors *st, json_t *v, lr_err *err)
{
    const char *file = st->path;
    if (!json_is_object(v))
        return lr__fail(err, LR_EFORMAT, "%s: __metadata__ is %s, expected an object of strings", file,
                        json_kind(v));
    size_t mc = json_object_size(v);
    st->meta = calloc(mc ? mc : 1, sizeof *st->meta);
    if (!st->meta) return lr__fail(err, LR_ENOMEM, "%s: out of memory", file);
    const char *mk;
    json_t *mv;
    json_object_foreach(v, mk, mv) {
        if (!json_is_string(mv))
            return lr__fail(err, LR_EFORMAT, "%s: __metadata__ value for \"%s\" is %s, expected a string",
                            file, mk, json_kind(mv));
        lr_st_meta *m = &st->meta[st->nm];
        m->key = strdup(mk);
        m->value = strdup(json_string_value(mv));
        st->nm++;
        if (!m->key || !m->value) return lr__fail(err, LR_ENOMEM, "%s: out of memory", file);
    }
    if (st->nm > 1) qsort(st->meta, st->nm, sizeof *st->meta, cmp_meta);
    return LR_OK;
}

/* st->t, sp <- every entry of the header object root (the metadata through parse_meta). */
static lr_status parse_entries(lr_safetensors *st, json_t *root, span **sp, lr_err *err)
{
    const char *file = st->path;
    if (!json_is_object(root))
        return lr__fail(err, LR_EFORMAT, "%s: header is %s, expected an object", file, json_kind(root));
    size_t cap = json_object_size(root);
    st->t = calloc(cap ? cap : 1, sizeof *st->t);
    *sp = calloc(cap ? cap : 1, sizeof **sp);
    if (!st->t || !*sp) return lr__fail(err, LR_ENOMEM, "%s: out of memory", file);
    const char *key;
    json_t *v;
    lr_status s;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) {
            if ((s = parse_meta(st, v, err))) return s;
            continue;
        }
        lr_st_tensor *t = &st->t[st->nt];
        t->name = strdup(key);
        st->nt++;
        if (!t->name) return lr__fail(err, LR_ENOMEM, "%s: out of memory", file);
        if ((s = parse_entry(file, key, v, t, &(*sp)[st->nt - 1], err))) return s;
    }
    return LR_OK;
}

/* As the reference: sorted by offsets (order), the spans must tile [0, data length) exactly,
 * and the file must end with the last one. */
static lr_status check_tiling(const lr_safetensors *st, const span *sp, const size_t *order, uint64_t n,
                              lr_err *err)
{
    const char *file = st->path;
    size_t pos = 0;
    for (size_t k = 0; k < st->nt; k++) {
        const span *p = &sp[order[k]];
        const lr_st_tensor *t = &st->t[order[k]];
        if (p->begin != pos)
            return lr__fail(err, LR_EFORMAT, "%s: tensor %s: data_offsets [%zu, %zu] begin at %zu, "
                            "expected %zu (offsets must start at 0 and be contiguous: %s)", file,
                            t->name, p->begin, p->end, p->begin, pos, p->begin > pos ? "gap" : "overlap");
        if (p->end < p->begin)
            return lr__fail(err, LR_EFORMAT, "%s: tensor %s: data_offsets [%zu, %zu] end before they "
                            "begin", file, t->name, p->begin, p->end);
        if (p->end - p->begin != p->nbytes) {
            char sb[256];
            return lr__fail(err, LR_EFORMAT, "%s: tensor %s: data_offsets [%zu, %zu] hold %zu bytes, "
                            "but shape %s of %s needs %zu", file, t->name, p->begin, p->end,
                            p->end - p->begin, fmt_shape(sb, sizeof sb, t->ndim, t->shape),
                            dtypes[t->dtype].name, p->nbytes);
        }
        pos = p->end;
    }
    size_t data_start = 8 + (size_t)n;
    if (st->size - data_start != pos)
        return lr__fail(err, LR_EFORMAT, "%s: file is %zu bytes, expected %zu (8 + %llu header + "
                        "%zu data): %s", file, st->size, data_start + pos, (unsigned long long)n, pos,
                        st->size - data_start > pos ? "extra bytes after the last tensor"
                                                    : "data section truncated");
    return LR_OK;
}

/* Puts the tensors in file order with their offsets, and sorts by_name. */
static lr_status index_tensors(lr_safetensors *st, const span *sp, const size_t *order, size_t *tmp,
                               uint64_t n, lr_err *err)
{
    lr_st_tensor *sorted = malloc((st->nt ? st->nt : 1) * sizeof *sorted);
    st->begin = malloc((st->nt ? st->nt : 1) * sizeof *st->begin);
    if (!sorted || !st->begin) {
        free(sorted);
        return lr__fail(err, LR_ENOMEM, "%s: out of memory", st->path);
    }
    st->data_start = 8 + (size_t)n;
    for (size_t k = 0; k < st->nt; k++) {
        sorted[k] = st->t[order[k]];
        sorted[k].data = NULL;
        st->begin[k] = sp[order[k]].begin;
    }
    free(st->t);
    st->t = sorted;
    for (size_t i = 0; i < st->nt; i++) st->by_name[i] = i;
    parse_ctx ctx = { st->t, sp };
    merge_sort(st->by_name, tmp, st->nt, by_name, &ctx);
    return LR_OK;
}

static lr_status parse(lr_safetensors *st, lr_err *err)
{
    const char *file = st->path;
    uint64_t n = 0;
    lr_status s = header_length(st, &n, err);
    if (s) return s;
    unsigned char *h = malloc(n ? (size_t)n : 1);
    if (!h) return lr__fail(err, LR_ENOMEM, "%s: out of memory for a %llu-byte header", file, (unsigned long long)n);
    if (!(s = read_at(st, h, 8, (size_t)n, "header", err))) s = check_header(st, h, (size_t)n, err);
    json_error_t je;
    json_t *root = s ? NULL : json_loadb((const char *)h, (size_t)n, JSON_REJECT_DUPLICATES, &je);
    free(h);
    if (s) return s;
    if (!root)
        return lr__fail(err, LR_EFORMAT, "%s: header is not valid JSON: %s (line %d, column %d)",
                        file, je.text, je.line, je.column);
    span *sp = NULL;
    size_t *order = NULL, *tmp = NULL;
    if ((s = parse_entries(st, root, &sp, err))) goto out;
    size_t cnt = st->nt ? st->nt : 1;
    order = malloc(cnt * sizeof *order);
    tmp = malloc(cnt * sizeof *tmp);
    st->used = calloc(cnt, 1);
    st->by_name = malloc(cnt * sizeof *st->by_name);
    if (!order || !tmp || !st->used || !st->by_name) {
        s = lr__fail(err, LR_ENOMEM, "%s: out of memory", file);
        goto out;
    }
    for (size_t i = 0; i < st->nt; i++) order[i] = i;
    parse_ctx ctx = { st->t, sp };
    merge_sort(order, tmp, st->nt, by_offsets, &ctx);
    if (!(s = check_tiling(st, sp, order, n, err))) s = index_tensors(st, sp, order, tmp, n, err);
out:
    free(order);
    free(tmp);
    free(sp);
    json_decref(root);
    return s;
}

lr_status lr_safetensors_from_memory(lr_safetensors *st, const void *buf, size_t n,
                                     const char *name, lr_err *err)
{
    if (!st) return lr__fail(err, LR_EINVAL, "lr_safetensors_from_memory: out is NULL");
    memset(st, 0, sizeof *st);
    if (!buf && n) return lr__fail(err, LR_EINVAL, "lr_safetensors_from_memory: buf is NULL");
    st->path = strdup(name ? name : "(memory)");
    st->mem = malloc(n ? n : 1);
    if (!st->path || !st->mem) {
        lr_safetensors_free(st);
        return lr__fail(err, LR_ENOMEM, "out of memory");
    }
    if (n) memcpy(st->mem, buf, n);
    st->size = n;
    lr_status s = parse(st, err);
    if (s) lr_safetensors_free(st);
    return s;
}

lr_status lr_safetensors_open(lr_safetensors *st, const char *path, lr_err *err)
{
    if (!st) return lr__fail(err, LR_EINVAL, "lr_safetensors_open: out is NULL");
    memset(st, 0, sizeof *st);
    if (!path || !*path) return lr__fail(err, LR_EINVAL, "safetensors: empty path");
    st->path = strdup(path);
    if (!st->path) return lr__fail(err, LR_ENOMEM, "%s: out of memory", path);
    FILE *f = NULL;
    struct stat sb;
    lr_status s = lr__open_regular(&f, &sb, path, "a safetensors file", err);
    if (!s) {
        st->fd = dup(fileno(f));
        fclose(f);
        if (st->fd < 0) s = lr__fail(err, LR_EIO, "cannot open %s: %s", path, strerror(errno));
        st->has_fd = st->fd >= 0;
        st->size = (size_t)sb.st_size;
    }
    if (!s) s = parse(st, err);
    if (s) lr_safetensors_free(st);
    return s;
}

const char *lr_safetensors_path(const lr_safetensors *st) { return st ? st->path : NULL; }
size_t lr_safetensors_count(const lr_safetensors *st) { return st ? st->nt : 0; }

const lr_st_tensor *lr_safetensors_at(const lr_safetensors *st, size_t i)
{
    return st && i < st->nt ? &st->t[i] : NULL;
}

static ptrdiff_t find_index(const lr_safetensors *st, const char *name)
{
    if (!st || !name) return -1;
    size_t lo = 0, hi = st->nt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->t[st->by_name[mid]].name, name);
        if (c == 0) return (ptrdiff_t)st->by_name[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return -1;
}

const lr_st_tensor *lr_safetensors_find(const lr_safetensors *st, const char *name)
{
    ptrdiff_t i = find_index(st, name);
    return i < 0 ? NULL : &st->t[i];
}

const char *lr_safetensors_meta(const lr_safetensors *st, const char *key)
{
    if (!st || !key) return NULL;
    lr_st_meta probe = { key, NULL };
    const lr_st_meta *m = st->nm ? bsearch(&probe, st->meta, st->nm, sizeof *st->meta, cmp_meta)
                                 : NULL;
    return m ? m->value : NULL;
}

size_t lr_safetensors_meta_count(const lr_safetensors *st) { return st ? st->nm : 0; }

const lr_st_meta *lr_safetensors_meta_at(const lr_safetensors *st, size_t i)
{
    return st && i < st->nm ? &st->meta[i] : NULL;
}

lr_status lr_safetensors_mark_used(lr_safetensors *st, const char *name, lr_err *err)
{
    ptrdiff_t i = find_index(st, name);
    if (i < 0)
        return lr__fail(err, LR_EFORMAT, "%s: missing tensor %s", st ? st->path : "(null)",
                        name ? name : "(null)");
    st->used[i] = 1;
    return LR_OK;
}

/* dst: (n) <- n little-endian elements of dtype d at p (F32, F16, BF16 or F64); the index
 * of the first finite F64 value outside float's range, or n. */
static size_t decode_f32(float *dst, const unsigned char *p, size_t n, lr_st_dtype d)
{
    if (d == LR_ST_F32 && host_is_little()) {
        memcpy(dst, p, n * 4);
    } else if (d == LR_ST_F32) {
        for (size_t i = 0; i < n; i++, p += 4) {
            uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            memcpy(&dst[i], &u, 4);
        }
    } else if (d == LR_ST_BF16) {
        for (size_t i = 0; i < n; i++, p += 2) { /* a shift: the compiler vectorises it */
            uint32_t u = (uint32_t)(p[0] | p[1] << 8) << 16;
            memcpy(&dst[i], &u, 4);
        }
    } else if (d == LR_ST_F16) {
        for (size_t i = 0; i < n; i++, p += 2) dst[i] = lr_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
    } else {
        for (size_t i = 0; i < n; i++, p += 8) {
            uint64_t u = le64(p);
            double x;
            memcpy(&x, &u, 8);
            dst[i] = (float)x;
            if (isfinite(x) && !isfinite(dst[i])) return i;
        }
    }
    return n;
}

/* *idx <- the tensor called name, checked to have shape (ndim, shape) and a float dtype. */
static lr_status checked_float(lr_safetensors *st, ptrdiff_t *idx, const char *name, size_t ndim,
                               const size_t *shape, lr_err *err)
{
    *idx = find_index(st, name);
    if (*idx < 0) return lr__fail(err, LR_EFORMAT, "%s: missing tensor %s", st->path, name);
    const lr_st_tensor *t = &st->t[*idx];
    int same = t->ndim == ndim;
    for (size_t i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char a[256], b[256];
        return lr__fail(err, LR_EDIM, "%s: %s: expected shape %s, got %s", st->path, name,
                        fmt_shape(a, sizeof a, ndim, shape), fmt_shape(b, sizeof b, t->ndim, t->shape));
    }
    lr_st_dtype d = t->dtype;
    if (d != LR_ST_F32 && d != LR_ST_F16 && d != LR_ST_BF16 && d != LR_ST_F64)
        return lr__fail(err, LR_EFORMAT, "%s: %s: dtype %s, expected F32 (or F16, BF16, F64)", st->path, name,
                        dtypes[d].name);
    return LR_OK;
}

/* dst: (n) <- elements [first, first + n) of tensor idx (a float dtype) as float32, read in
 * pieces of CHUNK bytes. */
static lr_status read_f32(lr_safetensors *st, ptrdiff_t idx, float *dst, size_t first, size_t n, lr_err *err)
{
    const lr_st_tensor *t = &st->t[idx];
    const char *name = t->name;
    size_t es = dtypes[t->dtype].bits / 8, pos = st->data_start + st->begin[idx] + first * es;
    if (t->dtype == LR_ST_F32 && host_is_little()) return read_at(st, dst, pos, n * 4, name, err);
    unsigned char *buf = malloc(n ? (n * es < CHUNK ? n * es : CHUNK) : 1);
    if (!buf) return lr__fail(err, LR_ENOMEM, "%s: %s: out of memory", st->path, name);
    lr_status s = LR_OK;
    for (size_t i = 0, step = CHUNK / es; !s && i < n; i += step) {
        size_t k = n - i < step ? n - i : step;
        if ((s = read_at(st, buf, pos + i * es, k * es, name, err))) break;
        size_t bad = decode_f32(dst + i, buf, k, t->dtype);
        if (bad < k) {
            double x;
            uint64_t u = le64(buf + bad * 8);
            memcpy(&x, &u, 8);
            s = lr__fail(err, LR_ERANGE, "%s: %s: element %zu = %g is outside float32's range", st->path, name,
                         first + i + bad, x);
        }
    }
    free(buf);
    return s;
}

lr_status lr_safetensors_get_f32(lr_safetensors *st, float *dst, const char *name, size_t ndim,
                                 const size_t *shape, lr_err *err)
{
    if (!st || !name || (ndim && !shape))
        return lr__fail(err, LR_EINVAL, "lr_safetensors_get_f32: NULL argument");
    ptrdiff_t idx;
    lr_status s = checked_float(st, &idx, name, ndim, shape, err);
    if (s) return s;
    size_t n = 1;
    for (size_t i = 0; i < ndim; i++) n *= shape[i]; /* validated at open: no overflow */
    if (n && !dst) return lr__fail(err, LR_EINVAL, "lr_safetensors_get_f32: dst is NULL");
    if (!(s = read_f32(st, idx, dst, 0, n, err))) st->used[idx] = 1;
    return s;
}

lr_status lr_safetensors_get_f32_rows(lr_safetensors *st, float *dst, const char *name, size_t r0, size_t k,
                                      lr_err *err)
{
    if (!st || !name || (k && !dst)) return lr__fail(err, LR_EINVAL, "lr_safetensors_get_f32_rows: NULL argument");
    ptrdiff_t idx = find_index(st, name);
    if (idx < 0) return lr__fail(err, LR_EFORMAT, "%s: missing tensor %s", st->path, name);
    const lr_st_tensor *t = &st->t[idx];
    lr_status s = checked_float(st, &idx, name, t->ndim, t->shape, err);
    if (s) return s;
    if (t->ndim == 0 || r0 > t->shape[0] || k > t->shape[0] - r0)
        return lr__fail(err, LR_EINVAL, "%s: %s: rows [%zu, %zu) outside its %zu", st->path, name, r0, r0 + k,
                        t->ndim ? t->shape[0] : 0);
    size_t row = 1;
    for (size_t i = 1; i < t->ndim; i++) row *= t->shape[i];
    return read_f32(st, idx, dst, r0 * row, k * row, err);
}

lr_status lr_safetensors_get_bytes(lr_safetensors *st, void *dst, const char *name, size_t off, size_t n,
                                   lr_err *err)
{
    if (!st || !name || (n && !dst)) return lr__fail(err, LR_EINVAL, "lr_safetensors_get_bytes: NULL argument");
    ptrdiff_t idx = find_index(st, name);
    if (idx < 0) return lr__fail(err, LR_EFORMAT, "%s: missing tensor %s", st->path, name);
    const lr_st_tensor *t = &st->t[idx];
    size_t nb = 0, u = swap_unit(t->dtype);
    nbytes_of(t->dtype, t->ndim, t->shape, &nb, st->path, name, NULL); /* validated at open */
    if (off > nb || n > nb - off || off % u || n % u)
        return lr__fail(err, LR_EINVAL, "%s: %s: bytes [%zu, %zu) are not whole %zu-byte elements inside its %zu",
                        st->path, name, off, off + n, u, nb);
    lr_status s = read_at(st, dst, st->data_start + st->begin[idx] + off, n, name, err);
    if (s) return s;
    if (u > 1 && !host_is_little()) {
        unsigned char *p = dst;
        for (size_t i = 0; i < n; i += u)
            for (size_t k = 0; k < u / 2; k++) {
                unsigned char c = p[i + k];
                p[i + k] = p[i + u - 1 - k], p[i + u - 1 - k] = c;
            }
    }
    return LR_OK;
}

size_t lr_safetensors_unused(const lr_safetensors *st, const char **names, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; st && i < st->nt; i++)
        if (!st->used[i]) {
            if (names && k < cap) names[k] = st->t[i].name;
            k++;
        }
    return k;
}

lr_status lr_safetensors_check_all_used(const lr_safetensors *st, lr_err *err)
{
    size_t k = lr_safetensors_unused(st, NULL, 0);
    if (k == 0) return LR_OK;
    if (err) {
        char list[400];
        size_t len = 0;
        list[0] = '\0';
        for (size_t i = 0; i < st->nt; i++) {
            if (st->used[i]) continue;
            const char *nm = st->t[i].name;
            if (len + strlen(nm) + 8 >= sizeof list) {
                snprintf(list + len, sizeof list - len, ", ...");
                break;
            }
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", len ? ", " : "", nm);
        }
        lr__fail(err, LR_EFORMAT, "%s: %zu unexpected tensor%s: %s", st->path, k,
                 k == 1 ? "" : "s", list);
    }
    return LR_EFORMAT;
}

/* ---- writing ---- */

typedef struct { const lr_st_tensor *t; } wctx;

static int by_dtype_then_name(size_t x, size_t y, const void *c)
{
    const lr_st_tensor *t = ((const wctx *)c)->t;
    if (t[x].dtype != t[y].dtype) return t[x].dtype > t[y].dtype ? -1 : 1; /* largest first */
    return strcmp(t[x].name, t[y].name);
}

static int by_name_w(size_t x, size_t y, const void *c)
{
    const lr_st_tensor *t = ((const wctx *)c)->t;
    return strcmp(t[x].name, t[y].name);
}

static int by_key_w(size_t x, size_t y, const void *c)
{
    const lr_st_meta *m = c;
    return strcmp(m[x].key, m[y].key);
}

static int valid_utf8(const char *s)
{
    size_t n = strlen(s);
    return utf8_check((const unsigned char *)s, n) == n;
}

/* Writes n bytes of dtype d as little-endian. */
static int write_le(FILE *f, const unsigned char *p, size_t n, lr_st_dtype d)
{
    size_t u = swap_unit(d);
    if (u == 1 || host_is_little()) return n == 0 || fwrite(p, 1, n, f) == n;
    unsigned char tmp[4096];
    while (n) {
        size_t chunk = n < sizeof tmp ? n : sizeof tmp; /* sizeof tmp is a multiple of u */
        for (size_t i = 0; i < chunk; i += u)
            for (size_t k = 0; k < u; k++) tmp[i + k] = p[i + u - 1 - k];
        if (fwrite(tmp, 1, chunk, f) != chunk) return 0;
        p += chunk;
        n -= chunk;
    }
    return 1;
}

/* nbytes[i] <- tensor i's data size; order <- the file order (dtype, then name), after
 * checking names (UTF-8, unique, not __metadata__) and data. */
static lr_status check_tensors_w(const char *path, const lr_st_tensor *t, size_t nt, bool need_data,
                                 size_t *nbytes, size_t *order, size_t *tmp, lr_err *err)
{
    lr_status s;
    for (size_t i = 0; i < nt; i++) {
        if (!t[i].name) return lr__fail(err, LR_EINVAL, "%s: tensor %zu has no name", path, i);
        if (!valid_utf8(t[i].name))
            return lr__fail(err, LR_EINVAL, "%s: tensor name \"%s\" is not valid UTF-8", path, t[i].name);
        if (!strcmp(t[i].name, "__metadata__"))
            return lr__fail(err, LR_EINVAL, "%s: a tensor cannot be called __metadata__", path);
        if ((s = nbytes_of(t[i].dtype, t[i].ndim, t[i].shape, &nbytes[i], path, t[i].name, err))) return s;
        if (need_data && nbytes[i] && !t[i].data) return lr__fail(err, LR_EINVAL, "%s: tensor %s has no data", path, t[i].name);
        order[i] = i;
    }
    wctx c = { t };
    merge_sort(order, tmp, nt, by_name_w, &c);
    for (size_t i = 1; i < nt; i++)
        if (!strcmp(t[order[i]].name, t[order[i - 1]].name))
            return lr__fail(err, LR_EINVAL, "%s: tensor name %s appears twice", path, t[order[i]].name);
    merge_sort(order, tmp, nt, by_dtype_then_name, &c);
    return LR_OK;
}

/* morder <- the metadata sorted by key, after checking UTF-8 and uniqueness. */
static lr_status check_meta_w(const char *path, const lr_st_meta *m, size_t nm, size_t *morder, size_t *tmp,
                              lr_err *err)
{
    for (size_t i = 0; i < nm; i++) {
        if (!m[i].key || !m[i].value || !valid_utf8(m[i].key) || !valid_utf8(m[i].value))
            return lr__fail(err, LR_EINVAL, "%s: metadata entry %zu: key and value must be UTF-8 strings",
                            path, i);
        morder[i] = i;
    }
    merge_sort(morder, tmp, nm, by_key_w, m);
    for (size_t i = 1; i < nm; i++)
        if (!strcmp(m[morder[i]].key, m[morder[i - 1]].key))
            return lr__fail(err, LR_EINVAL, "%s: metadata key %s appears twice", path, m[morder[i]].key);
    return LR_OK;
}

/* One header entry {dtype, shape, data_offsets [pos, pos + nbytes]} under x->name; false
 * when out of memory. (json_*_set_new and _append_new take the value even when they fail.) */
static bool header_entry(json_t *root, const lr_st_tensor *x, size_t pos, size_t nbytes)
{
    json_t *e = json_object(), *shape = json_array(), *off = json_array();
    bool ok = e && shape && off;
    if (!ok) json_decref(e);
    else ok = !json_object_set_new(root, x->name, e); /* root owns e from here */
    ok = ok && !json_object_set_new(e, "dtype", json_string(dtypes[x->dtype].name));
    for (size_t i = 0; ok && i < x->ndim; i++)
        ok = !json_array_append_new(shape, json_integer((json_int_t)x->shape[i]));
    ok = ok && !json_array_append_new(off, json_integer((json_int_t)pos)) &&
         !json_array_append_new(off, json_integer((json_int_t)(pos + nbytes)));
    if (!ok) {
        json_decref(shape);
        json_decref(off);
        return false;
    }
    ok = !json_object_set_new(e, "shape", shape); /* takes shape */
    if (!ok) json_decref(off);
    return ok && !json_object_set_new(e, "data_offsets", off); /* takes off */
}

/* The header text, in the reference's layout (metadata first, then the tensors in file
 * order); NULL when out of memory. */
static char *header_text(const lr_st_tensor *t, size_t nt, const size_t *order, const size_t *nbytes,
                         const lr_st_meta *m, size_t nm, const size_t *morder)
{
    json_t *root = json_object(), *meta = nm ? json_object() : NULL;
    bool ok = root && (!nm || meta);
    if (!ok) json_decref(meta);
    else if (nm) ok = !json_object_set_new(root, "__metadata__", meta); /* takes meta */
    for (size_t i = 0; ok && i < nm; i++)
        ok = !json_object_set_new(meta, m[morder[i]].key, json_string(m[morder[i]].value));
    size_t pos = 0;
    for (size_t k = 0; ok && k < nt; k++) {
        ok = header_entry(root, &t[order[k]], pos, nbytes[order[k]]);
        pos += nbytes[order[k]];
    }
    char *text = ok ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    return text;
}

void lr_st_writer_free(lr_st_writer *w)
{
    if (!w) return;
    lr_atomic_abort(&w->af);
    for (size_t i = 0; w->name && i < w->nt; i++) free(w->name[i]);
    free(w->name), free(w->pos), free(w->nbytes), free(w->done), free(w->dtype), free(w->path);
    memset(w, 0, sizeof *w);
}

/* The writer's arrays, with each tensor's place in the file, names sorted for lookup. */
static lr_status writer_arrays(lr_st_writer *w, const lr_st_tensor *t, size_t nt, const size_t *order,
                               const size_t *nbytes, size_t data_start, lr_err *err)
{
    size_t c = nt ? nt : 1;
    w->name = calloc(c, sizeof *w->name);
    w->pos = malloc(c * sizeof *w->pos), w->nbytes = malloc(c * sizeof *w->nbytes);
    w->done = calloc(c, sizeof *w->done), w->dtype = malloc(c * sizeof *w->dtype);
    if (!w->name || !w->pos || !w->nbytes || !w->done || !w->dtype)
        return lr__fail(err, LR_ENOMEM, "%s: out of memory", w->path);
    w->nt = nt;
    size_t pos = data_start;
    for (size_t k = 0; k < nt; k++) { /* file order is dtype then name; stored by name */
        const lr_st_tensor *x = &t[order[k]];
        size_t j = k;
        while (j > 0 && strcmp(w->name[j - 1], x->name) > 0) { /* insertion: n is small */
            w->name[j] = w->name[j - 1], w->pos[j] = w->pos[j - 1], w->nbytes[j] = w->nbytes[j - 1];
            w->dtype[j] = w->dtype[j - 1];
            j--;
        }
        if (!(w->name[j] = strdup(x->name))) return lr__fail(err, LR_ENOMEM, "%s: out of memory", w->path);
        w->pos[j] = pos, w->nbytes[j] = nbytes[order[k]], w->dtype[j] = x->dtype;
        pos += nbytes[order[k]];
    }
    return LR_OK;
}

/* Opens the temp file and writes the 8-byte length and the header padded with spaces to a
 * multiple of 8 (so the data is 8-byte aligned); *data_start <- where the data begins. */
static lr_status writer_open(lr_st_writer *w, const char *text, size_t *data_start, lr_err *err)
{
    size_t hlen = strlen(text), pad = (8 - hlen % 8) % 8;
    if (hlen + pad > LR_ST_MAX_HEADER)
        return lr__fail(err, LR_ERANGE, "%s: header would be %zu bytes, over the %u-byte limit", w->path,
                        hlen + pad, LR_ST_MAX_HEADER);
    lr_status s = lr_atomic_open(&w->af, w->path, err);
    if (s) return s;
    unsigned char len8[8];
    uint64_t hl = hlen + pad;
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(hl >> (8 * i));
    int ok = fwrite(len8, 1, 8, w->af.f) == 8 && fwrite(text, 1, hlen, w->af.f) == hlen;
    for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', w->af.f) != EOF;
    *data_start = 8 + hlen + pad;
    if (!ok) return lr__fail(err, LR_EIO, "cannot write %s: %s (old file left unchanged)", w->path, strerror(errno));
    return LR_OK;
}

/* lr_st_writer_init; need_data: every tensor with bytes must carry them (lr_safetensors_write). */
static lr_status writer_init(lr_st_writer *w, const char *path, const lr_st_tensor *t, size_t nt, const lr_st_meta *m,
                             size_t nm, bool need_data, lr_err *err)
{
    if (!w) return lr__fail(err, LR_EINVAL, "lr_st_writer_init: w is NULL");
    memset(w, 0, sizeof *w);
    if (!path || !*path) return lr__fail(err, LR_EINVAL, "safetensors: empty path");
    if ((nt && !t) || (nm && !m)) return lr__fail(err, LR_EINVAL, "%s: NULL tensor or metadata array", path);
    size_t *order = malloc((nt ? nt : 1) * sizeof *order), *tmp = malloc(((nt > nm ? nt : nm) + 1) * sizeof *tmp);
    size_t *morder = malloc((nm ? nm : 1) * sizeof *morder), *nbytes = malloc((nt ? nt : 1) * sizeof *nbytes);
    char *text = NULL;
    size_t data_start = 0;
    lr_status s = LR_OK;
    if (!(w->path = strdup(path)) || !order || !tmp || !morder || !nbytes)
        s = lr__fail(err, LR_ENOMEM, "%s: out of memory", path);
    if (!s) s = check_tensors_w(path, t, nt, need_data, nbytes, order, tmp, err);
    if (!s) s = check_meta_w(path, m, nm, morder, tmp, err);
    if (!s && !(text = header_text(t, nt, order, nbytes, m, nm, morder)))
        s = lr__fail(err, LR_ENOMEM, "%s: out of memory building the header", path);
    if (!s) s = writer_open(w, text, &data_start, err);
    if (!s) s = writer_arrays(w, t, nt, order, nbytes, data_start, err);
    free(text), free(order), free(tmp), free(morder), free(nbytes);
    if (s) lr_st_writer_free(w);
    return s;
}

lr_status lr_st_writer_init(lr_st_writer *w, const char *path, const lr_st_tensor *t, size_t nt,
                            const lr_st_meta *m, size_t nm, lr_err *err)
{
    return writer_init(w, path, t, nt, m, nm, false, err);
}

static ptrdiff_t writer_find(const lr_st_writer *w, const char *name)
{
    size_t lo = 0, hi = w->nt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(w->name[mid], name);
        if (c == 0) return (ptrdiff_t)mid;
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return -1;
}

lr_status lr_st_writer_put(lr_st_writer *w, const char *name, const void *data, size_t n, lr_err *err)
{
    if (!w || !w->af.f || !name || (n && !data))
        return lr__fail(err, LR_EINVAL, "lr_st_writer_put: writer not open, or a NULL argument");
    ptrdiff_t i = writer_find(w, name);
    if (i < 0) return lr__fail(err, LR_EINVAL, "%s: tensor %s is not in the header", w->path, name);
    if (n > w->nbytes[i] - w->done[i])
        return lr__fail(err, LR_EINVAL, "%s: tensor %s: %zu more bytes after %zu would exceed its %zu", w->path,
                        name, n, w->done[i], w->nbytes[i]);
    size_t u = swap_unit(w->dtype[i]);
    if (n % u) return lr__fail(err, LR_EINVAL, "%s: tensor %s: %zu bytes are not whole %zu-byte elements",
                               w->path, name, n, u);
    if (fseeko(w->af.f, (off_t)(w->pos[i] + w->done[i]), SEEK_SET) != 0 || !write_le(w->af.f, data, n, w->dtype[i])) {
        w->failed = 1;
        return lr__fail(err, LR_EIO, "cannot write %s: %s (old file left unchanged)", w->path, strerror(errno));
    }
    w->done[i] += n;
    return LR_OK;
}

lr_status lr_st_writer_commit(lr_st_writer *w, lr_err *err)
{
    if (!w || !w->af.f) return lr__fail(err, LR_EINVAL, "lr_st_writer_commit: writer not open");
    if (w->failed) return lr__fail(err, LR_EIO, "%s: an earlier write failed (old file left unchanged)", w->path);
    for (size_t i = 0; i < w->nt; i++)
        if (w->done[i] != w->nbytes[i])
            return lr__fail(err, LR_EINVAL, "%s: tensor %s has %zu of its %zu bytes", w->path, w->name[i],
                            w->done[i], w->nbytes[i]);
    return lr_atomic_commit(&w->af, err);
}

lr_status lr_safetensors_write(const char *path, const lr_st_tensor *t, size_t nt,
                               const lr_st_meta *m, size_t nm, lr_err *err)
{
    lr_st_writer w;
    lr_status s = writer_init(&w, path, t, nt, m, nm, true, err);
    for (size_t i = 0; !s && i < nt; i++) {
        size_t nb = 0;
        nbytes_of(t[i].dtype, t[i].ndim, t[i].shape, &nb, path, t[i].name, NULL);
        s = lr_st_writer_put(&w, t[i].name, t[i].data, nb, err);
    }
    if (!s) s = lr_st_writer_commit(&w, err);
    lr_st_writer_free(&w);
    return s;
}
