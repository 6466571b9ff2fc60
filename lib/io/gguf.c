/* gguf.c — strict GGUF reader and crash-safe writer (see gguf.h).
 *
 * Reading walks the header, the metadata and the tensor infos once, front to back, through a
 * 64 KiB window filled with pread(2) (or straight from the caller's buffer), and keeps the
 * file open: a tensor's bytes are read when asked for, in 256 KiB pieces converted as they
 * arrive. Every count read from the file is checked against the bytes left in it before
 * anything is allocated for it (an element, a key/value pair and a tensor info each take a
 * known minimum of bytes), so a small file cannot make the reader allocate more than a small
 * multiple of its own size. Names, strings and arrays live in one arena freed at once.
 * Integers are assembled byte by byte, so big-endian hosts read the same numbers.
 *
 * The checks follow ggml's reader (ggml/src/gguf.cpp): it is what every GGUF consumer runs,
 * so a file it would refuse is refused here too, with the reason; ggml's quiet acceptances
 * (a boolean byte of 7, a key with a newline in it) are refused as the specification says.
 */
#include "lowrank/io/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/internal.h"
#include "io/readfile.h"
#include "lowrank/io/safetensors.h"

/* ---- types ---- */

static const char *const value_names[LR_GGUF_NTYPES] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

/* Bytes a scalar takes in the file (0 for STRING and ARRAY). */
static const unsigned char value_size[LR_GGUF_NTYPES] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };

const char *lr_gguf_type_name(lr_gguf_type type)
{
    return (unsigned)type < LR_GGUF_NTYPES ? value_names[type] : NULL;
}

/* Name, elements per block and bytes per block of each ggml type (ggml.c's type_traits,
 * gguf-py's GGML_QUANT_SIZES); a NULL name is a number ggml does not define. */
static const struct { const char *name; unsigned short elems, bytes; } ggml_types[LR_GGML_NTYPES] = {
    [LR_GGML_F32] = { "F32", 1, 4 },           [LR_GGML_F16] = { "F16", 1, 2 },
    [LR_GGML_Q4_0] = { "Q4_0", 32, 18 },       [LR_GGML_Q4_1] = { "Q4_1", 32, 20 },
    [LR_GGML_Q5_0] = { "Q5_0", 32, 22 },       [LR_GGML_Q5_1] = { "Q5_1", 32, 24 },
    [LR_GGML_Q8_0] = { "Q8_0", 32, 34 },       [LR_GGML_Q8_1] = { "Q8_1", 32, 36 },
    [LR_GGML_Q2_K] = { "Q2_K", 256, 84 },      [LR_GGML_Q3_K] = { "Q3_K", 256, 110 },
    [LR_GGML_Q4_K] = { "Q4_K", 256, 144 },     [LR_GGML_Q5_K] = { "Q5_K", 256, 176 },
    [LR_GGML_Q6_K] = { "Q6_K", 256, 210 },     [LR_GGML_Q8_K] = { "Q8_K", 256, 292 },
    [LR_GGML_IQ2_XXS] = { "IQ2_XXS", 256, 66 }, [LR_GGML_IQ2_XS] = { "IQ2_XS", 256, 74 },
    [LR_GGML_IQ3_XXS] = { "IQ3_XXS", 256, 98 }, [LR_GGML_IQ1_S] = { "IQ1_S", 256, 50 },
    [LR_GGML_IQ4_NL] = { "IQ4_NL", 32, 18 },   [LR_GGML_IQ3_S] = { "IQ3_S", 256, 110 },
    [LR_GGML_IQ2_S] = { "IQ2_S", 256, 82 },    [LR_GGML_IQ4_XS] = { "IQ4_XS", 256, 136 },
    [LR_GGML_I8] = { "I8", 1, 1 },             [LR_GGML_I16] = { "I16", 1, 2 },
    [LR_GGML_I32] = { "I32", 1, 4 },           [LR_GGML_I64] = { "I64", 1, 8 },
    [LR_GGML_F64] = { "F64", 1, 8 },           [LR_GGML_IQ1_M] = { "IQ1_M", 256, 56 },
    [LR_GGML_BF16] = { "BF16", 1, 2 },         [LR_GGML_TQ1_0] = { "TQ1_0", 256, 54 },
    [LR_GGML_TQ2_0] = { "TQ2_0", 256, 66 },    [LR_GGML_MXFP4] = { "MXFP4", 32, 17 },
    [LR_GGML_NVFP4] = { "NVFP4", 64, 36 },     [LR_GGML_Q1_0] = { "Q1_0", 128, 18 },
    [LR_GGML_Q2_0] = { "Q2_0", 64, 18 },
};

const char *lr_ggml_type_name(uint32_t type)
{
    return type < LR_GGML_NTYPES ? ggml_types[type].name : NULL;
}

size_t lr_ggml_block_elems(uint32_t type)
{
    return type < LR_GGML_NTYPES ? ggml_types[type].elems : 0;
}

size_t lr_ggml_block_bytes(uint32_t type)
{
    return type < LR_GGML_NTYPES ? ggml_types[type].bytes : 0;
}

static bool is_float_type(uint32_t t) { return t == LR_GGML_F32 || t == LR_GGML_F16 || t == LR_GGML_BF16; }

/* ---- small helpers ---- */

#define CHUNK ((size_t)1 << 18) /* bytes converted per read of tensor data: 256 KiB stays in L2 */
#define WINDOW ((size_t)1 << 16) /* the reader's window over the metadata */
#define MAX_STRING ((uint64_t)1 << 30) /* ggml's GGUF_MAX_STRING_LENGTH */
#define MIN_KV_BYTES 14 /* key length 8, a 1-byte key, type 4, a 1-byte value */
#define MIN_INFO_BYTES 33 /* name length 8, a 1-byte name, n_dims 4, one ne 8, type 4, offset 8 */

static int host_is_little(void)
{
    const uint16_t one = 1;
    unsigned char c;
    memcpy(&c, &one, 1);
    return c == 1;
}

static uint64_t le_get(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static bool pow2(uint64_t a) { return a && !(a & (a - 1)); }

/* x rounded up to a multiple of the power of two a; false on overflow. */
static bool align_up(size_t *out, size_t x, size_t a)
{
    if (x > SIZE_MAX - (a - 1)) return false;
    *out = (x + a - 1) & ~(a - 1);
    return true;
}

/* Bytes checked to be strict UTF-8 (no overlong forms, surrogates or values past U+10FFFF);
 * returns the offset of the first bad byte, or n. */
static size_t utf8_check(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) k = 1;
        else if (c == 0xe0) k = 2, lo = 0xa0;
        else if (c == 0xed) k = 2, hi = 0x9f;
        else if (c >= 0xe1 && c <= 0xef) k = 2;
        else if (c == 0xf0) k = 3, lo = 0x90;
        else if (c >= 0xf1 && c <= 0xf3) k = 3;
        else if (c == 0xf4) k = 3, hi = 0x8f;
        else return i;
        if (n - i <= k) return i;
        for (size_t j = 1; j <= k; j++) {
            unsigned d = s[i + j];
            if (d < (j == 1 ? lo : 0x80) || d > (j == 1 ? hi : 0xbf)) return i;
        }
        i += k + 1;
    }
    return n;
}

/* A tensor name: UTF-8 with no control character (C0, DEL); the offset of the first bad
 * byte, or n. */
static size_t name_check(const unsigned char *s, size_t n)
{
    size_t bad = utf8_check(s, n);
    for (size_t i = 0; i < bad; i++)
        if (s[i] < 0x20 || s[i] == 0x7f) return i;
    return bad;
}

/* The specification's key: segments of [a-z0-9_]+ joined by single dots. */
static bool key_form_ok(const char *k, size_t n)
{
    if (n == 0 || k[0] == '.' || k[n - 1] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        if (c == '.') {
            if (k[i + 1] == '.') return false;
        } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }
    return true;
}

/* A key or name for a message: at most 96 bytes of it, then "...". */
static const char *shorten(char *buf, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n < 100 || cap < 100) return s;
    snprintf(buf, cap, "%.96s...", s);
    return buf;
}

