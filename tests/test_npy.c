/* test_npy.c — .npy reading and writing: numpy's own bytes, every header variant numpy
 * (or a hand-written file) may produce, every malformed file we must refuse, and writes
 * that fail half-way leaving nothing behind. */
#include "lr_test.h"

#include <dirent.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "lowrank/io/npy.h"
#include "lowrank/base/rng.h"

/* np.save(f, np.array([[1.5, -2.0, 3.25], [0.0, 1e-3, -7.0]], np.float32)) with numpy 1.24 */
static const unsigned char np_f4_v1[152] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27, 0x64, 0x65, 0x73, 0x63,
    0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x66, 0x34, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f, 0x72, 0x74,
    0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46, 0x61, 0x6c, 0x73,
    0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20, 0x28, 0x32, 0x2c, 0x20,
    0x33, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a,
    0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0x50, 0x40, 0x00, 0x00, 0x00, 0x00,
    0x6f, 0x12, 0x83, 0x3a, 0x00, 0x00, 0xe0, 0xc0,
};
static const float np_f4_values[6] = { 1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, -7.0f };

/* np.lib.format.write_array(f, a.astype(np.float64) + 1e-9, version=(2, 0)), same a */
static const unsigned char np_f8_v2[176] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x02, 0x00, 0x74, 0x00, 0x00, 0x00, 0x7b, 0x27, 0x64, 0x65,
    0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x66, 0x38, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f,
    0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46, 0x61,
    0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20, 0x28, 0x32,
    0x2c, 0x20, 0x33, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a,
    0x30, 0xb8, 0x44, 0x00, 0x00, 0x00, 0xf8, 0x3f, 0xd0, 0x47, 0xbb, 0xff, 0xff, 0xff, 0xff, 0xbf,
    0x18, 0x5c, 0x22, 0x00, 0x00, 0x00, 0x0a, 0x40, 0x95, 0xd6, 0x26, 0xe8, 0x0b, 0x2e, 0x11, 0x3e,
    0x82, 0xbe, 0xe0, 0xf2, 0x4e, 0x62, 0x50, 0x3f, 0xf4, 0xd1, 0xee, 0xff, 0xff, 0xff, 0x1b, 0xc0,
};
static const double np_f8_values[6] = { 1.500000001, -1.999999999, 3.250000001, 1e-9, 0.0010000010474974512,
                                        -6.999999999 };

/* ---- helpers ------------------------------------------------------------------- */

typedef struct { unsigned char *p; size_t n; } bytes;

/* A .npy image: magic, version major.0, header text as given (length field = its
 * length), then `ndata` bytes of data taken from `data` (or zeros when NULL). */
static bytes make_npy(unsigned major, const char *hdr, const void *data, size_t ndata)
{
    size_t hl = strlen(hdr), pre = major == 1 ? 10 : 12;
    bytes b = { malloc(pre + hl + ndata + 1), pre + hl + ndata };
    assert_non_null(b.p);
    memcpy(b.p, "\x93NUMPY", 6);
    b.p[6] = (unsigned char)major;
    b.p[7] = 0;
    for (size_t i = 0; i < pre - 8; i++) b.p[8 + i] = (unsigned char)(hl >> (8 * i));
    memcpy(b.p + pre, hdr, hl);
    if (data) memcpy(b.p + pre + hl, data, ndata);
    else memset(b.p + pre + hl, 0, ndata);
    return b;
}

/* Loads b expecting failure `want` with `needle` in the message; nothing is allocated. */
static void expect_fail(bytes b, lr_status want, const char *needle)
{
    lr_mat m = { (float *)&m, 1, 1, 1 };
    lr_err e = { "" };
    lr_status s = lr_npy_load_mem(&m, b.p, b.n, "W.npy", &e);
    if (s != want) fail_msg("status %d (%s), expected %d; message \"%s\"", s, lr_status_str(s), want, e.msg);
    assert_msg_contains(e.msg, needle);
    assert_msg_contains(e.msg, "W.npy");
    assert_null(m.data);
    assert_int_equal(m.rows, 0);
    free(b.p);
}

