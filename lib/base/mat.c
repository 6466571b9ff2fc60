/* mat.c — allocation, checks, copies and comparisons of row-major float views. */
#define _DEFAULT_SOURCE 1 /* madvise's MADV_HUGEPAGE (Linux) */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "lowrank/base/mat.h"
#include "base/internal.h"
#if defined(__linux__)
#include <sys/mman.h>
#endif

lr_status lr_size_mul(size_t *out, size_t a, size_t b, lr_err *err)
{
    if (a != 0 && b > SIZE_MAX / a) return lr__fail(err, LR_ERANGE, "%zu x %zu overflows size_t", a, b);
    *out = a * b;
    return LR_OK;
}

lr_status lr_mat_check(lr_cmat m, const char *name, lr_err *err)
{
    size_t n;
    if (!name) name = "matrix";
    if (m.ld < m.cols)
        return lr__fail(err, LR_EDIM, "%s: ld %zu is smaller than cols %zu", name, m.ld, m.cols);
    if (lr_size_mul(&n, m.rows, m.ld, NULL) != LR_OK || n > SIZE_MAX / sizeof(float))
        return lr__fail(err, LR_ERANGE, "%s: size %zu x %zu (ld %zu) overflows", name, m.rows,
                        m.cols, m.ld);
    if (m.rows && m.cols && !m.data)
        return lr__fail(err, LR_EINVAL, "%s: data is NULL for a %zu x %zu matrix", name, m.rows,
                        m.cols);
    return LR_OK;
}

lr_status lr_mat_check_finite(lr_cmat m, const char *name, lr_err *err)
{
    for (size_t i = 0; i < m.rows; i++) {
        const float *r = m.data + i * m.ld;
        for (size_t j = 0; j < m.cols; j++)
            if (!isfinite(r[j]))
                return lr__fail(err, LR_ENONFINITE, "%s: entry (%zu,%zu) is %s", name ? name : "matrix",
                                i, j, isnan(r[j]) ? "NaN" : (r[j] > 0 ? "+Inf" : "-Inf"));
    }
    return LR_OK;
}

float *lr__alloc_floats64(size_t n)
{
    void *p = NULL;
    size_t bytes;
    if (lr_size_mul(&bytes, n ? n : 1, sizeof(float), NULL) || bytes > SIZE_MAX - 63) return NULL;
    if (posix_memalign(&p, 64, (bytes + 63) / 64 * 64) != 0) return NULL;
    return p;
}

float *lr__alloc_floats_huge(size_t n)
{
    size_t bytes, align = (size_t)2 << 20;
    void *p = NULL;
    if (lr_size_mul(&bytes, n, sizeof(float), NULL) || bytes > SIZE_MAX - align) return NULL;
    if (bytes < align) return calloc(n ? n : 1, sizeof(float));
    size_t rounded = (bytes + align - 1) / align * align;
    if (posix_memalign(&p, align, rounded) != 0) return NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, rounded, MADV_HUGEPAGE); /* advice only: failure is harmless */
#endif
    memset(p, 0, bytes);
    return p;
}

lr_status lr_mat_init(lr_mat *m, size_t rows, size_t cols, lr_err *err)
{
    size_t n;
    if (!m) return lr__fail(err, LR_EINVAL, "lr_mat_init: m is NULL");
    *m = (lr_mat){ NULL, 0, 0, 0 };
    if (lr_size_mul(&n, rows, cols, NULL) != LR_OK || n > SIZE_MAX / sizeof(float))
        return lr__fail(err, LR_ERANGE, "lr_mat_init: %zu x %zu floats overflows", rows, cols);
    float *d = lr__alloc_floats64(n);
    if (!d) return lr__fail(err, LR_ENOMEM, "lr_mat_init: cannot allocate %zu x %zu floats", rows, cols);
    memset(d, 0, (n ? n : 1) * sizeof(float));
    *m = (lr_mat){ d, rows, cols, cols };
    return LR_OK;
}

void lr_mat_free(lr_mat *m)
{
    if (!m) return;
    free(m->data);
    *m = (lr_mat){ NULL, 0, 0, 0 };
}

