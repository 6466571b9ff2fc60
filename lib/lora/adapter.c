/* adapter.c — saving and loading LoRA adapters in PEFT's directory layout
 * (adapter_model.safetensors + adapter_config.json), checked against the base model.
 *
 * The tensor names and the config fields follow PEFT's save_pretrained for a LoraConfig:
 * keys "base_model.model.<module>.lora_A.weight" / ".lora_B.weight" without the adapter
 * name, and the config's JSON keys sorted as PEFT writes them. The safetensors reading,
 * writing and validation is safetensors.h's; JSON is jansson's.
 *
 * rank_pattern / alpha_pattern follow PEFT's get_pattern_key: key K applies to module M when
 * "^(.*\.)?(K)$" matches M (POSIX extended regex here, Python's re there: the usual
 * subset agrees), the first matching key in the object's order wins (jansson keeps the
 * order of the file). A per-layer rank r_l is loaded into the one rank R = max r_l of an
 * lr_lora adapter by zero rows of A and zero columns of B, which add nothing to B·A, and
 * the layer's scale s_l is folded into B as s_l / s, so s·B'·A' = s_l·B·A.
 */
#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <jansson.h>
#include "lowrank/lora/adapter.h"
#include "lowrank/io/atomicfile.h"
#include "lowrank/io/peft.h"
#include "lowrank/io/safetensors.h"
#include "base/internal.h"
#include "io/peft_internal.h"
#include "io/readfile.h"
#include "io/regex_internal.h"
#include "lora/lora_internal.h"

#define KEY_MAX 96

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static void tensor_key(char *out, const char *layer, char which)
{
    snprintf(out, KEY_MAX, "base_model.model.%s.lora_%c.weight", layer, which);
}

/* ---------------------------------------------------------------- config ---------- */

#define CF LR_ADAPTER_CONFIG

/* ------------------------------------------------------- rank / alpha patterns ---- */

/* *re <- "^(.*\.)?(key)$" compiled (REG_EXTENDED); LR_EFORMAT naming field and key if the
 * key is not a valid regex. */
static lr_status pattern_compile(regex_t *re, const char *field, const char *key, lr_err *err)
{
    const char *bad;
    if (!lr__regex_check(key, &bad))
        return lr__fail(err, LR_EFORMAT, CF ": %s key \"%.80s\" is not accepted as a regular expression: %s", field,
                        key, bad);
    size_t n = strlen(key) + 16;
    char *src = malloc(n);
    if (!src) return lr__fail(err, LR_ENOMEM, "adapter config: out of memory");
    snprintf(src, n, "^(.*\\.)?(%s)$", key);
    int rc = regcomp(re, src, REG_EXTENDED | REG_NOSUB);
    free(src);
    if (rc == 0) return LR_OK;
    char why[128];
    regerror(rc, re, why, sizeof why);
    return lr__fail(err, LR_EFORMAT, CF ": %s key \"%.80s\" is not a valid regular expression: %s", field,
                    key, why);
}

/* Checks every entry of pattern field `field` (absent, null or an object): keys valid
 * regexes, values positive integers (rank_pattern) or positive numbers float32 holds
 * (alpha_pattern); hit[i] <- the value of the first key matching target layer i (NULL: none).
 * Each key is compiled once. *n <- the number of entries. */
static lr_status pattern_apply(const json_t **hit, size_t *n, const json_t *pat, const char *field, bool is_rank,
                               const lr_mlp *net, uint32_t targets, lr_err *err)
{
    *n = 0;
    for (size_t i = 0; i < net->n_layers; i++) hit[i] = NULL;
    if (!pat || json_is_null(pat)) return LR_OK;
    if (!json_is_object(pat))
        return lr__fail(err, LR_EFORMAT, CF ": %s must be an object mapping module names to %s", field,
                        is_rank ? "ranks" : "alphas");
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)pat, key, v) {
        double x = json_is_number(v) ? json_number_value(v) : NAN;
        if (is_rank && !(json_is_integer(v) && json_integer_value(v) >= 1))
            return lr__fail(err, LR_EFORMAT, CF ": %s[\"%.80s\"] must be an integer >= 1", field, key);
        if (!is_rank && !(x > 0 && isfinite((float)x)))
            return lr__fail(err, LR_EFORMAT, CF ": %s[\"%.80s\"] must be a number > 0 that float32 "
                            "holds (at most 3.4e38)", field, key);
        regex_t re;
        lr_status s = pattern_compile(&re, field, key, err);
        if (s) return s;
        for (size_t i = 0; i < net->n_layers; i++) /* the first matching key wins */
            if ((targets & (1u << i)) && !hit[i] && regexec(&re, net->layer[i].name, 0, NULL, 0) == 0)
                hit[i] = v;
        regfree(&re);
        (*n)++;
    }
    return LR_OK;
}

