/* test_peft.c — PEFT adapter directories for any model: round trips in F32/F16/BF16, per-layer
 * ranks and alphas through rank_pattern / alpha_pattern, PEFT's pattern rule, every strict
 * reading error with its message, crash-safe writing, and interchange with lr_adapter. */
#include "lr_test.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "lowrank/io/peft.h"
#include "lowrank/io/safetensors.h"
#include "lowrank/lora/adapter.h"
#include "lowrank/lora/lora.h"
#include "lowrank/nn/mlp.h"

typedef struct {
    const char *module;
    size_t out, in, r;
    double alpha;
} spec;

/* three layers at rank 2 / alpha 4 (the common values), one at rank 3 / alpha 8, one at 1 */
static const spec LAYERS[5] = {
    { "model.layers.0.q_proj", 6, 5, 2, 4 },
    { "model.layers.0.v_proj", 6, 5, 2, 4 },
    { "model.layers.1.q_proj", 6, 5, 3, 8 },
    { "model.layers.1.v_proj", 6, 5, 2, 4 },
    { "lm.linear1", 4, 7, 1, 4 },
};

static void build(lr_peft *ad, const spec *sp, size_t n, uint64_t seed)
{
    memset(ad, 0, sizeof *ad);
    lr_rng rng;
    lr_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) {
        float *a = lr_test_randn(&rng, sp[i].r * sp[i].in, 1.0f), *b = lr_test_randn(&rng, sp[i].out * sp[i].r, 0.3f);
        lr_err e;
        if (lr_peft_insert(ad, sp[i].module, sp[i].out, sp[i].in, sp[i].r, sp[i].alpha, a, b, &e)) fail_msg("%s", e.msg);
        free(a);
        free(b);
    }
}

typedef float (*round_fn)(float);
static float round_f32(float x) { return x; }
static float round_f16(float x) { return lr_f16_to_f32(lr_f32_to_f16(x)); }
static float round_bf16(float x) { return lr_bf16_to_f32(lr_f32_to_bf16(x)); }

static void expect_same(const lr_peft *got, const lr_peft *want, round_fn rnd)
{
    assert_int_equal(got->n, want->n);
    assert_int_equal(got->use_rslora, want->use_rslora);
    for (size_t i = 0; i < want->n; i++) {
        const lr_peft_layer *g = &got->layer[i], *w = &want->layer[i];
        assert_string_equal(g->module, w->module);
        assert_int_equal(g->out, w->out);
        assert_int_equal(g->in, w->in);
        assert_int_equal(g->r, w->r);
        assert_true(g->alpha == w->alpha);
        for (size_t q = 0; q < w->r * w->in; q++)
            if (memcmp(&g->a[q], &(float){ rnd(w->a[q]) }, 4)) fail_msg("%s A[%zu] = %.9g, expected %.9g", w->module, q, (double)g->a[q], (double)rnd(w->a[q]));
        for (size_t q = 0; q < w->out * w->r; q++)
            if (memcmp(&g->b[q], &(float){ rnd(w->b[q]) }, 4)) fail_msg("%s B[%zu] = %.9g, expected %.9g", w->module, q, (double)g->b[q], (double)rnd(w->b[q]));
    }
}

typedef struct {
    char *dir, *ad, *cfg, *wts;
} paths;

static void paths_init(paths *p)
{
    p->dir = lr_test_tmpdir();
    p->ad = lr_test_path(p->dir, "ad");
    p->cfg = lr_test_path(p->ad, "adapter_config.json");
    p->wts = lr_test_path(p->ad, "adapter_model.safetensors");
}

static void paths_free(paths *p)
{
    lr_test_rmtree(p->dir);
    free(p->dir), free(p->ad), free(p->cfg), free(p->wts);
}

static json_t *load_json(const char *path)
{
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (!o) fail_msg("%s: %s", path, je.text);
    return o;
}

/* Rewrites the config with key set to v (NULL: removed); v is stolen. */
static void edit_config(const paths *p, const char *key, json_t *v)
{
    json_t *o = load_json(p->cfg);
    if (v) json_object_set_new(o, key, v);
    else json_object_del(o, key);
    assert_int_equal(json_dump_file(o, p->cfg, JSON_INDENT(2)), 0);
    json_decref(o);
}

static lr_status read_expect(const paths *p, lr_status want, const char *needle1, const char *needle2)
{
    lr_peft got;
    memset(&got, 0xab, sizeof got);
    lr_err e;
    e.msg[0] = 0;
    lr_status s = lr_peft_read(&got, p->ad, NULL, &e);
    if (s != want) fail_msg("status %d, expected %d: %s", (int)s, (int)want, e.msg);
    if (s) {
        assert_int_equal(got.n, 0);
        assert_null(got.layer);
        assert_null(got.base_model);
        if (needle1) assert_msg_contains(e.msg, needle1);
        if (needle2) assert_msg_contains(e.msg, needle2);
    } else {
        lr_peft_free(&got);
    }
    return s;
}

/* --------------------------------------------------------------- round trips ------ */

