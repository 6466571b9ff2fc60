/* test_adapter.c — PEFT-layout adapter files: round trip, the config we write, and every
 * mismatch and malformed-file case with its message. */
#include "lr_test.h"
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <signal.h>
#include <unistd.h>
#include "lowrank/lora/adapter.h"
#include "lowrank/lora/lora.h"
#include "lowrank/nn/mlp.h"
#include "lowrank/io/safetensors.h"

static const size_t SIZES[4] = { 7, 6, 5, 4 };
#define BATCH 2

typedef struct {
    lr_mlp net;
    lr_lora lm_store, *lm;  /* lm = &lm_store */
    char *dir;    /* a fresh temp dir */
    char *ad;     /* dir/ad: the adapter directory */
    float x[BATCH * 7];
} fixture;

/* Adapter "a": rank 2, α 3, rsLoRA, on linear1 and linear3, saved to f->ad. */
static void fx_init(fixture *f, const size_t *sizes)
{
    lr_rng rng;
    lr_rng_seed(&rng, 5);
    assert_int_equal(lr_mlp_init(&f->net, sizes ? sizes : SIZES, 4, NULL), LR_OK);
    lr_mlp_reset_params(&f->net, &rng);
    for (size_t i = 0; i < BATCH * 7; i++) f->x[i] = lr_rng_normal(&rng);
    f->lm = &f->lm_store;
    assert_int_equal(lr_lora_init(f->lm, &f->net, NULL), LR_OK);
    f->dir = lr_test_tmpdir();
    f->ad = lr_test_path(f->dir, "ad");
    lr_lora_opts c = lr_lora_opts_default();
    c.rank = 2;
    c.alpha = 3.0f;
    c.use_rslora = true;
    c.targets = 0x5;
    c.seed = 9;
    assert_int_equal(lr_lora_insert(f->lm, "a", &c, NULL), LR_OK);
    lr_test_randomize_lora_b(f->lm, "a", 3);
    lr_err e;
    if (lr_adapter_save(f->lm, f->ad, "a", "RichBoyNet-test", &e)) fail_msg("%s", e.msg);
}

static void fx_free(fixture *f)
{
    lr_lora_free(f->lm);
    lr_mlp_free(&f->net);
    lr_test_rmtree(f->dir);
    free(f->dir);
    free(f->ad);
}

static char *ad_file(const fixture *f, const char *name) { return lr_test_path(f->ad, name); }

/* Rewrites adapter_config.json with field `key` set to `v` (NULL: deleted). */
static void edit_config(const fixture *f, const char *key, json_t *v)
{
    char *p = ad_file(f, LR_ADAPTER_CONFIG);
    json_error_t je;
    json_t *o = json_load_file(p, 0, &je);
    assert_non_null(o);
    if (v) json_object_set_new(o, key, v);
    else json_object_del(o, key);
    assert_int_equal(json_dump_file(o, p, JSON_INDENT(2)), 0);
    json_decref(o);
    free(p);
}

/* Rewrites adapter_model.safetensors with the tensors of adapter `name` (as saved), minus
 * `drop` (may be NULL), plus `extra` (may be NULL). */
static void write_tensors(const fixture *f, const char *drop, const lr_st_tensor *extra)
{
    char *p = ad_file(f, LR_ADAPTER_WEIGHTS);
    lr_safetensors st_, *st = &st_;
    lr_err e;
    if (lr_safetensors_open(st, p, &e)) fail_msg("%s", e.msg);
    lr_st_tensor t[16];
    size_t n = 0;
    for (size_t i = 0; i < lr_safetensors_count(st); i++) {
        const lr_st_tensor *s = lr_safetensors_at(st, i);
        if (drop && strcmp(s->name, drop) == 0) continue;
        t[n++] = *s;
    }
    if (extra) t[n++] = *extra;
    void **bufs = lr_test_st_fill(st, t, n);
    /* write to a second file, then move it over */
    char *q = ad_file(f, "new.safetensors");
    if (lr_safetensors_write(q, t, n, NULL, 0, &e)) fail_msg("%s", e.msg);
    lr_test_st_free(bufs, n);
    lr_safetensors_free(st);
    assert_int_equal(rename(q, p), 0);
    free(p);
    free(q);
}

static lr_status load(fixture *f, const char *name, lr_err *e)
{
    e->msg[0] = '\0';
    return lr_adapter_load(f->lm, f->ad, name, NULL, e);
}

/* ------------------------------------------------------------- round trip --------- */

