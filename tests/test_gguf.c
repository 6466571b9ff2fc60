/* test_gguf.c — the GGUF reader and writer.
 *
 * A small file's bytes against a hand-computed array (so the layout is the format's, not
 * only self-consistent); write -> read round trips of every value type and of F32/F16/BF16
 * tensors at several alignments, through a file and through memory; a tiny llama base
 * model's metadata (tokenizer arrays) and tensor names; every refusal of the reader on a
 * crafted file, with its message; every prefix of a valid file refused; every refusal of the
 * writer; and every disk step of a write made to fail (the fault seam of atomicfile.c),
 * leaving the old file and no temp file.
 */
#include "lr_test.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lowrank/io/gguf.h"
#include "lowrank/io/safetensors.h"

/* the atomic writer's fault seam (lib/io/fault_internal.h; reachable in the static library) */
size_t lr__io_fault(size_t at, int err, int short_write);

/* ---- a byte builder for crafted files ---- */

typedef struct {
    unsigned char *b;
    size_t n, cap;
} buf;

static void b_raw(buf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->b = realloc(b->b, b->cap);
        assert_non_null(b->b);
    }
    if (n) memcpy(b->b + b->n, p, n);
    b->n += n;
}

static void b_le(buf *b, uint64_t v, size_t n)
{
    unsigned char x[8];
    for (size_t i = 0; i < n; i++) x[i] = (unsigned char)(v >> (8 * i));
    b_raw(b, x, n);
}

static void b_u32(buf *b, uint32_t v) { b_le(b, v, 4); }
static void b_u64(buf *b, uint64_t v) { b_le(b, v, 8); }

static void b_str(buf *b, const char *s)
{
    b_u64(b, strlen(s));
    b_raw(b, s, strlen(s));
}

static void b_pad(buf *b, size_t a)
{
    while (b->n % a) b_raw(b, "", 1);
}

static void b_header(buf *b, uint64_t nt, uint64_t nkv)
{
    b_raw(b, "GGUF", 4);
    b_u32(b, 3);
    b_u64(b, nt);
    b_u64(b, nkv);
}

/* A tensor info: name, dims, type, offset. */
static void b_info(buf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off)
{
    b_str(b, name);
    b_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) b_u64(b, ne[d]);
    b_u32(b, type);
    b_u64(b, off);
}

/* The reader on b's bytes as "crafted.gguf": LR_EFORMAT whose message starts with the file
 * name and contains needle, and an empty struct after. */
static void expect_bad_at(const buf *b, const char *needle, int line)
{
    lr_gguf g;
    lr_err err = { { 0 } };
    lr_status s = lr_gguf_from_memory(&g, b->b, b->n, "crafted.gguf", &err);
    if (s != LR_EFORMAT) fail_msg("line %d: status %d, expected LR_EFORMAT (%s)", line, s, err.msg);
    if (strncmp(err.msg, "crafted.gguf: ", 14)) fail_msg("line %d: message \"%s\" does not start with the file", line, err.msg);
    if (!strstr(err.msg, needle)) fail_msg("line %d: message \"%s\" does not mention \"%s\"", line, err.msg, needle);
    assert_null(g.arena);
    assert_null(g.mem);
    assert_int_equal(g.nt, 0);
}
#define expect_bad(b, needle) expect_bad_at((b), (needle), __LINE__)

static void expect_ok_at(const buf *b, int line)
{
    lr_gguf g;
    lr_err err = { { 0 } };
    if (lr_gguf_from_memory(&g, b->b, b->n, "crafted.gguf", &err)) fail_msg("line %d: refused: %s", line, err.msg);
    lr_gguf_free(&g);
}
#define expect_ok(b) expect_ok_at((b), __LINE__)

/* ---- writing helpers ---- */

/* Writes kv and tensors t[0..nt) whose data are data[i] (host order bytes) to path. */
static lr_status write_file(const char *path, const lr_gguf_kv *kv, size_t nkv, const lr_gguf_tensor *t, size_t nt,
                            const void *const *data, const lr_gguf_write_opts *opts, lr_err *err)
{
    lr_gguf_writer w;
    lr_status s = lr_gguf_writer_init(&w, path, kv, nkv, t, nt, opts, err);
    for (size_t i = 0; !s && i < nt; i++) {
        size_t n = lr_ggml_block_bytes(t[i].type);
        for (uint32_t d = 0; d < t[i].n_dims; d++) n *= t[i].ne[d];
        s = lr_gguf_writer_put(&w, t[i].name, data[i], n, err);
    }
    if (!s) s = lr_gguf_writer_commit(&w, err);
    lr_gguf_writer_free(&w);
    return s;
}

#define KV_U(k, t, x) { (k), { .type = (t), .u = (x) } }
#define KV_I(k, t, x) { (k), { .type = (t), .i = (x) } }
#define KV_F(k, t, x) { (k), { .type = (t), .f = (x) } }
#define KV_S(k, s) { (k), { .type = LR_GGUF_STRING, .str = { (s), sizeof(s) - 1 } } }
#define KV_A(k, et, n, p) { (k), { .type = LR_GGUF_ARRAY, .arr = { (et), (n), (p) } } }

/* ---- type tables ---- */

static void test_type_names(void **state)
{
    (void)state;
    assert_string_equal(lr_ggml_type_name(LR_GGML_F32), "F32");
    assert_string_equal(lr_ggml_type_name(LR_GGML_Q4_K), "Q4_K");
    assert_string_equal(lr_ggml_type_name(30), "BF16");
    assert_string_equal(lr_ggml_type_name(39), "MXFP4");
    assert_string_equal(lr_ggml_type_name(16), "IQ2_XXS");
    const uint32_t removed[] = { 4, 5, 31, 32, 33, 36, 37, 38, 43, 1000, UINT32_MAX };
    for (size_t i = 0; i < sizeof removed / sizeof *removed; i++) {
        assert_null(lr_ggml_type_name(removed[i]));
        assert_int_equal(lr_ggml_block_elems(removed[i]), 0);
        assert_int_equal(lr_ggml_block_bytes(removed[i]), 0);
    }
    /* gguf-py's GGML_QUANT_SIZES, entry by entry */
    static const struct { uint32_t t; size_t elems, bytes; } q[] = {
        { 0, 1, 4 }, { 1, 1, 2 }, { 2, 32, 18 }, { 3, 32, 20 }, { 6, 32, 22 }, { 7, 32, 24 }, { 8, 32, 34 },
        { 9, 32, 36 }, { 10, 256, 84 }, { 11, 256, 110 }, { 12, 256, 144 }, { 13, 256, 176 }, { 14, 256, 210 },
        { 15, 256, 292 }, { 16, 256, 66 }, { 17, 256, 74 }, { 18, 256, 98 }, { 19, 256, 50 }, { 20, 32, 18 },
        { 21, 256, 110 }, { 22, 256, 82 }, { 23, 256, 136 }, { 24, 1, 1 }, { 25, 1, 2 }, { 26, 1, 4 },
        { 27, 1, 8 }, { 28, 1, 8 }, { 29, 256, 56 }, { 30, 1, 2 }, { 34, 256, 54 }, { 35, 256, 66 },
        { 39, 32, 17 }, { 40, 64, 36 }, { 41, 128, 18 }, { 42, 64, 18 },
    };
    for (size_t i = 0; i < sizeof q / sizeof *q; i++) {
        assert_non_null(lr_ggml_type_name(q[i].t));
        assert_int_equal(lr_ggml_block_elems(q[i].t), q[i].elems);
        assert_int_equal(lr_ggml_block_bytes(q[i].t), q[i].bytes);
    }
    static const char *const names[] = { "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array",
                                         "u64", "i64", "f64" };
    for (int t = 0; t < LR_GGUF_NTYPES; t++) assert_string_equal(lr_gguf_type_name((lr_gguf_type)t), names[t]);
    assert_null(lr_gguf_type_name(LR_GGUF_NTYPES));
    assert_null(lr_gguf_type_name((lr_gguf_type)-1));
    lr_gguf_write_opts o = lr_gguf_write_opts_default();
    assert_int_equal(o.alignment, 32);
}

/* ---- the bytes of a small file ---- */

