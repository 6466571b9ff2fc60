/* dataset.c — checks, batches and label subsets of lr_dataset views (see dataset.h). */
#include <math.h>
#include <string.h>
#include "lowrank/base/dataset.h"
#include "lowrank/base/mat.h"
#include "base/internal.h"

static size_t row_of(const lr_dataset *d, size_t i) { return d->rows ? d->rows[i] : i; }

static lr_status check_norm(const lr_data_norm *nm, lr_err *err)
{
    if (!nm->on) return LR_OK;
    if (!isfinite(nm->div) || nm->div == 0 || !isfinite(nm->std) || nm->std == 0 || !isfinite(nm->mean))
        return lr__fail(err, LR_EINVAL, "dataset: normalisation div %g, mean %g, std %g: need finite values, "
                        "div and std non-zero", (double)nm->div, (double)nm->mean, (double)nm->std);
    return LR_OK;
}

static lr_status dataset_from(lr_dataset *d, lr_data_type type, const void *x, const uint8_t *y, size_t n,
                              size_t dim, size_t classes, lr_err *err)
{
    if (!d) return lr__fail(err, LR_EINVAL, "dataset: d is NULL");
    *d = (lr_dataset){ .n = n, .dim = dim, .classes = classes, .type = type, .features = x, .labels = y };
    lr_status s = lr_dataset_check(d, err);
    if (s) *d = (lr_dataset){ .n = 0 };
    return s;
}

lr_status lr_dataset_from_f32(lr_dataset *d, const float *x, const uint8_t *y, size_t n, size_t dim, size_t classes,
                              lr_err *err)
{
    return dataset_from(d, LR_DATA_F32, x, y, n, dim, classes, err);
}

lr_status lr_dataset_from_u8(lr_dataset *d, const uint8_t *x, const uint8_t *y, size_t n, size_t dim,
                             size_t classes, lr_err *err)
{
    return dataset_from(d, LR_DATA_U8, x, y, n, dim, classes, err);
}

lr_status lr_dataset_check(const lr_dataset *d, lr_err *err)
{
    if (!d) return lr__fail(err, LR_EINVAL, "dataset: NULL");
    if (d->dim == 0) return lr__fail(err, LR_EINVAL, "dataset: dim is 0 (need >= 1 feature per example)");
    if (d->classes == 0 || d->classes > LR_DATASET_MAX_CLASSES)
        return lr__fail(err, LR_EINVAL, "dataset: %zu classes, expected 1..%d", d->classes, LR_DATASET_MAX_CLASSES);
    if (d->type != LR_DATA_U8 && d->type != LR_DATA_F32)
        return lr__fail(err, LR_EINVAL,
                        "dataset: feature type %d is not LR_DATA_U8 or LR_DATA_F32 (a zeroed dataset has none: "
                        "make it with lr_dataset_from_f32 or lr_dataset_from_u8)", (int)d->type);
    lr_status s = check_norm(&d->norm, err);
    if (s) return s;
    size_t stored = d->stored ? d->stored : d->n, t;
    if (lr_size_mul(&t, stored, d->dim, NULL))
        return lr__fail(err, LR_ERANGE, "dataset: %zu x %zu features overflow", stored, d->dim);
    if (d->n && (!d->features || !d->labels))
        return lr__fail(err, LR_EINVAL, "dataset: %zu examples but no features or labels", d->n);
    for (size_t i = 0; i < d->n; i++) {
        size_t r = row_of(d, i);
        if (r >= stored)
            return lr__fail(err, LR_ERANGE, "dataset: example %zu is row %zu, beyond the %zu stored rows", i, r,
                            stored);
        if (d->labels[r] >= d->classes)
            return lr__fail(err, LR_ERANGE, "dataset: example %zu: label %u >= %zu classes", i,
                            (unsigned)d->labels[r], d->classes);
    }
    return LR_OK;
}

/* One example's features into x: (dim), through the table t for bytes. */
static void put_row(float *x, const lr_dataset *d, size_t r, const float *t)
{
    if (d->type == LR_DATA_U8) {
        const uint8_t *src = (const uint8_t *)d->features + r * d->dim;
        for (size_t j = 0; j < d->dim; j++) x[j] = t[src[j]];
        return;
    }
    const float *src = (const float *)d->features + r * d->dim;
    if (!d->norm.on) {
        memcpy(x, src, d->dim * sizeof *x);
        return;
    }
    const float div = d->norm.div, mean = d->norm.mean, std = d->norm.std;
    for (size_t j = 0; j < d->dim; j++) x[j] = (src[j] / div - mean) / std;
}

/* The 256 byte values as put_row gives them (normalised or not). */
static void byte_table(float t[256], const lr_data_norm *nm)
{
    for (int v = 0; v < 256; v++) {
        float x = (float)v;
        if (nm->on) {
            x = x / nm->div;
            x = x - nm->mean;
            x = x / nm->std;
        }
        t[v] = x;
    }
}

void lr_dataset_batch(const lr_dataset *d, float *x, uint8_t *y, const size_t *idx, size_t batch)
{
    float t[256];
    if (d->type == LR_DATA_U8) byte_table(t, &d->norm);
    for (size_t b = 0; b < batch; b++) {
        size_t r = row_of(d, idx[b]);
        put_row(x + b * d->dim, d, r, t);
        if (y) y[b] = d->labels[r];
    }
}

void lr_dataset_range(const lr_dataset *d, float *x, uint8_t *y, size_t first, size_t count)
{
    float t[256];
    if (d->type == LR_DATA_U8) byte_table(t, &d->norm);
    for (size_t b = 0; b < count; b++) {
        size_t r = row_of(d, first + b);
        put_row(x + b * d->dim, d, r, t);
        if (y) y[b] = d->labels[r];
    }
}

lr_status lr_dataset_select_label(const lr_dataset *d, lr_dataset *out, size_t *rows, unsigned label,
                                  lr_err *err)
{
    if (!out || !d || (d->n && !rows))
        return lr__fail(err, LR_EINVAL, "lr_dataset_select_label: out, rows or the dataset is NULL");
    lr_status s = lr_dataset_check(d, err);
    if (s) return s;
    if (label >= d->classes)
        return lr__fail(err, LR_EINVAL, "lr_dataset_select_label: label %u >= %zu classes", label, d->classes);
    size_t k = 0;
    for (size_t i = 0; i < d->n; i++) {
        size_t r = row_of(d, i);
        if (d->labels[r] == label) rows[k++] = r;
    }
    *out = *d;
    out->stored = d->stored ? d->stored : d->n;
    out->rows = rows;
    out->n = k;
    return LR_OK;
}
