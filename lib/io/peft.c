/* peft.c — PEFT LoRA adapter directories for any model (peft.h): per-layer ranks and scales
 * through rank_pattern / alpha_pattern, read strictly and written crash-safely. JSON is
 * jansson's, tensors safetensors.h's, patterns POSIX <regex.h>. */
#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include "lowrank/io/peft.h"
#include "lowrank/io/atomicfile.h"
#include "lowrank/base/mat.h"
#include "base/internal.h"
#include "io/peft_internal.h"
#include "io/readfile.h"
#include "io/regex_internal.h"

#define PREFIX "base_model.model."
#define CONFIG_MAX ((size_t)16 << 20)

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static char *dup_str(const char *s)
{
    char *d = s ? malloc(strlen(s) + 1) : NULL;
    if (d) strcpy(d, s);
    return d;
}

void lr_peft_free(lr_peft *ad)
{
    if (!ad) return;
    for (size_t i = 0; i < ad->n; i++) {
        free(ad->layer[i].module);
        free(ad->layer[i].a);
        free(ad->layer[i].b);
    }
    free(ad->layer);
    for (size_t i = 0; i < ad->n_saved; i++) free(ad->saved[i]);
    free(ad->saved);
    free(ad->base_model);
    free(ad->init);
    memset(ad, 0, sizeof *ad);
}

const lr_peft_layer *lr_peft_find(const lr_peft *ad, const char *module)
{
    for (size_t i = 0; ad && module && i < ad->n; i++)
        if (!strcmp(ad->layer[i].module, module)) return &ad->layer[i];
    return NULL;
}

double lr_peft_scale(const lr_peft *ad, const lr_peft_layer *l)
{
    if (!ad || !l || l->r == 0) return 0;
    return ad->use_rslora ? l->alpha / sqrt((double)l->r) : l->alpha / (double)l->r;
}

lr_status lr_peft_module_of(char *module, size_t cap, const char *tensor, lr_err *err)
{
    if (!module || !tensor) return lr__fail(err, LR_EINVAL, "lr_peft_module_of: NULL argument");
    size_t n = strlen(tensor), w = strlen(".weight");
    if (n > w && !strcmp(tensor + n - w, ".weight")) n -= w;
    if (n + 1 > cap) return lr__fail(err, LR_ERANGE, "%s: name longer than %zu bytes", tensor, cap - 1);
    memcpy(module, tensor, n);
    module[n] = 0;
    return LR_OK;
}

static int by_module(const void *a, const void *b)
{
    return strcmp(((const lr_peft_layer *)a)->module, ((const lr_peft_layer *)b)->module);
}

static lr_status add(lr_peft *ad, const char *module, size_t out, size_t in, size_t r, double alpha, const float *a,
                     const float *b, bool embedding, lr_err *err)
{
    if (!ad || !module || !a || !b) return lr__fail(err, LR_EINVAL, "lr_peft_insert: NULL argument");
    if (!*module) return lr__fail(err, LR_EINVAL, "lr_peft_insert: empty module name");
    if (r == 0 || out == 0 || in == 0)
        return lr__fail(err, LR_EINVAL, "lr_peft_insert: %s: empty factors (out %zu, in %zu, r %zu)", module, out, in, r);
    if (!(alpha > 0) || !isfinite(alpha)) return lr__fail(err, LR_EINVAL, "lr_peft_insert: %s: alpha %g", module, alpha);
    if (lr_peft_find(ad, module)) return lr__fail(err, LR_EINVAL, "lr_peft_insert: %s: added twice", module);
    size_t na, nb;
    if (lr_size_mul(&na, r, in, NULL) || lr_size_mul(&nb, out, r, NULL) || na > SIZE_MAX / 4 || nb > SIZE_MAX / 4)
        return lr__fail(err, LR_ERANGE, "lr_peft_insert: %s: too large", module);
    lr_peft_layer *grown = realloc(ad->layer, (ad->n + 1) * sizeof *grown);
    if (!grown) return lr__fail(err, LR_ENOMEM, "lr_peft_insert: out of memory");
    ad->layer = grown;
    lr_peft_layer l = { dup_str(module), out, in, r, alpha, malloc(na * 4), malloc(nb * 4), embedding };
    if (!l.module || !l.a || !l.b) {
        free(l.module), free(l.a), free(l.b);
        return lr__fail(err, LR_ENOMEM, "lr_peft_insert: out of memory");
    }
    memcpy(l.a, a, na * 4);
    memcpy(l.b, b, nb * 4);
    ad->layer[ad->n++] = l;
    qsort(ad->layer, ad->n, sizeof *ad->layer, by_module);
    return LR_OK;
}

