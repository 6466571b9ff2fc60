/* test_idx.c — the IDX/MNIST reader: every rejection on small files written here (raw and gzip),
 * round trips, torchvision-exact normalisation, and the real MNIST files when present. */
#include "lr_test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "lowrank/io/idx.h"

/* ---- building IDX files ---- */

typedef struct { unsigned char *b; size_t n; } buf;

static buf idx_bytes(uint32_t magic, unsigned ndims, const uint32_t *dims, const uint8_t *data,
                     size_t ndata)
{
    buf r;
    r.n = 4 + 4 * (size_t)ndims + ndata;
    r.b = malloc(r.n ? r.n : 1);
    assert_non_null(r.b);
    unsigned char *p = r.b;
    uint32_t words[4] = { magic, 0, 0, 0 };
    for (unsigned i = 0; i < ndims; i++) words[1 + i] = dims[i];
    for (unsigned i = 0; i < 1 + ndims; i++) {
        *p++ = (unsigned char)(words[i] >> 24);
        *p++ = (unsigned char)(words[i] >> 16);
        *p++ = (unsigned char)(words[i] >> 8);
        *p++ = (unsigned char)words[i];
    }
    if (ndata) memcpy(p, data, ndata);
    return r;
}

static void write_gz(const char *path, const void *data, size_t n)
{
    gzFile g = gzopen(path, "wb6");
    assert_non_null(g);
    if (n) assert_int_equal(gzwrite(g, data, (unsigned)n), (int)n);
    assert_int_equal(gzclose(g), Z_OK);
}

/* A synthetic set: n images of r x c pixels and n labels, deterministic. */
static void make_set(size_t n, size_t r, size_t c, uint8_t **px, uint8_t **lb)
{
    *px = malloc(n * r * c + 1);
    *lb = malloc(n + 1);
    for (size_t i = 0; i < n * r * c; i++) (*px)[i] = (uint8_t)((i * 37u + 11u) % 256u);
    for (size_t i = 0; i < n; i++) (*lb)[i] = (uint8_t)((i * 7u + 3u) % 10u);
}

static void write_images(const char *path, int gz, size_t n, size_t r, size_t c, const uint8_t *px)
{
    uint32_t d[3] = { (uint32_t)n, (uint32_t)r, (uint32_t)c };
    buf b = idx_bytes(0x00000803u, 3, d, px, n * r * c);
    if (gz) write_gz(path, b.b, b.n); else lr_test_write_file(path, b.b, b.n);
    free(b.b);
}

static void write_labels(const char *path, int gz, size_t n, const uint8_t *lb)
{
    uint32_t d[1] = { (uint32_t)n };
    buf b = idx_bytes(0x00000801u, 1, d, lb, n);
    if (gz) write_gz(path, b.b, b.n); else lr_test_write_file(path, b.b, b.n);
    free(b.b);
}

typedef struct { char *dir; } fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = lr_test_tmpdir();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    lr_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* The in-memory readers on the bytes of the file at path (named by path) give what the file
 * readers give: the same status, the same message, the same examples. Returns the status. */
static lr_status same_in_memory(const char *path, int images, size_t rows, size_t cols, unsigned max_label)
{
    size_t n;
    unsigned char *bytes = lr_test_read_file(path, &n);
    lr_mnist f, m;
    lr_err ef = { { 0 } }, em = { { 0 } };
    lr_status sf = images ? lr_idx_read_images(&f, path, rows, cols, &ef) : lr_idx_read_labels(&f, path, max_label, &ef);
    lr_status sm = images ? lr_idx_images_from_memory(&m, bytes, n, path, rows, cols, &em)
                          : lr_idx_labels_from_memory(&m, bytes, n, path, max_label, &em);
    assert_int_equal(sm, sf);
    if (sf) {
        assert_string_equal(em.msg, ef.msg);
        assert_null(m.pixels);
        assert_null(m.labels);
        assert_int_equal(m.n, 0);
    } else {
        assert_int_equal(m.n, f.n);
        assert_int_equal(m.rows, f.rows);
        assert_int_equal(m.cols, f.cols);
        size_t bytes_n = images ? f.n * f.rows * f.cols : f.n;
        if (images && bytes_n) assert_memory_equal(m.pixels, f.pixels, bytes_n);
        else if (bytes_n) assert_memory_equal(m.labels, f.labels, bytes_n);
        assert_true(images ? m.labels == NULL : m.pixels == NULL);
    }
    lr_mnist_free(&f);
    lr_mnist_free(&m);
    free(bytes);
    return sf;
}

/* Expects image-file `bytes` (written raw or gzipped) to be refused by lr_mnist_load with a
 * message containing `needle` and the file name. */