/* "[4096, 32000]" */
static const char *fmt_ne(char *buf, size_t cap, uint32_t n_dims, const size_t *ne)
{
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (uint32_t i = 0; i < n_dims && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%zu", i ? ", " : "", ne[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
    return buf;
}

/* A bottom-up merge sort of an index array with a context (stable; qsort has neither). */
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

static int kv_cmp(size_t x, size_t y, const void *c)
{
    const lr_gguf_kv *kv = c;
    return strcmp(kv[x].key, kv[y].key);
}

static int tensor_cmp(size_t x, size_t y, const void *c)
{
    const lr_gguf_tensor *t = c;
    return strcmp(t[x].name, t[y].name);
}

/* ---- the arena: everything a parse allocates, freed at once ---- */

struct lr__gguf_block {
    struct lr__gguf_block *next;
    size_t used, cap;
    alignas(16) unsigned char data[];
};

#define ARENA_BLOCK ((size_t)1 << 16)

/* n bytes aligned to 16, or NULL when out of memory. */
static void *arena_alloc(lr_gguf *g, size_t n)
{
    if (n > SIZE_MAX - 64) return NULL;
    n = (n + 15) & ~(size_t)15;
    struct lr__gguf_block *b = g->arena;
    if (b && b->cap - b->used >= n) {
        void *p = b->data + b->used;
        b->used += n;
        return p;
    }
    size_t cap = n > ARENA_BLOCK / 4 ? n : ARENA_BLOCK;
    if (cap > SIZE_MAX - sizeof *b) return NULL;
    struct lr__gguf_block *nb = malloc(sizeof *nb + cap);
    if (!nb) return NULL;
    nb->cap = cap;
    nb->used = n;
    if (b && cap == n) { /* a large piece: keep the current block's room for small ones */
        nb->next = b->next;
        b->next = nb;
    } else {
        nb->next = b;
        g->arena = nb;
    }
    return nb->data;
}

/* n elements of size bytes each, or NULL (out of memory, or n * size overflows). */
static void *arena_array(lr_gguf *g, size_t n, size_t size)
{
    return n > (SIZE_MAX - 64) / size ? NULL : arena_alloc(g, n * size);
}

/* ---- reading the metadata ---- */

typedef struct {
    lr_gguf *g;
    size_t pos;          /* the next byte's offset in the file              */
    unsigned char *win;  /* a file's bytes [wstart, wstart + wlen)           */
    size_t wstart, wlen;
    char where[192];     /* what is being read: "key 3 (general.name)"       */
    lr_err *err;
} rd;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static lr_status bad(rd *r, lr_status s, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lr__fail(r->err, s, "%s: %s: %s", r->g->path, r->where, msg);
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void set_where(rd *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->where, sizeof r->where, fmt, ap);
    va_end(ap);
}

/* dst <- n bytes at file offset off; LR_EIO naming the file and `what` on a short read. */
static lr_status read_at(const lr_gguf *g, void *dst, size_t off, size_t n, const char *what, lr_err *err)
{
    if (!g->has_fd) {
        if (n) memcpy(dst, g->mem + off, n);
        return LR_OK;
    }
    unsigned char *p = dst;
    while (n) {
        ssize_t got = pread(g->fd, p, n, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0)
            return lr__fail(err, LR_EIO, "%s: %s: cannot read %zu bytes at offset %zu: %s", g->path, what, n, off,
                            got < 0 ? strerror(errno) : "the file is shorter than when it was opened");
        p += got, off += (size_t)got, n -= (size_t)got;
    }
    return LR_OK;
}

static size_t left(const rd *r) { return r->g->size - r->pos; }

/* dst <- the next n bytes; `what` names them when the file ends first. */
static lr_status take(rd *r, void *dst, size_t n, const char *what)
{
    lr_gguf *g = r->g;
    if (n > left(r))
        return bad(r, LR_EFORMAT, "%s (%zu bytes at offset %zu) runs past the end of the file (%zu bytes)", what, n,
                   r->pos, g->size);
    unsigned char *p = dst;
    if (!g->has_fd) {
        if (n) memcpy(p, g->mem + r->pos, n);
        r->pos += n;
        return LR_OK;
    }
    while (n) {
        if (r->pos >= r->wstart && r->pos < r->wstart + r->wlen) {
            size_t k = r->wstart + r->wlen - r->pos;
            if (k > n) k = n;
            memcpy(p, r->win + (r->pos - r->wstart), k);
            p += k, r->pos += k, n -= k;
        } else if (n >= WINDOW) { /* a large piece goes straight to its place */
            lr_status s = read_at(g, p, r->pos, n, r->where, r->err);
            if (s) return s;
            r->pos += n;
            return LR_OK;
        } else {
            size_t k = left(r) < WINDOW ? left(r) : WINDOW;
            lr_status s = read_at(g, r->win, r->pos, k, r->where, r->err);
            if (s) return s;
            r->wstart = r->pos, r->wlen = k;
        }
    }
    return LR_OK;
}

static lr_status take_u32(rd *r, uint32_t *v, const char *what)
{
    unsigned char b[4];
    lr_status s = take(r, b, 4, what);
    if (!s) *v = (uint32_t)le_get(b, 4);
    return s;
}

static lr_status take_u64(rd *r, uint64_t *v, const char *what)
{
    unsigned char b[8];
    lr_status s = take(r, b, 8, what);
    if (!s) *v = le_get(b, 8);
    return s;
}

static lr_status oom(rd *r) { return bad(r, LR_ENOMEM, "out of memory"); }

/* *out <- the len bytes of a string whose length was just read (copied, NUL-terminated). */
static lr_status take_body(rd *r, lr_gguf_str *out, uint64_t len, const char *what)
{
    if (len > left(r))
        return bad(r, LR_EFORMAT, "%s of %llu bytes at offset %zu runs past the end of the file (%zu bytes)", what,
                   (unsigned long long)len, r->pos, r->g->size);
    char *p = arena_alloc(r->g, (size_t)len + 1);
    if (!p) return oom(r);
    lr_status s = take(r, p, (size_t)len, what);
    if (s) return s;
    p[len] = '\0';
    out->s = p;
    out->len = (size_t)len;
    return LR_OK;
}

/* *out <- a string: u64 length, then the bytes. */
static lr_status take_string(rd *r, lr_gguf_str *out, const char *what)
{
    uint64_t len;
    char w[96];
    snprintf(w, sizeof w, "the length of %s", what);
    lr_status s = take_u64(r, &len, w);
    if (s) return s;
    if (len > MAX_STRING)
        return bad(r, LR_EFORMAT, "%s of %llu bytes is over the limit of %llu", what, (unsigned long long)len,
                   (unsigned long long)MAX_STRING);
    return take_body(r, out, len, what);
}

static lr_status take_type(rd *r, lr_gguf_type *t, const char *what)
{
    uint32_t v;
    lr_status s = take_u32(r, &v, what);
    if (s) return s;
    if (v >= LR_GGUF_NTYPES) return bad(r, LR_EFORMAT, "%s %u is not a GGUF value type (0 to 12)", what, v);
    *t = (lr_gguf_type)v;
    return LR_OK;
}

/* A scalar of type t (not STRING or ARRAY) into v. */
static lr_status take_scalar(rd *r, lr_gguf_value *v, lr_gguf_type t)
{
    unsigned char b[8];
    size_t n = value_size[t];
    lr_status s = take(r, b, n, "the value");
    if (s) return s;
    uint64_t u = le_get(b, n);
    v->type = t;
    switch (t) {
    case LR_GGUF_BOOL:
        if (u > 1) return bad(r, LR_EFORMAT, "boolean value %u, expected 0 or 1", (unsigned)u);
        v->u = u;
        break;
    case LR_GGUF_UINT8: case LR_GGUF_UINT16: case LR_GGUF_UINT32: case LR_GGUF_UINT64:
        v->u = u;
        break;
    case LR_GGUF_INT8: v->i = (int8_t)u; break;
    case LR_GGUF_INT16: v->i = (int16_t)u; break;
    case LR_GGUF_INT32: v->i = (int32_t)u; break;
    case LR_GGUF_INT64: memcpy(&v->i, &u, 8); break;
    case LR_GGUF_FLOAT32: {
        uint32_t u32 = (uint32_t)u;
        float f;
        memcpy(&f, &u32, 4);
        v->f = f;
        break;
    }
    default: { /* FLOAT64 */
        double d;
        memcpy(&d, &u, 8);
        v->f = d;
        break;
    }
    }
    return LR_OK;
}

/* Bytes of the native element of an array of type t. */
static size_t native_size(lr_gguf_type t)
{
    if (t == LR_GGUF_STRING) return sizeof(lr_gguf_str);
    if (t == LR_GGUF_ARRAY) return sizeof(lr_gguf_value);
    return value_size[t];
}

/* The fewest bytes an element of type t takes in the file. */
static size_t min_bytes(lr_gguf_type t)
{
    return t == LR_GGUF_STRING ? 8 : t == LR_GGUF_ARRAY ? 12 : value_size[t];
}

/* An array's payload (element type, count, elements) into v; depth counts the arrays around
 * it, itself included. */
static lr_status take_array(rd *r, lr_gguf_value *v, int depth)
{
    lr_gguf_type et = LR_GGUF_UINT8;
    uint64_t n = 0;
    lr_status s = take_type(r, &et, "array element type");
    if (s) return s;
    if (et == LR_GGUF_ARRAY && depth >= LR_GGUF_MAX_DEPTH)
        return bad(r, LR_EFORMAT, "arrays nested more than %d deep", LR_GGUF_MAX_DEPTH);
    if ((s = take_u64(r, &n, "the array's element count"))) return s;
    if (n > left(r) / min_bytes(et))
        return bad(r, LR_EFORMAT, "an array of %llu %s elements cannot fit in the %zu bytes left of the file",
                   (unsigned long long)n, value_names[et], left(r));
    v->type = LR_GGUF_ARRAY;
    v->arr.type = et;
    v->arr.n = (size_t)n;
    v->arr.data = NULL;
    if (n == 0) return LR_OK;
    unsigned char *data = arena_array(r->g, (size_t)n, native_size(et));
    if (!data) return oom(r);
    v->arr.data = data;
    char what[64];
    if (et == LR_GGUF_STRING) {
        lr_gguf_str *e = (lr_gguf_str *)data;
        for (size_t i = 0; i < n; i++) {
            snprintf(what, sizeof what, "string element %zu", i);
            if ((s = take_string(r, &e[i], what))) return s;
        }
        return LR_OK;
    }
    if (et == LR_GGUF_ARRAY) {
        lr_gguf_value *e = (lr_gguf_value *)data;
        for (size_t i = 0; i < n; i++)
            if ((s = take_array(r, &e[i], depth + 1))) return s;
        return LR_OK;
    }
    size_t es = value_size[et];
    if ((s = take(r, data, (size_t)n * es, "the array's elements"))) return s;
    if (es > 1 && !host_is_little())
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < es / 2; k++) {
                unsigned char c = data[i * es + k];
                data[i * es + k] = data[i * es + es - 1 - k], data[i * es + es - 1 - k] = c;
            }
    if (et == LR_GGUF_BOOL)
        for (size_t i = 0; i < n; i++)
            if (data[i] > 1)
                return bad(r, LR_EFORMAT, "boolean element %zu is %u, expected 0 or 1", i, data[i]);
    return LR_OK;
}