lr_status lr_peft_insert(lr_peft *ad, const char *module, size_t out, size_t in, size_t r, double alpha,
                      const float *a, const float *b, lr_err *err)
{
    return add(ad, module, out, in, r, alpha, a, b, false, err);
}

lr_status lr_peft_insert_embedding(lr_peft *ad, const char *module, size_t out, size_t in, size_t r, double alpha,
                                const float *a, const float *b, lr_err *err)
{
    return add(ad, module, out, in, r, alpha, a, b, true, err);
}

/* ------------------------------------------------------------- patterns ----------- */

/* Does PEFT's (.*\.)?(key)$ match the whole module name? -1 for a bad expression. */
static int pattern_match(const char *key, const char *module)
{
    const char *why;
    if (!lr__regex_check(key, &why)) return -1;
    size_t n = strlen(key) + 16;
    char *re = malloc(n);
    if (!re) return -1;
    snprintf(re, n, "^(.*\\.)?(%s)$", key);
    regex_t rx;
    int bad = regcomp(&rx, re, REG_EXTENDED | REG_NOSUB);
    free(re);
    if (bad) return -1;
    int hit = regexec(&rx, module, 0, NULL, 0) == 0;
    regfree(&rx);
    return hit;
}

/* *value <- the pattern's value for module, or leaves it; checks every key and value. */
static lr_status pattern_lookup(const json_t *pat, const char *field, const char *module, double *value,
                                bool integer, const char *cf, lr_err *err)
{
    if (!pat || json_is_null(pat)) return LR_OK;
    if (!json_is_object(pat)) return lr__fail(err, LR_EFORMAT, "%s: %s is not an object", cf, field);
    const char *key;
    const json_t *v;
    bool done = false;
    json_object_foreach((json_t *)pat, key, v) {
        double x = json_is_number(v) ? json_number_value(v) : NAN;
        if (integer ? !json_is_integer(v) || json_integer_value(v) < 1 : !(x > 0) || !isfinite((float)x))
            return lr__fail(err, LR_EFORMAT, "%s: %s[\"%s\"]: expected %s", cf, field, key,
                            integer ? "an integer >= 1" : "a number > 0 that float32 holds");
        int m = pattern_match(key, module);
        if (m < 0) return lr__fail(err, LR_EFORMAT, "%s: %s: key \"%s\" is not a valid regular expression", cf, field, key);
        if (m && !done) *value = x, done = true;
    }
    return LR_OK;
}

/* ------------------------------------------------------------- reading ------------ */

typedef struct {
    const json_t *o;
    const char *cf; /* the config's path, for messages */
    size_t r;
    double alpha;
    bool keep_saved; /* lr_peft_read_opts.keep_saved */
} config;

lr_peft_read_opts lr_peft_read_opts_default(void)
{
    return (lr_peft_read_opts){ .keep_saved = false };
}

/* modules_to_save as "a, b" for a message (cap bytes). */
static const char *saved_list(const json_t *v, char *buf, size_t cap)
{
    size_t k = 0, i;
    json_t *e;
    buf[0] = 0;
    json_array_foreach(v, i, e) {
        int n = snprintf(buf + k, cap - k, "%s%s", i ? ", " : "", json_is_string(e) ? json_string_value(e) : "?");
        if (n < 0 || (size_t)n >= cap - k) break;
        k += (size_t)n;
    }
    return buf;
}

bool lr__json_unset(const json_t *v)
{
    if (!v || json_is_null(v) || json_is_false(v)) return true;
    if (json_is_object(v)) return json_object_size(v) == 0;
    if (json_is_array(v)) return json_array_size(v) == 0;
    if (json_is_string(v)) return json_string_length(v) == 0;
    return false;
}