static void expect_images_rejected(const char *dir, const void *bytes, size_t n, int gz,
                                   lr_status want, const char *needle)
{
    char *ip = lr_test_path(dir, gz ? "bad-images.gz" : "bad-images");
    char *lp = lr_test_path(dir, "ok-labels");
    if (gz) write_gz(ip, bytes, n); else lr_test_write_file(ip, bytes, n);
    uint8_t lb[3] = { 1, 2, 3 };
    write_labels(lp, 0, 3, lb);
    lr_mnist m;
    lr_err err = { { 0 } };
    assert_int_equal(lr_mnist_load(&m, ip, lp, &err), want);
    assert_msg_contains(err.msg, ip);
    assert_msg_contains(err.msg, needle);
    assert_null(m.pixels);
    assert_null(m.labels);
    assert_int_equal(m.n, 0);
    lr_mnist_free(&m);
    same_in_memory(ip, 1, 28, 28, 0);
    free(ip);
    free(lp);
}

static void expect_labels_rejected(const char *dir, const void *bytes, size_t n, int gz,
                                   lr_status want, const char *needle)
{
    char *lp = lr_test_path(dir, gz ? "bad-labels.gz" : "bad-labels");
    if (gz) write_gz(lp, bytes, n); else lr_test_write_file(lp, bytes, n);
    lr_mnist l;
    lr_err err = { { 0 } };
    assert_int_equal(lr_idx_read_labels(&l, lp, 9, &err), want);
    assert_msg_contains(err.msg, lp);
    assert_msg_contains(err.msg, needle);
    assert_null(l.labels);
    assert_int_equal(l.n, 0);
    assert_int_equal(same_in_memory(lp, 0, 0, 0, 9), want);
    free(lp);
}

/* ---- round trips ---- */

static void test_round_trip_raw_and_gzip(void **state)
{
    fixture *fx = *state;
    uint8_t *px, *lb;
    make_set(7, 28, 28, &px, &lb);
    for (int gz = 0; gz < 2; gz++) {
        char *ip = lr_test_path(fx->dir, gz ? "i.gz" : "i");
        char *lp = lr_test_path(fx->dir, gz ? "l.gz" : "l");
        write_images(ip, gz, 7, 28, 28, px);
        write_labels(lp, gz, 7, lb);
        lr_mnist m;
        lr_err err = { { 0 } };
        assert_int_equal(lr_mnist_load(&m, ip, lp, &err), LR_OK);
        assert_int_equal(m.n, 7);
        assert_int_equal(m.rows, 28);
        assert_int_equal(m.cols, 28);
        assert_memory_equal(m.pixels, px, 7 * 784);
        assert_memory_equal(m.labels, lb, 7);
        assert_int_equal(same_in_memory(ip, 1, 28, 28, 0), LR_OK);
        assert_int_equal(same_in_memory(lp, 0, 0, 0, 9), LR_OK);
        lr_mnist_free(&m);
        assert_null(m.pixels);
        lr_mnist_free(&m); /* twice is fine */
        free(ip);
        free(lp);
    }
    lr_mnist_free(NULL);
    free(px);
    free(lb);
}

static void test_any_image_size_and_big_gzip(void **state)
{
    fixture *fx = *state;
    /* the low-level reader accepts any size when none is required */
    uint8_t *px, *lb;
    make_set(3, 5, 4, &px, &lb);
    char *ip = lr_test_path(fx->dir, "small");
    write_images(ip, 0, 3, 5, 4, px);
    lr_mnist im;
    assert_int_equal(lr_idx_read_images(&im, ip, 0, 0, NULL), LR_OK);
    assert_int_equal(im.n, 3);
    assert_int_equal(im.rows, 5);
    assert_int_equal(im.cols, 4);
    assert_null(im.labels);
    assert_memory_equal(im.pixels, px, 60);
    lr_mnist_free(&im);
    free(px);
    free(lb);
    free(ip);

    /* a gzip set larger than the reader's first buffer (1 MiB) grows it correctly */
    make_set(3000, 28, 28, &px, &lb);
    ip = lr_test_path(fx->dir, "big.gz");
    write_images(ip, 1, 3000, 28, 28, px);
    assert_int_equal(lr_idx_read_images(&im, ip, 28, 28, NULL), LR_OK);
    assert_int_equal(im.n, 3000);
    assert_memory_equal(im.pixels, px, 3000 * 784);
    lr_mnist_free(&im);
    assert_int_equal(same_in_memory(ip, 1, 28, 28, 0), LR_OK);
    free(px);
    free(lb);
    free(ip);
}

