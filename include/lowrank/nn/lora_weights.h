/* lora_weights.h — one layer's LoRA adapter: its weights, their Adam state, and its kernels.
 *
 * Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models": a frozen layer
 * y = x·W₀ᵀ + b gains a trainable low-rank branch, y += s·(x·Aᵀ)·Bᵀ with A: (r, in),
 * B: (out, r) and s = alpha/r (or alpha/√r for rsLoRA); W₀ + s·B·A is never formed. This is
 * the bottom of the LoRA family: lr_mlp (mlp.h) runs these kernels for the layers an adapter
 * is attached to, lora.h manages named adapters over a network (add, select, merge, PiSSA,
 * extraction) and adapter.h reads and writes them in PEFT's file layout. It knows nothing
 * of networks: only matrices.
 */
#ifndef LOWRANK_LORA_LAYER_H
#define LOWRANK_LORA_LAYER_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include <stddef.h>
#include "lowrank/base/mat.h"
#include "lowrank/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One layer's LoRA adapter: delta W = scale * B·A. Owned by whoever created it
 * (lr_lora_weights_init/free); a layer only points at it. */
typedef struct lr_lora_weights {
    size_t rank, in, out;
    float scale;            /* alpha/r, or alpha/sqrt(r) for rsLoRA */
    bool enabled;           /* false: the layer computes exactly its base output */
    lr_mat a, b;            /* a: (rank, in) trainable; b: (out, rank) trainable */
    lr_mat ga, gb;          /* gradients, same shapes */
    lr_mat ma, va, mb, vb;  /* Adam first/second moments, same shapes */
} lr_lora_weights;

/* All matrices zero, enabled = true. rank, in, out >= 1. On failure *lw is empty. */
LR_API lr_status lr_lora_weights_init(lr_lora_weights *lw, size_t rank, size_t in, size_t out,
                                             float scale, lr_err *err); /* all zero */
/* Frees and empties lw; a no-op on NULL or an empty/zeroed struct. */
LR_API void lr_lora_weights_free(lr_lora_weights *lw);

/* LoRA branch, y += s·(x·Aᵀ)·Bᵀ. u: (batch, rank) <- x·Aᵀ (kept for the backward pass). */
LR_API lr_status lr_lora_weights_forward_add(lr_mat y, lr_mat u, lr_cmat x, const lr_lora_weights *lw,
                                     lr_err *err);
/* LoRA backward for dy: (batch, out), x and u from the forward pass:
 * lw->gb <- s·dyᵀ·u;  t = s·dy·B: (batch, rank) into t_work;  lw->ga <- tᵀ·x;
 * dx (optional) += t·A. Never touches the base weights. */
LR_API lr_status lr_lora_weights_backward(lr_mat dx, lr_lora_weights *lw, lr_cmat dy, lr_cmat x, lr_cmat u,
                                  lr_mat t_work, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
