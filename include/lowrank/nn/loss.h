/* loss.h — softmax cross-entropy over logits, as torch.nn.CrossEntropyLoss (mean over the
 * batch), and its weighted mix with KL divergences to soft targets (Li & Hoiem 2016,
 * "Learning without Forgetting"; Hinton et al. 2015, "Distilling the Knowledge in a Neural
 * Network"), computed stably: log-sum-exp after subtracting each row's maximum, so logits of
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

/* The weighted mix, p_b = softmax(logits[b]):
 *   *loss <- (1/batch) Σ_b [ c_b·CE(p_b, labels[b]) + d_b·KL(q_b || p_b) ]   (double sums)
 *   dlogits (optional, may alias logits) <- (c_b·(p_b − onehot) + d_b·(p_b − q_b)) / batch,
 * KL(q||p) = Σ_k q_k (log q_k − log p_k), 0·log 0 = 0. label_weight: (batch) c_b, NULL = all 1;
 * labels may be NULL when every c_b is 0. soft: (batch, classes) q_b, or NULL for no KL term;
 * soft_weight: (batch) d_b, NULL with soft = all 1 (soft_weight without soft is LR_EINVAL).
 * Weights must be finite and >= 0, soft rows finite, >= 0 and summing to 1 within 1e-3:
 * LR_EINVAL naming the example otherwise. With c all 1 and no soft targets the result is
 * lr_softmax_xent's, bit for bit. Other errors as lr_softmax_xent. */
LR_API lr_status lr_softmax_xent_kl(float *loss, float *dlogits, const float *logits, const uint8_t *labels,
                                    const float *label_weight, const float *soft, const float *soft_weight,
                                    size_t batch, size_t classes, lr_err *err);

/* The KL part alone: *loss <- (1/batch) Σ_b w_b·KL(q_b || softmax(logits[b])); dlogits
 * (optional, may alias logits): (batch, n) <- w_b·(p_b − q_b) / batch. q: (batch, n), required;
 * w: (batch), NULL = all 1. Checks as lr_softmax_xent_kl. */
LR_API lr_status lr_softmax_kl(float *loss, float *dlogits, const float *logits, const float *q, const float *w,
                               size_t batch, size_t n, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
