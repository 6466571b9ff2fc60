/* loss_internal.h — the loss with an explicit divisor, for mlp.c's sharded gradients. */
#ifndef LOWRANK_LOSS_INTERNAL_H
#define LOWRANK_LOSS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "lowrank/base/status.h"

/* lr_softmax_xent_kl of batch rows, with the sum over them divided by denom >= batch instead
 * of batch: *loss <- (1/denom)·Σ_b loss_b, dlogits row b <- its gradient. With denom the
 * global batch, each shard's rows get the same per-row gradient bits as in the whole batch. */
lr_status lr__softmax_xent_kl_sum(float *loss, float *dlogits, const float *logits, const uint8_t *labels,
                                  const float *label_weight, const float *soft, const float *soft_weight,
                                  size_t batch, size_t denom, size_t classes, lr_err *err);

#endif