static void test_layout_bytes(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "small.gguf");
    lr_gguf_kv kv[] = { KV_S("general.architecture", "llama"), KV_U("a.u", LR_GGUF_UINT32, 7) };
    lr_gguf_tensor t[] = { { "w", 2, { 2, 1 }, LR_GGML_F32, 0, 0 }, { "b", 1, { 3 }, LR_GGML_F16, 0, 0 } };
    const float w[2] = { 1.0f, -2.0f };
    const uint16_t h[3] = { 0x3c00, 0x3800, 0xbc00 }; /* 1, 0.5, -1 */
    const void *data[2] = { w, h };
    lr_err err = { { 0 } };
    assert_int_equal(write_file(p, kv, 2, t, 2, data, NULL, &err), LR_OK);
    static const unsigned char want[256] = {
        'G', 'G', 'U', 'F', 3, 0, 0, 0,               /* magic, version 3                 */
        2, 0, 0, 0, 0, 0, 0, 0,                       /* tensor_count                     */
        2, 0, 0, 0, 0, 0, 0, 0,                       /* kv_count                         */
        20, 0, 0, 0, 0, 0, 0, 0,                      /* key "general.architecture"       */
        'g', 'e', 'n', 'e', 'r', 'a', 'l', '.', 'a', 'r', 'c', 'h', 'i', 't', 'e', 'c', 't', 'u', 'r', 'e',
        8, 0, 0, 0,                                   /* STRING                           */
        5, 0, 0, 0, 0, 0, 0, 0, 'l', 'l', 'a', 'm', 'a',
        3, 0, 0, 0, 0, 0, 0, 0, 'a', '.', 'u',        /* key "a.u"                        */
        4, 0, 0, 0, 7, 0, 0, 0,                       /* UINT32 7                         */
        1, 0, 0, 0, 0, 0, 0, 0, 'w',                  /* tensor "w"                       */
        2, 0, 0, 0,                                   /* n_dims                           */
        2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, /* ne {2, 1}                      */
        0, 0, 0, 0,                                   /* F32                              */
        0, 0, 0, 0, 0, 0, 0, 0,                       /* offset 0                         */
        1, 0, 0, 0, 0, 0, 0, 0, 'b',                  /* tensor "b"                       */
        1, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0,           /* n_dims 1, ne {3}                 */
        1, 0, 0, 0,                                   /* F16                              */
        32, 0, 0, 0, 0, 0, 0, 0,                      /* offset 32: w's 8 bytes padded    */
        /* 162 bytes; zeros to 192, where the data section begins */
        [192] = 0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0,      /* w: 1.0f, -2.0f, then 24 zeros    */
        [224] = 0x00, 0x3c, 0x00, 0x38, 0x00, 0xbc,   /* b: 1, 0.5, -1 as F16, 26 zeros   */
    };
    size_t n;
    unsigned char *got = lr_test_read_file(p, &n);
    assert_int_equal(n, sizeof want);
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i]) fail_msg("byte %zu is 0x%02x, expected 0x%02x", i, got[i], want[i]);

    /* and it reads back as written */
    lr_gguf g;
    assert_int_equal(lr_gguf_open(&g, p, &err), LR_OK);
    assert_string_equal(lr_gguf_path(&g), p);
    assert_int_equal(g.version, 3);
    assert_int_equal(g.alignment, 32);
    assert_int_equal(g.data_start, 192);
    assert_int_equal(lr_gguf_count(&g), 2);
    const lr_gguf_tensor *b = lr_gguf_at(&g, 1);
    assert_string_equal(b->name, "b");
    assert_int_equal(b->offset, 32);
    assert_int_equal(b->nbytes, 6);
    float f[3];
    assert_int_equal(lr_gguf_get_f32(&g, f, "b", 3, &err), LR_OK);
    assert_true(f[0] == 1.0f && f[1] == 0.5f && f[2] == -1.0f);
    lr_gguf_free(&g);

    /* alignment 64: general.alignment appended as the last pair, the data at 256 */
    lr_gguf_write_opts o = lr_gguf_write_opts_default();
    o.alignment = 64;
    assert_int_equal(write_file(p, kv, 2, t, 2, data, &o, &err), LR_OK);
    free(got);
    got = lr_test_read_file(p, &n);
    assert_int_equal(n, 256 + 64 + 64);
    assert_int_equal(got[16], 3); /* kv_count */
    /* after the two pairs (88 bytes): key "general.alignment", UINT32, 64 */
    static const unsigned char al[] = { 17, 0, 0, 0, 0, 0, 0, 0, 'g', 'e', 'n', 'e', 'r', 'a', 'l', '.', 'a', 'l', 'i',
                                        'g', 'n', 'm', 'e', 'n', 't', 4, 0, 0, 0, 64, 0, 0, 0 };
    assert_memory_equal(got + 88, al, sizeof al);
    assert_memory_equal(got + 256, want + 192, 8);  /* w */
    assert_memory_equal(got + 320, want + 224, 6);  /* b, at offset 64 */
    free(got);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* ---- round trips ---- */

static const char *const tokens[] = { "<unk>", "<s>", "</s>", "\xe2\x96\x81the", "a\0b", "" };
static const size_t token_len[] = { 5, 3, 4, 6, 3, 0 };

/* Every value type, arrays of each kind, a nested array, the tokenizer arrays of a base
 * model. */
typedef struct {
    lr_gguf_str toks[6];
    float scores[6];
    int32_t ttype[6];
    uint8_t bytes[3], bools[4];
    int16_t i16s[2];
    uint64_t u64s[2];
    double f64s[2];
    int32_t inner0[2], inner1[3];
    lr_gguf_value inner[3];
    lr_gguf_value outer[1];
    lr_gguf_kv kv[26];
    size_t nkv;
} meta;

static void make_meta(meta *m)
{
    for (int i = 0; i < 6; i++) {
        m->toks[i] = (lr_gguf_str){ tokens[i], token_len[i] };
        m->scores[i] = -(float)i * 0.25f;
        m->ttype[i] = i < 3 ? 3 : 1;
    }
    uint8_t bytes[3] = { 0, 7, 255 }, bools[4] = { 1, 0, 0, 1 };
    memcpy(m->bytes, bytes, 3), memcpy(m->bools, bools, 4);
    m->i16s[0] = -32768, m->i16s[1] = 32767;
    m->u64s[0] = UINT64_MAX, m->u64s[1] = 0;
    m->f64s[0] = 1e300, m->f64s[1] = -0.0;
    m->inner0[0] = 1, m->inner0[1] = 2;
    m->inner1[0] = -3, m->inner1[1] = 4, m->inner1[2] = INT32_MIN;
    m->inner[0] = (lr_gguf_value){ .type = LR_GGUF_ARRAY, .arr = { LR_GGUF_INT32, 2, m->inner0 } };
    m->inner[1] = (lr_gguf_value){ .type = LR_GGUF_ARRAY, .arr = { LR_GGUF_INT32, 3, m->inner1 } };
    m->inner[2] = (lr_gguf_value){ .type = LR_GGUF_ARRAY, .arr = { LR_GGUF_INT32, 0, NULL } };
    m->outer[0] = (lr_gguf_value){ .type = LR_GGUF_ARRAY, .arr = { LR_GGUF_ARRAY, 3, m->inner } };
    lr_gguf_kv kv[] = {
        KV_S("general.architecture", "llama"),
        KV_S("general.name", "tiny \xc3\xa9 llama"),
        KV_U("llama.block_count", LR_GGUF_UINT32, 2),
        KV_U("llama.context_length", LR_GGUF_UINT32, 64),
        KV_F("llama.attention.layer_norm_rms_epsilon", LR_GGUF_FLOAT32, 1e-5),
        KV_S("tokenizer.ggml.model", "llama"),
        KV_A("tokenizer.ggml.tokens", LR_GGUF_STRING, 6, m->toks),
        KV_A("tokenizer.ggml.scores", LR_GGUF_FLOAT32, 6, m->scores),
        KV_A("tokenizer.ggml.token_type", LR_GGUF_INT32, 6, m->ttype),
        KV_U("t.u8", LR_GGUF_UINT8, 255),
        KV_I("t.i8", LR_GGUF_INT8, -128),
        KV_U("t.u16", LR_GGUF_UINT16, 65535),
        KV_I("t.i16", LR_GGUF_INT16, -32768),
        KV_I("t.i32", LR_GGUF_INT32, INT32_MIN),
        KV_U("t.u64", LR_GGUF_UINT64, UINT64_MAX),
        KV_I("t.i64", LR_GGUF_INT64, INT64_MIN),
        KV_F("t.f64", LR_GGUF_FLOAT64, 0.1),
        KV_U("t.bool", LR_GGUF_BOOL, 1),
        KV_S("t.empty", ""),
        KV_A("t.bytes", LR_GGUF_UINT8, 3, m->bytes),
        KV_A("t.bools", LR_GGUF_BOOL, 4, m->bools),
        KV_A("t.i16s", LR_GGUF_INT16, 2, m->i16s),
        KV_A("t.u64s", LR_GGUF_UINT64, 2, m->u64s),
        KV_A("t.f64s", LR_GGUF_FLOAT64, 2, m->f64s),
        KV_A("t.nested", LR_GGUF_ARRAY, 1, m->outer),
        KV_A("t.none", LR_GGUF_STRING, 0, NULL),
    };
    memcpy(m->kv, kv, sizeof kv);
    m->nkv = sizeof kv / sizeof *kv;
}

/* Two arrays hold the same elements (by the reader's C types). */
static void assert_same_array(const lr_gguf_array *got, const lr_gguf_array *want)
{
    assert_int_equal(got->type, want->type);
    assert_int_equal(got->n, want->n);
    if (!want->n) return;
    if (want->type == LR_GGUF_STRING) {
        const lr_gguf_str *a = got->data, *b = want->data;
        for (size_t i = 0; i < want->n; i++) {
            assert_int_equal(a[i].len, b[i].len);
            assert_memory_equal(a[i].s, b[i].s, b[i].len);
            assert_int_equal(a[i].s[a[i].len], 0);
        }
    } else if (want->type == LR_GGUF_ARRAY) {
        const lr_gguf_value *a = got->data, *b = want->data;
        for (size_t i = 0; i < want->n; i++) {
            assert_int_equal(a[i].type, LR_GGUF_ARRAY);
            assert_same_array(&a[i].arr, &b[i].arr);
        }
    } else {
        size_t es = want->type == LR_GGUF_FLOAT32 ? 4 : want->type == LR_GGUF_INT32 ? 4
                  : want->type == LR_GGUF_INT16 ? 2 : want->type == LR_GGUF_UINT64 || want->type == LR_GGUF_FLOAT64 ? 8 : 1;
        assert_memory_equal(got->data, want->data, want->n * es);
    }
}

static void check_meta(const lr_gguf *g, const meta *m, uint32_t alignment)
{
    size_t extra = alignment != 32;
    assert_int_equal(lr_gguf_meta_count(g), m->nkv + extra);
    for (size_t i = 0; i < m->nkv; i++) {
        const lr_gguf_kv *k = lr_gguf_meta_at(g, i), *w = &m->kv[i];
        assert_string_equal(k->key, w->key);
        assert_ptr_equal(lr_gguf_meta_find(g, w->key), k);
        assert_int_equal(k->value.type, w->value.type);
        switch (w->value.type) {
        case LR_GGUF_STRING:
            assert_int_equal(k->value.str.len, w->value.str.len);
            assert_memory_equal(k->value.str.s, w->value.str.s, w->value.str.len);
            break;
        case LR_GGUF_ARRAY: assert_same_array(&k->value.arr, &w->value.arr); break;
        case LR_GGUF_FLOAT32: assert_true(k->value.f == (double)(float)w->value.f); break;
        case LR_GGUF_FLOAT64: assert_true(k->value.f == w->value.f); break;
        case LR_GGUF_INT8: case LR_GGUF_INT16: case LR_GGUF_INT32: case LR_GGUF_INT64:
            assert_true(k->value.i == w->value.i);
            break;
        default: assert_true(k->value.u == w->value.u); break;
        }
    }
    if (extra) {
        const lr_gguf_kv *k = lr_gguf_meta_at(g, m->nkv);
        assert_string_equal(k->key, "general.alignment");
        assert_int_equal(k->value.type, LR_GGUF_UINT32);
        assert_int_equal(k->value.u, alignment);
    }
    assert_null(lr_gguf_meta_at(g, m->nkv + extra));
    assert_null(lr_gguf_meta_find(g, "no.such.key"));
    assert_int_equal(g->alignment, alignment);
}

