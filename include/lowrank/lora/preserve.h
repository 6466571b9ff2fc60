/* preserve.h — forgetting-aware fine-tuning: keep an adapter from changing what the network
 * does on the data it should not unlearn (the "retained" set).
 *
 * nullspace (after InfLoRA, Liang & Li 2024, and O-LoRA, Wang et al. 2023; the subspace idea
 * of Orthogonal Gradient Descent, Farajtabar et al. 2020): for each adapted layer, collect the
 * layer's inputs on a sample of the retained set, X: (n, in) (the base network's activations:
 * the images for linear1, ReLU outputs after that), take their SVD with lowrank's spectrum
 * (spectrum.h) and keep the top k right singular vectors V_k: (k, in), k the smallest rank
 * that holds the fraction `energy` of ‖X‖²_F. The adapter's A: (r, in) is then kept in the
 * orthogonal complement: A ← A − (A·V_kᵀ)·V_k at the start and after every optimizer step, so
 * A·x ≈ 0, and the layer's output is unchanged, for inputs in that subspace. The inputs are
 * NOT centred: A·x must vanish on the inputs themselves, mean included; their mean (all
 * pixels and ReLU outputs are >= 0) is the dominant direction, and centring would drop it from
 * the protected subspace, leaving A free to shift every retained output.
 *
 * The leakage of a layer, ‖A·Xᵀ‖_F / (‖A‖_F·‖X‖_F) over the retained inputs, measures how much
 * an adapter still acts on them: about 1/√in for a random A, 0 when A is orthogonal to them.
 *
 * Rehearsal (replay) and Learning without Forgetting (distillation) are options of the
 * training loop (train.h: replay, replay_per_batch; the teacher's soft targets).
 */
#ifndef LOWRANK_PRESERVE_H
#define LOWRANK_PRESERVE_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lowrank/base/dataset.h"
#include "lowrank/base/mat.h"
#include "lowrank/base/status.h"
#include "lowrank/linalg/spectrum.h"
#include "lowrank/nn/mlp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    double energy;        /* fraction of ‖X‖²_F the protected subspace holds, in (0, 1]; default 0.99 */
    size_t max_samples;   /* retained examples used, the first ones of the set; default 2000 */
    lr_spectrum_opts svd; /* how the SVD of X is taken (spectrum.h); default: randomized, the top
                           * 256 values, then every value (exact) if those hold less than
                           * `energy`: on MNIST it found the same k as the exact SVD (59, 41, 26)
                           * and degrades far less on a busy machine (14 s against 111 s, both
                           * with another build running; 2.1 s exact on an idle one) */
} lr_preserve_opts;

LR_API lr_preserve_opts lr_preserve_opts_default(void);

/* The protected subspace of each layer of a net. */
typedef struct {
    size_t n_layers;
    size_t k[LR_MLP_MAX_LAYERS];           /* basis size; 0 for a layer not asked for     */
    lr_mat v[LR_MLP_MAX_LAYERS];           /* (k, in) orthonormal rows, owned             */
    double energy_kept[LR_MLP_MAX_LAYERS]; /* fraction of ‖X‖²_F in span v               */
    size_t samples;                        /* retained examples used                      */
    double seconds;                        /* time to build: activations and SVDs         */
} lr_preserve_basis;

/* *pb <- the protected subspaces of the layers in `layers` (bit i = layer i; 0 = all) of net,
 * from the retained examples (the first opts->max_samples of them). On failure *pb is empty.
 * opts NULL = lr_preserve_opts_default(). */
LR_API lr_status lr_preserve_basis_init(lr_preserve_basis *pb, const lr_mlp *net, uint32_t layers,
                                        const lr_dataset *retained, const lr_preserve_opts *opts, lr_err *err);
LR_API void lr_preserve_basis_free(lr_preserve_basis *pb);

/* A ← A − (A·Vᵀ)·V for the adapter attached to each layer that has a basis (other layers and
 * layers without an adapter are left alone). */
LR_API lr_status lr_preserve_project(const lr_preserve_basis *pb, lr_mlp *net, lr_err *err);

/* An lr_train_step_fn (train.h) that calls lr_preserve_project; ctx is the basis. */
LR_API lr_status lr_preserve_after_step(void *ctx, lr_mlp *net, size_t step, lr_err *err);

/* leak[i] <- ‖A_i·Xᵀ‖_F / (‖A_i‖_F·‖X_i‖_F) for each layer i with an attached adapter (NAN for
 * the others), X_i the layer's inputs on the first max_samples retained examples (0 = 2000). */
LR_API lr_status lr_preserve_leakage(double *leak, const lr_mlp *net, const lr_dataset *retained,
                                     size_t max_samples, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