static void test_round_trip(void **state)
{
    (void)state;
    const lr_st_dtype dts[3] = { LR_ST_F32, LR_ST_F16, LR_ST_BF16 };
    const round_fn rnd[3] = { round_f32, round_f16, round_bf16 };
    for (size_t d = 0; d < 3; d++) {
        paths p;
        paths_init(&p);
        lr_peft ad, got;
        build(&ad, LAYERS, 5, 1 + d);
        ad.use_rslora = d == 1;
        ad.base_model = strdup("org/some-model");
        lr_err e;
        if (lr_peft_write(&ad, p.ad, dts[d], &e)) fail_msg("%s", e.msg);
        assert_int_equal(lr_test_hidden_entries(p.ad), 0);
        if (lr_peft_read(&got, p.ad, NULL, &e)) fail_msg("%s", e.msg);
        expect_same(&got, &ad, rnd[d]);
        assert_string_equal(got.base_model, "org/some-model");
        assert_string_equal(got.init, "true");
        /* sorted by module name */
        for (size_t i = 1; i < got.n; i++) assert_true(strcmp(got.layer[i - 1].module, got.layer[i].module) < 0);
        /* the tensors: dtype, PEFT's names and shapes */
        lr_safetensors st;
        assert_int_equal(lr_safetensors_open(&st, p.wts, NULL), LR_OK);
        assert_int_equal(lr_safetensors_count(&st), 10);
        const lr_st_tensor *t = lr_safetensors_find(&st, "base_model.model.model.layers.1.q_proj.lora_A.weight");
        assert_non_null(t);
        assert_int_equal(t->dtype, dts[d]);
        assert_int_equal(t->shape[0], 3);
        assert_int_equal(t->shape[1], 5);
        t = lr_safetensors_find(&st, "base_model.model.lm.linear1.lora_B.weight");
        assert_non_null(t);
        assert_int_equal(t->shape[0], 4);
        assert_int_equal(t->shape[1], 1);
        lr_safetensors_free(&st);
        /* the config: the common rank and alpha, the others in the patterns */
        json_t *o = load_json(p.cfg);
        assert_string_equal(json_string_value(json_object_get(o, "peft_type")), "LORA");
        assert_int_equal(json_integer_value(json_object_get(o, "r")), 2);
        assert_true(json_number_value(json_object_get(o, "lora_alpha")) == 4);
        json_t *rp = json_object_get(o, "rank_pattern"), *ap = json_object_get(o, "alpha_pattern");
        assert_int_equal(json_object_size(rp), 2);
        assert_int_equal(json_object_size(ap), 1);
        assert_int_equal(json_object_size(json_object_get(o, "target_modules")) + json_array_size(json_object_get(o, "target_modules")), 5);
        assert_true(json_is_boolean(json_object_get(o, "use_rslora")));
        assert_int_equal(json_is_true(json_object_get(o, "use_rslora")), d == 1);
        assert_true(json_is_false(json_object_get(o, "use_dora")));
        assert_string_equal(json_string_value(json_object_get(o, "bias")), "none");
        json_decref(o);
        /* overwrite in place with other values */
        lr_peft_free(&got);
        ad.layer[0].a[0] = 0.5f;
        if (lr_peft_write(&ad, p.ad, dts[d], &e)) fail_msg("%s", e.msg);
        if (lr_peft_read(&got, p.ad, NULL, &e)) fail_msg("%s", e.msg);
        expect_same(&got, &ad, rnd[d]);
        assert_true(got.layer[0].a[0] == 0.5f);
        lr_peft_free(&got);
        lr_peft_free(&ad);
        lr_peft_free(&ad); /* empty: a no-op */
        lr_peft_free(NULL);
        paths_free(&p);
    }
}

/* F16 saturates and rounds as the conversion says: what is read is the rounded value. */
static void test_round_trip_f16_extremes(void **state)
{
    (void)state;
    paths p;
    paths_init(&p);
    lr_peft ad = { 0 }, got;
    const float a[4] = { 65519.0f, 1e-8f, 0x1p-24f, -3.0f }, b[2] = { 1.0f / 3, -0.0f };
    assert_int_equal(lr_peft_insert(&ad, "x", 2, 4, 1, 1, a, b, NULL), LR_OK);
    assert_int_equal(lr_peft_write(&ad, p.ad, LR_ST_F16, NULL), LR_OK);
    assert_int_equal(lr_peft_read(&got, p.ad, NULL, NULL), LR_OK);
    assert_true(got.layer[0].a[0] == 65504.0f);
    assert_true(got.layer[0].a[1] == 0.0f);
    assert_true(got.layer[0].a[2] == 0x1p-24f);
    assert_true(got.layer[0].a[3] == -3.0f);
    assert_true(got.layer[0].b[0] == round_f16(1.0f / 3));
    assert_true(got.layer[0].b[0] != 1.0f / 3);
    assert_true(signbit(got.layer[0].b[1]));
    lr_peft_free(&got);
    lr_peft_free(&ad);
    paths_free(&p);
}

/* Modules whose names are dot-suffixes of one another, with different ranks and alphas: PEFT's
 * rule (.*\.)?(K)$ must still give each its own values when read back. */
static void test_round_trip_suffix_names(void **state)
{
    (void)state;
    const spec sp[4] = {
        { "a.linear1", 3, 4, 3, 6 },
        { "b.a.linear1", 3, 4, 1, 2 },
        { "c.a.linear1", 3, 4, 1, 2 },
        { "linear1", 3, 4, 2, 5 },
    };
    paths p;
    paths_init(&p);
    lr_peft ad, got;
    build(&ad, sp, 4, 9);
    lr_err e;
    if (lr_peft_write(&ad, p.ad, LR_ST_F32, &e)) fail_msg("%s", e.msg);
    if (lr_peft_read(&got, p.ad, NULL, &e)) fail_msg("%s", e.msg);
    expect_same(&got, &ad, round_f32);
    lr_peft_free(&got);
    lr_peft_free(&ad);
    /* and a '.' in a name is a literal dot, not any character */
    const spec sq[3] = { { "x.q", 2, 2, 1, 1 }, { "xaq", 2, 2, 2, 1 }, { "xbq", 2, 2, 2, 1 } };
    build(&ad, sq, 3, 10);
    if (lr_peft_write(&ad, p.ad, LR_ST_F32, &e)) fail_msg("%s", e.msg);
    if (lr_peft_read(&got, p.ad, NULL, &e)) fail_msg("%s", e.msg);
    expect_same(&got, &ad, round_f32);
    lr_peft_free(&got);
    lr_peft_free(&ad);
    paths_free(&p);
}