static lr_status parse_config(config *c, lr_peft *ad, lr_err *err)
{
    const json_t *o = c->o, *v;
    const char *cf = c->cf;
    if (!json_is_object(o)) return lr__fail(err, LR_EFORMAT, "%s: the top level is not a JSON object", cf);
    v = json_object_get(o, "peft_type");
    if (!json_is_string(v) || strcmp(json_string_value(v), "LORA"))
        return lr__fail(err, LR_EFORMAT, "%s: peft_type is %s, expected \"LORA\"", cf,
                        !v ? "missing" : json_is_string(v) ? json_string_value(v) : "not a string");
    v = json_object_get(o, "r");
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return lr__fail(err, LR_EFORMAT, "%s: r is %s, expected an integer >= 1", cf, v ? "not" : "missing");
    c->r = (size_t)json_integer_value(v);
    v = json_object_get(o, "lora_alpha");
    c->alpha = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(c->alpha > 0) || !isfinite((float)c->alpha))
        return lr__fail(err, LR_EFORMAT, "%s: lora_alpha is %s, expected a number > 0 that float32 holds", cf,
                        v ? "bad" : "missing");
    v = json_object_get(o, "use_rslora");
    if (v && !json_is_boolean(v)) return lr__fail(err, LR_EFORMAT, "%s: use_rslora must be true or false", cf);
    ad->use_rslora = v && json_is_true(v);
    v = json_object_get(o, "bias");
    if (v && !json_is_null(v) && !(json_is_string(v) && !strcmp(json_string_value(v), "none")))
        return lr__fail(err, LR_EFORMAT, "%s: bias must be \"none\" (trained biases are not supported)", cf);
    v = json_object_get(o, "modules_to_save");
    if (!lr__json_unset(v) && !json_is_array(v))
        return lr__fail(err, LR_EFORMAT, "%s: modules_to_save is not a list of module names", cf);
    char names[256];
    if (!lr__json_unset(v) && !c->keep_saved)
        return lr__fail(err, LR_EFORMAT, "%s: modules_to_save is set (%s): full copies of those modules, not LoRA "
                        "layers, which this reader does not take (lr_peft_read_opts.keep_saved lists them)", cf,
                        saved_list(v, names, sizeof names));
    static const char *unsupported[] = { "use_dora", "fan_in_fan_out", "layers_to_transform", "layer_replication" };
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
        if (!lr__json_unset(json_object_get(o, unsupported[i])))
            return lr__fail(err, LR_EFORMAT, "%s: %s is set, which is not supported", cf, unsupported[i]);
    v = json_object_get(o, "base_model_name_or_path");
    if (json_is_string(v) && !(ad->base_model = dup_str(json_string_value(v))))
        return lr__fail(err, LR_ENOMEM, "out of memory");
    v = json_object_get(o, "init_lora_weights");
    ad->init = dup_str(!v || json_is_true(v) ? "true" : json_is_false(v) ? "false"
                       : json_is_string(v) ? json_string_value(v) : "other");
    if (!ad->init) return lr__fail(err, LR_ENOMEM, "out of memory");
    v = json_object_get(o, "target_modules");
    if (!json_is_string(v) && !json_is_array(v))
        return lr__fail(err, LR_EFORMAT, "%s: target_modules is %s, expected a list of names or a regular "
                        "expression", cf, v ? "neither" : "missing");
    return LR_OK;
}

/* Is module one of target_modules (PEFT's rule, peft.h)? */
static lr_status check_target(const config *c, const char *module, lr_err *err)
{
    const json_t *t = json_object_get(c->o, "target_modules");
    const char *why;
    if (json_is_string(t) && !lr__regex_check(json_string_value(t), &why))
        return lr__fail(err, LR_EFORMAT, "%s: target_modules is not accepted as a regular expression: %s", c->cf, why);
    if (json_is_string(t)) {
        regex_t rx;
        size_t n = json_string_length(t) + 8;
        char *re = malloc(n);
        if (!re) return lr__fail(err, LR_ENOMEM, "out of memory");
        snprintf(re, n, "^(%s)$", json_string_value(t));
        int bad = regcomp(&rx, re, REG_EXTENDED | REG_NOSUB);
        free(re);
        if (bad) return lr__fail(err, LR_EFORMAT, "%s: target_modules is not a valid regular expression", c->cf);
        int hit = regexec(&rx, module, 0, NULL, 0) == 0;
        regfree(&rx);
        if (hit) return LR_OK;
    } else {
        size_t i, ml = strlen(module);
        const json_t *e;
        json_array_foreach(t, i, e) {
            if (!json_is_string(e))
                return lr__fail(err, LR_EFORMAT, "%s: target_modules[%zu] is not a string", c->cf, i);
            const char *s = json_string_value(e);
            size_t sl = strlen(s);
            if (!strcmp(s, module) || (ml > sl && module[ml - sl - 1] == '.' && !strcmp(module + ml - sl, s)))
                return LR_OK;
        }
    }
    return lr__fail(err, LR_EFORMAT, "%s: the weights adapt module \"%s\", which target_modules does not name",
                    c->cf, module);
}

