/* mlp.h — a multilayer perceptron of dense layers with ReLU between them, trained with Adam,
 * with optional LoRA adapters in its hot path.
 *
 * The net is a list of layer sizes (784-1000-2000-10 is the demo's MLP);
 * layer i (named "linear1", "linear2", … like PyTorch's state dict) maps sizes[i] inputs to
 * sizes[i+1] outputs, y = x·Wᵀ + b, and ReLU follows every layer but the last. As in llm.c,
 * every weight and bias lives in ONE allocation (lr_mlp.params, in state-dict order
 * linear1.weight, linear1.bias, linear2.weight, …) with named views into it, so checkpoints,
 * checksums and the optimizer see one flat array.
 *
 * Training (lr_mlp_train_step) is softmax cross-entropy, mean over the batch (or, with
 * lr_mlp_targets, a weighted mix with KL divergences to soft targets), and Adam with
 * PyTorch's defaults. The backward pass is fused with Adam: each weight row's gradient is
 * computed in registers and consumed at once by the Adam update, and dx is computed from the
 * old row in the same pass (see lib/nn/linear.c). A frozen layer gets no weight or bias
 * gradient and no Adam step at all. A layer may point at a LoRA adapter
 * (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"): its output is then
 * y = x·W₀ᵀ + b + s·(x·Aᵀ)·Bᵀ, W₀ + s·BA is never formed, and A, B are trained by Adam.
 */
#ifndef LOWRANK_MLP_H
#define LOWRANK_MLP_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lowrank/nn/adam.h"
#include "lowrank/nn/lora_weights.h"
#include "lowrank/base/mat.h"
#include "lowrank/base/pool.h"
#include "lowrank/base/rng.h"
#include "lowrank/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LR_MLP_MAX_LAYERS 16

/* One dense layer: views into lr_mlp.params. */
typedef struct {
    char name[16];          /* "linear1", "linear2", … */
    size_t in, out;
    lr_mat w;               /* (out, in), ld = in */
    float *b;               /* (out) */
    bool frozen;            /* no gradient, no Adam step for w and b */
    lr_lora_weights *lora;  /* attached adapter or NULL; not owned */
} lr_layer;

struct lr__mlp_work;        /* private workspace: activations, Adam moments, threads */

typedef struct lr_mlp {
    size_t n_layers;
    size_t sizes[LR_MLP_MAX_LAYERS + 1];   /* sizes[0] inputs … sizes[n_layers] outputs */
    lr_layer layer[LR_MLP_MAX_LAYERS];
    float *params;          /* (n_params): linear1.weight, linear1.bias, linear2.weight, … */
    size_t n_params;
    size_t adam_t;          /* Adam steps taken since the last lr_mlp_reset_optimizer */
    lr_pool pool;           /* the kernels' threads (lr_mlp_set_threads), owned by the net */
    struct lr__mlp_work *work;
} lr_mlp;

/* The 784-1000-2000-10 MLP's sizes {784, 1000, 2000, 10}. */
LR_API extern const size_t lr_mlp_default_sizes[4];

/* n_sizes >= 2 entries, each >= 1, at most LR_MLP_MAX_LAYERS layers. Parameters are zero
 * (call lr_mlp_reset_params), nothing frozen, no adapters, 1 thread. On failure *net is
 * empty (lr_mlp_free on it is a no-op). */
LR_API lr_status lr_mlp_init(lr_mlp *net, const size_t *sizes, size_t n_sizes, lr_err *err);
LR_API void lr_mlp_free(lr_mlp *net);

/* PyTorch's nn.Linear default: weights and biases uniform in [-1/sqrt(in), 1/sqrt(in)),
 * drawn layer by layer (weight row by row, then bias). Resets the optimizer. */
LR_API void lr_mlp_reset_params(lr_mlp *net, lr_rng *rng);

/* Parameter count of an MLP with these sizes (2,807,010 for the 784-1000-2000-10 MLP); 0 on overflow. */
LR_API size_t lr_mlp_count_params(const size_t *sizes, size_t n_sizes);

/* Index of the layer called name ("linear2"), or -1. */
LR_API int lr_mlp_find_layer(const lr_mlp *net, const char *name);