/* --------------------------------------------------------------- patterns --------- */

/* Writes tensors for modules (each A (r, 3), B (2, r)) and a config with the given patterns. */
static void write_raw(const paths *p, const char *const *modules, const size_t *ranks, size_t n, json_t *rp,
                      json_t *ap, json_t *targets)
{
    mkdir(p->ad, 0777);
    lr_st_tensor t[16];
    char names[16][96];
    static float data[64];
    for (size_t i = 0; i < 64; i++) data[i] = (float)i / 64;
    for (size_t i = 0; i < n; i++) {
        snprintf(names[2 * i], 96, "base_model.model.%s.lora_A.weight", modules[i]);
        snprintf(names[2 * i + 1], 96, "base_model.model.%s.lora_B.weight", modules[i]);
        t[2 * i] = (lr_st_tensor){ .name = names[2 * i], .dtype = LR_ST_F32, .ndim = 2, .shape = { ranks[i], 3 }, .data = data };
        t[2 * i + 1] = (lr_st_tensor){ .name = names[2 * i + 1], .dtype = LR_ST_F32, .ndim = 2, .shape = { 2, ranks[i] }, .data = data };
    }
    lr_err e;
    if (lr_safetensors_write(p->wts, t, 2 * n, NULL, 0, &e)) fail_msg("%s", e.msg);
    if (!targets) {
        targets = json_array();
        for (size_t i = 0; i < n; i++) json_array_append_new(targets, json_string(modules[i]));
    }
    json_t *o = json_pack("{s:s, s:i, s:i, s:o, s:o, s:o}", "peft_type", "LORA", "r", 2, "lora_alpha", 4,
                          "rank_pattern", rp ? rp : json_object(), "alpha_pattern", ap ? ap : json_object(),
                          "target_modules", targets);
    assert_non_null(o);
    assert_int_equal(json_dump_file(o, p->cfg, JSON_INDENT(2)), 0); /* keys in insertion order */
    json_decref(o);
}

static void test_pattern_semantics(void **state)
{
    (void)state;
    paths p;
    paths_init(&p);
    lr_peft got;
    lr_err e;
    /* "linear1" matches model.linear1 but not model.linear10; first matching key wins */
    const char *mods[3] = { "model.linear1", "model.linear10", "linear1" };
    const size_t ranks[3] = { 3, 2, 3 };
    json_t *rp = json_object(), *ap = json_object();
    json_object_set_new(rp, "linear1", json_integer(3));
    json_object_set_new(ap, "linear1", json_integer(5));
    json_object_set_new(ap, "model.linear1", json_integer(7)); /* also matches, but second */
    json_object_set_new(ap, "linear10", json_real(1.5));
    write_raw(&p, mods, ranks, 3, rp, ap, NULL);
    if (lr_peft_read(&got, p.ad, NULL, &e)) fail_msg("%s", e.msg);
    const lr_peft_layer *l = lr_peft_find(&got, "model.linear1");
    assert_non_null(l);
    assert_int_equal(l->r, 3);
    assert_true(l->alpha == 5);
    l = lr_peft_find(&got, "model.linear10");
    assert_int_equal(l->r, 2);
    assert_true(l->alpha == 1.5);
    l = lr_peft_find(&got, "linear1");
    assert_int_equal(l->r, 3);
    assert_true(l->alpha == 5);
    assert_null(lr_peft_find(&got, "linear10"));
    assert_null(lr_peft_find(&got, NULL));
    assert_null(lr_peft_find(NULL, "linear1"));
    /* scales: α/r, α/√r with rsLoRA */
    l = lr_peft_find(&got, "model.linear1");
    assert_true(lr_peft_scale(&got, l) == 5.0 / 3);
    got.use_rslora = true;
    assert_true(lr_peft_scale(&got, l) == 5.0 / sqrt(3.0));
    assert_true(lr_peft_scale(NULL, l) == 0);
    assert_true(lr_peft_scale(&got, NULL) == 0);
    lr_peft_free(&got);
    lr_test_rmtree(p.ad);

    /* a regular expression key */
    const char *mods2[4] = { "model.layers.0.q", "model.layers.12.q", "model.layers.x.q", "layers.3.qq" };
    const size_t ranks2[4] = { 4, 4, 2, 2 };
    rp = json_object();
    json_object_set_new(rp, "layers\\.[0-9]+\\.q", json_integer(4));
    write_raw(&p, mods2, ranks2, 4, rp, NULL, NULL);
    if (lr_peft_read(&got, p.ad, NULL, &e)) fail_msg("%s", e.msg);
    assert_int_equal(lr_peft_find(&got, "model.layers.0.q")->r, 4);
    assert_int_equal(lr_peft_find(&got, "model.layers.12.q")->r, 4);
    assert_int_equal(lr_peft_find(&got, "model.layers.x.q")->r, 2);
    assert_int_equal(lr_peft_find(&got, "layers.3.qq")->r, 2);
    lr_peft_free(&got);
    lr_test_rmtree(p.ad);

    /* target_modules as a regular expression matching whole names */
    const char *mods3[2] = { "enc.q_proj", "dec.k_proj" };
    const size_t ranks3[2] = { 2, 2 };
    write_raw(&p, mods3, ranks3, 2, NULL, NULL, json_string(".*(q|k)_proj"));
    if (lr_peft_read(&got, p.ad, NULL, &e)) fail_msg("%s", e.msg);
    assert_int_equal(got.n, 2);
    lr_peft_free(&got);
    lr_test_rmtree(p.ad);
    write_raw(&p, mods3, ranks3, 2, NULL, NULL, json_string("q_proj"));  /* not the whole name */
    read_expect(&p, LR_EFORMAT, "target_modules does not name", "_proj\"");
    lr_test_rmtree(p.ad);
    /* a list entry matches the name or a dot-suffix of it, nothing else */
    write_raw(&p, mods3, ranks3, 2, NULL, NULL, json_pack("[s,s]", "q_proj", "k_proj"));
    if (lr_peft_read(&got, p.ad, NULL, &e)) fail_msg("%s", e.msg);
    lr_peft_free(&got);
    lr_test_rmtree(p.ad);
    write_raw(&p, mods3, ranks3, 2, NULL, NULL, json_pack("[s,s]", "q_proj", "_proj"));
    read_expect(&p, LR_EFORMAT, "dec.k_proj", "target_modules does not name");
    paths_free(&p);
}