/* The two spellings of a LoRA tensor's tail: a linear layer's and an embedding's. */
static const char *const TAIL[2][2] = { { ".lora_A.weight", ".lora_B.weight" },
                                        { ".lora_embedding_A", ".lora_embedding_B" } };

/* "base_model.model.<module>.lora_A.weight" (or .lora_embedding_A) -> module (malloc'd),
 * which ('A'/'B') and *emb; NULL if not */
static char *parse_key(const char *key, char *which, bool *emb)
{
    size_t n = strlen(key), p = strlen(PREFIX), s = 0;
    if (n <= p || strncmp(key, PREFIX, p)) return NULL;
    for (int e = 0; e < 2 && !s; e++)
        for (int w = 0; w < 2 && !s; w++) {
            size_t k = strlen(TAIL[e][w]);
            if (n > p + k && !strcmp(key + n - k, TAIL[e][w])) s = k, *which = w ? 'B' : 'A', *emb = e;
        }
    if (!s) return NULL;
    char *m = malloc(n - p - s + 1);
    if (m) {
        memcpy(m, key + p, n - p - s);
        m[n - p - s] = 0;
    }
    return m;
}

static lr_status check_finite(const float *x, size_t rows, size_t cols, const char *file, const char *key,
                              lr_err *err)
{
    for (size_t q = 0; q < rows * cols; q++)
        if (!isfinite(x[q]))
            return lr__fail(err, LR_ENONFINITE, "%s: %s: entry (%zu, %zu) is %s", file, key, q / cols, q % cols,
                            isnan(x[q]) ? "NaN" : "Inf");
    return LR_OK;
}

static lr_status read_layer(lr_peft *ad, lr_safetensors *st, const config *c, const char *module, bool emb,
                            lr_err *err)
{
    const char *wp = lr_safetensors_path(st);
    size_t n = strlen(module) + 40;
    char *ka = malloc(n), *kb = malloc(n);
    float *a = NULL, *b = NULL;
    lr_status s = LR_OK;
    if (!ka || !kb) s = lr__fail(err, LR_ENOMEM, "out of memory");
    if (!s) {
        snprintf(ka, n, PREFIX "%s%s", module, TAIL[emb][0]);
        snprintf(kb, n, PREFIX "%s%s", module, TAIL[emb][1]);
    }
    const lr_st_tensor *ta = s ? NULL : lr_safetensors_find(st, ka), *tb = s ? NULL : lr_safetensors_find(st, kb);
    if (!s && (!ta || !tb)) s = lr__fail(err, LR_EFORMAT, "%s: %s has no matching %s", wp, ta ? ka : kb, ta ? kb : ka);
    if (!s && (ta->ndim != 2 || tb->ndim != 2))
        s = lr__fail(err, LR_EDIM, "%s: %s: expected a 2-D tensor, got %zu dimensions", wp,
                     ta->ndim != 2 ? ka : kb, ta->ndim != 2 ? ta->ndim : tb->ndim);
    double rr = (double)c->r, alpha = c->alpha;
    if (!s) s = pattern_lookup(json_object_get(c->o, "rank_pattern"), "rank_pattern", module, &rr, true, c->cf, err);
    if (!s) s = pattern_lookup(json_object_get(c->o, "alpha_pattern"), "alpha_pattern", module, &alpha, false, c->cf, err);
    if (!s) s = check_target(c, module, err);
    size_t r = (size_t)rr;
    if (!s && (ta->shape[0] != r || tb->shape[1] != r))
        s = lr__fail(err, LR_EDIM, "%s: %s: rank %zu in the tensor, expected %zu (r / rank_pattern in %s)", wp,
                     ta->shape[0] != r ? ka : kb, ta->shape[0] != r ? ta->shape[0] : tb->shape[1], r, c->cf);
    size_t in = s ? 0 : ta->shape[1], out = s ? 0 : tb->shape[0];
    if (!s && (in == 0 || out == 0)) s = lr__fail(err, LR_EDIM, "%s: %s: an empty layer (%zu x %zu)", wp, module, out, in);
    size_t sa[2] = { r, in }, sb[2] = { out, r };
    if (!s && (!(a = malloc(r * in * 4)) || !(b = malloc(out * r * 4)))) s = lr__fail(err, LR_ENOMEM, "out of memory");
    if (!s) s = lr_safetensors_get_f32(st, a, ka, 2, sa, err);
    if (!s) s = lr_safetensors_get_f32(st, b, kb, 2, sb, err);
    if (!s) s = check_finite(a, r, in, wp, ka, err);
    if (!s) s = check_finite(b, out, r, wp, kb, err);
    if (!s) s = add(ad, module, out, in, r, alpha, a, b, emb, err);
    free(a), free(b), free(ka), free(kb);
    return s;
}