static void expect_ok(bytes b, size_t rows, size_t cols, const float *want)
{
    lr_mat m;
    lr_err e = { "" };
    lr_status s = lr_npy_load_mem(&m, b.p, b.n, "W.npy", &e);
    if (s != LR_OK) fail_msg("load failed: %s", e.msg);
    assert_int_equal(m.rows, rows);
    assert_int_equal(m.cols, cols);
    assert_int_equal(m.ld, cols);
    if (want) assert_mat_allclose(lr_cm(m), lr_cmat_view(want, rows, cols, cols), 0, 0);
    lr_mat_free(&m);
    free(b.p);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *de; (de = readdir(d));)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* ---- numpy's bytes in, our bytes out --------------------------------------------- */

static void test_numpy_fixtures(void **state)
{
    (void)state;
    lr_mat m;
    lr_err e;
    assert_int_equal(lr_npy_load_mem(&m, np_f4_v1, sizeof np_f4_v1, "a.npy", &e), LR_OK);
    assert_mat_allclose(lr_cm(m), lr_cmat_view(np_f4_values, 2, 3, 3), 0, 0);
    lr_mat_free(&m);

    assert_int_equal(lr_npy_load_mem(&m, np_f8_v2, sizeof np_f8_v2, "b.npy", &e), LR_OK);
    assert_int_equal(m.rows, 2);
    assert_int_equal(m.cols, 3);
    for (int i = 0; i < 6; i++) assert_true(m.data[i] == (float)np_f8_values[i]); /* rounded once */
    lr_mat_free(&m);
}

