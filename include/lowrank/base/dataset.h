/* dataset.h — examples for training and evaluation: rows of features with class labels.
 *
 * An lr_dataset is a view: it points at the caller's feature and label arrays and owns nothing.
 * Features are bytes (images) or floats, `dim` per example, row-major. A batch is turned into
 * float rows when it is used, with an optional normalisation x = (v / div − mean) / std,
 * computed in float32 in that order (div = 255, mean 0.1307, std 0.3081 is torchvision's
 * ToTensor + Normalize for MNIST, bit for bit). A subset (the examples of one label, say) is
 * another view with a list of row numbers, so any dataset can be filtered without copying.
 * lr_dataset_from_f32 / lr_dataset_from_u8 make the view of your own arrays, lr_mnist_dataset
 * (idx.h) that of a loaded MNIST split.
 */
#ifndef LOWRANK_DATASET_H
#define LOWRANK_DATASET_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lowrank/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LR_DATASET_MAX_CLASSES 256

typedef enum {
    LR_DATA_NONE = 0, /* not a type: a zeroed dataset is refused by lr_dataset_check */
    LR_DATA_U8 = 1,   /* features are uint8_t */
    LR_DATA_F32 = 2   /* features are float   */
} lr_data_type;

typedef struct {
    bool on;               /* false: features are used as they are */
    float div, mean, std;  /* x = (v / div - mean) / std, float32, in that order */
} lr_data_norm;

typedef struct lr_dataset {
    size_t n;               /* examples in the view */
    size_t dim;             /* features per example (>= 1) */
    size_t classes;         /* labels are < classes (1..256) */
    lr_data_type type;
    const void *features;   /* stored row r: (dim) at features + r*dim elements */
    const uint8_t *labels;  /* label of stored row r */
    const size_t *rows;     /* NULL: example i is stored row i; else stored row rows[i] */
    size_t stored;          /* stored rows (the bound for rows[i]); 0 = n */
    lr_data_norm norm;
} lr_dataset;

/* d <- a view of the caller's n examples: features x: (n, dim) row-major, labels y: (n), each
 * < classes (1..256); no normalisation (set d->norm after, e.g. { true, 255, 0, 1 } for bytes
 * scaled to [0, 1]). Nothing is copied: x and y must outlive d. Checked as lr_dataset_check;
 * on failure *d is an empty view (n = 0). n may be 0 (x, y may then be NULL). */
LR_API lr_status lr_dataset_from_f32(lr_dataset *d, const float *x, const uint8_t *y, size_t n, size_t dim,
                                     size_t classes, lr_err *err);
LR_API lr_status lr_dataset_from_u8(lr_dataset *d, const uint8_t *x, const uint8_t *y, size_t n, size_t dim,
                                    size_t classes, lr_err *err);

/* Checks every field and every label and row number of the view; the message names the
 * field or the example ("example 12: label 10 >= 10 classes"). */
LR_API lr_status lr_dataset_check(const lr_dataset *d, lr_err *err);

/* x: (batch, dim) <- normalised features of examples idx[0..batch) of the view; y (batch,
 * optional) <- their labels. Indices must be < d->n and d must pass lr_dataset_check (not
 * checked again: this is the training loop's hot path). */
LR_API void lr_dataset_batch(const lr_dataset *d, float *x, uint8_t *y, const size_t *idx, size_t batch);

/* As lr_dataset_batch for the `count` consecutive examples from `first` (evaluation). */
LR_API void lr_dataset_range(const lr_dataset *d, float *x, uint8_t *y, size_t first, size_t count);

/* out <- the examples of d whose label is `label`, in order, as a view over d's arrays. rows:
 * the caller's buffer of d->n entries, which out points at (it must outlive out). out->n may
 * be 0. */
LR_API lr_status lr_dataset_select_label(const lr_dataset *d, lr_dataset *out, size_t *rows,
                                         unsigned label, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