/* info->layer_rank / layer_alpha <- each target layer's r_l, α_l (the patterns, or r and
 * lora_alpha); info->cfg.rank <- R = max r_l, the rank the adapter is loaded at. */
static lr_status resolve_patterns(const json_t *o, const lr_mlp *net, lr_adapter_info *info, lr_err *err)
{
    const json_t *hr[LR_MLP_MAX_LAYERS], *ha[LR_MLP_MAX_LAYERS];
    size_t nr, na;
    uint32_t t = info->cfg.targets;
    lr_status s = pattern_apply(hr, &nr, json_object_get(o, "rank_pattern"), "rank_pattern", true, net, t, err);
    if (!s) s = pattern_apply(ha, &na, json_object_get(o, "alpha_pattern"), "alpha_pattern", false, net, t, err);
    if (s) return s;
    info->has_patterns = nr + na > 0;
    size_t max_r = 0;
    for (size_t i = 0; i < net->n_layers; i++) {
        if (!(t & (1u << i))) continue;
        info->layer_rank[i] = hr[i] ? (size_t)json_integer_value(hr[i]) : info->cfg.rank;
        info->layer_alpha[i] = ha[i] ? (float)json_number_value(ha[i]) : info->cfg.alpha;
        if (info->layer_rank[i] > max_r) max_r = info->layer_rank[i];
    }
    info->cfg.rank = max_r;
    return LR_OK;
}

