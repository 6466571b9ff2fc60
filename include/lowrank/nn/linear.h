/* linear.h — the dense layer's kernels: forward, backward, the backward fused with Adam
 * (a layer's LoRA branch: lora_weights.h).
 *
 * Shapes follow nn.Linear: x: (batch, in), w: (out, in), b: (out), y: (batch, out),
 * y = x·wᵀ + b. Batch 10 (the MNIST demo's) makes these products thin, so a training step is
 * bound by streaming w and the Adam moments through memory. lr_linear_backward_adam
 * therefore makes ONE pass over each row of w: with dy and x in cache it computes that
 * row's weight gradient dw[o,:] = Σ_b dy[b,o]·x[b,:] in registers, adds the OLD row's
 * contribution dy[b,o]·w[o,:] to dx, and applies Adam to the row at once; dw is never
 * stored. The work is split into row chunks that depend on the shapes only (each adds
 * its share of dx into its own partial sum; the partials are added in chunk order), so
 * results do not depend on the number of threads.
 */
#ifndef LOWRANK_LINEAR_H
#define LOWRANK_LINEAR_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include "lowrank/nn/adam.h"
#include "lowrank/base/mat.h"
#include "lowrank/base/pool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y: (batch, out) <- x: (batch, in) · w: (out, in)ᵀ + b: (out) (b may be NULL). */
LR_API lr_status lr_linear_forward(lr_mat y, lr_cmat x, lr_cmat w, const float *b, lr_err *err);

/* Unfused backward for dy: (batch, out). Each output is optional (data/pointer NULL = skip):
 * dx: (batch, in) <- dy·w;  dw: (out, in) += dyᵀ·x;  db: (out) += Σ_b dy[b,:]. */
LR_API lr_status lr_linear_backward(lr_mat dx, lr_mat dw, float *db, lr_cmat dy, lr_cmat x,
                                    lr_cmat w, lr_err *err);

/* Fused backward + Adam step s on w and b (moments m_w, v_w: (out, in), m_b, v_b: (out)).
 * dx (optional, data NULL = skip): (batch, in) <- dy·w with the weights BEFORE the update.
 * Equivalent to lr_linear_backward into zeroed dw, db followed by lr_adam_update on each.
 * work: lr_linear_backward_adam_work(batch, in) floats for the partial dx sums (15·batch·in;
 * NULL: the call allocates them itself, or fails with LR_ENOMEM).
 * pool: the threads to use (NULL: the caller's only); the result does not depend on it. */
LR_API lr_status lr_linear_backward_adam(lr_mat dx, lr_mat w, float *b, lr_mat m_w, lr_mat v_w,
                                         float *m_b, float *v_b, lr_cmat dy, lr_cmat x,
                                         const lr_adam_step *s, float *work, const lr_pool *pool,
                                         lr_err *err);
LR_API size_t lr_linear_backward_adam_work(size_t batch, size_t in);

#ifdef __cplusplus
}
#endif
#endif
