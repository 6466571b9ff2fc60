/* idx.h — the MNIST data set: a strict reader for IDX files (raw or gzip) and batch normalisation.
 *
 * IDX (LeCun's format for MNIST): a 4-byte big-endian magic 0x00 0x00 TYPE NDIMS, then NDIMS
 * big-endian u32 sizes, then the data. MNIST uses TYPE 0x08 (unsigned byte): images are
 * 0x00000803 (n, rows, cols), labels 0x00000801 (n). A file starting with the gzip magic
 * 1f 8b is read through zlib, so both "train-images-idx3-ubyte" and the official ".gz"
 * downloads work. The reader is strict (see docs/formats.md): every malformed, truncated,
 * oversized or inconsistent file is refused with a message naming the file and what was
 * expected vs found.
 *
 * Pixels stay as bytes in memory (47 MB for the training set as uint8, 188 MB as float);
 * lr_mnist_dataset gives the view that training and evaluation take (dataset.h), which
 * normalises each batch when it is used, exactly as torchvision's ToTensor +
 * Normalize((0.1307,), (0.3081,)) does in float32: x = (p / 255.0f - 0.1307f) / 0.3081f.
 */
#ifndef LOWRANK_IDX_H
#define LOWRANK_IDX_H

#include "lowrank/base/export.h"
#include <stddef.h>
#include <stdint.h>
#include "lowrank/base/dataset.h"
#include "lowrank/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LR_MNIST_MEAN 0.1307f
#define LR_MNIST_STD 0.3081f

typedef struct {
    size_t n, rows, cols; /* n examples of rows x cols pixels (28 x 28 for MNIST) */
    uint8_t *pixels;      /* (n, rows*cols), row-major, 0..255 */
    uint8_t *labels;      /* (n), 0..9 */
} lr_mnist;

/* Reads an IDX image file (magic 0x00000803) into out's n, rows, cols and pixels (labels
 * NULL). want_rows / want_cols: required image size, 0 = any. On failure *out is empty;
 * either way lr_mnist_free releases it. */
LR_API lr_status lr_idx_read_images(lr_mnist *out, const char *path, size_t want_rows, size_t want_cols,
                                    lr_err *err);

/* Reads an IDX label file (magic 0x00000801) whose labels are all <= max_label (9 for MNIST)
 * into out's n and labels (pixels NULL, rows = cols = 0). */
LR_API lr_status lr_idx_read_labels(lr_mnist *out, const char *path, unsigned max_label, lr_err *err);

/* The same two readers on the n bytes of an IDX file in memory (raw, or gzip when they start
 * with 1f 8b: inflated with zlib), with the same checks and messages; `name` (may be NULL)
 * stands for the file in messages. buf is only read, and may be freed once they return. */
LR_API lr_status lr_idx_images_from_memory(lr_mnist *out, const void *buf, size_t n, const char *name,
                                           size_t want_rows, size_t want_cols, lr_err *err);
LR_API lr_status lr_idx_labels_from_memory(lr_mnist *out, const void *buf, size_t n, const char *name,
                                           unsigned max_label, lr_err *err);

/* Loads a 28x28 image file and its label file (labels 0..9, same count). On failure *out is
 * empty (lr_mnist_free on it is a no-op). */
LR_API lr_status lr_mnist_load(lr_mnist *out, const char *images_path, const char *labels_path,
                               lr_err *err);

/* Loads split "train" or "t10k" from dir: <split>-images-idx3-ubyte and
 * <split>-labels-idx1-ubyte, each raw or with ".gz" (the raw file is preferred when both
 * exist). */
LR_API lr_status lr_mnist_load_dir(lr_mnist *out, const char *dir, const char *split, lr_err *err);

/* Frees and empties m; a no-op on an empty or zeroed lr_mnist and on NULL. */
LR_API void lr_mnist_free(lr_mnist *m);

/* The training / evaluation view of m: dim = rows*cols byte features, 10 classes, normalised
 * as torchvision's ToTensor + Normalize((0.1307,), (0.3081,)) (div 255, LR_MNIST_MEAN,
 * LR_MNIST_STD), bit for bit. Points into m, which must outlive it. */
LR_API lr_dataset lr_mnist_dataset(const lr_mnist *m);

/* The normalised value of one pixel byte, (p / 255.0f - LR_MNIST_MEAN) / LR_MNIST_STD: what a
 * batch of lr_mnist_dataset holds. */
LR_API float lr_mnist_pixel(uint8_t p);

#ifdef __cplusplus
}
#endif
#endif
