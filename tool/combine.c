/* combine.c — `lowrank combine DIR... --out DIR`: the weighted sum of LoRA adapters over one
 * base, exact (factors concatenated) or truncated to rank R from the factors alone
 * (factor_sum.h: QR of the stacked B's and Aᵀ's, SVD of the small core; ΔW is never formed). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tool.h"

#define SUB "combine"

static const char help[] =
"usage: " PROG " combine ADAPTER_DIR... [--weights w1,w2,...] [--rank R] --out ADAPTER_DIR\n"
"\n"
"Adds PEFT LoRA adapters trained on the same base: per layer dW = sum_i w_i s_i B_i A_i,\n"
"with s_i each adapter's own scale (lora_alpha / r, or / sqrt(r) with use_rslora; per-layer\n"
"rank_pattern and alpha_pattern honoured). A layer missing from an adapter contributes\n"
"nothing there. The result has lora_alpha = r per layer, so its scale is 1.\n"
"\n"
"  --weights LIST  one weight per adapter, comma-separated (default all 1)\n"
"  --rank R        the optimal rank-R approximation of each layer's sum (Eckart-Young),\n"
"                  computed from the factors in O((m+n) K^2), K = sum of the ranks, without\n"
"                  forming dW. Without --rank the sum is exact: the factors are stacked,\n"
"                  rank K. A layer whose K is below R keeps its exact rank K\n"
"  --dtype D       F32 (default), F16 or BF16 for the output tensors\n"
"  --out DIR       the combined adapter (created if missing; written crash-safely)\n"
"  --json          one JSON object on stdout instead of the table\n"
"  --threads N     threads for the QR and SVD work (OpenBLAS; default: all cores)\n"
"\n";

/* Every adapter over the same base: recorded base names equal where both are set, and each
 * module the same shape in every adapter that has it. */
static int check_bases(const tool_combine_args *a, const lr_peft *ad)
{
    for (size_t i = 1; i < a->nin; i++)
        if (ad[0].base_model && ad[i].base_model && strcmp(ad[0].base_model, ad[i].base_model))
            return tool_failf(SUB, "%s and %s are adapters of different bases (\"%s\" and \"%s\" in "
                              "base_model_name_or_path)", a->in[0], a->in[i], ad[0].base_model, ad[i].base_model);
    for (size_t i = 0; i < a->nin; i++)
        for (size_t l = 0; l < ad[i].n; l++)
            for (size_t j = 0; j < i; j++) {
                const lr_peft_layer *p = &ad[i].layer[l], *q = lr_peft_find(&ad[j], p->module);
                if (q && (q->out != p->out || q->in != p->in))
                    return tool_failf(SUB, "%s and %s are adapters of different bases: module %s is %zux%zu in "
                                      "one and %zux%zu in the other", a->in[j], a->in[i], p->module, q->out, q->in,
                                      p->out, p->in);
                if (q && q->embedding != p->embedding)
                    return tool_failf(SUB, "%s and %s disagree on module %s: an embedding (lora_embedding_A/B) in "
                                      "one, a linear layer in the other", a->in[j], a->in[i], p->module);
            }
    return 0;
}

typedef struct {
    const char *module;
    bool embedding;      /* an embedding's adapters: the same algebra on ΔWᵀ */
    size_t out, in, terms, k_in, r;
    double energy, tail; /* of the exact sum, and what the truncation leaves out */
} layer;

/* exact: [w s B_i] and [A_i] side by side */
static lr_status stack(lr_peft *res, const layer *ly, const lr_cmat *bs, const lr_cmat *as, const float *w,
                       size_t c, lr_err *err)
{
    size_t K = ly->k_in, k0 = 0;
    float *b = malloc(ly->out * K * sizeof *b), *a = malloc(K * ly->in * sizeof *a);
    lr_status s = b && a ? LR_OK : LR_ENOMEM;
    for (size_t t = 0; t < c && !s; k0 += bs[t].cols, t++) {
        for (size_t i = 0; i < ly->out; i++)
            for (size_t j = 0; j < bs[t].cols; j++) b[i * K + k0 + j] = w[t] * bs[t].data[i * bs[t].ld + j];
        for (size_t j = 0; j < bs[t].cols; j++) memcpy(a + (k0 + j) * ly->in, as[t].data + j * as[t].ld, ly->in * sizeof *a);
    }
    if (s) snprintf(err->msg, sizeof err->msg, "out of memory");
    if (!s) s = (ly->embedding ? lr_peft_insert_embedding : lr_peft_insert)(res, ly->module, ly->out, ly->in, K, (double)K, a,
                                                                       b, err);
    free(b), free(a);
    return s;
}

