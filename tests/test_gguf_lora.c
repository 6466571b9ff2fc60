/* test_gguf_lora.c — PEFT adapters as llama.cpp's GGUF LoRA files: the name tables, the one
 * alpha and the folds that keep every layer's scale PEFT's (mixed ranks, alpha_pattern,
 * rsLoRA), llama's q/k row permutation, the flipped embedding pair, the file read back with
 * lr_gguf (metadata, names, GGUF shapes, the delta llama.cpp computes from it), and every
 * refusal. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "lr_test.h"
#include "lowrank/base/rng.h"
#include "lowrank/io/gguf.h"
#include "lowrank/io/gguf_lora.h"

static void fill(float *x, size_t n, lr_rng *rng)
{
    for (size_t i = 0; i < n; i++) x[i] = lr_rng_normal(rng);
}

/* Inserts a random layer (out, in, r, alpha) named module into ad. */
static void put_layer(lr_peft *ad, const char *module, size_t out, size_t in, size_t r, double alpha, bool emb,
                      lr_rng *rng)
{
    float *a = malloc(r * in * sizeof *a), *b = malloc(out * r * sizeof *b);
    fill(a, r * in, rng), fill(b, out * r, rng);
    lr_err e;
    lr_status s = emb ? lr_peft_insert_embedding(ad, module, out, in, r, alpha, a, b, &e)
                      : lr_peft_insert(ad, module, out, in, r, alpha, a, b, &e);
    if (s) fail_msg("%s", e.msg);
    free(a), free(b);
}

/* A small Llama-shaped adapter: mixed ranks and alphas, rsLoRA, q and k of 4 and 2 heads of
 * 4 rows, an input embedding of 10 tokens. */
static void make_adapter(lr_peft *ad, bool rslora)
{
    lr_rng rng;
    lr_rng_seed(&rng, 5);
    memset(ad, 0, sizeof *ad);
    ad->use_rslora = rslora;
    put_layer(ad, "model.layers.0.self_attn.q_proj", 16, 16, 2, 8.0, false, &rng);
    put_layer(ad, "model.layers.0.self_attn.k_proj", 8, 16, 4, 8.0, false, &rng);
    put_layer(ad, "model.layers.0.mlp.down_proj", 16, 24, 3, 8.0, false, &rng);
    put_layer(ad, "model.layers.1.self_attn.v_proj", 8, 16, 2, 4.0, false, &rng);
    put_layer(ad, "model.embed_tokens", 16, 10, 2, 8.0, true, &rng);
}

static void test_names(void **state)
{
    (void)state;
    char n[64];
    lr_err e;
    assert_int_equal(lr_gguf_lora_name(n, sizeof n, "llama", "model.layers.3.mlp.down_proj", &e), LR_OK);
    assert_string_equal(n, "blk.3.ffn_down.weight");
    assert_int_equal(lr_gguf_lora_name(n, sizeof n, "qwen2", "base_model.model.model.layers.12.self_attn.o_proj", &e),
                     LR_OK);
    assert_string_equal(n, "blk.12.attn_output.weight");
    assert_int_equal(lr_gguf_lora_name(n, sizeof n, "llama", "model.embed_tokens", &e), LR_OK);
    assert_string_equal(n, "token_embd.weight");
    assert_int_equal(lr_gguf_lora_name(n, sizeof n, "llama", "lm_head", &e), LR_OK);
    assert_string_equal(n, "output.weight");
    assert_int_equal(lr_gguf_lora_name(n, sizeof n, "llama", "model.layers.0.self_attn.qkv_proj", &e), LR_EINVAL);
    assert_msg_contains(e.msg, "module model.layers.0.self_attn.qkv_proj has no tensor in llama.cpp's llama model");
    assert_int_equal(lr_gguf_lora_name(n, sizeof n, "llama", "model.layers.01.mlp.up_proj", &e), LR_EINVAL);
    assert_int_equal(lr_gguf_lora_name(n, sizeof n, "gpt2", "lm_head", &e), LR_EINVAL);
    assert_msg_contains(e.msg, "unknown architecture \"gpt2\"");
    assert_int_equal(lr_gguf_lora_name(n, 8, "llama", "lm_head", &e), LR_ERANGE);
}

/* One alpha for the layers that share s·r, B scaled by (s_l·r_l)/alpha for the others: the
 * scale llama.cpp then applies, alpha/r_l·fold, is PEFT's s_l. */