static lr_status parse_json(config *c, json_t **o, lr_peft *ad, const void *buf, size_t n, const char *cf,
                            lr_err *err)
{
    json_error_t je;
    *o = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, &je);
    if (!*o) return lr__fail(err, LR_EFORMAT, "%s: line %d: %s", cf, je.line, je.text);
    c->o = *o;
    c->cf = cf;
    return parse_config(c, ad, err);
}

static lr_status read_config(config *c, json_t **o, lr_peft *ad, const char *cf, lr_err *err)
{
    unsigned char *buf;
    size_t n;
    lr_status s = lr__read_regular(&buf, &n, cf, "a JSON adapter config", CONFIG_MAX, err);
    if (s) return s;
    s = parse_json(c, o, ad, buf, n, cf, err);
    free(buf);
    return s;
}

/* Is key ("base_model.model.lm_head.weight") a tensor of a module modules_to_save names (the
 * module's name is an entry or ends in "." + an entry, PEFT's rule)? */
static bool is_saved(const config *c, const char *key)
{
    size_t p = strlen(PREFIX), i;
    const char *dot = strrchr(key, '.');
    const json_t *v = json_object_get(c->o, "modules_to_save"), *e;
    if (!c->keep_saved || strncmp(key, PREFIX, p) || !dot || dot < key + p) return false;
    size_t m = (size_t)(dot - (key + p));
    json_array_foreach(v, i, e) {
        const char *s = json_string_value(e);
        size_t k = s ? strlen(s) : 0;
        if (k && k <= m && !strncmp(key + p + m - k, s, k) && (k == m || key[p + m - k - 1] == '.')) return true;
    }
    return false;
}

/* Records a modules_to_save tensor's name (without the prefix) in ad->saved; not loaded. */
static lr_status keep_saved(lr_peft *ad, lr_safetensors *st, const char *key, lr_err *err)
{
    char **grown = realloc(ad->saved, (ad->n_saved + 1) * sizeof *grown);
    if (!grown) return lr__fail(err, LR_ENOMEM, "out of memory");
    ad->saved = grown;
    if (!(ad->saved[ad->n_saved] = dup_str(key + strlen(PREFIX)))) return lr__fail(err, LR_ENOMEM, "out of memory");
    ad->n_saved++;
    return lr_safetensors_mark_used(st, key, err);
}

static lr_status read_tensors(lr_peft *ad, lr_safetensors *st, const config *c, lr_err *err)
{
    lr_status s = LR_OK;
    for (size_t i = 0; i < lr_safetensors_count(st) && !s; i++) {
        const char *key = lr_safetensors_at(st, i)->name;
        char which;
        bool emb = false;
        char *module = parse_key(key, &which, &emb);
        const lr_peft_layer *had = module ? lr_peft_find(ad, module) : NULL;
        if (!module && is_saved(c, key))
            s = keep_saved(ad, st, key, err);
        else if (!module)
            s = lr__fail(err, LR_EFORMAT, "%s: tensor \"%s\" is not a LoRA weight (expected " PREFIX
                         "<module>.lora_A.weight or .lora_B.weight, or .lora_embedding_A / _B)",
                         lr_safetensors_path(st), key);
        else if (had && had->embedding != emb) /* one module both a linear layer and an embedding */
            s = lr__fail(err, LR_EFORMAT, "%s: module %s has both lora_A/B and lora_embedding_A/B tensors",
                         lr_safetensors_path(st), module);
        else if (!had) /* the first of its A and B (either order); alone: read_layer says */
            s = read_layer(ad, st, c, module, emb, err);
        free(module);
    }
    if (!s) s = lr_safetensors_check_all_used(st, err); /* a lora_B without its lora_A */
    if (!s && ad->n == 0) s = lr__fail(err, LR_EFORMAT, "%s: no LoRA weights", lr_safetensors_path(st));
    return s;
}

