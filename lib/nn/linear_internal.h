/* linear_internal.h — the dense kernels' private entry points, for mlp.c (lr__ names). */
#ifndef LOWRANK_LINEAR_INTERNAL_H
#define LOWRANK_LINEAR_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include "lowrank/nn/adam.h"
#include "lowrank/base/mat.h"
#include "lowrank/base/pool.h"

/* y: (batch, out) <- x·wᵀ + b with the pool's threads over rows of w; shapes already checked,
 * batch >= 1; pool may be NULL. Small batches use the row-streaming kernel, large ones sgemm. */
lr_status lr__linear_forward_mt(lr_mat y, lr_cmat x, lr_cmat w, const float *b, const lr_pool *pool,
                                lr_err *err);

/* dx: (batch, in) <- dy: (batch, out) · w: (out, in) for a frozen layer (frozen.c): each dx
 * entry one sum over the rows of w in walk order (backwards when `reverse`), leaving out the
 * rows whose dy is zero for the whole batch (same bits). Shapes already checked. */
void lr__linear_dx_mt(lr_mat dx, lr_cmat dy, lr_cmat w, bool reverse, const lr_pool *pool);

/* A frozen layer's weights transposed (frozen.c), for a forward pass that reads only the
 * rows of wᵀ whose input is not zero: behind a ReLU that is 7 % of linear2's 1000 inputs in
 * the 784-1000-2000-10 MLP's fine-tune, where the row kernel must read every 8-column block
 * with one non-zero (half of them). Made from w by lr__wpack_make; it is a copy, so it is
 * only right while w does not change: the owner keeps the count of w's writes (mlp.c, the
 * layer's generation) and remakes it. Holds the forward's scratch too: one caller at a time. */
#define LR__PK_MAXJB 8 /* widest input: 8 column blocks of LR__FJ */
typedef struct {
    float *t0, *t1;       /* wᵀ (in, ld), ld = out rounded up to 16, zero padded: rows [0, split) at
                           * t0, rows [split, in) at t1 (lr__wpack_row) */
    size_t split;
    float *own;           /* what the copy allocated: the scratch below, and wᵀ unless lent */
    float *xt;            /* scratch (in, max_batch): the active columns of x, transposed */
    uint32_t *cols;       /* scratch (in): the active columns */
    size_t in, out, ld, max_batch;
} lr__wpack;

static inline const float *lr__wpack_row(const lr__wpack *p, size_t j)
{
    return j < p->split ? p->t0 + j * p->ld : p->t1 + (j - p->split) * p->ld;
}

/* p <- a copy of w for batches up to max_batch. The caller may lend storage for wᵀ: lend_n
 * floats at lend and lend2_n at lend2, used when they hold it (whole rows of wᵀ in each);
 * otherwise, and for the scratch, the copy allocates. */
lr_status lr__wpack_make(lr__wpack *p, lr_cmat w, size_t max_batch, float *lend, size_t lend_n, float *lend2,
                         size_t lend2_n, lr_err *err);
void lr__wpack_free(lr__wpack *p);
/* y: (batch, out) <- x·wᵀ + b through p, the same bits as lr__linear_forward_mt, when that
 * pays (AVX-512, or AVX2 with most of x's columns zero in every row; batch <= p->max_batch).
 * Returns false, having written nothing, when it does not. */
bool lr__linear_forward_packed_mt(lr_mat y, lr_cmat x, const lr__wpack *p, const float *b, const lr_pool *pool);
/* The two above in one call, for the tests: *used <- whether the packed kernel ran. */
lr_status lr__linear_forward_packed_once(lr_mat y, lr_cmat x, lr_cmat w, const float *b, const lr_pool *pool,
                                         bool *used, lr_err *err);

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
