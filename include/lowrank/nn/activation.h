/* activation.h — ReLU, forward and backward, in place over (batch, n) buffers.
 *
 * The backward pass masks by the forward OUTPUT (h > 0), as PyTorch's threshold_backward
 * does, so only the post-activation buffer needs to be kept.
 */
#ifndef LOWRANK_ACTIVATION_H
#define LOWRANK_ACTIVATION_H

#include "lowrank/base/export.h"
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* x: (n) <- max(x, 0). NaN stays NaN (so the non-finite check downstream sees it). */
LR_API void lr_relu_forward(float *x, size_t n);
/* dh: (n) <- dh where h > 0, else 0; h: (n) the forward output. */
LR_API void lr_relu_backward(float *dh, const float *h, size_t n);

#ifdef __cplusplus
}
#endif
#endif