lr_status lr__peft_from_memory(lr_peft *ad, const void *cfg, size_t ncfg, const void *weights, size_t nweights,
                               lr_err *err)
{
    if (!ad || (!cfg && ncfg) || (!weights && nweights)) return lr__fail(err, LR_EINVAL, "peft: NULL argument");
    memset(ad, 0, sizeof *ad);
    json_t *o = NULL;
    config c = { .keep_saved = true }; /* the fuzzer sees that path too */
    lr_safetensors st = { 0 };
    lr_status s = parse_json(&c, &o, ad, cfg ? cfg : "", ncfg, "adapter_config.json", err);
    if (!s) s = lr_safetensors_from_memory(&st, weights ? weights : "", nweights, "adapter_model.safetensors", err);
    if (!s) s = read_tensors(ad, &st, &c, err);
    if (s) lr_peft_free(ad);
    lr_safetensors_free(&st);
    json_decref(o);
    return s;
}

lr_status lr_peft_read(lr_peft *ad, const char *dir, const lr_peft_read_opts *opts, lr_err *err)
{
    if (!ad || !dir) return lr__fail(err, LR_EINVAL, "lr_peft_read: NULL argument");
    memset(ad, 0, sizeof *ad);
    char *cf = join(dir, "adapter_config.json"), *wf = join(dir, "adapter_model.safetensors");
    json_t *o = NULL;
    config c = { .keep_saved = opts && opts->keep_saved };
    lr_safetensors st = { 0 };
    lr_status s = cf && wf ? LR_OK : lr__fail(err, LR_ENOMEM, "out of memory");
    if (!s) s = read_config(&c, &o, ad, cf, err);
    if (!s) s = lr_safetensors_open(&st, wf, err);
    if (!s) s = read_tensors(ad, &st, &c, err);
    if (s) lr_peft_free(ad);
    lr_safetensors_free(&st);
    json_decref(o);
    free(cf), free(wf);
    return s;
}

/* ------------------------------------------------------------- writing ------------ */

/* the value most layers have (ties: the smallest), for r and lora_alpha */
static size_t common_rank(const lr_peft *ad)
{
    size_t best = ad->layer[0].r, bc = 0;
    for (size_t i = 0; i < ad->n; i++) {
        size_t c = 0;
        for (size_t j = 0; j < ad->n; j++) c += ad->layer[j].r == ad->layer[i].r;
        if (c > bc || (c == bc && ad->layer[i].r < best)) best = ad->layer[i].r, bc = c;
    }
    return best;
}

static double common_alpha(const lr_peft *ad)
{
    double best = ad->layer[0].alpha;
    size_t bc = 0;
    for (size_t i = 0; i < ad->n; i++) {
        size_t c = 0;
        for (size_t j = 0; j < ad->n; j++) c += ad->layer[j].alpha == ad->layer[i].alpha;
        if (c > bc || (c == bc && ad->layer[i].alpha < best)) best = ad->layer[i].alpha, bc = c;
    }
    return best;
}

static json_t *number(double a)
{
    return a == floor(a) && fabs(a) < 1e15 ? json_integer((json_int_t)a) : json_real(a);
}

/* The module name as a regular expression matching just itself: POSIX ERE and Python's re
 * both take a backslash before these characters as the literal character. */
static char *escape_key(const char *module)
{
    char *k = malloc(2 * strlen(module) + 1), *q = k;
    for (const char *p = module; k && *p; p++) {
        if (strchr(".[]{}()*+?^$|\\", *p)) *q++ = '\\';
        *q++ = *p;
    }
    if (k) *q = 0;
    return k;
}

/* Is `key` (a module name) the module itself or a dot-suffix of it, i.e. would PEFT's
 * (.*\.)?(key)$ with the escaped key match the module? */
static bool suffix_match(const char *key, const char *module)
{
    size_t kl = strlen(key), ml = strlen(module);
    return !strcmp(key, module) || (ml > kl && module[ml - kl - 1] == '.' && !strcmp(module + ml - kl, key));
}