static void test_load_dir(void **state)
{
    fixture *fx = *state;
    uint8_t *px, *lb;
    make_set(4, 28, 28, &px, &lb);
    lr_mnist m;
    lr_err err = { { 0 } };

    /* nothing there yet */
    assert_int_equal(lr_mnist_load_dir(&m, fx->dir, "train", &err), LR_EIO);
    assert_msg_contains(err.msg, "train-images-idx3-ubyte.gz");

    /* only .gz files */
    char *ig = lr_test_path(fx->dir, "train-images-idx3-ubyte.gz");
    char *lg = lr_test_path(fx->dir, "train-labels-idx1-ubyte.gz");
    write_images(ig, 1, 4, 28, 28, px);
    write_labels(lg, 1, 4, lb);
    assert_int_equal(lr_mnist_load_dir(&m, fx->dir, "train", &err), LR_OK);
    assert_int_equal(m.n, 4);
    assert_memory_equal(m.labels, lb, 4);
    lr_mnist_free(&m);

    /* raw files beside them win (they hold 2 examples, the .gz ones 4) */
    char *ir = lr_test_path(fx->dir, "train-images-idx3-ubyte");
    char *lr_ = lr_test_path(fx->dir, "train-labels-idx1-ubyte");
    write_images(ir, 0, 2, 28, 28, px);
    write_labels(lr_, 0, 2, lb);
    assert_int_equal(lr_mnist_load_dir(&m, fx->dir, "train", &err), LR_OK);
    assert_int_equal(m.n, 2);
    lr_mnist_free(&m);

    /* t10k missing: the message names what was looked for */
    assert_int_equal(lr_mnist_load_dir(&m, fx->dir, "t10k", &err), LR_EIO);
    assert_msg_contains(err.msg, "t10k-images-idx3-ubyte");
    /* bad arguments */
    assert_int_equal(lr_mnist_load_dir(&m, fx->dir, "test", &err), LR_EINVAL);
    assert_msg_contains(err.msg, "\"test\"");
    assert_int_equal(lr_mnist_load_dir(&m, fx->dir, NULL, &err), LR_EINVAL);
    assert_int_equal(lr_mnist_load_dir(&m, "", "train", &err), LR_EINVAL);
    char *nodir = lr_test_path(fx->dir, "nowhere");
    assert_int_equal(lr_mnist_load_dir(&m, nodir, "train", &err), LR_EIO);
    assert_msg_contains(err.msg, nodir);
    assert_int_equal(lr_mnist_load_dir(&m, ir, "train", &err), LR_EIO);
    assert_msg_contains(err.msg, "not a directory");
    assert_int_equal(lr_mnist_load_dir(NULL, fx->dir, "train", &err), LR_EINVAL);
    assert_null(m.pixels);
    free(nodir);
    free(ig);
    free(lg);
    free(ir);
    free(lr_);
    free(px);
    free(lb);
}

/* ---- rejections ---- */

static void test_short_header(void **state)
{
    fixture *fx = *state;
    uint32_t d[3] = { 3, 28, 28 };
    buf b = idx_bytes(0x00000803u, 3, d, NULL, 0);
    for (int gz = 0; gz < 2; gz++) {
        expect_images_rejected(fx->dir, b.b, 0, gz, LR_EFORMAT, "file ends after 0 bytes");
        expect_images_rejected(fx->dir, b.b, 3, gz, LR_EFORMAT, "expected a 16-byte IDX images header");
        expect_images_rejected(fx->dir, b.b, 10, gz, LR_EFORMAT, "file ends after 10 bytes");
    }
    uint32_t dl[1] = { 3 };
    buf l = idx_bytes(0x00000801u, 1, dl, NULL, 0);
    for (int gz = 0; gz < 2; gz++) {
        expect_labels_rejected(fx->dir, l.b, 2, gz, LR_EFORMAT, "expected a 8-byte IDX labels header");
        expect_labels_rejected(fx->dir, l.b, 6, gz, LR_EFORMAT, "file ends after 6 bytes");
    }
    free(l.b);
    /* gzip says so in the message */
    expect_images_rejected(fx->dir, b.b, 10, 1, LR_EFORMAT, "after gzip decompression");
    free(b.b);
}

