/* eval.c — accuracy, the seed's per-digit wrong counts and the confusion matrix. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "lowrank/nn/eval.h"
#include "base/internal.h"
#include "base/cpu_internal.h"

size_t lr_argmax(const float *x, size_t n)
{
    /* torch.argmax: first index of the maximum; a NaN is never preferred here */
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best] || (isnan(x[best]) && !isnan(x[i]))) best = i;
    return best;
}

void lr_eval_reset(lr_eval_result *res)
{
    if (res) memset(res, 0, sizeof *res);
}

lr_status lr_eval_add(lr_eval_result *res, const float *logits, const uint8_t *labels, size_t batch,
                      size_t classes, lr_err *err)
{
    if (!res || (batch && (!logits || !labels)))
        return lr__fail(err, LR_EINVAL, "lr_eval_add: res, logits or labels is NULL");
    if (classes == 0 || classes > LR_EVAL_CLASSES)
        return lr__fail(err, LR_EDIM, "lr_eval_add: %zu classes, expected 1..%d", classes, LR_EVAL_CLASSES);
    for (size_t b = 0; b < batch; b++)
        if (labels[b] >= classes)
            return lr__fail(err, LR_ERANGE, "lr_eval_add: label %u of example %zu is >= %zu classes",
                            (unsigned)labels[b], b, classes);
    for (size_t b = 0; b < batch; b++) {
        size_t pred = lr_argmax(logits + b * classes, classes), t = labels[b];
        res->confusion[t][pred]++;
        if (pred == t) res->correct++;
        else res->wrong[t]++;
    }
    res->n += batch;
    res->accuracy = res->n ? (double)res->correct / (double)res->n : 0.0;
    return LR_OK;
}

lr_status lr_eval(const lr_mlp *net, lr_eval_result *res, const lr_dataset *data, size_t batch, lr_err *err)
{
    LR__FP_SCOPE();
    if (!net || !net->params || !data || !res)
        return lr__fail(err, LR_EINVAL, "eval: res, net or data is NULL");
    lr_eval_reset(res);
    lr_status s0 = lr_dataset_check(data, err);
    if (s0) return s0;
    size_t d = data->dim, classes = net->sizes[net->n_layers];
    if (d != net->sizes[0])
        return lr__fail(err, LR_EDIM, "eval: examples have %zu features, the net takes %zu inputs", d,
                        net->sizes[0]);
    if (classes > LR_EVAL_CLASSES)
        return lr__fail(err, LR_EDIM, "eval: the net has %zu outputs, at most %d supported", classes,
                        LR_EVAL_CLASSES);
    if (data->classes > classes)
        return lr__fail(err, LR_EDIM, "eval: the dataset has %zu classes, the net only %zu outputs",
                        data->classes, classes);
    if (data->n == 0) return LR_OK;
    if (batch == 0) batch = 1000;
    if (batch > data->n) batch = data->n;
    float *x = lr__alloc_floats64(batch * d), *logits = malloc(batch * classes * sizeof *logits);
    uint8_t *y = malloc(batch);
    lr_status s = LR_OK;
    lr_mlp_ws ws;
    lr_mlp_ws_init(&ws);
    if (!x || !logits || !y) s = lr__fail(err, LR_ENOMEM, "eval: cannot allocate a batch of %zu", batch);
    for (size_t b0 = 0; !s && b0 < data->n; b0 += batch) {
        size_t n = data->n - b0 < batch ? data->n - b0 : batch;
        lr_dataset_range(data, x, y, b0, n);
        if ((s = lr_mlp_forward(net, logits, x, n, &ws, err))) break;
        s = lr_eval_add(res, logits, y, n, classes, err);
    }
    lr_mlp_ws_free(&ws);
    free(x);
    free(logits);
    free(y);
    return s;
}
