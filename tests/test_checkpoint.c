/* test_checkpoint.c — MLP checkpoints: round trips, the PyTorch-facing layout, every
 * mismatch between a file and a model, and crash-safe replacement.
 *
 * Bad files are written by hand here (8-byte length, JSON header, data), independent of
 * the library's writer, so the checks do not lean on the code they test.
 */
#include <math.h>
#include "lr_test.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <jansson.h>

#include "lowrank/io/safetensors.h"
#include "lowrank/nn/checkpoint.h"
#include "lowrank/nn/mlp.h"
#include "lowrank/base/rng.h"

static void make_net(lr_mlp *net, const size_t *sizes, size_t n, uint64_t seed)
{
    lr_err e = { { 0 } };
    if (lr_mlp_init(net, sizes, n, &e)) fail_msg("%s", e.msg);
    lr_rng rng;
    lr_rng_seed(&rng, seed);
    lr_mlp_reset_params(net, &rng);
}

/* Writes a safetensors file: tensors `names[i]` of dtype `dtypes[i]` (NULL = F32) with shapes
 * dims[i][0..nd[i]), data zero-filled, contiguous in order. */
typedef struct {
    const char *name, *dtype;
    size_t nd, dims[3];
} tspec;

static void write_st(const char *path, const tspec *t, size_t n)
{
    json_t *h = json_object();
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const char *dt = t[i].dtype ? t[i].dtype : "F32";
        size_t el = strcmp(dt, "F16") == 0 || strcmp(dt, "BF16") == 0 ? 2 : strcmp(dt, "F64") == 0 ? 8 : 4;
        size_t cnt = 1;
        json_t *shape = json_array();
        for (size_t d = 0; d < t[i].nd; d++) {
            cnt *= t[i].dims[d];
            json_array_append_new(shape, json_integer((json_int_t)t[i].dims[d]));
        }
        json_t *o = json_object();
        json_object_set_new(o, "dtype", json_string(dt));
        json_object_set_new(o, "shape", shape);
        json_t *offs = json_array();
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + cnt * el)));
        json_object_set_new(o, "data_offsets", offs);
        json_object_set_new(h, t[i].name, o);
        off += cnt * el;
    }
    char *js = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    size_t hl = strlen(js);
    size_t total = 8 + hl + off;
    unsigned char *buf = calloc(1, total);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, js, hl);
    free(js);
    lr_test_write_file(path, buf, total);
    free(buf);
}

/* The tensors of a correct checkpoint of a net with these sizes. */
static size_t good_specs(tspec *t, const size_t *sizes, size_t n_sizes)
{
    static char names[2 * LR_MLP_MAX_LAYERS][32];
    size_t k = 0;
    for (size_t i = 0; i + 1 < n_sizes; i++) {
        snprintf(names[k], sizeof names[k], "linear%zu.weight", i + 1);
        t[k] = (tspec){ names[k], NULL, 2, { sizes[i + 1], sizes[i], 0 } };
        k++;
        snprintf(names[k], sizeof names[k], "linear%zu.bias", i + 1);
        t[k] = (tspec){ names[k], NULL, 1, { sizes[i + 1], 0, 0 } };
        k++;
    }
    return k;
}

static bool has_tmp_file(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    bool found = false;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp")) found = true;
    closedir(d);
    return found;
}

static const size_t small[] = { 5, 4, 3 };

