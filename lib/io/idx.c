/* idx.c — strict IDX reader (raw or gzip through zlib) and MNIST batch normalisation.
 *
 * One parser (header, dimensions, sizes, body, trailing data) reads from a source that is a
 * raw file (fread), raw bytes in memory, or a gzip stream inflated with zlib whose input
 * comes from the file in 128 KiB chunks or from memory. So the file readers and the
 * in-memory ones (lr_idx_images_from_memory, the fuzz target's entry) refuse the same
 * inputs with the same messages.
 *
 * Sizes are checked before anything large is allocated: raw data's length is known (fstat,
 * or the buffer's), so a header that declares more (or less) data than there is is refused
 * at once; a gzip stream's length is not, so its buffer grows as data actually arrives and a
 * bogus header (or a gzip bomb) cannot make us allocate or inflate more than one byte past
 * what the header declares. After the declared data one more byte is asked for: getting it
 * means the data is longer than declared, and for gzip it also makes zlib read the trailer,
 * so a bad CRC or a stream cut inside the trailer is caught. Concatenated gzip members are
 * read as one stream (as gzip -d does); anything else after the last member is refused.
 */
#include "lowrank/io/idx.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "base/internal.h"
#include "io/readfile.h"

enum { GZ_CHUNK = 1 << 17 };

typedef struct {
    const char *path;               /* the file, or the name the caller gave the bytes */
    FILE *f;                        /* the file, or NULL for bytes in memory */
    const unsigned char *mem;       /* bytes in memory: mem[pos..len) are still unread */
    size_t len, pos;
    long long size;                 /* raw data's total length when known, else -1 */
    bool gz, zinit, zend;           /* gzip; inflateInit2 done; at the end of a member */
    z_stream z;
    unsigned char *in;              /* gzip from a file: the input chunk (GZ_CHUNK) */
    size_t out;                     /* gzip: bytes inflated so far */
} idx_src;

static void src_close(idx_src *s)
{
    if (s->f) fclose(s->f);
    if (s->zinit) inflateEnd(&s->z);
    free(s->in);
    s->f = NULL;
    s->in = NULL;
    s->zinit = false;
}

/* gzip: sets up inflate for a gzip wrapper (windowBits 15 + 16) over what is left. */
static lr_status src_start_gzip(idx_src *s, lr_err *err)
{
    s->gz = true;
    if (s->f && !(s->in = malloc(GZ_CHUNK)))
        return lr__fail(err, LR_ENOMEM, "%s: out of memory for gzip input", s->path);
    memset(&s->z, 0, sizeof s->z);
    int rc = inflateInit2(&s->z, 15 + 16);
    if (rc != Z_OK)
        return lr__fail(err, LR_ENOMEM, "%s: cannot start gzip decompression", s->path);
    s->zinit = true;
    return LR_OK;
}

static lr_status src_open_mem(idx_src *s, const void *buf, size_t n, const char *name, lr_err *err)
{
    memset(s, 0, sizeof *s);
    s->path = name ? name : "(IDX data)";
    s->size = -1;
    if (!buf && n) return lr__fail(err, LR_EINVAL, "%s: buffer is NULL", s->path);
    s->mem = buf;
    s->len = n;
    if (n >= 2 && s->mem[0] == 0x1f && s->mem[1] == 0x8b) return src_start_gzip(s, err);
    s->size = n > (size_t)LLONG_MAX ? LLONG_MAX : (long long)n;
    return LR_OK;
}