/* Key/value pair i into *kv. */
static lr_status take_kv(rd *r, lr_gguf_kv *kv, size_t i)
{
    char sb[104];
    lr_gguf_str key;
    uint64_t len;
    set_where(r, "key %zu", i);
    lr_status s = take_u64(r, &len, "the key's length");
    if (s) return s;
    if (len == 0) return bad(r, LR_EFORMAT, "empty key");
    if (len > LR_GGUF_MAX_KEY)
        return bad(r, LR_EFORMAT, "key of %llu bytes, over the limit of %d", (unsigned long long)len, LR_GGUF_MAX_KEY);
    if ((s = take_body(r, &key, len, "the key"))) return s;
    for (size_t k = 0; k < key.len; k++) {
        unsigned char c = (unsigned char)key.s[k];
        if (c < 0x21 || c > 0x7e)
            return bad(r, LR_EFORMAT, "byte 0x%02x at position %zu of the key is not printable ASCII (keys are "
                       "ASCII, as general.name)", c, k);
    }
    kv->key = key.s;
    set_where(r, "key %zu (%s)", i, shorten(sb, sizeof sb, key.s));
    lr_gguf_type t = LR_GGUF_UINT8;
    if ((s = take_type(r, &t, "value type"))) return s;
    if (t == LR_GGUF_STRING) {
        kv->value.type = t;
        return take_string(r, &kv->value.str, "the string value");
    }
    if (t == LR_GGUF_ARRAY) return take_array(r, &kv->value, 1);
    return take_scalar(r, &kv->value, t);
}

/* Tensor info i into *t (offset and nbytes included). */
static lr_status take_info(rd *r, lr_gguf_tensor *t, size_t i)
{
    lr_gguf_str name;
    uint64_t len, v;
    char sb[104], nb[160];
    set_where(r, "tensor %zu", i);
    lr_status s = take_u64(r, &len, "the name's length");
    if (s) return s;
    if (len == 0) return bad(r, LR_EFORMAT, "empty name");
    if (len > LR_GGUF_MAX_NAME)
        return bad(r, LR_EFORMAT, "name of %llu bytes, over ggml's limit of %d", (unsigned long long)len,
                   LR_GGUF_MAX_NAME);
    if ((s = take_body(r, &name, len, "the name"))) return s;
    size_t badc = name_check((const unsigned char *)name.s, name.len);
    if (badc < name.len)
        return bad(r, LR_EFORMAT, "byte 0x%02x at position %zu of the name is %s", (unsigned char)name.s[badc], badc,
                   (unsigned char)name.s[badc] < 0x80 ? "a control character" : "not valid UTF-8");
    t->name = name.s;
    set_where(r, "tensor %zu (%s)", i, shorten(sb, sizeof sb, name.s));
    if ((s = take_u32(r, &t->n_dims, "n_dims"))) return s;
    if (t->n_dims < 1 || t->n_dims > LR_GGUF_MAX_DIMS)
        return bad(r, LR_EFORMAT, "n_dims %u, expected 1 to %d", t->n_dims, LR_GGUF_MAX_DIMS);
    uint64_t nel = 1;
    bool over = false;
    for (uint32_t d = 0; d < LR_GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d >= t->n_dims) continue;
        char what[16];
        snprintf(what, sizeof what, "ne[%u]", d);
        if ((s = take_u64(r, &v, what))) return s;
        if (v > (uint64_t)INT64_MAX || v > SIZE_MAX)
            return bad(r, LR_EFORMAT, "ne[%u] = %llu is over INT64_MAX", d, (unsigned long long)v);
        t->ne[d] = (size_t)v;
        if (v && nel > (uint64_t)INT64_MAX / v) over = true;
        nel *= v;
    }
    if (over) return bad(r, LR_EFORMAT, "shape %s has more than INT64_MAX elements", fmt_ne(nb, sizeof nb, t->n_dims, t->ne));
    uint32_t type;
    if ((s = take_u32(r, &type, "the type"))) return s;
    size_t be = lr_ggml_block_elems(type), bb = lr_ggml_block_bytes(type);
    if (!be) return bad(r, LR_EFORMAT, "unknown ggml type %u", type);
    t->type = (lr_ggml_type)type;
    if (t->ne[0] % be)
        return bad(r, LR_EFORMAT, "type %s: ne[0] = %zu is not a multiple of its block of %zu elements",
                   ggml_types[type].name, t->ne[0], be);
    if (nel / be > (uint64_t)SIZE_MAX / bb || nel / be > (uint64_t)INT64_MAX / bb)
        return bad(r, LR_EFORMAT, "shape %s of %s: its size in bytes overflows", fmt_ne(nb, sizeof nb, t->n_dims, t->ne),
                   ggml_types[type].name);
    t->nbytes = (size_t)(nel / be * bb);
    if ((s = take_u64(r, &v, "the offset"))) return s;
    if (v > SIZE_MAX) return bad(r, LR_EFORMAT, "offset %llu is beyond any file", (unsigned long long)v);
    t->offset = (size_t)v;
    return LR_OK;
}

/* "GGUF", the version and the two counts, checked against the file's size. */
static lr_status take_header(rd *r, uint64_t *nt, uint64_t *nkv)
{
    unsigned char m[4];
    set_where(r, "header");
    lr_status s = take(r, m, 4, "the magic");
    if (s) return s;
    if (memcmp(m, "GGUF", 4)) {
        char show[5];
        for (int i = 0; i < 4; i++) show[i] = m[i] >= 0x20 && m[i] < 0x7f ? (char)m[i] : '?';
        show[4] = '\0';
        return bad(r, LR_EFORMAT, "magic \"%s\" (%02x %02x %02x %02x), expected \"GGUF\": not a GGUF file", show, m[0],
                   m[1], m[2], m[3]);
    }
    uint32_t v;
    if ((s = take_u32(r, &v, "the version"))) return s;
    if (v && !(v & 0xffff))
        return bad(r, LR_EFORMAT, "version 0x%08x: a big-endian GGUF file, which this reader does not take", v);
    if (v == 1) return bad(r, LR_EFORMAT, "version 1 (32-bit counts) is not supported, expected 2 or 3");
    if (v != 2 && v != 3) return bad(r, LR_EFORMAT, "version %u, expected 3 (or 2)", v);
    r->g->version = v;
    if ((s = take_u64(r, nt, "tensor_count")) || (s = take_u64(r, nkv, "kv_count"))) return s;
    size_t rem = left(r);
    if (*nkv > rem / MIN_KV_BYTES || *nt > (rem - *nkv * MIN_KV_BYTES) / MIN_INFO_BYTES)
        return bad(r, LR_EFORMAT, "tensor_count %llu and kv_count %llu cannot fit in the %zu bytes after the header "
                   "(a key/value pair takes at least %d bytes, a tensor info %d)", (unsigned long long)*nt,
                   (unsigned long long)*nkv, rem, MIN_KV_BYTES, MIN_INFO_BYTES);
    return LR_OK;
}