lr_status lr_mat_block(lr_mat m, lr_mat *out, size_t r0, size_t c0, size_t rows, size_t cols,
                       lr_err *err)
{
    if (!out) return lr__fail(err, LR_EINVAL, "lr_mat_block: out is NULL");
    if (r0 > m.rows || rows > m.rows - r0 || c0 > m.cols || cols > m.cols - c0)
        return lr__fail(err, LR_EDIM, "block [%zu:+%zu, %zu:+%zu] outside a %zu x %zu matrix", r0,
                        rows, c0, cols, m.rows, m.cols);
    *out = (lr_mat){ (rows && cols) ? m.data + r0 * m.ld + c0 : m.data, rows, cols, m.ld };
    return LR_OK;
}

lr_status lr_mat_copy(lr_mat dst, lr_cmat src, lr_err *err)
{
    if (dst.rows != src.rows || dst.cols != src.cols)
        return lr__fail(err, LR_EDIM, "copy: destination is %zu x %zu, source %zu x %zu", dst.rows,
                        dst.cols, src.rows, src.cols);
    for (size_t i = 0; i < src.rows; i++)
        memmove(dst.data + i * dst.ld, src.data + i * src.ld, src.cols * sizeof(float));
    return LR_OK;
}

void lr_mat_fill(lr_mat m, float v)
{
    for (size_t i = 0; i < m.rows; i++)
        for (size_t j = 0; j < m.cols; j++) m.data[i * m.ld + j] = v;
}

lr_status lr_mat_transpose(lr_mat dst, lr_cmat src, lr_err *err)
{
    if (dst.rows != src.cols || dst.cols != src.rows)
        return lr__fail(err, LR_EDIM, "transpose: destination is %zu x %zu, expected %zu x %zu",
                        dst.rows, dst.cols, src.cols, src.rows);
    for (size_t i = 0; i < src.rows; i++)
        for (size_t j = 0; j < src.cols; j++) dst.data[j * dst.ld + i] = src.data[i * src.ld + j];
    return LR_OK;
}

bool lr_mat_allclose(lr_cmat a, lr_cmat b, float rtol, float atol)
{
    if (a.rows != b.rows || a.cols != b.cols) return false;
    for (size_t i = 0; i < a.rows; i++)
        for (size_t j = 0; j < a.cols; j++) {
            double x = a.data[i * a.ld + j], y = b.data[i * b.ld + j];
            if (!(fabs(x - y) <= atol + rtol * fabs(y))) return false;
        }
    return true;
}

bool lr_mat_equal(lr_cmat a, lr_cmat b)
{
    if (a.rows != b.rows || a.cols != b.cols) return false;
    for (size_t i = 0; i < a.rows; i++)
        if (a.cols && memcmp(a.data + i * a.ld, b.data + i * b.ld, a.cols * sizeof(float)) != 0)
            return false;
    return true;
}

double lr_mat_max_abs_diff(lr_cmat a, lr_cmat b)
{
    if (a.rows != b.rows || a.cols != b.cols) return INFINITY;
    double d = 0;
    for (size_t i = 0; i < a.rows; i++)
        for (size_t j = 0; j < a.cols; j++) {
            double e = fabs((double)a.data[i * a.ld + j] - (double)b.data[i * b.ld + j]);
            if (e > d || isnan(e)) d = e;
        }
    return d;
}

double lr_mat_norm_fro(lr_cmat a)
{
    /* Squares of floats summed in double need no scaling (LAPACK's slassq guards a sum in
     * the entries' own precision): FLT_MAX² is 1.2e77 and the smallest subnormal squared
     * 2e-90, both far inside double's range, so neither overflows nor underflows. Four
     * accumulators let the compiler vectorise; a division per entry cost 10 % of
     * `lowrank extract`. */
    double acc[4] = { 0, 0, 0, 0 };
    for (size_t i = 0; i < a.rows; i++) {
        const float *r = a.data + i * a.ld;
        size_t j = 0;
        for (; j + 4 <= a.cols; j += 4)
            for (int k = 0; k < 4; k++) acc[k] += (double)r[j + k] * r[j + k];
        for (; j < a.cols; j++) acc[0] += (double)r[j] * r[j];
    }
    return sqrt((acc[0] + acc[1]) + (acc[2] + acc[3]));
}