static lr_status src_open(idx_src *s, const char *path, lr_err *err)
{
    memset(s, 0, sizeof *s);
    s->path = path;
    s->size = -1;
    if (!path || !*path) return lr__fail(err, LR_EINVAL, "IDX file: empty path");
    FILE *f;
    struct stat st;
    lr_status rc = lr__open_regular(&f, &st, path, "an IDX file", err);
    if (rc) return rc;
    unsigned char magic[2];
    size_t got = fread(magic, 1, 2, f);
    if (got < 2 && ferror(f)) {
        int e = errno;
        fclose(f);
        return lr__fail(err, LR_EIO, "cannot read %s: %s", path, strerror(e));
    }
    rewind(f);
    s->f = f;
    if (got == 2 && magic[0] == 0x1f && magic[1] == 0x8b) return src_start_gzip(s, err);
    if (st.st_size > 0) s->size = (long long)st.st_size;
    return LR_OK;
}

/* Raw bytes: up to n into buf. */
static lr_status raw_read(idx_src *s, void *buf, size_t n, size_t *got, lr_err *err)
{
    if (s->f) {
        *got = fread(buf, 1, n, s->f);
        if (*got < n && ferror(s->f))
            return lr__fail(err, LR_EIO, "cannot read %s: %s", s->path, strerror(errno));
        return LR_OK;
    }
    *got = n < s->len - s->pos ? n : s->len - s->pos;
    if (*got) memcpy(buf, s->mem + s->pos, *got);
    s->pos += *got;
    return LR_OK;
}

/* gzip: makes the next compressed input available when inflate has used up the last; none
 * left (z.avail_in == 0 on return) is the end of the input. */
static lr_status gz_fill(idx_src *s, lr_err *err)
{
    if (s->z.avail_in) return LR_OK;
    if (s->f) {
        size_t r = fread(s->in, 1, GZ_CHUNK, s->f);
        if (r < GZ_CHUNK && ferror(s->f))
            return lr__fail(err, LR_EIO, "cannot read %s: %s", s->path, strerror(errno));
        s->z.next_in = s->in;
        s->z.avail_in = (uInt)r;
        return LR_OK;
    }
    size_t take = s->len - s->pos;
    if (take > UINT_MAX) take = UINT_MAX;
    s->z.next_in = (unsigned char *)(uintptr_t)(s->mem + s->pos); /* zlib does not write it */
    s->z.avail_in = (uInt)take;
    s->pos += take;
    return LR_OK;
}

/* gzip: inflates up to n bytes into buf; *got < n only at a clean end of the stream. */
static lr_status gz_read(idx_src *s, unsigned char *buf, size_t n, size_t *got, lr_err *err)
{
    lr_status st;
    *got = 0;
    while (*got < n) {
        if ((st = gz_fill(s, err))) return st;
        if (s->zend) { /* after a member: the end, another member, or junk */
            if (!s->z.avail_in) break;
            if (s->z.next_in[0] != 0x1f)
                return lr__fail(err, LR_EFORMAT, "%s: data after the end of the gzip stream that is "
                                "not gzip (after %zu bytes of data)", s->path, s->out);
            inflateReset(&s->z);
            s->zend = false;
        }
        size_t want = n - *got;
        if (want > UINT_MAX) want = UINT_MAX;
        s->z.next_out = buf + *got;
        s->z.avail_out = (uInt)want;
        int rc = inflate(&s->z, Z_NO_FLUSH);
        size_t made = want - s->z.avail_out;
        *got += made;
        s->out += made;
        if (rc == Z_STREAM_END) s->zend = true;
        else if (rc == Z_MEM_ERROR) return lr__fail(err, LR_ENOMEM, "%s: out of memory in zlib", s->path);
        else if (rc == Z_BUF_ERROR) /* no progress with room for output: the input has ended */
            return lr__fail(err, LR_EFORMAT, "%s: truncated gzip stream (unexpected end of file) "
                            "after %zu bytes of data", s->path, s->out);
        else if (rc != Z_OK)
            return lr__fail(err, LR_EFORMAT, "%s: corrupt gzip stream: %s", s->path,
                            s->z.msg ? s->z.msg : "bad data");
    }
    return LR_OK;
}

/* Reads up to n bytes; *got < n only at a clean end of data. Errors (I/O, corrupt or
 * truncated gzip) are reported here, so a short count is never ambiguous. */
