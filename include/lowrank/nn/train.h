/* train.h — the data loop: seeded shuffling, batching, per-batch normalisation, progress.
 *
 * One epoch is a fresh permutation of the dataset's examples (lr_rng_permutation, from an
 * lr_rng seeded once per run) cut into consecutive batches, the last one possibly short, as
 * the PyTorch reference's loop over torch.randperm does. Each batch is made by lr_dataset_batch (features
 * normalised as the dataset says). To train on a subset, such as the PyTorch reference's x[y == digit],
 * pass a subset view (lr_dataset_select_label). The same seed gives a bit-identical run,
 * whatever the thread count. The library never prints: progress goes through a callback.
 */
#ifndef LOWRANK_TRAIN_H
#define LOWRANK_TRAIN_H

#include "lowrank/base/export.h"
#include <stddef.h>
#include <stdint.h>
#include "lowrank/nn/adam.h"
#include "lowrank/base/dataset.h"
#include "lowrank/nn/mlp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Called after steps step (1-based) of steps_total with the running mean loss so far. */
typedef void (*lr_train_progress_fn)(void *ctx, size_t step, size_t steps_total,
                                     float avg_loss);

/* Called after every optimizer step (step is 1-based), e.g. to project parameters back onto a
 * constraint set (lora/preserve.h); a status other than LR_OK stops training with it. */
typedef lr_status (*lr_train_step_fn)(void *ctx, lr_mlp *net, size_t step, lr_err *err);

/* Sums a training step's packed gradients over the processes of a data-parallel run (dist.h):
 * buf holds this process's n floats (lr_mlp_grad_size gradient entries, then its share of
 * the loss) and must hold the sum over all processes on return, the same on each. local is
 * this process's status for the step (its message in err); the call returns the status
 * every process agrees on, so that one failing process stops them all. lr_train also calls
 * it with buf NULL and n 0 to agree on a status alone: once before the first step (its
 * set-up) and after every after_step hook. */
typedef lr_status (*lr_train_reduce_fn)(void *ctx, float *buf, size_t n, lr_status local, lr_err *err);

typedef struct {
    size_t batch;           /* 10 */
    size_t epochs;          /* 1 */
    uint64_t seed;          /* 0; shuffling only (parameters are initialised elsewhere) */
    lr_adam_opts adam;    /* lr 1e-3, β (0.9, 0.999), eps 1e-8 */
    size_t max_steps;       /* 0: no limit; else stop after this many steps (e.g. 100) */
    bool keep_optimizer;    /* false: start from a fresh Adam state (as the PyTorch reference's train()) */
    bool record_loss_curve; /* false; true: lr_train_result.loss_curve <- every step's loss */
    lr_train_progress_fn progress;  /* optional */
    void *progress_ctx;
    size_t progress_every;  /* call progress every N steps and at the last step; 0 = 1 */
    /* Rehearsal (experience replay): replay_per_batch of each batch's `batch` examples come
     * from `replay` (same dim, classes <= the net's outputs), drawn from its own shuffled
     * stream (seeded from seed, reshuffled when used up), the other batch − replay_per_batch
     * from data, whose epoch then has ceil(n / (batch − replay_per_batch)) steps. */
    const lr_dataset *replay; /* NULL: none */
    size_t replay_per_batch;  /* 0: none; < batch */
    /* Learning without Forgetting (Li & Hoiem 2016) on the replayed examples: their loss is
     * replay_label_weight·CE(label) + replay_soft_weight·KL(q || p), q their row of
     * replay_soft: (replay->n, the net's outputs), target probabilities such as the frozen
     * base's softmax (lr_mlp_train_step). Label weight 1 and no soft targets is plain
     * rehearsal; label weight 0 is distillation alone. */
    const float *replay_soft;  /* NULL: none */
    float replay_soft_weight;  /* default 1 */
    float replay_label_weight; /* default 1 */
    lr_train_step_fn after_step; /* optional, after every step */
    void *after_step_ctx;
    /* Data parallelism. shards > 1 cuts every batch (replayed examples included) into
     * `shards` consecutive slices, the balanced split (the first batch % shards slices one
     * row longer, empty slices when the batch is shorter), takes each slice's gradient on its
     * own (lr_mlp_grad_shard, divided by the whole batch's size), sums them in slice order
     * and makes one Adam step (lr_mlp_apply_grad). That is, bit for bit, what `shards`
     * processes of a data-parallel run compute (dist.h: lr_dist_train sets the fields
     * below), so one process can reproduce such a run; it differs from the fused step
     * (shards 0 or 1) by the rounding of the gradient sums. With reduce, this process takes
     * only slice `shard` and reduce sums the slices over the processes. */
    size_t shards;            /* 0 or 1: the fused step (unless reduce is set) */
    size_t shard;             /* with reduce: this process's slice, < max(shards, 1) */
    lr_train_reduce_fn reduce; /* NULL: every slice computed here */
    void *reduce_ctx;
} lr_train_opts;

LR_API lr_train_opts lr_train_opts_default(void);

typedef struct {
    size_t steps;           /* steps taken */
    size_t examples;        /* examples seen */
    float avg_loss;         /* mean of the per-step losses */
    float last_loss;
    double seconds;         /* wall time of the steps (batching included) */
    /* steps per second over the first and the last tenth of the steps (0 when fewer than 10
     * steps were taken): a rate that falls over a run points at subnormal floats (cpu.h) or
     * at a machine that got busier */
    double rate_first_tenth, rate_last_tenth;
    /* (steps): the loss of every step, with lr_train_opts.record_loss_curve; else NULL.
     * Owned by the result: lr_train_result_free releases it. */
    float *loss_curve;
} lr_train_result;

/* Frees res->loss_curve and zeroes *res; NULL or a zeroed result is a no-op. A failed lr_train
 * frees the curve itself and keeps the counts of the steps it took. */
LR_API void lr_train_result_free(lr_train_result *res);

/* *steps <- the number of steps lr_train will take with these options (opts NULL = defaults). */
LR_API lr_status lr_train_count_steps(size_t *steps, const lr_dataset *data, const lr_train_opts *opts,
                                      lr_err *err);

/* Trains net on data (dim = the net's input size, classes <= its output size). res may be
 * NULL; opts NULL means lr_train_opts_default(). On error (bad input, LR_ENONFINITE) res holds the steps completed. */
LR_API lr_status lr_train(lr_mlp *net, lr_train_result *res, const lr_dataset *data,
                          const lr_train_opts *opts, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
