/* peft.h — LoRA adapters in PEFT's directory layout, for any model: named layers, each with
 * its own rank and scale, read and written without a base network.
 *
 *     DIR/adapter_model.safetensors   base_model.model.<module>.lora_A.weight  (r_l, in)
 *                                     base_model.model.<module>.lora_B.weight  (out, r_l)
 *     DIR/adapter_config.json         {"peft_type": "LORA", "r": 8, "lora_alpha": 16,
 *                                      "rank_pattern": {"<module>": 4}, "alpha_pattern": {},
 *                                      "target_modules": [...], "use_rslora": false, ...}
 *
 *     (an embedding:)                 base_model.model.<module>.lora_embedding_A  (r_l, vocab)
 *                                     base_model.model.<module>.lora_embedding_B  (dim, r_l)
 *
 * <module> is the base tensor's name without ".weight": the adapter of "model.layers.0.q_proj.
 * weight" is under "base_model.model.model.layers.0.q_proj.lora_A.weight". Layer l computes
 * ΔW_l = s_l·B_l·A_l with s_l = α_l/r_l (α_l/√r_l with use_rslora), where r_l and α_l come
 * from rank_pattern / alpha_pattern as PEFT reads them (the first key K, in the file's order,
 * for which the regular expression (.*\.)?(K)$ matches the whole module name; POSIX extended
 * syntax), else from r and lora_alpha.
 *
 * Reading is strict (messages name the file and the tensor or key): every tensor is a lora_A
 * or lora_B of some module, each module has both, shapes agree with each other and with r_l,
 * values are finite, dtypes F32, F16, BF16 or F64 (converted to float32); the module is
 * matched by target_modules (a list: equal to an entry or ending in "." + entry; a string: a
 * regular expression matching the whole name); features this reader does not apply (DoRA, a
 * trained bias, fan_in_fan_out, modules_to_save, layers_to_transform) are refused.
 * Writing puts the most common rank and alpha in r and lora_alpha and the other layers in
 * rank_pattern / alpha_pattern, lists the modules in target_modules, and is crash-safe as
 * adapter.h describes (config to a temp file, tensors committed, then the config; a failure
 * leaves the old files and no new empty directory).
 */
#ifndef LOWRANK_PEFT_H
#define LOWRANK_PEFT_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include <stddef.h>
#include "lowrank/base/status.h"
#include "lowrank/io/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char *module;       /* "linear1", "model.layers.0.q_proj"                          */
    size_t out, in, r;  /* B: (out, r), A: (r, in)                                      */
    double alpha;       /* this layer's lora_alpha                                      */
    float *a;           /* (r, in), owned                                               */
    float *b;           /* (out, r), owned                                              */
    bool embedding;     /* an nn.Embedding of weight (in, out) = (vocab, dim): PEFT's    */
                        /* lora_embedding_A: (r, in), lora_embedding_B: (out, r), and    */
                        /* ΔW = s·(B·A)ᵀ (no ".weight" in the tensor names)              */
} lr_peft_layer;

typedef struct {
    bool use_rslora;
    char *base_model;   /* base_model_name_or_path, NULL when null                      */
    char *init;         /* init_lora_weights as written ("true" when absent); may be NULL */
    size_t n;           /* layers, sorted by module name                                */
    lr_peft_layer *layer;
    size_t n_saved;     /* with lr_peft_read_opts.keep_saved: the tensors of modules_to_save */
    char **saved;       /* (n_saved) their names ("lm_head.weight"); not read (full copies)  */
} lr_peft;

typedef struct {
    bool keep_saved;    /* false (default): an adapter with modules_to_save (full copies of
                           whole modules, which no LoRA merge or export applies) is refused,
                           naming them; true: read, those tensors named in lr_peft.saved */
} lr_peft_read_opts;

LR_API lr_peft_read_opts lr_peft_read_opts_default(void);

/* *ad <- the adapter in dir. opts NULL = lr_peft_read_opts_default(). On failure *ad is
 * empty. */
LR_API lr_status lr_peft_read(lr_peft *ad, const char *dir, const lr_peft_read_opts *opts, lr_err *err);
/* Writes ad to dir (created if missing), tensors as dtype (F32, F16 or BF16). */
LR_API lr_status lr_peft_write(const lr_peft *ad, const char *dir, lr_st_dtype dtype, lr_err *err);
/* Frees what ad holds and empties it; a no-op on NULL or an empty adapter. */
LR_API void lr_peft_free(lr_peft *ad);
/* Adds a layer (copying a: (r, in) and b: (out, r)); LR_EINVAL if the module exists or r = 0. */
LR_API lr_status lr_peft_insert(lr_peft *ad, const char *module, size_t out, size_t in, size_t r, double alpha,
                             const float *a, const float *b, lr_err *err);
/* The same for an embedding layer (lr_peft_layer.embedding): a: (r, in = vocab) and
 * b: (out = dim, r), written as lora_embedding_A / lora_embedding_B. */
LR_API lr_status lr_peft_insert_embedding(lr_peft *ad, const char *module, size_t out, size_t in, size_t r, double alpha,
                                       const float *a, const float *b, lr_err *err);
/* The layer of `module`, or NULL. */
LR_API const lr_peft_layer *lr_peft_find(const lr_peft *ad, const char *module);
/* s_l = α_l/r_l, or α_l/√r_l with use_rslora. */
LR_API double lr_peft_scale(const lr_peft *ad, const lr_peft_layer *l);
/* "linear1.weight" -> "linear1" (the module of a weight tensor); other names unchanged.
 * Writes at most cap bytes; LR_ERANGE when it does not fit. */
LR_API lr_status lr_peft_module_of(char *module, size_t cap, const char *tensor, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