/* Duplicate keys refused, kv_by_key sorted; general.alignment read and checked. */
static lr_status index_kvs(rd *r, size_t *tmp)
{
    lr_gguf *g = r->g;
    char sb[104];
    for (size_t i = 0; i < g->nkv; i++) g->kv_by_key[i] = i;
    merge_sort(g->kv_by_key, tmp, g->nkv, kv_cmp, g->kv);
    for (size_t i = 1; i < g->nkv; i++) {
        size_t a = g->kv_by_key[i - 1], b = g->kv_by_key[i];
        if (!strcmp(g->kv[a].key, g->kv[b].key))
            return lr__fail(r->err, LR_EFORMAT, "%s: key %s appears twice (keys %zu and %zu)", g->path,
                            shorten(sb, sizeof sb, g->kv[a].key), a < b ? a : b, a < b ? b : a);
    }
    g->alignment = LR_GGUF_DEFAULT_ALIGNMENT;
    const lr_gguf_kv *al = lr_gguf_meta_find(g, "general.alignment");
    if (al) {
        if (al->value.type != LR_GGUF_UINT32)
            return lr__fail(r->err, LR_EFORMAT, "%s: key general.alignment: type %s, expected u32", g->path,
                            value_names[al->value.type]);
        if (!pow2(al->value.u))
            return lr__fail(r->err, LR_EFORMAT, "%s: general.alignment %llu is not a power of two", g->path,
                            (unsigned long long)al->value.u);
        g->alignment = (uint32_t)al->value.u;
    }
    return LR_OK;
}

/* Unique names, t_by_name sorted; offsets checked to be the layout ggml reads (in info
 * order, each tensor padded to the alignment) and the file's length to end with it. */
static lr_status check_layout(rd *r, size_t *tmp, size_t infos_end)
{
    lr_gguf *g = r->g;
    size_t a = g->alignment, pos = 0, padded;
    for (size_t i = 0; i < g->nt; i++) g->t_by_name[i] = i;
    merge_sort(g->t_by_name, tmp, g->nt, tensor_cmp, g->t);
    for (size_t i = 1; i < g->nt; i++) {
        size_t x = g->t_by_name[i - 1], y = g->t_by_name[i];
        if (!strcmp(g->t[x].name, g->t[y].name))
            return lr__fail(r->err, LR_EFORMAT, "%s: tensor name %s appears twice (tensors %zu and %zu)", g->path,
                            g->t[x].name, x < y ? x : y, x < y ? y : x);
    }
    if (g->nt == 0) {
        size_t end = infos_end;
        g->data_start = infos_end;
        if (g->size == infos_end || (align_up(&end, infos_end, a) && g->size == end)) return LR_OK;
        return lr__fail(r->err, LR_EFORMAT, "%s: file is %zu bytes, expected %zu or %zu (no tensors: the file ends with "
                        "the metadata, or with it padded to the alignment %zu)", g->path, g->size, infos_end, end, a);
    }
    if (!align_up(&g->data_start, infos_end, a))
        return lr__fail(r->err, LR_EFORMAT, "%s: the data section's offset overflows", g->path);
    for (size_t i = 0; i < g->nt; i++) {
        const lr_gguf_tensor *t = &g->t[i];
        if (t->offset % a)
            return lr__fail(r->err, LR_EFORMAT, "%s: tensor %zu (%s): offset %zu is not a multiple of the alignment %zu",
                            g->path, i, t->name, t->offset, a);
        if (t->offset != pos)
            return lr__fail(r->err, LR_EFORMAT, "%s: tensor %zu (%s): offset %zu, expected %zu (tensors lie in the order "
                            "of their infos, each padded to the alignment %zu, as ggml reads them)", g->path, i,
                            t->name, t->offset, pos, a);
        if (!align_up(&padded, t->nbytes, a) || padded > SIZE_MAX - pos)
            return lr__fail(r->err, LR_EFORMAT, "%s: tensor %zu (%s): the data section's size overflows", g->path, i,
                            t->name);
        pos += padded;
    }
    if (pos > SIZE_MAX - g->data_start || g->size != g->data_start + pos) {
        bool longer = pos <= SIZE_MAX - g->data_start && g->size > g->data_start + pos;
        return lr__fail(r->err, LR_EFORMAT, "%s: file is %zu bytes, expected %llu (the data section at %zu and %zu bytes "
                        "of tensors, each padded to the alignment %zu): %s", g->path, g->size,
                        (unsigned long long)g->data_start + (unsigned long long)pos, g->data_start, pos, a,
                        longer ? "extra bytes after the last tensor" : "the data is truncated");
    }
    return LR_OK;
}

static lr_status parse(lr_gguf *g, lr_err *err)
{
    rd r = { .g = g, .err = err };
    uint64_t nt = 0, nkv = 0;
    size_t *tmp = NULL;
    if (g->has_fd && !(r.win = malloc(WINDOW))) return lr__fail(err, LR_ENOMEM, "%s: out of memory", g->path);
    lr_status s = take_header(&r, &nt, &nkv);
    if (s) goto out;
    size_t cnt = (size_t)(nt > nkv ? nt : nkv) + 1; /* both fit in the file: checked */
    g->kv = arena_array(g, (size_t)nkv + 1, sizeof *g->kv);
    g->kv_by_key = arena_array(g, (size_t)nkv + 1, sizeof *g->kv_by_key);
    g->t = arena_array(g, (size_t)nt + 1, sizeof *g->t);
    g->t_by_name = arena_array(g, (size_t)nt + 1, sizeof *g->t_by_name);
    tmp = malloc(cnt * sizeof *tmp);
    if (!g->kv || !g->kv_by_key || !g->t || !g->t_by_name || !tmp) {
        s = lr__fail(err, LR_ENOMEM, "%s: out of memory", g->path);
        goto out;
    }
    for (size_t i = 0; i < nkv; i++, g->nkv++)
        if ((s = take_kv(&r, &g->kv[i], i))) goto out;
    if ((s = index_kvs(&r, tmp))) goto out;
    for (size_t i = 0; i < nt; i++, g->nt++)
        if ((s = take_info(&r, &g->t[i], i))) goto out;
    s = check_layout(&r, tmp, r.pos);
out:
    free(tmp);
    free(r.win);
    return s;
}

/* ---- the open file ---- */