/* --------------------------------------------------------------- reading errors --- */

static void fresh(paths *p)
{
    lr_test_rmtree(p->ad);
    lr_peft ad;
    build(&ad, LAYERS, 5, 3);
    lr_err e;
    if (lr_peft_write(&ad, p->ad, LR_ST_F32, &e)) fail_msg("%s", e.msg);
    lr_peft_free(&ad);
}

/* Rewrites the weights: drop (NULL: none) left out, extra added, `first` moved to the front. */
static void rewrite_tensors(const paths *p, const char *drop, const lr_st_tensor *extra, const char *first)
{
    lr_safetensors st;
    lr_err e;
    if (lr_safetensors_open(&st, p->wts, &e)) fail_msg("%s", e.msg);
    lr_st_tensor t[16];
    size_t n = 0;
    if (first) t[n++] = *lr_safetensors_find(&st, first);
    for (size_t i = 0; i < lr_safetensors_count(&st); i++) {
        const lr_st_tensor *s = lr_safetensors_at(&st, i);
        if ((drop && !strcmp(s->name, drop)) || (first && !strcmp(s->name, first))) continue;
        t[n++] = *s;
    }
    if (extra) t[n++] = *extra;
    void **bufs = lr_test_st_fill(&st, t, n);
    char *q = lr_test_path(p->dir, "new.safetensors");
    if (lr_safetensors_write(q, t, n, NULL, 0, &e)) fail_msg("%s", e.msg);
    lr_test_st_free(bufs, n);
    lr_safetensors_free(&st);
    assert_int_equal(rename(q, p->wts), 0);
    free(q);
}