static void test_round_trip(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, NULL);
    lr_err e;
    lr_adapter_info info;
    if (lr_adapter_load(f.lm, f.ad, "b", &info, &e)) fail_msg("%s", e.msg);
    assert_int_equal(info.cfg.rank, 2);
    assert_true(info.cfg.alpha == 3.0f);
    assert_true(info.cfg.use_rslora);
    assert_int_equal(info.cfg.targets, 0x5);
    assert_int_equal(info.cfg.init, LR_LORA_INIT_GAUSSIAN);
    assert_string_equal(info.init_lora_weights, "gaussian");
    assert_string_equal(info.base_model, "RichBoyNet-test");
    assert_true(info.inference_mode);
    assert_null(lr_lora_layer(f.lm, "b", 1));
    for (size_t i = 0; i < 3; i += 2) {
        lr_lora_weights *a = lr_lora_layer(f.lm, "a", i), *b = lr_lora_layer(f.lm, "b", i);
        assert_true(a->scale == b->scale);
        assert_memory_equal(a->a.data, b->a.data, a->a.rows * a->a.cols * sizeof(float));
        assert_memory_equal(a->b.data, b->b.data, a->b.rows * a->b.cols * sizeof(float));
    }
    assert_null(lr_lora_selected(f.lm)); /* loading does not select */
    /* the files: no temp files left, PEFT's tensor names, the config fields */
    DIR *d = opendir(f.ad);
    struct dirent *de;
    size_t n = 0;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' || strstr(de->d_name, "tmp")) n++;
    closedir(d);
    assert_int_equal(n, 2);
    char *p = ad_file(&f, LR_ADAPTER_WEIGHTS);
    lr_safetensors st_, *st = &st_;
    assert_int_equal(lr_safetensors_open(st, p, NULL), LR_OK);
    assert_int_equal(lr_safetensors_count(st), 4);
    const lr_st_tensor *t = lr_safetensors_find(st, "base_model.model.linear3.lora_B.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, LR_ST_F32);
    assert_int_equal(t->shape[0], 4);
    assert_int_equal(t->shape[1], 2);
    t = lr_safetensors_find(st, "base_model.model.linear1.lora_A.weight");
    assert_non_null(t);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 7);
    assert_string_equal(lr_safetensors_meta(st, "format"), "pt");
    lr_safetensors_free(st);
    free(p);
    p = ad_file(&f, LR_ADAPTER_CONFIG);
    json_error_t je;
    json_t *o = json_load_file(p, 0, &je);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "peft_type")), "LORA");
    assert_int_equal(json_integer_value(json_object_get(o, "r")), 2);
    assert_int_equal(json_integer_value(json_object_get(o, "lora_alpha")), 3);
    assert_true(json_is_true(json_object_get(o, "use_rslora")));
    assert_string_equal(json_string_value(json_object_get(o, "bias")), "none");
    assert_true(json_is_null(json_object_get(o, "task_type")));
    assert_true(json_is_false(json_object_get(o, "fan_in_fan_out")));
    assert_true(json_number_value(json_object_get(o, "lora_dropout")) == 0.0);
    json_t *tm = json_object_get(o, "target_modules");
    assert_int_equal(json_array_size(tm), 2);
    assert_string_equal(json_string_value(json_array_get(tm, 0)), "linear1");
    assert_string_equal(json_string_value(json_array_get(tm, 1)), "linear3");
    json_decref(o);
    free(p);
    /* read_config alone */
    assert_int_equal(lr_adapter_read_config(f.lm, f.ad, &info, &e), LR_OK);
    assert_int_equal(info.cfg.rank, 2);
    /* overwriting an existing adapter directory works and leaves no temp files */
    assert_int_equal(lr_adapter_save(f.lm, f.ad, "b", NULL, &e), LR_OK);
    assert_int_equal(lr_adapter_load(f.lm, f.ad, "c", &info, &e), LR_OK);
    assert_string_equal(info.base_model, "");
    fx_free(&f);
}