/* Tensors of F32, F16 and BF16 in 1 to 4 dimensions, named as llama.cpp names a base model's;
 * values exact in their type. */
enum { NT = 5 };
static const lr_gguf_tensor model_t[NT] = {
    { "token_embd.weight", 2, { 8, 6 }, LR_GGML_F16, 0, 0 },
    { "blk.0.attn_q.weight", 2, { 8, 8 }, LR_GGML_F32, 0, 0 },
    { "blk.0.attn_norm.weight", 1, { 8 }, LR_GGML_F32, 0, 0 },
    { "blk.0.ffn_up.weight", 3, { 8, 3, 2 }, LR_GGML_BF16, 0, 0 },
    { "output.weight", 4, { 8, 1, 1, 6 }, LR_GGML_BF16, 0, 0 },
};

static size_t numel(const lr_gguf_tensor *t)
{
    size_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) n *= t->ne[d];
    return n;
}

static float value_of(size_t ti, size_t i) { return (float)((int)(i * 7 + ti * 3) % 23 - 11) * 0.125f; }

static void test_round_trip(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "model.gguf");
    meta m;
    make_meta(&m);
    lr_err err = { { 0 } };
    const uint32_t aligns[] = { 8, 32, 64, 4096 };
    for (size_t ai = 0; ai < 4; ai++) {
        lr_gguf_write_opts o = lr_gguf_write_opts_default();
        o.alignment = aligns[ai];
        lr_gguf_writer w;
        assert_int_equal(lr_gguf_writer_init(&w, p, m.kv, m.nkv, model_t, NT, &o, &err), LR_OK);
        /* tensors in reverse order, each in pieces: put_f32 (encoding) and put (bytes) */
        for (size_t k = NT; k-- > 0;) {
            size_t n = numel(&model_t[k]);
            float *v = malloc(n * sizeof *v);
            for (size_t i = 0; i < n; i++) v[i] = value_of(k, i);
            size_t half = n / 2;
            assert_int_equal(lr_gguf_writer_put_f32(&w, model_t[k].name, v, half, &err), LR_OK);
            if (model_t[k].type == LR_GGML_F32) {
                assert_int_equal(lr_gguf_writer_put(&w, model_t[k].name, v + half, (n - half) * 4, &err), LR_OK);
            } else {
                uint16_t *h = malloc(n * 2);
                for (size_t i = half; i < n; i++)
                    h[i] = model_t[k].type == LR_GGML_F16 ? lr_f32_to_f16(v[i]) : lr_f32_to_bf16(v[i]);
                assert_int_equal(lr_gguf_writer_put(&w, model_t[k].name, h + half, (n - half) * 2, &err), LR_OK);
                free(h);
            }
            free(v);
        }
        assert_int_equal(lr_gguf_writer_commit(&w, &err), LR_OK);
        lr_gguf_writer_free(&w);
        lr_gguf_writer_free(&w); /* twice: a no-op */

        size_t nbytes;
        unsigned char *bytes = lr_test_read_file(p, &nbytes);
        for (int via = 0; via < 2; via++) {
            lr_gguf g;
            if (via == 0) assert_int_equal(lr_gguf_open(&g, p, &err), LR_OK);
            else assert_int_equal(lr_gguf_from_memory(&g, bytes, nbytes, "mem.gguf", &err), LR_OK);
            check_meta(&g, &m, aligns[ai]);
            assert_int_equal(g.data_start % aligns[ai], 0);
            assert_int_equal(lr_gguf_count(&g), NT);
            size_t pos = 0;
            for (size_t k = 0; k < NT; k++) {
                const lr_gguf_tensor *t = lr_gguf_at(&g, k);
                assert_ptr_equal(lr_gguf_find(&g, model_t[k].name), t);
                assert_string_equal(t->name, model_t[k].name);
                assert_int_equal(t->n_dims, model_t[k].n_dims);
                for (int d = 0; d < 4; d++)
                    assert_int_equal(t->ne[d], d < (int)t->n_dims ? model_t[k].ne[d] : 1);
                assert_int_equal(t->type, model_t[k].type);
                size_t n = numel(t), es = lr_ggml_block_bytes(t->type);
                assert_int_equal(t->nbytes, n * es);
                assert_int_equal(t->offset, pos);
                pos += (n * es + aligns[ai] - 1) / aligns[ai] * aligns[ai];
                float *v = malloc(n * sizeof *v);
                assert_int_equal(lr_gguf_get_f32(&g, v, t->name, n, &err), LR_OK);
                for (size_t i = 0; i < n; i++)
                    if (v[i] != value_of(k, i)) fail_msg("%s[%zu] = %g, expected %g", t->name, i, v[i], value_of(k, i));
                /* the raw bytes: little-endian encodings of the same values */
                unsigned char *raw = malloc(n * es);
                assert_int_equal(lr_gguf_get_bytes(&g, raw, t->name, 0, n * es, &err), LR_OK);
                for (size_t i = 0; i < n; i++) {
                    uint32_t want = t->type == LR_GGML_F32 ? 0 : t->type == LR_GGML_F16 ? lr_f32_to_f16(v[i])
                                                                                      : lr_f32_to_bf16(v[i]);
                    if (t->type == LR_GGML_F32) memcpy(&want, &v[i], 4);
                    uint32_t got = 0;
                    for (size_t b = 0; b < es; b++) got |= (uint32_t)raw[i * es + b] << (8 * b);
                    assert_int_equal(got, want);
                }
                /* a piece from the middle */
                unsigned char piece[4];
                assert_int_equal(lr_gguf_get_bytes(&g, piece, t->name, es, es, &err), LR_OK);
                assert_memory_equal(piece, raw + es, es);
                free(raw);
                free(v);
            }
            assert_int_equal(nbytes, g.data_start + pos); /* ends with the last tensor's padding */
            assert_null(lr_gguf_at(&g, NT));
            assert_null(lr_gguf_find(&g, "blk.1.attn_q.weight"));
            lr_gguf_free(&g);
            assert_null(g.arena);
            lr_gguf_free(&g); /* twice: a no-op */
        }
        free(bytes);
    }
    assert_int_equal(lr_test_hidden_entries(dir), 0);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* A file with no tensors (a vocabulary): ggml pads it to the alignment, gguf-py does not;
 * both read. A tensor with no elements; a file of no pairs and no tensors. */
static void test_no_tensors(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "vocab.gguf");
    meta m;
    make_meta(&m);
    lr_err err = { { 0 } };
    assert_int_equal(write_file(p, m.kv, m.nkv, NULL, 0, NULL, NULL, &err), LR_OK);
    size_t n;
    unsigned char *b = lr_test_read_file(p, &n);
    assert_int_equal(n % 32, 0);
    lr_gguf g;
    assert_int_equal(lr_gguf_from_memory(&g, b, n, "v.gguf", &err), LR_OK);
    check_meta(&g, &m, 32);
    size_t end = g.data_start;
    lr_gguf_free(&g);
    /* without the padding: gguf-py's vocab-only file */
    assert_true(end <= n && end > n - 32);
    assert_int_equal(lr_gguf_from_memory(&g, b, end, "v.gguf", &err), LR_OK);
    lr_gguf_free(&g);
    /* in between: refused */
    if (end + 1 < n) {
        assert_int_equal(lr_gguf_from_memory(&g, b, end + 1, "v.gguf", &err), LR_EFORMAT);
        assert_msg_contains(err.msg, "no tensors");
    }
    free(b);
    /* a tensor with no elements takes no room: the next one starts at the same offset */
    lr_gguf_tensor t[2] = { { "empty", 2, { 0, 5 }, LR_GGML_F32, 0, 0 }, { "w", 1, { 2 }, LR_GGML_BF16, 0, 0 } };
    const uint16_t h[2] = { 0x3f80, 0xbf80 };
    const void *data[2] = { NULL, h };
    assert_int_equal(write_file(p, NULL, 0, t, 2, data, NULL, &err), LR_OK);
    assert_int_equal(lr_gguf_open(&g, p, &err), LR_OK);
    assert_int_equal(lr_gguf_at(&g, 0)->nbytes, 0);
    assert_int_equal(lr_gguf_at(&g, 1)->offset, 0);
    float f[2];
    assert_int_equal(lr_gguf_get_f32(&g, f, "empty", 0, &err), LR_OK);
    assert_int_equal(lr_gguf_get_f32(&g, f, "w", 2, &err), LR_OK);
    assert_true(f[0] == 1.0f && f[1] == -1.0f);
    assert_int_equal(g.size, g.data_start + 32);
    lr_gguf_free(&g);
    assert_int_equal(write_file(p, NULL, 0, NULL, 0, NULL, NULL, &err), LR_OK);
    b = lr_test_read_file(p, &n);
    assert_int_equal(n, 32); /* the 24-byte header padded */
    assert_int_equal(lr_gguf_open(&g, p, &err), LR_OK);
    assert_int_equal(lr_gguf_meta_count(&g), 0);
    assert_int_equal(lr_gguf_count(&g), 0);
    lr_gguf_free(&g);
    free(b);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* ---- getters ---- */