static void test_round_trip_bit_exact(void **state)
{
    (void)state;
    lr_err e = { { 0 } };
    char *dir = lr_test_tmpdir();
    char *path = lr_test_path(dir, "m.safetensors");
    lr_mlp a, b, c;
    make_net(&a, small, 3, 7);
    make_net(&b, small, 3, 8);   /* different values, same shapes */
    a.params[3] = -0.0f;         /* odd values survive: signed zero, a subnormal */
    a.params[4] = 1e-45f;
    lr_checkpoint_info info = { .has_seed = true, .seed = UINT64_MAX };
    assert_int_equal(lr_checkpoint_save(&a, path, &info, &e), LR_OK);
    lr_checkpoint_info got;
    memset(&got, 0xff, sizeof got);
    assert_int_equal(lr_checkpoint_load(&b, path, &got, &e), LR_OK);
    assert_memory_equal(a.params, b.params, a.n_params * sizeof(float));
    assert_true(got.has_seed);
    assert_true(got.seed == UINT64_MAX);
    assert_true(strlen(got.version) > 0);

    assert_int_equal(lr_checkpoint_load_new(&c, path, NULL, &e), LR_OK);
    assert_int_equal(c.n_layers, 2);
    assert_int_equal(c.sizes[0], 5);
    assert_int_equal(c.sizes[1], 4);
    assert_int_equal(c.sizes[2], 3);
    assert_memory_equal(a.params, c.params, a.n_params * sizeof(float));
    assert_false(has_tmp_file(dir));

    /* without a seed: has_seed comes back false */
    assert_int_equal(lr_checkpoint_save(&a, path, NULL, &e), LR_OK);
    assert_int_equal(lr_checkpoint_load(&b, path, &got, &e), LR_OK);
    assert_false(got.has_seed);
    lr_mlp_free(&a);
    lr_mlp_free(&b);
    lr_mlp_free(&c);
    lr_test_rmtree(dir);
    free(path);
    free(dir);
}