/* Two adapters loaded side by side and switched give what each gives alone. */
static void test_switch_loaded(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, NULL);
    lr_err e;
    lr_lora_opts c = lr_lora_opts_default();
    c.seed = 4;
    assert_int_equal(lr_lora_insert(f.lm, "z", &c, NULL), LR_OK);
    lr_test_randomize_lora_b(f.lm, "z", 8);
    char *zdir = lr_test_path(f.dir, "z");
    assert_int_equal(lr_adapter_save(f.lm, zdir, "z", NULL, &e), LR_OK);
    float alone_a[BATCH * 4], alone_z[BATCH * 4], out[BATCH * 4];
    /* alone: a fresh module per adapter */
    const char *dirs[2] = { f.ad, zdir };
    float *alone[2] = { alone_a, alone_z };
    for (int k = 0; k < 2; k++) {
        lr_lora m_store, *m = &m_store;
        assert_int_equal(lr_lora_init(m, &f.net, NULL), LR_OK);
        if (lr_adapter_load(m, dirs[k], "x", NULL, &e)) fail_msg("%s", e.msg);
        assert_int_equal(lr_lora_select(m, "x", NULL), LR_OK);
        assert_int_equal(lr_mlp_forward(&f.net, alone[k], f.x, BATCH, NULL, NULL), LR_OK);
        lr_lora_free(m);
    }
    assert_true(memcmp(alone_a, alone_z, sizeof alone_a) != 0);
    lr_lora m_store, *m = &m_store;
    assert_int_equal(lr_lora_init(m, &f.net, NULL), LR_OK);
    lr_lora_free(f.lm); /* (detaches "a" and "z" of the first module) */
    f.lm = m;
    assert_int_equal(lr_adapter_load(m, f.ad, "a", NULL, &e), LR_OK);
    assert_int_equal(lr_adapter_load(m, zdir, "z", NULL, &e), LR_OK);
    for (int rep = 0; rep < 3; rep++)
        for (int k = 0; k < 2; k++) {
            assert_int_equal(lr_lora_select(m, k ? "z" : "a", NULL), LR_OK);
            assert_int_equal(lr_mlp_forward(&f.net, out, f.x, BATCH, NULL, NULL), LR_OK);
            assert_memory_equal(out, alone[k], sizeof out);
        }
    free(zdir);
    fx_free(&f);
}

static void test_pissa_config(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, NULL);
    lr_err e;
    lr_lora_opts c = lr_lora_opts_default();
    c.init = LR_LORA_INIT_PISSA;
    c.alpha = 2.5f;
    if (lr_lora_insert(f.lm, "p", &c, &e)) fail_msg("%s", e.msg);
    char *pdir = lr_test_path(f.dir, "p");
    assert_int_equal(lr_adapter_save(f.lm, pdir, "p", NULL, &e), LR_OK);
    lr_adapter_info info;
    assert_int_equal(lr_adapter_read_config(f.lm, pdir, &info, &e), LR_OK);
    assert_string_equal(info.init_lora_weights, "pissa");
    assert_int_equal(info.cfg.init, LR_LORA_INIT_PISSA);
    assert_true(info.cfg.alpha == 2.5f); /* non-integral α written as a real */
    /* loading it does not rewrite the base again */
    float *w = malloc(f.net.n_params * sizeof(float));
    memcpy(w, f.net.params, f.net.n_params * sizeof(float));
    assert_int_equal(lr_adapter_load(f.lm, pdir, "p2", NULL, &e), LR_OK);
    assert_memory_equal(w, f.net.params, f.net.n_params * sizeof(float));
    /* a loaded "pissa" adapter did not rewrite the base: after removing "p", a new PiSSA
     * adapter may be added beside it */
    assert_int_equal(lr_lora_insert(f.lm, "q", &c, &e), LR_EINVAL);
    assert_int_equal(lr_lora_remove(f.lm, "p", &e), LR_OK);
    if (lr_lora_insert(f.lm, "q", &c, &e)) fail_msg("%s", e.msg);
    free(w);
    free(pdir);
    fx_free(&f);
}

/* ------------------------------------------------------------- mismatches --------- */

static void test_wrong_shape(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, NULL);
    /* a base whose linear1 has 8 outputs: linear1.lora_B must be (8, 2) */
    static const size_t other[4] = { 7, 8, 5, 4 };
    lr_mlp net2;
    assert_int_equal(lr_mlp_init(&net2, other, 4, NULL), LR_OK);
    lr_lora m_store, *m = &m_store;
    assert_int_equal(lr_lora_init(m, &net2, NULL), LR_OK);
    lr_err e;
    assert_int_equal(lr_adapter_load(m, f.ad, "a", NULL, &e), LR_EDIM);
    assert_msg_contains(e.msg, "adapter_model.safetensors: base_model.model.linear1.lora_B.weight: "
                               "expected shape (8, 2), got (6, 2)");
    assert_int_equal(lr_lora_count(m), 0);
    lr_lora_free(m);
    lr_mlp_free(&net2);
    /* a tensor with its dimensions swapped */
    char *p = ad_file(&f, LR_ADAPTER_WEIGHTS);
    float z[14] = { 0 };
    lr_st_tensor t = { "base_model.model.linear1.lora_A.weight", LR_ST_F32, 2, { 7, 2 }, z };
    write_tensors(&f, "base_model.model.linear1.lora_A.weight", &t);
    assert_int_equal(load(&f, "b", &e), LR_EDIM);
    assert_msg_contains(e.msg, "base_model.model.linear1.lora_A.weight: expected shape (2, 7), got (7, 2)");
    free(p);
    fx_free(&f);
}