static void test_wrong_magic_type_ndims(void **state)
{
    fixture *fx = *state;
    uint32_t d[3] = { 3, 28, 28 };
    uint8_t px[3 * 784] = { 0 };
    for (int gz = 0; gz < 2; gz++) {
        buf b = idx_bytes(0x12340803u, 3, d, px, sizeof px);
        expect_images_rejected(fx->dir, b.b, b.n, gz, LR_EFORMAT,
                               "not an IDX file: magic 0x12340803, expected 0x00000803");
        free(b.b);
        b = idx_bytes(0x00000D03u, 3, d, px, sizeof px); /* IDX float */
        expect_images_rejected(fx->dir, b.b, b.n, gz, LR_EFORMAT,
                               "type byte 0x0d, expected 0x08");
        free(b.b);
        /* a label file given as images */
        b = idx_bytes(0x00000801u, 1, d, px, 3);
        expect_images_rejected(fx->dir, b.b, b.n, gz, LR_EFORMAT,
                               "1 dimensions, expected 3 for images");
        expect_images_rejected(fx->dir, b.b, b.n, gz, LR_EFORMAT, "label file?");
        /* an image file given as labels */
        free(b.b);
        b = idx_bytes(0x00000803u, 3, d, px, sizeof px);
        expect_labels_rejected(fx->dir, b.b, b.n, gz, LR_EFORMAT,
                               "3 dimensions, expected 1 for labels");
        free(b.b);
        b = idx_bytes(0x00000802u, 2, d, px, 3 * 28);
        expect_images_rejected(fx->dir, b.b, b.n, gz, LR_EFORMAT,
                               "magic 0x00000802, expected 0x00000803");
        free(b.b);
    }
}