static void test_save_matches_numpy_bytes(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir(), *p = lr_test_path(dir, "a.npy");
    /* a strided view: the padding column must not reach the file */
    float padded[8] = { 1.5f, -2.0f, 3.25f, 99.0f, 0.0f, 1e-3f, -7.0f, 99.0f };
    lr_err e;
    assert_int_equal(lr_npy_save(lr_cmat_view(padded, 2, 3, 4), p, &e), LR_OK);
    size_t n;
    unsigned char *got = lr_test_read_file(p, &n);
    assert_int_equal(n, sizeof np_f4_v1);
    assert_memory_equal(got, np_f4_v1, n);
    free(got);
    assert_int_equal(count_entries(dir), 1); /* no temp file left */
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

static void test_round_trip(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir(), *p = lr_test_path(dir, "w.npy");
    lr_rng rng;
    lr_rng_seed(&rng, 7);
    const size_t shapes[][2] = { { 7, 5 }, { 1, 1 }, { 0, 3 }, { 3, 0 }, { 0, 0 }, { 1, 300 }, { 123, 45 } };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        lr_mat w, r;
        lr_err e;
        assert_int_equal(lr_mat_init(&w, shapes[k][0], shapes[k][1], NULL), LR_OK);
        lr_rng_fill_normal(&rng, w, 0.0f, 3.0f);
        assert_int_equal(lr_npy_save(lr_cm(w), p, &e), LR_OK);
        /* data must start on a 64-byte boundary, as numpy writes it */
        size_t n;
        unsigned char *raw = lr_test_read_file(p, &n);
        assert_int_equal((n - w.rows * w.cols * 4) % 64, 0);
        assert_int_equal(raw[n - w.rows * w.cols * 4 - 1], '\n');
        free(raw);
        assert_int_equal(lr_npy_load(&r, p, &e), LR_OK);
        assert_int_equal(r.rows, w.rows);
        assert_int_equal(r.cols, w.cols);
        assert_true(lr_mat_equal(lr_cm(r), lr_cm(w)));
        lr_mat_free(&w);
        lr_mat_free(&r);
    }
    /* non-finite values and the extremes survive bit-exactly */
    float odd[4] = { INFINITY, -0.0f, 3.4028235e38f, 1e-45f };
    lr_mat r;
    assert_int_equal(lr_npy_save(lr_cmat_view(odd, 2, 2, 2), p, NULL), LR_OK);
    assert_int_equal(lr_npy_load(&r, p, NULL), LR_OK);
    assert_memory_equal(r.data, odd, sizeof odd);
    lr_mat_free(&r);
    /* overwriting an existing file */
    assert_int_equal(lr_npy_save(lr_cmat_view(odd, 1, 1, 1), p, NULL), LR_OK);
    assert_int_equal(lr_npy_load(&r, p, NULL), LR_OK);
    assert_int_equal(r.rows * r.cols, 1);
    lr_mat_free(&r);
    assert_int_equal(count_entries(dir), 1);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* Header spellings numpy's literal_eval reader accepts. */
static void test_header_variants(void **state)
{
    (void)state;
    const float *v = np_f4_values;
    const char *ok[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }          \n",
        "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}\n",     /* any order */
        "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2,3)}", /* " quotes, no \n */
        "  {  'descr'  :'<f4' ,\t'fortran_order':False,'shape':( 2 , 3 , ) , }\r\n",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }\n",  /* Python 2 numpy */
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n\0\0", /* NUL padding */
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        size_t hl = strlen(ok[i]) + (i == 5 ? 2 : 0);
        /* built by hand so the embedded NULs count */
        bytes b = { malloc(10 + hl + 24), 10 + hl + 24 };
        memcpy(b.p, "\x93NUMPY\x01\x00", 8);
        b.p[8] = (unsigned char)hl;
        b.p[9] = 0;
        memcpy(b.p + 10, ok[i], hl);
        memcpy(b.p + 10 + hl, v, 24);
        expect_ok(b, 2, 3, v);
    }
    /* versions 2.0 and 3.0 carry a 4-byte header length */
    expect_ok(make_npy(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", v, 24), 2, 3, v);
    expect_ok(make_npy(3, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", v, 24), 2, 3, v);
    /* empty matrices */
    expect_ok(make_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }\n", NULL, 0), 0, 3, NULL);
    expect_ok(make_npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 0), }\n", NULL, 0), 4, 0, NULL);
    /* a 1x1 '<f8' that is exactly representable */
    double one = -0.25;
    float want = -0.25f;
    expect_ok(make_npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1), }\n", &one, 8), 1, 1, &want);
}

/* Bytes numpy refuses and strcmp / strtoul would let through: a NUL inside a string
 * ('<f4\0' compared equal to '<f4', 'shape\0junk' to 'shape') and leading zeros in a
 * dimension ((010, 4) read as 10). Each is built by hand so the NULs count. */
static void test_header_nul_and_leading_zeros(void **state)
{
    (void)state;
    const float *v = np_f4_values;
#define HDR(s) s, sizeof(s) - 1 /* the literal and its length, NULs included */
    struct { const char *h; size_t hl; const char *msg; } bad[] = {
        { HDR("{'descr': '<f4\0', 'fortran_order': False, 'shape': (2, 3), }\n"), "NUL byte inside a string" },
        { HDR("{'descr': '<f4', 'fortran_order': False, 'shape\0junk': (2, 3), }\n"), "NUL byte inside a string" },
        { HDR("{'descr': '<f4', 'fortran_order': False, 'shape': (02, 3), }\n"), "leading zero" },
        { HDR("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 003), }\n"), "leading zero" },
    };
#undef HDR
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bytes b = { malloc(10 + bad[i].hl + 24), 10 + bad[i].hl + 24 };
        memcpy(b.p, "\x93NUMPY\x01\x00", 8);
        b.p[8] = (unsigned char)bad[i].hl;
        b.p[9] = 0;
        memcpy(b.p + 10, bad[i].h, bad[i].hl);
        memcpy(b.p + 10 + bad[i].hl, v, 24);
        expect_fail(b, LR_EFORMAT, bad[i].msg);
    }
    /* a zero dimension on its own is fine */
    expect_ok(make_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }\n", NULL, 0), 0, 3, NULL);
}