static int by_length_desc(const void *a, const void *b)
{
    const lr_peft_layer *x = *(const lr_peft_layer *const *)a, *y = *(const lr_peft_layer *const *)b;
    size_t lx = strlen(x->module), ly = strlen(y->module);
    return lx != ly ? (lx < ly ? 1 : -1) : strcmp(x->module, y->module);
}

/* pat <- the pattern entries (rank when is_rank, else alpha) that make PEFT's rule give every
 * layer its own value: a layer needs an entry when its value differs from the default, or when
 * a shorter module's key (a dot-suffix of its name) would otherwise match it; keys are escaped
 * and the longest come first, so that a module's own key is the first that matches it. */
static int fill_pattern(json_t *pat, const lr_peft *ad, bool is_rank, size_t r, double alpha)
{
    const lr_peft_layer **order = malloc(ad->n * sizeof *order);
    bool *need = calloc(ad->n, sizeof *need);
    int bad = !order || !need;
    for (size_t i = 0; i < ad->n && !bad; i++) order[i] = &ad->layer[i];
    if (!bad) qsort(order, ad->n, sizeof *order, by_length_desc);
    for (size_t i = ad->n; i-- > 0 && !bad;) { /* shortest first: the keys that can match are decided */
        const lr_peft_layer *l = order[i];
        need[i] = is_rank ? l->r != r : l->alpha != alpha;
        for (size_t j = i + 1; j < ad->n && !need[i]; j++) need[i] = need[j] && suffix_match(order[j]->module, l->module);
    }
    for (size_t i = 0; i < ad->n && !bad; i++) {
        if (!need[i]) continue;
        char *key = escape_key(order[i]->module);
        bad |= !key || json_object_set_new(pat, key, is_rank ? json_integer((json_int_t)order[i]->r) : number(order[i]->alpha));
        free(key);
    }
    free(order), free(need);
    return bad;
}