static lr_status truncate_sum(lr_peft *res, layer *ly, size_t R, const lr_cmat *bs, const lr_cmat *as,
                              const float *w, size_t c, lr_err *err)
{
    lr_usv f = { 0 };
    lr_mat b = { 0 }, a = { 0 };
    lr_status s = lr_usv_from_factors(&f, bs, as, w, c, err);
    ly->r = s ? 0 : (R < f.k ? R : f.k);
    if (!s) s = lr_mat_init(&b, ly->out, ly->r, err);
    if (!s) s = lr_mat_init(&a, ly->r, ly->in, err);
    if (!s) s = lr_factor_from_usv(b, a, &f, ly->r, LR_SPLIT_US, err);
    if (!s) s = (ly->embedding ? lr_peft_insert_embedding : lr_peft_insert)(res, ly->module, ly->out, ly->in, ly->r,
                                                                       (double)ly->r, a.data, b.data, err);
    if (!s) {
        ly->energy = 0;
        for (size_t i = 0; i < f.k; i++) ly->energy += (double)f.s[i] * f.s[i];
        ly->tail = 0;
        for (size_t i = ly->r; i < f.k; i++) ly->tail += (double)f.s[i] * f.s[i];
    }
    lr_usv_free(&f), lr_mat_free(&b), lr_mat_free(&a);
    return s;
}

static int combine_layer(const tool_combine_args *a, const lr_peft *ad, lr_peft *res, layer *ly)
{
    lr_cmat bs[TOOL_MAX_IN], as[TOOL_MAX_IN];
    float w[TOOL_MAX_IN];
    size_t c = 0;
    lr_err e = { 0 };
    ly->k_in = 0;
    for (size_t i = 0; i < a->nin; i++) {
        const lr_peft_layer *p = lr_peft_find(&ad[i], ly->module);
        if (!p) continue;
        bs[c] = lr_cmat_view(p->b, p->out, p->r, p->r);
        as[c] = lr_cmat_view(p->a, p->r, p->in, p->in);
        w[c++] = (float)(a->w[i] * lr_peft_scale(&ad[i], p));
        ly->out = p->out, ly->in = p->in, ly->k_in += p->r, ly->embedding = p->embedding;
    }
    ly->terms = c;
    size_t k = ly->out < ly->in ? ly->out : ly->in;
    if (a->rank > k)
        return tool_failf(SUB, "%s: --rank %zu exceeds min(%zu, %zu) = %zu", ly->module, a->rank, ly->out, ly->in, k);
    lr_status s;
    if (a->rank) {
        s = truncate_sum(res, ly, a->rank, bs, as, w, c, &e);
    } else {
        ly->r = ly->k_in, ly->energy = ly->tail = 0;
        s = stack(res, ly, bs, as, w, c, &e);
    }
    return s ? tool_failf(SUB, "%s: %s", ly->module, e.msg) : 0;
}

