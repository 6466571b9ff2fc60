/* lora.h — LoRA adapters over an lr_mlp: several named adapters on one frozen base,
 * selection, enable/disable, merge/unmerge, PiSSA initialisation, extraction from a fully
 * fine-tuned model, and the parameter accounting of the original MNIST demo.
 *
 * LoRA (Hu et al. 2021, §4.1) keeps a layer's W₀: (out, in) and bias frozen and learns
 * ΔW = s·B·A with A: (r, in), B: (out, r), s = α/r (or α/√r with rsLoRA, Kalajdzievski
 * 2023). The forward pass never forms W₀ + ΔW: lr_mlp computes y = W₀x + b + s·B(Ax) for
 * an attached, enabled adapter (see mlp.h), so an adapter is just a set of per-layer
 * lr_lora_weights that this module owns and attaches with lr_mlp_set_lora.
 *
 *     lr_lora lm;                                      yours; the net must outlive it
 *     lr_lora_init(&lm, &net, &err);
 *     lr_lora_opts o = lr_lora_opts_default();         rank 1, alpha 1, all layers
 *     lr_lora_insert(&lm, "digit9", &o, &err);         A ~ N(0,1), B = 0: ΔW = 0
 *     lr_lora_select(&lm, "digit9", &err);             attach (NULL: run with none)
 *     lr_lora_freeze_base(&lm, true);
 *     lr_train(&net, &res, &digit9, NULL, &err);       trains only A and B
 *     lr_lora_free(&lm);
 *
 * Switching adapters only changes the layers' pointers: the base is never copied or
 * reloaded. The enabled flags belong to the module (per layer and global) and are applied
 * to whichever adapter is selected; a disabled layer computes exactly its base output.
 * The optimizer step count lives in the net (mlp.h): selecting an adapter does not reset
 * it, call lr_mlp_reset_optimizer before training a new one (as the PyTorch reference builds a new
 * torch.optim.Adam).
 *
 * Merge/unmerge (W₀ ± s·B·A, float32 sgemm) is not exact: W₀ + s·BA − s·BA rounds. The
 * drift of a round trip is reported against a copy of the original rows, which merge keeps
 * when asked (LR_LORA_MERGE_KEEP_COPY: out·in floats per merged layer, 11.2 MB for all of
 * the 784-1000-2000-10 MLP) and which unmerge can restore bit for bit.
 *
 * PiSSA (Meng et al. 2024) follows PEFT's convention (LoraLayer.pissa_init): with
 * W₀ = U·S·Vᵀ, B = U_r·√(S_r/s), A = √(S_r/s)·V_rᵀ, and the frozen base becomes the residual
 * W_res = W₀ − s·B·A, so the initial output is the base output (s·BA = U_r S_r V_rᵀ for
 * any α). A PiSSA adapter changes the base; the module keeps the original W₀ of its layers
 * (out·in floats each) and puts it back, bit for bit, when the adapter is removed. At most
 * one PiSSA adapter may exist at a time, and while it does, "run with none" runs the
 * residual (as in PEFT).
 */
#ifndef LOWRANK_LORA_H
#define LOWRANK_LORA_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lowrank/nn/mlp.h"
#include "lowrank/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LR_LORA_NAME_MAX 64   /* adapter names: 1..63 bytes */

typedef enum {
    LR_LORA_INIT_GAUSSIAN = 0, /* A ~ N(0, 1), B = 0 (the PyTorch reference; PEFT's differs) */
    LR_LORA_INIT_PISSA         /* principal singular triplets, residual base            */
} lr_lora_initializer;

typedef struct {
    size_t rank;            /* r >= 1; default 1                                       */
    float alpha;            /* α > 0, finite; default 1                                */
    bool use_rslora;        /* scale α/√r instead of α/r; default false                */
    lr_lora_initializer init; /* default LR_LORA_INIT_GAUSSIAN                           */
    uint32_t targets;       /* bit i = layer i (linear{i+1}); 0 = all layers (default) */
    uint64_t seed;          /* for the Gaussian A; default 0                           */
} lr_lora_opts;

LR_API lr_lora_opts lr_lora_opts_default(void);

/* s = α/r, or α/√r with rsLoRA (0 when r = 0). */
LR_API float lr_lora_scale(size_t rank, float alpha, bool use_rslora);

/* Checks options against a net: rank >= 1, α > 0 finite, targets name existing layers,
 * rank <= min(in, out) of each target (B·A cannot have a higher rank). opts NULL is
 * LR_EINVAL: the options are what it checks. */
LR_API lr_status lr_lora_opts_check(const lr_lora_opts *opts, const lr_mlp *net, lr_err *err);

