/* npy.c — reading and writing 2-D float .npy files (see npy.h).
 *
 * The header is a Python dict literal; numpy reads it with ast.literal_eval, we read
 * it with a small recursive-descent parser that accepts what literal_eval would for
 * the three keys (any order, any whitespace, ' or " quotes, trailing commas) and
 * names what it found when it gives up. Every size is checked against the file size
 * before anything is allocated, so a hostile header cannot make us allocate more
 * than the file could fill. Data is read straight into the matrix (float32) or in
 * chunks (float64, rounded once to float32).
 */
#include "lowrank/io/npy.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lowrank/io/atomicfile.h"
#include "base/internal.h"
#include "io/readfile.h"

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64          /* numpy's ARRAY_ALIGN: data starts on a 64-byte boundary */
#define NPY_GROWTH_DIGITS 21  /* numpy's GROWTH_AXIS_MAX_DIGITS: room to grow axis 0 in place */
#define NPY_MAX_DIMS 64       /* more dims than numpy allows (32); only the count matters */

/* ---- byte order ---------------------------------------------------------------- */

static int host_is_little(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static void swap_bytes(void *p, size_t count, size_t width)
{
    unsigned char *c = p;
    for (size_t i = 0; i < count; i++, c += width)
        for (size_t a = 0, b = width - 1; a < b; a++, b--) {
            unsigned char t = c[a];
            c[a] = c[b];
            c[b] = t;
        }
}

/* ---- a byte source: a regular file or a memory buffer ----------------------------- */

typedef struct {
    FILE *f;                  /* file source, or NULL for memory */
    const unsigned char *buf; /* memory source */
    size_t size;              /* total bytes in the source */
    size_t pos;
    const char *name;         /* for messages */
} source;

/* Reads exactly n bytes (the caller has checked n against size - pos). */
static lr_status src_read(source *s, void *dst, size_t n, lr_err *err)
{
    if (n == 0) return LR_OK;
    if (s->f) {
        size_t got = fread(dst, 1, n, s->f);
        if (got != n) {
            if (ferror(s->f))
                return lr__fail(err, LR_EIO, "%s: read error: %s", s->name, strerror(errno));
            /* the file shrank after we measured it */
            return lr__fail(err, LR_EFORMAT, "%s: file ended early (%zu of %zu bytes read at offset %zu)",
                            s->name, got, n, s->pos);
        }
    } else {
        memcpy(dst, s->buf + s->pos, n);
    }
    s->pos += n;
    return LR_OK;
}

/* ---- the header dict ----------------------------------------------------------- */

typedef struct {
    char descr[64];
    int has_descr, has_fortran, has_shape;
    int fortran;
    size_t ndim;
    size_t dims[NPY_MAX_DIMS];
} header;

typedef struct {
    const char *p, *end;
    const char *name;
    lr_err *err;
} parser;

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

/* Up to 24 printable characters of what is at p, for "found ..." messages. */
static const char *show_here(const parser *ps, char *buf, size_t cap)
{
    size_t n = 0;
    if (ps->p >= ps->end) return "end of header";
    buf[n++] = '\'';
    for (const char *q = ps->p; q < ps->end && n + 5 < cap && q - ps->p < 24; q++)
        buf[n++] = (*q >= 0x20 && *q < 0x7f) ? *q : '?';
    buf[n++] = '\'';
    buf[n] = '\0';
    return buf;
}

static lr_status syntax(parser *ps, const char *expected)
{
    char here[40];
    return lr__fail(ps->err, LR_EFORMAT, "%s: malformed header: expected %s at %s", ps->name,
                    expected, show_here(ps, here, sizeof here));
}

/* A quoted string ('...' or "..."); escapes are not needed by any valid key or descr. */
static lr_status parse_string(parser *ps, char *out, size_t cap)
{
    if (ps->p >= ps->end || (*ps->p != '\'' && *ps->p != '"')) return syntax(ps, "a quoted string");
    char q = *ps->p++;
    size_t n = 0;
    while (ps->p < ps->end && *ps->p != q) {
        if (*ps->p == '\\')
            return lr__fail(ps->err, LR_EFORMAT, "%s: malformed header: escape sequence in a string", ps->name);
        /* a NUL would cut the string short for strcmp ('<f4\0' read as '<f4'); numpy
         * refuses it, and so does this reader; so it does a string too long to be a key */
        if (*ps->p == '\0')
            return lr__fail(ps->err, LR_EFORMAT, "%s: malformed header: NUL byte inside a string", ps->name);
        if (n + 1 >= cap)
            return lr__fail(ps->err, LR_EFORMAT, "%s: malformed header: string longer than %zu bytes", ps->name,
                            cap - 1);
        out[n++] = *ps->p++;
    }
    if (ps->p >= ps->end) return lr__fail(ps->err, LR_EFORMAT, "%s: malformed header: unterminated string", ps->name);
    ps->p++;
    out[n] = '\0';
    return LR_OK;
}

static int ident_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static lr_status parse_bool(parser *ps, int *out)
{
    const char *s = ps->p;
    size_t n = 0;
    while (s + n < ps->end && ident_char(s[n])) n++;
    if (n == 4 && memcmp(s, "True", 4) == 0) *out = 1;
    else if (n == 5 && memcmp(s, "False", 5) == 0) *out = 0;
    else return syntax(ps, "True or False for 'fortran_order'");
    ps->p += n;
    return LR_OK;
}

/* (d0, d1, ...) with an optional trailing comma; "(3)" is an int in Python, not a tuple. */
static lr_status parse_shape(parser *ps, header *h)
{
    if (ps->p >= ps->end || *ps->p != '(') return syntax(ps, "a tuple '(...)' for 'shape'");
    ps->p++;
    h->ndim = 0;
    int trailing_comma = 0;
    for (;;) {
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ')') { ps->p++; break; }
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') {
            if (ps->p < ps->end && *ps->p == '-')
                return lr__fail(ps->err, LR_EFORMAT, "%s: negative dimension in 'shape'", ps->name);
            return syntax(ps, "a non-negative integer in 'shape'");
        }
        const char *start = ps->p;
        /* Python (numpy's ast.literal_eval) refuses leading zeros: "010" is not 10 */
        if (*ps->p == '0' && ps->p + 1 < ps->end && ps->p[1] >= '0' && ps->p[1] <= '9')
            return lr__fail(ps->err, LR_EFORMAT, "%s: malformed header: shape dimension with a leading zero",
                            ps->name);
        size_t v = 0;
        int over = 0;
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
            size_t d = (size_t)(*ps->p - '0');
            if (v > (SIZE_MAX - d) / 10) over = 1;
            else v = v * 10 + d;
            ps->p++;
        }
        if (over)
            return lr__fail(ps->err, LR_ERANGE, "%s: shape dimension %.*s overflows size_t", ps->name,
                            (int)(ps->p - start), start);
        if (ps->p < ps->end && (*ps->p == 'L' || *ps->p == 'l')) ps->p++; /* Python 2 long */
        if (h->ndim == NPY_MAX_DIMS)
            return lr__fail(ps->err, LR_EFORMAT, "%s: 'shape' has more than %d dimensions", ps->name,
                            NPY_MAX_DIMS);
        h->dims[h->ndim++] = v;
        skip_ws(ps);
        trailing_comma = 0;
        if (ps->p < ps->end && *ps->p == ',') { ps->p++; trailing_comma = 1; continue; }
        if (ps->p < ps->end && *ps->p == ')') { ps->p++; break; }
        return syntax(ps, "',' or ')' in 'shape'");
    }
    if (h->ndim == 1 && !trailing_comma)
        return lr__fail(ps->err, LR_EFORMAT, "%s: malformed header: 'shape' (%zu) is not a tuple", ps->name,
                        h->dims[0]);
    return LR_OK;
}