static void test_read_errors(void **state)
{
    (void)state;
    paths p;
    paths_init(&p);
    lr_peft got;
    /* missing files */
    read_expect(&p, LR_EIO, "adapter_config.json", NULL);
    fresh(&p);
    assert_int_equal(unlink(p.cfg), 0);
    read_expect(&p, LR_EIO, "adapter_config.json", NULL);
    fresh(&p);
    assert_int_equal(unlink(p.wts), 0);
    read_expect(&p, LR_EIO, "adapter_model.safetensors", NULL);
    /* a tensor that is not a LoRA weight */
    fresh(&p);
    float x[4] = { 1, 2, 3, 4 };
    lr_st_tensor extra = { .name = "base_model.model.lm.linear1.weight", .dtype = LR_ST_F32, .ndim = 2,
                           .shape = { 2, 2 }, .data = x };
    rewrite_tensors(&p, NULL, &extra, NULL);
    read_expect(&p, LR_EFORMAT, "\"base_model.model.lm.linear1.weight\" is not a LoRA weight", "adapter_model.safetensors");
    /* lora_B without lora_A, and A without B */
    fresh(&p);
    rewrite_tensors(&p, "base_model.model.model.layers.0.v_proj.lora_A.weight", NULL, NULL);
    read_expect(&p, LR_EFORMAT, "base_model.model.model.layers.0.v_proj.lora_B.weight has no matching "
                "base_model.model.model.layers.0.v_proj.lora_A.weight", NULL);
    fresh(&p);
    rewrite_tensors(&p, "base_model.model.lm.linear1.lora_B.weight", NULL, NULL);
    read_expect(&p, LR_EFORMAT, "has no matching base_model.model.lm.linear1.lora_B.weight", NULL);
    /* mixed dtypes: the writer orders tensors by dtype, then name, so one of A and B of a layer
     * is stored before the other; either order reads */
    bool b_first = false;
    for (int which = 0; which < 2; which++) {
        fresh(&p);
        {
            const char *name = which ? "base_model.model.model.layers.1.q_proj.lora_B.weight"
                                     : "base_model.model.model.layers.1.q_proj.lora_A.weight";
            size_t shape[2] = { which ? 6 : 3, which ? 3 : 5 };
            float v[18];
            uint16_t h[18];
            lr_safetensors st;
            assert_int_equal(lr_safetensors_open(&st, p.wts, NULL), LR_OK);
            assert_int_equal(lr_safetensors_get_f32(&st, v, name, 2, shape, NULL), LR_OK);
            lr_safetensors_free(&st);
            assert_int_equal(lr_st_encode_f32(h, LR_ST_F16, v, shape[0] * shape[1], NULL), LR_OK);
            lr_st_tensor t16 = { .name = name, .dtype = LR_ST_F16, .ndim = 2, .shape = { shape[0], shape[1] }, .data = h };
            rewrite_tensors(&p, name, &t16, NULL);
        }
        lr_safetensors st;
        assert_int_equal(lr_safetensors_open(&st, p.wts, NULL), LR_OK);
        size_t ia = 99, ib = 99;
        for (size_t i = 0; i < lr_safetensors_count(&st); i++) {
            const char *nm = lr_safetensors_at(&st, i)->name;
            if (!strcmp(nm, "base_model.model.model.layers.1.q_proj.lora_A.weight")) ia = i;
            if (!strcmp(nm, "base_model.model.model.layers.1.q_proj.lora_B.weight")) ib = i;
        }
        lr_safetensors_free(&st);
        assert_true(ia < 99 && ib < 99);
        b_first |= ib < ia;
        read_expect(&p, LR_OK, NULL, NULL);
    }
    assert_true(b_first);
    /* rank_pattern disagreeing with the tensors */
    fresh(&p);
    json_t *rp = json_object();
    json_object_set_new(rp, "model.layers.1.q_proj", json_integer(5));
    json_object_set_new(rp, "lm.linear1", json_integer(1));
    edit_config(&p, "rank_pattern", rp);
    read_expect(&p, LR_EDIM, "rank 3 in the tensor, expected 5", "model.layers.1.q_proj.lora_A.weight");
    fresh(&p);
    edit_config(&p, "rank_pattern", json_object()); /* r = 2 for all: layers.1.q_proj has 3 */
    read_expect(&p, LR_EDIM, "rank 1 in the tensor, expected 2", "rank_pattern in");
    fresh(&p);
    edit_config(&p, "r", json_integer(3));
    read_expect(&p, LR_EDIM, "expected 3", NULL);
    /* A and B whose ranks disagree */
    fresh(&p);
    float y[6 * 2] = { 0 };
    lr_st_tensor bad_b = { .name = "base_model.model.model.layers.1.q_proj.lora_B.weight", .dtype = LR_ST_F32,
                           .ndim = 2, .shape = { 6, 2 }, .data = y };
    rewrite_tensors(&p, bad_b.name, &bad_b, NULL);
    read_expect(&p, LR_EDIM, "model.layers.1.q_proj.lora_B.weight: rank 2 in the tensor, expected 3", NULL);
    /* non-finite values */
    fresh(&p);
    float nanb[6 * 3];
    for (size_t i = 0; i < 18; i++) nanb[i] = 0.5f;
    nanb[4] = NAN;
    bad_b.shape[1] = 3;
    bad_b.data = nanb;
    rewrite_tensors(&p, bad_b.name, &bad_b, NULL);
    read_expect(&p, LR_ENONFINITE, "model.layers.1.q_proj.lora_B.weight: entry (1, 1) is NaN", NULL);
    /* unsupported features and bad fields */
    struct { const char *key; json_t *v; const char *needle; } cfg[] = {
        { "use_dora", json_true(), "use_dora" },
        { "bias", json_string("all"), "bias" },
        { "bias", json_string("lora_only"), "bias" },
        { "fan_in_fan_out", json_true(), "fan_in_fan_out" },
        { "modules_to_save", json_pack("[s]", "head"), "modules_to_save" },
        { "layers_to_transform", json_pack("[i]", 0), "layers_to_transform" },
        { "peft_type", json_string("IA3"), "peft_type" },
        { "peft_type", NULL, "peft_type is missing" },
        { "r", json_integer(0), "r is" },
        { "r", json_real(2.5), "r is" },
        { "lora_alpha", json_integer(0), "lora_alpha" },
        { "lora_alpha", json_real(1e39), "lora_alpha" },
        { "use_rslora", json_string("yes"), "use_rslora" },
        { "target_modules", NULL, "target_modules is missing" },
        { "target_modules", json_integer(3), "target_modules" },
        { "target_modules", json_pack("[s,s]", "model.layers.0.q_proj", "other"), "which target_modules does not name" },
        { "target_modules", json_pack("[i]", 3), "target_modules[0] is not a string" },
        { "target_modules", json_string("(q_proj"), "target_modules is not a valid regular expression" },
        { "rank_pattern", json_pack("{s:i}", "linear[", 2), "key \"linear[\" is not a valid regular expression" },
        { "alpha_pattern", json_pack("{s:i}", "(", 2), "alpha_pattern: key \"(\" is not a valid regular expression" },
        { "rank_pattern", json_pack("{s:i}", "nothing", 0), "rank_pattern[\"nothing\"]" },
        { "rank_pattern", json_pack("{s:f}", "nothing", 2.0), "an integer >= 1" },
        { "alpha_pattern", json_pack("{s:i}", "nothing", -1), "alpha_pattern[\"nothing\"]" },
        { "rank_pattern", json_string("x"), "rank_pattern is not an object" },
    };
    for (size_t i = 0; i < sizeof cfg / sizeof *cfg; i++) {
        fresh(&p);
        edit_config(&p, cfg[i].key, cfg[i].v);
        read_expect(&p, LR_EFORMAT, cfg[i].needle, "adapter_config.json");
    }
    /* a config that is not JSON, or not an object */
    fresh(&p);
    lr_test_write_file(p.cfg, "{\"r\": ", 6);
    read_expect(&p, LR_EFORMAT, "adapter_config.json", NULL);
    lr_test_write_file(p.cfg, "[1]", 3);
    read_expect(&p, LR_EFORMAT, "not a JSON object", NULL);
    /* the weights file is not safetensors; no LoRA weights at all */
    fresh(&p);
    lr_test_write_file(p.wts, "garbage!", 8);
    read_expect(&p, LR_EFORMAT, "adapter_model.safetensors", NULL);
    assert_int_equal(lr_safetensors_write(p.wts, NULL, 0, NULL, 0, NULL), LR_OK);
    read_expect(&p, LR_EFORMAT, "no LoRA weights", NULL);
    /* NULL arguments */
    assert_int_equal(lr_peft_read(NULL, p.ad, NULL, NULL), LR_EINVAL);
    assert_int_equal(lr_peft_read(&got, NULL, NULL, NULL), LR_EINVAL);
    paths_free(&p);
}