static lr_status parse_config(const json_t *o, const lr_mlp *net, lr_adapter_info *info, lr_err *err)
{
    memset(info, 0, sizeof *info);
    info->cfg = lr_lora_opts_default();
    if (!json_is_object(o)) return lr__fail(err, LR_EFORMAT, CF ": the top level is not a JSON object");
    const json_t *v = json_object_get(o, "peft_type");
    if (!v) return lr__fail(err, LR_EFORMAT, CF ": missing field \"peft_type\"");
    if (!json_is_string(v) || strcmp(json_string_value(v), "LORA") != 0)
        return lr__fail(err, LR_EFORMAT, CF ": peft_type is %s%s%s, expected \"LORA\"",
                        json_is_string(v) ? "\"" : "", json_is_string(v) ? json_string_value(v) : "not a string",
                        json_is_string(v) ? "\"" : "");
    v = json_object_get(o, "r");
    if (!v) return lr__fail(err, LR_EFORMAT, CF ": missing field \"r\"");
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return lr__fail(err, LR_EFORMAT, CF ": r must be an integer >= 1");
    info->cfg.rank = (size_t)json_integer_value(v);
    v = json_object_get(o, "lora_alpha");
    if (!v) return lr__fail(err, LR_EFORMAT, CF ": missing field \"lora_alpha\"");
    double a = json_is_number(v) ? json_number_value(v) : NAN;
    if (!json_is_number(v)) return lr__fail(err, LR_EFORMAT, CF ": lora_alpha is not a number");
    if (!(a > 0) || !isfinite((float)a))
        return lr__fail(err, LR_EFORMAT, CF ": lora_alpha is %g, expected a number > 0 that float32 holds "
                        "(at most 3.4e38)", a);
    info->cfg.alpha = (float)a;
    v = json_object_get(o, "use_rslora");
    if (v && !json_is_boolean(v)) return lr__fail(err, LR_EFORMAT, CF ": use_rslora must be true or false");
    info->cfg.use_rslora = v && json_is_true(v);
    v = json_object_get(o, "inference_mode");
    info->inference_mode = v && json_is_true(v);
    v = json_object_get(o, "init_lora_weights");
    if (v && !json_is_boolean(v) && !json_is_string(v))
        return lr__fail(err, LR_EFORMAT, CF ": init_lora_weights is %s, expected true, false or a string",
                        json_is_number(v) ? "a number" : json_is_null(v) ? "null" : "not a string");
    if (v && json_is_string(v) && json_string_length(v) >= sizeof info->init_lora_weights)
        return lr__fail(err, LR_EFORMAT, CF ": init_lora_weights \"%.40s...\" is longer than %zu characters",
                        json_string_value(v), sizeof info->init_lora_weights - 1);
    snprintf(info->init_lora_weights, sizeof info->init_lora_weights, "%s",
             !v ? "true" : json_is_string(v) ? json_string_value(v) : json_is_false(v) ? "false" : "true");
    info->cfg.init = strcmp(info->init_lora_weights, "pissa") == 0 ? LR_LORA_INIT_PISSA
                                                                  : LR_LORA_INIT_GAUSSIAN;
    v = json_object_get(o, "base_model_name_or_path");
    if (v && json_is_string(v) && json_string_length(v) >= sizeof info->base_model)
        return lr__fail(err, LR_EFORMAT, CF ": base_model_name_or_path is longer than %zu characters",
                        sizeof info->base_model - 1);
    if (v && json_is_string(v))
        snprintf(info->base_model, sizeof info->base_model, "%s", json_string_value(v));
    /* what we do not implement is refused, not silently dropped */
    v = json_object_get(o, "bias");
    if (v && !json_is_null(v) && !(json_is_string(v) && strcmp(json_string_value(v), "none") == 0))
        return lr__fail(err, LR_EFORMAT, CF ": bias must be \"none\" (trained biases are not supported)");
    static const char *unsupported[] = { "use_dora", "fan_in_fan_out", "modules_to_save",
                                         "layers_to_transform", "layer_replication" };
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
        if (!lr__json_unset(json_object_get(o, unsupported[i])))
            return lr__fail(err, LR_EFORMAT, CF ": %s is set, which is not supported", unsupported[i]);
    v = json_object_get(o, "target_modules");
    if (!v) return lr__fail(err, LR_EFORMAT, CF ": missing field \"target_modules\"");
    if (json_is_string(v))
        return lr__fail(err, LR_EFORMAT, CF ": target_modules is a string (a regular expression); "
                        "a list of layer names is expected");
    if (!json_is_array(v) || json_array_size(v) == 0)
        return lr__fail(err, LR_EFORMAT, CF ": target_modules must be a non-empty list of layer names");
    uint32_t mask = 0;
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *s = json_array_get(v, i);
        if (!json_is_string(s))
            return lr__fail(err, LR_EFORMAT, CF ": target_modules[%zu] is not a string", i);
        int l = lr_mlp_find_layer(net, json_string_value(s));
        if (l < 0)
            return lr__fail(err, LR_EDIM, CF ": target_modules names \"%s\", which is not a layer of "
                            "the base (linear1..linear%zu)", json_string_value(s), net->n_layers);
        mask |= 1u << l;
    }
    info->cfg.targets = mask;
    return resolve_patterns(o, net, info, err);
}

lr_status lr__adapter_config_parse(const lr_mlp *net, lr_adapter_info *info, const void *buf, size_t n,
                                  const char *name, lr_err *err)
{
    json_error_t je;
    json_t *o = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &je);
    if (!o) return lr__fail(err, LR_EFORMAT, "%s: line %d: %s", name, je.line, je.text);
    lr_status s = parse_config(o, net, info, err);
    json_decref(o);
    return s;
}

/* A PEFT config is about 1 KB; anything past this is not one. */
#define CONFIG_MAX ((size_t)16 << 20)

static lr_status read_config(const lr_mlp *net, const char *dir, lr_adapter_info *info, lr_err *err)
{
    char *path = join(dir, CF);
    if (!path) return lr__fail(err, LR_ENOMEM, "out of memory");
    unsigned char *buf;
    size_t n;
    lr_status s = lr__read_regular(&buf, &n, path, "a JSON adapter config", CONFIG_MAX, err);
    if (!s) s = lr__adapter_config_parse(net, info, buf, n, path, err);
    free(buf);
    free(path);
    return s;
}

