/* linear_internal.h — the dense kernels' private entry points, for mlp.c (lr__ names). */
#ifndef LOWRANK_LINEAR_INTERNAL_H
#define LOWRANK_LINEAR_INTERNAL_H

#include <stdbool.h>
#include "lowrank/nn/adam.h"
#include "lowrank/base/mat.h"
#include "lowrank/base/pool.h"

/* y: (batch, out) <- x·wᵀ + b with the pool's threads over rows of w; shapes already checked,
 * batch >= 1; pool may be NULL. Small batches use the row-streaming kernel, large ones sgemm. */
lr_status lr__linear_forward_mt(lr_mat y, lr_cmat x, lr_cmat w, const float *b, const lr_pool *pool,
                                lr_err *err);

/* dx: (batch, in) <- dy: (batch, out) · w: (out, in) for a frozen layer: the fused pass's
 * row chunks and partial sums, with its own register-blocked kernel that leaves out the rows
 * whose dy is zero for the whole batch (same bits). Shapes already checked; work:
 * lr_linear_backward_adam_work(batch, in) floats for the partial sums. */
void lr__linear_dx_mt(lr_mat dx, lr_cmat dy, lr_cmat w, float *work, bool reverse, const lr_pool *pool);

/* The fused pass without the update: dw: (out, in) and db: (out) <- the gradients the fused
 * step would apply (the same sums, bit for bit), dx (optional) <- dy·w. Shapes already
 * checked; work: lr_linear_backward_adam_work(batch, in) floats; reverse as below. */
void lr__linear_backward_grad_mt(lr_mat dx, lr_mat dw, float *db, lr_cmat dy, lr_cmat x, lr_cmat w, float *work,
                                 bool reverse, const lr_pool *pool);

/* lr_linear_backward_adam with the row order reversed when `reverse` (the training step
 * alternates it every step: the rows the last step touched last are then touched first,
 * while they are still in the last-level cache). */
lr_status lr__linear_backward_adam_ex(lr_mat dx, lr_mat w, float *b, lr_mat m_w, lr_mat v_w,
                                      float *m_b, float *v_b, lr_cmat dy, lr_cmat x,
                                      const lr_adam_step *s, float *work, const lr_pool *pool, bool reverse,
                                      lr_err *err);

#endif
