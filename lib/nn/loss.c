/* loss.c — numerically stable softmax cross-entropy (mean over the batch), as
 * torch.nn.CrossEntropyLoss: loss_b = log Σ_k exp(z_bk - max_b) + max_b - z_b,y.
 * Row sums are taken in double so that a batch of large logits keeps its precision. */
#include <math.h>
#include "lowrank/nn/loss.h"
#include "base/internal.h"
#include "base/cpu_internal.h"

lr_status lr_softmax_xent(float *loss, float *dlogits, const float *logits, const uint8_t *labels,
                          size_t batch, size_t classes, lr_err *err)
{
    LR__FP_SCOPE();
    if (!loss || !logits || !labels)
        return lr__fail(err, LR_EINVAL, "softmax_xent: loss, logits or labels is NULL");
    if (batch == 0 || classes == 0)
        return lr__fail(err, LR_EINVAL, "softmax_xent: batch %zu and classes %zu must be >= 1",
                        batch, classes);
    for (size_t b = 0; b < batch; b++)
        if (labels[b] >= classes)
            return lr__fail(err, LR_ERANGE, "softmax_xent: label %u of example %zu is >= %zu classes",
                            (unsigned)labels[b], b, classes);
    double total = 0.0;
    for (size_t b = 0; b < batch; b++) {
        const float *z = logits + b * classes;
        float mx = z[0];
        for (size_t k = 0; k < classes; k++) {
            if (!isfinite(z[k]))
                return lr__fail(err, LR_ENONFINITE, "softmax_xent: logit (%zu,%zu) is %s", b, k,
                                isnan(z[k]) ? "NaN" : "Inf");
            if (z[k] > mx) mx = z[k];
        }
        double se = 0.0;
        for (size_t k = 0; k < classes; k++) se += exp((double)z[k] - mx);
        double lse = log(se) + mx;
        total += lse - z[labels[b]];
        if (dlogits) {
            float *d = dlogits + b * classes;
            double inv_n = 1.0 / (double)batch;
            uint8_t y = labels[b];
            for (size_t k = 0; k < classes; k++) {
                double p = exp((double)z[k] - lse);
                d[k] = (float)((p - (k == y ? 1.0 : 0.0)) * inv_n);
            }
        }
    }
    *loss = (float)(total / (double)batch);
    return LR_OK;
}