/* The file a PyTorch user opens: state-dict names, F32, (out, in) shapes, metadata. */
static void test_pytorch_layout(void **state)
{
    (void)state;
    lr_err e = { { 0 } };
    char *dir = lr_test_tmpdir();
    char *path = lr_test_path(dir, "richboynet.safetensors");
    lr_mlp net;
    make_net(&net, lr_mlp_default_sizes, 4, 0);
    lr_checkpoint_info info = { .has_seed = true, .seed = 42 };
    assert_int_equal(lr_checkpoint_save(&net, path, &info, &e), LR_OK);
    size_t n;
    unsigned char *buf = lr_test_read_file(path, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | buf[i];
    assert_true(8 + hl <= n);
    assert_int_equal(n, 8 + hl + 4 * (uint64_t)2807010);
    json_error_t je;
    json_t *h = json_loadb((const char *)buf + 8, hl, 0, &je);
    assert_non_null(h);
    const char *names[] = { "linear1.weight", "linear1.bias", "linear2.weight",
                            "linear2.bias", "linear3.weight", "linear3.bias" };
    const size_t shapes[6][2] = { { 1000, 784 }, { 1000, 0 }, { 2000, 1000 }, { 2000, 0 },
                                  { 10, 2000 }, { 10, 0 } };
    /* state-dict order in memory; the file orders tensors by name as safetensors does */
    size_t param_off = 0, data_bytes = 0;
    for (int i = 0; i < 6; i++) {
        json_t *t = json_object_get(h, names[i]);
        if (!t) fail_msg("no tensor %s", names[i]);
        assert_string_equal(json_string_value(json_object_get(t, "dtype")), "F32");
        json_t *shape = json_object_get(t, "shape");
        size_t nd = shapes[i][1] ? 2 : 1, cnt = 1;
        assert_int_equal(json_array_size(shape), nd);
        for (size_t d = 0; d < nd; d++) {
            assert_int_equal(json_integer_value(json_array_get(shape, d)), shapes[i][d]);
            cnt *= shapes[i][d];
        }
        json_t *offs = json_object_get(t, "data_offsets");
        size_t b0 = (size_t)json_integer_value(json_array_get(offs, 0));
        size_t b1 = (size_t)json_integer_value(json_array_get(offs, 1));
        assert_int_equal(b1 - b0, 4 * cnt);
        /* the bytes are the parameters, little-endian float32 (this host is little-endian) */
        assert_memory_equal(buf + 8 + hl + b0, net.params + param_off, 4 * cnt);
        param_off += cnt;
        data_bytes += 4 * cnt;
    }
    assert_int_equal(param_off, net.n_params);
    assert_int_equal(8 + hl + data_bytes, n);
    json_t *meta = json_object_get(h, "__metadata__");
    assert_non_null(meta);
    assert_string_equal(json_string_value(json_object_get(meta, "format")), "pt");
    assert_string_equal(json_string_value(json_object_get(meta, "layers")), "784,1000,2000,10");
    assert_string_equal(json_string_value(json_object_get(meta, "seed")), "42");
    assert_non_null(json_string_value(json_object_get(meta, "lowrank_version")));
    assert_int_equal(json_object_size(h), 7);
    json_decref(h);
    free(buf);
    lr_mlp_free(&net);
    lr_test_rmtree(dir);
    free(path);
    free(dir);
}

/* Loading into a model of other sizes: the message names the file, tensor and both shapes,
 * and the model is untouched. */
static void test_shape_mismatch(void **state)
{
    (void)state;
    lr_err e = { { 0 } };
    char *dir = lr_test_tmpdir();
    char *path = lr_test_path(dir, "m.safetensors");
    lr_mlp a, b;
    make_net(&a, small, 3, 1);
    const size_t other[] = { 5, 6, 3 };
    make_net(&b, other, 3, 2);
    float *copy = malloc(b.n_params * sizeof(float));
    memcpy(copy, b.params, b.n_params * sizeof(float));
    assert_int_equal(lr_checkpoint_save(&a, path, NULL, &e), LR_OK);
    assert_int_equal(lr_checkpoint_load(&b, path, NULL, &e), LR_EDIM);
    assert_msg_contains(e.msg, path);
    assert_msg_contains(e.msg, "linear1.weight");
    assert_msg_contains(e.msg, "(6, 5)");
    assert_msg_contains(e.msg, "(4, 5)");
    assert_memory_equal(b.params, copy, b.n_params * sizeof(float));

    /* fewer layers in the model than in the file: an extra tensor */
    lr_mlp c;
    const size_t one[] = { 5, 4 };
    make_net(&c, one, 2, 3);
    assert_int_equal(lr_checkpoint_load(&c, path, NULL, &e), LR_EFORMAT);
    assert_msg_contains(e.msg, path);
    assert_msg_contains(e.msg, "linear2.");
    /* more layers in the model than in the file: a missing tensor */
    const size_t three[] = { 5, 4, 3, 2 };
    lr_mlp d;
    make_net(&d, three, 4, 3);
    assert_int_equal(lr_checkpoint_load(&d, path, NULL, &e), LR_EFORMAT);
    assert_msg_contains(e.msg, "linear3.weight");
    assert_msg_contains(e.msg, "missing");
    free(copy);
    lr_mlp_free(&a);
    lr_mlp_free(&b);
    lr_mlp_free(&c);
    lr_mlp_free(&d);
    lr_test_rmtree(dir);
    free(path);
    free(dir);
}

/* Hand-made files, each with one thing wrong. */
static void test_crafted_mismatches(void **state)
{
    (void)state;
    lr_err e = { { 0 } };
    char *dir = lr_test_tmpdir();
    char *path = lr_test_path(dir, "bad.safetensors");
    lr_mlp net;
    make_net(&net, small, 3, 1);
    tspec t[8];
    size_t n;

    /* the good file loads (the crafting itself is right) */
    n = good_specs(t, small, 3);
    write_st(path, t, n);
    assert_int_equal(lr_checkpoint_load(&net, path, NULL, &e), LR_OK);
    lr_mlp fresh;
    assert_int_equal(lr_checkpoint_load_new(&fresh, path, NULL, &e), LR_OK);
    lr_mlp_free(&fresh);
    /* half precision, as a PyTorch user may have saved it, widens exactly (zeros here) */
    n = good_specs(t, small, 3);
    t[0].dtype = "F16";
    t[3].dtype = "BF16";
    write_st(path, t, n);
    assert_int_equal(lr_checkpoint_load(&net, path, NULL, &e), LR_OK);
    assert_true(net.params[0] == 0.0f);

    struct {
        const char *what, *needle;
        lr_status st;
    } cases[] = {
        { "missing bias", "linear2.bias", LR_EFORMAT },
        { "extra tensor", "linear1.extra", LR_EFORMAT },
        { "I32 weight", "I32", LR_EFORMAT },
        { "transposed weight", "(5, 4)", LR_EDIM },
        { "3-d weight", "linear1.weight", LR_EDIM },
        { "2-d bias", "linear1.bias", LR_EDIM },
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        n = good_specs(t, small, 3);
        switch (k) {
        case 0: n--; break;
        case 1: t[n++] = (tspec){ "linear1.extra", NULL, 1, { 2, 0, 0 } }; break;
        case 2: t[0].dtype = "I32"; break;
        case 3: t[0].dims[0] = 5; t[0].dims[1] = 4; break;
        case 4: t[0] = (tspec){ "linear1.weight", NULL, 3, { 4, 5, 1 } }; break;
        case 5: t[1] = (tspec){ "linear1.bias", NULL, 2, { 4, 1, 0 } }; break;
        }
        write_st(path, t, n);
        e.msg[0] = '\0';
        lr_status st = lr_checkpoint_load(&net, path, NULL, &e);
        if (st != cases[k].st)
            fail_msg("%s: got status %d (%s), want %d", cases[k].what, st, e.msg, cases[k].st);
        assert_msg_contains(e.msg, cases[k].needle);
        assert_msg_contains(e.msg, path);
        /* load_new refuses the same files (sizes cannot be inferred from them) */
        lr_mlp m;
        assert_int_not_equal(lr_checkpoint_load_new(&m, path, NULL, &e), LR_OK);
        assert_msg_contains(e.msg, path);
        assert_null(m.params);
    }
    lr_mlp_free(&net);
    lr_test_rmtree(dir);
    free(path);
    free(dir);
}

/* Files whose layer sizes cannot be read off: load_new names the problem. */
static void test_load_new_structure(void **state)
{
    (void)state;
    lr_err e = { { 0 } };
    char *dir = lr_test_tmpdir();
    char *path = lr_test_path(dir, "s.safetensors");
    lr_mlp m;
    struct {
        const char *what, *needle;
        tspec t[4];
        size_t n;
    } cases[] = {
        { "no tensors", "linear1.weight", { { 0 } }, 0 },
        { "gap", "linear2.weight",
          { { "linear1.weight", NULL, 2, { 4, 5, 0 } }, { "linear1.bias", NULL, 1, { 4, 0, 0 } },
            { "linear3.weight", NULL, 2, { 3, 4, 0 } }, { "linear3.bias", NULL, 1, { 3, 0, 0 } } },
          4 },
        { "chain", "linear2.weight",
          { { "linear1.weight", NULL, 2, { 4, 5, 0 } }, { "linear1.bias", NULL, 1, { 4, 0, 0 } },
            { "linear2.weight", NULL, 2, { 3, 7, 0 } }, { "linear2.bias", NULL, 1, { 3, 0, 0 } } },
          4 },
        { "bias length", "linear1.bias",
          { { "linear1.weight", NULL, 2, { 4, 5, 0 } }, { "linear1.bias", NULL, 1, { 5, 0, 0 } } },
          2 },
        { "stray name", "weights",
          { { "linear1.weight", NULL, 2, { 4, 5, 0 } }, { "linear1.bias", NULL, 1, { 4, 0, 0 } },
            { "weights", NULL, 1, { 1, 0, 0 } } },
          3 },
        { "zero-sized layer", "linear1.weight",
          { { "linear1.weight", NULL, 2, { 0, 5, 0 } }, { "linear1.bias", NULL, 1, { 0, 0, 0 } } },
          2 },
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        write_st(path, cases[k].t, cases[k].n);
        e.msg[0] = '\0';
        lr_status st = lr_checkpoint_load_new(&m, path, NULL, &e);
        if (st == LR_OK) fail_msg("%s: loaded", cases[k].what);
        assert_msg_contains(e.msg, path);
        assert_msg_contains(e.msg, cases[k].needle);
        assert_null(m.params);
    }
    lr_test_rmtree(dir);
    free(path);
    free(dir);
}

/* A failed write leaves the old checkpoint and no temp file. The tests run as root, where
 * permissions block nothing, so the failures are made otherwise: a file-size limit makes
 * the write itself fail half-way (EFBIG), a missing directory fails the open, and a
 * directory in the file's place fails the rename. */
static void test_failed_write_keeps_old(void **state)
{
    (void)state;
    lr_err e = { { 0 } };
    char *dir = lr_test_tmpdir();
    char *path = lr_test_path(dir, "m.safetensors");
    lr_mlp small_net, big;
    make_net(&small_net, small, 3, 1);
    make_net(&big, lr_mlp_default_sizes, 4, 2);
    assert_int_equal(lr_checkpoint_save(&small_net, path, NULL, &e), LR_OK);
    size_t n_old;
    unsigned char *old = lr_test_read_file(path, &n_old);

    struct rlimit saved, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = saved;
    lim.rlim_cur = 64 * 1024;   /* far below the 11 MB of RichBoyNet */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    lr_status st = lr_checkpoint_save(&big, path, NULL, &e);
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, prev);
    assert_int_equal(st, LR_EIO);
    assert_msg_contains(e.msg, path);
    size_t n_now;
    unsigned char *now = lr_test_read_file(path, &n_now);
    assert_int_equal(n_now, n_old);
    assert_memory_equal(now, old, n_old);
    free(now);
    assert_false(has_tmp_file(dir));

    /* a directory that does not exist */
    char *sub = lr_test_path(dir, "no/such/dir/m.safetensors");
    assert_int_equal(lr_checkpoint_save(&small_net, sub, NULL, &e), LR_EIO);
    assert_msg_contains(e.msg, sub);
    free(sub);

    /* a non-empty directory where the file should be: rename fails, the directory stays */
    char *dpath = lr_test_path(dir, "isdir.safetensors");
    assert_int_equal(mkdir(dpath, 0700), 0);
    char *inner = lr_test_path(dpath, "keep");
    lr_test_write_file(inner, "x", 1);
    assert_int_equal(lr_checkpoint_save(&small_net, dpath, NULL, &e), LR_EIO);
    assert_msg_contains(e.msg, dpath);
    struct stat sb;
    assert_int_equal(stat(inner, &sb), 0);
    assert_false(has_tmp_file(dir));
    /* loading a directory or a missing file is an I/O error naming it */
    assert_int_equal(lr_checkpoint_load(&small_net, dpath, NULL, &e), LR_EIO);
    assert_msg_contains(e.msg, dpath);
    char *missing = lr_test_path(dir, "missing.safetensors");
    assert_int_equal(lr_checkpoint_load(&small_net, missing, NULL, &e), LR_EIO);
    assert_msg_contains(e.msg, missing);
    free(missing);
    free(inner);
    free(dpath);

    free(old);
    lr_mlp_free(&small_net);
    lr_mlp_free(&big);
    lr_test_rmtree(dir);
    free(path);
    free(dir);
}

