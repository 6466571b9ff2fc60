/* gguf_lora.h — a PEFT LoRA adapter as the GGUF LoRA file llama.cpp applies, with every
 * tensor's scale as PEFT's.
 *
 * llama.cpp (src/llama-adapter.cpp, llama-graph.cpp) reads one file-wide adapter.lora.alpha
 * and scales the pair of each weight by alpha / r, r the rank of that pair (lora_b's ne[0]),
 * or by 1 when alpha is 0. PEFT scales layer l by s_l = α_l / r_l, or α_l / √r_l with
 * rsLoRA, α_l and r_l from alpha_pattern and rank_pattern. One alpha expresses that only
 * when s_l·r_l is the same for every layer, which a mixed-rank adapter (rank_pattern,
 * `lowrank extract --energy`, `combine`) or rsLoRA with different ranks breaks: converted
 * with one alpha (llama.cpp's convert_lora_to_gguf.py), such layers come out mis-scaled, and
 * nothing says so. Here the file's alpha is the value c = s_l·r_l most layers share, and
 * every other layer's B is multiplied by (s_l·r_l)/c: llama.cpp then applies exactly s_l.
 *
 * Names are llama.cpp's for the base model's tensors (a table per architecture, in
 * gguf_lora.c): model.layers.N.self_attn.q_proj → blk.N.attn_q.weight, k_proj → attn_k,
 * v_proj → attn_v, o_proj → attn_output, mlp.gate_proj → blk.N.ffn_gate, up_proj →
 * ffn_up, down_proj → ffn_down, model.embed_tokens → token_embd, lm_head → output, each
 * with ".lora_a" and ".lora_b". Shapes are GGUF's (ne[0] innermost): lora_a is A: (r, in)
 * as ne [in, r], lora_b is B: (out, r) as ne [r, out]. The input embedding's pair is
 * flipped as llama.cpp expects (llm_build_inp_embd): lora_a = Aᵀ: (vocab, r), lora_b =
 * B: (dim, r). For "llama", q_proj's and k_proj's B rows are permuted per head as
 * convert_hf_to_gguf.py permutes the base's q and k rows for its rope layout (n_head and
 * n_head_kv heads), so the pair matches the converted base.
 */
#ifndef LOWRANK_GGUF_LORA_H
#define LOWRANK_GGUF_LORA_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include <stddef.h>
#include "lowrank/base/status.h"
#include "lowrank/io/peft.h"
#include "lowrank/io/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *arch;       /* general.architecture: "llama" or "qwen2" (default "llama") */
    lr_st_dtype dtype;      /* LR_ST_F32 (default), LR_ST_F16 or LR_ST_BF16 */
    size_t n_head;          /* llama: attention heads (q's permutation); 0 = not known */
    size_t n_head_kv;       /* llama: key/value heads (k's permutation); 0 = n_head */
    bool skip_unsupported;  /* false: a module with no GGUF name is an error naming it */
} lr_gguf_lora_opts;

LR_API lr_gguf_lora_opts lr_gguf_lora_opts_default(void);

/* One layer of the adapter as written. */
typedef struct {
    char module[128];       /* PEFT's module name */
    char name[96];          /* the base tensor's GGUF name ("blk.0.attn_q.weight"); "" if skipped */
    size_t r;
    double scale;           /* PEFT's s_l, which llama.cpp applies */
    double fold;            /* factor multiplied into B (1: none) */
    bool permuted;          /* B's rows permuted per head (llama's q and k) */
    bool skipped;           /* no GGUF name, passed over with skip_unsupported */
} lr_gguf_lora_layer;

typedef struct {
    double alpha;           /* the file's adapter.lora.alpha */
    size_t n;               /* layers, in the adapter's order */
    lr_gguf_lora_layer *layer;
    size_t folded, skipped; /* layers with fold != 1; layers passed over */
} lr_gguf_lora_report;

/* rep <- how ad maps onto llama.cpp's names and one alpha, without writing anything: names,
 * scales, folds, permutations. An unknown module (without skip_unsupported), a layer llama's
 * permutation needs whose out is not a multiple of 2·heads, or two modules with one name is
 * LR_EINVAL naming the module. opts NULL = lr_gguf_lora_opts_default(). On failure *rep is
 * empty. */
LR_API lr_status lr_gguf_lora_plan(const lr_peft *ad, lr_gguf_lora_report *rep, const lr_gguf_lora_opts *opts,
                                   lr_err *err);

/* Writes ad to path as a GGUF v3 LoRA adapter (general.type "adapter", adapter.type "lora",
 * general.architecture, adapter.lora.alpha), crash-safely; rep (may be NULL) <- the plan.
 * opts NULL = lr_gguf_lora_opts_default(). */
LR_API lr_status lr_gguf_lora_write(const lr_peft *ad, const char *path, lr_gguf_lora_report *rep,
                                    const lr_gguf_lora_opts *opts, lr_err *err);

LR_API void lr_gguf_lora_report_free(lr_gguf_lora_report *rep);

/* name (cap bytes) <- the GGUF name of PEFT module `module` in architecture arch
 * ("model.layers.3.mlp.down_proj", "llama" -> "blk.3.ffn_down.weight"); LR_EINVAL naming
 * the module when the table has no entry, LR_ERANGE when cap is too small. */
LR_API lr_status lr_gguf_lora_name(char *name, size_t cap, const char *arch, const char *module, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