/* mask <- the layers of an n_layers-layer lr_mlp named by list: "all" or "" (mask 0: all),
 * or comma-separated layer names ("linear1,linear3") and/or 1-based numbers ("1,3"). */
LR_API lr_status lr_lora_parse_targets(uint32_t *mask, const char *list, size_t n_layers, lr_err *err);
/* "gaussian" / "pissa" -> kind; the name of a kind. */
LR_API lr_status lr_lora_parse_initializer(lr_lora_initializer *kind, const char *s, lr_err *err);
LR_API const char *lr_lora_initializer_name(lr_lora_initializer kind);

/* The module: the adapters of one base net. The caller owns the struct; its fields belong to
 * the library (use the functions below). */
struct lr__adapter;
typedef struct lr_lora {
    lr_mlp *net;                        /* the base; it must outlive the module */
    struct lr__adapter **ad;            /* (n) adapters, in the order they were added */
    size_t n, cap;
    struct lr__adapter *sel;            /* attached adapter or NULL */
    bool all_on;
    bool layer_on[LR_MLP_MAX_LAYERS];
    struct lr__adapter *merged;         /* non-NULL between merge and unmerge */
    bool merged_layer[LR_MLP_MAX_LAYERS];
    lr_mat copy[LR_MLP_MAX_LAYERS];     /* W₀ before the merge (KEEP_COPY) */
    bool have_copy;
} lr_lora;

/* Binds an empty module to net. On failure *lm is empty. */
LR_API lr_status lr_lora_init(lr_lora *lm, lr_mlp *net, lr_err *err);
/* Detaches every adapter from the net, frees them and empties lm; a no-op on NULL or an
 * empty module. The base weights are left as they are (remove a PiSSA adapter or unmerge
 * first to get the original W₀ back). */
LR_API void lr_lora_free(lr_lora *lm);

LR_API lr_mlp *lr_lora_net(const lr_lora *lm);

/* Creates adapter `name` (unique) per opts (opts NULL: lr_lora_opts_default()). Gaussian: for each target layer in order, A
 * gets rank·in draws of N(0,1) from an lr_rng seeded with opts->seed; B = 0. PiSSA: see
 * above (needs the SVD of each target W₀; rewrites W₀ to the residual). Does not select. */
LR_API lr_status lr_lora_insert(lr_lora *lm, const char *name, const lr_lora_opts *opts, lr_err *err);
/* Attaches adapter `name` to its target layers (detaching the previous one); NULL or ""
 * runs with none. LR_EINVAL for an unknown name. */
LR_API lr_status lr_lora_select(lr_lora *lm, const char *name, lr_err *err);
/* Removes adapter `name` (detached first if selected; its PiSSA base restored). */
LR_API lr_status lr_lora_remove(lr_lora *lm, const char *name, lr_err *err);

/* The selected adapter's name, or NULL when running with none. */
LR_API const char *lr_lora_selected(const lr_lora *lm);
LR_API size_t lr_lora_count(const lr_lora *lm);
/* Name of the i-th adapter (in order of creation), NULL when i >= count. */
LR_API const char *lr_lora_name(const lr_lora *lm, size_t i);
/* The config adapter `name` was created with (NULL if unknown). */
LR_API const lr_lora_opts *lr_lora_opts_of(const lr_lora *lm, const char *name);
/* Adapter `name`'s weights on layer i, or NULL (unknown name, layer not targeted). The
 * pointer stays valid until the adapter is removed. */
LR_API lr_lora_weights *lr_lora_layer(const lr_lora *lm, const char *name, size_t layer);

/* Enable or disable LoRA on one layer, or on all (the global switch; per-layer flags are
 * kept). A disabled layer gives exactly its base output. */
LR_API lr_status lr_lora_set_layer_enabled(lr_lora *lm, size_t layer, bool on, lr_err *err);
LR_API void lr_lora_set_enabled(lr_lora *lm, bool on);
LR_API bool lr_lora_layer_enabled(const lr_lora *lm, size_t layer);

/* Freezes every base layer (weights and biases get no gradient and no Adam step), so a
 * training step changes only the selected adapter's A and B. frozen = false undoes it. */
LR_API void lr_lora_freeze_base(lr_lora *lm, bool frozen);

typedef enum {
    LR_LORA_MERGE_NO_COPY = 0, /* no memory; the drift cannot be measured or undone     */
    LR_LORA_MERGE_KEEP_COPY    /* keeps W₀ (out·in floats per layer) for drift/restore  */
} lr_lora_merge_mode;

/* W₀ += s·B·A for each enabled layer of the selected adapter, which is then detached (its
 * contribution lives in W₀). Until unmerged, add/select/remove/enable and a second merge
 * are LR_EINVAL. LR_EINVAL when nothing is selected. */