static lr_status parse_header(const char *text, size_t len, const char *name, header *h, lr_err *err)
{
    parser ps = { text, text + len, name, err };
    lr_status st;
    memset(h, 0, sizeof *h);
    skip_ws(&ps);
    if (ps.p >= ps.end || *ps.p != '{') return syntax(&ps, "a dict '{...}'");
    ps.p++;
    for (;;) {
        skip_ws(&ps);
        if (ps.p < ps.end && *ps.p == '}') { ps.p++; break; }
        char key[64];
        if ((st = parse_string(&ps, key, sizeof key))) return st;
        skip_ws(&ps);
        if (ps.p >= ps.end || *ps.p != ':') return syntax(&ps, "':' after a key");
        ps.p++;
        skip_ws(&ps);
        int *seen;
        if (strcmp(key, "descr") == 0) {
            seen = &h->has_descr;
            if (ps.p < ps.end && *ps.p == '[')
                return lr__fail(err, LR_EFORMAT, "%s: dtype is a structured (record) dtype; expected '<f4' or '<f8'", name);
            if ((st = parse_string(&ps, h->descr, sizeof h->descr))) return st;
        } else if (strcmp(key, "fortran_order") == 0) {
            seen = &h->has_fortran;
            if ((st = parse_bool(&ps, &h->fortran))) return st;
        } else if (strcmp(key, "shape") == 0) {
            seen = &h->has_shape;
            if ((st = parse_shape(&ps, h))) return st;
        } else {
            return lr__fail(err, LR_EFORMAT, "%s: unexpected key '%s' in header; expected only 'descr', 'fortran_order', 'shape'",
                            name, key);
        }
        if (*seen) return lr__fail(err, LR_EFORMAT, "%s: key '%s' appears twice in header", name, key);
        *seen = 1;
        skip_ws(&ps);
        if (ps.p < ps.end && *ps.p == ',') { ps.p++; continue; }
        if (ps.p < ps.end && *ps.p == '}') { ps.p++; break; }
        return syntax(&ps, "',' or '}' in the header dict");
    }
    skip_ws(&ps);
    if (ps.p < ps.end) {
        /* numpy pads with spaces and one '\n'; NUL padding is from very old writers */
        while (ps.p < ps.end && *ps.p == '\0') ps.p++;
        if (ps.p < ps.end) return syntax(&ps, "only padding after the header dict");
    }
    if (!h->has_descr) return lr__fail(err, LR_EFORMAT, "%s: header has no 'descr' key", name);
    if (!h->has_fortran) return lr__fail(err, LR_EFORMAT, "%s: header has no 'fortran_order' key", name);
    if (!h->has_shape) return lr__fail(err, LR_EFORMAT, "%s: header has no 'shape' key", name);
    return LR_OK;
}