void lr_gguf_free(lr_gguf *g)
{
    if (!g) return;
    if (g->has_fd) close(g->fd);
    for (struct lr__gguf_block *b = g->arena, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(g->mem);
    free(g->path);
    memset(g, 0, sizeof *g);
}

lr_status lr_gguf_from_memory(lr_gguf *g, const void *buf, size_t n, const char *name, lr_err *err)
{
    if (!g) return lr__fail(err, LR_EINVAL, "lr_gguf_from_memory: g is NULL");
    memset(g, 0, sizeof *g);
    if (!buf && n) return lr__fail(err, LR_EINVAL, "lr_gguf_from_memory: buf is NULL");
    g->path = strdup(name ? name : "(memory)");
    g->mem = malloc(n ? n : 1);
    if (!g->path || !g->mem) {
        lr_gguf_free(g);
        return lr__fail(err, LR_ENOMEM, "lr_gguf_from_memory: out of memory");
    }
    if (n) memcpy(g->mem, buf, n);
    g->size = n;
    lr_status s = parse(g, err);
    if (s) lr_gguf_free(g);
    return s;
}

lr_status lr_gguf_open(lr_gguf *g, const char *path, lr_err *err)
{
    if (!g) return lr__fail(err, LR_EINVAL, "lr_gguf_open: g is NULL");
    memset(g, 0, sizeof *g);
    if (!path || !*path) return lr__fail(err, LR_EINVAL, "lr_gguf_open: empty path");
    if (!(g->path = strdup(path))) return lr__fail(err, LR_ENOMEM, "%s: out of memory", path);
    FILE *f = NULL;
    struct stat sb;
    lr_status s = lr__open_regular(&f, &sb, path, "a GGUF file", err);
    if (!s) {
        g->fd = dup(fileno(f));
        int e = errno;
        fclose(f);
        if (g->fd < 0) s = lr__fail(err, LR_EIO, "cannot open %s: %s", path, strerror(e));
        g->has_fd = g->fd >= 0;
        g->size = (size_t)sb.st_size;
    }
    if (!s) s = parse(g, err);
    if (s) lr_gguf_free(g);
    return s;
}

const char *lr_gguf_path(const lr_gguf *g) { return g ? g->path : NULL; }
size_t lr_gguf_count(const lr_gguf *g) { return g ? g->nt : 0; }
size_t lr_gguf_meta_count(const lr_gguf *g) { return g ? g->nkv : 0; }

const lr_gguf_tensor *lr_gguf_at(const lr_gguf *g, size_t i)
{
    return g && i < g->nt ? &g->t[i] : NULL;
}

const lr_gguf_kv *lr_gguf_meta_at(const lr_gguf *g, size_t i)
{
    return g && i < g->nkv ? &g->kv[i] : NULL;
}

const lr_gguf_tensor *lr_gguf_find(const lr_gguf *g, const char *name)
{
    if (!g || !name) return NULL;
    size_t lo = 0, hi = g->nt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->t[g->t_by_name[mid]].name, name);
        if (c == 0) return &g->t[g->t_by_name[mid]];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

const lr_gguf_kv *lr_gguf_meta_find(const lr_gguf *g, const char *key)
{
    if (!g || !key) return NULL;
    size_t lo = 0, hi = g->nkv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->kv[g->kv_by_key[mid]].key, key);
        if (c == 0) return &g->kv[g->kv_by_key[mid]];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

/* *kv <- the pair for key, of type `type` (an ARRAY of elem when type is ARRAY). */
static lr_status typed(const lr_gguf *g, const lr_gguf_kv **kv, const char *key, lr_gguf_type type,
                       lr_gguf_type elem, const void *out, const char *fn, lr_err *err)
{
    char sb[104];
    if (!g || !key || !out) return lr__fail(err, LR_EINVAL, "%s: NULL argument", fn);
    if (!(*kv = lr_gguf_meta_find(g, key)))
        return lr__fail(err, LR_EFORMAT, "%s: missing key %s", g->path, shorten(sb, sizeof sb, key));
    const lr_gguf_value *v = &(*kv)->value;
    if (type != LR_GGUF_ARRAY) {
        if (v->type != type)
            return lr__fail(err, LR_EFORMAT, "%s: key %s: type %s, expected %s", g->path, (*kv)->key,
                            value_names[v->type], value_names[type]);
    } else if (v->type != LR_GGUF_ARRAY) {
        return lr__fail(err, LR_EFORMAT, "%s: key %s: type %s, expected an array of %s", g->path, (*kv)->key,
                        value_names[v->type], value_names[elem]);
    } else if (v->arr.type != elem) {
        return lr__fail(err, LR_EFORMAT, "%s: key %s: array of %s, expected an array of %s", g->path, (*kv)->key,
                        value_names[v->arr.type], value_names[elem]);
    }
    return LR_OK;
}

lr_status lr_gguf_meta_get_string(const lr_gguf *g, const char **out, const char *key, lr_err *err)
{
    const lr_gguf_kv *kv = NULL;
    lr_status s = typed(g, &kv, key, LR_GGUF_STRING, 0, out, "lr_gguf_meta_get_string", err);
    if (!s) *out = kv->value.str.s;
    return s;
}

lr_status lr_gguf_meta_get_u32(const lr_gguf *g, uint32_t *out, const char *key, lr_err *err)
{
    const lr_gguf_kv *kv = NULL;
    lr_status s = typed(g, &kv, key, LR_GGUF_UINT32, 0, out, "lr_gguf_meta_get_u32", err);
    if (!s) *out = (uint32_t)kv->value.u;
    return s;
}

lr_status lr_gguf_meta_get_i32(const lr_gguf *g, int32_t *out, const char *key, lr_err *err)
{
    const lr_gguf_kv *kv = NULL;
    lr_status s = typed(g, &kv, key, LR_GGUF_INT32, 0, out, "lr_gguf_meta_get_i32", err);
    if (!s) *out = (int32_t)kv->value.i;
    return s;
}

lr_status lr_gguf_meta_get_u64(const lr_gguf *g, uint64_t *out, const char *key, lr_err *err)
{
    const lr_gguf_kv *kv = NULL;
    lr_status s = typed(g, &kv, key, LR_GGUF_UINT64, 0, out, "lr_gguf_meta_get_u64", err);
    if (!s) *out = kv->value.u;
    return s;
}

lr_status lr_gguf_meta_get_i64(const lr_gguf *g, int64_t *out, const char *key, lr_err *err)
{
    const lr_gguf_kv *kv = NULL;
    lr_status s = typed(g, &kv, key, LR_GGUF_INT64, 0, out, "lr_gguf_meta_get_i64", err);
    if (!s) *out = kv->value.i;
    return s;
}

lr_status lr_gguf_meta_get_f32(const lr_gguf *g, float *out, const char *key, lr_err *err)
{
    const lr_gguf_kv *kv = NULL;
    lr_status s = typed(g, &kv, key, LR_GGUF_FLOAT32, 0, out, "lr_gguf_meta_get_f32", err);
    if (!s) *out = (float)kv->value.f; /* exact: it was a float */
    return s;
}

lr_status lr_gguf_meta_get_f64(const lr_gguf *g, double *out, const char *key, lr_err *err)
{
    const lr_gguf_kv *kv = NULL;
    lr_status s = typed(g, &kv, key, LR_GGUF_FLOAT64, 0, out, "lr_gguf_meta_get_f64", err);
    if (!s) *out = kv->value.f;
    return s;
}

lr_status lr_gguf_meta_get_bool(const lr_gguf *g, bool *out, const char *key, lr_err *err)
{
    const lr_gguf_kv *kv = NULL;
    lr_status s = typed(g, &kv, key, LR_GGUF_BOOL, 0, out, "lr_gguf_meta_get_bool", err);
    if (!s) *out = kv->value.u != 0;
    return s;
}

lr_status lr_gguf_meta_get_array(const lr_gguf *g, const void **data, size_t *n, const char *key,
                                 lr_gguf_type elem_type, lr_err *err)
{
    if (!n) return lr__fail(err, LR_EINVAL, "lr_gguf_meta_get_array: NULL argument");
    if ((unsigned)elem_type >= LR_GGUF_NTYPES)
        return lr__fail(err, LR_EINVAL, "lr_gguf_meta_get_array: element type %d is not a GGUF value type",
                        (int)elem_type);
    const lr_gguf_kv *kv = NULL;
    lr_status s = typed(g, &kv, key, LR_GGUF_ARRAY, elem_type, data, "lr_gguf_meta_get_array", err);
    if (s) return s;
    *data = kv->value.arr.data;
    *n = kv->value.arr.n;
    return LR_OK;
}

/* ---- tensor data ---- */

/* *t <- the tensor called name (LR_EFORMAT naming the file when missing). */
static lr_status tensor_named(const lr_gguf *g, const lr_gguf_tensor **t, const char *name, lr_err *err)
{
    if (!(*t = lr_gguf_find(g, name))) return lr__fail(err, LR_EFORMAT, "%s: missing tensor %s", g->path, name);
    return LR_OK;
}

lr_status lr_gguf_get_f32(lr_gguf *g, float *dst, const char *name, size_t n, lr_err *err)
{
    if (!g || !name || (n && !dst)) return lr__fail(err, LR_EINVAL, "lr_gguf_get_f32: NULL argument");
    const lr_gguf_tensor *t;
    lr_status s = tensor_named(g, &t, name, err);
    if (s) return s;
    if (!is_float_type(t->type))
        return lr__fail(err, LR_EFORMAT, "%s: %s: type %s%s; lr_gguf_get_f32 reads F32, F16 and BF16", g->path, name,
                        ggml_types[t->type].name, ggml_types[t->type].elems > 1 ? " is quantized" : "");
    size_t es = ggml_types[t->type].bytes, nel = t->nbytes / es;
    if (n != nel) {
        char nb[160];
        return lr__fail(err, LR_EDIM, "%s: %s: expected %zu elements, got %zu (ne %s)", g->path, name, n, nel,
                        fmt_ne(nb, sizeof nb, t->n_dims, t->ne));
    }
    size_t pos = g->data_start + t->offset;
    if (t->type == LR_GGML_F32 && host_is_little()) return read_at(g, dst, pos, n * 4, name, err);
    unsigned char *buf = malloc(n ? (n * es < CHUNK ? n * es : CHUNK) : 1);
    if (!buf) return lr__fail(err, LR_ENOMEM, "%s: %s: out of memory", g->path, name);
    for (size_t i = 0, step = CHUNK / es; !s && i < n; i += step) {
        size_t k = n - i < step ? n - i : step;
        if ((s = read_at(g, buf, pos + i * es, k * es, name, err))) break;
        const unsigned char *p = buf;
        float *d = dst + i;
        if (t->type == LR_GGML_F32) {
            for (size_t j = 0; j < k; j++, p += 4) {
                uint32_t u = (uint32_t)le_get(p, 4);
                memcpy(&d[j], &u, 4);
            }
        } else if (t->type == LR_GGML_BF16) {
            for (size_t j = 0; j < k; j++, p += 2) d[j] = lr_bf16_to_f32((uint16_t)(p[0] | p[1] << 8));
        } else {
            for (size_t j = 0; j < k; j++, p += 2) d[j] = lr_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
        }
    }
    free(buf);
    return s;
}

lr_status lr_gguf_get_bytes(lr_gguf *g, void *dst, const char *name, size_t off, size_t n, lr_err *err)
{
    if (!g || !name || (n && !dst)) return lr__fail(err, LR_EINVAL, "lr_gguf_get_bytes: NULL argument");
    const lr_gguf_tensor *t;
    lr_status s = tensor_named(g, &t, name, err);
    if (s) return s;
    if (off > t->nbytes || n > t->nbytes - off)
        return lr__fail(err, LR_EINVAL, "%s: %s: bytes [%zu, %zu) are not inside its %zu", g->path, name, off,
                        off + n, t->nbytes);
    return read_at(g, dst, g->data_start + t->offset + off, n, name, err);
}

/* ---- writing ---- */

lr_gguf_write_opts lr_gguf_write_opts_default(void)
{
    lr_gguf_write_opts o = { LR_GGUF_DEFAULT_ALIGNMENT };
    return o;
}

/* Bytes out through the temp file's stream, counted; ok turns false at the first failure
 * (which lr_atomic_commit reports again after its fflush). */
typedef struct {
    FILE *f;
    size_t n;
    bool ok;
} sink;

static void put_bytes(sink *s, const void *p, size_t n)
{
    if (s->ok && n && fwrite(p, 1, n, s->f) != n) s->ok = false;
    s->n += n;
}

static void put_le(sink *s, uint64_t v, size_t n)
{
    unsigned char b[8];
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(v >> (8 * i));
    put_bytes(s, b, n);
}

static void put_str(sink *s, const char *p, size_t n)
{
    put_le(s, n, 8);
    put_bytes(s, p, n);
}

/* n elements of es bytes each, host order, as little-endian. */
static void put_elems(sink *s, const unsigned char *p, size_t n, size_t es)
{
    if (es == 1 || host_is_little()) {
        put_bytes(s, p, n * es);
        return;
    }
    unsigned char tmp[8];
    for (size_t i = 0; i < n; i++, p += es) {
        for (size_t k = 0; k < es; k++) tmp[k] = p[es - 1 - k];
        put_bytes(s, tmp, es);
    }
}

/* A value's payload (no type word for a scalar; element type, count, elements for an array). */
static void put_payload(sink *s, const lr_gguf_value *v)
{
    switch (v->type) {
    case LR_GGUF_STRING: put_str(s, v->str.s, v->str.len); return;
    case LR_GGUF_INT8: case LR_GGUF_INT16: case LR_GGUF_INT32: case LR_GGUF_INT64:
        put_le(s, (uint64_t)v->i, value_size[v->type]);
        return;
    case LR_GGUF_FLOAT32: {
        float f = (float)v->f;
        uint32_t u;
        memcpy(&u, &f, 4);
        put_le(s, u, 4);
        return;
    }
    case LR_GGUF_FLOAT64: {
        uint64_t u;
        memcpy(&u, &v->f, 8);
        put_le(s, u, 8);
        return;
    }
    case LR_GGUF_ARRAY: break;
    default: put_le(s, v->u, value_size[v->type]); return; /* the unsigned types and BOOL */
    }
    lr_gguf_type et = v->arr.type;
    put_le(s, (uint32_t)et, 4);
    put_le(s, v->arr.n, 8);
    if (et == LR_GGUF_STRING) {
        const lr_gguf_str *e = v->arr.data;
        for (size_t i = 0; i < v->arr.n; i++) put_str(s, e[i].s, e[i].len);
    } else if (et == LR_GGUF_ARRAY) {
        const lr_gguf_value *e = v->arr.data;
        for (size_t i = 0; i < v->arr.n; i++) put_payload(s, &e[i]);
    } else {
        put_elems(s, v->arr.data, v->arr.n, value_size[et]);
    }
}

static void put_kv(sink *s, const char *key, const lr_gguf_value *v)
{
    put_str(s, key, strlen(key));
    put_le(s, (uint32_t)v->type, 4);
    put_payload(s, v);
}

/* A writer's refusal: "out.gguf: key K: ..." */
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static lr_status refuse(lr_err *err, const char *path, const char *where, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lr__fail(err, LR_EINVAL, "%s: %s: %s", path, where, msg);
}

static lr_status check_str(const lr_gguf_str *x, const char *path, const char *where, const char *what, lr_err *err)
{
    if (!x->s && x->len) return refuse(err, path, where, "%s is NULL with length %zu", what, x->len);
    size_t b = x->len ? utf8_check((const unsigned char *)x->s, x->len) : 0;
    if (b < x->len) return refuse(err, path, where, "%s is not valid UTF-8 (byte 0x%02x at %zu)", what,
                                  (unsigned char)x->s[b], b);
    return LR_OK;
}

/* A value checked to be writable: a known type, in range, UTF-8 strings, arrays with data and
 * at most LR_GGUF_MAX_DEPTH deep (depth counts the arrays around v). */
static lr_status check_value(const lr_gguf_value *v, int depth, const char *path, const char *where, lr_err *err)
{
    static const uint64_t umax[LR_GGUF_NTYPES] = { [LR_GGUF_UINT8] = UINT8_MAX, [LR_GGUF_UINT16] = UINT16_MAX,
                                                   [LR_GGUF_UINT32] = UINT32_MAX, [LR_GGUF_UINT64] = UINT64_MAX,
                                                   [LR_GGUF_BOOL] = 1 };
    static const int64_t imax[LR_GGUF_NTYPES] = { [LR_GGUF_INT8] = INT8_MAX, [LR_GGUF_INT16] = INT16_MAX,
                                                  [LR_GGUF_INT32] = INT32_MAX, [LR_GGUF_INT64] = INT64_MAX };
    lr_gguf_type t = v->type;
    if ((unsigned)t >= LR_GGUF_NTYPES) return refuse(err, path, where, "value type %d is not a GGUF type", (int)t);
    switch (t) {
    case LR_GGUF_UINT8: case LR_GGUF_UINT16: case LR_GGUF_UINT32: case LR_GGUF_UINT64: case LR_GGUF_BOOL:
        if (v->u > umax[t])
            return refuse(err, path, where, "u %llu is not a %s", (unsigned long long)v->u, value_names[t]);
        return LR_OK;
    case LR_GGUF_INT8: case LR_GGUF_INT16: case LR_GGUF_INT32: case LR_GGUF_INT64:
        if (v->i > imax[t] || v->i < -imax[t] - 1)
            return refuse(err, path, where, "i %lld is not an %s", (long long)v->i, value_names[t]);
        return LR_OK;
    case LR_GGUF_FLOAT32:
        if (isfinite(v->f) && !isfinite((float)v->f))
            return refuse(err, path, where, "f %g is outside float32's range", v->f);
        return LR_OK;
    case LR_GGUF_FLOAT64: return LR_OK;
    case LR_GGUF_STRING: return check_str(&v->str, path, where, "the string", err);
    default: break;
    }
    lr_gguf_type et = v->arr.type;
    if ((unsigned)et >= LR_GGUF_NTYPES)
        return refuse(err, path, where, "array element type %d is not a GGUF type", (int)et);
    if (!v->arr.data && v->arr.n) return refuse(err, path, where, "array of %zu elements with no data", v->arr.n);
    char what[48];
    if (et == LR_GGUF_BOOL) {
        const uint8_t *e = v->arr.data;
        for (size_t i = 0; i < v->arr.n; i++)
            if (e[i] > 1) return refuse(err, path, where, "boolean element %zu is %u, expected 0 or 1", i, e[i]);
    } else if (et == LR_GGUF_STRING) {
        const lr_gguf_str *e = v->arr.data;
        for (size_t i = 0; i < v->arr.n; i++) {
            snprintf(what, sizeof what, "string element %zu", i);
            lr_status s = check_str(&e[i], path, where, what, err);
            if (s) return s;
        }
    } else if (et == LR_GGUF_ARRAY) {
        if (depth >= LR_GGUF_MAX_DEPTH)
            return refuse(err, path, where, "arrays nested more than %d deep", LR_GGUF_MAX_DEPTH);
        const lr_gguf_value *e = v->arr.data;
        for (size_t i = 0; i < v->arr.n; i++) {
            if (e[i].type != LR_GGUF_ARRAY)
                return refuse(err, path, where, "element %zu of an array of arrays has type %s", i,
                              lr_gguf_type_name(e[i].type) ? lr_gguf_type_name(e[i].type) : "(invalid)");
            lr_status s = check_value(&e[i], depth + 1, path, where, err);
            if (s) return s;
        }
    }
    return LR_OK;
}

/* The keys and values: form, uniqueness, writability; *has_align <- general.alignment is
 * among them (then it must be the u32 alignment). */
static lr_status check_kvs(const char *path, const lr_gguf_kv *kv, size_t nkv, uint32_t alignment, size_t *order,
                           size_t *tmp, bool *has_align, lr_err *err)
{
    char where[160], sb[104];
    *has_align = false;
    for (size_t i = 0; i < nkv; i++) {
        if (!kv[i].key) return lr__fail(err, LR_EINVAL, "%s: key %zu is NULL", path, i);
        size_t len = strlen(kv[i].key);
        snprintf(where, sizeof where, "key %s", shorten(sb, sizeof sb, kv[i].key));
        if (len > LR_GGUF_MAX_KEY)
            return refuse(err, path, where, "%zu bytes, over the limit of %d", len, LR_GGUF_MAX_KEY);
        if (!key_form_ok(kv[i].key, len))
            return refuse(err, path, where, "not lower_snake_case segments of [a-z0-9_] joined by '.'");
        lr_status s = check_value(&kv[i].value, kv[i].value.type == LR_GGUF_ARRAY, path, where, err);
        if (s) return s;
        if (!strcmp(kv[i].key, "general.alignment")) {
            if (kv[i].value.type != LR_GGUF_UINT32 || kv[i].value.u != alignment)
                return refuse(err, path, where, "%s %llu, expected the u32 %u of opts->alignment",
                              value_names[kv[i].value.type],
                              (unsigned long long)(kv[i].value.type == LR_GGUF_UINT32 ? kv[i].value.u : 0), alignment);
            *has_align = true;
        }
        order[i] = i;
    }
    merge_sort(order, tmp, nkv, kv_cmp, kv);
    for (size_t i = 1; i < nkv; i++)
        if (!strcmp(kv[order[i]].key, kv[order[i - 1]].key))
            return lr__fail(err, LR_EINVAL, "%s: key %s appears twice", path, shorten(sb, sizeof sb, kv[order[i]].key));
    return LR_OK;
}

/* The tensors: names, shapes, types, uniqueness; nbytes[i] <- tensor i's size. */
static lr_status check_tensors(const char *path, const lr_gguf_tensor *t, size_t nt, size_t *nbytes, size_t *order,
                               size_t *tmp, lr_err *err)
{
    char where[160], nb[160];
    for (size_t i = 0; i < nt; i++) {
        if (!t[i].name) return lr__fail(err, LR_EINVAL, "%s: tensor %zu has no name", path, i);
        size_t len = strlen(t[i].name), b = name_check((const unsigned char *)t[i].name, len);
        snprintf(where, sizeof where, "tensor %zu (%.100s)", i, t[i].name);
        if (len == 0 || len > LR_GGUF_MAX_NAME)
            return refuse(err, path, where, "a name of %zu bytes, expected 1 to %d (ggml's limit)", len,
                          LR_GGUF_MAX_NAME);
        if (b < len) return refuse(err, path, where, "byte 0x%02x at %zu of the name is a control character or not "
                                   "UTF-8", (unsigned char)t[i].name[b], b);
        if (t[i].n_dims < 1 || t[i].n_dims > LR_GGUF_MAX_DIMS)
            return refuse(err, path, where, "n_dims %u, expected 1 to %d", t[i].n_dims, LR_GGUF_MAX_DIMS);
        if (!is_float_type(t[i].type))
            return refuse(err, path, where, "type %s: the writer takes F32, F16 and BF16",
                          lr_ggml_type_name(t[i].type) ? lr_ggml_type_name(t[i].type) : "(unknown)");
        uint64_t n = ggml_types[t[i].type].bytes, lim = (uint64_t)SIZE_MAX < (uint64_t)INT64_MAX ? (uint64_t)SIZE_MAX
                                                                                                : (uint64_t)INT64_MAX;
        for (uint32_t d = 0; d < t[i].n_dims; d++) {
            uint64_t e = t[i].ne[d];
            if (e > (uint64_t)INT64_MAX || (e && n > lim / e))
                return refuse(err, path, where, "shape %s of %s: its size in bytes overflows",
                              fmt_ne(nb, sizeof nb, t[i].n_dims, t[i].ne), ggml_types[t[i].type].name);
            n *= e;
        }
        nbytes[i] = (size_t)n;
        order[i] = i;
    }
    merge_sort(order, tmp, nt, tensor_cmp, t);
    for (size_t i = 1; i < nt; i++)
        if (!strcmp(t[order[i]].name, t[order[i - 1]].name))
            return lr__fail(err, LR_EINVAL, "%s: tensor name %s appears twice", path, t[order[i]].name);
    return LR_OK;
}

void lr_gguf_writer_free(lr_gguf_writer *w)
{
    if (!w) return;
    lr_atomic_abort(&w->af);
    for (size_t i = 0; w->name && i < w->nt; i++) free(w->name[i]);
    free(w->name), free(w->pos), free(w->nbytes), free(w->done), free(w->type), free(w->path);
    memset(w, 0, sizeof *w);
}

/* Writes the header, the metadata, the tensor infos and the padding to the temp file, and
 * fills the writer's arrays (sorted by name for put). */
static lr_status writer_layout(lr_gguf_writer *w, const lr_gguf_kv *kv, size_t nkv, bool has_align,
                               const lr_gguf_tensor *t, size_t nt, const size_t *nbytes, const size_t *order,
                               lr_err *err)
{
    size_t a = w->alignment, c = nt ? nt : 1, *off = malloc(c * sizeof *off), pos = 0;
    w->name = calloc(c, sizeof *w->name);
    w->pos = malloc(c * sizeof *w->pos), w->nbytes = malloc(c * sizeof *w->nbytes);
    w->done = calloc(c, sizeof *w->done), w->type = malloc(c * sizeof *w->type);
    if (!off || !w->name || !w->pos || !w->nbytes || !w->done || !w->type) {
        free(off);
        return lr__fail(err, LR_ENOMEM, "%s: out of memory", w->path);
    }
    for (size_t i = 0; i < nt; i++) {
        size_t p;
        off[i] = pos;
        if (!align_up(&p, nbytes[i], a) || p > SIZE_MAX - pos) {
            free(off);
            return lr__fail(err, LR_EINVAL, "%s: the data section's size overflows", w->path);
        }
        pos += p;
    }
    sink s = { w->af.f, 0, true };
    put_bytes(&s, "GGUF", 4);
    put_le(&s, 3, 4);
    put_le(&s, nt, 8);
    put_le(&s, nkv + !(has_align || a == LR_GGUF_DEFAULT_ALIGNMENT), 8);
    for (size_t i = 0; i < nkv; i++) put_kv(&s, kv[i].key, &kv[i].value);
    if (!has_align && a != LR_GGUF_DEFAULT_ALIGNMENT) {
        lr_gguf_value v = { .type = LR_GGUF_UINT32, .u = a };
        put_kv(&s, "general.alignment", &v);
    }
    for (size_t i = 0; i < nt; i++) {
        put_str(&s, t[i].name, strlen(t[i].name));
        put_le(&s, t[i].n_dims, 4);
        for (uint32_t d = 0; d < t[i].n_dims; d++) put_le(&s, t[i].ne[d], 8);
        put_le(&s, (uint32_t)t[i].type, 4);
        put_le(&s, off[i], 8);
    }
    size_t data_start;
    if (!align_up(&data_start, s.n, a) || pos > SIZE_MAX - data_start) {
        free(off);
        return lr__fail(err, LR_EINVAL, "%s: the file's size overflows", w->path);
    }
    static const unsigned char zeros[64];
    for (size_t k = data_start - s.n; k; ) { /* the padding before the data section */
        size_t m = k < sizeof zeros ? k : sizeof zeros;
        put_bytes(&s, zeros, m);
        k -= m;
    }
    w->end = data_start + pos;
    w->nt = nt;
    for (size_t k = 0; k < nt; k++) {
        size_t i = order[k];
        if (!(w->name[k] = strdup(t[i].name))) {
            free(off);
            return lr__fail(err, LR_ENOMEM, "%s: out of memory", w->path);
        }
        w->pos[k] = data_start + off[i], w->nbytes[k] = nbytes[i], w->type[k] = t[i].type;
    }
    free(off);
    if (!s.ok) return lr__fail(err, LR_EIO, "cannot write %s: %s (old file left unchanged)", w->path, strerror(errno));
    return LR_OK;
}

lr_status lr_gguf_writer_init(lr_gguf_writer *w, const char *path, const lr_gguf_kv *kv, size_t nkv,
                              const lr_gguf_tensor *t, size_t nt, const lr_gguf_write_opts *opts, lr_err *err)
{
    if (!w) return lr__fail(err, LR_EINVAL, "lr_gguf_writer_init: w is NULL");
    memset(w, 0, sizeof *w);
    if (!path || !*path) return lr__fail(err, LR_EINVAL, "lr_gguf_writer_init: empty path");
    if ((nkv && !kv) || (nt && !t)) return lr__fail(err, LR_EINVAL, "%s: NULL key/value or tensor array", path);
    lr_gguf_write_opts o = opts ? *opts : lr_gguf_write_opts_default();
    if (!pow2(o.alignment) || o.alignment < 8)
        return lr__fail(err, LR_EINVAL, "%s: opts->alignment %u, expected a power of two >= 8", path, o.alignment);
    size_t big = (nt > nkv ? nt : nkv) + 1;
    size_t *order = malloc(big * sizeof *order), *tmp = malloc(big * sizeof *tmp);
    size_t *nbytes = malloc((nt + 1) * sizeof *nbytes);
    bool has_align = false;
    lr_status s = LR_OK;
    if (!(w->path = strdup(path)) || !order || !tmp || !nbytes) s = lr__fail(err, LR_ENOMEM, "%s: out of memory", path);
    w->alignment = o.alignment;
    if (!s) s = check_kvs(path, kv, nkv, o.alignment, order, tmp, &has_align, err);
    if (!s) s = check_tensors(path, t, nt, nbytes, order, tmp, err);
    if (!s) s = lr_atomic_open(&w->af, path, err);
    if (!s) s = writer_layout(w, kv, nkv, has_align, t, nt, nbytes, order, err);
    free(order), free(tmp), free(nbytes);
    if (s) lr_gguf_writer_free(w);
    return s;
}

static ptrdiff_t writer_find(const lr_gguf_writer *w, const char *name)
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

/* Tensor i of an open writer, with room for n more bytes of whole elements. */
static lr_status put_check(lr_gguf_writer *w, ptrdiff_t *i, const char *name, size_t n, const char *fn, lr_err *err)
{
    if (!w || !w->af.f || !name) return lr__fail(err, LR_EINVAL, "%s: writer not open, or a NULL argument", fn);
    if ((*i = writer_find(w, name)) < 0)
        return lr__fail(err, LR_EINVAL, "%s: tensor %s is not in the header", w->path, name);
    if (n > w->nbytes[*i] - w->done[*i])
        return lr__fail(err, LR_EINVAL, "%s: tensor %s: %zu more bytes after %zu would exceed its %zu", w->path, name,
                        n, w->done[*i], w->nbytes[*i]);
    size_t es = ggml_types[w->type[*i]].bytes;
    if (n % es)
        return lr__fail(err, LR_EINVAL, "%s: tensor %s: %zu bytes are not whole %zu-byte elements", w->path, name, n,
                        es);
    return LR_OK;
}

/* n bytes (host order elements of tensor i) at its next position. */
static lr_status put_at(lr_gguf_writer *w, ptrdiff_t i, const void *data, size_t n, lr_err *err)
{
    sink s = { w->af.f, 0, true };
    if (fseeko(w->af.f, (off_t)(w->pos[i] + w->done[i]), SEEK_SET) != 0) s.ok = false;
    size_t es = ggml_types[w->type[i]].bytes;
    put_elems(&s, data, n / es, es);
    if (!s.ok) {
        w->failed = 1;
        return lr__fail(err, LR_EIO, "cannot write %s: %s (old file left unchanged)", w->path, strerror(errno));
    }
    w->done[i] += n;
    return LR_OK;
}

lr_status lr_gguf_writer_put(lr_gguf_writer *w, const char *name, const void *data, size_t n, lr_err *err)
{
    ptrdiff_t i = -1;
    lr_status s = put_check(w, &i, name, n, "lr_gguf_writer_put", err);
    if (s) return s;
    if (n && !data) return lr__fail(err, LR_EINVAL, "lr_gguf_writer_put: data is NULL");
    return put_at(w, i, data, n, err);
}

lr_status lr_gguf_writer_put_f32(lr_gguf_writer *w, const char *name, const float *src, size_t n, lr_err *err)
{
    if (!w || !w->af.f || !name) return lr__fail(err, LR_EINVAL, "lr_gguf_writer_put_f32: writer not open, or a NULL argument");
    ptrdiff_t i = writer_find(w, name);
    if (i < 0) return lr__fail(err, LR_EINVAL, "%s: tensor %s is not in the header", w->path, name);
    size_t es = ggml_types[w->type[i]].bytes;
    if (n > w->nbytes[i] / es) /* put_check's message, without overflowing n * es */
        return lr__fail(err, LR_EINVAL, "%s: tensor %s: %zu more elements after %zu would exceed its %zu", w->path,
                        name, n, w->done[i] / es, w->nbytes[i] / es);
    lr_status s = put_check(w, &i, name, n * es, "lr_gguf_writer_put_f32", err);
    if (s) return s;
    if (n && !src) return lr__fail(err, LR_EINVAL, "lr_gguf_writer_put_f32: src is NULL");
    if (w->type[i] == LR_GGML_F32) return put_at(w, i, src, n * 4, err);
    uint16_t buf[2048];
    for (size_t k = 0; !s && k < n; k += 2048) {
        size_t m = n - k < 2048 ? n - k : 2048;
        for (size_t j = 0; j < m; j++)
            buf[j] = w->type[i] == LR_GGML_F16 ? lr_f32_to_f16(src[k + j]) : lr_f32_to_bf16(src[k + j]);
        s = put_at(w, i, buf, m * 2, err);
    }
    return s;
}

lr_status lr_gguf_writer_commit(lr_gguf_writer *w, lr_err *err)
{
    if (!w || !w->af.f) return lr__fail(err, LR_EINVAL, "lr_gguf_writer_commit: writer not open");
    if (w->failed) return lr__fail(err, LR_EIO, "%s: an earlier write failed (old file left unchanged)", w->path);
    for (size_t i = 0; i < w->nt; i++)
        if (w->done[i] != w->nbytes[i])
            return lr__fail(err, LR_EINVAL, "%s: tensor %s has %zu of its %zu bytes", w->path, w->name[i], w->done[i],
                            w->nbytes[i]);
    static const unsigned char zeros[64];
    sink s = { w->af.f, 0, true };
    for (size_t i = 0; i < w->nt && s.ok; i++) { /* each tensor's padding, so the file ends at w->end */
        size_t end = 0, k;
        align_up(&end, w->pos[i] + w->nbytes[i], w->alignment); /* laid out without overflow at init */
        k = end - (w->pos[i] + w->nbytes[i]);
        if (k && fseeko(w->af.f, (off_t)(w->pos[i] + w->nbytes[i]), SEEK_SET) != 0) s.ok = false;
        for (; k && s.ok; ) {
            size_t m = k < sizeof zeros ? k : sizeof zeros;
            put_bytes(&s, zeros, m);
            k -= m;
        }
    }
    if (!s.ok) {
        w->failed = 1;
        return lr__fail(err, LR_EIO, "cannot write %s: %s (old file left unchanged)", w->path, strerror(errno));
    }
    return lr_atomic_commit(&w->af, err);
}