lr_status lr_adapter_read_config(const lr_lora *lm, const char *dir, lr_adapter_info *info, lr_err *err)
{
    if (!lm || !dir || !info) return lr__fail(err, LR_EINVAL, "lr_adapter_read_config: NULL argument");
    return read_config(lr_lora_net(lm), dir, info, err);
}

/* ---------------------------------------------------------------- save ------------ */

/* The adapter as a general PEFT adapter (peft.h), whose writer does the files. */
static lr_status to_peft(lr_peft *ad, const lr_lora *lm, const char *name, const lr_lora_opts *cfg,
                         const char *base_model, lr_err *err)
{
    const lr_mlp *net = lr_lora_net(lm);
    memset(ad, 0, sizeof *ad);
    ad->use_rslora = cfg->use_rslora;
    ad->init = strdup(lr_lora_initializer_name(cfg->init));
    ad->base_model = base_model ? strdup(base_model) : NULL;
    if (!ad->init || (base_model && !ad->base_model)) return lr__fail(err, LR_ENOMEM, "lr_adapter_save: out of memory");
    for (size_t i = 0; i < net->n_layers; i++) {
        const lr_lora_weights *w = lr_lora_layer(lm, name, i);
        if (!w) continue;
        /* A and B are owned with ld = cols: C-ordered, as lr_peft_insert copies them */
        lr_status s = lr_peft_insert(ad, net->layer[i].name, w->b.rows, w->a.cols, w->a.rows, (double)cfg->alpha,
                                  w->a.data, w->b.data, err);
        if (s) return s;
    }
    return LR_OK;
}

lr_status lr_adapter_save(const lr_lora *lm, const char *dir, const char *name, const char *base_model,
                          lr_err *err)
{
    if (!lm || !name || !dir) return lr__fail(err, LR_EINVAL, "lr_adapter_save: NULL argument");
    const lr_lora_opts *cfg = lr_lora_opts_of(lm, name);
    if (!cfg) return lr__fail(err, LR_EINVAL, "lr_adapter_save: no adapter named \"%s\"", name);
    lr_peft ad;
    lr_status s = to_peft(&ad, lm, name, cfg, base_model, err);
    if (!s) s = lr_peft_write(&ad, dir, LR_ST_F32, err);
    lr_peft_free(&ad);
    return s;
}

/* ---------------------------------------------------------------- load ------------ */

/* Reads tensor `key` of shape (rows, cols) into dst, checked finite; a rank mismatch gets
 * the config's r_l appended to the message. */
static lr_status read_factor(lr_safetensors *st, float *dst, const char *key, size_t rows, size_t cols,
                             int rank_dim, size_t r, bool patterned, lr_err *err)
{
    size_t shape[2] = { rows, cols };
    lr_status s = lr_safetensors_get_f32(st, dst, key, 2, shape, err);
    if (s == LR_EDIM && err) {
        const lr_st_tensor *t = lr_safetensors_find(st, key);
        size_t got_r = t && t->ndim == 2 ? t->shape[rank_dim] : r;
        if (got_r != r) {
            size_t n = strlen(err->msg);
            snprintf(err->msg + n, sizeof err->msg - n, " (rank %zu in the tensor, r = %zu %s " CF ")",
                     got_r, r, patterned ? "for this layer in" : "in");
        }
    }
    for (size_t q = 0; !s && q < rows * cols; q++)
        if (!isfinite(dst[q]))
            s = lr__fail(err, LR_ENONFINITE, "%s: %s: entry (%zu, %zu) is %s", lr_safetensors_path(st), key,
                         q / cols, q % cols, isnan(dst[q]) ? "NaN" : "Inf");
    return s;
}

/* One target layer at the adapter's rank R: a: (R, in) <- the file's A (r_l, in) over zero
 * rows; b: (out, R) <- fold · the file's B (out, r_l) beside zero columns. a and b are
 * zeroed by the caller; tmp has room for out·r_l floats. */