/* "(3,)", "(2, 3, 4)" as Python prints them. */
static void format_shape(const header *h, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "(");
    for (size_t i = 0; i < h->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ", %zu" : "%zu", h->dims[i]);
    if (n < cap) snprintf(buf + n, cap - n, h->ndim == 1 ? ",)" : ")");
}

static const char *kind_name(char kind)
{
    switch (kind) {
    case 'f': return "float";
    case 'i': return "signed integer";
    case 'u': return "unsigned integer";
    case 'c': return "complex";
    case 'b': return "bool";
    case 'U': return "unicode string";
    case 'S': case 'a': return "byte string";
    case 'O': return "Python object";
    case 'M': return "datetime";
    case 'm': return "timedelta";
    case 'V': return "void";
    default: return NULL;
    }
}

/* Element size (4 or 8), or an LR_EFORMAT naming what the descr is. */
static lr_status check_descr(const char *descr, const char *name, size_t *itemsize, lr_err *err)
{
    if (strcmp(descr, "<f4") == 0) { *itemsize = 4; return LR_OK; }
    if (strcmp(descr, "<f8") == 0) { *itemsize = 8; return LR_OK; }
    const char *what = NULL;
    char buf[48];
    if (descr[0] == '>' && (strcmp(descr + 1, "f4") == 0 || strcmp(descr + 1, "f8") == 0)) {
        what = "big-endian";
    } else if ((descr[0] == '<' || descr[0] == '>' || descr[0] == '|' || descr[0] == '=') && descr[1]) {
        const char *k = kind_name(descr[1]);
        if (k && descr[2] && strlen(descr) < 8 && strchr("fiucb", descr[1])) {
            snprintf(buf, sizeof buf, "%.5s-byte %s", descr + 2, k);
            what = buf;
        } else if (k) {
            what = k;
        }
    }
    if (what)
        return lr__fail(err, LR_EFORMAT, "%s: dtype '%s' (%s) not supported; expected '<f4' or '<f8'", name,
                        descr, what);
    return lr__fail(err, LR_EFORMAT, "%s: dtype '%s' not supported; expected '<f4' or '<f8'", name, descr);
}