static void test_image_size(void **state)
{
    fixture *fx = *state;
    uint8_t px[2 * 20 * 20] = { 0 };
    uint32_t d[3] = { 2, 20, 20 };
    buf b = idx_bytes(0x00000803u, 3, d, px, sizeof px);
    for (int gz = 0; gz < 2; gz++)
        expect_images_rejected(fx->dir, b.b, b.n, gz, LR_EFORMAT, "images are 20 x 20, expected 28 x 28");
    free(b.b);
    /* zero-sized images are refused even when any size is allowed */
    uint32_t z[3] = { 2, 0, 28 };
    b = idx_bytes(0x00000803u, 3, z, px, 0);
    char *p = lr_test_path(fx->dir, "zero");
    lr_test_write_file(p, b.b, b.n);
    lr_mnist got;
    lr_err err = { { 0 } };
    assert_int_equal(lr_idx_read_images(&got, p, 0, 0, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "images are 0 x 28");
    assert_null(got.pixels);
    /* no images at all */
    uint32_t e[3] = { 0, 28, 28 };
    free(b.b);
    b = idx_bytes(0x00000803u, 3, e, px, 0);
    expect_images_rejected(fx->dir, b.b, b.n, 0, LR_EFORMAT, "contains no images");
    free(b.b);
    free(p);
}

static void test_dimension_overflow(void **state)
{
    fixture *fx = *state;
    uint32_t d[3] = { 0xFFFFFFFFu, 28, 28 };
    char *p = lr_test_path(fx->dir, "huge");
    buf b = idx_bytes(0x00000803u, 3, d, NULL, 0);
    lr_test_write_file(p, b.b, b.n);
    lr_mnist got;
    lr_err err = { { 0 } };
    /* 2^32 * 784 fits in 64 bits but the file is far too short: refused before allocating */
    assert_int_equal(lr_idx_read_images(&got, p, 0, 0, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "data is 0 bytes, expected 3367254359280");
    /* the same header gzipped: no size known up front, must not allocate 3 TB either */
    free(b.b);
    b = idx_bytes(0x00000803u, 3, d, NULL, 0);
    expect_images_rejected(fx->dir, b.b, b.n, 1, LR_EFORMAT, "data ends after 0 bytes");
    free(b.b);
    uint32_t big[3] = { 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu };
    b = idx_bytes(0x00000803u, 3, big, NULL, 0);
    lr_test_write_file(p, b.b, b.n);
    assert_int_equal(lr_idx_read_images(&got, p, 0, 0, &err), LR_ERANGE);
    assert_msg_contains(err.msg, p);
    assert_msg_contains(err.msg, "4294967295 x 4294967295 x 4294967295 overflows");
    free(b.b);
    free(p);
}

static void test_data_short_and_long(void **state)
{
    fixture *fx = *state;
    uint8_t px[3 * 784 + 5];
    memset(px, 9, sizeof px);
    uint32_t d[3] = { 3, 28, 28 };
    /* shorter */
    buf b = idx_bytes(0x00000803u, 3, d, px, 3 * 784 - 1);
    expect_images_rejected(fx->dir, b.b, b.n, 0, LR_EFORMAT, "data is 2351 bytes, expected 2352 (3 x 28 x 28 images)");
    expect_images_rejected(fx->dir, b.b, b.n, 1, LR_EFORMAT, "data ends after 2351 bytes (after gzip decompression), expected 2352");
    free(b.b);
    /* longer */
    b = idx_bytes(0x00000803u, 3, d, px, 3 * 784 + 5);
    expect_images_rejected(fx->dir, b.b, b.n, 0, LR_EFORMAT, "5 bytes of extra data after the declared 2352");
    expect_images_rejected(fx->dir, b.b, b.n, 1, LR_EFORMAT, "continues beyond the declared 2352 bytes");
    free(b.b);
    /* labels too */
    uint8_t lb[6] = { 1, 2, 3, 4, 5, 6 };
    uint32_t dl[1] = { 5 };
    b = idx_bytes(0x00000801u, 1, dl, lb, 6);
    expect_labels_rejected(fx->dir, b.b, b.n, 0, LR_EFORMAT, "1 bytes of extra data after the declared 5");
    expect_labels_rejected(fx->dir, b.b, b.n, 1, LR_EFORMAT, "continues beyond the declared 5");
    free(b.b);
    b = idx_bytes(0x00000801u, 1, dl, lb, 4);
    expect_labels_rejected(fx->dir, b.b, b.n, 0, LR_EFORMAT, "data is 4 bytes, expected 5");
    expect_labels_rejected(fx->dir, b.b, b.n, 1, LR_EFORMAT, "data ends after 4 bytes");
    free(b.b);
}

static void test_bad_gzip(void **state)
{
    fixture *fx = *state;
    uint8_t *px, *lb;
    make_set(3, 28, 28, &px, &lb);
    char *ip = lr_test_path(fx->dir, "x.gz");
    char *lp = lr_test_path(fx->dir, "y");
    write_images(ip, 1, 3, 28, 28, px);
    write_labels(lp, 0, 3, lb);
    size_t n;
    unsigned char *gz = lr_test_read_file(ip, &n);
    lr_mnist m;
    lr_err err = { { 0 } };

    /* truncated in the deflate data, and inside the 8-byte trailer */
    size_t cuts[] = { n / 2, n - 4, n - 1, 12 };
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        lr_test_write_file(ip, gz, cuts[i]);
        assert_int_equal(lr_mnist_load(&m, ip, lp, &err), LR_EFORMAT);
        assert_msg_contains(err.msg, ip);
        assert_msg_contains(err.msg, "truncated gzip stream");
        assert_int_equal(same_in_memory(ip, 1, 28, 28, 0), LR_EFORMAT);
    }
    /* a wrong CRC in the trailer: all data arrives, then the check fails */
    gz[n - 8] ^= 0x5a;
    lr_test_write_file(ip, gz, n);
    assert_int_equal(lr_mnist_load(&m, ip, lp, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "corrupt gzip stream");
    assert_msg_contains(err.msg, "incorrect data check");
    assert_int_equal(same_in_memory(ip, 1, 28, 28, 0), LR_EFORMAT);
    gz[n - 8] ^= 0x5a;
    /* a wrong length in the trailer */
    gz[n - 1] ^= 0x01;
    lr_test_write_file(ip, gz, n);
    assert_int_equal(lr_mnist_load(&m, ip, lp, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "corrupt gzip stream");
    assert_msg_contains(err.msg, "incorrect length check");
    assert_int_equal(same_in_memory(ip, 1, 28, 28, 0), LR_EFORMAT);
    gz[n - 1] ^= 0x01;
    /* an unknown compression method in the gzip header */
    gz[2] = 7;
    lr_test_write_file(ip, gz, n);
    assert_int_equal(lr_mnist_load(&m, ip, lp, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "corrupt gzip stream");
    assert_msg_contains(err.msg, "unknown compression method");
    assert_int_equal(same_in_memory(ip, 1, 28, 28, 0), LR_EFORMAT);
    gz[2] = 8;
    /* garbage in the deflate data: a block type that does not exist (BTYPE = 11) */
    gz[10] = 0x07;
    lr_test_write_file(ip, gz, n);
    assert_int_equal(lr_mnist_load(&m, ip, lp, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "corrupt gzip stream");
    assert_msg_contains(err.msg, "invalid block type");
    assert_int_equal(same_in_memory(ip, 1, 28, 28, 0), LR_EFORMAT);
    assert_null(m.pixels);
    free(gz);
    free(ip);
    free(lp);
    free(px);
    free(lb);
}

static void test_labels_and_counts(void **state)
{
    fixture *fx = *state;
    uint8_t lb[5] = { 0, 9, 3, 10, 2 };
    uint32_t d[1] = { 5 };
    buf b = idx_bytes(0x00000801u, 1, d, lb, 5);
    for (int gz = 0; gz < 2; gz++)
        expect_labels_rejected(fx->dir, b.b, b.n, gz, LR_EFORMAT, "label 10 at index 3, expected 0..9");
    free(b.b);
    /* a different max_label is honoured */
    char *p = lr_test_path(fx->dir, "l10");
    write_labels(p, 0, 5, lb);
    lr_mnist got;
    assert_int_equal(lr_idx_read_labels(&got, p, 10, NULL), LR_OK);
    assert_int_equal(got.n, 5);
    assert_null(got.pixels);
    lr_mnist_free(&got);
    free(p);

    /* 4 images, 3 labels */
    uint8_t *px, *l2;
    make_set(4, 28, 28, &px, &l2);
    char *ip = lr_test_path(fx->dir, "i4"), *lp = lr_test_path(fx->dir, "l3");
    write_images(ip, 0, 4, 28, 28, px);
    write_labels(lp, 1, 3, l2);
    lr_mnist m;
    lr_err err = { { 0 } };
    assert_int_equal(lr_mnist_load(&m, ip, lp, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "has 4 images but");
    assert_msg_contains(err.msg, "has 3 labels");
    assert_msg_contains(err.msg, lp);
    assert_null(m.pixels);
    free(ip);
    free(lp);
    free(px);
    free(l2);
}

static void test_bad_paths(void **state)
{
    fixture *fx = *state;
    uint8_t *px, *lb;
    make_set(2, 28, 28, &px, &lb);
    char *ip = lr_test_path(fx->dir, "img"), *lp = lr_test_path(fx->dir, "lab");
    write_images(ip, 0, 2, 28, 28, px);
    write_labels(lp, 0, 2, lb);
    lr_mnist m;
    lr_err err = { { 0 } };

    char *missing = lr_test_path(fx->dir, "missing");
    assert_int_equal(lr_mnist_load(&m, missing, lp, &err), LR_EIO);
    assert_msg_contains(err.msg, missing);
    assert_msg_contains(err.msg, strerror(ENOENT));
    assert_int_equal(lr_mnist_load(&m, ip, missing, &err), LR_EIO);
    assert_msg_contains(err.msg, missing);
    assert_null(m.pixels);

    assert_int_equal(lr_mnist_load(&m, fx->dir, lp, &err), LR_EIO);
    assert_msg_contains(err.msg, fx->dir);
    assert_msg_contains(err.msg, "is a directory");

    /* a FIFO would block a naive reader */
    char *fifo = lr_test_path(fx->dir, "fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(lr_mnist_load(&m, fifo, lp, &err), LR_EIO);
    assert_msg_contains(err.msg, "fifo: is a FIFO (named pipe), expected an IDX file");
    assert_int_equal(lr_mnist_load(&m, "/dev/zero", lp, &err), LR_EIO);
    assert_msg_contains(err.msg, "/dev/zero: is a character device");

    /* unreadable: /proc/self/mem opens but reading offset 0 fails with EIO, even for root */
    if (access("/proc/self/mem", R_OK) == 0) {
        assert_int_equal(lr_mnist_load(&m, "/proc/self/mem", lp, &err), LR_EIO);
        assert_msg_contains(err.msg, "cannot read /proc/self/mem");
    }
    /* and mode 000 for ordinary users (root reads it anyway) */
    if (geteuid() != 0) {
        assert_int_equal(chmod(ip, 0), 0);
        assert_int_equal(lr_mnist_load(&m, ip, lp, &err), LR_EIO);
        assert_msg_contains(err.msg, strerror(EACCES));
        chmod(ip, 0600);
    }
    assert_int_equal(lr_mnist_load(&m, "", lp, &err), LR_EINVAL);
    assert_int_equal(lr_mnist_load(&m, NULL, lp, &err), LR_EINVAL);
    assert_int_equal(lr_mnist_load(NULL, ip, lp, &err), LR_EINVAL);
    assert_int_equal(lr_idx_read_images(NULL, ip, 28, 28, &err), LR_EINVAL);
    assert_int_equal(lr_idx_read_labels(NULL, lp, 9, &err), LR_EINVAL);
    /* and the good pair still loads */
    assert_int_equal(lr_mnist_load(&m, ip, lp, &err), LR_OK);
    lr_mnist_free(&m);
    free(fifo);
    free(missing);
    free(ip);
    free(lp);
    free(px);
    free(lb);
}

/* ---- in memory ---- */

/* gzip members after the first are read on (as gzip -d does); anything else after the
 * stream, and bad arguments, are refused by both readers alike. */
static void test_memory_gzip_members_and_trailing(void **state)
{
    fixture *fx = *state;
    uint8_t *px, *lb;
    make_set(3, 28, 28, &px, &lb);
    uint32_t d[3] = { 3, 28, 28 };
    buf b = idx_bytes(0x00000803u, 3, d, px, 3 * 784);
    char *p1 = lr_test_path(fx->dir, "a.gz"), *p2 = lr_test_path(fx->dir, "b.gz");
    /* two members: the header and the first image, then the rest */
    write_gz(p1, b.b, 16 + 784);
    write_gz(p2, b.b + 16 + 784, b.n - 16 - 784);
    size_t n1, n2;
    unsigned char *g1 = lr_test_read_file(p1, &n1), *g2 = lr_test_read_file(p2, &n2);
    unsigned char *cat = malloc(n1 + n2 + 4);
    memcpy(cat, g1, n1);
    memcpy(cat + n1, g2, n2);
    char *pc = lr_test_path(fx->dir, "cat.gz");
    lr_test_write_file(pc, cat, n1 + n2);
    lr_mnist m;
    lr_err err = { { 0 } };
    assert_int_equal(lr_idx_images_from_memory(&m, cat, n1 + n2, "cat.gz", 28, 28, &err), LR_OK);
    assert_int_equal(m.n, 3);
    assert_memory_equal(m.pixels, px, 3 * 784);
    lr_mnist_free(&m);
    assert_int_equal(same_in_memory(pc, 1, 28, 28, 0), LR_OK);

    /* junk after the last member (zero padding, text) */
    const char *junk[] = { "\0\0\0\0", "junk" };
    for (int i = 0; i < 2; i++) {
        memcpy(cat + n1 + n2, junk[i], 4);
        lr_test_write_file(pc, cat, n1 + n2 + 4);
        assert_int_equal(lr_idx_images_from_memory(&m, cat, n1 + n2 + 4, "cat.gz", 28, 28, &err), LR_EFORMAT);
        assert_msg_contains(err.msg, "cat.gz: data after the end of the gzip stream that is not gzip");
        assert_null(m.pixels);
        assert_int_equal(same_in_memory(pc, 1, 28, 28, 0), LR_EFORMAT);
    }
    /* a second member cut short */
    memcpy(cat + n1, g2, n2);
    lr_test_write_file(pc, cat, n1 + n2 / 2);
    assert_int_equal(same_in_memory(pc, 1, 28, 28, 0), LR_EFORMAT);
    assert_int_equal(lr_idx_images_from_memory(&m, cat, n1 + n2 / 2, NULL, 28, 28, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "(IDX data): truncated gzip stream");

    /* no name: "(IDX data)" stands for it; no bytes; a NULL buffer; a NULL out */
    assert_int_equal(lr_idx_images_from_memory(&m, b.b, 5, NULL, 0, 0, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "(IDX data): file ends after 5 bytes");
    assert_int_equal(lr_idx_images_from_memory(&m, "", 0, "empty", 0, 0, &err), LR_EFORMAT);
    assert_msg_contains(err.msg, "empty: file ends after 0 bytes");
    assert_int_equal(lr_idx_images_from_memory(&m, NULL, 0, "none", 0, 0, &err), LR_EFORMAT);
    assert_int_equal(lr_idx_images_from_memory(&m, NULL, 16, "null", 0, 0, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "null: buffer is NULL");
    assert_int_equal(lr_idx_labels_from_memory(&m, NULL, 8, "null", 9, &err), LR_EINVAL);
    assert_int_equal(lr_idx_images_from_memory(NULL, b.b, b.n, "x", 0, 0, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "out is NULL");
    assert_int_equal(lr_idx_labels_from_memory(NULL, b.b, b.n, "x", 9, NULL), LR_EINVAL);
    /* the buffer is only read */
    assert_int_equal(lr_idx_images_from_memory(&m, b.b, b.n, "raw", 28, 28, NULL), LR_OK);
    b.b[16] ^= 0xff;
    assert_int_equal(m.pixels[0], px[0]);
    lr_mnist_free(&m);
    free(cat);
    free(g1);
    free(g2);
    free(p1);
    free(p2);
    free(pc);
    free(b.b);
    free(px);
    free(lb);
}

/* ---- normalisation ---- */

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void test_normalize(void **state)
{
    (void)state;
    /* bit patterns from torch: x.float().div(255).sub(mean_t).div(std_t) in float32 */
    const struct { uint8_t p; uint32_t bits; } pins[] = {
        { 0, 0xbed93271u }, { 1, 0xbed2ae20u }, { 127, 0x3f989c64u },
        { 128, 0x3f9a3d7au }, { 254, 0x4033c2b3u }, { 255, 0x4034933du },
    };
    for (size_t i = 0; i < sizeof pins / sizeof *pins; i++)
        assert_int_equal(bits(lr_mnist_pixel(pins[i].p)), pins[i].bits);

    uint8_t *px, *lb;
    make_set(5, 28, 28, &px, &lb);
    lr_mnist m = { 5, 28, 28, px, lb };
    lr_dataset d = lr_mnist_dataset(&m);
    assert_int_equal(lr_dataset_check(&d, NULL), LR_OK);
    assert_int_equal(d.dim, 784);
    assert_int_equal(d.classes, 10);
    size_t idx[3] = { 4, 0, 4 };
    float x[3 * 784];
    uint8_t y[3];
    lr_dataset_batch(&d, x, y, idx, 3);
    for (size_t b = 0; b < 3; b++) {
        assert_int_equal(y[b], lb[idx[b]]);
        for (size_t j = 0; j < 784; j++)
            assert_int_equal(bits(x[b * 784 + j]), bits(lr_mnist_pixel(px[idx[b] * 784 + j])));
    }
    float x2[2 * 784];
    lr_dataset_range(&d, x2, NULL, 3, 2);
    for (size_t j = 0; j < 784; j++) assert_int_equal(bits(x2[784 + j]), bits(x[j])); /* row 4 */
    free(px);
    free(lb);
}

/* ---- the real data ---- */

static void test_real_mnist(void **state)
{
    fixture *fx = *state;
    const char *dir = lr_test_mnist_dir();
    if (!dir) skip();
    lr_mnist tr, te;
    lr_err err = { { 0 } };
    assert_int_equal(lr_mnist_load_dir(&tr, dir, "train", &err), LR_OK);
    assert_int_equal(lr_mnist_load_dir(&te, dir, "t10k", &err), LR_OK);
    assert_int_equal(tr.n, 60000);
    assert_int_equal(te.n, 10000);
    assert_int_equal(tr.rows, 28);
    assert_int_equal(tr.cols, 28);
    const uint8_t tr_first[5] = { 5, 0, 4, 1, 9 }, te_first[5] = { 7, 2, 1, 0, 4 };
    assert_memory_equal(tr.labels, tr_first, 5);
    assert_memory_equal(te.labels, te_first, 5);
    /* the published class counts */
    const size_t tr_hist[10] = { 5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949 };
    const size_t te_hist[10] = { 980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009 };
    size_t h1[10] = { 0 }, h2[10] = { 0 };
    for (size_t i = 0; i < tr.n; i++) h1[tr.labels[i]]++;
    for (size_t i = 0; i < te.n; i++) h2[te.labels[i]]++;
    for (int d = 0; d < 10; d++) {
        assert_int_equal(h1[d], tr_hist[d]);
        assert_int_equal(h2[d], te_hist[d]);
    }
    /* the mean pixel behind the 0.1307 in Normalize */
    double s = 0;
    for (size_t i = 0; i < tr.n * 784; i++) s += tr.pixels[i];
    assert_allclose(s / (tr.n * 784.0) / 255.0, 0.1306604762738429, 1e-12, 0);

    /* the same t10k set gzipped reads back identical */
    char *ig = lr_test_path(fx->dir, "t10k-images-idx3-ubyte.gz");
    char *lg = lr_test_path(fx->dir, "t10k-labels-idx1-ubyte.gz");
    uint32_t d3[3] = { 10000, 28, 28 }, d1[1] = { 10000 };
    buf b = idx_bytes(0x00000803u, 3, d3, te.pixels, te.n * 784);
    gzFile g = gzopen(ig, "wb1");
    assert_int_equal(gzwrite(g, b.b, (unsigned)b.n), (int)b.n);
    gzclose(g);
    free(b.b);
    b = idx_bytes(0x00000801u, 1, d1, te.labels, te.n);
    write_gz(lg, b.b, b.n);
    free(b.b);
    lr_mnist tz;
    assert_int_equal(lr_mnist_load_dir(&tz, fx->dir, "t10k", &err), LR_OK);
    assert_int_equal(tz.n, 10000);
    assert_memory_equal(tz.pixels, te.pixels, 10000 * 784);
    assert_memory_equal(tz.labels, te.labels, 10000);
    assert_int_equal(same_in_memory(ig, 1, 28, 28, 0), LR_OK);
    lr_mnist_free(&tz);
    free(ig);
    free(lg);
    lr_mnist_free(&tr);
    lr_mnist_free(&te);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_raw_and_gzip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_any_image_size_and_big_gzip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_magic_type_ndims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_image_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dimension_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_short_and_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_gzip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_labels_and_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_gzip_members_and_trailing, setup, teardown),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test_setup_teardown(test_real_mnist, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