static void test_wrong_rank(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, NULL);
    lr_err e;
    edit_config(&f, "r", json_integer(3));
    assert_int_equal(load(&f, "b", &e), LR_EDIM);
    assert_msg_contains(e.msg, "base_model.model.linear1.lora_A.weight: expected shape (3, 7), got (2, 7)");
    assert_msg_contains(e.msg, "r = 3 in adapter_config.json");
    edit_config(&f, "r", json_integer(0));
    assert_int_equal(load(&f, "b", &e), LR_EFORMAT);
    assert_msg_contains(e.msg, "r must be an integer >= 1");
    edit_config(&f, "r", json_string("2"));
    assert_int_equal(load(&f, "b", &e), LR_EFORMAT);
    edit_config(&f, "r", NULL);
    assert_int_equal(load(&f, "b", &e), LR_EFORMAT);
    assert_msg_contains(e.msg, "missing field \"r\"");
    assert_int_equal(lr_lora_count(f.lm), 1);
    fx_free(&f);
}

static void test_missing_and_extra_tensor(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, NULL);
    lr_err e;
    write_tensors(&f, "base_model.model.linear3.lora_B.weight", NULL);
    assert_int_equal(load(&f, "b", &e), LR_EFORMAT);
    assert_msg_contains(e.msg, "adapter_model.safetensors: missing tensor base_model.model.linear3.lora_B.weight");
    float z[12] = { 0 };
    lr_st_tensor t = { "base_model.model.linear3.lora_B.weight", LR_ST_F32, 2, { 4, 2 }, z };
    write_tensors(&f, NULL, &t);
    assert_int_equal(load(&f, "b", &e), LR_OK); /* repaired */
    /* a tensor for a layer the config does not target */
    lr_st_tensor x = { "base_model.model.linear2.lora_A.weight", LR_ST_F32, 2, { 2, 6 }, z };
    write_tensors(&f, NULL, &x);
    assert_int_equal(load(&f, "c", &e), LR_EFORMAT);
    assert_msg_contains(e.msg, "unexpected");
    assert_msg_contains(e.msg, "base_model.model.linear2.lora_A.weight");
    assert_null(lr_lora_opts_of(f.lm, "c"));
    fx_free(&f);
}

static void test_bad_values(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, NULL);
    lr_err e;
    float z[14] = { 0 };
    z[9] = NAN;
    lr_st_tensor t = { "base_model.model.linear1.lora_A.weight", LR_ST_F32, 2, { 2, 7 }, z };
    write_tensors(&f, "base_model.model.linear1.lora_A.weight", &t);
    assert_int_equal(load(&f, "b", &e), LR_ENONFINITE);
    assert_msg_contains(e.msg, "base_model.model.linear1.lora_A.weight: entry (1, 2) is NaN");
    /* an integer dtype is refused */
    int32_t iz[14] = { 0 };
    lr_st_tensor ti = { "base_model.model.linear1.lora_A.weight", LR_ST_I32, 2, { 2, 7 }, iz };
    write_tensors(&f, "base_model.model.linear1.lora_A.weight", &ti);
    assert_int_equal(load(&f, "b", &e), LR_EFORMAT);
    assert_msg_contains(e.msg, "base_model.model.linear1.lora_A.weight");
    /* a truncated file is caught by the safetensors validation, naming the file */
    char *p = ad_file(&f, LR_ADAPTER_WEIGHTS);
    lr_test_write_file(p, "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":", 13);
    assert_int_equal(load(&f, "b", &e), LR_EFORMAT);
    assert_msg_contains(e.msg, "adapter_model.safetensors");
    free(p);
    assert_int_equal(lr_lora_count(f.lm), 1);
    fx_free(&f);
}