/* ---- reading ------------------------------------------------------------------- */

/* What the preamble and header say, checked against the file: a 2-D '<f4'/'<f8' C-order
 * array whose data fills the rest of the source exactly. Leaves s->pos at the data. */
typedef struct {
    size_t rows, cols, itemsize;
    size_t data_off;  /* offset of element (0, 0) in the source */
    char descr[64];
    char shape[128];  /* as Python prints it, for messages */
} npy_info;

static lr_status read_info(source *s, npy_info *info, lr_err *err)
{
    const char *name = s->name;
    unsigned char pre[12];
    lr_status st;

    /* magic first, even in a short file: "not a .npy file" is the more useful news */
    size_t first = s->size < NPY_MAGIC_LEN + 2 ? s->size : NPY_MAGIC_LEN + 2;
    if ((st = src_read(s, pre, first, err))) return st;
    size_t cmp = first < NPY_MAGIC_LEN ? first : NPY_MAGIC_LEN;
    if (memcmp(pre, NPY_MAGIC, cmp) != 0) {
        char shown[3 * NPY_MAGIC_LEN + 1] = "";
        for (size_t i = 0, k = 0; i < cmp; i++)
            k += (size_t)snprintf(shown + k, sizeof shown - k, i ? " %02x" : "%02x", pre[i]);
        return lr__fail(err, LR_EFORMAT,
                        "%s: bad magic: not a .npy file (starts with bytes %s; expected 93 4e 55 4d 50 59 = \\x93NUMPY)",
                        name, shown);
    }
    if (s->size < NPY_MAGIC_LEN + 4)
        return lr__fail(err, LR_EFORMAT, "%s: file is %zu bytes, too short for a .npy file (at least 10 needed)",
                        name, s->size);
    unsigned major = pre[6], minor = pre[7];
    if (major < 1 || major > 3 || minor != 0)
        return lr__fail(err, LR_EFORMAT, "%s: unsupported .npy version %u.%u; expected 1.0, 2.0 or 3.0", name,
                        major, minor);
    size_t lenbytes = major == 1 ? 2 : 4, prefix = NPY_MAGIC_LEN + 2 + lenbytes;
    if (s->size < prefix)
        return lr__fail(err, LR_EFORMAT, "%s: file is %zu bytes, too short for a version %u.0 preamble (%zu bytes)",
                        name, s->size, major, prefix);
    if ((st = src_read(s, pre + 8, lenbytes, err))) return st;
    size_t hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
    if (lenbytes == 4) hlen |= (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    if (hlen > s->size - prefix)
        return lr__fail(err, LR_EFORMAT, "%s: header length %zu goes beyond the end of the file (%zu bytes follow the preamble)",
                        name, hlen, s->size - prefix);

    char *text = malloc(hlen + 1);
    if (!text) return lr__fail(err, LR_ENOMEM, "%s: out of memory for a %zu-byte header", name, hlen);
    st = src_read(s, text, hlen, err);
    header h;
    if (!st) {
        text[hlen] = '\0';
        st = parse_header(text, hlen, name, &h, err);
    }
    free(text);
    if (st) return st;

    size_t itemsize = 0;
    if ((st = check_descr(h.descr, name, &itemsize, err))) return st;
    if (h.fortran)
        return lr__fail(err, LR_EFORMAT, "%s: fortran_order True not supported (column-major data); save np.ascontiguousarray(a) instead",
                        name);
    char *shp = info->shape;
    format_shape(&h, shp, sizeof info->shape);
    if (h.ndim != 2)
        return lr__fail(err, LR_EFORMAT, "%s: shape %s is %zu-D; expected 2-D", name, shp, h.ndim);
    size_t rows = h.dims[0], cols = h.dims[1], count, need;
    if (lr_size_mul(&count, rows, cols, NULL) || lr_size_mul(&need, count, itemsize, NULL))
        return lr__fail(err, LR_ERANGE, "%s: shape %s of %zu-byte elements overflows size_t", name, shp, itemsize);
    size_t have = s->size - s->pos;
    if (have < need)
        return lr__fail(err, LR_EFORMAT, "%s: truncated: shape %s of '%s' expected %zu bytes of data, found %zu",
                        name, shp, h.descr, need, have);
    if (have > need)
        return lr__fail(err, LR_EFORMAT, "%s: %zu extra bytes after the data: shape %s of '%s' expected %zu bytes of data, found %zu",
                        name, have - need, shp, h.descr, need, have);
    info->rows = rows;
    info->cols = cols;
    info->itemsize = itemsize;
    info->data_off = s->pos;
    memcpy(info->descr, h.descr, sizeof info->descr);
    return LR_OK;
}

/* m: (count, cols) <- rows first..first+count-1 of the data, the source positioned at row
 * `first`; float64 is rounded once to float32 (messages name the element by its row in
 * the file). */
static lr_status read_rows(source *s, const npy_info *info, lr_mat m, size_t first, lr_err *err)
{
    const char *name = s->name;
    const size_t cols = info->cols, count = m.rows * cols;
    lr_status st = LR_OK;
    if (info->itemsize == 4) {
        st = src_read(s, m.data, count * 4, err);
        if (!st && !host_is_little()) swap_bytes(m.data, count, 4);
        return st;
    }
    /* float64 in chunks, rounded to nearest float32 once; a finite value that
     * rounds to Inf would silently change the matrix, so it is refused */
    enum { CHUNK = 4096 };
    double *buf = malloc(CHUNK * sizeof(double));
    if (!buf) return lr__fail(err, LR_ENOMEM, "%s: out of memory", name);
    for (size_t done = 0; done < count;) {
        size_t k = count - done < CHUNK ? count - done : CHUNK;
        if ((st = src_read(s, buf, k * 8, err))) break;
        if (!host_is_little()) swap_bytes(buf, k, 8);
        for (size_t i = 0; i < k; i++) {
            float v = (float)buf[i];
            if (isinf(v) && isfinite(buf[i])) {
                size_t at = done + i;
                st = lr__fail(err, LR_ERANGE, "%s: element (%zu, %zu) = %.17g is beyond the float32 range (max %g)",
                              name, first + at / cols, at % cols, buf[i], (double)FLT_MAX);
                break;
            }
            m.data[done + i] = v;
        }
        if (st) break;
        done += k;
    }
    free(buf);
    return st;
}

static lr_status load_source(source *s, lr_mat *out, lr_err *err)
{
    npy_info info;
    lr_status st;
    if ((st = read_info(s, &info, err))) return st;
    lr_mat m;
    if ((st = lr_mat_init(&m, info.rows, info.cols, err))) return st;
    if ((st = read_rows(s, &info, m, 0, err))) { lr_mat_free(&m); return st; }
    *out = m;
    return LR_OK;
}

static void empty_out(lr_mat *out)
{
    out->data = NULL;
    out->rows = out->cols = out->ld = 0;
}

lr_status lr_npy_load_mem(lr_mat *out, const void *buf, size_t n, const char *name, lr_err *err)
{
    if (!name) name = "npy";
    if (!out) return lr__fail(err, LR_EINVAL, "%s: lr_npy_load_mem: out is NULL", name);
    empty_out(out);
    if (!buf && n) return lr__fail(err, LR_EINVAL, "%s: lr_npy_load_mem: buf is NULL", name);
    source s = { NULL, buf, n, 0, name };
    return load_source(&s, out, err);
}

lr_status lr_npy_load(lr_mat *out, const char *path, lr_err *err)
{
    if (!out) return lr__fail(err, LR_EINVAL, "lr_npy_load: out is NULL");
    empty_out(out);
    if (!path) return lr__fail(err, LR_EINVAL, "lr_npy_load: path is NULL");
    FILE *f;
    struct stat sb;
    lr_status st = lr__open_regular(&f, &sb, path, "a .npy file", err);
    if (st) return st;
    source s = { f, NULL, (size_t)sb.st_size, 0, path };
    st = load_source(&s, out, err);
    fclose(f);
    return st;
}

/* Opens path as lr_npy_load does and reads its preamble and header (read_info). */
static lr_status open_info(FILE **f, source *s, npy_info *info, const char *path, lr_err *err)
{
    struct stat sb;
    lr_status st = lr__open_regular(f, &sb, path, "a .npy file", err);
    if (st) return st;
    *s = (source){ *f, NULL, (size_t)sb.st_size, 0, path };
    if ((st = read_info(s, info, err))) {
        fclose(*f);
        *f = NULL;
    }
    return st;
}

lr_status lr_npy_shape(size_t *rows, size_t *cols, const char *path, lr_err *err)
{
    if (!rows || !cols) return lr__fail(err, LR_EINVAL, "lr_npy_shape: rows or cols is NULL");
    *rows = *cols = 0;
    if (!path) return lr__fail(err, LR_EINVAL, "lr_npy_shape: path is NULL");
    FILE *f;
    source s;
    npy_info info;
    lr_status st = open_info(&f, &s, &info, path, err);
    if (st) return st;
    fclose(f);
    *rows = info.rows;
    *cols = info.cols;
    return LR_OK;
}

lr_status lr_npy_load_rows(lr_mat *out, const char *path, size_t first, size_t count, lr_err *err)
{
    if (!out) return lr__fail(err, LR_EINVAL, "lr_npy_load_rows: out is NULL");
    empty_out(out);
    if (!path) return lr__fail(err, LR_EINVAL, "lr_npy_load_rows: path is NULL");
    FILE *f;
    source s;
    npy_info info;
    lr_status st = open_info(&f, &s, &info, path, err);
    if (st) return st;
    if (first > info.rows || count > info.rows - first) {
        fclose(f);
        return lr__fail(err, LR_EDIM, "%s: %zu rows from row %zu asked for, but the shape is %s (%zu rows)", path,
                        count, first, info.shape, info.rows);
    }
    /* the offset fits: the whole data was checked against the file size */
    size_t off = info.data_off + first * info.cols * info.itemsize;
    if (count && info.cols && fseeko(f, (off_t)off, SEEK_SET) != 0) {
        st = lr__fail(err, LR_EIO, "%s: cannot seek to row %zu (offset %zu): %s", path, first, off, strerror(errno));
        fclose(f);
        return st;
    }
    s.pos = off;
    lr_mat m;
    if (!(st = lr_mat_init(&m, count, info.cols, err))) {
        if ((st = read_rows(&s, &info, m, first, err))) lr_mat_free(&m);
        else *out = m;
    }
    fclose(f);
    return st;
}

/* ---- writing ------------------------------------------------------------------- */

/* hdr <- the header np.save writes for m: keys sorted, then room for axis 0 to grow to 21
 * digits, then spaces so that the data starts on a 64-byte boundary, then '\n'
 * (numpy/lib/format.py: _write_array_header, _wrap_header); returns its length, 0 when out
 * of memory (*hdr malloc'd). */
static size_t npy_header(unsigned char **hdr, lr_cmat m)
{
    char dict[160];
    int dl = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %zu), }",
                      m.rows, m.cols);
    char digits[32];
    int nd = snprintf(digits, sizeof digits, "%zu", m.rows);
    size_t body = (size_t)dl + (size_t)(nd < NPY_GROWTH_DIGITS ? NPY_GROWTH_DIGITS - nd : 0);
    size_t prefix = NPY_MAGIC_LEN + 2 + 2;
    unsigned major = 1;
    size_t hlen = body + 1 + (NPY_ALIGN - (prefix + body + 1) % NPY_ALIGN);
    if (hlen > 65535) { /* never for two dimensions, but this is the rule */
        major = 2;
        prefix = NPY_MAGIC_LEN + 2 + 4;
        hlen = body + 1 + (NPY_ALIGN - (prefix + body + 1) % NPY_ALIGN);
    }
    unsigned char *h = malloc(prefix + hlen);
    if (!(*hdr = h)) return 0;
    memcpy(h, NPY_MAGIC, NPY_MAGIC_LEN);
    h[6] = (unsigned char)major;
    h[7] = 0;
    for (size_t i = 0; i < prefix - 8; i++) h[8 + i] = (unsigned char)(hlen >> (8 * i));
    memcpy(h + prefix, dict, (size_t)dl);
    memset(h + prefix + dl, ' ', hlen - (size_t)dl - 1);
    h[prefix + hlen - 1] = '\n';
    return prefix + hlen;
}