static lr_status src_read(idx_src *s, void *buf, size_t n, size_t *got, lr_err *err)
{
    *got = 0;
    return s->gz ? gz_read(s, buf, n, got, err) : raw_read(s, buf, n, got, err);
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* What the header of an IDX file declared, and how to name it in messages. */
typedef struct {
    const char *path, *what, *gz; /* gz: " (after gzip decompression)" or "" */
    unsigned ndims;
    size_t header, total;         /* header bytes; data bytes the dimensions declare */
    char shape[64];               /* "60000 x 28 x 28" */
} idx_hdr;

/* The 4-byte magic: 0x00 0x00, type 0x08 (unsigned byte), then ndims. */
static lr_status check_magic(const idx_hdr *h, const unsigned char *hb, lr_err *err)
{
    const uint32_t want = 0x00000800u | h->ndims, magic = be32(hb);
    if (hb[0] != 0 || hb[1] != 0)
        return lr__fail(err, LR_EFORMAT, "%s: not an IDX file: magic 0x%08x, expected 0x%08x (IDX %s)",
                        h->path, (unsigned)magic, (unsigned)want, h->what);
    if (hb[2] != 0x08)
        return lr__fail(err, LR_EFORMAT, "%s: IDX type byte 0x%02x, expected 0x08 (unsigned byte); "
                        "magic 0x%08x, expected 0x%08x", h->path, hb[2], (unsigned)magic, (unsigned)want);
    if (hb[3] != h->ndims)
        return lr__fail(err, LR_EFORMAT, "%s: IDX has %u dimensions, expected %u for %s "
                        "(magic 0x%08x, expected 0x%08x)%s", h->path, hb[3], h->ndims, h->what,
                        (unsigned)magic, (unsigned)want,
                        hb[3] == 1 ? "; is this a label file?" : hb[3] == 3 ? "; is this an image file?" : "");
    return LR_OK;
}

/* dims <- the declared sizes; h->total, h->shape from them. Images must be want_rows x
 * want_cols (0 = any) and at least 1 x 1. */
static lr_status parse_dims(idx_hdr *h, const unsigned char *hb, size_t want_rows, size_t want_cols,
                            uint32_t *dims, lr_err *err)
{
    if (h->ndims == 3) {
        uint32_t r = be32(hb + 8), c = be32(hb + 12);
        if ((want_rows && r != want_rows) || (want_cols && c != want_cols))
            return lr__fail(err, LR_EFORMAT, "%s: images are %u x %u, expected %zu x %zu", h->path,
                            (unsigned)r, (unsigned)c, want_rows, want_cols);
        if (r == 0 || c == 0)
            return lr__fail(err, LR_EFORMAT, "%s: images are %u x %u, expected at least 1 x 1", h->path,
                            (unsigned)r, (unsigned)c);
    }
    int len = 0;
    h->shape[0] = '\0';
    for (unsigned i = 0; i < h->ndims; i++) {
        dims[i] = be32(hb + 4 + 4 * i);
        len += snprintf(h->shape + len, sizeof h->shape - (size_t)len, "%s%u", i ? " x " : "",
                        (unsigned)dims[i]);
    }
    h->total = 1;
    for (unsigned i = 0; i < h->ndims; i++) {
        if (dims[i] != 0 && h->total > SIZE_MAX / dims[i])
            return lr__fail(err, LR_ERANGE, "%s: declared size %s overflows size_t", h->path, h->shape);
        h->total *= dims[i];
    }
    return LR_OK;
}

/* Reads and checks the header: magic, then the dimensions. */
static lr_status read_header(idx_src *s, idx_hdr *h, size_t want_rows, size_t want_cols, uint32_t *dims,
                             lr_err *err)
{
    unsigned char hb[4 + 4 * 3];
    size_t got;
    lr_status st = src_read(s, hb, 4, &got, err);
    if (st) return st;
    if (got < 4)
        return lr__fail(err, LR_EFORMAT, "%s: file ends after %zu bytes%s, expected a %zu-byte IDX "
                        "%s header", h->path, got, h->gz, h->header, h->what);
    if ((st = check_magic(h, hb, err)) || (st = src_read(s, hb + 4, 4 * (size_t)h->ndims, &got, err)))
        return st;
    if (got < 4 * (size_t)h->ndims)
        return lr__fail(err, LR_EFORMAT, "%s: file ends after %zu bytes%s, expected a %zu-byte IDX "
                        "%s header", h->path, 4 + got, h->gz, h->header, h->what);
    return parse_dims(h, hb, want_rows, want_cols, dims, err);
}

/* A raw file's length is known: refuse a mismatch before allocating anything. */
static lr_status check_raw_size(const idx_src *s, const idx_hdr *h, lr_err *err)
{
    if (s->size < 0) return LR_OK;
    /* size >= header: the header was read from this file */
    unsigned long long have = (unsigned long long)s->size - h->header;
    if (have < h->total)
        return lr__fail(err, LR_EFORMAT, "%s: data is %llu bytes, expected %zu (%s %s)", h->path, have,
                        h->total, h->shape, h->what);
    if (have > h->total)
        return lr__fail(err, LR_EFORMAT, "%s: %llu bytes of extra data after the declared %zu "
                        "(%s %s); file is %lld bytes, expected %zu", h->path, have - h->total, h->total,
                        h->shape, h->what, s->size, h->header + h->total);
    return LR_OK;
}

/* *data <- exactly h->total bytes, the buffer growing as data arrives when the length is
 * unknown (gzip), so a bogus header cannot make the reader allocate gigabytes up front; any
 * byte past them is an error. */
static lr_status read_body(idx_src *s, const idx_hdr *h, uint8_t **data, lr_err *err)
{
    const size_t total = h->total;
    size_t cap = s->size >= 0 ? total : (total < (1u << 20) ? total : (1u << 20)), have = 0, got;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) return lr__fail(err, LR_ENOMEM, "%s: out of memory for %zu bytes", h->path, cap);
    lr_status st;
    for (;;) {
        if ((st = src_read(s, buf + have, cap - have, &got, err))) break;
        have += got;
        if (have < cap) {
            st = lr__fail(err, LR_EFORMAT, "%s: data ends after %zu bytes%s, expected %zu (%s %s)",
                          h->path, have, h->gz, total, h->shape, h->what);
            break;
        }
        if (cap == total) break;
        size_t ncap = cap > total / 2 ? total : 2 * cap;
        uint8_t *nb = realloc(buf, ncap);
        if (!nb) {
            st = lr__fail(err, LR_ENOMEM, "%s: out of memory for %zu bytes", h->path, ncap);
            break;
        }
        buf = nb;
        cap = ncap;
    }
    unsigned char extra;
    if (!st && !(st = src_read(s, &extra, 1, &got, err)) && got)
        st = lr__fail(err, LR_EFORMAT, "%s: data%s continues beyond the declared %zu bytes (%s %s)",
                      h->path, h->gz, total, h->shape, h->what);
    if (st) free(buf);
    else *data = buf;
    return st;
}