static void test_plan_scales(void **state)
{
    (void)state;
    for (int rs = 0; rs < 2; rs++) {
        lr_peft ad;
        make_adapter(&ad, rs);
        lr_gguf_lora_opts o = lr_gguf_lora_opts_default();
        o.n_head = 4, o.n_head_kv = 2;
        lr_gguf_lora_report rep;
        lr_err e;
        assert_int_equal(lr_gguf_lora_plan(&ad, &rep, &o, &e), LR_OK);
        assert_int_equal(rep.n, 5);
        size_t folded = 0;
        for (size_t i = 0; i < rep.n; i++) {
            const lr_gguf_lora_layer *l = &rep.layer[i];
            assert_allclose(rep.alpha / (double)l->r * l->fold, lr_peft_scale(&ad, &ad.layer[i]), 1e-15, 0);
            folded += l->fold != 1.0;
            assert_true(l->permuted == (strstr(l->module, "q_proj") || strstr(l->module, "k_proj")));
        }
        assert_int_equal(rep.folded, folded);
        /* plain: alpha 8 is shared by 4 layers, v_proj's 4 is folded; rsLoRA: s·r = α·√r
         * differs with every rank, the most common (rank 2, α 8: q_proj, embed) is kept */
        assert_allclose(rep.alpha, rs ? 8.0 * sqrt(2.0) : 8.0, 1e-15, 0);
        assert_int_equal(folded, rs ? 3 : 1);
        lr_gguf_lora_report_free(&rep);
        lr_gguf_lora_report_free(&rep); /* twice: a no-op */
        lr_peft_free(&ad);
    }
}

/* Reads tensor name (rows, cols) as float32. */
static float *read_2d(lr_gguf *g, const char *name, size_t rows, size_t cols)
{
    const lr_gguf_tensor *t = lr_gguf_find(g, name);
    if (!t) fail_msg("%s missing", name);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], cols);
    assert_int_equal(t->ne[1], rows);
    float *x = malloc(rows * cols * sizeof *x);
    lr_err e;
    if (lr_gguf_get_f32(g, x, name, rows * cols, &e)) fail_msg("%s", e.msg);
    return x;
}

/* max |llama.cpp's delta − PEFT's delta| / max |PEFT's| for layer l of ad, from the file:
 * linear: (alpha/r)·B'·A' against s·P·B·A (P: llama's row permutation, when permuted);
 * embedding: row v of the delta = (alpha/r)·B'·A'[v] against s·(B·A)ᵀ[v]. */
static double layer_error(lr_gguf *g, const lr_peft *ad, size_t li, double alpha, size_t heads)
{
    const lr_peft_layer *l = &ad->layer[li];
    char n[64], na[80], nb[80];
    if (lr_gguf_lora_name(n, sizeof n, "llama", l->module, NULL)) fail();
    snprintf(na, sizeof na, "%s.lora_a", n), snprintf(nb, sizeof nb, "%s.lora_b", n);
    size_t r = l->r, in = l->in, out = l->out;
    float *a = read_2d(g, na, l->embedding ? in : r, l->embedding ? r : in), *b = read_2d(g, nb, out, r);
    double s = lr_peft_scale(ad, l), worst = 0, big = 0;
    for (size_t i = 0; i < out; i++) {
        size_t src = i;
        if (heads) {
            size_t hd = out / heads, h = i / hd, k = i % hd;
            src = h * hd + (k % 2) * (hd / 2) + k / 2;
        }
        for (size_t j = 0; j < in; j++) {
            double got = 0, want = 0;
            for (size_t k = 0; k < r; k++) {
                got += (double)b[i * r + k] * (l->embedding ? a[j * r + k] : a[k * in + j]);
                want += (double)l->b[src * r + k] * l->a[k * in + j];
            }
            got *= alpha / (double)r, want *= s;
            worst = fmax(worst, fabs(got - want)), big = fmax(big, fabs(want));
        }
    }
    free(a), free(b);
    return worst / big;
}

/* The heads make_adapter's q and k split into (0: not permuted). */
static size_t heads_of(const char *module)
{
    return strstr(module, "q_proj") ? 4 : strstr(module, "k_proj") ? 2 : 0;
}