/* Freeze (true) or unfreeze one layer, or all layers. Training reads a frozen layer through a
 * transposed copy of its weights, made at the first step that needs it (batch <= 32, AVX2 or
 * better); it lives in the layer's Adam moments when those wait to be zeroed (as after
 * lr_train's reset), else it takes 4 bytes per weight, which these calls release. After
 * writing a layer's weights yourself, call lr_mlp_weights_changed. */
LR_API lr_status lr_mlp_set_frozen(lr_mlp *net, size_t layer, bool frozen, lr_err *err);
LR_API void lr_mlp_freeze_all(lr_mlp *net, bool frozen);

/* Call after writing layer `layer`'s weights or bias yourself (through lr_mlp.params or the
 * layer's w and b views), before the next training call: the rule for every writer of
 * weights. Each write counts as a new generation of the layer's weights, and the transposed
 * copy of a frozen layer (lr_mlp_set_frozen) is used only while it is of the layer's
 * generation, else remade from the weights as they are. The library counts its own writes
 * (lr_mlp_reset_params, lr_checkpoint_load, the training steps, lr_mlp_apply_grad, and the
 * LoRA module's PiSSA, merge, unmerge and remove); this call counts yours. Without it a
 * frozen layer may train on its old weights. LR_EINVAL when the layer does not exist. */
LR_API lr_status lr_mlp_weights_changed(lr_mlp *net, size_t layer, lr_err *err);

/* Attach (or detach with NULL) an adapter to layer i; shapes must match. */
LR_API lr_status lr_mlp_set_lora(lr_mlp *net, size_t layer, lr_lora_weights *lw, lr_err *err);

/* Threads the training kernels use, 1..LR_POOL_MAX_THREADS, the calling thread counted (a net
 * starts with 1). The net owns the pool it starts (lr_mlp_free joins it); results do not
 * depend on the count. */
LR_API lr_status lr_mlp_set_threads(lr_mlp *net, int n, lr_err *err);

/* Zeroes the Adam step count and the moments of the base parameters and of every attached
 * adapter: the state of a freshly constructed torch.optim.Adam. */
LR_API void lr_mlp_reset_optimizer(lr_mlp *net);

/* Scratch of forward passes (hidden activations, the adapters' x·Aᵀ), owned by the caller: the
 * model stays const, so several threads can evaluate one model at once, each with its own
 * workspace. An empty workspace (lr_mlp_ws_init, or all zeros) grows on first use and keeps
 * its size for the next calls; lr_mlp_ws_free releases it. */
typedef struct lr_mlp_ws {
    float *buf;
    size_t floats;
} lr_mlp_ws;

LR_API void lr_mlp_ws_init(lr_mlp_ws *ws);
LR_API void lr_mlp_ws_free(lr_mlp_ws *ws);

/* logits: (batch, out) <- the network's output for x: (batch, in). Any batch >= 1 (processed
 * 1000 rows at a time; large batches go through sgemm). ws NULL: scratch is allocated for the
 * call. The net is not modified; its pool serves one caller at a time (the others run on
 * their own thread, with the same result). A NaN or Inf output is LR_ENONFINITE naming the
 * entry (the logits are written anyway). */
LR_API lr_status lr_mlp_forward(const lr_mlp *net, float *logits, const float *x, size_t batch, lr_mlp_ws *ws,
                                lr_err *err);

/* Per-example targets of a training step: the loss becomes
 *   L = (1/batch) Σ_i [ c_i·CE(p_i, labels[i]) + d_i·KL(q_i || p_i) ],  p_i = softmax(logits_i),
 * whose gradient for logits_i is (c_i·(p_i − onehot(labels[i])) + d_i·(p_i − q_i)) / batch
 * (lr_softmax_xent_kl). Learning without Forgetting (Li & Hoiem 2016) trains on new labels
 * with q = the old model's softmax on the same inputs. tg NULL, or all fields NULL, is the
 * plain mean cross-entropy. */
typedef struct {
    const float *label_weight; /* (batch) weight c_i >= 0 of example i's cross-entropy with its label; NULL = all 1 */
    const float *soft;         /* (batch, out) target probabilities q_i (rows sum to 1, entries >= 0); NULL = none */
    const float *soft_weight;  /* (batch) weight d_i >= 0 of KL(q_i || p_i); NULL with soft = all 1 */
} lr_mlp_targets;