static void test_getters(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "m.gguf");
    meta m;
    make_meta(&m);
    lr_err err = { { 0 } };
    lr_gguf_write_opts o = lr_gguf_write_opts_default();
    o.alignment = 64;
    assert_int_equal(write_file(p, m.kv, m.nkv, NULL, 0, NULL, &o, &err), LR_OK);
    lr_gguf g;
    assert_int_equal(lr_gguf_open(&g, p, &err), LR_OK);
    const char *s;
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    bool b;
    assert_int_equal(lr_gguf_meta_get_string(&g, &s, "general.architecture", &err), LR_OK);
    assert_string_equal(s, "llama");
    assert_int_equal(lr_gguf_meta_get_u32(&g, &u32, "llama.block_count", &err), LR_OK);
    assert_int_equal(u32, 2);
    assert_int_equal(lr_gguf_meta_get_u32(&g, &u32, "general.alignment", &err), LR_OK);
    assert_int_equal(u32, 64);
    assert_int_equal(lr_gguf_meta_get_i32(&g, &i32, "t.i32", &err), LR_OK);
    assert_int_equal(i32, INT32_MIN);
    assert_int_equal(lr_gguf_meta_get_u64(&g, &u64, "t.u64", &err), LR_OK);
    assert_true(u64 == UINT64_MAX);
    assert_int_equal(lr_gguf_meta_get_i64(&g, &i64, "t.i64", &err), LR_OK);
    assert_true(i64 == INT64_MIN);
    assert_int_equal(lr_gguf_meta_get_f32(&g, &f32, "llama.attention.layer_norm_rms_epsilon", &err), LR_OK);
    assert_true(f32 == 1e-5f);
    assert_int_equal(lr_gguf_meta_get_f64(&g, &f64, "t.f64", &err), LR_OK);
    assert_true(f64 == 0.1);
    assert_int_equal(lr_gguf_meta_get_bool(&g, &b, "t.bool", &err), LR_OK);
    assert_true(b);
    const void *data;
    size_t n;
    assert_int_equal(lr_gguf_meta_get_array(&g, &data, &n, "tokenizer.ggml.tokens", LR_GGUF_STRING, &err), LR_OK);
    assert_int_equal(n, 6);
    const lr_gguf_str *tok = data;
    assert_string_equal(tok[3].s, "\xe2\x96\x81the");
    assert_int_equal(tok[4].len, 3); /* "a\0b": the NUL kept */
    assert_memory_equal(tok[4].s, "a\0b", 4);
    assert_int_equal(lr_gguf_meta_get_array(&g, &data, &n, "tokenizer.ggml.scores", LR_GGUF_FLOAT32, &err), LR_OK);
    assert_true(n == 6 && ((const float *)data)[2] == -0.5f);
    assert_int_equal(lr_gguf_meta_get_array(&g, &data, &n, "tokenizer.ggml.token_type", LR_GGUF_INT32, &err), LR_OK);
    assert_true(n == 6 && ((const int32_t *)data)[0] == 3 && ((const int32_t *)data)[5] == 1);
    assert_int_equal(lr_gguf_meta_get_array(&g, &data, &n, "t.none", LR_GGUF_STRING, &err), LR_OK);
    assert_int_equal(n, 0);
    assert_int_equal(lr_gguf_meta_get_array(&g, &data, &n, "t.nested", LR_GGUF_ARRAY, &err), LR_OK);
    assert_int_equal(n, 1);
    const lr_gguf_value *outer = data;
    assert_int_equal(outer[0].arr.type, LR_GGUF_ARRAY);
    const lr_gguf_value *inner = outer[0].arr.data;
    assert_true(inner[1].arr.n == 3 && ((const int32_t *)inner[1].arr.data)[2] == INT32_MIN);
    assert_true(inner[2].arr.n == 0);

    /* refusals: missing, wrong type (scalar and array), NULL arguments */
    assert_int_equal(lr_gguf_meta_get_string(&g, &s, "general.nope", &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "m.gguf: missing key general.nope");
    assert_int_equal(lr_gguf_meta_get_u32(&g, &u32, "t.u64", &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "m.gguf: key t.u64: type u64, expected u32");
    assert_int_equal(lr_gguf_meta_get_u64(&g, &u64, "llama.block_count", &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "key llama.block_count: type u32, expected u64");
    assert_int_equal(lr_gguf_meta_get_i32(&g, &i32, "t.u8", &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "type u8, expected i32");
    assert_int_equal(lr_gguf_meta_get_i64(&g, &i64, "t.i32", &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "type i32, expected i64");
    assert_int_equal(lr_gguf_meta_get_f32(&g, &f32, "t.f64", &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "type f64, expected f32");
    assert_int_equal(lr_gguf_meta_get_f64(&g, &f64, "llama.attention.layer_norm_rms_epsilon", &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "type f32, expected f64");
    assert_int_equal(lr_gguf_meta_get_bool(&g, &b, "t.u8", &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "type u8, expected bool");
    assert_int_equal(lr_gguf_meta_get_string(&g, &s, "tokenizer.ggml.tokens", &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "type array, expected string");
    assert_int_equal(lr_gguf_meta_get_array(&g, &data, &n, "tokenizer.ggml.scores", LR_GGUF_INT32, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "m.gguf: key tokenizer.ggml.scores: array of f32, expected an array of i32");
    assert_int_equal(lr_gguf_meta_get_array(&g, &data, &n, "t.f64", LR_GGUF_FLOAT64, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "key t.f64: type f64, expected an array of f64");
    assert_int_equal(lr_gguf_meta_get_array(&g, &data, &n, "t.f64s", (lr_gguf_type)13, &err), LR_EINVAL);
    assert_int_equal(lr_gguf_meta_get_array(&g, &data, NULL, "t.f64s", LR_GGUF_FLOAT64, &err), LR_EINVAL);
    assert_int_equal(lr_gguf_meta_get_u32(&g, NULL, "llama.block_count", &err), LR_EINVAL);
    assert_int_equal(lr_gguf_meta_get_u32(NULL, &u32, "llama.block_count", &err), LR_EINVAL);
    assert_int_equal(lr_gguf_meta_get_u32(&g, &u32, NULL, &err), LR_EINVAL);
    assert_int_equal(lr_gguf_meta_get_u32(&g, &u32, "t.u64", NULL), LR_EFORMAT); /* err may be NULL */
    assert_null(lr_gguf_meta_find(&g, NULL));
    assert_null(lr_gguf_find(&g, NULL));
    assert_null(lr_gguf_meta_find(NULL, "x"));
    assert_int_equal(lr_gguf_count(NULL), 0);
    assert_int_equal(lr_gguf_meta_count(NULL), 0);
    assert_null(lr_gguf_path(NULL));
    lr_gguf_free(&g);
    lr_gguf_free(NULL);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* lr_gguf_get_f32 / _get_bytes refusals, and a quantized tensor read as bytes. */
static void test_tensor_reads(void **state)
{
    (void)state;
    buf b = { 0 };
    b_header(&b, 3, 0);
    uint64_t ne_q[2] = { 32, 2 }, ne_i[1] = { 3 }, ne_f[1] = { 2 };
    b_info(&b, "q", 2, ne_q, LR_GGML_Q4_0, 0);  /* 2 blocks of 18 bytes: 36, padded to 64 */
    b_info(&b, "i", 1, ne_i, LR_GGML_I32, 64);  /* 12 bytes, padded to 32 */
    b_info(&b, "f", 1, ne_f, LR_GGML_F32, 96);
    b_pad(&b, 32);
    size_t ds = b.n;
    for (int i = 0; i < 128; i++) b_raw(&b, &(unsigned char){ (unsigned char)i }, 1);
    lr_gguf g;
    lr_err err = { { 0 } };
    assert_int_equal(lr_gguf_from_memory(&g, b.b, b.n, "q.gguf", &err), LR_OK);
    assert_int_equal(g.data_start, ds);
    const lr_gguf_tensor *q = lr_gguf_find(&g, "q");
    assert_int_equal(q->nbytes, 36);
    assert_int_equal(q->type, LR_GGML_Q4_0);
    float f[64];
    assert_int_equal(lr_gguf_get_f32(&g, f, "q", 64, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "q.gguf: q: type Q4_0 is quantized; lr_gguf_get_f32 reads F32, F16 and BF16");
    assert_int_equal(lr_gguf_get_f32(&g, f, "i", 3, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "q.gguf: i: type I32; lr_gguf_get_f32 reads");
    assert_int_equal(lr_gguf_get_f32(&g, f, "f", 3, &err), LR_EDIM);
    assert_msg_contains(err.msg, "q.gguf: f: expected 3 elements, got 2 (ne [2])");
    assert_int_equal(lr_gguf_get_f32(&g, f, "nope", 3, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "q.gguf: missing tensor nope");
    assert_int_equal(lr_gguf_get_f32(&g, NULL, "f", 2, &err), LR_EINVAL);
    assert_int_equal(lr_gguf_get_f32(&g, f, "f", 2, &err), LR_OK);
    unsigned char raw[40];
    assert_int_equal(lr_gguf_get_bytes(&g, raw, "q", 0, 36, &err), LR_OK);
    for (int i = 0; i < 36; i++) assert_int_equal(raw[i], i);
    assert_int_equal(lr_gguf_get_bytes(&g, raw, "i", 4, 8, &err), LR_OK);
    assert_int_equal(raw[0], 68);
    assert_int_equal(lr_gguf_get_bytes(&g, raw, "q", 30, 7, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "q.gguf: q: bytes [30, 37) are not inside its 36");
    assert_int_equal(lr_gguf_get_bytes(&g, raw, "q", 37, 0, &err), LR_EINVAL);
    assert_int_equal(lr_gguf_get_bytes(&g, raw, "x", 0, 1, &err), LR_EFORMAT);
    assert_int_equal(lr_gguf_get_bytes(&g, NULL, "q", 0, 1, &err), LR_EINVAL);
    lr_gguf_free(&g);
    free(b.b);
}

/* ---- the reader's refusals ---- */

static void test_header_refusals(void **state)
{
    (void)state;
    buf b = { 0 };
    expect_bad(&b, "header: the magic (4 bytes at offset 0) runs past the end of the file (0 bytes)");
    b_raw(&b, "GGU", 3);
    expect_bad(&b, "runs past the end");
    b.n = 0;
    b_raw(&b, "GGML", 4);
    b_u32(&b, 3);
    expect_bad(&b, "header: magic \"GGML\" (47 47 4d 4c), expected \"GGUF\": not a GGUF file");
    const struct { uint32_t v; const char *msg; } versions[] = {
        { 0, "version 0, expected 3 (or 2)" }, { 1, "version 1 (32-bit counts) is not supported" },
        { 4, "version 4, expected 3 (or 2)" }, { 0x03000000, "version 0x03000000: a big-endian GGUF file" },
    };
    for (size_t i = 0; i < 4; i++) {
        b.n = 0;
        b_raw(&b, "GGUF", 4);
        b_u32(&b, versions[i].v);
        b_u64(&b, 0);
        b_u64(&b, 0);
        expect_bad(&b, versions[i].msg);
    }
    /* version 2 has the same layout */
    b.n = 0;
    b_raw(&b, "GGUF", 4);
    b_u32(&b, 2);
    b_u64(&b, 0);
    b_u64(&b, 0);
    expect_ok(&b);
    b.n = 8;
    b_u64(&b, 0);
    expect_bad(&b, "header: kv_count (8 bytes at offset 16) runs past the end");
    /* counts beyond what the file can hold: refused before anything is allocated */
    b.n = 0;
    b_header(&b, 0, UINT64_MAX);
    expect_bad(&b, "tensor_count 0 and kv_count 18446744073709551615 cannot fit in the 0 bytes after the header");
    b.n = 0;
    b_header(&b, 1ull << 60, 0);
    for (int i = 0; i < 100; i++) b_raw(&b, "x", 1);
    expect_bad(&b, "cannot fit in the 100 bytes after the header");
    b.n = 0;
    b_header(&b, 3, 0); /* 3 * 33 = 99 > 98 */
    for (int i = 0; i < 98; i++) b_raw(&b, "x", 1);
    expect_bad(&b, "tensor_count 3 and kv_count 0 cannot fit");
    free(b.b);
}

/* A file with one pair: key, type word, then `value` bytes; no tensors. */
static void one_kv(buf *b, const char *key, uint32_t type, const void *value, size_t n)
{
    b->n = 0;
    b_header(b, 0, 1);
    b_str(b, key);
    b_u32(b, type);
    b_raw(b, value, n);
}

static void test_kv_refusals(void **state)
{
    (void)state;
    buf b = { 0 }, v = { 0 };
    /* keys */
    b_header(&b, 0, 1);
    b_u64(&b, 0);
    b_u32(&b, LR_GGUF_UINT8);
    b_raw(&b, "\1\0", 2); /* 14 bytes: the least a pair takes */
    expect_bad(&b, "crafted.gguf: key 0: empty key");
    b.n = 0;
    b_header(&b, 0, 1);
    b_u64(&b, 65536);
    for (int i = 0; i < 65536; i++) b_raw(&b, "a", 1);
    b_u32(&b, LR_GGUF_UINT8);
    b_raw(&b, "\1", 1);
    expect_bad(&b, "key 0: key of 65536 bytes, over the limit of 65535");
    b.n = 0;
    b_header(&b, 0, 1);
    b_u64(&b, 40);
    b_raw(&b, "general", 7);
    expect_bad(&b, "key 0: the key of 40 bytes at offset 32 runs past the end of the file (39 bytes)");
    one_kv(&b, "bad\nkey", LR_GGUF_UINT8, "\1", 1);
    expect_bad(&b, "key 0: byte 0x0a at position 3 of the key is not printable ASCII");
    one_kv(&b, "caf\xc3\xa9", LR_GGUF_UINT8, "\1", 1);
    expect_bad(&b, "byte 0xc3 at position 3 of the key is not printable ASCII");
    one_kv(&b, "a b", LR_GGUF_UINT8, "\1", 1);
    expect_bad(&b, "byte 0x20 at position 1");
    /* value types and values */
    one_kv(&b, "x.y", 13, "\1", 1);
    expect_bad(&b, "key 0 (x.y): value type 13 is not a GGUF value type (0 to 12)");
    one_kv(&b, "x.y", LR_GGUF_BOOL, "\2", 1);
    expect_bad(&b, "key 0 (x.y): boolean value 2, expected 0 or 1");
    one_kv(&b, "x.y", LR_GGUF_UINT32, "\1\2", 2);
    expect_bad(&b, "key 0 (x.y): the value (4 bytes at offset 39) runs past the end of the file (41 bytes)");
    v.n = 0;
    b_u64(&v, 10);
    b_raw(&v, "abc", 3);
    one_kv(&b, "x.y", LR_GGUF_STRING, v.b, v.n);
    expect_bad(&b, "key 0 (x.y): the string value of 10 bytes at offset 47 runs past the end of the file (50 bytes)");
    v.n = 0;
    b_u64(&v, (1ull << 30) + 1);
    one_kv(&b, "x.y", LR_GGUF_STRING, v.b, v.n);
    expect_bad(&b, "the string value of 1073741825 bytes is over the limit of 1073741824");
    one_kv(&b, "x.y", LR_GGUF_STRING, "\1\0\0", 3);
    expect_bad(&b, "key 0 (x.y): the length of the string value (8 bytes at offset 39) runs past the end");
    /* arrays */
    v.n = 0;
    b_u32(&v, 13);
    b_u64(&v, 0);
    one_kv(&b, "x.y", LR_GGUF_ARRAY, v.b, v.n);
    expect_bad(&b, "key 0 (x.y): array element type 13 is not a GGUF value type");
    v.n = 0;
    b_u32(&v, LR_GGUF_UINT32);
    b_u64(&v, 1ull << 62);
    b_u32(&v, 1);
    one_kv(&b, "x.y", LR_GGUF_ARRAY, v.b, v.n);
    expect_bad(&b, "key 0 (x.y): an array of 4611686018427387904 u32 elements cannot fit in the 4 bytes left of the file");
    free(b.b);
    free(v.b);
}

static void test_kv_refusals_2(void **state)
{
    (void)state;
    buf b = { 0 }, v = { 0 };
    /* a string element that runs past the end */
    b_u32(&v, LR_GGUF_STRING);
    b_u64(&v, 2);
    b_str(&v, "ok");
    b_u64(&v, 5);
    b_raw(&v, "abc", 3);
    one_kv(&b, "x.y", LR_GGUF_ARRAY, v.b, v.n);
    expect_bad(&b, "key 0 (x.y): string element 1 of 5 bytes at offset");
    v.n = 0;
    b_u32(&v, LR_GGUF_BOOL);
    b_u64(&v, 3);
    b_raw(&v, "\1\0\3", 3);
    one_kv(&b, "x.y", LR_GGUF_ARRAY, v.b, v.n);
    expect_bad(&b, "key 0 (x.y): boolean element 2 is 3, expected 0 or 1");
    /* nesting: 8 levels read, 9 refused */
    for (int depth = 8; depth <= 9; depth++) {
        v.n = 0;
        for (int d = 1; d < depth; d++) {
            b_u32(&v, LR_GGUF_ARRAY);
            b_u64(&v, 1);
        }
        b_u32(&v, LR_GGUF_INT8);
        b_u64(&v, 1);
        b_raw(&v, "\x80", 1);
        one_kv(&b, "x.y", LR_GGUF_ARRAY, v.b, v.n);
        if (depth == 8) expect_ok(&b);
        else expect_bad(&b, "key 0 (x.y): arrays nested more than 8 deep");
    }
    /* a duplicate key */
    b.n = 0;
    b_header(&b, 0, 3);
    const char *keys[3] = { "a.b", "c", "a.b" };
    for (int i = 0; i < 3; i++) {
        b_str(&b, keys[i]);
        b_u32(&b, LR_GGUF_UINT8);
        b_raw(&b, "\1", 1);
    }
    expect_bad(&b, "crafted.gguf: key a.b appears twice (keys 0 and 2)");
    /* general.alignment: a u32 power of two */
    one_kv(&b, "general.alignment", LR_GGUF_UINT64, "\x20\0\0\0\0\0\0\0", 8);
    expect_bad(&b, "crafted.gguf: key general.alignment: type u64, expected u32");
    one_kv(&b, "general.alignment", LR_GGUF_UINT32, "\x30\0\0\0", 4);
    expect_bad(&b, "crafted.gguf: general.alignment 48 is not a power of two");
    one_kv(&b, "general.alignment", LR_GGUF_UINT32, "\0\0\0\0", 4);
    expect_bad(&b, "general.alignment 0 is not a power of two");
    one_kv(&b, "general.alignment", LR_GGUF_UINT32, "\x01\0\0\0", 4);
    expect_ok(&b); /* ggml reads 1 */
    free(b.b);
    free(v.b);
}

/* A file with one tensor info (name, dims, type, offset), alignment 32, and nbytes of data. */
static void one_tensor(buf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off,
                       size_t nbytes)
{
    b->n = 0;
    b_header(b, 1, 0);
    b_info(b, name, n_dims, ne, type, off);
    b_pad(b, 32);
    for (size_t i = 0; i < nbytes; i++) b_raw(b, "\0", 1);
}

static void test_tensor_refusals(void **state)
{
    (void)state;
    buf b = { 0 };
    uint64_t ne[5] = { 4, 2, 1, 1, 1 };
    one_tensor(&b, "w", 2, ne, LR_GGML_F32, 0, 32);
    expect_ok(&b);
    one_tensor(&b, "", 2, ne, LR_GGML_F32, 0, 32);
    expect_bad(&b, "crafted.gguf: tensor 0: empty name");
    char long_name[65];
    memset(long_name, 'n', 64);
    long_name[64] = 0;
    one_tensor(&b, long_name, 2, ne, LR_GGML_F32, 0, 32);
    expect_bad(&b, "tensor 0: name of 64 bytes, over ggml's limit of 63");
    long_name[63] = 0;
    one_tensor(&b, long_name, 2, ne, LR_GGML_F32, 0, 32);
    expect_ok(&b);
    one_tensor(&b, "a\tb", 2, ne, LR_GGML_F32, 0, 32);
    expect_bad(&b, "tensor 0: byte 0x09 at position 1 of the name is a control character");
    one_tensor(&b, "a\xff", 2, ne, LR_GGML_F32, 0, 32);
    expect_bad(&b, "tensor 0: byte 0xff at position 1 of the name is not valid UTF-8");
    one_tensor(&b, "\xc0\xaf", 2, ne, LR_GGML_F32, 0, 32); /* overlong '/' */
    expect_bad(&b, "byte 0xc0 at position 0 of the name is not valid UTF-8");
    one_tensor(&b, "\xe2\x96\x81w", 2, ne, LR_GGML_F32, 0, 32);
    expect_ok(&b);
    one_tensor(&b, "w", 0, ne, LR_GGML_F32, 0, 0);
    expect_bad(&b, "tensor 0 (w): n_dims 0, expected 1 to 4");
    one_tensor(&b, "w", 5, ne, LR_GGML_F32, 0, 32);
    expect_bad(&b, "tensor 0 (w): n_dims 5, expected 1 to 4");
    uint64_t big[2] = { 1ull << 63, 1 };
    one_tensor(&b, "w", 2, big, LR_GGML_F32, 0, 0);
    expect_bad(&b, "tensor 0 (w): ne[0] = 9223372036854775808 is over INT64_MAX");
    uint64_t ov[3] = { 1ull << 31, 1ull << 31, 4 };
    one_tensor(&b, "w", 3, ov, LR_GGML_I8, 0, 0);
    expect_bad(&b, "tensor 0 (w): shape [2147483648, 2147483648, 4] has more than INT64_MAX elements");
    uint64_t ov2[2] = { 1ull << 31, 1ull << 31 };
    one_tensor(&b, "w", 2, ov2, LR_GGML_F64, 0, 0);
    expect_bad(&b, "tensor 0 (w): shape [2147483648, 2147483648] of F64: its size in bytes overflows");
    uint64_t zero[2] = { 0, 5 };
    one_tensor(&b, "w", 2, zero, LR_GGML_F32, 0, 0);
    expect_ok(&b); /* no elements: 0 bytes, as ggml allows */
    one_tensor(&b, "w", 2, ne, 4, 0, 32);
    expect_bad(&b, "tensor 0 (w): unknown ggml type 4");
    one_tensor(&b, "w", 2, ne, 43, 0, 32);
    expect_bad(&b, "unknown ggml type 43");
    uint64_t q[2] = { 100, 1 };
    one_tensor(&b, "w", 2, q, LR_GGML_Q4_K, 0, 0);
    expect_bad(&b, "tensor 0 (w): type Q4_K: ne[0] = 100 is not a multiple of its block of 256 elements");
    one_tensor(&b, "w", 2, ne, LR_GGML_F32, 8, 64);
    expect_bad(&b, "crafted.gguf: tensor 0 (w): offset 8 is not a multiple of the alignment 32");
    one_tensor(&b, "w", 2, ne, LR_GGML_F32, 32, 64);
    expect_bad(&b, "crafted.gguf: tensor 0 (w): offset 32, expected 0 (tensors lie in the order of their infos");
    one_tensor(&b, "w", 2, ne, LR_GGML_F32, 1ull << 40, 0);
    expect_bad(&b, "offset 1099511627776, expected 0");
    /* data: truncated, or more than the padded tensors */
    one_tensor(&b, "w", 2, ne, LR_GGML_F32, 0, 31);
    expect_bad(&b, "crafted.gguf: file is 127 bytes, expected 128 (the data section at 96 and 32 bytes of tensors, each "
                   "padded to the alignment 32): the data is truncated");
    one_tensor(&b, "w", 2, ne, LR_GGML_F32, 0, 33);
    expect_bad(&b, "file is 129 bytes, expected 128 (the data section at 96 and 32 bytes of tensors, each padded to the "
                   "alignment 32): extra bytes after the last tensor");
    one_tensor(&b, "w", 2, ne, LR_GGML_F32, 0, 0);
    b.n -= 5; /* inside the padding before the data */
    expect_bad(&b, "the data is truncated");
    /* two tensors: a duplicate name, and an overlap (the second at the first's offset) */
    b.n = 0;
    b_header(&b, 2, 0);
    b_info(&b, "w", 1, ne, LR_GGML_F32, 0);
    b_info(&b, "w", 1, ne, LR_GGML_F32, 32);
    b_pad(&b, 32);
    for (int i = 0; i < 64; i++) b_raw(&b, "\0", 1);
    expect_bad(&b, "crafted.gguf: tensor name w appears twice (tensors 0 and 1)");
    b.n = 0;
    b_header(&b, 2, 0);
    b_info(&b, "a", 1, ne, LR_GGML_F32, 0);
    b_info(&b, "b", 1, ne, LR_GGML_F32, 0);
    b_pad(&b, 32);
    for (int i = 0; i < 64; i++) b_raw(&b, "\0", 1);
    expect_bad(&b, "crafted.gguf: tensor 1 (b): offset 0, expected 32");
    /* with general.alignment 64: offsets in its multiples */
    b.n = 0;
    b_header(&b, 2, 1);
    b_str(&b, "general.alignment");
    b_u32(&b, LR_GGUF_UINT32);
    b_u32(&b, 64);
    b_info(&b, "a", 1, ne, LR_GGML_F32, 0);
    b_info(&b, "b", 1, ne, LR_GGML_F32, 32);
    b_pad(&b, 64);
    for (int i = 0; i < 128; i++) b_raw(&b, "\0", 1);
    expect_bad(&b, "tensor 1 (b): offset 32 is not a multiple of the alignment 64");
    free(b.b);
}

/* Every prefix of a valid file (metadata of every type, three tensors) is refused with a
 * message naming the file, never a crash; the whole file reads. */
static void test_every_truncation(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "t.gguf");
    meta m;
    make_meta(&m);
    lr_err err = { { 0 } };
    lr_gguf_tensor t[3] = { model_t[1], model_t[2], model_t[3] };
    float *v = calloc(256, sizeof *v);
    lr_gguf_writer w;
    assert_int_equal(lr_gguf_writer_init(&w, p, m.kv, m.nkv, t, 3, NULL, &err), LR_OK);
    for (int i = 0; i < 3; i++) assert_int_equal(lr_gguf_writer_put_f32(&w, t[i].name, v, numel(&t[i]), &err), LR_OK);
    assert_int_equal(lr_gguf_writer_commit(&w, &err), LR_OK);
    lr_gguf_writer_free(&w);
    free(v);
    size_t n;
    unsigned char *b = lr_test_read_file(p, &n);
    lr_gguf g;
    assert_int_equal(lr_gguf_from_memory(&g, b, n, "t.gguf", &err), LR_OK);
    lr_gguf_free(&g);
    for (size_t k = 0; k < n; k++) {
        err.msg[0] = 0;
        lr_status s = lr_gguf_from_memory(&g, b, k, "t.gguf", &err);
        if (s != LR_EFORMAT) fail_msg("prefix of %zu of %zu bytes: status %d (%s)", k, n, s, err.msg);
        if (strncmp(err.msg, "t.gguf: ", 8)) fail_msg("prefix %zu: message \"%s\"", k, err.msg);
        assert_null(g.arena);
    }
    /* the same through files, at a few lengths (header, metadata, infos, data) */
    char *q = lr_test_path(dir, "short.gguf");
    const size_t cuts[] = { 0, 3, 20, 100, 700, n - 200, n - 1 };
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        lr_test_write_file(q, b, cuts[i]);
        assert_int_equal(lr_gguf_open(&g, q, &err), LR_EFORMAT);
        assert_msg_contains(err.msg, q);
        assert_null(g.arena);
        assert_int_equal(g.has_fd, 0);
    }
    /* and with a byte appended */
    unsigned char *b2 = malloc(n + 1);
    memcpy(b2, b, n);
    b2[n] = 0;
    assert_int_equal(lr_gguf_from_memory(&g, b2, n + 1, "t.gguf", &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "extra bytes after the last tensor");
    free(b2);
    free(q);
    free(b);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* The file changes under an open reader: a tensor read then fails with LR_EIO. */
static void test_open_errors(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    lr_gguf g;
    lr_err err = { { 0 } };
    char *missing = lr_test_path(dir, "none.gguf");
    assert_int_equal(lr_gguf_open(&g, missing, &err), LR_EIO);
    assert_msg_contains(err.msg, "cannot open");
    assert_msg_contains(err.msg, missing);
    assert_int_equal(lr_gguf_open(&g, dir, &err), LR_EIO);
    assert_msg_contains(err.msg, "is a directory, expected a GGUF file");
    assert_int_equal(lr_gguf_open(&g, "", &err), LR_EINVAL);
    assert_int_equal(lr_gguf_open(&g, NULL, &err), LR_EINVAL);
    assert_int_equal(lr_gguf_open(NULL, missing, &err), LR_EINVAL);
    assert_int_equal(lr_gguf_from_memory(NULL, "", 0, "x", &err), LR_EINVAL);
    assert_int_equal(lr_gguf_from_memory(&g, NULL, 4, "x", &err), LR_EINVAL);
    assert_int_equal(lr_gguf_from_memory(&g, NULL, 0, NULL, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "(memory): header: the magic");

    char *p = lr_test_path(dir, "w.gguf");
    lr_gguf_tensor t = { "w", 1, { 100000 }, LR_GGML_F32, 0, 0 };
    float *v = calloc(100000, sizeof *v);
    const void *data[1] = { v };
    assert_int_equal(write_file(p, NULL, 0, &t, 1, data, NULL, &err), LR_OK);
    assert_int_equal(lr_gguf_open(&g, p, &err), LR_OK);
    assert_int_equal(truncate(p, 1000), 0);
    assert_int_equal(lr_gguf_get_f32(&g, v, "w", 100000, &err), LR_EIO);
    assert_msg_contains(err.msg, "w.gguf: w: cannot read");
    assert_msg_contains(err.msg, "shorter than when it was opened");
    lr_gguf_free(&g);
    free(v);
    free(p);
    free(missing);
    lr_test_rmtree(dir);
    free(dir);
}

/* A metadata section larger than the reader's 64 KiB window: a 300 KiB string and 20,000
 * tokens, read through the file. */
static void test_large_metadata(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "big.gguf");
    size_t big = 300 * 1024, ntok = 20000;
    char *s = malloc(big);
    for (size_t i = 0; i < big; i++) s[i] = (char)('a' + i % 26);
    lr_gguf_str *toks = malloc(ntok * sizeof *toks);
    char (*tb)[16] = malloc(ntok * sizeof *tb);
    for (size_t i = 0; i < ntok; i++) {
        snprintf(tb[i], sizeof tb[i], "tok%zu", i);
        toks[i] = (lr_gguf_str){ tb[i], strlen(tb[i]) };
    }
    lr_gguf_kv kv[3] = { { "big.string", { .type = LR_GGUF_STRING, .str = { s, big } } },
                         KV_A("tokenizer.ggml.tokens", LR_GGUF_STRING, ntok, toks),
                         KV_U("after", LR_GGUF_UINT8, 9) };
    lr_gguf_tensor t = { "w", 1, { 3 }, LR_GGML_BF16, 0, 0 };
    const uint16_t h[3] = { 0x3f80, 0x4000, 0xc040 };
    const void *data[1] = { h };
    lr_err err = { { 0 } };
    assert_int_equal(write_file(p, kv, 3, &t, 1, data, NULL, &err), LR_OK);
    lr_gguf g;
    assert_int_equal(lr_gguf_open(&g, p, &err), LR_OK);
    const lr_gguf_kv *k = lr_gguf_meta_find(&g, "big.string");
    assert_int_equal(k->value.str.len, big);
    assert_memory_equal(k->value.str.s, s, big);
    const void *arr;
    size_t n;
    assert_int_equal(lr_gguf_meta_get_array(&g, &arr, &n, "tokenizer.ggml.tokens", LR_GGUF_STRING, &err), LR_OK);
    assert_int_equal(n, ntok);
    for (size_t i = 0; i < ntok; i++) assert_string_equal(((const lr_gguf_str *)arr)[i].s, tb[i]);
    assert_int_equal(lr_gguf_meta_find(&g, "after")->value.u, 9);
    float f[3];
    assert_int_equal(lr_gguf_get_f32(&g, f, "w", 3, &err), LR_OK);
    assert_true(f[0] == 1.0f && f[1] == 2.0f && f[2] == -3.0f);
    lr_gguf_free(&g);
    free(s);
    free(toks);
    free(tb);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* ---- the writer's refusals ---- */

static void expect_init_bad_at(const char *path, const lr_gguf_kv *kv, size_t nkv, const lr_gguf_tensor *t, size_t nt,
                               const lr_gguf_write_opts *o, const char *needle, int line)
{
    lr_gguf_writer w;
    lr_err err = { { 0 } };
    lr_status s = lr_gguf_writer_init(&w, path, kv, nkv, t, nt, o, &err);
    if (s != LR_EINVAL) fail_msg("line %d: status %d, expected LR_EINVAL (%s)", line, s, err.msg);
    if (!strstr(err.msg, needle)) fail_msg("line %d: message \"%s\" does not mention \"%s\"", line, err.msg, needle);
    assert_null(w.af.f);
    assert_null(w.path);
    lr_gguf_writer_free(&w);
}
#define expect_init_bad(p, kv, nkv, t, nt, o, needle) expect_init_bad_at((p), (kv), (nkv), (t), (nt), (o), (needle), __LINE__)

static void test_writer_refusals(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "out.gguf");
    lr_gguf_tensor t1 = { "w", 1, { 4 }, LR_GGML_F32, 0, 0 };
    /* keys */
    const char *bad_keys[] = { "General.name", "general..name", ".a", "a.", "a b", "a-b", "", "caf\xc3\xa9" };
    for (size_t i = 0; i < sizeof bad_keys / sizeof *bad_keys; i++) {
        lr_gguf_kv kv = KV_U(bad_keys[i], LR_GGUF_UINT8, 1);
        expect_init_bad(p, &kv, 1, NULL, 0, NULL, "not lower_snake_case segments of [a-z0-9_] joined by '.'");
    }
    lr_gguf_kv nokey = KV_U(NULL, LR_GGUF_UINT8, 1);
    expect_init_bad(p, &nokey, 1, NULL, 0, NULL, "out.gguf: key 0 is NULL");
    char *longkey = malloc(65537);
    memset(longkey, 'k', 65536);
    longkey[65536] = 0;
    lr_gguf_kv lk = KV_U(longkey, LR_GGUF_UINT8, 1);
    expect_init_bad(p, &lk, 1, NULL, 0, NULL, "65536 bytes, over the limit of 65535");
    longkey[65535] = 0;
    lr_gguf_writer w;
    lr_err err = { { 0 } };
    assert_int_equal(lr_gguf_writer_init(&w, p, &lk, 1, NULL, 0, NULL, &err), LR_OK); /* 65535: fine */
    lr_gguf_writer_free(&w);
    free(longkey);
    lr_gguf_kv dup[2] = { KV_U("a.b", LR_GGUF_UINT8, 1), KV_U("a.b", LR_GGUF_UINT16, 2) };
    expect_init_bad(p, dup, 2, NULL, 0, NULL, "out.gguf: key a.b appears twice");
    /* values */
    const struct { lr_gguf_kv kv; const char *msg; } vals[] = {
        { KV_U("a", LR_GGUF_UINT8, 256), "key a: u 256 is not a u8" },
        { KV_U("a", LR_GGUF_UINT16, 65536), "u 65536 is not a u16" },
        { KV_U("a", LR_GGUF_UINT32, 1ull << 32), "u 4294967296 is not a u32" },
        { KV_U("a", LR_GGUF_BOOL, 2), "u 2 is not a bool" },
        { KV_I("a", LR_GGUF_INT8, -129), "i -129 is not an i8" },
        { KV_I("a", LR_GGUF_INT8, 128), "i 128 is not an i8" },
        { KV_I("a", LR_GGUF_INT16, 40000), "i 40000 is not an i16" },
        { KV_I("a", LR_GGUF_INT32, -3000000000ll), "i -3000000000 is not an i32" },
        { KV_F("a", LR_GGUF_FLOAT32, 1e300), "f 1e+300 is outside float32's range" },
        { { "a", { .type = (lr_gguf_type)13 } }, "key a: value type 13 is not a GGUF type" },
        { { "a", { .type = LR_GGUF_STRING, .str = { NULL, 3 } } }, "the string is NULL with length 3" },
        { { "a", { .type = LR_GGUF_STRING, .str = { "a\xff", 2 } } }, "the string is not valid UTF-8 (byte 0xff at 1)" },
        { KV_A("a", (lr_gguf_type)13, 0, NULL), "array element type 13 is not a GGUF type" },
        { KV_A("a", LR_GGUF_FLOAT32, 2, NULL), "array of 2 elements with no data" },
    };
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) expect_init_bad(p, &vals[i].kv, 1, NULL, 0, NULL, vals[i].msg);
    /* accepted at the edges: inf and nan as f32, the ranges' ends */
    lr_gguf_kv edges[] = { KV_F("a", LR_GGUF_FLOAT32, INFINITY), KV_F("b", LR_GGUF_FLOAT32, NAN),
                           KV_I("c", LR_GGUF_INT8, -128), KV_U("d", LR_GGUF_UINT32, UINT32_MAX),
                           KV_A("e", LR_GGUF_FLOAT32, 0, NULL) };
    assert_int_equal(lr_gguf_writer_init(&w, p, edges, 5, NULL, 0, NULL, &err), LR_OK);
    lr_gguf_writer_free(&w);
    uint8_t bools[2] = { 1, 2 };
    lr_gguf_kv bb = KV_A("a", LR_GGUF_BOOL, 2, bools);
    expect_init_bad(p, &bb, 1, NULL, 0, NULL, "key a: boolean element 1 is 2, expected 0 or 1");
    lr_gguf_str strs[2] = { { "ok", 2 }, { "\xed\xa0\x80", 3 } }; /* a surrogate */
    lr_gguf_kv sa = KV_A("a", LR_GGUF_STRING, 2, strs);
    expect_init_bad(p, &sa, 1, NULL, 0, NULL, "key a: string element 1 is not valid UTF-8");
    lr_gguf_value notarr[1] = { { .type = LR_GGUF_UINT8, .u = 1 } };
    lr_gguf_kv na = KV_A("a", LR_GGUF_ARRAY, 1, notarr);
    expect_init_bad(p, &na, 1, NULL, 0, NULL, "element 0 of an array of arrays has type u8");
    /* nesting: 8 levels written, 9 refused */
    lr_gguf_value lv[9];
    int8_t leaf = -1;
    lv[0] = (lr_gguf_value){ .type = LR_GGUF_ARRAY, .arr = { LR_GGUF_INT8, 1, &leaf } };
    for (int d = 1; d < 9; d++) lv[d] = (lr_gguf_value){ .type = LR_GGUF_ARRAY, .arr = { LR_GGUF_ARRAY, 1, &lv[d - 1] } };
    lr_gguf_kv deep8 = { "a", lv[7] }, deep9 = { "a", lv[8] };
    assert_int_equal(lr_gguf_writer_init(&w, p, &deep8, 1, NULL, 0, NULL, &err), LR_OK);
    assert_int_equal(lr_gguf_writer_commit(&w, &err), LR_OK);
    lr_gguf_writer_free(&w);
    lr_gguf g;
    assert_int_equal(lr_gguf_open(&g, p, &err), LR_OK);
    lr_gguf_free(&g);
    expect_init_bad(p, &deep9, 1, NULL, 0, NULL, "key a: arrays nested more than 8 deep");
    /* general.alignment must agree with opts */
    lr_gguf_kv al64 = KV_U("general.alignment", LR_GGUF_UINT32, 64), al32 = KV_U("general.alignment", LR_GGUF_UINT32, 32);
    lr_gguf_kv al64u = KV_U("general.alignment", LR_GGUF_UINT64, 64);
    expect_init_bad(p, &al64, 1, NULL, 0, NULL, "key general.alignment: u32 64, expected the u32 32 of opts->alignment");
    expect_init_bad(p, &al64u, 1, NULL, 0, NULL, "u64 0, expected the u32 32");
    lr_gguf_write_opts o = lr_gguf_write_opts_default();
    o.alignment = 64;
    assert_int_equal(lr_gguf_writer_init(&w, p, &al64, 1, NULL, 0, &o, &err), LR_OK);
    assert_int_equal(lr_gguf_writer_commit(&w, &err), LR_OK);
    lr_gguf_writer_free(&w);
    assert_int_equal(lr_gguf_open(&g, p, &err), LR_OK);
    assert_int_equal(lr_gguf_meta_count(&g), 1); /* not added twice */
    assert_int_equal(g.alignment, 64);
    lr_gguf_free(&g);
    assert_int_equal(lr_gguf_writer_init(&w, p, &al32, 1, NULL, 0, NULL, &err), LR_OK);
    lr_gguf_writer_free(&w);
    const uint32_t bad_al[] = { 0, 4, 12, 48, 1u << 31 | 1 };
    for (size_t i = 0; i < 5; i++) {
        o.alignment = bad_al[i];
        char msg[80];
        snprintf(msg, sizeof msg, "out.gguf: opts->alignment %u, expected a power of two >= 8", bad_al[i]);
        expect_init_bad(p, NULL, 0, NULL, 0, &o, msg);
    }
    /* tensors */
    lr_gguf_tensor tt[2] = { t1, t1 };
    expect_init_bad(p, NULL, 0, tt, 2, NULL, "out.gguf: tensor name w appears twice");
    const struct { lr_gguf_tensor t; const char *msg; } tens[] = {
        { { NULL, 1, { 4 }, LR_GGML_F32, 0, 0 }, "out.gguf: tensor 0 has no name" },
        { { "", 1, { 4 }, LR_GGML_F32, 0, 0 }, "tensor 0 (): a name of 0 bytes, expected 1 to 63" },
        { { "0123456789012345678901234567890123456789012345678901234567890123", 1, { 4 }, LR_GGML_F32, 0, 0 },
          "a name of 64 bytes, expected 1 to 63" },
        { { "a\nb", 1, { 4 }, LR_GGML_F32, 0, 0 }, "byte 0x0a at 1 of the name is a control character or not UTF-8" },
        { { "w", 0, { 4 }, LR_GGML_F32, 0, 0 }, "tensor 0 (w): n_dims 0, expected 1 to 4" },
        { { "w", 5, { 4 }, LR_GGML_F32, 0, 0 }, "n_dims 5, expected 1 to 4" },
        { { "w", 1, { 32 }, LR_GGML_Q4_0, 0, 0 }, "tensor 0 (w): type Q4_0: the writer takes F32, F16 and BF16" },
        { { "w", 1, { 4 }, LR_GGML_I32, 0, 0 }, "type I32: the writer takes" },
        { { "w", 1, { 4 }, (lr_ggml_type)4, 0, 0 }, "type (unknown): the writer takes" },
        { { "w", 2, { SIZE_MAX / 2, 4 }, LR_GGML_F32, 0, 0 }, "of F32: its size in bytes overflows" },
        { { "w", 1, { (size_t)1 << 62 }, LR_GGML_F32, 0, 0 }, "shape [4611686018427387904] of F32: its size in bytes overflows" },
    };
    for (size_t i = 0; i < sizeof tens / sizeof *tens; i++) expect_init_bad(p, NULL, 0, &tens[i].t, 1, NULL, tens[i].msg);
    /* arguments */
    expect_init_bad("", NULL, 0, NULL, 0, NULL, "lr_gguf_writer_init: empty path");
    expect_init_bad(NULL, NULL, 0, NULL, 0, NULL, "empty path");
    expect_init_bad(p, NULL, 1, NULL, 0, NULL, "out.gguf: NULL key/value or tensor array");
    expect_init_bad(p, NULL, 0, NULL, 1, NULL, "NULL key/value or tensor array");
    assert_int_equal(lr_gguf_writer_init(NULL, p, NULL, 0, NULL, 0, NULL, &err), LR_EINVAL);
    char *nodir = lr_test_path(dir, "no/such/dir/x.gguf");
    assert_int_equal(lr_gguf_writer_init(&w, nodir, NULL, 0, &t1, 1, NULL, &err), LR_EIO);
    assert_msg_contains(err.msg, nodir);
    lr_gguf_writer_free(&w);
    free(nodir);

    /* puts and commits */
    lr_test_write_file(p, "old", 3);
    lr_gguf_tensor th[2] = { t1, { "h", 1, { 3 }, LR_GGML_F16, 0, 0 } };
    assert_int_equal(lr_gguf_writer_init(&w, p, NULL, 0, th, 2, NULL, &err), LR_OK);
    float f[5] = { 1, 2, 3, 4, 5 };
    assert_int_equal(lr_gguf_writer_put(&w, "x", f, 4, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "out.gguf: tensor x is not in the header");
    assert_int_equal(lr_gguf_writer_put(&w, "w", f, 20, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "out.gguf: tensor w: 20 more bytes after 0 would exceed its 16");
    assert_int_equal(lr_gguf_writer_put(&w, "w", f, 6, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "out.gguf: tensor w: 6 bytes are not whole 4-byte elements");
    assert_int_equal(lr_gguf_writer_put(&w, "h", f, 3, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "3 bytes are not whole 2-byte elements");
    assert_int_equal(lr_gguf_writer_put(&w, "w", NULL, 4, &err), LR_EINVAL);
    assert_int_equal(lr_gguf_writer_put(&w, NULL, f, 4, &err), LR_EINVAL);
    assert_int_equal(lr_gguf_writer_put_f32(&w, "h", f, 4, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "out.gguf: tensor h: 4 more elements after 0 would exceed its 3");
    assert_int_equal(lr_gguf_writer_put_f32(&w, "h", NULL, 1, &err), LR_EINVAL);
    assert_int_equal(lr_gguf_writer_put_f32(&w, "x", f, 1, &err), LR_EINVAL);
    assert_int_equal(lr_gguf_writer_put_f32(&w, "w", f, 3, &err), LR_OK);
    assert_int_equal(lr_gguf_writer_commit(&w, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "out.gguf: tensor h has 0 of its 6 bytes");
    assert_int_equal(lr_gguf_writer_put_f32(&w, "h", f, 3, &err), LR_OK);
    assert_int_equal(lr_gguf_writer_commit(&w, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "out.gguf: tensor w has 12 of its 16 bytes");
    lr_gguf_writer_free(&w); /* discarded: the old file stays, no temp file */
    size_t n;
    unsigned char *old = lr_test_read_file(p, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(old, "old", 3);
    free(old);
    assert_int_equal(lr_test_hidden_entries(dir), 0);
    assert_int_equal(lr_gguf_writer_put(&w, "w", f, 4, &err), LR_EINVAL); /* freed */
    assert_int_equal(lr_gguf_writer_put_f32(&w, "w", f, 1, &err), LR_EINVAL);
    assert_int_equal(lr_gguf_writer_commit(&w, &err), LR_EINVAL);
    assert_int_equal(lr_gguf_writer_commit(NULL, &err), LR_EINVAL);
    lr_gguf_writer_free(NULL);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* ---- crash safety ---- */

/* Writes the file of test_layout_bytes' shape with `tag` as the architecture. */
static lr_status save(const char *p, const char *tag, lr_err *err)
{
    lr_gguf_kv kv[] = { { "general.architecture", { .type = LR_GGUF_STRING, .str = { tag, strlen(tag) } } } };
    lr_gguf_tensor t[] = { { "w", 2, { 300, 5 }, LR_GGML_F32, 0, 0 }, { "b", 1, { 1000 }, LR_GGML_BF16, 0, 0 } };
    float *w = calloc(1500, sizeof *w);
    lr_gguf_writer wr;
    lr_status s = lr_gguf_writer_init(&wr, p, kv, 1, t, 2, NULL, err);
    if (!s) s = lr_gguf_writer_put_f32(&wr, "b", w, 1000, err);
    if (!s) s = lr_gguf_writer_put_f32(&wr, "w", w, 1500, err);
    if (!s) s = lr_gguf_writer_commit(&wr, err);
    lr_gguf_writer_free(&wr);
    free(w);
    return s;
}

/* For every disk step of a save (create, each write, fsync, close, rename), that step made to
 * fail with EIO and with ENOSPC: the save fails with a message, the old file is intact byte
 * for byte, no temp file is left; made a short write, the save still succeeds. And a save into
 * a fresh name that fails leaves no file at all. */
static void test_failed_writes_leave_nothing(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "m.gguf"), *fresh = lr_test_path(dir, "fresh.gguf");
    lr_err err = { { 0 } };
    assert_int_equal(save(p, "old", &err), LR_OK);
    size_t n0;
    unsigned char *before = lr_test_read_file(p, &n0);
    lr__io_fault(0, 0, 0);
    assert_int_equal(save(p, "new", &err), LR_OK);
    size_t steps = lr__io_fault(0, 0, 0);
    assert_true(steps >= 5);
    assert_int_equal(save(p, "old", &err), LR_OK);
    const int errs[2] = { EIO, ENOSPC };
    for (size_t k = 1; k <= steps; k++) {
        for (int m = 0; m < 3; m++) {
            err.msg[0] = 0;
            lr__io_fault(k, m < 2 ? errs[m] : 0, m == 2);
            lr_status s = save(p, "new", &err);
            lr__io_fault(0, 0, 0);
            if (m == 2) {
                if (s != LR_OK) fail_msg("step %zu short write: %s", k, err.msg);
                assert_int_equal(save(p, "old", &err), LR_OK);
            } else {
                if (s == LR_OK) fail_msg("step %zu of %zu failed with %s but the save succeeded", k, steps,
                                         strerror(errs[m]));
                assert_int_equal(s, LR_EIO);
                assert_msg_contains(err.msg, p);
            }
            size_t n1;
            unsigned char *after = lr_test_read_file(p, &n1);
            assert_int_equal(n1, n0);
            if (memcmp(before, after, n0)) fail_msg("step %zu: the old file changed", k);
            free(after);
            assert_int_equal(lr_test_hidden_entries(dir), 0);
            /* a new file: nothing at all after a failure */
            if (m < 2) {
                lr__io_fault(k, errs[m], 0);
                s = save(fresh, "new", &err);
                lr__io_fault(0, 0, 0);
                assert_int_equal(s, LR_EIO);
                struct stat sb;
                assert_int_not_equal(stat(fresh, &sb), 0);
                unlink(fresh);
                assert_int_equal(lr_test_hidden_entries(dir), 0);
            }
        }
    }
    lr_gguf g;
    assert_int_equal(lr_gguf_open(&g, p, &err), LR_OK);
    const char *arch;
    assert_int_equal(lr_gguf_meta_get_string(&g, &arch, "general.architecture", &err), LR_OK);
    assert_string_equal(arch, "old");
    lr_gguf_free(&g);
    free(before);
    free(fresh);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_layout_bytes),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_no_tensors),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_tensor_reads),
        cmocka_unit_test(test_header_refusals),
        cmocka_unit_test(test_kv_refusals),
        cmocka_unit_test(test_kv_refusals_2),
        cmocka_unit_test(test_tensor_refusals),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_large_metadata),
        cmocka_unit_test(test_writer_refusals),
        cmocka_unit_test(test_failed_writes_leave_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