static void test_write_read_back(void **state)
{
    (void)state;
    char path[] = "/tmp/lr_gguf_lora_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    lr_peft ad;
    make_adapter(&ad, true);
    lr_gguf_lora_opts o = lr_gguf_lora_opts_default();
    o.n_head = 4, o.n_head_kv = 2;
    lr_gguf_lora_report rep;
    lr_err e;
    if (lr_gguf_lora_write(&ad, path, &rep, &o, &e)) fail_msg("%s", e.msg);
    lr_gguf g;
    if (lr_gguf_open(&g, path, &e)) fail_msg("%s", e.msg);
    const char *v;
    float alpha;
    assert_int_equal(lr_gguf_meta_get_string(&g, &v, "general.type", &e), LR_OK);
    assert_string_equal(v, "adapter");
    assert_int_equal(lr_gguf_meta_get_string(&g, &v, "adapter.type", &e), LR_OK);
    assert_string_equal(v, "lora");
    assert_int_equal(lr_gguf_meta_get_string(&g, &v, "general.architecture", &e), LR_OK);
    assert_string_equal(v, "llama");
    assert_int_equal(lr_gguf_meta_get_f32(&g, &alpha, "adapter.lora.alpha", &e), LR_OK);
    assert_true(alpha == (float)rep.alpha);
    assert_int_equal(lr_gguf_count(&g), 10);
    for (size_t i = 0; i < ad.n; i++) {
        double err = layer_error(&g, &ad, i, alpha, heads_of(ad.layer[i].module));
        if (err > 1e-6) fail_msg("%s: relative error %g", ad.layer[i].module, err);
    }
    lr_gguf_free(&g);
    /* F16: the same within its rounding */
    o.dtype = LR_ST_F16;
    if (lr_gguf_lora_write(&ad, path, NULL, &o, &e)) fail_msg("%s", e.msg);
    if (lr_gguf_open(&g, path, &e)) fail_msg("%s", e.msg);
    assert_int_equal(lr_gguf_find(&g, "blk.0.attn_q.weight.lora_a")->type, LR_GGML_F16);
    for (size_t i = 0; i < ad.n; i++) {
        double err = layer_error(&g, &ad, i, alpha, heads_of(ad.layer[i].module));
        if (err > 2e-3) fail_msg("F16 %s: relative error %g", ad.layer[i].module, err);
    }
    lr_gguf_free(&g);
    lr_gguf_lora_report_free(&rep);
    lr_peft_free(&ad);
    unlink(path);
}

static void test_refusals(void **state)
{
    (void)state;
    lr_peft ad;
    make_adapter(&ad, false);
    lr_gguf_lora_report rep;
    lr_err e;
    /* llama's q and k need the head count; NULL options are the defaults (no heads) */
    assert_int_equal(lr_gguf_lora_plan(&ad, &rep, NULL, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "model.layers.0.self_attn.k_proj: llama's converter permutes q and k rows");
    assert_null(rep.layer);
    lr_gguf_lora_opts o = lr_gguf_lora_opts_default();
    o.n_head = 3; /* 16 rows are not 3 heads */
    assert_int_equal(lr_gguf_lora_plan(&ad, &rep, &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "do not split into 3 heads");
    o.arch = "qwen2"; /* no permutation: no heads needed */
    assert_int_equal(lr_gguf_lora_plan(&ad, &rep, &o, &e), LR_OK);
    for (size_t i = 0; i < rep.n; i++) assert_false(rep.layer[i].permuted);
    lr_gguf_lora_report_free(&rep);
    o.arch = "mpt";
    assert_int_equal(lr_gguf_lora_plan(&ad, &rep, &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "unknown architecture \"mpt\"");
    o = lr_gguf_lora_opts_default(), o.n_head = 4, o.dtype = LR_ST_I8;
    assert_int_equal(lr_gguf_lora_plan(&ad, &rep, &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "dtype I8");
    /* a module llama.cpp has no tensor for: named, or passed over when asked */
    lr_rng rng;
    lr_rng_seed(&rng, 1);
    put_layer(&ad, "model.layers.0.self_attn.rotary_emb", 8, 8, 1, 1.0, false, &rng);
    o.dtype = LR_ST_F32;
    assert_int_equal(lr_gguf_lora_plan(&ad, &rep, &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "module model.layers.0.self_attn.rotary_emb has no tensor");
    assert_msg_contains(e.msg, "--skip-unsupported");
    o.skip_unsupported = true;
    assert_int_equal(lr_gguf_lora_plan(&ad, &rep, &o, &e), LR_OK);
    assert_int_equal(rep.skipped, 1);
    lr_gguf_lora_report_free(&rep);
    lr_peft_free(&ad);
    /* an embedding adapter on a linear layer's name, and the reverse */
    memset(&ad, 0, sizeof ad);
    put_layer(&ad, "lm_head", 8, 6, 1, 1.0, true, &rng);
    assert_int_equal(lr_gguf_lora_plan(&ad, &rep, &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "module lm_head: an embedding adapter on output.weight");
    lr_peft_free(&ad);
    /* nothing llama.cpp can take */
    memset(&ad, 0, sizeof ad);
    put_layer(&ad, "linear1", 8, 6, 1, 1.0, false, &rng);
    assert_int_equal(lr_gguf_lora_plan(&ad, &rep, &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "no module of the adapter has a tensor");
    /* a failed write leaves nothing */
    assert_int_equal(lr_gguf_lora_write(&ad, "/tmp/lr_gguf_lora_none.gguf", NULL, &o, &e), LR_EINVAL);
    assert_int_equal(access("/tmp/lr_gguf_lora_none.gguf", F_OK), -1);
    assert_int_equal(lr_gguf_lora_write(&ad, NULL, NULL, NULL, &e), LR_EINVAL);
    lr_peft_free(&ad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_plan_scales),
        cmocka_unit_test(test_write_read_back),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
