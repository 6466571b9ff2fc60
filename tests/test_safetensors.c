/* test_safetensors.c — the safetensors reader and writer.
 *
 * Byte-exact agreement with the reference implementation's own test vectors
 * (huggingface/safetensors, tensor.rs: test_serialization, test_empty,
 * test_serialization_forced_alignement), every validation rule on a crafted file, checked
 * float conversion, and crash-safe writing. Tests run as root, where a read-only directory
 * does not stop a write, so failed writes are provoked by a missing directory, a directory
 * in the target's place, and RLIMIT_FSIZE (the read-only case runs for non-root users only).
 */
#include "lr_test.h"

#include <dirent.h>
#include <float.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lowrank/io/safetensors.h"

/* ---- helpers ---- */

/* 8-byte little-endian length + json + ndata bytes (value i & 0xff), parsed from memory
 * as "crafted.st". Returns the status and leaves the message in err. */
static lr_status craft(const char *json, size_t ndata, lr_err *err)
{
    size_t h = strlen(json), n = 8 + h + ndata;
    unsigned char *b = malloc(n);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, json, h);
    for (size_t i = 0; i < ndata; i++) b[8 + h + i] = (unsigned char)i;
    lr_safetensors st_, *st = &st_;
    lr_status s = lr_safetensors_from_memory(st, b, n, "crafted.st", err);
    if (s == LR_OK) {
        assert_non_null(st->mem);
        lr_safetensors_free(st);
        assert_null(st->mem); /* freed and emptied */
    } else {
        assert_null(st->mem); /* a failure leaves it empty */
        assert_null(st->t);
        assert_int_equal(st->nt, 0);
    }
    free(b);
    return s;
}

static void expect_bad(const char *json, size_t ndata, lr_status want, const char *needle)
{
    lr_err err = { { 0 } };
    lr_status s = craft(json, ndata, &err);
    if (s != want) fail_msg("header %s: status %d, expected %d (%s)", json, s, want, err.msg);
    assert_msg_contains(err.msg, "crafted.st: ");
    assert_msg_contains(err.msg, needle);
}

static void expect_ok(const char *json, size_t ndata)
{
    lr_err err = { { 0 } };
    lr_status s = craft(json, ndata, &err);
    if (s != LR_OK) fail_msg("header %s refused: %s", json, err.msg);
}

static lr_status from_bytes(const unsigned char *b, size_t n, lr_err *err)
{
    lr_safetensors st_, *st = &st_;
    lr_status s = lr_safetensors_from_memory(st, b, n, "crafted.st", err);
    lr_safetensors_free(st);
    return s;
}

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ---- agreement with the reference's serialised bytes ---- */

static void test_reference_vectors(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "ref.safetensors");
    const float v[6] = { 0, 1, 2, 3, 4, 5 };
    lr_err err = { { 0 } };

    /* test_serialization: {"attn.0": F32 (1,2,3)} */
    lr_st_tensor t = { "attn.0", LR_ST_F32, 3, { 1, 2, 3 }, v };
    assert_int_equal(lr_safetensors_write(p, &t, 1, NULL, 0, &err), LR_OK);
    static const unsigned char want1[] = {
        64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
        116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
        58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
        101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
        0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64 };
    size_t n;
    unsigned char *got = lr_test_read_file(p, &n);
    assert_int_equal(n, sizeof want1);
    assert_memory_equal(got, want1, sizeof want1);
    free(got);

    /* test_serialization_forced_alignement: "attn0" (1,1,2,3), padded with 7 spaces */
    lr_st_tensor t2 = { "attn0", LR_ST_F32, 4, { 1, 1, 2, 3 }, v };
    assert_int_equal(lr_safetensors_write(p, &t2, 1, NULL, 0, &err), LR_OK);
    static const unsigned char want2[] = {
        72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123, 34, 100, 116,
        121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58,
        91, 49, 44, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102,
        115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32,
        32, 32, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0,
        160, 64 };
    got = lr_test_read_file(p, &n);
    assert_int_equal(n, sizeof want2);
    assert_memory_equal(got, want2, sizeof want2);
    free(got);

    /* test_empty: no tensors, without and with metadata */
    assert_int_equal(lr_safetensors_write(p, NULL, 0, NULL, 0, &err), LR_OK);
    static const unsigned char want3[] = { 8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32 };
    got = lr_test_read_file(p, &n);
    assert_int_equal(n, sizeof want3);
    assert_memory_equal(got, want3, sizeof want3);
    free(got);
    lr_st_meta m = { "framework", "pt" };
    assert_int_equal(lr_safetensors_write(p, NULL, 0, &m, 1, &err), LR_OK);
    static const unsigned char want4[] = {
        40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95,
        95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112,
        116, 34, 125, 125, 32, 32, 32, 32, 32 };
    got = lr_test_read_file(p, &n);
    assert_int_equal(n, sizeof want4);
    assert_memory_equal(got, want4, sizeof want4);
    free(got);

    /* and the reference's hand-written test_deserialization file reads */
    static const char deser[] = "<\0\0\0\0\0\0\0{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],"
                                "\"data_offsets\":[0,16]}}"
                                "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
    lr_safetensors st_, *st = &st_;
    assert_int_equal(lr_safetensors_from_memory(st, deser, sizeof deser - 1, "d", &err), LR_OK);
    assert_int_equal(lr_safetensors_count(st), 1);
    const lr_st_tensor *x = lr_safetensors_find(st, "test");
    assert_non_null(x);
    assert_int_equal(x->dtype, LR_ST_I32);
    assert_int_equal(x->ndim, 2);
    lr_safetensors_free(st);

    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* ---- round trip ---- */

