/* eval.h — evaluation: accuracy, the per-digit wrong counts of the PyTorch reference, the confusion matrix.
 *
 * The prediction is the argmax of the logits with ties going to the first index (as
 * torch.argmax). For each example, confusion[true][pred]++, and when pred != true,
 * wrong[true]++ — exactly the PyTorch reference's table.
 */
#ifndef LOWRANK_EVAL_H
#define LOWRANK_EVAL_H

#include "lowrank/base/export.h"
#include <stddef.h>
#include <stdint.h>
#include "lowrank/base/dataset.h"
#include "lowrank/nn/mlp.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LR_EVAL_CLASSES 64 /* the most classes a result counts (the confusion matrix is fixed) */

typedef struct {
    size_t n;                                          /* examples evaluated */
    size_t correct;
    double accuracy;                                   /* correct / n (0 when n = 0) */
    size_t wrong[LR_EVAL_CLASSES];                     /* by true label */
    size_t confusion[LR_EVAL_CLASSES][LR_EVAL_CLASSES]; /* [true][predicted] */
} lr_eval_result;

/* Index of the largest of x[0..n), the first one on ties; NaN entries are never chosen
 * unless all are NaN (then 0). n >= 1. */
LR_API size_t lr_argmax(const float *x, size_t n);

/* Zeroes res. */
LR_API void lr_eval_reset(lr_eval_result *res);
/* Adds batch rows of logits: (batch, classes) with labels (batch) to res; classes <= 64,
 * labels < classes. Recomputes accuracy. */
LR_API lr_status lr_eval_add(lr_eval_result *res, const float *logits, const uint8_t *labels,
                             size_t batch, size_t classes, lr_err *err);

/* res <- net evaluated on every example of data, in batches of `batch` (0 = 1000) through
 * lr_mlp_forward (the dataset's dim = the net's inputs, its classes <= the net's outputs). */
LR_API lr_status lr_eval(const lr_mlp *net, lr_eval_result *res, const lr_dataset *data, size_t batch,
                         lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