lr_status lr_npy_write(lr_cmat m, FILE *f, const char *name, lr_err *err)
{
    if (!name) name = "(npy)";
    if (!f) return lr__fail(err, LR_EINVAL, "%s: lr_npy_write: f is NULL", name);
    lr_status st = lr_mat_check(m, name, err);
    if (st) return st;
    unsigned char *hdr;
    size_t hl = npy_header(&hdr, m);
    float *swapped = !host_is_little() && m.cols ? malloc(m.cols * sizeof(float)) : NULL;
    if (!hl || (!host_is_little() && m.cols && !swapped)) {
        free(hdr);
        return lr__fail(err, LR_ENOMEM, "%s: out of memory", name);
    }
    int ok = fwrite(hdr, 1, hl, f) == hl;
    free(hdr);
    for (size_t i = 0; ok && i < m.rows && m.cols; i++) {
        const float *row = m.data + i * m.ld;
        if (swapped) {
            memcpy(swapped, row, m.cols * sizeof(float));
            swap_bytes(swapped, m.cols, 4);
            row = swapped;
        }
        ok = fwrite(row, sizeof(float), m.cols, f) == m.cols;
    }
    free(swapped);
    if (!ok) return lr__fail(err, LR_EIO, "cannot write %s: %s", name, strerror(errno));
    return LR_OK;
}

lr_status lr_npy_save(lr_cmat m, const char *path, lr_err *err)
{
    if (!path) return lr__fail(err, LR_EINVAL, "lr_npy_save: path is NULL");
    lr_status st = lr_mat_check(m, path, err);
    if (st) return st;
    lr_atomic_file af;
    if ((st = lr_atomic_open(&af, path, err))) return st;
    if ((st = lr_npy_write(m, af.f, path, err))) {
        lr_atomic_abort(&af);
        if (st == LR_EIO && err) { /* "cannot write X: ... (no file written)" */
            size_t n = strlen(err->msg);
            snprintf(err->msg + n, sizeof err->msg - n, " (no file written)");
        }
        return st;
    }
    return lr_atomic_commit(&af, err);
}