static void test_bad_config(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, NULL);
    lr_err e;
    char *p = ad_file(&f, LR_ADAPTER_CONFIG);
    char *good = NULL;
    {
        json_error_t je;
        json_t *o = json_load_file(p, 0, &je);
        good = json_dumps(o, 0);
        json_decref(o);
    }
    lr_test_write_file(p, "{\"peft_type\": \"LORA\",", 21);
    assert_int_equal(load(&f, "b", &e), LR_EFORMAT);
    assert_msg_contains(e.msg, "adapter_config.json: line");
    lr_test_write_file(p, "[1, 2]", 6);
    assert_int_equal(load(&f, "b", &e), LR_EFORMAT);
    assert_msg_contains(e.msg, "not a JSON object");
    {
        /* the good config padded past the 4 KB first read still loads; past 16 MiB it is
         * refused before parsing */
        size_t glen = strlen(good), big = ((size_t)16 << 20) + 1;
        char *pad = malloc(big);
        assert_non_null(pad);
        memcpy(pad, good, glen);
        memset(pad + glen, ' ', big - glen);
        lr_test_write_file(p, pad, glen + 10000);
        assert_int_equal(load(&f, "b", &e), LR_OK);
        assert_int_equal(lr_lora_remove(f.lm, "b", NULL), LR_OK);
        lr_test_write_file(p, pad, big);
        assert_int_equal(load(&f, "b", &e), LR_EFORMAT);
        assert_msg_contains(e.msg, "adapter_config.json: larger than 16 MiB");
        free(pad);
    }
    struct { const char *key; json_t *v; lr_status s; const char *msg; } cases[] = {
        { "peft_type", json_string("IA3"), LR_EFORMAT, "peft_type is \"IA3\", expected \"LORA\"" },
        { "peft_type", json_integer(1), LR_EFORMAT, "peft_type is not a string" },
        { "peft_type", NULL, LR_EFORMAT, "missing field \"peft_type\"" },
        { "lora_alpha", json_real(0.0), LR_EFORMAT, "lora_alpha is 0, expected a number > 0" },
        { "lora_alpha", json_real(1e300), LR_EFORMAT, "lora_alpha is 1e+300, expected a number > 0 that float32 holds" },
        { "lora_alpha", json_string("8"), LR_EFORMAT, "lora_alpha is not a number" },
        { "init_lora_weights", json_integer(123), LR_EFORMAT, "init_lora_weights is a number, expected true, false or a string" },
        { "init_lora_weights", json_string("gaussian_with_a_name_far_longer_than_fits"), LR_EFORMAT,
          "is longer than 31 characters" },
        { "lora_alpha", NULL, LR_EFORMAT, "missing field \"lora_alpha\"" },
        { "use_rslora", json_string("yes"), LR_EFORMAT, "use_rslora must be true or false" },
        { "target_modules", json_string(".*linear.*"), LR_EFORMAT, "regular expression" },
        { "target_modules", json_array(), LR_EFORMAT, "non-empty list" },
        { "target_modules", json_pack("[s]", "q_proj"), LR_EDIM, "\"q_proj\", which is not a layer of the base" },
        { "target_modules", json_pack("[i]", 1), LR_EFORMAT, "target_modules[0] is not a string" },
        { "target_modules", NULL, LR_EFORMAT, "missing field \"target_modules\"" },
        { "use_dora", json_true(), LR_EFORMAT, "use_dora is set, which is not supported" },
        { "bias", json_string("all"), LR_EFORMAT, "bias must be \"none\"" },
        { "fan_in_fan_out", json_true(), LR_EFORMAT, "fan_in_fan_out is set" },
        { "rank_pattern", json_pack("{s:i}", "linear1", 0), LR_EFORMAT, "rank_pattern[\"linear1\"] must be an integer >= 1" },
        { "rank_pattern", json_pack("{s:f}", "linear1", 2.0), LR_EFORMAT, "rank_pattern[\"linear1\"] must be an integer" },
        { "rank_pattern", json_pack("{s:s}", "linear1", "2"), LR_EFORMAT, "rank_pattern[\"linear1\"] must be an integer" },
        { "rank_pattern", json_pack("[s]", "linear1"), LR_EFORMAT, "rank_pattern must be an object" },
        { "rank_pattern", json_pack("{s:i}", "linear(1", 2), LR_EFORMAT, "rank_pattern key \"linear(1\" is not a valid regular expression" },
        /* keys that would take gigabytes to compile (the adapter_config fuzz target found the first) */
        { "rank_pattern", json_pack("{s:i}", "linear2++++++++++++++++++++++++++++++", 2), LR_EFORMAT, "a quantifier follows another" },
        { "rank_pattern", json_pack("{s:i}", "(linear1{60}){60}", 2), LR_EFORMAT, "more than one {m,n} interval" },
        { "rank_pattern", json_pack("{s:i}", "linear1{65}", 2), LR_EFORMAT, "a bound above 64" },
        /* nested groups, each repeated: 2^24 copies (79 bytes; 12 s and 2.8 GB before lr_regex_check) */
        { "rank_pattern", json_pack("{s:i}", "((((((((((((((((((((((((linear2)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+", 2), LR_EFORMAT, "4096 extra nodes" },
        { "alpha_pattern", json_pack("{s:f}", "linear3", 0.0), LR_EFORMAT, "alpha_pattern[\"linear3\"] must be a number > 0" },
        { "alpha_pattern", json_pack("{s:f}", "linear3", -2.0), LR_EFORMAT, "alpha_pattern[\"linear3\"] must be a number > 0" },
        { "alpha_pattern", json_pack("{s:f}", "linear3", 1e300), LR_EFORMAT, "alpha_pattern[\"linear3\"] must be a number > 0 that float32" },
        { "alpha_pattern", json_pack("{s:b}", "linear3", 1), LR_EFORMAT, "alpha_pattern[\"linear3\"] must be a number" },
        /* a key that matches no target layer is still checked */
        { "alpha_pattern", json_pack("{s:i,s:i}", "linear3", 2, "q_proj[", 2), LR_EFORMAT, "alpha_pattern key \"q_proj[\"" },
        { "modules_to_save", json_pack("[s]", "linear3"), LR_EFORMAT, "modules_to_save is set" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        lr_test_write_file(p, good, strlen(good));
        edit_config(&f, cases[i].key, cases[i].v);
        lr_status s = load(&f, "b", &e);
        if (s != cases[i].s || !strstr(e.msg, cases[i].msg))
            fail_msg("case %zu (%s): status %d, message \"%s\", expected \"%s\"", i, cases[i].key,
                     (int)s, e.msg, cases[i].msg);
        assert_msg_contains(e.msg, "adapter_config.json");
    }
    /* fields we ignore, and init_lora_weights as a boolean */
    lr_test_write_file(p, good, strlen(good));
    edit_config(&f, "lora_dropout", json_real(0.1));
    edit_config(&f, "task_type", json_string("CAUSAL_LM"));
    edit_config(&f, "init_lora_weights", json_true());
    lr_adapter_info info;
    assert_int_equal(lr_adapter_load(f.lm, f.ad, "b", &info, &e), LR_OK);
    assert_string_equal(info.init_lora_weights, "true");
    assert_int_equal(lr_lora_count(f.lm), 2);
    free(good);
    free(p);
    fx_free(&f);
}

