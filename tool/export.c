/* export.c — `lowrank export ADAPTER_DIR --gguf OUT.gguf`: a PEFT LoRA adapter as the GGUF
 * LoRA file llama.cpp (and ollama, node-llama-cpp) applies next to the base model's GGUF,
 * every layer at PEFT's own scale (io/gguf_lora.h), optionally checked against that base. */
#include <stdlib.h>
#include <string.h>
#include "tool.h"

#define SUB "export"

static const char help[] =
"usage: " PROG " export ADAPTER_DIR --gguf OUT.gguf [--arch llama|qwen2] [--check BASE.gguf]\n"
"\n"
"Writes a PEFT LoRA adapter as a GGUF LoRA adapter for llama.cpp (llama-cli --lora OUT.gguf,\n"
"ollama's ADAPTER, node-llama-cpp's lora option). llama.cpp scales every layer by one\n"
"file-wide alpha over that layer's rank; PEFT's adapters may have a rank and an alpha per\n"
"layer (rank_pattern, alpha_pattern) and rsLoRA's alpha/sqrt(r). The file's alpha is the one\n"
"most layers share, and every other layer's B carries the difference: llama.cpp then applies\n"
"exactly PEFT's scale to each layer (the report lists the layers folded so).\n"
"\n"
"Tensor names and shapes are llama.cpp's: model.layers.N.self_attn.q_proj -> blk.N.attn_q,\n"
"k/v/o_proj -> attn_k/attn_v/attn_output, mlp.gate/up/down_proj -> ffn_gate/ffn_up/ffn_down,\n"
"model.embed_tokens -> token_embd, lm_head -> output. For llama, q's and k's rows are\n"
"permuted per head as llama.cpp's converter permutes the base's, which needs the head counts.\n"
"\n"
"  --gguf OUT      the GGUF file to write (crash-safely: a failure leaves no file)\n"
"  --arch A        llama or qwen2 (default: the base's with --check, else llama)\n"
"  --check BASE    the base model's GGUF: its architecture must be A, every layer's target\n"
"                  must exist with the adapter's shape (a mismatch names the tensor and both\n"
"                  shapes), and the head counts come from it\n"
"  --heads N       attention heads (llama.attention.head_count), without --check\n"
"  --kv-heads N    key/value heads (head_count_kv; default N)\n"
"  --dtype D       F32 (default), F16 or BF16 for the adapter's tensors\n"
"  --skip-unsupported  pass over modules llama.cpp has no tensor for, and modules_to_save's\n"
"                  full tensors (named in the report), instead of refusing them\n"
"  --json          one JSON object on stdout instead of the table\n"
"\n";

/* The base's architecture and head counts into o (where not given), from BASE.gguf. */
static int base_params(const tool_export_args *a, lr_gguf *base, lr_gguf_lora_opts *o)
{
    lr_err e = { 0 };
    const char *arch;
    if (lr_gguf_meta_get_string(base, &arch, "general.architecture", &e)) return tool_fail(SUB, &e);
    if (a->arch && strcmp(a->arch, arch))
        return tool_failf(SUB, "%s is a %s model, and --arch says %s", a->check, arch, a->arch);
    char probe[8];
    if (!a->arch && lr_gguf_lora_name(probe, sizeof probe, arch, "lm_head", NULL) == LR_EINVAL)
        return tool_failf(SUB, "%s is a %s model, which export has no tensor names for (llama, qwen2)", a->check,
                          arch);
    o->arch = a->arch ? a->arch : arch;
    char key[96];
    uint32_t h = 0, kv = 0;
    snprintf(key, sizeof key, "%s.attention.head_count", o->arch);
    if (!o->n_head && !lr_gguf_meta_get_u32(base, &h, key, NULL)) o->n_head = h;
    snprintf(key, sizeof key, "%s.attention.head_count_kv", o->arch);
    if (!o->n_head_kv && !lr_gguf_meta_get_u32(base, &kv, key, NULL)) o->n_head_kv = kv;
    return 0;
}

/* Every layer with a GGUF name has its target in the base with the adapter's shape: ne
 * [in, out] for a linear layer's W: (out, in), [dim, vocab] for the embedding (the adapter's
 * out, in). Before the plan, so that a base of other shapes is named as such. */
static int check_shapes(const tool_export_args *a, const lr_gguf *base, const lr_peft *ad, const char *arch)
{
    for (size_t i = 0; i < ad->n; i++) {
        const lr_peft_layer *p = &ad->layer[i];
        char name[96];
        if (lr_gguf_lora_name(name, sizeof name, arch, p->module, NULL)) continue; /* the plan names it */
        const lr_gguf_tensor *t = lr_gguf_find(base, name);
        if (!t)
            return tool_failf(SUB, "%s: module %s targets %s, which %s does not have", a->adapter, p->module, name,
                              a->check);
        size_t ne0 = p->embedding ? p->out : p->in, ne1 = p->embedding ? p->in : p->out;
        if (t->n_dims != 2 || t->ne[0] != ne0 || t->ne[1] != ne1)
            return tool_failf(SUB, "%s: %s is [%zu, %zu] in %s (GGUF order, ne[0] first), the adapter's module %s "
                              "needs [%zu, %zu]", a->adapter, name, t->ne[0], t->n_dims > 1 ? t->ne[1] : 1,
                              a->check, p->module, ne0, ne1);
    }
    return 0;
}

/* modules_to_save: whole modules, which a GGUF LoRA file cannot carry. */
static int refuse_saved(const tool_export_args *a, const lr_peft *ad)
{
    char list[512];
    size_t k = 0;
    for (size_t i = 0; i < ad->n_saved && k < sizeof list; i++) {
        int n = snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", ad->saved[i]);
        if (n < 0) break;
        k += (size_t)n;
    }
    return tool_failf(SUB, "%s: modules_to_save holds full tensors (%s), which a GGUF LoRA adapter cannot carry "
                      "(--skip-unsupported leaves them out)", a->adapter, list);
}