static int report(const tool_combine_args *a, const layer *ly, size_t n)
{
    if (!a->json) {
        printf("%-32s %-13s %6s %6s %8s %10s %10s\n", "module", "shape", "terms", "ranks", "rank out", "energy",
               "rel.err");
        for (size_t i = 0; i < n; i++) {
            char shape[32];
            snprintf(shape, sizeof shape, "%zux%zu", ly[i].out, ly[i].in);
            double kept = ly[i].energy > 0 ? 1 - ly[i].tail / ly[i].energy : 1;
            printf("%-32s %-13s %6zu %6zu %8zu %9.4f%% %10.3g\n", ly[i].module, shape, ly[i].terms, ly[i].k_in, ly[i].r,
                   100 * kept, ly[i].energy > 0 ? sqrt(ly[i].tail / ly[i].energy) : 0.0);
        }
        printf("\n%s sum of %zu adapter%s; errors relative to the exact sum's ||dW||_F\nwrote %s/\n",
               a->rank ? "truncated" : "exact", a->nin, a->nin == 1 ? "" : "s", a->out);
        return 0;
    }
    bool ok = true;
    json_t *js = json_object(), *ls = json_array(), *in = json_array(), *ws = json_array();
    for (size_t i = 0; i < a->nin; i++) {
        ok = ok && !json_array_append_new(in, json_string(a->in[i]));
        ok = ok && !json_array_append_new(ws, json_real(a->w[i]));
    }
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_object();
        double kept = ly[i].energy > 0 ? 1 - ly[i].tail / ly[i].energy : 1;
        lr_cli_json_set(r, "module", json_string(ly[i].module), &ok);
        lr_cli_json_set(r, "shape", tool_json_shape(ly[i].out, ly[i].in), &ok);
        lr_cli_json_set(r, "terms", tool_json_size(ly[i].terms), &ok);
        lr_cli_json_set(r, "rank_in", tool_json_size(ly[i].k_in), &ok);
        lr_cli_json_set(r, "rank", tool_json_size(ly[i].r), &ok);
        lr_cli_json_set(r, "energy_kept", lr_cli_json_real(kept), &ok);
        lr_cli_json_set(r, "rel_error", lr_cli_json_real(ly[i].energy > 0 ? sqrt(ly[i].tail / ly[i].energy) : 0), &ok);
        ok = ok && !json_array_append_new(ls, r);
    }
    lr_cli_json_set(js, "command", json_string(SUB), &ok);
    lr_cli_json_set(js, "adapters", in, &ok);
    lr_cli_json_set(js, "weights", ws, &ok);
    lr_cli_json_set(js, "exact", json_boolean(a->rank == 0), &ok);
    lr_cli_json_set(js, "out", json_string(a->out), &ok);
    lr_cli_json_set(js, "layers", ls, &ok);
    int rc = ok ? tool_json_print(js) : tool_failf(SUB, "out of memory building the JSON report");
    json_decref(js);
    return rc;
}

/* the modules of all adapters, each once, sorted (every adapter's list is sorted) */
static size_t modules(const tool_combine_args *a, const lr_peft *ad, const char **mods, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < a->nin; i++)
        for (size_t l = 0; l < ad[i].n; l++) {
            bool seen = false;
            for (size_t j = 0; j < n && !seen; j++) seen = !strcmp(mods[j], ad[i].layer[l].module);
            if (!seen && n < cap) mods[n++] = ad[i].layer[l].module;
        }
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(mods[j - 1], mods[j]) > 0; j--) {
            const char *t = mods[j];
            mods[j] = mods[j - 1], mods[j - 1] = t;
        }
    return n;
}

int tool_combine(int argc, char **argv)
{
    tool_combine_args a = { 0 };
    lr_peft ad[TOOL_MAX_IN] = { { 0 } }, res = { 0 };
    lr_err e = { 0 };
    size_t nl = 0, cap = 0, mcap = tool_msg_cap(argc, argv);
    const char **mods = NULL;
    layer *ly = NULL;
    char *msg = malloc(mcap);
    int rc = msg ? tool_parsed(SUB, tool_combine_parse(argc, argv, &a, msg, mcap), msg, help, false)
                 : tool_failf(SUB, "out of memory");
    free(msg);
    if (!rc) rc = tool_check_out(SUB, a.out, a.in, a.nin);
    if (!rc) tool_threads(a.threads);
    for (size_t i = 0; i < a.nin && !rc; i++)
        if (lr_peft_read(&ad[i], a.in[i], NULL, &e)) rc = tool_fail(SUB, &e);
    if (!rc) rc = check_bases(&a, ad);
    for (size_t i = 0; i < a.nin && !rc; i++) cap += ad[i].n;
    if (!rc && (!(mods = calloc(cap, sizeof *mods)) || !(ly = calloc(cap, sizeof *ly)))) rc = tool_failf(SUB, "out of memory");
    if (!rc) nl = modules(&a, ad, mods, cap);
    for (size_t l = 0; l < nl && !rc; l++) {
        ly[l].module = mods[l];
        rc = combine_layer(&a, ad, &res, &ly[l]);
    }
    if (!rc && ad[0].base_model && !(res.base_model = malloc(strlen(ad[0].base_model) + 1))) rc = tool_failf(SUB, "out of memory");
    if (!rc && res.base_model) strcpy(res.base_model, ad[0].base_model);
    if (!rc && lr_peft_write(&res, a.out, a.dtype, &e)) rc = tool_fail(SUB, &e);
    if (!rc) rc = report(&a, ly, nl);
    for (size_t i = 0; i < a.nin; i++) lr_peft_free(&ad[i]);
    lr_peft_free(&res);
    free(mods), free(ly);
    return rc < 0 ? 0 : rc; /* after --help */
}