/* --------------------------------------------------------------- writing ---------- */

static void test_write_errors(void **state)
{
    (void)state;
    paths p;
    paths_init(&p);
    lr_peft ad;
    build(&ad, LAYERS, 2, 4);
    lr_err e;
    /* a path that is a file: refused, the file untouched, no directory */
    char *file = lr_test_path(p.dir, "file");
    lr_test_write_file(file, "x", 1);
    e.msg[0] = 0;
    assert_int_equal(lr_peft_write(&ad, file, LR_ST_F32, &e), LR_EIO);
    assert_msg_contains(e.msg, file);
    struct stat sb;
    assert_int_equal(stat(file, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(sb.st_size, 1);
    /* a directory under a missing parent */
    char *deep = lr_test_path(p.dir, "no/such/dir");
    assert_int_equal(lr_peft_write(&ad, deep, LR_ST_F32, &e), LR_EIO);
    char *no = lr_test_path(p.dir, "no");
    assert_int_not_equal(stat(no, &sb), 0);
    /* a directory inside a file */
    char *in_file = lr_test_path(file, "ad");
    assert_int_not_equal(lr_peft_write(&ad, in_file, LR_ST_F32, &e), LR_OK);
    /* a failure after creating the directory removes it: a read-only directory for the files
     * is not possible as root, so make the weights path a directory */
    char *fresh_dir = lr_test_path(p.dir, "fresh");
    assert_int_equal(lr_peft_write(&ad, fresh_dir, LR_ST_F64, &e), LR_EINVAL); /* before mkdir */
    assert_msg_contains(e.msg, "F32, F16 or BF16");
    assert_int_not_equal(stat(fresh_dir, &sb), 0);
    /* an existing adapter directory whose write fails keeps its old files */
    assert_int_equal(lr_peft_write(&ad, p.ad, LR_ST_F32, &e), LR_OK);
    unsigned char *before;
    size_t nb;
    before = lr_test_read_file(p.cfg, &nb);
    lr_peft big;
    build(&big, LAYERS, 5, 5);
    assert_int_equal(unlink(p.wts), 0);
    assert_int_equal(mkdir(p.wts, 0777), 0); /* the weights cannot be renamed over a directory */
    assert_int_not_equal(lr_peft_write(&big, p.ad, LR_ST_F32, &e), LR_OK);
    size_t na;
    unsigned char *after = lr_test_read_file(p.cfg, &na);
    assert_int_equal(na, nb);
    assert_memory_equal(after, before, nb);
    assert_int_equal(lr_test_hidden_entries(p.ad), 0);
    free(before), free(after);
    lr_peft_free(&big);
    /* no layers, NULLs */
    lr_peft empty = { 0 };
    assert_int_equal(lr_peft_write(&empty, fresh_dir, LR_ST_F32, &e), LR_EINVAL);
    assert_int_not_equal(stat(fresh_dir, &sb), 0);
    assert_int_equal(lr_peft_write(NULL, fresh_dir, LR_ST_F32, NULL), LR_EINVAL);
    assert_int_equal(lr_peft_write(&ad, NULL, LR_ST_F32, NULL), LR_EINVAL);
    free(file), free(deep), free(no), free(in_file), free(fresh_dir);
    lr_peft_free(&ad);
    paths_free(&p);
}

/* An embedding layer: written as lora_embedding_A (r, vocab) / lora_embedding_B (dim, r),
 * read back as one; a module with both spellings is refused. */
static void test_embedding_layer(void **state)
{
    (void)state;
    paths p;
    paths_init(&p);
    float a[2 * 7], b[3 * 2], q[2 * 4], qb[5 * 2];
    for (size_t i = 0; i < 14; i++) a[i] = 0.25f * (float)i - 1;
    for (size_t i = 0; i < 6; i++) b[i] = 0.5f * (float)i + 0.125f;
    for (size_t i = 0; i < 8; i++) q[i] = (float)i;
    for (size_t i = 0; i < 10; i++) qb[i] = -(float)i;
    lr_peft ad = { 0 }, got = { 0 };
    lr_err e = { { 0 } };
    /* vocab 7, dim 3, r 2: a: (r, vocab), b: (dim, r) */
    assert_int_equal(lr_peft_insert_embedding(&ad, "model.embed_tokens", 3, 7, 2, 2.0, a, b, &e), LR_OK);
    assert_int_equal(lr_peft_insert(&ad, "model.layers.0.q_proj", 5, 4, 2, 2.0, q, qb, &e), LR_OK);
    if (lr_peft_write(&ad, p.ad, LR_ST_F32, &e)) fail_msg("%s", e.msg);
    lr_safetensors st;
    assert_int_equal(lr_safetensors_open(&st, p.wts, NULL), LR_OK);
    const lr_st_tensor *ta = lr_safetensors_find(&st, "base_model.model.model.embed_tokens.lora_embedding_A");
    const lr_st_tensor *tb = lr_safetensors_find(&st, "base_model.model.model.embed_tokens.lora_embedding_B");
    assert_non_null(ta);
    assert_non_null(tb);
    assert_true(ta->shape[0] == 2 && ta->shape[1] == 7 && tb->shape[0] == 3 && tb->shape[1] == 2);
    assert_null(lr_safetensors_find(&st, "base_model.model.model.embed_tokens.lora_A.weight"));
    lr_safetensors_free(&st);
    if (lr_peft_read(&got, p.ad, NULL, &e)) fail_msg("%s", e.msg);
    const lr_peft_layer *l = lr_peft_find(&got, "model.embed_tokens"), *lq = lr_peft_find(&got, "model.layers.0.q_proj");
    assert_non_null(l);
    assert_non_null(lq);
    assert_true(l->embedding && !lq->embedding);
    assert_true(l->out == 3 && l->in == 7 && l->r == 2);
    assert_memory_equal(l->a, a, sizeof a);
    assert_memory_equal(l->b, b, sizeof b);
    lr_peft_free(&got);
    /* the same module as lora_A too: refused, naming it */
    float extra[2 * 7] = { 0 };
    lr_st_tensor x = { .name = "base_model.model.model.embed_tokens.lora_A.weight", .dtype = LR_ST_F32, .ndim = 2,
                       .shape = { 2, 7 }, .data = extra };
    rewrite_tensors(&p, NULL, &x, NULL);
    assert_int_not_equal(lr_peft_read(&got, p.ad, NULL, &e), LR_OK);
    assert_msg_contains(e.msg, "model.embed_tokens");
    lr_peft_free(&ad);
    paths_free(&p);
}

/* modules_to_save: refused by default, naming the modules; with keep_saved the full tensors
 * of the listed modules (PEFT's rule: the name or a "."-suffix) are named in ad.saved, not
 * read; a full tensor of a module not listed is still refused. */
static void test_modules_to_save(void **state)
{
    (void)state;
    paths p;
    paths_init(&p);
    fresh(&p);
    float w[3] = { 1, 2, 3 };
    lr_st_tensor head = { .name = "base_model.model.model.head.weight", .dtype = LR_ST_F32, .ndim = 1,
                          .shape = { 3 }, .data = w };
    rewrite_tensors(&p, NULL, &head, NULL);
    edit_config(&p, "modules_to_save", json_pack("[s]", "head"));
    read_expect(&p, LR_EFORMAT, "modules_to_save is set (head)", "keep_saved");
    lr_peft got;
    lr_err e;
    lr_peft_read_opts o = lr_peft_read_opts_default();
    o.keep_saved = true;
    if (lr_peft_read(&got, p.ad, &o, &e)) fail_msg("%s", e.msg);
    assert_int_equal(got.n_saved, 1);
    assert_string_equal(got.saved[0], "model.head.weight");
    assert_true(got.n > 0);
    lr_peft_free(&got);
    assert_null(got.saved);
    edit_config(&p, "modules_to_save", json_pack("[s]", "odd.head")); /* not a suffix of model.head */
    assert_int_equal(lr_peft_read(&got, p.ad, &o, &e), LR_EFORMAT);
    assert_msg_contains(e.msg, "tensor \"base_model.model.model.head.weight\" is not a LoRA weight");
    edit_config(&p, "modules_to_save", json_string("head"));
    assert_int_equal(lr_peft_read(&got, p.ad, &o, &e), LR_EFORMAT);
    assert_msg_contains(e.msg, "modules_to_save is not a list");
    paths_free(&p);
}

static void test_add_and_module_of(void **state)
{
    (void)state;
    lr_peft ad = { 0 };
    const float a[6] = { 1, 2, 3, 4, 5, 6 }, b[6] = { 6, 5, 4, 3, 2, 1 };
    lr_err e;
    assert_int_equal(lr_peft_insert(&ad, "z.proj", 3, 3, 2, 4, a, b, &e), LR_OK);
    assert_int_equal(lr_peft_insert(&ad, "a.proj", 2, 3, 2, 4, a, b, &e), LR_OK);
    assert_string_equal(ad.layer[0].module, "a.proj"); /* kept sorted */
    assert_memory_equal(ad.layer[1].a, a, sizeof a);   /* copied */
    e.msg[0] = 0;
    assert_int_equal(lr_peft_insert(&ad, "a.proj", 2, 3, 2, 4, a, b, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "a.proj");
    assert_int_equal(lr_peft_insert(&ad, "r0", 2, 3, 0, 4, a, b, NULL), LR_EINVAL);
    assert_int_equal(lr_peft_insert(&ad, "al", 2, 3, 1, 0, a, b, NULL), LR_EINVAL);
    assert_int_equal(lr_peft_insert(&ad, "al", 2, 3, 1, NAN, a, b, NULL), LR_EINVAL);
    assert_int_equal(lr_peft_insert(&ad, "", 2, 3, 1, 1, a, b, NULL), LR_EINVAL);
    assert_int_equal(lr_peft_insert(&ad, NULL, 2, 3, 1, 1, a, b, NULL), LR_EINVAL);
    assert_int_equal(lr_peft_insert(&ad, "n", 2, 3, 1, 1, NULL, b, NULL), LR_EINVAL);
    assert_int_equal(ad.n, 2);
    lr_peft_free(&ad);

    char m[32];
    assert_int_equal(lr_peft_module_of(m, sizeof m, "linear1.weight", NULL), LR_OK);
    assert_string_equal(m, "linear1");
    assert_int_equal(lr_peft_module_of(m, sizeof m, "model.layers.0.q_proj.weight", NULL), LR_OK);
    assert_string_equal(m, "model.layers.0.q_proj");
    assert_int_equal(lr_peft_module_of(m, sizeof m, "linear1.bias", NULL), LR_OK);
    assert_string_equal(m, "linear1.bias");
    assert_int_equal(lr_peft_module_of(m, sizeof m, "weight", NULL), LR_OK);
    assert_string_equal(m, "weight");
    assert_int_equal(lr_peft_module_of(m, sizeof m, "x.weights", NULL), LR_OK);
    assert_string_equal(m, "x.weights");
    assert_int_equal(lr_peft_module_of(m, 8, "linear1.weight", NULL), LR_OK); /* 7 + NUL fits */
    assert_string_equal(m, "linear1");
    e.msg[0] = 0;
    assert_int_equal(lr_peft_module_of(m, 7, "linear1.weight", &e), LR_ERANGE);
    assert_msg_contains(e.msg, "linear1.weight");
    assert_int_equal(lr_peft_module_of(NULL, 7, "linear1.weight", NULL), LR_EINVAL);
    assert_int_equal(lr_peft_module_of(m, 7, NULL, NULL), LR_EINVAL);
}

/* --------------------------------------------------------------- with lr_adapter --- */

static const size_t SIZES[4] = { 7, 6, 5, 4 };

/* lr_adapter_save's directory reads as a peft with the same numbers and scale. */
static void test_reads_lr_adapter(void **state)
{
    (void)state;
    paths p;
    paths_init(&p);
    lr_mlp net;
    lr_lora lm;
    lr_rng rng;
    lr_rng_seed(&rng, 8);
    assert_int_equal(lr_mlp_init(&net, SIZES, 4, NULL), LR_OK);
    lr_mlp_reset_params(&net, &rng);
    assert_int_equal(lr_lora_init(&lm, &net, NULL), LR_OK);
    lr_lora_opts c = lr_lora_opts_default();
    c.rank = 2;
    c.alpha = 3;
    c.use_rslora = true;
    c.targets = 0x5;
    assert_int_equal(lr_lora_insert(&lm, "a", &c, NULL), LR_OK);
    lr_test_randomize_lora_b(&lm, "a", 4);
    lr_err e;
    if (lr_adapter_save(&lm, p.ad, "a", "tiny", &e)) fail_msg("%s", e.msg);
    lr_peft got;
    if (lr_peft_read(&got, p.ad, NULL, &e)) fail_msg("%s", e.msg);
    assert_int_equal(got.n, 2);
    assert_true(got.use_rslora);
    assert_string_equal(got.base_model, "tiny");
    const size_t layers[2] = { 0, 2 };
    for (size_t i = 0; i < 2; i++) {
        lr_lora_weights *lw = lr_lora_layer(&lm, "a", layers[i]);
        const lr_peft_layer *l = &got.layer[i];
        assert_string_equal(l->module, net.layer[layers[i]].name);
        assert_int_equal(l->r, 2);
        assert_int_equal(l->in, lw->in);
        assert_int_equal(l->out, lw->out);
        assert_true(l->alpha == 3);
        assert_allclose(lr_peft_scale(&got, l), lw->scale, 1e-7, 0);
        for (size_t q = 0; q < 2; q++)
            assert_memory_equal(l->a + q * l->in, lw->a.data + q * lw->a.ld, l->in * sizeof(float));
        for (size_t q = 0; q < l->out; q++)
            assert_memory_equal(l->b + q * 2, lw->b.data + q * lw->b.ld, 2 * sizeof(float));
    }
    lr_peft_free(&got);
    lr_lora_free(&lm);
    lr_mlp_free(&net);
    paths_free(&p);
}

/* lr_peft_write's directory loads into lr_adapter: per-layer ranks and alphas give
 * scale·B'·A' = s_l·B·A. */
static void test_lr_adapter_reads_peft(void **state)
{
    (void)state;
    for (int rs = 0; rs < 2; rs++) {
        paths p;
        paths_init(&p);
        const spec sp[3] = { { "linear1", 6, 7, 2, 4 }, { "linear2", 5, 6, 3, 6 }, { "linear3", 4, 5, 2, 4 } };
        lr_peft ad;
        build(&ad, sp, 3, 12 + rs);
        ad.use_rslora = rs;
        lr_err e;
        if (lr_peft_write(&ad, p.ad, LR_ST_F32, &e)) fail_msg("%s", e.msg);
        lr_mlp net;
        lr_lora lm;
        assert_int_equal(lr_mlp_init(&net, SIZES, 4, NULL), LR_OK);
        assert_int_equal(lr_lora_init(&lm, &net, NULL), LR_OK);
        lr_adapter_info info;
        if (lr_adapter_load(&lm, p.ad, "p", &info, &e)) fail_msg("%s", e.msg);
        assert_int_equal(info.cfg.rank, 3);
        assert_int_equal(info.cfg.use_rslora, rs);
        for (size_t l = 0; l < 3; l++) {
            const lr_peft_layer *pl = lr_peft_find(&ad, sp[l].module);
            assert_int_equal(info.layer_rank[l], pl->r);
            assert_true(info.layer_alpha[l] == (float)pl->alpha);
            lr_lora_weights *lw = lr_lora_layer(&lm, "p", l);
            assert_non_null(lw);
            double sl = lr_peft_scale(&ad, pl);
            for (size_t i = 0; i < pl->out; i++)
                for (size_t j = 0; j < pl->in; j++) {
                    double want = 0, got = 0, mag = 0;
                    for (size_t k = 0; k < pl->r; k++) {
                        want += sl * pl->b[i * pl->r + k] * pl->a[k * pl->in + j];
                        mag += fabs(sl * pl->b[i * pl->r + k] * pl->a[k * pl->in + j]);
                    }
                    for (size_t k = 0; k < lw->rank; k++)
                        got += (double)lw->scale * lw->b.data[i * lw->b.ld + k] * lw->a.data[k * lw->a.ld + j];
                    assert_allclose(got, want, 0, 1e-6 * mag + 1e-12);
                }
        }
        lr_lora_free(&lm);
        lr_mlp_free(&net);
        lr_peft_free(&ad);
        paths_free(&p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_round_trip_f16_extremes),
        cmocka_unit_test(test_round_trip_suffix_names),
        cmocka_unit_test(test_pattern_semantics),
        cmocka_unit_test(test_read_errors),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_embedding_layer),
        cmocka_unit_test(test_modules_to_save),
        cmocka_unit_test(test_add_and_module_of),
        cmocka_unit_test(test_reads_lr_adapter),
        cmocka_unit_test(test_lr_adapter_reads_peft),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
