/* loss.h — softmax cross-entropy over logits, as torch.nn.CrossEntropyLoss (mean over the
 * batch), computed stably: log-sum-exp after subtracting each row's maximum, so logits of
 * 1e4 neither overflow nor lose the loss.
 */
#ifndef LOWRANK_LOSS_H
#define LOWRANK_LOSS_H

#include "lowrank/base/export.h"
#include <stddef.h>
#include <stdint.h>
#include "lowrank/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* logits: (batch, classes); labels: (batch), each < classes.
 * *loss <- mean_b [ logsumexp(logits[b]) - logits[b, labels[b]] ] (accumulated in double).
 * dlogits (optional, may alias logits): (batch, classes) <- (softmax(logits) - onehot) / batch,
 * the gradient of the mean loss. LR_EINVAL for NULL/batch 0/classes 0, LR_ERANGE for a
 * label >= classes, LR_ENONFINITE when a logit is NaN/Inf (naming the row). */
LR_API lr_status lr_softmax_xent(float *loss, float *dlogits, const float *logits,
                                 const uint8_t *labels, size_t batch, size_t classes, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