static json_t *config_json(const lr_peft *ad)
{
    json_t *o = json_object(), *tm = json_array(), *rp = json_object(), *ap = json_object();
    size_t r = common_rank(ad);
    double alpha = common_alpha(ad);
    int bad = !o || !tm || !rp || !ap;
    for (size_t i = 0; i < ad->n && !bad; i++) bad |= json_array_append_new(tm, json_string(ad->layer[i].module));
    if (!bad) bad |= fill_pattern(rp, ad, true, r, alpha) | fill_pattern(ap, ad, false, r, alpha);
    if (bad) {
        json_decref(o), json_decref(tm), json_decref(rp), json_decref(ap);
        return NULL;
    }
    /* every field PEFT's LoraConfig serialises, at the values that mean plain LoRA */
    bad |= json_object_set_new(o, "alpha_pattern", ap);
    bad |= json_object_set_new(o, "auto_mapping", json_null());
    bad |= json_object_set_new(o, "base_model_name_or_path", ad->base_model ? json_string(ad->base_model) : json_null());
    bad |= json_object_set_new(o, "bias", json_string("none"));
    bad |= json_object_set_new(o, "fan_in_fan_out", json_false());
    bad |= json_object_set_new(o, "inference_mode", json_true());
    bad |= json_object_set_new(o, "init_lora_weights", !ad->init || !strcmp(ad->init, "true") ? json_true()
                                                       : !strcmp(ad->init, "false") ? json_false()
                                                       : json_string(ad->init));
    bad |= json_object_set_new(o, "layer_replication", json_null());
    bad |= json_object_set_new(o, "layers_pattern", json_null());
    bad |= json_object_set_new(o, "layers_to_transform", json_null());
    bad |= json_object_set_new(o, "loftq_config", json_object());
    bad |= json_object_set_new(o, "lora_alpha", number(alpha));
    bad |= json_object_set_new(o, "lora_dropout", json_real(0.0));
    bad |= json_object_set_new(o, "megatron_config", json_null());
    bad |= json_object_set_new(o, "megatron_core", json_string("megatron.core"));
    bad |= json_object_set_new(o, "modules_to_save", json_null());
    bad |= json_object_set_new(o, "peft_type", json_string("LORA"));
    bad |= json_object_set_new(o, "r", json_integer((json_int_t)r));
    bad |= json_object_set_new(o, "rank_pattern", rp);
    bad |= json_object_set_new(o, "revision", json_null());
    bad |= json_object_set_new(o, "target_modules", tm);
    bad |= json_object_set_new(o, "task_type", json_null());
    bad |= json_object_set_new(o, "use_dora", json_false());
    bad |= json_object_set_new(o, "use_rslora", json_boolean(ad->use_rslora));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* t[2i], t[2i+1] <- layer i's A and B encoded as dtype into bufs (freed by the caller) */
static lr_status encode_tensors(const lr_peft *ad, lr_st_dtype dtype, lr_st_tensor *t, char **keys, void **bufs,
                                lr_err *err)
{
    size_t es = lr_st_dtype_bits(dtype) / 8;
    for (size_t i = 0; i < ad->n; i++) {
        const lr_peft_layer *l = &ad->layer[i];
        for (int k = 0; k < 2; k++) {
            size_t j = 2 * i + (size_t)k, rows = k ? l->out : l->r, cols = k ? l->r : l->in, n = rows * cols;
            size_t kn = strlen(l->module) + 40;
            keys[j] = malloc(kn);
            bufs[j] = malloc(n * es);
            if (!keys[j] || !bufs[j]) return lr__fail(err, LR_ENOMEM, "lr_peft_write: out of memory");
            snprintf(keys[j], kn, PREFIX "%s%s", l->module, TAIL[l->embedding][k]);
            lr_status s = lr_st_encode_f32(bufs[j], dtype, k ? l->b : l->a, n, err);
            if (s) return s;
            t[j] = (lr_st_tensor){ .name = keys[j], .dtype = dtype, .ndim = 2, .shape = { rows, cols },
                                   .data = bufs[j] };
        }
    }
    return LR_OK;
}

static lr_status write_files(const lr_peft *ad, const char *dir, const lr_st_tensor *t, lr_err *err)
{
    json_t *o = config_json(ad);
    char *wpath = join(dir, "adapter_model.safetensors"), *cpath = join(dir, "adapter_config.json");
    lr_atomic_file af = { 0 };
    lr_status s = o && wpath && cpath ? LR_OK : lr__fail(err, LR_ENOMEM, "lr_peft_write: out of memory");
    /* config into its temp file, tensors committed, then the config committed */
    if (!s) s = lr_atomic_open(&af, cpath, err);
    if (!s && (json_dumpf(o, af.f, JSON_INDENT(2)) /* keys as inserted: the patterns' order matters */ != 0 || fputc('\n', af.f) == EOF))
        s = lr__fail(err, LR_EIO, "%s: cannot write: %s", cpath, strerror(errno));
    static const lr_st_meta meta[1] = { { "format", "pt" } };
    if (!s) s = lr_safetensors_write(wpath, t, 2 * ad->n, meta, 1, err);
    if (!s) s = lr_atomic_commit(&af, err);
    else if (af.f) lr_atomic_abort(&af);
    json_decref(o);
    free(wpath), free(cpath);
    return s;
}

lr_status lr_peft_write(const lr_peft *ad, const char *dir, lr_st_dtype dtype, lr_err *err)
{
    if (!ad || !dir) return lr__fail(err, LR_EINVAL, "lr_peft_write: NULL argument");
    if (ad->n == 0) return lr__fail(err, LR_EINVAL, "lr_peft_write: %s: an adapter with no layers", dir);
    if (dtype != LR_ST_F32 && dtype != LR_ST_F16 && dtype != LR_ST_BF16)
        return lr__fail(err, LR_EINVAL, "lr_peft_write: dtype must be F32, F16 or BF16");
    bool made_dir = mkdir(dir, 0777) == 0; /* ours to remove again if the write fails */
    if (!made_dir && errno != EEXIST) return lr__fail(err, LR_EIO, "%s: cannot create directory: %s", dir, strerror(errno));
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return lr__fail(err, LR_EIO, "%s: not a directory", dir);
    lr_st_tensor *t = calloc(2 * ad->n, sizeof *t);
    char **keys = calloc(2 * ad->n, sizeof *keys);
    void **bufs = calloc(2 * ad->n, sizeof *bufs);
    lr_status s = t && keys && bufs ? LR_OK : lr__fail(err, LR_ENOMEM, "lr_peft_write: out of memory");
    if (!s) s = encode_tensors(ad, dtype, t, keys, bufs, err);
    if (!s) s = write_files(ad, dir, t, err);
    for (size_t i = 0; keys && bufs && i < 2 * ad->n; i++) free(keys[i]), free(bufs[i]);
    free(t), free(keys), free(bufs);
    if (s && made_dir) rmdir(dir); /* a failed write leaves no empty directory behind */
    return s;
}