/* ------------------------------------------------------- rank / alpha patterns ---- */

/* Writes a PEFT adapter with per-layer ranks to dir on the 7-6-5-4 net: r = 2, lora_alpha 4,
 * rank_pattern {"near2": 5, "linear1": 3, "linear3": 1} ("near2" must not match linear2:
 * a key matches whole dot-separated names), alpha_pattern {"linear[12]": 6, "linear1": 100}
 * (the first match wins: linear1 gets 6). a[l]: (r_l, in), b[l]: (out, r_l), random. */
static const size_t PAT_R[3] = { 3, 2, 1 };
static const float PAT_ALPHA[3] = { 6, 6, 4 };

static void write_patterned(const char *dir, const lr_mlp *net, bool rslora, float *a[3], float *b[3])
{
    assert_int_equal(mkdir(dir, 0777), 0);
    lr_rng rng;
    lr_rng_seed(&rng, 21);
    lr_st_tensor t[6];
    char names[6][64];
    for (size_t l = 0; l < 3; l++) {
        const lr_layer *L = &net->layer[l];
        a[l] = lr_test_randn(&rng, PAT_R[l] * L->in, 1.0f);
        b[l] = lr_test_randn(&rng, L->out * PAT_R[l], 0.5f);
        snprintf(names[2 * l], 64, "base_model.model.%.15s.lora_A.weight", L->name);
        snprintf(names[2 * l + 1], 64, "base_model.model.%.15s.lora_B.weight", L->name);
        t[2 * l] = (lr_st_tensor){ .name = names[2 * l], .dtype = LR_ST_F32, .ndim = 2,
                                   .shape = { PAT_R[l], L->in }, .data = a[l] };
        t[2 * l + 1] = (lr_st_tensor){ .name = names[2 * l + 1], .dtype = LR_ST_F32, .ndim = 2,
                                       .shape = { L->out, PAT_R[l] }, .data = b[l] };
    }
    char *wp = lr_test_path(dir, LR_ADAPTER_WEIGHTS), *cp = lr_test_path(dir, LR_ADAPTER_CONFIG);
    lr_err e;
    if (lr_safetensors_write(wp, t, 6, NULL, 0, &e)) fail_msg("%s", e.msg);
    json_t *rp = json_object(), *ap = json_object();
    json_object_set_new(rp, "near2", json_integer(5));
    json_object_set_new(rp, "linear1", json_integer(3));
    json_object_set_new(rp, "linear3", json_integer(1));
    json_object_set_new(ap, "linear[12]", json_integer(6));
    json_object_set_new(ap, "linear1", json_real(100.0));
    json_t *o = json_pack("{s:s, s:i, s:i, s:b, s:[s,s,s], s:o, s:o}", "peft_type", "LORA", "r", 2,
                          "lora_alpha", 4, "use_rslora", rslora, "target_modules", "linear1", "linear2",
                          "linear3", "rank_pattern", rp, "alpha_pattern", ap);
    assert_non_null(o);
    assert_int_equal(json_dump_file(o, cp, JSON_INDENT(2)), 0);  /* insertion order kept */
    json_decref(o);
    free(wp);
    free(cp);
}

/* A per-layer-rank adapter loads exactly: the net with it selected computes the outputs of
 * the dense net W_l + s_l·B_l·A_l (formed here in double), s_l = α_l/r_l or α_l/√r_l. */