/* One Adam step on the loss of x: (batch, in) with labels (batch), each < out, and targets tg
 * (NULL: the mean cross-entropy). *loss (if non-NULL) <- the batch's loss before the step.
 * Trainable: unfrozen base weights and biases, and the A, B of attached, enabled adapters
 * (LR_EINVAL when there is nothing to train). labels may be NULL when every c_i is 0. A
 * weight that is negative or not finite, or a soft row with a negative or non-finite entry
 * or not summing to 1 within 1e-3, is LR_EINVAL naming the example, before any parameter
 * changes. A NaN/Inf layer output or loss stops before any parameter changes, a NaN/Inf
 * gradient before the layer it reaches is updated, with LR_ENONFINITE and a message naming
 * the step (adam_t + 1) and the layer ("step 7: linear2 output (0,3) is NaN"). opts NULL
 * means lr_adam_opts_default(). */
LR_API lr_status lr_mlp_train_step(lr_mlp *net, float *loss, const float *x, const uint8_t *labels,
                                   const lr_mlp_targets *tg, size_t batch, const lr_adam_opts *opts, lr_err *err);

/* Gradients without an update (the unfused path, for tests and for callers that want
 * them): grad: (n_params), same layout as params, <- d loss / d params (entries of frozen
 * layers are set to 0); the ga, gb of attached, enabled adapters <- their gradients;
 * dx (optional): (batch, in) <- d loss / d x. *loss <- the loss. tg as lr_mlp_train_step
 * (NULL: the mean cross-entropy). */
LR_API lr_status lr_mlp_gradients(lr_mlp *net, float *grad, float *dx, float *loss, const float *x,
                                  const uint8_t *labels, const lr_mlp_targets *tg, size_t batch, lr_err *err);

/* A training step in two halves, for callers that combine gradients before the update:
 * data-parallel training (dist.h), where each process computes the gradient of its share of
 * a batch and the shares are summed, and its one-process equivalent (lr_train_opts.shards).
 *
 * The packed gradient holds exactly the trainable tensors, in this order: layer by layer,
 * the weight (out, in) then the bias (out) of an unfrozen layer, then A (r, in) then
 * B (out, r) of an enabled adapter. lr_mlp_grad_size gives its length: 2,807,010 floats for
 * the 784-1000-2000-10 MLP trained whole, 6,794 for its rank-1 adapters on a frozen base. */
LR_API size_t lr_mlp_grad_size(const lr_mlp *net);

/* g: (lr_mlp_grad_size) <- the gradient of (1/denom)·Σ_b loss_b over the rows x: (rows, in)
 * (loss_b as lr_mlp_train_step defines it with tg, which may be NULL), *loss <- that sum.
 * With denom the whole batch's size, the gradients of its shares add up to the gradient of
 * its mean loss (up to the rounding of the sum). rows may be 0 (g <- 0, *loss <- 0).
 * Nothing in the net changes but its activation buffers. Errors as lr_mlp_train_step. */
LR_API lr_status lr_mlp_grad_shard(lr_mlp *net, float *g, float *loss, const float *x, const uint8_t *labels,
                                   const lr_mlp_targets *tg, size_t rows, size_t denom, lr_err *err);

/* One Adam step (step adam_t + 1) on the trainable tensors with the packed gradient g; the
 * element-wise update is the fused step's (lr_adam_elem). A NaN or Inf in g is
 * LR_ENONFINITE naming the tensor and entry, before any parameter changes. opts NULL means
 * lr_adam_opts_default(). */
LR_API lr_status lr_mlp_apply_grad(lr_mlp *net, const float *g, const lr_adam_opts *opts, lr_err *err);

/* Subnormal floats (0 < |x| < FLT_MIN = 1.18e-38) the net holds: in its parameters, in Adam's
 * first and second moments (base parameters and attached adapters), and in the activation
 * buffers of the last batch it ran. A diagnostic: on many x86 CPUs every operation that reads
 * or makes one takes a slow microcode assist (see cpu.h). */
typedef struct {
    size_t params, adam_m, adam_v, activations;
} lr_mlp_subnormals;

LR_API lr_status lr_mlp_count_subnormals(const lr_mlp *net, lr_mlp_subnormals *out, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
