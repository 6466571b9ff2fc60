/* adapter.h — a LoRA adapter saved apart from its base, in the directory layout PEFT uses.
 *
 *     DIR/adapter_model.safetensors   base_model.model.<layer>.lora_A.weight  F32 (r, in)
 *                                     base_model.model.<layer>.lora_B.weight  F32 (out, r)
 *     DIR/adapter_config.json         {"peft_type": "LORA", "r": 1, "lora_alpha": 1,
 *                                      "use_rslora": false, "target_modules": ["linear1", …],
 *                                      "init_lora_weights": "gaussian", "bias": "none", …}
 *
 * <layer> is the base's layer name ("linear2"), so `PeftModel.from_pretrained(net,
 * DIR)` finds the tensors of a PyTorch net of the same layer names. The config carries every field PEFT's LoraConfig serialises
 * (docs/lora.md lists them); "init_lora_weights" is "gaussian" or "pissa" — informational,
 * since A and B come from the file.
 *
 * Saving goes through the general PEFT writer (peft.h, lr_peft_write). Both files are
 * written crash-safe (atomicfile.h: temp file, fsync, rename, fsync of the directory): the
 * config is written to its temp file first, then the tensors are committed, then the config. A failure before the last step leaves the old files as they were and no
 * temp files.
 *
 * Loading validates the files (safetensors.h) and then the adapter against the base: the
 * config (peft_type "LORA", r >= 1, lora_alpha > 0, target_modules a list of the base's
 * layer names; features we do not implement — DoRA, bias other than "none", fan_in_fan_out,
 * modules_to_save — are refused rather than ignored), then every tensor: present, F32,
 * shaped by the layer's rank and the layer, finite; no tensor beyond those. Messages name
 * the file, the tensor and both shapes:
 *   adapter_model.safetensors: base_model.model.linear2.lora_A.weight: expected shape
 *   (1, 1000), got (1, 784)
 *
 * rank_pattern and alpha_pattern are honoured as PEFT does: for layer M, a key K applies
 * when the regex "^(.*\.)?(K)$" (POSIX extended) matches M, the first matching key in the
 * file's order wins, and a layer without a match uses r / lora_alpha. Its scale is
 * s_l = α_l/r_l (α_l/√r_l with use_rslora). An lr_lora adapter has one rank and one scale,
 * so such an adapter is loaded exactly at R = max r_l with s = lora_alpha/R (lora_alpha/√R):
 * each layer's A (r_l, in) is padded with zero rows to (R, in), its B (out, r_l) with zero
 * columns to (out, R) and multiplied by s_l/s, so that s·B'·A' = s_l·B·A (up to one float32
 * rounding of B). A key that is not a valid regex, a rank that is not an integer >= 1 or an
 * alpha that is not a positive finite number is LR_EFORMAT naming the field and key. Saving
 * such an adapter writes it at the one rank R with empty patterns.
 */
#ifndef LOWRANK_ADAPTER_H
#define LOWRANK_ADAPTER_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include "lowrank/lora/lora.h"
#include "lowrank/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LR_ADAPTER_WEIGHTS "adapter_model.safetensors"
#define LR_ADAPTER_CONFIG "adapter_config.json"

/* What adapter_config.json says, as far as we use it. */
typedef struct {
    lr_lora_opts cfg;          /* rank, alpha, use_rslora, init, targets (mask); seed 0.
                                  rank = R, the largest layer_rank; alpha = lora_alpha  */
    char init_lora_weights[32];  /* as written: "gaussian", "pissa", "true", "false", … */
    char base_model[256];        /* base_model_name_or_path ("" when null)              */
    bool inference_mode;
    bool has_patterns;           /* rank_pattern or alpha_pattern has an entry          */
    size_t layer_rank[LR_MLP_MAX_LAYERS];  /* r_l of each target layer, 0 elsewhere     */
    float layer_alpha[LR_MLP_MAX_LAYERS];  /* α_l of each target layer, 0 elsewhere     */
} lr_adapter_info;

/* Writes adapter `name` of lm to directory dir (created if missing, mode 0777 & ~umask;
 * existing files of the same names are replaced). base_model (may be NULL -> null) is
 * recorded as base_model_name_or_path. */
LR_API lr_status lr_adapter_save(const lr_lora *lm, const char *dir, const char *name,
                                 const char *base_model, lr_err *err);

/* Reads and checks dir/adapter_config.json (a regular file of at most 16 MiB) against lm's net
 * (no tensors), the patterns resolved to info->layer_rank / layer_alpha. */
LR_API lr_status lr_adapter_read_config(const lr_lora *lm, const char *dir, lr_adapter_info *info, lr_err *err);

/* Loads the adapter in dir into lm as a new adapter `name` (not selected), after checking
 * it all; on any error lm is unchanged. info (may be NULL) <- the config read. A "pissa"
 * adapter is loaded as the plain A, B it holds: it is meant for the residual base it was
 * trained on, which the caller must supply (as with PEFT). */
LR_API lr_status lr_adapter_load(lr_lora *lm, const char *dir, const char *name, lr_adapter_info *info,
                                 lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