static void test_patterns(void **state)
{
    (void)state;
    for (int rs = 0; rs < 2; rs++) {
        fixture f;
        fx_init(&f, NULL);
        char *pd = lr_test_path(f.dir, "pat");
        float *a[3], *b[3];
        write_patterned(pd, &f.net, rs, a, b);
        lr_adapter_info info;
        lr_err e;
        if (lr_adapter_load(f.lm, pd, "p", &info, &e)) fail_msg("%s", e.msg);
        assert_true(info.has_patterns);
        assert_int_equal(info.cfg.rank, 3);
        assert_true(info.cfg.alpha == 4.0f);
        for (size_t l = 0; l < 3; l++) {
            assert_int_equal(info.layer_rank[l], PAT_R[l]);
            assert_true(info.layer_alpha[l] == PAT_ALPHA[l]);
        }
        /* dense reference net: W_l + s_l·B_l·A_l */
        lr_mlp ref;
        assert_int_equal(lr_mlp_init(&ref, SIZES, 4, NULL), LR_OK);
        memcpy(ref.params, f.net.params, f.net.n_params * sizeof(float));
        for (size_t l = 0; l < 3; l++) {
            lr_layer *L = &ref.layer[l];
            double sl = rs ? PAT_ALPHA[l] / sqrt((double)PAT_R[l]) : PAT_ALPHA[l] / (double)PAT_R[l];
            for (size_t i = 0; i < L->out; i++)
                for (size_t j = 0; j < L->in; j++) {
                    double d = 0;
                    for (size_t k = 0; k < PAT_R[l]; k++)
                        d += (double)b[l][i * PAT_R[l] + k] * a[l][k * L->in + j];
                    L->w.data[i * L->w.ld + j] = (float)(L->w.data[i * L->w.ld + j] + sl * d);
                }
        }
        float got[BATCH * 4], want[BATCH * 4], base[BATCH * 4];
        assert_int_equal(lr_mlp_forward(&f.net, base, f.x, BATCH, NULL, &e), LR_OK);
        assert_int_equal(lr_lora_select(f.lm, "p", &e), LR_OK);
        assert_int_equal(lr_mlp_forward(&f.net, got, f.x, BATCH, NULL, &e), LR_OK);
        assert_int_equal(lr_mlp_forward(&ref, want, f.x, BATCH, NULL, &e), LR_OK);
        double dmax = 0, wmax = 0;
        for (size_t i = 0; i < BATCH * 4; i++) {
            dmax = fmax(dmax, fabs((double)got[i] - want[i]));
            wmax = fmax(wmax, fabs((double)want[i]));
            assert_allclose(got[i], want[i], 1e-5, 1e-6 * wmax + 1e-7);
        }
        assert_true(dmax <= 2e-6 * wmax);
        /* and the adapter does change the output (the check above could not pass by accident) */
        double moved = 0;
        for (size_t i = 0; i < BATCH * 4; i++) moved = fmax(moved, fabs((double)base[i] - want[i]));
        assert_true(moved > 1e-2 * wmax);
        lr_mlp_free(&ref);

        /* a tensor shaped by r = 2 where rank_pattern says 3: named, with the layer's rank */
        lr_st_tensor bad = { .name = "base_model.model.linear1.lora_A.weight", .dtype = LR_ST_F32,
                             .ndim = 2, .shape = { 2, 7 }, .data = a[0] };
        char *wp = lr_test_path(pd, LR_ADAPTER_WEIGHTS);
        lr_safetensors st;
        if (lr_safetensors_open(&st, wp, &e)) fail_msg("%s", e.msg);
        lr_st_tensor t[6];
        for (size_t i = 0; i < 6; i++) t[i] = *lr_safetensors_at(&st, i);
        for (size_t i = 0; i < 6; i++)
            if (strcmp(t[i].name, bad.name) == 0) t[i] = bad;
        void **bufs = lr_test_st_fill(&st, t, 6);
        char *tmp = lr_test_path(f.dir, "t.safetensors");
        if (lr_safetensors_write(tmp, t, 6, NULL, 0, &e)) fail_msg("%s", e.msg);
        lr_test_st_free(bufs, 6);
        lr_safetensors_free(&st);
        assert_int_equal(rename(tmp, wp), 0);
        e.msg[0] = '\0';
        assert_int_equal(lr_adapter_load(f.lm, pd, "q", NULL, &e), LR_EDIM);
        assert_msg_contains(e.msg, "adapter_model.safetensors: base_model.model.linear1.lora_A.weight: "
                                   "expected shape (3, 7), got (2, 7)");
        assert_msg_contains(e.msg, "r = 3 for this layer in adapter_config.json");
        assert_null(lr_lora_opts_of(f.lm, "q"));
        free(tmp);
        free(wp);
        for (size_t l = 0; l < 3; l++) {
            free(a[l]);
            free(b[l]);
        }
        free(pd);
        fx_free(&f);
    }
}