static void test_round_trip(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "rt.safetensors");
    float w[2 * 3] = { 1.5f, -2.25f, 3e-8f, 1e30f, -0.0f, 7.0f };
    uint16_t h[3] = { 0x3c00, 0xc000, 0x0001 };      /* F16: 1, -2, 2^-24 */
    uint16_t bf[2] = { 0x3f80, 0x4049 };             /* BF16: 1, 3.140625 */
    double d = 0.1;                                  /* scalar F64 */
    int64_t ids[4] = { -1, 0, 1, INT64_MAX };
    uint8_t flags[5] = { 1, 2, 3, 4, 5 };
    lr_st_tensor t[] = {
        { "b.weight", LR_ST_F32, 2, { 2, 3 }, w },
        { "a.half", LR_ST_F16, 1, { 3 }, h },
        { "a.brain", LR_ST_BF16, 2, { 1, 2 }, bf },
        { "scalar", LR_ST_F64, 0, { 0 }, &d },
        { "ids", LR_ST_I64, 1, { 4 }, ids },
        { "flags", LR_ST_U8, 1, { 5 }, flags },
        { "empty", LR_ST_F32, 2, { 2, 0 }, NULL },
    };
    const size_t nt = sizeof t / sizeof *t;
    lr_st_meta meta[] = { { "format", "pt" }, { "lowrank", "0.1.0 \xc3\xa9\"quoted\"" } };
    lr_err err = { { 0 } };
    assert_int_equal(lr_safetensors_write(p, t, nt, meta, 2, &err), LR_OK);
    assert_int_equal(lr_test_hidden_entries(dir), 0);

    lr_safetensors st_, *st = &st_;
    assert_int_equal(lr_safetensors_open(st, p, &err), LR_OK);
    assert_string_equal(lr_safetensors_path(st), p);
    assert_int_equal(lr_safetensors_count(st), nt);
    /* file order: dtype alignment descending, then name */
    const char *order[] = { "ids", "scalar", "b.weight", "empty", "a.brain", "a.half", "flags" };
    for (size_t i = 0; i < nt; i++) assert_string_equal(lr_safetensors_at(st, i)->name, order[i]);
    assert_null(lr_safetensors_at(st, nt));
    /* data 8-byte aligned in the file: the header is padded */
    unsigned char *raw;
    size_t n;
    raw = lr_test_read_file(p, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | raw[i];
    assert_int_equal(hl % 8, 0);
    free(raw);

    for (size_t i = 0; i < nt; i++) {
        const lr_st_tensor *x = lr_safetensors_find(st, t[i].name);
        assert_non_null(x);
        assert_int_equal(x->dtype, t[i].dtype);
        assert_int_equal(x->ndim, t[i].ndim);
        for (size_t k = 0; k < x->ndim; k++) assert_int_equal(x->shape[k], t[i].shape[k]);
        size_t nb;
        assert_int_equal(lr_st_tensor_nbytes(x, &nb, &err), LR_OK);
        assert_null(x->data); /* read on demand */
        unsigned char *got = malloc(nb ? nb : 1);
        assert_int_equal(lr_safetensors_get_bytes(st, got, t[i].name, 0, nb, &err), LR_OK);
        if (nb) assert_memory_equal(got, t[i].data, nb); /* host order */
        free(got);
    }
    assert_null(lr_safetensors_find(st, "nope"));
    assert_string_equal(lr_safetensors_meta(st, "format"), "pt");
    assert_string_equal(lr_safetensors_meta(st, "lowrank"), "0.1.0 \xc3\xa9\"quoted\"");
    assert_null(lr_safetensors_meta(st, "absent"));
    assert_int_equal(lr_safetensors_meta_count(st), 2);
    assert_string_equal(lr_safetensors_meta_at(st, 0)->key, "format");
    assert_null(lr_safetensors_meta_at(st, 2));

    /* checked float access */
    float out[6];
    size_t s23[2] = { 2, 3 };
    assert_int_equal(lr_safetensors_get_f32(st, out, "b.weight", 2, s23, &err), LR_OK);
    for (int i = 0; i < 6; i++) assert_int_equal(fbits(out[i]), fbits(w[i]));
    size_t s3[1] = { 3 };
    assert_int_equal(lr_safetensors_get_f32(st, out, "a.half", 1, s3, &err), LR_OK);
    assert_true(out[0] == 1.0f && out[1] == -2.0f && out[2] == ldexpf(1.0f, -24));
    size_t s12[2] = { 1, 2 };
    assert_int_equal(lr_safetensors_get_f32(st, out, "a.brain", 2, s12, &err), LR_OK);
    assert_true(out[0] == 1.0f && out[1] == 3.140625f);
    assert_int_equal(lr_safetensors_get_f32(st, out, "scalar", 0, NULL, &err), LR_OK);
    assert_true(out[0] == 0.1f);
    size_t s20[2] = { 2, 0 };
    assert_int_equal(lr_safetensors_get_f32(st, NULL, "empty", 2, s20, &err), LR_OK);

    /* the rest were not consumed */
    const char *unused[4];
    assert_int_equal(lr_safetensors_unused(st, unused, 4), 2);
    assert_string_equal(unused[0], "ids");
    assert_string_equal(unused[1], "flags");
    assert_int_equal(lr_safetensors_check_all_used(st, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, p);
    assert_msg_contains(err.msg, "2 unexpected tensors: ids, flags");
    assert_int_equal(lr_safetensors_mark_used(st, "ids", &err), LR_OK);
    assert_int_equal(lr_safetensors_check_all_used(st, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "1 unexpected tensor: flags");
    assert_int_equal(lr_safetensors_mark_used(st, "flags", &err), LR_OK);
    assert_int_equal(lr_safetensors_check_all_used(st, &err), LR_OK);
    assert_int_equal(lr_safetensors_mark_used(st, "ghost", &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "missing tensor ghost");
    lr_safetensors_free(st);
    lr_safetensors_free(NULL);

    /* rewriting what was read gives the same bytes */
    unsigned char *first = lr_test_read_file(p, &n);
    assert_int_equal(lr_safetensors_open(st, p, &err), LR_OK);
    lr_st_tensor copy[8];
    for (size_t i = 0; i < nt; i++) copy[i] = *lr_safetensors_at(st, i);
    void **bufs = lr_test_st_fill(st, copy, nt);
    lr_st_meta mcopy[2] = { *lr_safetensors_meta_at(st, 0), *lr_safetensors_meta_at(st, 1) };
    char *p2 = lr_test_path(dir, "rt2.safetensors");
    assert_int_equal(lr_safetensors_write(p2, copy, nt, mcopy, 2, &err), LR_OK);
    lr_test_st_free(bufs, nt);
    size_t n2;
    unsigned char *second = lr_test_read_file(p2, &n2);
    assert_int_equal(n, n2);
    assert_memory_equal(first, second, n);
    free(first);
    free(second);
    lr_safetensors_free(st);
    free(p2);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* ---- checked access ---- */

static void test_get_f32_errors(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "m.safetensors");
    float *w = calloc(784 * 1000, sizeof *w);
    int32_t ints[2] = { 1, 2 };
    double big[2] = { 1.0, 1e300 };
    lr_st_tensor t[] = {
        { "linear1.weight", LR_ST_F32, 2, { 784, 1000 }, w },
        { "steps", LR_ST_I32, 1, { 2 }, ints },
        { "huge", LR_ST_F64, 1, { 2 }, big },
    };
    lr_err err = { { 0 } };
    assert_int_equal(lr_safetensors_write(p, t, 3, NULL, 0, &err), LR_OK);
    lr_safetensors st_, *st = &st_;
    assert_int_equal(lr_safetensors_open(st, p, &err), LR_OK);
    float *dst = malloc(784 * 1000 * sizeof *dst);
    size_t want[2] = { 1000, 784 };
    assert_int_equal(lr_safetensors_get_f32(st, dst, "linear1.weight", 2, want, &err), LR_EDIM);
    char msg[600];
    snprintf(msg, sizeof msg, "%s: linear1.weight: expected shape (1000, 784), got (784, 1000)", p);
    assert_string_equal(err.msg, msg);
    size_t flat[1] = { 784000 };
    assert_int_equal(lr_safetensors_get_f32(st, dst, "linear1.weight", 1, flat, &err), LR_EDIM);
    assert_msg_contains(err.msg, "expected shape (784000), got (784, 1000)");
    assert_int_equal(lr_safetensors_get_f32(st, dst, "linear1.bias", 1, flat, &err), LR_EFORMAT);
    snprintf(msg, sizeof msg, "%s: missing tensor linear1.bias", p);
    assert_string_equal(err.msg, msg);
    size_t two[1] = { 2 };
    assert_int_equal(lr_safetensors_get_f32(st, dst, "steps", 1, two, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "steps: dtype I32, expected F32");
    assert_int_equal(lr_safetensors_get_f32(st, dst, "huge", 1, two, &err), LR_ERANGE);
    assert_msg_contains(err.msg, "huge: element 1 = 1e+300 is outside float32's range");
    assert_int_equal(lr_safetensors_get_f32(NULL, dst, "x", 0, NULL, &err), LR_EINVAL);
    /* failures do not mark anything used */
    assert_int_equal(lr_safetensors_unused(st, NULL, 0), 3);
    lr_safetensors_free(st);
    free(dst);
    free(w);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

static void test_half_conversions(void **state)
{
    (void)state;
    /* F16: 1, -2, max 65504, smallest subnormal 2^-24, largest subnormal, smallest normal
     * 2^-14, +-0, +-inf, NaN */
    assert_true(lr_f16_to_f32(0x3c00) == 1.0f);
    assert_true(lr_f16_to_f32(0xc000) == -2.0f);
    assert_true(lr_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(lr_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    assert_true(lr_f16_to_f32(0x03ff) == ldexpf(1023.0f, -24));
    assert_true(lr_f16_to_f32(0x0400) == ldexpf(1.0f, -14));
    assert_true(lr_f16_to_f32(0x3555) == 0.333251953125f);
    assert_int_equal(fbits(lr_f16_to_f32(0x0000)), 0x00000000u);
    assert_int_equal(fbits(lr_f16_to_f32(0x8000)), 0x80000000u);
    assert_true(isinf(lr_f16_to_f32(0x7c00)) && lr_f16_to_f32(0x7c00) > 0);
    assert_true(isinf(lr_f16_to_f32(0xfc00)) && lr_f16_to_f32(0xfc00) < 0);
    assert_true(isnan(lr_f16_to_f32(0x7e00)));
    /* every finite F16 value widens exactly: compare against the formula in double */
    for (uint32_t u = 0; u < 0x10000; u++) {
        uint16_t hv = (uint16_t)u;
        unsigned e = (hv >> 10) & 0x1f, f = hv & 0x3ff;
        if (e == 0x1f) continue;
        double mag = e ? ldexp(1024.0 + f, (int)e - 25) : ldexp((double)f, -24);
        double want = (hv & 0x8000) ? -mag : mag;
        if ((double)lr_f16_to_f32(hv) != want) fail_msg("F16 0x%04x -> %.9g, want %.9g", u,
                                                       (double)lr_f16_to_f32(hv), want);
    }
    /* BF16: the top half of a float */
    assert_true(lr_bf16_to_f32(0x3f80) == 1.0f);
    assert_true(lr_bf16_to_f32(0xc049) == -3.140625f);
    assert_true(lr_bf16_to_f32(0x0001) == ldexpf(1.0f, -133));
    assert_true(isinf(lr_bf16_to_f32(0x7f80)));
    assert_true(isnan(lr_bf16_to_f32(0x7fc0)));

    /* little-endian decoding from explicit bytes, whatever the host order */
    static const char hdr[] = "{\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                              "\"h\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[8,10]},"
                              "\"b\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[10,12]},"
                              "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[12,20]}}";
    size_t hl = sizeof hdr - 1;
    unsigned char buf[8 + sizeof hdr + 20];
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    static const unsigned char data[20] = {
        0x00, 0x00, 0x80, 0x3f,  0x00, 0x00, 0x20, 0xc1, /* 1.0f, -10.0f */
        0x00, 0x3c,                                      /* F16 1.0 */
        0x49, 0x40,                                      /* BF16 3.140625 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe0, 0x3f,  /* 0.5 */
    };
    memcpy(buf + 8 + hl, data, 20);
    lr_safetensors st_, *st = &st_;
    lr_err err = { { 0 } };
    assert_int_equal(lr_safetensors_from_memory(st, buf, 8 + hl + 20, "le", &err), LR_OK);
    float out[2];
    size_t two[1] = { 2 }, one[1] = { 1 };
    assert_int_equal(lr_safetensors_get_f32(st, out, "f", 1, two, &err), LR_OK);
    assert_true(out[0] == 1.0f && out[1] == -10.0f);
    assert_int_equal(lr_safetensors_get_f32(st, out, "h", 1, one, &err), LR_OK);
    assert_true(out[0] == 1.0f);
    assert_int_equal(lr_safetensors_get_f32(st, out, "b", 1, one, &err), LR_OK);
    assert_true(out[0] == 3.140625f);
    assert_int_equal(lr_safetensors_get_f32(st, out, "d", 1, one, &err), LR_OK);
    assert_true(out[0] == 0.5f);
    assert_int_equal(lr_safetensors_check_all_used(st, &err), LR_OK);
    lr_safetensors_free(st);
}

/* ---- validation: one crafted file per rule ---- */

#define T16 "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}"

static void test_header_bounds(void **state)
{
    (void)state;
    lr_err err = { { 0 } };
    unsigned char b[32] = { 0 };
    /* shorter than the length field (the reference's HeaderTooSmall) */
    assert_int_equal(from_bytes(b, 0, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "crafted.st: file is 0 bytes, too short");
    assert_int_equal(from_bytes(b, 7, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "file is 7 bytes");
    /* over the 100,000,000 limit (HeaderTooLarge); the limit itself is allowed in principle */
    uint64_t n = 100000001;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(n >> (8 * i));
    assert_int_equal(from_bytes(b, 16, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "header length 100000001 exceeds the limit of 100000000 bytes");
    memset(b, 0xff, 8); /* 2^64 - 1: must not wrap around */
    assert_int_equal(from_bytes(b, 16, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "exceeds the limit");
    /* past the end of the file (InvalidHeaderLength) */
    memset(b, 0, 8);
    b[0] = 60;
    assert_int_equal(from_bytes(b, 8, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "header length 60 runs past the end of the file (8 bytes)");
    n = 100000000;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(n >> (8 * i));
    assert_int_equal(from_bytes(b, 32, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "runs past the end");
    /* empty header */
    memset(b, 0, 8);
    assert_int_equal(from_bytes(b, 8, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "does not start with '{'");
}

static void test_header_text(void **state)
{
    (void)state;
    /* not UTF-8 (InvalidHeader): a stray 0xff, an overlong '/', a surrogate, a cut sequence */
    expect_bad("{\xff}", 0, LR_EFORMAT, "not valid UTF-8 (byte 0xff at header offset 1)");
    expect_bad("{\"\xc0\xaf\":1}", 0, LR_EFORMAT, "not valid UTF-8");
    expect_bad("{\"\xed\xa0\x80\":1}", 0, LR_EFORMAT, "not valid UTF-8");
    expect_bad("{\"\xf4\x90\x80\x80\":1}", 0, LR_EFORMAT, "not valid UTF-8");
    expect_bad("{}\xe2\x82", 0, LR_EFORMAT, "not valid UTF-8");
    /* must start with '{' (InvalidHeaderStart) */
    expect_bad("[]", 0, LR_EFORMAT, "does not start with '{'");
    expect_bad(" \t\r\n", 0, LR_EFORMAT, "does not start with '{'");
    expect_bad("\f{}", 0, LR_EFORMAT, "does not start with '{'"); /* not JSON whitespace */
    /* JSON whitespace before the '{' is accepted, as the reference does (safetensors #686) */
    lr_err ws_err = { { 0 } };
    assert_int_equal(craft(" \n\t\r{}", 0, &ws_err), LR_OK);
    assert_int_equal(craft("  {\"t\":{\"dtype\":\"F8_E4M3FNUZ\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
                           &ws_err), LR_OK);
    expect_bad("[]", 0, LR_EFORMAT, "does not start with '{'");
    /* JSON (InvalidHeaderDeserialization) */
    expect_bad("{", 0, LR_EFORMAT, "header is not valid JSON");
    expect_bad("{} x", 0, LR_EFORMAT, "header is not valid JSON");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
               "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
               2, LR_EFORMAT, "duplicate");
    expect_bad("{\"t\":{\"dtype\":\"U8\",\"shape\":[99999999999999999999],\"data_offsets\":[0,1]}}",
               1, LR_EFORMAT, "not valid JSON");
    /* trailing JSON whitespace is the reference's padding and is fine; so are UTF-8 names */
    expect_ok("{}\r \t\n", 0);
    expect_ok("{\"caf\xc3\xa9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1);
}

static void test_entries(void **state)
{
    (void)state;
    expect_ok(T16, 16);
    expect_bad("{\"test\":[1,2]}", 0, LR_EFORMAT, "tensor test: entry is an array");
    expect_bad("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2]}}", 16, LR_EFORMAT,
               "missing field \"data_offsets\"");
    expect_bad("{\"test\":{\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16, LR_EFORMAT,
               "missing field \"dtype\"");
    expect_bad("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16],\"x\":1}}",
               16, LR_EFORMAT, "unexpected field \"x\"");
    /* dtype */
    expect_bad("{\"test\":{\"dtype\":\"F31\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16,
               LR_EFORMAT, "tensor test: unknown dtype \"F31\"");
    expect_bad("{\"test\":{\"dtype\":\"f32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16,
               LR_EFORMAT, "unknown dtype \"f32\"");
    expect_bad("{\"test\":{\"dtype\":4,\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16,
               LR_EFORMAT, "dtype is an integer, expected a string");
    /* every dtype the reference knows is accepted, with its size */
    const struct { const char *name; size_t bytes4; } all[] = {
        { "BOOL", 4 }, { "U8", 4 }, { "I8", 4 }, { "F8_E5M2", 4 }, { "F8_E4M3", 4 },
        { "F8_E8M0", 4 }, { "F8_E4M3FNUZ", 4 }, { "F8_E5M2FNUZ", 4 }, { "I16", 8 }, { "U16", 8 }, { "F16", 8 }, { "BF16", 8 },
        { "I32", 16 }, { "U32", 16 }, { "F32", 16 }, { "F64", 32 }, { "I64", 32 },
        { "U64", 32 }, { "C64", 32 }, { "F4", 2 }, { "F6_E2M3", 3 }, { "F6_E3M2", 3 },
    };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        char h[200];
        snprintf(h, sizeof h, "{\"t\":{\"dtype\":\"%s\",\"shape\":[4],\"data_offsets\":[0,%zu]}}",
                 all[i].name, all[i].bytes4);
        expect_ok(h, all[i].bytes4);
        lr_st_dtype d;
        assert_int_equal(lr_st_dtype_parse(&d, all[i].name, NULL), LR_OK);
        assert_string_equal(lr_st_dtype_name(d), all[i].name);
    }
    assert_null(lr_st_dtype_name(LR_ST_NDTYPES));
    assert_int_equal(lr_st_dtype_bits(LR_ST_NDTYPES), 0);
    /* sub-byte types must fill whole bytes */
    expect_bad("{\"t\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, LR_EFORMAT,
               "3 elements of F4 do not fill whole bytes");
    /* shape */
    expect_bad("{\"test\":{\"dtype\":\"I32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16,
               LR_EFORMAT, "shape is an integer, expected an array");
    expect_bad("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,-2],\"data_offsets\":[0,16]}}", 16,
               LR_EFORMAT, "shape[1] is not a non-negative integer");
    expect_bad("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2.0],\"data_offsets\":[0,16]}}", 16,
               LR_EFORMAT, "shape[1] is not a non-negative integer");
    expect_bad("{\"test\":{\"dtype\":\"I32\",\"shape\":[\"2\",2],\"data_offsets\":[0,16]}}", 16,
               LR_EFORMAT, "shape[0] is not a non-negative integer");
    expect_bad("{\"t\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
               LR_EFORMAT, "tensor t has 9 dimensions, at most 8 supported");
    expect_ok("{\"t\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1);
    /* test_empty_shapes_allowed and test_zero_sized_tensor */
    expect_ok("{\"test\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4);
    expect_ok("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,0],\"data_offsets\":[0, 0]}}", 0);
    /* data_offsets */
    expect_bad("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0]}}", 16,
               LR_EFORMAT, "data_offsets must be an array [begin, end]");
    expect_bad("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16,32]}}", 16,
               LR_EFORMAT, "data_offsets must be an array [begin, end]");
    expect_bad("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[-1,16]}}", 16,
               LR_EFORMAT, "data_offsets must be non-negative integers");
    expect_bad("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":{\"a\":1}}}", 16,
               LR_EFORMAT, "data_offsets must be an array");
}

static void test_overflow(void **state)
{
    (void)state;
    /* the reference's test_validation_overflow: element count, then bytes */
    expect_bad("{\"test\":{\"dtype\":\"I32\",\"shape\":[4,9223372036854775807],\"data_offsets\":[0,16]}}",
               16, LR_ERANGE, "tensor test: element count of shape (4, 9223372036854775807) overflows");
    expect_bad("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,9223372036854775807],\"data_offsets\":[0,16]}}",
               16, LR_ERANGE, "byte count of shape (2, 9223372036854775807) x I32 overflows");
    /* as in the reference (checked_mul from 1), a leading 0 makes the count 0 before any
     * product could overflow: such a file is accepted */
    expect_ok("{\"test\":{\"dtype\":\"U8\",\"shape\":[0,9223372036854775807,9223372036854775807],"
              "\"data_offsets\":[0,0]}}", 0);
}

static void test_offsets(void **state)
{
    (void)state;
    /* test_invalid_info: bytes do not match shape x dtype */
    expect_bad("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0, 4]}}", 4,
               LR_EFORMAT, "tensor test: data_offsets [0, 4] hold 4 bytes, but shape (2, 2) of I32 needs 16");
    /* must start at 0 */
    expect_bad("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[4,20]}}", 20,
               LR_EFORMAT, "data_offsets [4, 20] begin at 4, expected 0");
    /* a gap between tensors */
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
               "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]}}", 5, LR_EFORMAT,
               "tensor b: data_offsets [3, 5] begin at 3, expected 2 (offsets must start at 0 and be contiguous: gap)");
    /* overlap (the reference's test_json_attack: ten tensors all at [0,16]) */
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
               "\"c\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16, LR_EFORMAT,
               "expected 16 (offsets must start at 0 and be contiguous: overlap)");
    /* end before begin */
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},"
               "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
               "\"c\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,1]}}", 2, LR_EFORMAT,
               "tensor c: data_offsets [2, 1]");
    /* entries may come in any order in the JSON: they are sorted by offset */
    expect_ok("{\"z\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]},"
              "\"y\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}", 5);
    /* offsets past the end of the file */
    expect_bad("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 14,
               LR_EFORMAT, "file is 82 bytes, expected 84 (8 + 60 header + 16 data): data section truncated");
}

static void test_file_length(void **state)
{
    (void)state;
    /* test_metadata_incomplete_buffer: extra bytes (a polyglot file), and missing bytes */
    expect_bad(T16, 17, LR_EFORMAT, "extra bytes after the last tensor");
    expect_bad(T16, 15, LR_EFORMAT, "data section truncated");
    expect_bad("{}", 1, LR_EFORMAT, "file is 11 bytes, expected 10");
}

static void test_metadata(void **state)
{
    (void)state;
    expect_ok("{\"__metadata__\":{\"format\":\"pt\",\"k\":\"\"}}", 0);
    expect_ok("{\"__metadata__\":{}}", 0);
    expect_bad("{\"__metadata__\":[\"a\"]}", 0, LR_EFORMAT,
               "__metadata__ is an array, expected an object of strings");
    expect_bad("{\"__metadata__\":\"pt\"}", 0, LR_EFORMAT, "__metadata__ is a string");
    expect_bad("{\"__metadata__\":{\"step\":100}}", 0, LR_EFORMAT,
               "__metadata__ value for \"step\" is an integer, expected a string");
    expect_bad("{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}", 0, LR_EFORMAT, "is an object");
    expect_bad("{\"__metadata__\":{\"a\":null}}", 0, LR_EFORMAT, "is null");
    expect_bad("{\"__metadata__\":{\"a\":\"x\",\"a\":\"y\"}}", 0, LR_EFORMAT, "duplicate");
}

/* ---- writer arguments ---- */

static void test_write_arguments(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "w.safetensors");
    float v[4] = { 0 };
    lr_err err = { { 0 } };
    lr_st_tensor dup[2] = { { "a", LR_ST_F32, 1, { 2 }, v }, { "a", LR_ST_F32, 1, { 2 }, v + 2 } };
    assert_int_equal(lr_safetensors_write(p, dup, 2, NULL, 0, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "tensor name a appears twice");
    lr_st_tensor reserved = { "__metadata__", LR_ST_F32, 1, { 2 }, v };
    assert_int_equal(lr_safetensors_write(p, &reserved, 1, NULL, 0, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "__metadata__");
    lr_st_tensor nodata = { "x", LR_ST_F32, 1, { 2 }, NULL };
    assert_int_equal(lr_safetensors_write(p, &nodata, 1, NULL, 0, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "tensor x has no data");
    lr_st_tensor noname = { NULL, LR_ST_F32, 1, { 2 }, v };
    assert_int_equal(lr_safetensors_write(p, &noname, 1, NULL, 0, &err), LR_EINVAL);
    lr_st_tensor badutf = { "\xff", LR_ST_F32, 1, { 2 }, v };
    assert_int_equal(lr_safetensors_write(p, &badutf, 1, NULL, 0, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "not valid UTF-8");
    lr_st_tensor baddt = { "x", (lr_st_dtype)99, 1, { 2 }, v };
    assert_int_equal(lr_safetensors_write(p, &baddt, 1, NULL, 0, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "invalid dtype 99");
    lr_st_tensor deep = { "x", LR_ST_F32, 9, { 1 }, v };
    assert_int_equal(lr_safetensors_write(p, &deep, 1, NULL, 0, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "9 dimensions");
    lr_st_meta mdup[2] = { { "k", "1" }, { "k", "2" } };
    assert_int_equal(lr_safetensors_write(p, NULL, 0, mdup, 2, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "metadata key k appears twice");
    lr_st_meta mnull = { "k", NULL };
    assert_int_equal(lr_safetensors_write(p, NULL, 0, &mnull, 1, &err), LR_EINVAL);
    assert_int_equal(lr_safetensors_write(p, NULL, 1, NULL, 0, &err), LR_EINVAL);
    assert_int_equal(lr_safetensors_write("", NULL, 0, NULL, 0, &err), LR_EINVAL);
    /* nothing was created by any of these */
    assert_int_equal(access(p, F_OK), -1);
    assert_int_equal(lr_test_hidden_entries(dir), 0);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* ---- opening and crash-safe writing ---- */

static void test_open_errors(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "absent.safetensors");
    lr_safetensors st_, *st = &st_;
    lr_err err = { { 0 } };
    assert_int_equal(lr_safetensors_open(st, p, &err), LR_EIO);
    assert_null(st->mem);
    assert_int_equal(st->has_fd, 0);
    assert_null(st->path);
    assert_msg_contains(err.msg, p);
    assert_msg_contains(err.msg, strerror(ENOENT));
    assert_int_equal(lr_safetensors_open(st, dir, &err), LR_EIO);
    assert_msg_contains(err.msg, "is a directory");
    assert_int_equal(lr_safetensors_open(st, "", &err), LR_EINVAL);
    assert_int_equal(lr_safetensors_open(NULL, p, &err), LR_EINVAL);
    /* a bad file on disk names its path */
    lr_test_write_file(p, "\x02\0\0\0\0\0\0\0{}x", 11);
    assert_int_equal(lr_safetensors_open(st, p, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, p);
    assert_msg_contains(err.msg, "extra bytes");
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

static void write_old(const char *p, float *v)
{
    lr_st_tensor t = { "old", LR_ST_F32, 1, { 4 }, v };
    assert_int_equal(lr_safetensors_write(p, &t, 1, NULL, 0, NULL), LR_OK);
}

static void assert_old_intact(const char *p)
{
    lr_safetensors st_, *st = &st_;
    lr_err err = { { 0 } };
    assert_int_equal(lr_safetensors_open(st, p, &err), LR_OK);
    float out[4];
    size_t four[1] = { 4 };
    assert_int_equal(lr_safetensors_get_f32(st, out, "old", 1, four, &err), LR_OK);
    assert_true(out[0] == 1.0f && out[3] == 4.0f);
    lr_safetensors_free(st);
}

static void test_failed_writes_keep_old(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "ckpt.safetensors");
    float old[4] = { 1, 2, 3, 4 };
    write_old(p, old);
    lr_err err = { { 0 } };

    /* the write fails part-way (file size limit, as a full disk would) */
    static float big[1 << 16];
    lr_st_tensor t = { "new", LR_ST_F32, 1, { 1 << 16 }, big };
    struct rlimit saved, small;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    small = saved;
    small.rlim_cur = 8192;
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    lr_status s = lr_safetensors_write(p, &t, 1, NULL, 0, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, oldsig);
    assert_int_equal(s, LR_EIO);
    assert_msg_contains(err.msg, p);
    assert_msg_contains(err.msg, strerror(EFBIG));
    assert_old_intact(p);
    assert_int_equal(lr_test_hidden_entries(dir), 0);

    /* the directory does not exist */
    char *nodir = lr_test_path(dir, "no/such/dir/ckpt.safetensors");
    assert_int_equal(lr_safetensors_write(nodir, &t, 1, NULL, 0, &err), LR_EIO);
    assert_msg_contains(err.msg, nodir);
    free(nodir);

    /* a directory where the file should go: rename fails, the directory stays */
    char *sub = lr_test_path(dir, "taken");
    assert_int_equal(mkdir(sub, 0755), 0);
    char *inner = lr_test_path(sub, "ckpt.safetensors");
    write_old(inner, old);
    assert_int_equal(lr_safetensors_write(sub, &t, 1, NULL, 0, &err), LR_EIO);
    assert_msg_contains(err.msg, "rename");
    assert_old_intact(inner);
    assert_int_equal(lr_test_hidden_entries(dir), 0);
    free(inner);
    free(sub);

    /* a read-only directory, where that means something (not for root) */
    if (geteuid() != 0) {
        assert_int_equal(chmod(dir, 0555), 0);
        assert_int_equal(lr_safetensors_write(p, &t, 1, NULL, 0, &err), LR_EIO);
        assert_msg_contains(err.msg, strerror(EACCES));
        chmod(dir, 0755);
        assert_old_intact(p);
    }

    /* and a good write replaces the file */
    assert_int_equal(lr_safetensors_write(p, &t, 1, NULL, 0, &err), LR_OK);
    lr_safetensors st_, *st = &st_;
    assert_int_equal(lr_safetensors_open(st, p, &err), LR_OK);
    assert_non_null(lr_safetensors_find(st, "new"));
    assert_null(lr_safetensors_find(st, "old"));
    lr_safetensors_free(st);
    assert_int_equal(lr_test_hidden_entries(dir), 0);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* ---- float32 -> binary16 / bfloat16 (round to nearest, ties to even) ---- */

static float f32_of(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static void test_f32_to_f16(void **state)
{
    (void)state;
    /* exact values, and the largest finite */
    assert_int_equal(lr_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(lr_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(lr_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(lr_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(lr_f32_to_f16(-0.0f), 0x8000);
    /* ties to even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10 (even: 1) */
    assert_int_equal(lr_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(lr_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02); /* halfway 0x3c01/0x3c02: even */
    assert_int_equal(lr_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01); /* above half */
    assert_int_equal(lr_f32_to_f16(-(1.0f + 0x1p-11f)), 0xbc00);
    /* the carry into the exponent: 2 − 2^-12 rounds up to 2 */
    assert_int_equal(lr_f32_to_f16(2.0f - 0x1p-12f), 0x4000);
    /* overflow: 65520 (halfway to 2^16) and above go to inf, 65519 to 65504 */
    assert_int_equal(lr_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(lr_f32_to_f16(-65520.0f), 0xfc00);
    assert_int_equal(lr_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(lr_f32_to_f16(65519.996f), 0x7bff);
    assert_int_equal(lr_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(lr_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(lr_f32_to_f16(-INFINITY), 0xfc00);
    /* subnormals: 2^-24 is the smallest, 2^-25 ties to even (0), 3·2^-26 rounds up to 2^-24 */
    assert_int_equal(lr_f32_to_f16(0x1p-24f), 0x0001);
    assert_int_equal(lr_f32_to_f16(0x1p-25f), 0x0000);
    assert_int_equal(lr_f32_to_f16(-0x1p-25f), 0x8000);
    assert_int_equal(lr_f32_to_f16(0x1.000002p-25f), 0x0001);
    assert_int_equal(lr_f32_to_f16(3 * 0x1p-26f), 0x0001);
    assert_int_equal(lr_f32_to_f16(3 * 0x1p-25f), 0x0002); /* 1.5·2^-24: tie, even 2 */
    assert_int_equal(lr_f32_to_f16(5 * 0x1p-25f), 0x0002); /* 2.5·2^-24: tie, even 2 */
    assert_int_equal(lr_f32_to_f16(0x1p-14f), 0x0400);     /* smallest normal */
    assert_int_equal(lr_f32_to_f16(0x1p-14f - 0x1p-25f), 0x0400); /* 0x3ff.8 ties up to even */
    assert_int_equal(lr_f32_to_f16(0x1p-14f - 0x1p-24f), 0x03ff);
    assert_int_equal(lr_f32_to_f16(1e-30f), 0x0000);
    assert_int_equal(lr_f32_to_f16(f32_of(1)), 0x0000); /* float subnormal */
    /* NaN stays NaN, sign kept */
    uint16_t h = lr_f32_to_f16(NAN);
    assert_true((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0);
    h = lr_f32_to_f16(f32_of(0xff800001u)); /* a negative NaN with only a low payload bit */
    assert_true((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0 && (h & 0x8000));
    assert_true(isnan(lr_f16_to_f32(h)));
}

static void test_f32_to_bf16(void **state)
{
    (void)state;
    assert_int_equal(lr_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(lr_f32_to_bf16(-0.0f), 0x8000);
    /* ties to even on the 16 dropped bits */
    assert_int_equal(lr_f32_to_bf16(f32_of(0x3f808000u)), 0x3f80); /* tie, even down */
    assert_int_equal(lr_f32_to_bf16(f32_of(0x3f818000u)), 0x3f82); /* tie, even up */
    assert_int_equal(lr_f32_to_bf16(f32_of(0x3f808001u)), 0x3f81);
    assert_int_equal(lr_f32_to_bf16(f32_of(0x3f807fffu)), 0x3f80);
    /* overflow of the largest float rounds to inf; inf stays inf */
    assert_int_equal(lr_f32_to_bf16(FLT_MAX), 0x7f80);
    assert_int_equal(lr_f32_to_bf16(-FLT_MAX), 0xff80);
    assert_int_equal(lr_f32_to_bf16(f32_of(0x7f7f7fffu)), 0x7f7f);
    assert_int_equal(lr_f32_to_bf16(INFINITY), 0x7f80);
    /* subnormals round the same way */
    assert_int_equal(lr_f32_to_bf16(f32_of(0x00008000u)), 0x0000);
    assert_int_equal(lr_f32_to_bf16(f32_of(0x00018000u)), 0x0002);
    /* NaN stays NaN, even one whose payload is only in the dropped bits */
    uint16_t b = lr_f32_to_bf16(f32_of(0x7f800001u));
    assert_true((b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0);
    b = lr_f32_to_bf16(f32_of(0xffc00000u));
    assert_true(isnan(lr_bf16_to_f32(b)) && (b & 0x8000));
}

/* Every non-NaN 16-bit pattern survives widening and narrowing; NaNs stay NaN. */
static void test_f16_bf16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = lr_f16_to_f32(h);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            assert_true(isnan(f));
            assert_true(isnan(lr_f16_to_f32(lr_f32_to_f16(f))));
        } else if (lr_f32_to_f16(f) != h) {
            fail_msg("f16 0x%04x -> %.9g -> 0x%04x", (unsigned)h, (double)f, (unsigned)lr_f32_to_f16(f));
        }
        float g = lr_bf16_to_f32(h);
        if ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) {
            assert_true(isnan(g));
            assert_true(isnan(lr_bf16_to_f32(lr_f32_to_bf16(g))));
        } else if (lr_f32_to_bf16(g) != h) {
            fail_msg("bf16 0x%04x -> %.9g -> 0x%04x", (unsigned)h, (double)g, (unsigned)lr_f32_to_bf16(g));
        }
    }
    /* and every f16 midpoint (between h and h+1, both finite, same sign) rounds to the even one */
    for (uint32_t i = 0; i < 0x7bff; i++) {
        double mid = ((double)lr_f16_to_f32((uint16_t)i) + lr_f16_to_f32((uint16_t)(i + 1))) / 2;
        uint16_t want = (uint16_t)(i & 1 ? i + 1 : i);
        if (lr_f32_to_f16((float)mid) != want)
            fail_msg("f16 midpoint %.9g -> 0x%04x, expected 0x%04x", mid, (unsigned)lr_f32_to_f16((float)mid), (unsigned)want);
        if (lr_f32_to_f16((float)-mid) != (want | 0x8000)) fail_msg("negative midpoint %.9g", -mid);
    }
}

static void test_encode_f32(void **state)
{
    (void)state;
    const float src[5] = { 1.0f, -0.0f, 65520.0f, 0x1p-25f, 1.0f + 0x1p-11f };
    unsigned char buf[5 * 8];
    lr_err e;
    assert_int_equal(lr_st_encode_f32(buf, LR_ST_F32, src, 5, &e), LR_OK);
    assert_memory_equal(buf, src, sizeof src);
    assert_int_equal(lr_st_encode_f32(buf, LR_ST_F64, src, 5, &e), LR_OK);
    for (size_t i = 0; i < 5; i++) {
        double d;
        memcpy(&d, buf + 8 * i, 8);
        assert_true(d == (double)src[i]);
    }
    assert_int_equal(lr_st_encode_f32(buf, LR_ST_F16, src, 5, &e), LR_OK);
    const uint16_t want16[5] = { 0x3c00, 0x8000, 0x7c00, 0x0000, 0x3c00 };
    assert_memory_equal(buf, want16, sizeof want16);
    assert_int_equal(lr_st_encode_f32(buf, LR_ST_BF16, src, 5, &e), LR_OK);
    for (size_t i = 0; i < 5; i++) {
        uint16_t b;
        memcpy(&b, buf + 2 * i, 2);
        assert_int_equal(b, lr_f32_to_bf16(src[i]));
    }
    /* what it encodes, the file reader decodes: F16 through a written file */
    char *dir = lr_test_tmpdir(), *path = lr_test_path(dir, "h.safetensors");
    lr_st_encode_f32(buf, LR_ST_F16, src, 5, NULL);
    lr_st_tensor t = { .name = "x", .dtype = LR_ST_F16, .ndim = 1, .shape = { 5 }, .data = buf };
    assert_int_equal(lr_safetensors_write(path, &t, 1, NULL, 0, &e), LR_OK);
    lr_safetensors st;
    float back[5];
    size_t shape[1] = { 5 };
    assert_int_equal(lr_safetensors_open(&st, path, &e), LR_OK);
    assert_int_equal(lr_safetensors_get_f32(&st, back, "x", 1, shape, &e), LR_OK);
    for (size_t i = 0; i < 5; i++) assert_true(memcmp(&back[i], &(float){ lr_f16_to_f32(want16[i]) }, 4) == 0);
    lr_safetensors_free(&st);
    lr_test_rmtree(dir);
    free(dir), free(path);
    /* bad arguments */
    e.msg[0] = 0;
    assert_int_equal(lr_st_encode_f32(buf, LR_ST_I32, src, 5, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "I32");
    assert_int_equal(lr_st_encode_f32(buf, (lr_st_dtype)999, src, 5, &e), LR_EINVAL);
    assert_int_equal(lr_st_encode_f32(NULL, LR_ST_F32, src, 5, &e), LR_EINVAL);
    assert_int_equal(lr_st_encode_f32(buf, LR_ST_F32, NULL, 5, &e), LR_EINVAL);
    assert_int_equal(lr_st_encode_f32(NULL, LR_ST_F32, NULL, 0, &e), LR_OK);
}

/* ---- reading rows and byte ranges ---- */

/* Rows of every float dtype, a 3-D tensor (rows of 2 x 4), a vector (rows of one), empty
 * tensors, and a BF16 tensor over CHUNK bytes: every range equals the slice of the whole
 * tensor, from a file and from memory. */
static void test_get_f32_rows(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "rows.safetensors");
    float f32[15], cube[24], vec[6], sc = 2.5f, ebuf[1] = { 0 };
    uint16_t bf[8], hf[8], *big = malloc(300 * 1000 * sizeof *big);
    double f64[6], huge[6];
    int32_t ints[4] = { 1, 2, 3, 4 };
    for (int i = 0; i < 15; i++) f32[i] = 0.5f * (float)i - 3.0f;
    for (int i = 0; i < 24; i++) cube[i] = (float)i * 1.25f + 0.125f;
    for (int i = 0; i < 6; i++) vec[i] = -(float)i;
    for (int i = 0; i < 8; i++) bf[i] = lr_f32_to_bf16(0.3f * (float)i - 1.0f), hf[i] = lr_f32_to_f16((float)i / 3.0f);
    for (int i = 0; i < 6; i++) f64[i] = 0.1 * i - 0.25, huge[i] = i == 3 ? 1e300 : (double)i;
    for (size_t i = 0; i < 300 * 1000; i++) big[i] = lr_f32_to_bf16((float)((i * 7919) % 1000) / 64.0f - 7.0f);
    lr_st_tensor t[] = {
        { "f32", LR_ST_F32, 2, { 5, 3 }, f32 },      { "bf16", LR_ST_BF16, 2, { 4, 2 }, bf },
        { "f16", LR_ST_F16, 2, { 4, 2 }, hf },       { "f64", LR_ST_F64, 2, { 3, 2 }, f64 },
        { "cube", LR_ST_F32, 3, { 3, 2, 4 }, cube }, { "vec", LR_ST_F32, 1, { 6 }, vec },
        { "big", LR_ST_BF16, 2, { 300, 1000 }, big }, { "empty", LR_ST_F32, 2, { 0, 4 }, NULL },
        { "nocols", LR_ST_F32, 2, { 3, 0 }, NULL },  { "scalar", LR_ST_F32, 0, { 0 }, &sc },
        { "ints", LR_ST_I32, 2, { 2, 2 }, ints },    { "huge", LR_ST_F64, 2, { 3, 2 }, huge },
    };
    const size_t nt = sizeof t / sizeof *t;
    lr_err err = { { 0 } };
    assert_int_equal(lr_safetensors_write(p, t, nt, NULL, 0, &err), LR_OK);
    size_t fn;
    unsigned char *bytes = lr_test_read_file(p, &fn);
    float *whole = malloc(300 * 1000 * sizeof *whole), *part = malloc(300 * 1000 * sizeof *part);
    for (int from_mem = 0; from_mem < 2; from_mem++) {
        lr_safetensors st_, *st = &st_;
        if (from_mem) assert_int_equal(lr_safetensors_from_memory(st, bytes, fn, p, &err), LR_OK);
        else assert_int_equal(lr_safetensors_open(st, p, &err), LR_OK);
        for (size_t i = 0; i < 9; i++) { /* the float tensors with rows */
            const lr_st_tensor *x = lr_safetensors_find(st, t[i].name);
            size_t rows = x->shape[0], row = 1;
            for (size_t d = 1; d < x->ndim; d++) row *= x->shape[d];
            assert_int_equal(lr_safetensors_get_f32(st, whole, x->name, x->ndim, x->shape, &err), LR_OK);
            size_t step = rows > 20 ? 37 : 1; /* big: a sample of ranges, chunk boundaries crossed */
            for (size_t r0 = 0; r0 <= rows; r0 += step)
                for (size_t k = 0; k <= rows - r0; k += step) {
                    size_t cnt = k * row;
                    memset(part, 0x7f, (cnt ? cnt : 1) * sizeof *part);
                    err.msg[0] = 0;
                    if (lr_safetensors_get_f32_rows(st, part, x->name, r0, k, &err) != LR_OK)
                        fail_msg("%s rows [%zu, %zu): %s", x->name, r0, r0 + k, err.msg);
                    if (cnt && memcmp(part, whole + r0 * row, cnt * sizeof *part) != 0)
                        fail_msg("%s rows [%zu, %zu) differ from the whole tensor's", x->name, r0, r0 + k);
                }
            if (rows > 20) { /* the whole of big, and its last rows */
                assert_int_equal(lr_safetensors_get_f32_rows(st, part, "big", 0, 300, &err), LR_OK);
                assert_memory_equal(part, whole, 300 * 1000 * sizeof *part);
                assert_int_equal(lr_safetensors_get_f32_rows(st, part, "big", 170, 130, &err), LR_OK);
                assert_memory_equal(part, whole + 170 * 1000, 130 * 1000 * sizeof *part);
            }
        }
        /* values: the conversions of get_f32 */
        float out[8];
        assert_int_equal(lr_safetensors_get_f32_rows(st, out, "bf16", 1, 2, &err), LR_OK);
        for (int i = 0; i < 4; i++) assert_true(out[i] == lr_bf16_to_f32(bf[2 + i]));
        assert_int_equal(lr_safetensors_get_f32_rows(st, out, "f16", 3, 1, &err), LR_OK);
        assert_true(out[0] == lr_f16_to_f32(hf[6]) && out[1] == lr_f16_to_f32(hf[7]));
        assert_int_equal(lr_safetensors_get_f32_rows(st, out, "f64", 2, 1, &err), LR_OK);
        assert_true(out[0] == (float)f64[4] && out[1] == (float)f64[5]);
        assert_int_equal(lr_safetensors_get_f32_rows(st, out, "cube", 2, 1, &err), LR_OK);
        assert_memory_equal(out, cube + 16, 8 * sizeof(float));
        assert_int_equal(lr_safetensors_get_f32_rows(st, out, "vec", 4, 2, &err), LR_OK);
        assert_true(out[0] == -4.0f && out[1] == -5.0f);
        /* F64 outside float's range: only the rows holding it fail, naming its element */
        assert_int_equal(lr_safetensors_get_f32_rows(st, out, "huge", 0, 1, &err), LR_OK);
        assert_int_equal(lr_safetensors_get_f32_rows(st, out, "huge", 2, 1, &err), LR_OK);
        assert_true(out[0] == 4.0f && out[1] == 5.0f);
        assert_int_equal(lr_safetensors_get_f32_rows(st, out, "huge", 1, 2, &err), LR_ERANGE);
        assert_msg_contains(err.msg, "huge: element 3 = 1e+300 is outside float32's range");
        /* rows out of range */
        struct { const char *name; size_t r0, k; } bad[] = {
            { "f32", 0, 6 }, { "f32", 5, 1 }, { "f32", 6, 0 }, { "f32", 4, 2 }, { "f32", 2, SIZE_MAX },
            { "f32", SIZE_MAX, 2 }, { "cube", 3, 1 }, { "vec", 0, 7 }, { "empty", 0, 1 }, { "nocols", 1, 3 },
            { "scalar", 0, 1 }, { "scalar", 0, 0 },
        };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            err.msg[0] = 0;
            lr_status s = lr_safetensors_get_f32_rows(st, whole, bad[i].name, bad[i].r0, bad[i].k, &err);
            if (s != LR_EINVAL)
                fail_msg("%s rows %zu + %zu: status %d (%s), expected LR_EINVAL", bad[i].name, bad[i].r0, bad[i].k, s,
                         err.msg);
            assert_msg_contains(err.msg, p);
            assert_msg_contains(err.msg, bad[i].name);
        }
        assert_int_equal(lr_safetensors_get_f32_rows(st, ebuf, "empty", 0, 0, &err), LR_OK);
        assert_int_equal(lr_safetensors_get_f32_rows(st, NULL, "f32", 5, 0, &err), LR_OK);
        assert_int_equal(lr_safetensors_get_f32_rows(st, ebuf, "nocols", 0, 3, &err), LR_OK);
        /* not a float dtype; not there; bad arguments */
        err.msg[0] = 0;
        assert_int_equal(lr_safetensors_get_f32_rows(st, out, "ints", 0, 1, &err), LR_EFORMAT);
        assert_msg_contains(err.msg, "ints: dtype I32, expected F32");
        err.msg[0] = 0;
        assert_int_equal(lr_safetensors_get_f32_rows(st, out, "ghost", 0, 1, &err), LR_EFORMAT);
        assert_msg_contains(err.msg, "missing tensor ghost");
        assert_msg_contains(err.msg, p);
        assert_int_equal(lr_safetensors_get_f32_rows(NULL, out, "f32", 0, 1, &err), LR_EINVAL);
        assert_int_equal(lr_safetensors_get_f32_rows(st, out, NULL, 0, 1, &err), LR_EINVAL);
        assert_int_equal(lr_safetensors_get_f32_rows(st, NULL, "f32", 0, 1, &err), LR_EINVAL);
        /* reading rows marks nothing used (get_f32 above did, for the 9) */
        assert_int_equal(lr_safetensors_unused(st, NULL, 0), nt - 9);
        lr_safetensors_free(st);
    }
    free(bytes);
    free(whole);
    free(part);
    free(big);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* get_bytes: any range of whole elements (C64: whole float32 halves; 1-byte and sub-byte
 * dtypes: any bytes) equals the same bytes of the host-order data written; other ranges are
 * refused. */
static void test_get_bytes_ranges(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "bytes.safetensors");
    float w[12], c64[6];
    uint16_t h[5] = { 0x3c00, 0xc000, 0x0001, 0x7bff, 0x8000 };
    uint8_t u8[7] = { 1, 2, 3, 4, 5, 6, 7 }, f4[3] = { 0x12, 0x34, 0x56 };
    int64_t i64[3] = { -1, INT64_MAX, 0x0102030405060708 };
    for (int i = 0; i < 12; i++) w[i] = (float)i * 1.5f - 2.0f;
    for (int i = 0; i < 6; i++) c64[i] = (float)i + 0.25f;
    lr_st_tensor t[] = {
        { "w", LR_ST_F32, 2, { 3, 4 }, w },  { "h", LR_ST_F16, 1, { 5 }, h },   { "c", LR_ST_C64, 1, { 3 }, c64 },
        { "u", LR_ST_U8, 1, { 7 }, u8 },     { "q", LR_ST_F4, 2, { 2, 3 }, f4 }, { "i", LR_ST_I64, 1, { 3 }, i64 },
    };
    const size_t nt = sizeof t / sizeof *t, nb[6] = { 48, 10, 24, 7, 3, 24 }, unit[6] = { 4, 2, 4, 1, 1, 8 };
    lr_err err = { { 0 } };
    assert_int_equal(lr_safetensors_write(p, t, nt, NULL, 0, &err), LR_OK);
    lr_safetensors st_, *st = &st_;
    assert_int_equal(lr_safetensors_open(st, p, &err), LR_OK);
    unsigned char got[64];
    for (size_t i = 0; i < nt; i++) {
        const unsigned char *want = t[i].data;
        for (size_t off = 0; off <= nb[i] + 1; off++)
            for (size_t n = 0; n <= nb[i] + 1; n++) {
                bool ok = off % unit[i] == 0 && n % unit[i] == 0 && off + n <= nb[i];
                memset(got, 0xee, sizeof got);
                err.msg[0] = 0;
                lr_status s = lr_safetensors_get_bytes(st, got, t[i].name, off, n, &err);
                if (ok && s != LR_OK) fail_msg("%s bytes %zu + %zu refused: %s", t[i].name, off, n, err.msg);
                if (!ok && s != LR_EINVAL)
                    fail_msg("%s bytes %zu + %zu: status %d, expected LR_EINVAL", t[i].name, off, n, s);
                if (ok) {
                    if (n && memcmp(got, want + off, n) != 0) fail_msg("%s bytes %zu + %zu differ", t[i].name, off, n);
                    assert_int_equal(got[n], 0xee); /* nothing past n */
                } else {
                    assert_msg_contains(err.msg, p);
                    assert_msg_contains(err.msg, t[i].name);
                }
            }
    }
    /* ranges whose end would wrap around */
    assert_int_equal(lr_safetensors_get_bytes(st, got, "w", SIZE_MAX - 3, 8, &err), LR_EINVAL);
    assert_int_equal(lr_safetensors_get_bytes(st, got, "w", 8, SIZE_MAX - 3, &err), LR_EINVAL);
    assert_int_equal(lr_safetensors_get_bytes(st, NULL, "w", 4, 0, &err), LR_OK);
    err.msg[0] = 0;
    assert_int_equal(lr_safetensors_get_bytes(st, got, "nope", 0, 4, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "missing tensor nope");
    assert_int_equal(lr_safetensors_get_bytes(NULL, got, "w", 0, 4, &err), LR_EINVAL);
    assert_int_equal(lr_safetensors_get_bytes(st, got, NULL, 0, 4, &err), LR_EINVAL);
    assert_int_equal(lr_safetensors_get_bytes(st, NULL, "w", 0, 4, &err), LR_EINVAL);
    assert_int_equal(lr_safetensors_unused(st, NULL, 0), nt); /* a copy is not a use */
    lr_safetensors_free(st);

    /* host byte order: the file holds little-endian bytes, get_bytes gives the host's */
    lr_st_tensor one = { "i", LR_ST_I64, 1, { 3 }, i64 };
    assert_int_equal(lr_safetensors_write(p, &one, 1, NULL, 0, &err), LR_OK);
    size_t fn;
    unsigned char *raw = lr_test_read_file(p, &fn);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | raw[i];
    assert_int_equal(fn, 8 + hl + 24);
    for (size_t e = 0; e < 3; e++)
        for (size_t b = 0; b < 8; b++)
            assert_int_equal(raw[8 + hl + 8 * e + b], (unsigned char)((uint64_t)i64[e] >> (8 * b)));
    assert_int_equal(lr_safetensors_from_memory(st, raw, fn, "mem", &err), LR_OK);
    int64_t back[2];
    assert_int_equal(lr_safetensors_get_bytes(st, back, "i", 8, 16, &err), LR_OK);
    assert_true(back[0] == INT64_MAX && back[1] == 0x0102030405060708);
    lr_safetensors_free(st);
    free(raw);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* ---- the piecewise writer ---- */

static unsigned char *file_bytes(const char *p, size_t *n) { return lr_test_read_file(p, n); }

static void assert_same_file(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = file_bytes(a, &na), *y = file_bytes(b, &nb);
    if (na != nb) fail_msg("%s is %zu bytes, %s %zu", a, na, b, nb);
    assert_memory_equal(x, y, na);
    free(x);
    free(y);
}

/* Tensors put in any order, in pieces, interleaved: the bytes lr_safetensors_write writes. */
static void test_writer_same_bytes(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *ref = lr_test_path(dir, "ref.safetensors"), *p = lr_test_path(dir, "out.safetensors");
    enum { NA = 100003, NB = 50001 };
    float *a = malloc(NA * sizeof *a), w[12];
    uint16_t *b = malloc(NB * sizeof *b), h[5] = { 1, 2, 3, 4, 5 };
    int64_t ids[3] = { -1, 7, INT64_MIN };
    uint8_t flags[7] = { 9, 8, 7, 6, 5, 4, 3 };
    double d = 0.1;
    for (size_t i = 0; i < NA; i++) a[i] = (float)i * 0.001f - 3.0f;
    for (size_t i = 0; i < NB; i++) b[i] = (uint16_t)(i * 31);
    for (int i = 0; i < 12; i++) w[i] = (float)i;
    lr_st_tensor t[] = {
        { "w", LR_ST_F32, 2, { 3, 4 }, w },          { "a.big", LR_ST_F32, 1, { NA }, a },
        { "b.big", LR_ST_BF16, 2, { 3, NB / 3 }, b }, { "h", LR_ST_F16, 1, { 5 }, h },
        { "ids", LR_ST_I64, 1, { 3 }, ids },        { "flags", LR_ST_U8, 1, { 7 }, flags },
        { "scalar", LR_ST_F64, 0, { 0 }, &d },       { "empty", LR_ST_F32, 2, { 0, 3 }, NULL },
    };
    const size_t nt = sizeof t / sizeof *t;
    lr_st_meta meta[2] = { { "format", "pt" }, { "by", "lowrank" } };
    lr_err err = { { 0 } };
    assert_int_equal(lr_safetensors_write(ref, t, nt, meta, 2, &err), LR_OK);

    for (int round = 0; round < 3; round++) {
        lr_st_tensor hdr[8];
        memcpy(hdr, t, sizeof hdr);
        if (round == 1)
            for (size_t i = 0; i < nt; i++) hdr[i].data = NULL; /* data is ignored by init */
        if (round == 2) { /* and the order of the array does not matter */
            lr_st_tensor x = hdr[0];
            hdr[0] = hdr[nt - 1], hdr[nt - 1] = x;
        }
        lr_st_writer wr;
        if (lr_st_writer_init(&wr, p, hdr, nt, meta, 2, &err)) fail_msg("%s", err.msg);
        assert_int_equal(lr_test_hidden_entries(dir), 1); /* the temp file */
        /* small tensors first, in reverse name order; w in two pieces */
        assert_int_equal(lr_st_writer_put(&wr, "scalar", &d, 8, &err), LR_OK);
        assert_int_equal(lr_st_writer_put(&wr, "w", w, 20, &err), LR_OK);
        assert_int_equal(lr_st_writer_put(&wr, "ids", ids, 24, &err), LR_OK);
        assert_int_equal(lr_st_writer_put(&wr, "h", h, 10, &err), LR_OK);
        assert_int_equal(lr_st_writer_put(&wr, "w", w + 5, 28, &err), LR_OK);
        if (round) assert_int_equal(lr_st_writer_put(&wr, "empty", NULL, 0, &err), LR_OK);
        /* the two large ones interleaved, in uneven pieces (over stdio's buffer and not) */
        size_t da = 0, db = 0, step = 1;
        while (da < NA || db < NB) {
            size_t ka = (step * 977) % 9000 + 1, kb = (step * 613) % 70000 + 1;
            if (round == 2) ka = NA, kb = NB; /* each in one piece */
            ka = ka < NA - da ? ka : NA - da, kb = kb < NB - db ? kb : NB - db;
            if (ka) assert_int_equal(lr_st_writer_put(&wr, "a.big", a + da, ka * 4, &err), LR_OK);
            if (kb) assert_int_equal(lr_st_writer_put(&wr, "b.big", b + db, kb * 2, &err), LR_OK);
            da += ka, db += kb, step++;
        }
        for (size_t i = 0; i < 7; i++) assert_int_equal(lr_st_writer_put(&wr, "flags", flags + i, 1, &err), LR_OK);
        if (lr_st_writer_commit(&wr, &err)) fail_msg("round %d: %s", round, err.msg);
        lr_st_writer_free(&wr);
        assert_int_equal(lr_test_hidden_entries(dir), 0);
        assert_same_file(p, ref);
        lr_st_writer_free(&wr); /* twice is fine */
    }
    lr_st_writer_free(NULL);

    /* no tensors: the reference's empty file */
    lr_st_writer wr;
    assert_int_equal(lr_safetensors_write(ref, NULL, 0, NULL, 0, &err), LR_OK);
    assert_int_equal(lr_st_writer_init(&wr, p, NULL, 0, NULL, 0, &err), LR_OK);
    assert_int_equal(lr_st_writer_commit(&wr, &err), LR_OK);
    /* after commit: put and commit are refused */
    assert_int_equal(lr_st_writer_put(&wr, "w", w, 4, &err), LR_EINVAL);
    assert_int_equal(lr_st_writer_commit(&wr, &err), LR_EINVAL);
    lr_st_writer_free(&wr);
    assert_same_file(p, ref);
    assert_int_equal(lr_test_hidden_entries(dir), 0);
    free(a);
    free(b);
    free(ref);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* Refused puts, an incomplete commit and free without commit: the old file stays byte for
 * byte, and no temp file once the writer is freed. */
static void test_writer_failures_keep_old(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "ckpt.safetensors");
    float old[4] = { 1, 2, 3, 4 };
    write_old(p, old);
    size_t n0;
    unsigned char *before = file_bytes(p, &n0);
    float w[12] = { 0 };
    uint16_t h[5] = { 0 };
    lr_st_tensor t[3] = {
        { "w", LR_ST_F32, 2, { 3, 4 }, NULL }, { "h", LR_ST_F16, 1, { 5 }, NULL }, { "i", LR_ST_I64, 1, { 2 }, NULL },
    };
    lr_err err = { { 0 } };
    lr_st_writer wr;
    for (int c = 0; c < 6; c++) {
        assert_int_equal(lr_st_writer_init(&wr, p, t, 3, NULL, 0, &err), LR_OK);
        assert_int_equal(lr_test_hidden_entries(dir), 1);
        int64_t i2[2] = { 5, 6 };
        assert_int_equal(lr_st_writer_put(&wr, "h", h, 10, &err), LR_OK);
        assert_int_equal(lr_st_writer_put(&wr, "i", i2, 16, &err), LR_OK);
        char want[512];
        err.msg[0] = 0;
        switch (c) {
        case 0: /* w incomplete: 12 of 48 bytes */
            assert_int_equal(lr_st_writer_put(&wr, "w", w, 12, &err), LR_OK);
            assert_int_not_equal(lr_st_writer_commit(&wr, &err), LR_OK);
            snprintf(want, sizeof want, "%s: tensor w has 12 of its 48 bytes", p);
            assert_string_equal(err.msg, want);
            assert_int_not_equal(lr_st_writer_commit(&wr, &err), LR_OK); /* still incomplete */
            assert_msg_contains(err.msg, "tensor w has 12 of its 48 bytes");
            break;
        case 1: /* w never put */
            assert_int_not_equal(lr_st_writer_commit(&wr, &err), LR_OK);
            assert_msg_contains(err.msg, "tensor w has 0 of its 48 bytes");
            break;
        case 2: /* a name not in the header */
            assert_int_equal(lr_st_writer_put(&wr, "x", w, 4, &err), LR_EINVAL);
            assert_msg_contains(err.msg, p);
            assert_msg_contains(err.msg, "x");
            break;
        case 3: /* too many bytes: in one put, and after a piece */
            assert_int_equal(lr_st_writer_put(&wr, "w", w, 52, &err), LR_EINVAL);
            assert_msg_contains(err.msg, "w");
            assert_int_equal(lr_st_writer_put(&wr, "w", w, 40, &err), LR_OK);
            assert_int_equal(lr_st_writer_put(&wr, "w", w, 12, &err), LR_EINVAL);
            assert_int_equal(lr_st_writer_put(&wr, "h", h, 2, &err), LR_EINVAL); /* h is complete */
            break;
        case 4: /* not whole elements */
            assert_int_equal(lr_st_writer_put(&wr, "w", w, 6, &err), LR_EINVAL);
            assert_msg_contains(err.msg, "w");
            assert_int_equal(lr_st_writer_put(&wr, "w", w, 3, &err), LR_EINVAL);
            assert_int_equal(lr_st_writer_put(&wr, "w", NULL, 4, &err), LR_EINVAL);
            assert_int_equal(lr_st_writer_put(&wr, NULL, w, 4, &err), LR_EINVAL);
            assert_int_equal(lr_st_writer_put(NULL, "w", w, 4, &err), LR_EINVAL);
            break;
        case 5: /* complete, but freed without a commit */
            assert_int_equal(lr_st_writer_put(&wr, "w", w, 48, &err), LR_OK);
            break;
        }
        assert_int_equal(lr_test_hidden_entries(dir), 1); /* until the writer is freed */
        lr_st_writer_free(&wr);
        assert_int_equal(lr_test_hidden_entries(dir), 0);
        size_t n1;
        unsigned char *after = file_bytes(p, &n1);
        if (n1 != n0 || memcmp(before, after, n0) != 0) fail_msg("case %d: the old file changed", c);
        free(after);
        assert_old_intact(p);
    }
    /* the header's checks, before any file is made */
    lr_st_tensor dup[2] = { { "a", LR_ST_F32, 1, { 2 }, NULL }, { "a", LR_ST_F32, 1, { 2 }, NULL } };
    assert_int_equal(lr_st_writer_init(&wr, p, dup, 2, NULL, 0, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "tensor name a appears twice");
    lr_st_writer_free(&wr);
    lr_st_tensor deep = { "x", LR_ST_F32, 9, { 1 }, NULL };
    assert_int_equal(lr_st_writer_init(&wr, p, &deep, 1, NULL, 0, &err), LR_EFORMAT);
    lr_st_writer_free(&wr);
    assert_int_equal(lr_st_writer_init(&wr, "", t, 3, NULL, 0, &err), LR_EINVAL);
    assert_int_equal(lr_st_writer_init(&wr, p, NULL, 3, NULL, 0, &err), LR_EINVAL);
    assert_int_equal(lr_st_writer_init(NULL, p, t, 3, NULL, 0, &err), LR_EINVAL);
    char *nodir = lr_test_path(dir, "no/such/dir/x.safetensors");
    assert_int_equal(lr_st_writer_init(&wr, nodir, t, 3, NULL, 0, &err), LR_EIO);
    assert_msg_contains(err.msg, nodir);
    lr_st_writer_free(&wr);
    free(nodir);
    assert_int_equal(lr_test_hidden_entries(dir), 0);
    size_t n1;
    unsigned char *after = file_bytes(p, &n1);
    assert_int_equal(n1, n0);
    assert_memory_equal(before, after, n0);
    free(after);
    free(before);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_vectors),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_get_f32_errors),
        cmocka_unit_test(test_half_conversions),
        cmocka_unit_test(test_header_bounds),
        cmocka_unit_test(test_header_text),
        cmocka_unit_test(test_entries),
        cmocka_unit_test(test_overflow),
        cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_file_length),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_write_arguments),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_failed_writes_keep_old),
        cmocka_unit_test(test_f32_to_f16),
        cmocka_unit_test(test_f32_to_bf16),
        cmocka_unit_test(test_f16_bf16_exhaustive),
        cmocka_unit_test(test_encode_f32),
        cmocka_unit_test(test_get_f32_rows),
        cmocka_unit_test(test_get_bytes_ranges),
        cmocka_unit_test(test_writer_same_bytes),
        cmocka_unit_test(test_writer_failures_keep_old),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
