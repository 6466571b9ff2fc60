/* checkpoint.h — an lr_mlp saved as a safetensors file that PyTorch users would expect.
 *
 * The file holds one F32 tensor per parameter under PyTorch's state-dict names for the
 * 784-1000-2000-10 MLP: "linear1.weight" (1000, 784), "linear1.bias" (1000), "linear2.weight",
 * … — so `model.load_state_dict(safetensors.torch.load_file(path))` works on the PyTorch
 * side. The __metadata__ map records format "pt" (what safetensors' torch helpers write),
 * the layer sizes ("784,1000,2000,10"), the seed when known and the lowrank version; it is
 * informational: the shapes of the tensors define the model.
 *
 * Writing goes through the safetensors writer, which is crash-safe (temp file, fsync,
 * rename, fsync of the directory): on failure the old checkpoint is intact and no temp file
 * remains. Reading validates the file (see safetensors.h) and then the tensors against the
 * model: every expected name present, no extra names, each shape exact, dtype F32 (F16, BF16
 * and F64 are converted, as a PyTorch user may have saved in half precision); a message
 * names the file, the tensor, the expected and the found shape:
 *     m.safetensors: linear1.weight: expected shape (1000, 784), got (784, 1000)
 *
 * A layer may instead be stored factored, as `lowrank compress` writes it:
 * "linearK.B.weight" (out, r) and "linearK.A.weight" (r, in) in place of "linearK.weight"
 * (any of the dtypes above, r >= 1). Both loaders densify W = B·A (float32 sgemm, so W
 * rounds as the product does) and load that; saving always writes the dense form. A file
 * with both forms for one layer, only one of B and A, or inner sizes that disagree is
 * LR_EFORMAT naming the file and the tensors:
 *     m.safetensors: linear1.B.weight is present but linear1.A.weight is missing ...
 */
#ifndef LOWRANK_CHECKPOINT_H
#define LOWRANK_CHECKPOINT_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include <stdint.h>
#include "lowrank/nn/mlp.h"
#include "lowrank/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    bool has_seed;      /* the seed the model was trained with is known */
    uint64_t seed;
    char version[32];   /* lowrank version that wrote the file ("" if absent); set on load */
} lr_checkpoint_info;

/* Saves net's parameters (base weights and biases; adapters are saved apart, adapter.h)
 * to path. info may be NULL (no seed recorded). */
LR_API lr_status lr_checkpoint_save(const lr_mlp *net, const char *path, const lr_checkpoint_info *info,
                                    lr_err *err);

/* Loads path into an existing net, whose names and shapes the file must match exactly.
 * On any error net is unchanged. info (nullable) <- the file's metadata. */
LR_API lr_status lr_checkpoint_load(lr_mlp *net, const char *path, lr_checkpoint_info *info, lr_err *err);

/* Creates *net (lr_mlp_init) with the layer sizes the file's tensors give — linear1 …
 * linearN, consecutive, each weight (out, in) with a bias (out), each layer's in equal to
 * the previous out — and loads it. On failure *net is empty. */
LR_API lr_status lr_checkpoint_load_new(lr_mlp *net, const char *path, lr_checkpoint_info *info, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
