/* inspect_gguf.c — `lowrank inspect FILE.gguf`: what a GGUF file holds. For a LoRA adapter
 * (general.type "adapter"), one row per adapted tensor: the pair's shapes, its rank and the
 * scale llama.cpp applies (adapter.lora.alpha / rank, or 1 when alpha is 0 or absent); for
 * any other GGUF (a base model), its architecture and one row per tensor. */
#include <stdlib.h>
#include <string.h>
#include "tool.h"

#define SUB "inspect"

bool tool_is_gguf(const char *path)
{
    size_t n = path ? strlen(path) : 0;
    return n > 5 && !strcmp(path + n - 5, ".gguf");
}

static const char *meta_str(const lr_gguf *g, const char *key)
{
    const char *v = NULL;
    return lr_gguf_meta_get_string(g, &v, key, NULL) ? "" : v;
}

/* "[in, r]": a tensor's ne in GGUF's order (ne[0] first). */
static void shape_of(char *buf, size_t cap, const lr_gguf_tensor *t)
{
    int k = snprintf(buf, cap, "[");
    for (uint32_t d = 0; d < t->n_dims && k > 0 && (size_t)k < cap; d++)
        k += snprintf(buf + k, cap - (size_t)k, "%s%zu", d ? ", " : "", t->ne[d]);
    if (k > 0 && (size_t)k < cap) snprintf(buf + k, cap - (size_t)k, "]");
}

/* One adapted tensor: its lora_a and lora_b. */
typedef struct {
    char base[96];
    const lr_gguf_tensor *a, *b;
} pair;

/* The pairs of an adapter, by base name; a tensor that is neither half, or a half without
 * the other, is an error naming it (llama.cpp refuses such files too). */
static int pairs_of(const lr_gguf *g, const char *path, pair *p, size_t *np)
{
    *np = 0;
    for (size_t i = 0; i < lr_gguf_count(g); i++) {
        const lr_gguf_tensor *t = lr_gguf_at(g, i);
        size_t n = strlen(t->name);
        bool is_a = n > 7 && !strcmp(t->name + n - 7, ".lora_a"), is_b = n > 7 && !strcmp(t->name + n - 7, ".lora_b");
        if (!is_a && !is_b) return tool_failf(SUB, "%s: tensor %s is not a LoRA half (.lora_a / .lora_b)", path, t->name);
        char base[96];
        snprintf(base, sizeof base, "%.*s", (int)(n - 7), t->name);
        size_t k = 0;
        while (k < *np && strcmp(p[k].base, base)) k++;
        if (k == *np) memset(&p[k], 0, sizeof p[k]), snprintf(p[k].base, sizeof p[k].base, "%s", base), (*np)++;
        if (is_a) p[k].a = t;
        else p[k].b = t;
    }
    for (size_t k = 0; k < *np; k++)
        if (!p[k].a || !p[k].b)
            return tool_failf(SUB, "%s: %s has a %s and no %s", path, p[k].base, p[k].a ? "lora_a" : "lora_b",
                              p[k].a ? "lora_b" : "lora_a");
    return 0;
}