static lr_status read_layer(lr_safetensors *st, float *a, float *b, float *tmp, const lr_layer *ly,
                            size_t r_l, size_t R, float fold, bool patterned, lr_err *err)
{
    char key[KEY_MAX];
    tensor_key(key, ly->name, 'A');
    lr_status s = read_factor(st, a, key, r_l, ly->in, 0, r_l, patterned, err); /* rows >= r_l stay 0 */
    if (s) return s;
    tensor_key(key, ly->name, 'B');
    if ((s = read_factor(st, tmp, key, ly->out, r_l, 1, r_l, patterned, err))) return s;
    for (size_t i = 0; i < ly->out; i++)
        for (size_t k = 0; k < r_l; k++) {
            float v = fold * tmp[i * r_l + k];
            if (!isfinite(v))
                return lr__fail(err, LR_ERANGE, "%s: %s: entry (%zu, %zu) times the layer's scale ratio "
                                "%g overflows float32", lr_safetensors_path(st), key, i, k, (double)fold);
            b[i * R + k] = v;
        }
    return LR_OK;
}

lr_status lr_adapter_load(lr_lora *lm, const char *dir, const char *name, lr_adapter_info *info, lr_err *err)
{
    if (!lm || !name || !dir) return lr__fail(err, LR_EINVAL, "lr_adapter_load: NULL argument");
    if (lr_lora_opts_of(lm, name))
        return lr__fail(err, LR_EINVAL, "lr_adapter_load: adapter \"%s\" already exists", name);
    const lr_mlp *net = lr_lora_net(lm);
    lr_adapter_info inf;
    lr_status s = read_config(net, dir, &inf, err);
    if (s) return s;
    if (lr_lora_is_merged(lm))
        return lr__fail(err, LR_EINVAL, "lr_adapter_load: an adapter is merged into the base; unmerge "
                        "it first");
    char *wpath = join(dir, LR_ADAPTER_WEIGHTS);
    if (!wpath) return lr__fail(err, LR_ENOMEM, "lr_adapter_load: out of memory");
    lr_safetensors st_, *st = &st_;
    s = lr_safetensors_open(st, wpath, err);
    /* read every tensor into scratch first: lm changes only when all of them are good */
    float *buf[2 * LR_MLP_MAX_LAYERS] = { NULL };
    size_t nb = 0, R = inf.cfg.rank;
    float scale = lr_lora_scale(R, inf.cfg.alpha, inf.cfg.use_rslora);
    for (size_t i = 0; i < net->n_layers && !s; i++, nb += 2) {
        if (!(inf.cfg.targets & (1u << i))) continue;
        const lr_layer *ly = &net->layer[i];
        size_t r_l = inf.layer_rank[i];
        float fold = lr_lora_scale(r_l, inf.layer_alpha[i], inf.cfg.use_rslora) / scale;
        float *tmp = malloc(ly->out * r_l * sizeof(float));
        buf[nb] = calloc(R * ly->in, sizeof(float));     /* A: (R, in)  */
        buf[nb + 1] = calloc(ly->out * R, sizeof(float)); /* B: (out, R) */
        if (!tmp || !buf[nb] || !buf[nb + 1]) s = lr__fail(err, LR_ENOMEM, "lr_adapter_load: out of memory");
        else s = read_layer(st, buf[nb], buf[nb + 1], tmp, ly, r_l, R, fold, inf.has_patterns, err);
        free(tmp);
    }
    if (!s) s = lr_safetensors_check_all_used(st, err);
    if (!s) {
        lr_lora_opts cfg = inf.cfg;
        s = lr__lora_add_zero(lm, name, &cfg, err);
    }
    if (!s) {
        for (size_t i = 0; i < net->n_layers; i++) {
            lr_lora_weights *w = lr_lora_layer(lm, name, i);
            if (!w) continue;
            memcpy(w->a.data, buf[2 * i], w->a.rows * w->a.cols * sizeof(float));
            memcpy(w->b.data, buf[2 * i + 1], w->b.rows * w->b.cols * sizeof(float));
        }
        if (info) *info = inf;
    }
    for (size_t i = 0; i < 2 * LR_MLP_MAX_LAYERS; i++) free(buf[i]);
    lr_safetensors_free(st);
    free(wpath);
    return s;
}