/* The one parser: reads an IDX unsigned-byte file with `ndims` dimensions from an opened
 * source (which it closes) into dims[] and *data (malloc'd, *nbytes = product of dims).
 * `what` is "images" or "labels" for messages. */
static lr_status read_idx(idx_src *s, lr_status open_st, unsigned ndims, const char *what, size_t want_rows,
                          size_t want_cols, uint32_t *dims, uint8_t **data, size_t *nbytes, lr_err *err)
{
    *data = NULL;
    *nbytes = 0;
    lr_status st = open_st;
    if (!st) {
        idx_hdr h = { s->path, what, s->gz ? " (after gzip decompression)" : "", ndims, 4 + 4 * (size_t)ndims, 0, "" };
        if (!(st = read_header(s, &h, want_rows, want_cols, dims, err)) && !(st = check_raw_size(s, &h, err)) &&
            !(st = read_body(s, &h, data, err)))
            *nbytes = h.total;
    }
    src_close(s);
    return st;
}

static lr_status read_images(lr_mnist *out, idx_src *s, lr_status open_st, size_t want_rows, size_t want_cols,
                             lr_err *err)
{
    uint32_t d[3] = { 0, 0, 0 };
    size_t nbytes;
    lr_status st = read_idx(s, open_st, 3, "images", want_rows, want_cols, d, &out->pixels, &nbytes, err);
    if (st) return st;
    out->n = d[0];
    out->rows = d[1];
    out->cols = d[2];
    return LR_OK;
}