static void test_missing_files(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, NULL);
    lr_err e;
    char *p = ad_file(&f, LR_ADAPTER_WEIGHTS);
    assert_int_equal(remove(p), 0);
    assert_int_equal(load(&f, "b", &e), LR_EIO);
    assert_msg_contains(e.msg, "adapter_model.safetensors");
    free(p);
    p = ad_file(&f, LR_ADAPTER_CONFIG);
    assert_int_equal(remove(p), 0);
    assert_int_equal(load(&f, "b", &e), LR_EIO);
    assert_msg_contains(e.msg, "ad/adapter_config.json: No such file");
    /* a FIFO in its place is refused at once, not waited on */
    assert_int_equal(mkfifo(p, 0600), 0);
    assert_int_equal(load(&f, "b", &e), LR_EIO);
    assert_msg_contains(e.msg, "adapter_config.json: is a FIFO (named pipe), expected a JSON adapter config");
    assert_int_equal(remove(p), 0);
    free(p);
    char *none = lr_test_path(f.dir, "nope");
    assert_int_equal(lr_adapter_load(f.lm, none, "b", NULL, &e), LR_EIO);
    assert_msg_contains(e.msg, "nope/adapter_config.json");
    free(none);
    assert_int_equal(lr_lora_count(f.lm), 1);
    fx_free(&f);
}

static void test_save_errors(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, NULL);
    lr_err e;
    assert_int_equal(lr_adapter_save(f.lm, f.ad, "nope", NULL, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "no adapter named \"nope\"");
    /* the target is a file, not a directory */
    char *p = ad_file(&f, LR_ADAPTER_CONFIG);
    assert_int_equal(lr_adapter_save(f.lm, p, "a", NULL, &e), LR_EIO);
    assert_msg_contains(e.msg, "not a directory");
    /* a missing parent directory */
    char *q = lr_test_path(f.dir, "no/such/dir");
    assert_int_equal(lr_adapter_save(f.lm, q, "a", NULL, &e), LR_EIO);
    assert_msg_contains(e.msg, "cannot create directory");
    /* a write that fails in a directory the save made (a file-size limit, as a full disk
     * would): no file, no temp and no empty directory are left */
    char *fresh = lr_test_path(f.dir, "fresh");
    struct rlimit old_lim, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old_lim), 0);
    void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old_lim;
    lim.rlim_cur = 64;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    lr_status fs = lr_adapter_save(f.lm, fresh, "a", NULL, &e);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old_lim), 0);
    signal(SIGXFSZ, old_sig);
    assert_int_equal(fs, LR_EIO);
    assert_msg_contains(e.msg, "File too large");
    assert_int_equal(access(fresh, F_OK), -1);
    free(fresh);
    /* the tensors cannot be committed (their name is taken by a directory): the config
     * written so far is discarded, the old one stays byte for byte, no temp file remains */
    char *d2 = lr_test_path(f.dir, "d2");
    assert_int_equal(lr_adapter_save(f.lm, d2, "a", "old", &e), LR_OK);
    char *w2 = lr_test_path(d2, LR_ADAPTER_WEIGHTS), *c2 = lr_test_path(d2, LR_ADAPTER_CONFIG);
    assert_int_equal(remove(w2), 0);
    assert_int_equal(mkdir(w2, 0700), 0);
    FILE *fp = fopen(c2, "rb");
    char before[4096], after[4096];
    size_t nb = fread(before, 1, sizeof before, fp);
    fclose(fp);
    lr_lora_opts c = lr_lora_opts_default();
    assert_int_equal(lr_lora_insert(f.lm, "other", &c, NULL), LR_OK);
    assert_int_equal(lr_adapter_save(f.lm, d2, "other", "new", &e), LR_EIO);
    fp = fopen(c2, "rb");
    size_t na = fread(after, 1, sizeof after, fp);
    fclose(fp);
    assert_int_equal(na, nb);
    assert_memory_equal(before, after, nb);
    DIR *dd = opendir(d2);
    struct dirent *de;
    size_t n = 0;
    while ((de = readdir(dd)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(dd);
    assert_int_equal(n, 2); /* the config and the directory in the way */
    rmdir(w2);
    free(d2);
    free(w2);
    free(c2);
    assert_int_equal(lr_adapter_load(f.lm, f.ad, "a", NULL, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "\"a\" already exists");
    assert_int_equal(lr_adapter_save(NULL, f.ad, "a", NULL, &e), LR_EINVAL);
    assert_int_equal(lr_adapter_load(f.lm, f.ad, NULL, NULL, &e), LR_EINVAL);
    free(p);
    free(q);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_switch_loaded),
        cmocka_unit_test(test_pissa_config),
        cmocka_unit_test(test_wrong_shape),
        cmocka_unit_test(test_wrong_rank),
        cmocka_unit_test(test_missing_and_extra_tensor),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_missing_files),
        cmocka_unit_test(test_save_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
