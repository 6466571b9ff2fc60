/* activation.c — ReLU forward and backward (masking by the forward output). */
#include "lowrank/nn/activation.h"
#include "base/cpu_internal.h"

void lr_relu_forward(float *x, size_t n)
{
    LR__FP_SCOPE();
    /* written as a compare so NaN propagates (x > 0 is false for NaN, which would zero it) */
    for (size_t i = 0; i < n; i++) x[i] = x[i] < 0.0f ? 0.0f : x[i];
}

void lr_relu_backward(float *dh, const float *h, size_t n)
{
    LR__FP_SCOPE();
    for (size_t i = 0; i < n; i++) dh[i] = h[i] > 0.0f ? dh[i] : 0.0f;
}