/* A non-finite weight or bias, or metadata whose layer sizes contradict the tensors, is
 * refused at load, naming the file, the tensor and the entry; the model is left as it was. */
static void test_nonfinite_and_contradicting_metadata(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir(), *p = lr_test_path(dir, "m.safetensors");
    lr_mlp a, b;
    lr_err e = { { 0 } };
    make_net(&a, small, 3, 1);
    make_net(&b, small, 3, 2);
    float keep = b.params[0];
    a.layer[1].w.data[1 * 4 + 2] = NAN;
    assert_int_equal(lr_checkpoint_save(&a, p, NULL, &e), LR_OK);
    assert_int_equal(lr_checkpoint_load(&b, p, NULL, &e), LR_ENONFINITE);
    assert_msg_contains(e.msg, "m.safetensors: linear2.weight (1,2) is NaN");
    assert_true(b.params[0] == keep);
    a.layer[1].w.data[1 * 4 + 2] = 0.5f;
    a.layer[0].b[3] = -INFINITY;
    assert_int_equal(lr_checkpoint_save(&a, p, NULL, &e), LR_OK);
    lr_mlp c;
    memset(&c, 0, sizeof c);
    assert_int_equal(lr_checkpoint_load_new(&c, p, NULL, &e), LR_ENONFINITE);
    assert_msg_contains(e.msg, "linear1.bias (3) is Inf");
    lr_mlp_free(&c);
    a.layer[0].b[3] = 0.25f;
    /* tensors of a 5-4-3 net, metadata claiming 5-6-3 */
    float w1[20] = { 0 }, b1[4] = { 0 }, w2[12] = { 0 }, b2[3] = { 0 };
    lr_st_tensor t[4] = {
        { "linear1.weight", LR_ST_F32, 2, { 4, 5 }, w1 }, { "linear1.bias", LR_ST_F32, 1, { 4 }, b1 },
        { "linear2.weight", LR_ST_F32, 2, { 3, 4 }, w2 }, { "linear2.bias", LR_ST_F32, 1, { 3 }, b2 },
    };
    lr_st_meta m[2] = { { "format", "pt" }, { "layers", "5,6,3" } };
    assert_int_equal(lr_safetensors_write(p, t, 4, m, 2, &e), LR_OK);
    assert_int_equal(lr_checkpoint_load(&b, p, NULL, &e), LR_EFORMAT);
    assert_msg_contains(e.msg, "__metadata__ \"layers\" is \"5,6,3\" but the tensors' sizes are 5,4,3");
    assert_true(b.params[0] == keep);
    m[1].value = "5,4,3"; /* agreeing metadata loads */
    assert_int_equal(lr_safetensors_write(p, t, 4, m, 2, &e), LR_OK);
    assert_int_equal(lr_checkpoint_load(&b, p, NULL, &e), LR_OK);
    lr_mlp_free(&a);
    lr_mlp_free(&b);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* Writes net as a checkpoint with layer 1 factored: linear1.B.weight b: (out, r) F32 and
 * linear1.A.weight a: (r, in) F64 (converted on load), the rest dense from net. */
static void write_factored(const char *path, const lr_mlp *net, const float *b, const double *a, size_t r)
{
    const lr_layer *L0 = &net->layer[0], *L1 = &net->layer[1];
    lr_st_tensor t[] = {
        { .name = "linear1.B.weight", .dtype = LR_ST_F32, .ndim = 2, .shape = { L0->out, r }, .data = b },
        { .name = "linear1.A.weight", .dtype = LR_ST_F64, .ndim = 2, .shape = { r, L0->in }, .data = a },
        { .name = "linear1.bias", .dtype = LR_ST_F32, .ndim = 1, .shape = { L0->out }, .data = L0->b },
        { .name = "linear2.weight", .dtype = LR_ST_F32, .ndim = 2, .shape = { L1->out, L1->in },
          .data = L1->w.data },
        { .name = "linear2.bias", .dtype = LR_ST_F32, .ndim = 1, .shape = { L1->out }, .data = L1->b },
    };
    lr_err e = { { 0 } };
    if (lr_safetensors_write(path, t, 5, NULL, 0, &e)) fail_msg("%s", e.msg);
}

/* A layer stored as B (out, r) and A (r, in), as `lowrank compress` writes it, loads as the
 * dense W = B·A (checked against the product in double), through both loaders. */
static void test_factored_layer(void **state)
{
    (void)state;
    lr_err e = { { 0 } };
    char *dir = lr_test_tmpdir();
    char *path = lr_test_path(dir, "f.safetensors");
    lr_mlp src, dst, fresh;
    make_net(&src, small, 3, 11);
    make_net(&dst, small, 3, 12);
    const size_t r = 2, out = small[1], in = small[0];
    lr_rng rng;
    lr_rng_seed(&rng, 5);
    float *b = lr_test_randn(&rng, out * r, 1.0f);   /* (out, r) */
    float *af = lr_test_randn(&rng, r * in, 1.0f);   /* (r, in)  */
    double a[2 * 5];
    for (size_t i = 0; i < r * in; i++) a[i] = af[i];
    write_factored(path, &src, b, a, r);
    float want[4 * 5];                               /* (out, in) = B·A in double */
    for (size_t i = 0; i < out; i++)
        for (size_t j = 0; j < in; j++) {
            double acc = 0;
            for (size_t k = 0; k < r; k++) acc += (double)b[i * r + k] * a[k * in + j];
            want[i * in + j] = (float)acc;
        }
    lr_cmat wm = { want, out, in, in };
    assert_int_equal(lr_checkpoint_load(&dst, path, NULL, &e), LR_OK);
    assert_mat_allclose(lr_cm(dst.layer[0].w), wm, 1e-6, 1e-6);
    assert_memory_equal(dst.layer[0].b, src.layer[0].b, out * sizeof(float));
    assert_memory_equal(dst.layer[1].w.data, src.layer[1].w.data, small[2] * out * sizeof(float));
    assert_int_equal(lr_checkpoint_load_new(&fresh, path, NULL, &e), LR_OK);
    assert_int_equal(fresh.n_layers, 2);
    assert_int_equal(fresh.sizes[0], in);
    assert_int_equal(fresh.sizes[1], out);
    assert_memory_equal(fresh.params, dst.params, dst.n_params * sizeof(float));

    /* a factored layer of the wrong product shape for the net: both shapes named */
    lr_mlp other;
    const size_t wide[] = { 5, 6, 3 };
    make_net(&other, wide, 3, 1);
    assert_int_equal(lr_checkpoint_load(&other, path, NULL, &e), LR_EDIM);
    assert_msg_contains(e.msg, path);
    assert_msg_contains(e.msg, "linear1.B.weight");
    assert_msg_contains(e.msg, "(6, 5)");
    assert_msg_contains(e.msg, "(4, 5)");
    /* a NaN in a factor is named by the factor, not the product */
    a[3] = NAN;
    write_factored(path, &src, b, a, r);
    float keep = dst.params[0];
    assert_int_equal(lr_checkpoint_load(&dst, path, NULL, &e), LR_ENONFINITE);
    assert_msg_contains(e.msg, "linear1.A.weight");
    assert_msg_contains(e.msg, "(0,3)");
    assert_true(dst.params[0] == keep);
    lr_mlp_free(&other);
    lr_mlp_free(&fresh);
    lr_mlp_free(&dst);
    lr_mlp_free(&src);
    free(b);
    free(af);
    lr_test_rmtree(dir);
    free(path);
    free(dir);
}

/* Factored layers that cannot be read: both forms, one half, inner sizes that disagree,
 * 1-D factors. LR_EFORMAT naming the file and the tensors, from both loaders. */
static void test_factored_errors(void **state)
{
    (void)state;
    lr_err e = { { 0 } };
    char *dir = lr_test_tmpdir();
    char *path = lr_test_path(dir, "bad.safetensors");
    lr_mlp net;
    make_net(&net, small, 3, 1);
    struct {
        const char *what, *needle1, *needle2;
    } cases[] = {
        { "both forms", "linear1.weight", "linear1.B.weight" },
        { "only B", "linear1.B.weight", "linear1.A.weight" },
        { "only A", "linear1.A.weight", "linear1.B.weight" },
        { "inner sizes", "(4, 2)", "(3, 5)" },
        { "1-d A", "linear1.A.weight", "2 dimensions" },
        { "rank 0", "linear1.B.weight", "(4, 0)" },
    };
    tspec t[8];
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        size_t n = good_specs(t, small, 3);     /* t[0] = linear1.weight (4, 5) */
        tspec B = { "linear1.B.weight", "BF16", 2, { 4, 2, 0 } };
        tspec A = { "linear1.A.weight", "F16", 2, { 2, 5, 0 } };
        switch (k) {
        case 0: t[n++] = B; t[n++] = A; break;
        case 1: t[0] = B; break;
        case 2: t[0] = A; break;
        case 3: A.dims[0] = 3; t[0] = B; t[n++] = A; break;
        case 4: A = (tspec){ "linear1.A.weight", NULL, 1, { 10, 0, 0 } }; t[0] = B; t[n++] = A; break;
        case 5: B.dims[1] = 0; A.dims[0] = 0; t[0] = B; t[n++] = A; break;
        }
        write_st(path, t, n);
        e.msg[0] = '\0';
        lr_status st = lr_checkpoint_load(&net, path, NULL, &e);
        if (st != LR_EFORMAT) fail_msg("%s: got status %d (%s), want LR_EFORMAT", cases[k].what, st, e.msg);
        assert_msg_contains(e.msg, path);
        assert_msg_contains(e.msg, cases[k].needle1);
        assert_msg_contains(e.msg, cases[k].needle2);
        lr_mlp m;
        e.msg[0] = '\0';
        st = lr_checkpoint_load_new(&m, path, NULL, &e);
        if (st != LR_EFORMAT) fail_msg("%s: load_new: got %d (%s)", cases[k].what, st, e.msg);
        assert_msg_contains(e.msg, cases[k].needle1);
        assert_null(m.params);
    }
    /* the crafted factored file itself is right: B (4, 2) BF16 and A (2, 5) F16 load as zeros */
    size_t n = good_specs(t, small, 3);
    t[0] = (tspec){ "linear1.B.weight", "BF16", 2, { 4, 2, 0 } };
    t[n++] = (tspec){ "linear1.A.weight", "F16", 2, { 2, 5, 0 } };
    write_st(path, t, n);
    net.params[0] = 1.0f;
    assert_int_equal(lr_checkpoint_load(&net, path, NULL, &e), LR_OK);
    assert_true(net.params[0] == 0.0f);
    lr_mlp_free(&net);
    lr_test_rmtree(dir);
    free(path);
    free(dir);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    lr_err e = { { 0 } };
    lr_mlp net, empty;
    memset(&empty, 0, sizeof empty);
    make_net(&net, small, 3, 1);
    assert_int_equal(lr_checkpoint_save(NULL, "x", NULL, &e), LR_EINVAL);
    assert_int_equal(lr_checkpoint_save(&net, NULL, NULL, &e), LR_EINVAL);
    assert_int_equal(lr_checkpoint_save(&empty, "x", NULL, &e), LR_EINVAL);
    assert_int_equal(lr_checkpoint_load(NULL, "x", NULL, &e), LR_EINVAL);
    assert_int_equal(lr_checkpoint_load(&net, NULL, NULL, &e), LR_EINVAL);
    assert_int_equal(lr_checkpoint_load_new(NULL, "x", NULL, &e), LR_EINVAL);
    assert_int_equal(lr_checkpoint_load_new(&empty, NULL, NULL, NULL), LR_EINVAL);
    lr_mlp_free(&net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_bit_exact),
        cmocka_unit_test(test_pytorch_layout),
        cmocka_unit_test(test_shape_mismatch),
        cmocka_unit_test(test_crafted_mismatches),
        cmocka_unit_test(test_load_new_structure),
        cmocka_unit_test(test_failed_write_keeps_old),
        cmocka_unit_test(test_nonfinite_and_contradicting_metadata),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_factored_layer),
        cmocka_unit_test(test_factored_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