static void test_bad_dtype_order_shape(void **state)
{
    (void)state;
    const char *H = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }\n";
    struct { const char *descr, *fortran, *shape; size_t ndata; lr_status st; const char *msg; } cases[] = {
        { ">f4", "False", "(2, 3)", 24, LR_EFORMAT, "dtype '>f4' (big-endian) not supported; expected '<f4' or '<f8'" },
        { ">f8", "False", "(2, 3)", 48, LR_EFORMAT, "dtype '>f8' (big-endian) not supported" },
        { "<i4", "False", "(2, 3)", 24, LR_EFORMAT, "dtype '<i4' (4-byte signed integer) not supported" },
        { "|u1", "False", "(2, 3)", 6, LR_EFORMAT, "dtype '|u1' (1-byte unsigned integer) not supported" },
        { "<f2", "False", "(2, 3)", 12, LR_EFORMAT, "dtype '<f2' (2-byte float) not supported" },
        { "<c8", "False", "(2, 3)", 48, LR_EFORMAT, "dtype '<c8' (8-byte complex) not supported" },
        { "|O", "False", "(2, 3)", 48, LR_EFORMAT, "dtype '|O' (Python object) not supported" },
        { "=f4", "False", "(2, 3)", 24, LR_EFORMAT, "dtype '=f4' (4-byte float) not supported" },
        { "float32", "False", "(2, 3)", 24, LR_EFORMAT, "dtype 'float32' not supported" },
        { "<f4", "True", "(2, 3)", 24, LR_EFORMAT, "fortran_order True not supported" },
        { "<f4", "False", "(3,)", 12, LR_EFORMAT, "shape (3,) is 1-D; expected 2-D" },
        { "<f4", "False", "(2, 3, 4)", 96, LR_EFORMAT, "shape (2, 3, 4) is 3-D; expected 2-D" },
        { "<f4", "False", "()", 4, LR_EFORMAT, "shape () is 0-D; expected 2-D" },
        { "<f4", "False", "(3)", 12, LR_EFORMAT, "'shape' (3) is not a tuple" },
        { "<f4", "False", "(-2, 3)", 24, LR_EFORMAT, "negative dimension" },
        { "<f4", "False", "[2, 3]", 24, LR_EFORMAT, "expected a tuple '(...)' for 'shape'" },
        { "<f4", "0", "(2, 3)", 24, LR_EFORMAT, "expected True or False for 'fortran_order'" },
        { "<f4", "Falsey", "(2, 3)", 24, LR_EFORMAT, "expected True or False" },
        /* sizes: a dimension beyond size_t, a product beyond size_t, a size beyond the file */
        { "<f4", "False", "(99999999999999999999999, 3)", 0, LR_ERANGE, "shape dimension 99999999999999999999999 overflows size_t" },
        { "<f8", "False", "(4611686018427387904, 8)", 0, LR_ERANGE, "overflows size_t" },
        { "<f4", "False", "(100000, 100000)", 0, LR_EFORMAT, "expected 40000000000 bytes of data, found 0" },
        { "<f4", "False", "(2, 3)", 20, LR_EFORMAT, "expected 24 bytes of data, found 20" },
        { "<f4", "False", "(2, 3)", 27, LR_EFORMAT, "3 extra bytes after the data" },
        { "<f8", "False", "(2, 3)", 24, LR_EFORMAT, "expected 48 bytes of data, found 24" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char hdr[256];
        snprintf(hdr, sizeof hdr, H, cases[i].descr, cases[i].fortran, cases[i].shape);
        expect_fail(make_npy(1, hdr, NULL, cases[i].ndata), cases[i].st, cases[i].msg);
    }
    expect_fail(make_npy(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 3), }\n", NULL, 24),
                LR_EFORMAT, "structured");
}