static int adapter_report(const lr_gguf *g, const char *path, bool json)
{
    float alpha = 0;
    (void)lr_gguf_meta_get_f32(g, &alpha, "adapter.lora.alpha", NULL); /* absent: 0, as llama.cpp reads it */
    pair *p = calloc(lr_gguf_count(g) + 1, sizeof *p);
    size_t np = 0;
    int rc = p ? pairs_of(g, path, p, &np) : tool_failf(SUB, "out of memory");
    bool ok = true;
    json_t *js = json ? json_object() : NULL, *ls = json ? json_array() : NULL;
    if (!rc && !json)
        printf("%s: %s LoRA adapter, adapter.lora.alpha %g, %zu tensors adapted\n\n%-36s %-14s %-14s %5s %10s\n",
               path, meta_str(g, "general.architecture"), (double)alpha, np, "tensor", "lora_a", "lora_b", "rank",
               "scale");
    for (size_t k = 0; k < np && !rc; k++) {
        char sa[48], sb[48];
        shape_of(sa, sizeof sa, p[k].a), shape_of(sb, sizeof sb, p[k].b);
        size_t r = p[k].b->ne[0]; /* llama.cpp's rank: lora_b's ne[0] */
        double scale = alpha != 0 && r ? (double)alpha / (double)r : 1.0;
        if (!json) {
            printf("%-36s %-14s %-14s %5zu %10.5g\n", p[k].base, sa, sb, r, scale);
            continue;
        }
        json_t *o = json_object();
        lr_cli_json_set(o, "tensor", json_string(p[k].base), &ok);
        lr_cli_json_set(o, "lora_a", json_string(sa), &ok);
        lr_cli_json_set(o, "lora_b", json_string(sb), &ok);
        lr_cli_json_set(o, "type", json_string(lr_ggml_type_name(p[k].a->type)), &ok);
        lr_cli_json_set(o, "rank", tool_json_size(r), &ok);
        lr_cli_json_set(o, "scale", lr_cli_json_real(scale), &ok);
        ok = ok && !json_array_append_new(ls, o);
    }
    if (!rc && json) {
        lr_cli_json_set(js, "file", json_string(path), &ok);
        lr_cli_json_set(js, "type", json_string("adapter"), &ok);
        lr_cli_json_set(js, "arch", json_string(meta_str(g, "general.architecture")), &ok);
        lr_cli_json_set(js, "alpha", lr_cli_json_real(alpha), &ok);
        lr_cli_json_set(js, "tensors", ls, &ok), ls = NULL;
        rc = ok ? tool_json_print(js) : tool_failf(SUB, "out of memory building the JSON report");
    }
    json_decref(js), json_decref(ls);
    free(p);
    return rc;
}

static int model_report(const lr_gguf *g, const char *path, bool json)
{
    bool ok = true;
    json_t *js = json ? json_object() : NULL, *ls = json ? json_array() : NULL;
    if (!json)
        printf("%s: GGUF v%u, %s, %zu tensors, %zu metadata keys\n\n%-40s %-8s %s\n", path, g->version,
               *meta_str(g, "general.architecture") ? meta_str(g, "general.architecture") : "no architecture",
               lr_gguf_count(g), lr_gguf_meta_count(g), "tensor", "type", "shape (ne[0] first)");
    for (size_t i = 0; i < lr_gguf_count(g); i++) {
        const lr_gguf_tensor *t = lr_gguf_at(g, i);
        char s[96];
        shape_of(s, sizeof s, t);
        if (!json) {
            printf("%-40s %-8s %s\n", t->name, lr_ggml_type_name(t->type), s);
            continue;
        }
        json_t *o = json_object();
        lr_cli_json_set(o, "name", json_string(t->name), &ok);
        lr_cli_json_set(o, "type", json_string(lr_ggml_type_name(t->type)), &ok);
        lr_cli_json_set(o, "shape", json_string(s), &ok);
        ok = ok && !json_array_append_new(ls, o);
    }
    if (!json) return 0;
    lr_cli_json_set(js, "file", json_string(path), &ok);
    lr_cli_json_set(js, "arch", json_string(meta_str(g, "general.architecture")), &ok);
    lr_cli_json_set(js, "tensors", ls, &ok);
    int rc = ok ? tool_json_print(js) : tool_failf(SUB, "out of memory building the JSON report");
    json_decref(js);
    return rc;
}

int tool_inspect_gguf(const char *path, bool json)
{
    lr_gguf g = { 0 };
    lr_err e = { 0 };
    int rc = lr_gguf_open(&g, path, &e) ? tool_fail(SUB, &e) : 0;
    if (!rc) rc = !strcmp(meta_str(&g, "general.type"), "adapter") ? adapter_report(&g, path, json)
                                                                    : model_report(&g, path, json);
    lr_gguf_free(&g);
    return rc;
}