LR_API lr_status lr_lora_merge(lr_lora *lm, lr_lora_merge_mode mode, lr_err *err);

typedef struct {
    size_t n_layers;                      /* layers of the net                       */
    bool merged[LR_MLP_MAX_LAYERS];       /* layer took part in the merge            */
    double max_abs[LR_MLP_MAX_LAYERS];    /* max |W_unmerged − W₀| per layer, or NAN */
    double max_abs_all;                   /* over all merged layers, or NAN          */
    bool measured;                        /* a copy was kept (LR_LORA_MERGE_KEEP_COPY) */
    bool restored;                        /* W₀ was put back bit for bit              */
} lr_lora_drift;

/* W₀ −= s·B·A on the merged layers and re-attaches the adapter. With a kept copy, the
 * drift of the arithmetic round trip is measured into *drift (may be NULL), and with
 * restore = true W₀ is then overwritten with the copy (bit-exact). restore without a copy
 * is LR_EINVAL (and nothing changes). LR_EINVAL when nothing is merged. */
LR_API lr_status lr_lora_unmerge(lr_lora *lm, lr_lora_drift *drift, bool restore, lr_err *err);
LR_API bool lr_lora_is_merged(const lr_lora *lm);

/* --- extraction: the rank-r LoRA nearest a full fine-tune (Eckart–Young) --- */

typedef struct {
    bool targeted;
    size_t rank;               /* r used for this layer                                   */
    double delta_fro;          /* ‖ΔW‖_F, ΔW = W_ft − W₀                                  */
    double err_fro;            /* measured ‖ΔW − s·B·A‖_F (double accumulation)            */
    double err_eckart_young;   /* √(Σ_{i>r} σ_i²) from ΔW's singular values               */
    double err_spectral;       /* σ_{r+1} (0 when r = min(in, out))                      */
    double bias_max_change;    /* max |b_ft − b₀|: LoRA does not carry bias changes       */
    size_t params_dense;       /* in·out: storing ΔW densely                              */
    size_t params_lora;        /* r·(in + out)                                           */
    long long params_saved;    /* dense − lora (negative when the rank is too high)       */
} lr_lora_extract_row;

typedef struct {
    size_t n_layers;
    lr_lora_extract_row row[LR_MLP_MAX_LAYERS];
    size_t params_dense, params_lora;  /* over the targeted layers */
    long long params_saved;
} lr_lora_extract_report;

/* Adds adapter `name` with B·A the best rank-r approximation of each target layer's
 * ΔW = W_ft − W₀ (W₀ = the module's net as it is now): with ΔW ≈ U_r S_r V_rᵀ,
 * A = V_rᵀ and B = U_r·S_r / s, so that s·B·A = U_r S_r V_rᵀ for the config's α (the scale
 * is folded into B). opts->init is ignored (opts NULL: the defaults); rank <= min(in, out). `ft` must have the same
 * sizes. rep (may be NULL) receives the per-layer errors and parameter counts. */
LR_API lr_status lr_lora_extract(lr_lora *lm, lr_lora_extract_report *rep, const char *name, const lr_mlp *ft,
                                 const lr_lora_opts *opts, lr_err *err);

/* --- parameter accounting (pure; the MNIST demo's table) --- */

typedef struct {
    char name[32];             /* "linear1", …                                          */
    size_t in, out;
    bool lora;                 /* layer carries an adapter                              */
    size_t w_params, b_params; /* out·in, out                                           */
    size_t a_rows, a_cols;     /* A: (r, in)   (0, 0 without an adapter)                */
    size_t b_rows, b_cols;     /* B: (out, r)                                           */
    size_t lora_params;        /* r·(in + out)                                          */
    size_t base_macs;          /* multiply-adds per sample: in·out                       */
    size_t lora_macs;          /* added per sample: r·(in + out)                         */
} lr_lora_param_row;

typedef struct {
    size_t n_layers, rank;
    lr_lora_param_row row[LR_MLP_MAX_LAYERS];
    size_t original;           /* Σ (w + b): 2,807,010 for 784-1000-2000-10                 */
    size_t with_lora;          /* original + added: 2,813,804 at rank 1 on all layers    */
    size_t added;              /* Σ r·(in + out): 6,794                                  */
    double increment_pct;      /* 100·added/original: 0.242                              */
    size_t base_macs, lora_macs; /* per sample                                          */
} lr_lora_param_table;

/* The table for an MLP of these sizes (n_sizes >= 2, at most LR_MLP_MAX_LAYERS layers)
 * with rank-r adapters on the layers in targets (0 = all). LR_ERANGE on overflow. */
LR_API lr_status lr_lora_param_count(lr_lora_param_table *t, const size_t *sizes, size_t n_sizes,
                                     uint32_t targets, size_t rank, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