static void test_malformed_header(void **state)
{
    (void)state;
    struct { const char *hdr; const char *msg; } cases[] = {
        { "", "expected a dict '{...}' at end of header" },
        { "['descr', '<f4']", "expected a dict" },
        { "{'descr': '<f4', 'fortran_order': False}", "header has no 'shape' key" },
        { "{'fortran_order': False, 'shape': (2, 3)}", "header has no 'descr' key" },
        { "{'descr': '<f4', 'shape': (2, 3)}", "header has no 'fortran_order' key" },
        { "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}", "key 'descr' appears twice" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': 1}", "unexpected key 'extra'" },
        { "{'descr': '<f4' 'fortran_order': False, 'shape': (2, 3)}", "expected ',' or '}'" },
        { "{'descr' '<f4', 'fortran_order': False, 'shape': (2, 3)}", "expected ':' after a key" },
        { "{descr: '<f4', 'fortran_order': False, 'shape': (2, 3)}", "expected a quoted string" },
        { "{'descr: '<f4', 'fortran_order': False, 'shape': (2, 3)}", "expected ':'" },
        { "{'descr': '<f4", "unterminated string" },
        { "{'descr': '<\\x66', 'fortran_order': False, 'shape': (2, 3)}", "escape sequence" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3", "expected ',' or ')' in 'shape'" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2; 3)}", "expected ',' or ')'" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)", "expected ',' or '}'" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} junk", "only padding after the header dict at 'junk'" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_fail(make_npy(1, cases[i].hdr, NULL, 24), LR_EFORMAT, cases[i].msg);
}

static void test_preamble(void **state)
{
    (void)state;
    /* every truncation of a good file fails cleanly */
    for (size_t n = 0; n < sizeof np_f4_v1; n++) {
        bytes b = { malloc(n + 1), n };
        memcpy(b.p, np_f4_v1, n);
        const char *msg = n < 10 ? "too short" : n < 128 ? "goes beyond the end of the file" : "bytes of data, found";
        expect_fail(b, LR_EFORMAT, msg);
    }
    bytes b = { malloc(152), 152 };
    memcpy(b.p, np_f4_v1, 152);
    b.p[0] = 'P';
    expect_fail(b, LR_EFORMAT, "bad magic: not a .npy file (starts with bytes 50 4e 55 4d 50 59");
    b = (bytes){ malloc(4), 4 };
    memcpy(b.p, "PK\3\4", 4);
    expect_fail(b, LR_EFORMAT, "bad magic");
    for (unsigned v = 0; v < 3; v++) {
        b = (bytes){ malloc(152), 152 };
        memcpy(b.p, np_f4_v1, 152);
        b.p[6] = (unsigned char)(v == 0 ? 0 : v == 1 ? 4 : 1);
        b.p[7] = (unsigned char)(v == 2 ? 1 : 0);
        expect_fail(b, LR_EFORMAT, v == 0 ? "unsupported .npy version 0.0" : v == 1 ? "version 4.0" : "version 1.1");
    }
    /* the header length points past the end */
    b = (bytes){ malloc(152), 152 };
    memcpy(b.p, np_f4_v1, 152);
    b.p[8] = 0xff;
    b.p[9] = 0xff;
    expect_fail(b, LR_EFORMAT, "header length 65535 goes beyond the end of the file (142 bytes follow the preamble)");
    b = make_npy(2, "{}", NULL, 0);
    b.p[11] = 0xff; /* 4-byte length near 4 GiB */
    expect_fail(b, LR_EFORMAT, "goes beyond the end of the file");
    b = make_npy(2, "", NULL, 0);
    b.n = 11; /* a 2.0 preamble cut short */
    expect_fail(b, LR_EFORMAT, "too short for a version 2.0 preamble");
}

static void test_float64_range(void **state)
{
    (void)state;
    const char *H = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }\n";
    double d[4] = { 1.0, 2.0, -1e300, 4.0 };
    expect_fail(make_npy(1, H, d, sizeof d), LR_ERANGE, "element (1, 0) = -1.0000000000000001e+300 is beyond the float32 range");
    d[2] = 3.4028235e38; /* a little above FLT_MAX, but rounds down to it: fits */
    d[3] = 1e-50;                  /* underflows to 0: a rounding, not an overflow */
    lr_mat m;
    bytes b = make_npy(1, H, d, sizeof d);
    assert_int_equal(lr_npy_load_mem(&m, b.p, b.n, NULL, NULL), LR_OK);
    assert_true(m.data[2] == FLT_MAX);
    assert_true(m.data[3] == 0.0f);
    lr_mat_free(&m);
    free(b.p);
    d[2] = 3.5e38; /* rounds to Inf: refused */
    expect_fail(make_npy(1, H, d, sizeof d), LR_ERANGE, "element (1, 0)");
    /* Inf and NaN already in the data are kept (they are not an overflow we made) */
    d[2] = INFINITY;
    d[3] = NAN;
    b = make_npy(1, H, d, sizeof d);
    assert_int_equal(lr_npy_load_mem(&m, b.p, b.n, NULL, NULL), LR_OK);
    assert_true(isinf(m.data[2]) && isnan(m.data[3]));
    lr_mat_free(&m);
    free(b.p);
}

static void test_files_and_args(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir(), *p = lr_test_path(dir, "w.npy");
    lr_mat m;
    lr_err e;
    lr_test_write_file(p, np_f8_v2, sizeof np_f8_v2);
    assert_int_equal(lr_npy_load(&m, p, &e), LR_OK);
    assert_int_equal(m.rows * m.cols, 6);
    lr_mat_free(&m);

    lr_test_write_file(p, np_f8_v2, 150); /* truncated on disk */
    assert_int_equal(lr_npy_load(&m, p, &e), LR_EFORMAT);
    assert_msg_contains(e.msg, "w.npy: truncated");
    assert_msg_contains(e.msg, "expected 48 bytes of data, found 22");
    assert_null(m.data);

    char *missing = lr_test_path(dir, "missing.npy");
    assert_int_equal(lr_npy_load(&m, missing, &e), LR_EIO);
    assert_msg_contains(e.msg, "cannot open");
    assert_msg_contains(e.msg, "missing.npy");
    assert_msg_contains(e.msg, "No such file");
    free(missing);
    assert_int_equal(lr_npy_load(&m, dir, &e), LR_EIO);
    assert_msg_contains(e.msg, "is a directory");
    /* devices and FIFOs are refused at once: /dev/zero would never end, and a FIFO with no
     * writer would block the open */
    assert_int_equal(lr_npy_load(&m, "/dev/zero", &e), LR_EIO);
    assert_msg_contains(e.msg, "/dev/zero: is a character device, expected a .npy file");
    char *fifo = lr_test_path(dir, "fifo.npy");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(lr_npy_load(&m, fifo, &e), LR_EIO);
    assert_msg_contains(e.msg, "fifo.npy: is a FIFO (named pipe)");
    assert_null(m.data);
    free(fifo);

    assert_int_equal(lr_npy_load(&m, NULL, &e), LR_EINVAL);
    assert_int_equal(lr_npy_load(NULL, p, &e), LR_EINVAL);
    assert_int_equal(lr_npy_load_mem(&m, NULL, 5, "x", &e), LR_EINVAL);
    assert_int_equal(lr_npy_load_mem(NULL, np_f4_v1, sizeof np_f4_v1, "x", &e), LR_EINVAL);
    float f[4] = { 0 };
    assert_int_equal(lr_npy_save(lr_cmat_view(f, 2, 2, 2), NULL, &e), LR_EINVAL);
    assert_int_equal(lr_npy_save(lr_cmat_view(f, 2, 2, 1), p, &e), LR_EDIM);
    assert_msg_contains(e.msg, "ld 1 is smaller than cols 2");
    assert_int_equal(lr_npy_save(lr_cmat_view(NULL, 2, 2, 2), p, &e), LR_EINVAL);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* lr_npy_load_rows reads any block of rows (all of them, none, the last, one past the
 * end is an error) equal to the same rows of lr_npy_load's matrix, f4 and f8; it checks
 * the file as strictly as lr_npy_load (truncated, extra bytes, bad header); lr_npy_shape
 * reads the shape alone. */
static void test_load_rows(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir(), *p = lr_test_path(dir, "w.npy");
    lr_rng rng;
    lr_rng_seed(&rng, 13);
    lr_mat w, all, m;
    lr_err e = { "" };
    assert_int_equal(lr_mat_init(&w, 37, 5, NULL), LR_OK);
    lr_rng_fill_normal(&rng, w, 0.0f, 1.0f);
    assert_int_equal(lr_npy_save(lr_cm(w), p, &e), LR_OK);
    assert_int_equal(lr_npy_load(&all, p, &e), LR_OK);
    size_t rows = 0, cols = 0;
    assert_int_equal(lr_npy_shape(&rows, &cols, p, &e), LR_OK);
    assert_int_equal(rows, 37);
    assert_int_equal(cols, 5);
    static const size_t blocks[][2] = { { 0, 37 }, { 0, 0 }, { 37, 0 }, { 36, 1 }, { 0, 1 }, { 12, 13 }, { 5, 0 } };
    for (size_t b = 0; b < sizeof blocks / sizeof *blocks; b++) {
        size_t first = blocks[b][0], count = blocks[b][1];
        assert_int_equal(lr_npy_load_rows(&m, p, first, count, &e), LR_OK);
        assert_int_equal(m.rows, count);
        assert_int_equal(m.cols, 5);
        assert_int_equal(m.ld, 5);
        if (count) assert_memory_equal(m.data, all.data + first * 5, count * 5 * sizeof(float));
        lr_mat_free(&m);
    }
    /* beyond the end: the shape in the message */
    static const size_t bad[][2] = { { 37, 1 }, { 0, 38 }, { 38, 0 }, { 1, (size_t)-1 }, { (size_t)-1, 2 } };
    for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
        m.data = (float *)&m;
        assert_int_equal(lr_npy_load_rows(&m, p, bad[b][0], bad[b][1], &e), LR_EDIM);
        assert_msg_contains(e.msg, "w.npy: ");
        assert_msg_contains(e.msg, "but the shape is (37, 5) (37 rows)");
        assert_null(m.data);
    }
    /* float64 rows, rounded as lr_npy_load rounds; an out-of-range value named by its
     * row in the file */
    lr_test_write_file(p, np_f8_v2, sizeof np_f8_v2);
    assert_int_equal(lr_npy_load_rows(&m, p, 1, 1, &e), LR_OK);
    assert_int_equal(m.rows, 1);
    for (int j = 0; j < 3; j++) assert_true(m.data[j] == (float)np_f8_values[3 + j]);
    lr_mat_free(&m);
    const double big[4] = { 1, 2, 3, -1e300 };
    bytes bb = make_npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }\n", big, sizeof big);
    lr_test_write_file(p, bb.p, bb.n);
    free(bb.p);
    assert_int_equal(lr_npy_load_rows(&m, p, 0, 1, &e), LR_OK);
    lr_mat_free(&m);
    assert_int_equal(lr_npy_load_rows(&m, p, 1, 1, &e), LR_ERANGE);
    assert_msg_contains(e.msg, "element (1, 1) = -1.0000000000000001e+300 is beyond the float32 range");
    assert_null(m.data);
    /* as strict as lr_npy_load: the whole file is checked, not only the rows asked for */
    lr_test_write_file(p, np_f4_v1, sizeof np_f4_v1 - 1);
    assert_int_equal(lr_npy_load_rows(&m, p, 0, 1, &e), LR_EFORMAT);
    assert_msg_contains(e.msg, "w.npy: truncated: shape (2, 3) of '<f4' expected 24 bytes of data, found 23");
    assert_int_equal(lr_npy_shape(&rows, &cols, p, &e), LR_EFORMAT);
    assert_int_equal(rows, 0);
    unsigned char longer[sizeof np_f4_v1 + 4] = { 0 };
    memcpy(longer, np_f4_v1, sizeof np_f4_v1);
    lr_test_write_file(p, longer, sizeof longer);
    assert_int_equal(lr_npy_load_rows(&m, p, 0, 0, &e), LR_EFORMAT);
    assert_msg_contains(e.msg, "4 extra bytes after the data");
    bb = make_npy(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }\n", NULL, 24);
    lr_test_write_file(p, bb.p, bb.n);
    free(bb.p);
    assert_int_equal(lr_npy_load_rows(&m, p, 0, 1, &e), LR_EFORMAT);
    assert_msg_contains(e.msg, "dtype '<i4' (4-byte signed integer) not supported");
    bb = make_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }\n", NULL, 24);
    lr_test_write_file(p, bb.p, bb.n);
    free(bb.p);
    assert_int_equal(lr_npy_load_rows(&m, p, 0, 1, &e), LR_EFORMAT);
    assert_msg_contains(e.msg, "shape (6,) is 1-D; expected 2-D");
    assert_int_equal(lr_npy_load_rows(&m, dir, 0, 1, &e), LR_EIO);
    assert_msg_contains(e.msg, "is a directory");
    char *missing = lr_test_path(dir, "missing.npy");
    assert_int_equal(lr_npy_load_rows(&m, missing, 0, 1, &e), LR_EIO);
    assert_msg_contains(e.msg, "missing.npy");
    assert_int_equal(lr_npy_shape(&rows, &cols, missing, &e), LR_EIO);
    free(missing);
    assert_int_equal(lr_npy_load_rows(NULL, p, 0, 1, &e), LR_EINVAL);
    assert_int_equal(lr_npy_load_rows(&m, NULL, 0, 1, &e), LR_EINVAL);
    assert_int_equal(lr_npy_shape(NULL, &cols, p, &e), LR_EINVAL);
    assert_int_equal(lr_npy_shape(&rows, &cols, NULL, &e), LR_EINVAL);
    lr_mat_free(&w);
    lr_mat_free(&all);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* A failed save leaves no new file and no temp file, and an old file unchanged. */