static int report(const tool_export_args *a, const lr_peft *ad, const lr_gguf_lora_report *rep,
                  const lr_gguf_lora_opts *o)
{
    if (!a->json) {
        printf("%-44s %-32s %5s %10s %10s %s\n", "module", "tensor", "rank", "scale", "fold", "rows");
        for (size_t i = 0; i < rep->n; i++) {
            const lr_gguf_lora_layer *l = &rep->layer[i];
            printf("%-44s %-32s %5zu %10.5g %10.5g %s\n", l->module, l->skipped ? "(skipped)" : l->name, l->r,
                   l->scale, l->fold, l->permuted ? "permuted" : "-");
        }
        for (size_t i = 0; i < ad->n_saved; i++)
            printf("%-44s %-32s (modules_to_save: a full tensor, left out)\n", ad->saved[i], "(skipped)");
        printf("\n%s, alpha %.9g: %zu layer%s written, %zu with the fold in B (its scale times its rank is not "
               "alpha), %zu skipped%s\nwrote %s\n", o->arch, rep->alpha, rep->n - rep->skipped,
               rep->n - rep->skipped == 1 ? "" : "s", rep->folded, rep->skipped,
               ad->use_rslora ? "; rsLoRA scales alpha/sqrt(r)" : "", a->out);
        return 0;
    }
    bool ok = true;
    json_t *js = json_object(), *ls = json_array();
    for (size_t i = 0; i < rep->n; i++) {
        const lr_gguf_lora_layer *l = &rep->layer[i];
        json_t *r = json_object();
        lr_cli_json_set(r, "module", json_string(l->module), &ok);
        lr_cli_json_set(r, "tensor", l->skipped ? json_null() : json_string(l->name), &ok);
        lr_cli_json_set(r, "rank", tool_json_size(l->r), &ok);
        lr_cli_json_set(r, "scale", lr_cli_json_real(l->scale), &ok);
        lr_cli_json_set(r, "fold", lr_cli_json_real(l->fold), &ok);
        lr_cli_json_set(r, "permuted", json_boolean(l->permuted), &ok);
        lr_cli_json_set(r, "skipped", json_boolean(l->skipped), &ok);
        ok = ok && !json_array_append_new(ls, r);
    }
    lr_cli_json_set(js, "command", json_string(SUB), &ok);
    lr_cli_json_set(js, "out", json_string(a->out), &ok);
    lr_cli_json_set(js, "arch", json_string(o->arch), &ok);
    lr_cli_json_set(js, "alpha", lr_cli_json_real(rep->alpha), &ok);
    lr_cli_json_set(js, "use_rslora", json_boolean(ad->use_rslora), &ok);
    lr_cli_json_set(js, "folded", tool_json_size(rep->folded), &ok);
    lr_cli_json_set(js, "skipped", tool_json_size(rep->skipped), &ok);
    lr_cli_json_set(js, "layers", ls, &ok);
    json_t *sv = json_array();
    for (size_t i = 0; i < ad->n_saved; i++) ok = ok && !json_array_append_new(sv, json_string(ad->saved[i]));
    lr_cli_json_set(js, "skipped_modules_to_save", sv, &ok);
    int rc = ok ? tool_json_print(js) : tool_failf(SUB, "out of memory building the JSON report");
    json_decref(js);
    return rc;
}

int tool_export(int argc, char **argv)
{
    tool_export_args a = { 0 };
    lr_peft ad = { 0 };
    lr_gguf base = { 0 };
    lr_gguf_lora_report rep = { 0 };
    lr_err e = { 0 };
    size_t cap = tool_msg_cap(argc, argv);
    char *msg = malloc(cap);
    int rc = msg ? tool_parsed(SUB, tool_export_parse(argc, argv, &a, msg, cap), msg, help, false)
                 : tool_failf(SUB, "out of memory");
    free(msg);
    const char *in[2] = { a.adapter, a.check };
    if (!rc) rc = tool_check_out(SUB, a.out, in, a.check ? 2 : 1);
    lr_gguf_lora_opts o = lr_gguf_lora_opts_default();
    o.n_head = a.heads, o.n_head_kv = a.kv_heads, o.dtype = a.dtype, o.skip_unsupported = a.skip;
    if (a.arch) o.arch = a.arch;
    if (!rc && a.check && lr_gguf_open(&base, a.check, &e)) rc = tool_fail(SUB, &e);
    if (!rc && a.check) rc = base_params(&a, &base, &o);
    lr_peft_read_opts ro = { .keep_saved = true }; /* named below, or passed over */
    if (!rc && lr_peft_read(&ad, a.adapter, &ro, &e)) rc = tool_fail(SUB, &e);
    if (!rc && ad.n_saved && !a.skip) rc = refuse_saved(&a, &ad);
    if (!rc && a.check) rc = check_shapes(&a, &base, &ad, o.arch);
    if (!rc && lr_gguf_lora_plan(&ad, &rep, &o, &e)) rc = tool_failf(SUB, "%s: %s", a.adapter, e.msg);
    lr_gguf_lora_report_free(&rep);
    if (!rc && lr_gguf_lora_write(&ad, a.out, &rep, &o, &e)) rc = tool_fail(SUB, &e);
    if (!rc) rc = report(&a, &ad, &rep, &o);
    lr_gguf_lora_report_free(&rep);
    lr_gguf_free(&base);
    lr_peft_free(&ad);
    return rc < 0 ? 0 : rc; /* after --help */
}