static lr_status read_labels(lr_mnist *out, idx_src *s, lr_status open_st, unsigned max_label, lr_err *err)
{
    uint32_t d[1] = { 0 };
    uint8_t *data;
    size_t nbytes;
    lr_status st = read_idx(s, open_st, 1, "labels", 0, 0, d, &data, &nbytes, err);
    if (st) return st;
    for (size_t i = 0; i < nbytes; i++)
        if (data[i] > max_label) {
            st = lr__fail(err, LR_EFORMAT, "%s: label %u at index %zu, expected 0..%u", s->path,
                          data[i], i, max_label);
            free(data);
            return st;
        }
    out->labels = data;
    out->n = nbytes;
    return LR_OK;
}

lr_status lr_idx_read_images(lr_mnist *out, const char *path, size_t want_rows, size_t want_cols, lr_err *err)
{
    if (!out) return lr__fail(err, LR_EINVAL, "lr_idx_read_images: out is NULL");
    memset(out, 0, sizeof *out);
    idx_src s;
    lr_status st = src_open(&s, path, err);
    return read_images(out, &s, st, want_rows, want_cols, err);
}

lr_status lr_idx_read_labels(lr_mnist *out, const char *path, unsigned max_label, lr_err *err)
{
    if (!out) return lr__fail(err, LR_EINVAL, "lr_idx_read_labels: out is NULL");
    memset(out, 0, sizeof *out);
    idx_src s;
    lr_status st = src_open(&s, path, err);
    return read_labels(out, &s, st, max_label, err);
}

lr_status lr_idx_images_from_memory(lr_mnist *out, const void *buf, size_t n, const char *name,
                                    size_t want_rows, size_t want_cols, lr_err *err)
{
    if (!out) return lr__fail(err, LR_EINVAL, "lr_idx_images_from_memory: out is NULL");
    memset(out, 0, sizeof *out);
    idx_src s;
    lr_status st = src_open_mem(&s, buf, n, name, err);
    return read_images(out, &s, st, want_rows, want_cols, err);
}

lr_status lr_idx_labels_from_memory(lr_mnist *out, const void *buf, size_t n, const char *name,
                                    unsigned max_label, lr_err *err)
{
    if (!out) return lr__fail(err, LR_EINVAL, "lr_idx_labels_from_memory: out is NULL");
    memset(out, 0, sizeof *out);
    idx_src s;
    lr_status st = src_open_mem(&s, buf, n, name, err);
    return read_labels(out, &s, st, max_label, err);
}

lr_status lr_mnist_load(lr_mnist *out, const char *images_path, const char *labels_path,
                        lr_err *err)
{
    if (!out) return lr__fail(err, LR_EINVAL, "lr_mnist_load: out is NULL");
    memset(out, 0, sizeof *out);
    lr_mnist im, lb;
    lr_status st = lr_idx_read_images(&im, images_path, 28, 28, err);
    if (st) return st;
    if (im.n == 0) st = lr__fail(err, LR_EFORMAT, "%s: contains no images", images_path);
    if (!st && !(st = lr_idx_read_labels(&lb, labels_path, 9, err)) && lb.n != im.n) {
        st = lr__fail(err, LR_EFORMAT, "%s has %zu images but %s has %zu labels, expected the "
                      "same count", images_path, im.n, labels_path, lb.n);
        lr_mnist_free(&lb);
    }
    if (st) {
        lr_mnist_free(&im);
        return st;
    }
    *out = im;
    out->labels = lb.labels;
    return LR_OK;
}