static void test_failed_save_leaves_nothing(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    float f[4096];
    for (int i = 0; i < 4096; i++) f[i] = (float)i;
    lr_err e;

    /* the directory does not exist */
    char *p = lr_test_path(dir, "nodir/w.npy");
    assert_int_equal(lr_npy_save(lr_cmat_view(f, 2, 2, 2), p, &e), LR_EIO);
    assert_msg_contains(e.msg, "nodir/w.npy");
    assert_int_equal(count_entries(dir), 0);
    free(p);

    /* the target is a directory: the rename at the end fails */
    p = lr_test_path(dir, "sub");
    assert_int_equal(mkdir(p, 0700), 0);
    assert_int_equal(lr_npy_save(lr_cmat_view(f, 2, 2, 2), p, &e), LR_EIO);
    assert_msg_contains(e.msg, "sub");
    assert_int_equal(count_entries(dir), 1);
    free(p);

    /* the disk "fills" half-way through the data (RLIMIT_FSIZE: writes fail with EFBIG) */
    p = lr_test_path(dir, "old.npy");
    lr_test_write_file(p, np_f4_v1, sizeof np_f4_v1);
    struct rlimit old, small;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = 1000;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    lr_status s = lr_npy_save(lr_cmat_view(f, 64, 64, 64), p, &e);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(s, LR_EIO);
    assert_msg_contains(e.msg, "old.npy");
    assert_int_equal(count_entries(dir), 2); /* sub/ and old.npy, no temp file */
    size_t n;
    unsigned char *got = lr_test_read_file(p, &n);
    assert_int_equal(n, sizeof np_f4_v1);
    assert_memory_equal(got, np_f4_v1, n);
    free(got);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* Random byte flips in numpy's file, mostly in the header: every result is a clean
 * success or a clean refusal (the sanitizer build catches any out-of-bounds access). */
static void test_mutations(void **state)
{
    (void)state;
    lr_rng rng;
    lr_rng_seed(&rng, 2024);
    unsigned char buf[sizeof np_f8_v2];
    int ok = 0, refused = 0;
    for (int it = 0; it < 5000; it++) {
        const unsigned char *src = it % 2 ? np_f8_v2 : np_f4_v1;
        size_t n = it % 2 ? sizeof np_f8_v2 : sizeof np_f4_v1;
        memcpy(buf, src, n);
        int flips = 1 + (int)lr_rng_below(&rng, 3);
        for (int f = 0; f < flips; f++) {
            size_t at = (size_t)lr_rng_below(&rng, lr_rng_below(&rng, 4) ? 80 : n);
            buf[at] = (unsigned char)lr_rng_below(&rng, 256);
        }
        lr_mat m;
        lr_err e = { "" };
        lr_status s = lr_npy_load_mem(&m, buf, n, "m.npy", &e);
        if (s == LR_OK) {
            assert_true(m.rows * m.cols <= n);
            lr_mat_free(&m);
            ok++;
        } else {
            if (s != LR_EFORMAT && s != LR_ERANGE) fail_msg("status %d: %s", s, e.msg);
            assert_null(m.data);
            assert_true(strlen(e.msg) > 0);
            refused++;
        }
    }
    assert_true(ok > 0 && refused > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numpy_fixtures),
        cmocka_unit_test(test_save_matches_numpy_bytes),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_header_variants),
        cmocka_unit_test(test_header_nul_and_leading_zeros),
        cmocka_unit_test(test_bad_dtype_order_shape),
        cmocka_unit_test(test_malformed_header),
        cmocka_unit_test(test_preamble),
        cmocka_unit_test(test_float64_range),
        cmocka_unit_test(test_files_and_args),
        cmocka_unit_test(test_load_rows),
        cmocka_unit_test(test_failed_save_leaves_nothing),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