/* dir/name[suffix], malloc'd. */
static char *join(const char *dir, const char *name, const char *suffix)
{
    size_t n = strlen(dir) + strlen(name) + strlen(suffix) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s%s", dir, name, suffix);
    return p;
}

/* Picks dir/base if it exists, else dir/base.gz; NULL with an error when neither does. */
static lr_status find_file(char **out, const char *dir, const char *base, lr_err *err)
{
    *out = NULL;
    char *raw = join(dir, base, ""), *gz = join(dir, base, ".gz");
    if (!raw || !gz) {
        free(raw);
        free(gz);
        return lr__fail(err, LR_ENOMEM, "out of memory");
    }
    struct stat st;
    if (stat(raw, &st) == 0) {
        *out = raw;
        free(gz);
        return LR_OK;
    }
    if (stat(gz, &st) == 0) {
        *out = gz;
        free(raw);
        return LR_OK;
    }
    lr_status s = lr__fail(err, LR_EIO, "MNIST file missing: neither %s nor %s exists", raw, gz);
    free(raw);
    free(gz);
    return s;
}

lr_status lr_mnist_load_dir(lr_mnist *out, const char *dir, const char *split, lr_err *err)
{
    if (!out) return lr__fail(err, LR_EINVAL, "lr_mnist_load_dir: out is NULL");
    memset(out, 0, sizeof *out);
    if (!dir || !*dir) return lr__fail(err, LR_EINVAL, "MNIST: empty data directory");
    if (!split || (strcmp(split, "train") && strcmp(split, "t10k")))
        return lr__fail(err, LR_EINVAL, "MNIST split \"%s\", expected \"train\" or \"t10k\"",
                        split ? split : "(null)");
    struct stat st;
    if (stat(dir, &st) != 0)
        return lr__fail(err, LR_EIO, "MNIST data directory %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return lr__fail(err, LR_EIO, "MNIST data directory %s: not a directory", dir);
    char ibase[32], lbase[32];
    snprintf(ibase, sizeof ibase, "%s-images-idx3-ubyte", split);
    snprintf(lbase, sizeof lbase, "%s-labels-idx1-ubyte", split);
    char *ip = NULL, *lp = NULL;
    lr_status s = find_file(&ip, dir, ibase, err);
    if (!s) s = find_file(&lp, dir, lbase, err);
    if (!s) s = lr_mnist_load(out, ip, lp, err);
    free(ip);
    free(lp);
    return s;
}

void lr_mnist_free(lr_mnist *m)
{
    if (!m) return;
    free(m->pixels);
    free(m->labels);
    memset(m, 0, sizeof *m);
}

/* torchvision in float32: ToTensor divides by 255 (a true division, not a multiplication by
 * 1/255), Normalize subtracts the mean and divides by the std. Checked bit for bit against
 * torch for all 256 byte values; tests/test_idx.c pins some of them. */
float lr_mnist_pixel(uint8_t p)
{
    float x = (float)p / 255.0f;
    x = x - LR_MNIST_MEAN;
    return x / LR_MNIST_STD;
}

lr_dataset lr_mnist_dataset(const lr_mnist *m)
{
    lr_dataset d;
    memset(&d, 0, sizeof d);
    d.n = m->n;
    d.dim = m->rows * m->cols;
    d.classes = 10;
    d.type = LR_DATA_U8;
    d.features = m->pixels;
    d.labels = m->labels;
    d.norm = (lr_data_norm){ true, 255.0f, LR_MNIST_MEAN, LR_MNIST_STD };
    return d;
}
