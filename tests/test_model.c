/* test_model.c — a Hugging Face checkpoint opened as one set of tensors (lr_model) and
 * written back (lr_model_writer).
 *
 * The same six tensors (BF16 and F32, 1.2 KB) as a single model.safetensors and as three
 * shards listed by model.safetensors.index.json, opened through every path a user passes (the
 * file, the directory, the index, any .json name): the same names, shapes, dtypes and values,
 * in the documented stable order (shards by file name, tensors by offset). Every refusal of
 * model.h's header comment on a crafted directory, each message naming the index and the
 * tensor or shard, and a failed open leaving the struct empty. The writer: a single file
 * byte-identical to lr_safetensors_write's, a read model's layout written back (shard files
 * byte-identical, index checked with jansson), max_shard_bytes packing and names, refused
 * puts, and failures (a tensor short of bytes, a write error while finishing a shard, an
 * index_meta that is not a JSON object) that leave the old model and no temp file. Every
 * test's temp directory is removed after it, pass or fail.
 */
#include "lr_test.h"

#include <dirent.h>
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lowrank/io/model.h"
#include "lowrank/io/safetensors.h"

/* ---- the fixture: six tensors, in name order ---- */

#define NT 6

typedef struct {
    const char *name;
    lr_st_dtype dtype;
    size_t ndim;
    size_t shape[2];
    int shard; /* in the 3-shard layout */
} spec;

static const spec SPEC[NT] = {
    { "embed.weight", LR_ST_BF16, 2, { 16, 8 }, 0 },         /* 256 bytes */
    { "layers.0.attn.weight", LR_ST_F32, 2, { 8, 8 }, 0 },   /* 256 */
    { "layers.0.mlp.weight", LR_ST_BF16, 2, { 12, 8 }, 1 },  /* 192 */
    { "layers.1.attn.weight", LR_ST_F32, 2, { 8, 8 }, 1 },   /* 256 */
    { "layers.1.norm", LR_ST_F32, 1, { 8, 0 }, 1 },          /* 32 */
    { "lm_head.weight", LR_ST_BF16, 2, { 16, 8 }, 2 },       /* 256 */
};
#define TOTAL_BYTES 1248u

static const char *const SHARD[3] = {
    "model-00001-of-00003.safetensors",
    "model-00002-of-00003.safetensors",
    "model-00003-of-00003.safetensors",
};

/* lr_safetensors_write puts tensors by dtype size (largest first) then name, so the stable
 * order of the 3-shard model is shard 1: layers.0.attn (F32), embed (BF16); shard 2:
 * layers.1.attn, layers.1.norm (F32), layers.0.mlp (BF16); shard 3: lm_head. */
static const size_t ORDER3[NT] = { 1, 0, 3, 4, 2, 5 };
static const size_t SHARD_OF3[NT] = { 0, 0, 1, 1, 1, 2 };
/* ... and of the single file: the F32 tensors by name, then the BF16 ones. */
static const size_t ORDER1[NT] = { 1, 3, 4, 0, 2, 5 };
static const size_t SHARD_OF1[NT] = { 0, 0, 0, 0, 0, 0 };

static const lr_st_meta META[1] = { { "format", "pt" } };

typedef struct {
    lr_st_tensor t[NT];
    unsigned char *data[NT]; /* host order, as written */
    size_t nbytes[NT];
    float *want[NT];         /* what lr_model_get_f32 must give */
} fixture;

static size_t numel(const spec *s)
{
    size_t n = 1;
    for (size_t d = 0; d < s->ndim; d++) n *= s->shape[d];
    return n;
}

/* Values are multiples of 1/8 (exact in BF16) scaled by 1 + 2^-12 in F32 (not BF16 values),
 * shifted by `seed` so that two fixtures differ. */
static void fixture_init(fixture *f, unsigned seed)
{
    memset(f, 0, sizeof *f);
    size_t total = 0;
    for (size_t k = 0; k < NT; k++) {
        const spec *s = &SPEC[k];
        size_t n = numel(s), es = s->dtype == LR_ST_F32 ? 4 : 2;
        f->nbytes[k] = n * es;
        total += n * es;
        f->data[k] = malloc(n * es);
        f->want[k] = malloc(n * sizeof(float));
        assert_non_null(f->data[k]);
        assert_non_null(f->want[k]);
        for (size_t i = 0; i < n; i++) {
            float v = (float)((int)((k * 37 + i * 11 + seed) % 64) - 32) * 0.125f;
            if (s->dtype == LR_ST_F32) {
                v *= 1.0f + 0x1p-12f;
                memcpy(f->data[k] + 4 * i, &v, 4);
                f->want[k][i] = v;
            } else {
                uint16_t b = lr_f32_to_bf16(v);
                memcpy(f->data[k] + 2 * i, &b, 2);
                f->want[k][i] = lr_bf16_to_f32(b);
            }
        }
        lr_st_tensor *t = &f->t[k];
        memset(t, 0, sizeof *t);
        t->name = s->name;
        t->dtype = s->dtype;
        t->ndim = s->ndim;
        for (size_t d = 0; d < s->ndim; d++) t->shape[d] = s->shape[d];
        t->data = f->data[k];
    }
    assert_int_equal(total, TOTAL_BYTES);
}

static void fixture_free(fixture *f)
{
    for (size_t k = 0; k < NT; k++) {
        free(f->data[k]);
        free(f->want[k]);
    }
}

static size_t spec_index(const char *name)
{
    for (size_t k = 0; k < NT; k++)
        if (!strcmp(SPEC[k].name, name)) return k;
    fail_msg("no tensor %s in the fixture", name);
    return 0;
}

/* Every test's temp directories, removed after it by cleanup() even when it fails (a passing
 * test removes its own). */
static char *made[8];
static size_t nmade;

static char *tmpdir(void)
{
    char *d = lr_test_tmpdir();
    assert_true(nmade < sizeof made / sizeof *made);
    made[nmade++] = strdup(d);
    return d;
}

static int cleanup(void **state)
{
    (void)state;
    for (size_t i = 0; i < nmade; i++) {
        lr_test_rmtree(made[i]);
        free(made[i]);
    }
    nmade = 0;
    return 0;
}

/* ---- writing fixtures ---- */

/* dir/file <- the fixture's tensors which[0..n) (with META). */
static void write_st(const char *dir, const char *file, const fixture *f, const size_t *which, size_t n)
{
    lr_st_tensor t[NT + 1];
    assert_true(n <= NT + 1);
    for (size_t i = 0; i < n; i++) t[i] = f->t[which[i]];
    char *p = lr_test_path(dir, file);
    lr_err err = { { 0 } };
    if (lr_safetensors_write(p, t, n, META, 1, &err)) fail_msg("writing %s: %s", p, err.msg);
    free(p);
}

static void write_single(const char *dir, const fixture *f)
{
    const size_t all[NT] = { 0, 1, 2, 3, 4, 5 };
    write_st(dir, LR_MODEL_FILE, f, all, NT);
}

static void write_shards3(const char *dir, const fixture *f)
{
    for (int s = 0; s < 3; s++) {
        size_t which[NT], n = 0;
        for (size_t k = 0; k < NT; k++)
            if (SPEC[k].shard == s) which[n++] = k;
        write_st(dir, SHARD[s], f, which, n);
    }
}

typedef struct {
    const char *name, *file;
} wm_entry;

/* The weight_map of the 3-shard layout, in name order (as transformers writes it). */
static size_t std_map(wm_entry *e)
{
    for (size_t k = 0; k < NT; k++) e[k] = (wm_entry){ SPEC[k].name, SHARD[SPEC[k].shard] };
    return NT;
}

static void write_text(const char *dir, const char *file, const char *text)
{
    char *p = lr_test_path(dir, file);
    lr_test_write_file(p, text, strlen(text));
    free(p);
}

/* dir/file <- {"metadata": {"total_size": N}, "weight_map": {e...}} */
static void write_index(const char *dir, const char *file, const wm_entry *e, size_t n)
{
    char buf[8192];
    size_t len = (size_t)snprintf(buf, sizeof buf, "{\n  \"metadata\": {\n    \"total_size\": %u\n  },\n  \"weight_map\": {",
                                  TOTAL_BYTES);
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s\n    \"%s\": \"%s\"", i ? "," : "", e[i].name, e[i].file);
        assert_true(len < sizeof buf);
    }
    len += (size_t)snprintf(buf + len, sizeof buf - len, "\n  }\n}\n");
    assert_true(len < sizeof buf);
    write_text(dir, file, buf);
}

static void write_model3(const char *dir, const fixture *f)
{
    wm_entry e[NT];
    write_shards3(dir, f);
    write_index(dir, LR_MODEL_INDEX, e, std_map(e));
}

static void remove_file(const char *dir, const char *file)
{
    char *p = lr_test_path(dir, file);
    assert_int_equal(unlink(p), 0);
    free(p);
}

static bool file_exists(const char *dir, const char *file)
{
    char *p = lr_test_path(dir, file);
    struct stat sb;
    bool ok = stat(p, &sb) == 0;
    free(p);
    return ok;
}

/* Entries of dir that do not start with '.' */
static int visible_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) fail_msg("cannot open directory %s", dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* ---- checking an open model ---- */

static void check_model(lr_model *m, const fixture *f, const size_t *order, const size_t *shard_of,
                        const char *const *shard_names, size_t nshards)
{
    lr_err err = { { 0 } };
    assert_int_equal(lr_model_count(m), NT);
    assert_int_equal(lr_model_shard_count(m), nshards);
    for (size_t k = 0; k < nshards; k++) {
        const char *nm = lr_model_shard_name(m, k);
        assert_non_null(nm);
        assert_string_equal(nm, shard_names[k]);
        assert_non_null(lr_model_shard_at(m, k));
    }
    size_t per_shard[NT] = { 0 };
    for (size_t i = 0; i < NT; i++) {
        const spec *s = &SPEC[order[i]];
        const lr_st_tensor *t = lr_model_at(m, i);
        assert_non_null(t);
        if (strcmp(t->name, s->name))
            fail_msg("tensor %zu is %s, expected %s", i, t->name, s->name);
        assert_int_equal(t->dtype, s->dtype);
        assert_int_equal(t->ndim, s->ndim);
        for (size_t d = 0; d < s->ndim; d++) assert_int_equal(t->shape[d], s->shape[d]);
        assert_null(t->data);
        if (lr_model_shard_of(m, i) != shard_of[i])
            fail_msg("tensor %zu (%s) in shard %zu, expected %zu", i, t->name, lr_model_shard_of(m, i), shard_of[i]);
        per_shard[shard_of[i]]++;
        /* the shard's own file holds it, and lr_model_file_of names that file */
        lr_safetensors *st = lr_model_shard_at(m, shard_of[i]);
        assert_non_null(lr_safetensors_find(st, s->name));
        const char *fo = lr_model_file_of(m, s->name), *sn = shard_names[shard_of[i]];
        assert_non_null(fo);
        size_t lfo = strlen(fo), lsn = strlen(sn);
        if (lfo < lsn || strcmp(fo + lfo - lsn, sn) || (lfo > lsn && fo[lfo - lsn - 1] != '/'))
            fail_msg("lr_model_file_of(%s) = %s, expected a path to %s", s->name, fo, sn);
        struct stat sb;
        if (stat(fo, &sb) || !S_ISREG(sb.st_mode)) fail_msg("lr_model_file_of(%s) = %s: no such file", s->name, fo);

        const lr_st_tensor *byname = lr_model_find(m, s->name);
        assert_non_null(byname);
        assert_string_equal(byname->name, s->name);
        assert_int_equal(byname->dtype, s->dtype);

        /* values */
        size_t n = numel(s), k = order[i];
        float *got = malloc(n * sizeof *got);
        unsigned char *bytes = malloc(f->nbytes[k]);
        if (lr_model_get_f32(m, got, s->name, s->ndim, s->shape, &err)) fail_msg("get_f32 %s: %s", s->name, err.msg);
        for (size_t q = 0; q < n; q++)
            if (memcmp(&got[q], &f->want[k][q], 4))
                fail_msg("%s[%zu] = %.9g, expected %.9g", s->name, q, (double)got[q], (double)f->want[k][q]);
        if (lr_model_get_bytes(m, bytes, s->name, 0, f->nbytes[k], &err)) fail_msg("get_bytes %s: %s", s->name, err.msg);
        assert_memory_equal(bytes, f->data[k], f->nbytes[k]);
        /* the second half alone */
        size_t half = f->nbytes[k] / 2;
        memset(bytes, 0, f->nbytes[k]);
        if (lr_model_get_bytes(m, bytes, s->name, half, f->nbytes[k] - half, &err))
            fail_msg("get_bytes %s from %zu: %s", s->name, half, err.msg);
        assert_memory_equal(bytes, f->data[k] + half, f->nbytes[k] - half);
        free(got);
        free(bytes);
    }
    for (size_t k = 0; k < nshards; k++) assert_int_equal(lr_safetensors_count(lr_model_shard_at(m, k)), per_shard[k]);
    assert_null(lr_model_at(m, NT));
    assert_int_equal(lr_model_shard_of(m, NT), SIZE_MAX);
    assert_null(lr_model_find(m, "no.such.weight"));
    assert_string_equal(lr_model_file_of(m, "no.such.weight"), lr_model_path(m));
    assert_null(lr_model_find(m, "embed"));
    assert_null(lr_model_find(m, ""));
}

/* A single file: one shard, named as the file (model.safetensors here, but for the writer's
 * outputs) */
static void check_single_named(lr_model *m, const fixture *f, const char *given, const char *name)
{
    const char *const names[1] = { name };
    assert_string_equal(lr_model_path(m), given);
    assert_null(lr_model_index_path(m));
    check_model(m, f, ORDER1, SHARD_OF1, names, 1);
}

static void check_single(lr_model *m, const fixture *f, const char *given)
{
    check_single_named(m, f, given, LR_MODEL_FILE);
}

static void check_sharded(lr_model *m, const fixture *f, const char *given, const char *index_name)
{
    assert_string_equal(lr_model_path(m), given);
    const char *ix = lr_model_index_path(m);
    assert_non_null(ix);
    assert_msg_contains(ix, index_name);
    check_model(m, f, ORDER3, SHARD_OF3, SHARD, 3);
}

static void open_ok(lr_model *m, const char *path)
{
    lr_err err = { { 0 } };
    if (lr_model_open(m, path, &err)) fail_msg("lr_model_open %s: %s", path, err.msg);
}

/* lr_model_open(path) must fail, leave the struct empty (it starts as garbage) and say
 * `need` and one of alt1 / alt2 (either may be NULL). */
static void expect_open_fails(const char *path, const char *need, const char *alt1, const char *alt2)
{
    lr_model m;
    memset(&m, 0x5a, sizeof m);
    lr_err err;
    memset(&err, 0, sizeof err);
    lr_status s = lr_model_open(&m, path, &err);
    if (s == LR_OK) {
        lr_model_free(&m);
        fail_msg("lr_model_open %s succeeded, expected a refusal mentioning %s", path, alt1 ? alt1 : need);
    }
    /* empty: every pointer NULL, every count 0, so lr_model_free is a no-op */
    assert_null(m.path);
    assert_null(m.index);
    assert_null(m.dir);
    assert_null(m.index_meta);
    assert_int_equal(m.nshards, 0);
    assert_null(m.shard);
    assert_null(m.shard_name);
    assert_int_equal(m.nt, 0);
    assert_null(m.ts);
    assert_null(m.ti);
    assert_null(m.by_name);
    assert_int_equal(lr_model_count(&m), 0);
    assert_null(lr_model_at(&m, 0));
    assert_int_equal(lr_model_shard_count(&m), 0);
    assert_null(lr_model_find(&m, "embed.weight"));
    lr_model_free(&m);
    lr_model_free(&m);
    if (!err.msg[0]) fail_msg("lr_model_open %s: status %d with no message", path, s);
    if (need) assert_msg_contains(err.msg, need);
    if (alt1 && !strstr(err.msg, alt1) && !(alt2 && strstr(err.msg, alt2)))
        fail_msg("message \"%s\" mentions neither \"%s\" nor \"%s\"", err.msg, alt1, alt2 ? alt2 : alt1);
}

/* A tmpdir with a model directory "m" in it holding the 3-shard model. */
typedef struct {
    char *tmp, *dir;
    fixture f;
} setup;

static void setup3(setup *s)
{
    s->tmp = tmpdir();
    s->dir = lr_test_path(s->tmp, "m");
    assert_int_equal(mkdir(s->dir, 0755), 0);
    fixture_init(&s->f, 0);
    write_model3(s->dir, &s->f);
    /* a good model to begin with */
    lr_model m;
    open_ok(&m, s->dir);
    lr_model_free(&m);
}

static void teardown3(setup *s)
{
    lr_test_rmtree(s->tmp);
    fixture_free(&s->f);
    free(s->dir);
    free(s->tmp);
}

/* ---- opening ---- */

static void test_open_single_file(void **state)
{
    (void)state;
    char *dir = tmpdir();
    fixture f;
    fixture_init(&f, 0);
    write_single(dir, &f);
    lr_model m;

    /* the file */
    char *file = lr_test_path(dir, LR_MODEL_FILE);
    open_ok(&m, file);
    check_single(&m, &f, file);
    lr_model_free(&m);
    lr_model_free(&m); /* emptied: a second free is a no-op */
    lr_model_free(NULL);

    /* the directory, with and without a trailing slash */
    open_ok(&m, dir);
    check_single(&m, &f, dir);
    lr_model_free(&m);
    char *slash = lr_test_path(dir, "");
    open_ok(&m, slash);
    check_single(&m, &f, slash);
    lr_model_free(&m);

    assert_int_equal(lr_test_hidden_entries(dir), 0);
    lr_test_rmtree(dir);
    fixture_free(&f);
    free(slash);
    free(file);
    free(dir);
}

static void test_open_sharded(void **state)
{
    (void)state;
    char *dir = tmpdir();
    fixture f;
    fixture_init(&f, 0);
    write_model3(dir, &f);
    lr_model m;

    /* the directory */
    open_ok(&m, dir);
    check_sharded(&m, &f, dir, LR_MODEL_INDEX);
    lr_model_free(&m);
    char *slash = lr_test_path(dir, "");
    open_ok(&m, slash);
    check_sharded(&m, &f, slash, LR_MODEL_INDEX);
    lr_model_free(&m);

    /* the index itself */
    char *ix = lr_test_path(dir, LR_MODEL_INDEX);
    open_ok(&m, ix);
    check_sharded(&m, &f, ix, LR_MODEL_INDEX);
    lr_model_free(&m);

    /* the order does not follow the index's: its keys reversed give the same model */
    wm_entry e[NT], r[NT];
    std_map(e);
    for (size_t i = 0; i < NT; i++) r[i] = e[NT - 1 - i];
    write_index(dir, LR_MODEL_INDEX, r, NT);
    open_ok(&m, dir);
    check_sharded(&m, &f, dir, LR_MODEL_INDEX);
    lr_model_free(&m);

    /* the shards opened one by one hold what the model says, in the same order */
    open_ok(&m, dir);
    for (size_t k = 0, i = 0; k < 3; k++) {
        lr_safetensors st;
        char *p = lr_test_path(dir, SHARD[k]);
        lr_err err = { { 0 } };
        if (lr_safetensors_open(&st, p, &err)) fail_msg("%s", err.msg);
        for (size_t j = 0; j < lr_safetensors_count(&st); j++, i++) {
            assert_int_equal(lr_model_shard_of(&m, i), k);
            assert_string_equal(lr_model_at(&m, i)->name, lr_safetensors_at(&st, j)->name);
        }
        lr_safetensors_free(&st);
        free(p);
    }
    lr_model_free(&m);

    assert_int_equal(lr_test_hidden_entries(dir), 0);
    lr_test_rmtree(dir);
    fixture_free(&f);
    free(ix);
    free(slash);
    free(dir);
}

/* The index under another name ending in .json, opened by its path; the directory alone then
 * holds neither model.safetensors nor model.safetensors.index.json. */
static void test_open_index_any_name(void **state)
{
    (void)state;
    char *dir = tmpdir();
    fixture f;
    fixture_init(&f, 0);
    wm_entry e[NT];
    write_shards3(dir, &f);
    write_index(dir, "weights.index.json", e, std_map(e));
    char *ix = lr_test_path(dir, "weights.index.json");
    lr_model m;
    open_ok(&m, ix);
    check_sharded(&m, &f, ix, "weights.index.json");
    lr_model_free(&m);
    expect_open_fails(dir, dir, NULL, NULL);
    lr_test_rmtree(dir);
    fixture_free(&f);
    free(ix);
    free(dir);
}

/* model.safetensors beside an index: the directory opens the single file (as transformers). */
static void test_single_file_taken_first(void **state)
{
    (void)state;
    char *dir = tmpdir();
    fixture f;
    fixture_init(&f, 0);
    write_model3(dir, &f);
    write_single(dir, &f);
    lr_model m;
    open_ok(&m, dir);
    check_single(&m, &f, dir);
    lr_model_free(&m);
    /* the index is still there to open by its path */
    char *ix = lr_test_path(dir, LR_MODEL_INDEX);
    open_ok(&m, ix);
    check_sharded(&m, &f, ix, LR_MODEL_INDEX);
    lr_model_free(&m);
    lr_test_rmtree(dir);
    fixture_free(&f);
    free(ix);
    free(dir);
}

/* A file of two F32 tensors whose data lie in another order than the header lists them:
 * 8-byte length, the JSON header padded to 8, then the data. */
static void write_crafted(const char *dir, const char *file)
{
    /* "a.weight" [3, 4] at bytes 8..16, "b.weight" [1, 2] at 0..8: header lists a first */
    const char *json = "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
                       "\"b.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t h = strlen(json), hp = (h + 7) / 8 * 8;
    unsigned char buf[512];
    assert_true(8 + hp + 16 <= sizeof buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hp >> (8 * i));
    memcpy(buf + 8, json, h);
    memset(buf + 8 + h, ' ', hp - h);
    const float v[4] = { 1, 2, 3, 4 };
    for (int i = 0; i < 4; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int b = 0; b < 4; b++) buf[8 + hp + 4 * i + b] = (unsigned char)(u >> (8 * b));
    }
    char *p = lr_test_path(dir, file);
    lr_test_write_file(p, buf, 8 + hp + 16);
    free(p);
}

/* Shards in file-name order (not the tensors' names), tensors in offset order (not by name,
 * nor the header's order). */
static void test_stable_order(void **state)
{
    (void)state;
    char *dir = tmpdir();
    write_crafted(dir, "a-first.safetensors");
    const float z[2] = { 5, 6 };
    lr_st_tensor t = { .name = "0.zeroth", .dtype = LR_ST_F32, .ndim = 1, .shape = { 2 }, .data = z };
    char *zp = lr_test_path(dir, "z-last.safetensors");
    lr_err err = { { 0 } };
    assert_int_equal(lr_safetensors_write(zp, &t, 1, NULL, 0, &err), LR_OK);
    write_text(dir, LR_MODEL_INDEX,
               "{\"metadata\":{\"total_size\":24},\"weight_map\":{\"0.zeroth\":\"z-last.safetensors\","
               "\"a.weight\":\"a-first.safetensors\",\"b.weight\":\"a-first.safetensors\"}}");
    lr_model m;
    open_ok(&m, dir);
    assert_int_equal(lr_model_count(&m), 3);
    assert_int_equal(lr_model_shard_count(&m), 2);
    assert_string_equal(lr_model_shard_name(&m, 0), "a-first.safetensors");
    assert_string_equal(lr_model_shard_name(&m, 1), "z-last.safetensors");
    const char *want[3] = { "b.weight", "a.weight", "0.zeroth" };
    const size_t want_shard[3] = { 0, 0, 1 };
    const float want_v[3][2] = { { 1, 2 }, { 3, 4 }, { 5, 6 } };
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(lr_model_at(&m, i)->name, want[i]);
        assert_int_equal(lr_model_shard_of(&m, i), want_shard[i]);
        float got[2] = { 0, 0 };
        size_t shape[1] = { 2 };
        if (lr_model_get_f32(&m, got, want[i], 1, shape, &err)) fail_msg("%s", err.msg);
        assert_true(got[0] == want_v[i][0] && got[1] == want_v[i][1]);
    }
    assert_null(lr_model_at(&m, 3));
    assert_int_equal(lr_model_shard_of(&m, 3), SIZE_MAX);
    assert_null(lr_model_find(&m, "c.weight"));
    lr_model_free(&m);
    lr_test_rmtree(dir);
    free(zp);
    free(dir);
}

static void test_get_errors(void **state)
{
    (void)state;
    setup s;
    setup3(&s);
    lr_model m;
    open_ok(&m, s.dir);
    lr_err err = { { 0 } };
    float buf[256];
    unsigned char bytes[512];
    size_t shape[2] = { 8, 0 };

    /* a tensor in no shard */
    assert_int_not_equal(lr_model_get_f32(&m, buf, "no.such.weight", 1, shape, &err), LR_OK);
    assert_msg_contains(err.msg, "no.such.weight");
    assert_msg_contains(err.msg, lr_model_path(&m)); /* the model */
    err.msg[0] = 0;
    assert_int_not_equal(lr_model_get_bytes(&m, bytes, "no.such.weight", 0, 4, &err), LR_OK);
    assert_msg_contains(err.msg, "no.such.weight");

    /* the wrong shape: the shard file and the tensor */
    size_t bad[2] = { 4, 2 };
    assert_int_equal(lr_model_get_f32(&m, buf, "layers.1.norm", 2, bad, &err), LR_EDIM);
    assert_msg_contains(err.msg, lr_model_file_of(&m, "layers.1.norm"));
    assert_msg_contains(err.msg, SHARD[1]);
    assert_msg_contains(err.msg, "layers.1.norm: expected shape");
    size_t bad3[2] = { 16, 4 };
    assert_int_equal(lr_model_get_f32(&m, buf, "lm_head.weight", 2, bad3, &err), LR_EDIM);
    assert_msg_contains(err.msg, SHARD[2]);
    assert_msg_contains(err.msg, "lm_head.weight");

    /* bytes outside the tensor */
    assert_int_not_equal(lr_model_get_bytes(&m, bytes, "layers.1.norm", 0, 36, &err), LR_OK);
    assert_msg_contains(err.msg, "layers.1.norm");
    assert_int_not_equal(lr_model_get_bytes(&m, bytes, "layers.1.norm", 32, 4, &err), LR_OK);

    /* and the good reads still work */
    assert_int_equal(lr_model_get_f32(&m, buf, "layers.1.norm", 1, shape, &err), LR_OK);
    assert_memory_equal(buf, s.f.want[4], 32);
    lr_model_free(&m);
    teardown3(&s);
}

/* ---- refusals ---- */

static void test_refuse_missing_path(void **state)
{
    (void)state;
    char *dir = tmpdir();
    char *nope = lr_test_path(dir, "no-such-model");
    expect_open_fails(nope, nope, NULL, NULL);
    char *nofile = lr_test_path(dir, "nope.safetensors");
    expect_open_fails(nofile, nofile, NULL, NULL);
    char *nojson = lr_test_path(dir, "nope.index.json");
    expect_open_fails(nojson, nojson, NULL, NULL);
    lr_test_rmtree(dir);
    free(nope);
    free(nofile);
    free(nojson);
    free(dir);
}

/* A directory with neither model.safetensors nor the index (a config.json is not an index). */
static void test_refuse_no_model(void **state)
{
    (void)state;
    char *dir = tmpdir();
    expect_open_fails(dir, dir, NULL, NULL);
    write_text(dir, "config.json", "{\"model_type\": \"llama\"}");
    fixture f;
    fixture_init(&f, 0);
    write_shards3(dir, &f); /* shards without their index */
    expect_open_fails(dir, dir, NULL, NULL);
    lr_test_rmtree(dir);
    fixture_free(&f);
    free(dir);
}

static void test_refuse_missing_shard(void **state)
{
    (void)state;
    setup s;
    setup3(&s);
    remove_file(s.dir, SHARD[1]);
    expect_open_fails(s.dir, LR_MODEL_INDEX, SHARD[1], NULL);
    char *ix = lr_test_path(s.dir, LR_MODEL_INDEX);
    expect_open_fails(ix, LR_MODEL_INDEX, SHARD[1], NULL);
    free(ix);
    teardown3(&s);
}

static void test_refuse_bad_shard_file(void **state)
{
    (void)state;
    setup s;
    setup3(&s);
    write_text(s.dir, SHARD[2], "this is not a safetensors file");
    expect_open_fails(s.dir, LR_MODEL_INDEX, SHARD[2], NULL);
    /* a directory in the shard's place */
    remove_file(s.dir, SHARD[2]);
    char *p = lr_test_path(s.dir, SHARD[2]);
    assert_int_equal(mkdir(p, 0755), 0);
    expect_open_fails(s.dir, LR_MODEL_INDEX, SHARD[2], NULL);
    free(p);
    teardown3(&s);
}

static void test_refuse_listed_absent(void **state)
{
    (void)state;
    setup s;
    setup3(&s);
    wm_entry e[NT + 1];
    size_t n = std_map(e);
    e[n++] = (wm_entry){ "ghost.weight", SHARD[2] };
    write_index(s.dir, LR_MODEL_INDEX, e, n);
    expect_open_fails(s.dir, LR_MODEL_INDEX, "ghost.weight", NULL);
    teardown3(&s);
}

static void test_refuse_unlisted_tensor(void **state)
{
    (void)state;
    setup s;
    setup3(&s);
    wm_entry e[NT], r[NT];
    std_map(e);
    size_t n = 0;
    for (size_t i = 0; i < NT; i++)
        if (strcmp(e[i].name, "layers.1.norm")) r[n++] = e[i];
    write_index(s.dir, LR_MODEL_INDEX, r, n);
    expect_open_fails(s.dir, LR_MODEL_INDEX, "layers.1.norm", NULL);
    teardown3(&s);
}

static void test_refuse_wrong_shard(void **state)
{
    (void)state;
    setup s;
    setup3(&s);
    wm_entry e[NT];
    std_map(e);
    e[spec_index("layers.0.mlp.weight")].file = SHARD[0]; /* it is in shard 2 */
    write_index(s.dir, LR_MODEL_INDEX, e, NT);
    expect_open_fails(s.dir, LR_MODEL_INDEX, "layers.0.mlp.weight", NULL);
    teardown3(&s);
}

static void test_refuse_tensor_in_two_shards(void **state)
{
    (void)state;
    setup s;
    setup3(&s);
    /* shard 3 also holds embed.weight (listed in shard 1), with the same bytes */
    const size_t which[2] = { 5, 0 };
    write_st(s.dir, SHARD[2], &s.f, which, 2);
    expect_open_fails(s.dir, LR_MODEL_INDEX, "embed.weight", NULL);
    teardown3(&s);
}

static void test_refuse_path_leaving_dir(void **state)
{
    (void)state;
    setup s;
    setup3(&s);
    /* lm_head.weight moved to ../x.safetensors, a valid file outside the model directory */
    const size_t which[1] = { 5 };
    write_st(s.tmp, "x.safetensors", &s.f, which, 1);
    remove_file(s.dir, SHARD[2]);
    wm_entry e[NT];
    std_map(e);
    size_t lm = spec_index("lm_head.weight");
    e[lm].file = "../x.safetensors";
    write_index(s.dir, LR_MODEL_INDEX, e, NT);
    expect_open_fails(s.dir, LR_MODEL_INDEX, "../x.safetensors", "lm_head.weight");

    /* the same file by its absolute path */
    char *abs = lr_test_path(s.tmp, "x.safetensors");
    assert_true(abs[0] == '/');
    e[lm].file = abs;
    write_index(s.dir, LR_MODEL_INDEX, e, NT);
    expect_open_fails(s.dir, LR_MODEL_INDEX, abs, "lm_head.weight");

    /* a ".." part that comes back into the directory is still refused */
    const size_t which3[1] = { 5 };
    write_st(s.dir, SHARD[2], &s.f, which3, 1);
    char back[256];
    snprintf(back, sizeof back, "../m/%s", SHARD[2]);
    e[lm].file = back;
    write_index(s.dir, LR_MODEL_INDEX, e, NT);
    expect_open_fails(s.dir, LR_MODEL_INDEX, SHARD[2], "lm_head.weight");
    char *sub = lr_test_path(s.dir, "sub");
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(back, sizeof back, "sub/../%s", SHARD[2]);
    e[lm].file = back;
    write_index(s.dir, LR_MODEL_INDEX, e, NT);
    expect_open_fails(s.dir, LR_MODEL_INDEX, SHARD[2], "lm_head.weight");

    /* and the untouched index opens again */
    write_index(s.dir, LR_MODEL_INDEX, e, std_map(e));
    lr_model m;
    open_ok(&m, s.dir);
    check_sharded(&m, &s.f, s.dir, LR_MODEL_INDEX);
    lr_model_free(&m);
    free(sub);
    free(abs);
    teardown3(&s);
}

static void test_refuse_weight_map_type(void **state)
{
    (void)state;
    setup s;
    setup3(&s);
    static const char *const not_object[] = {
        "{\"metadata\":{\"total_size\":1248},\"weight_map\":[]}",
        "{\"metadata\":{\"total_size\":1248},\"weight_map\":\"model-00001-of-00003.safetensors\"}",
        "{\"metadata\":{\"total_size\":1248},\"weight_map\":null}",
        "{\"metadata\":{\"total_size\":1248}}", /* no weight_map: not an object either */
        "[]",
    };
    for (size_t i = 0; i < sizeof not_object / sizeof *not_object; i++) {
        write_text(s.dir, LR_MODEL_INDEX, not_object[i]);
        expect_open_fails(s.dir, LR_MODEL_INDEX, NULL, NULL);
    }
    /* a value that is not a string: the index names the tensor */
    static const char *const values[] = { "3", "null", "[\"model-00003-of-00003.safetensors\"]", "{}", "true" };
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        char buf[1024];
        snprintf(buf, sizeof buf,
                 "{\"metadata\":{\"total_size\":1248},\"weight_map\":{"
                 "\"embed.weight\":\"%s\",\"layers.0.attn.weight\":\"%s\",\"layers.0.mlp.weight\":\"%s\","
                 "\"layers.1.attn.weight\":\"%s\",\"layers.1.norm\":\"%s\",\"lm_head.weight\":%s}}",
                 SHARD[0], SHARD[0], SHARD[1], SHARD[1], SHARD[1], values[i]);
        write_text(s.dir, LR_MODEL_INDEX, buf);
        expect_open_fails(s.dir, LR_MODEL_INDEX, "lm_head.weight", NULL);
    }
    teardown3(&s);
}

static void test_refuse_invalid_json(void **state)
{
    (void)state;
    setup s;
    setup3(&s);
    static const char *const bad[] = {
        "",
        "{",
        "{\"metadata\":{\"total_size\":1248},\"weight_map\":{\"embed.weight\":",
        "{\"weight_map\":{\"embed.weight\":\"model-00001-of-00003.safetensors\",}}",
        "not json at all",
    };
    char *ix = lr_test_path(s.dir, LR_MODEL_INDEX);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_text(s.dir, LR_MODEL_INDEX, bad[i]);
        expect_open_fails(s.dir, LR_MODEL_INDEX, NULL, NULL);
        expect_open_fails(ix, LR_MODEL_INDEX, NULL, NULL);
    }
    free(ix);
    teardown3(&s);
}

/* A shard file named like the listed ones but not listed; other files beside the model
 * (consolidated.safetensors, as Mistral's repositories hold, config.json) are no shards. */
static void test_refuse_unlisted_shard_file(void **state)
{
    (void)state;
    setup s;
    setup3(&s);
    const size_t which[1] = { 4 };
    write_st(s.dir, "consolidated.safetensors", &s.f, which, 1);
    write_st(s.dir, "adapter_model.safetensors", &s.f, which, 1);
    write_text(s.dir, "config.json", "{}");
    lr_model m;
    open_ok(&m, s.dir);
    check_sharded(&m, &s.f, s.dir, LR_MODEL_INDEX);
    lr_model_free(&m);

    lr_st_tensor extra = { .name = "extra.weight", .dtype = LR_ST_F32, .ndim = 1, .shape = { 2 },
                           .data = (const float[2]){ 1, 2 } };
    char *p = lr_test_path(s.dir, "model-00004-of-00004.safetensors");
    lr_err err = { { 0 } };
    assert_int_equal(lr_safetensors_write(p, &extra, 1, NULL, 0, &err), LR_OK);
    expect_open_fails(s.dir, LR_MODEL_INDEX, "model-00004-of-00004.safetensors", NULL);
    char *ix = lr_test_path(s.dir, LR_MODEL_INDEX);
    expect_open_fails(ix, LR_MODEL_INDEX, "model-00004-of-00004.safetensors", NULL);
    free(ix);
    free(p);
    teardown3(&s);
}

/* ---- writing ---- */

/* Puts every tensor of f in two pieces (last tensor first); `partial` gets only its first half. */
static void put_all(lr_model_writer *w, const fixture *f, const char *partial)
{
    lr_err err = { { 0 } };
    for (size_t j = NT; j-- > 0;) {
        size_t half = f->nbytes[j] / 2;
        if (lr_model_writer_put(w, SPEC[j].name, f->data[j], half, &err)) fail_msg("put %s: %s", SPEC[j].name, err.msg);
        if (partial && !strcmp(partial, SPEC[j].name)) continue;
        if (lr_model_writer_put(w, SPEC[j].name, f->data[j] + half, f->nbytes[j] - half, &err))
            fail_msg("put %s: %s", SPEC[j].name, err.msg);
    }
}

static void entries_plain(lr_model_entry *e, const fixture *f, const char *shard)
{
    for (size_t k = 0; k < NT; k++) {
        e[k].t = f->t[k];
        e[k].t.data = NULL; /* ignored */
        e[k].shard = shard;
    }
}

static void entries_3(lr_model_entry *e, const fixture *f)
{
    entries_plain(e, f, NULL);
    for (size_t k = 0; k < NT; k++) e[k].shard = SHARD[SPEC[k].shard];
}

static void test_write_opts_default(void **state)
{
    (void)state;
    lr_model_write_opts o = lr_model_write_opts_default();
    assert_int_equal(o.max_shard_bytes, 0);
    assert_true(o.prefix == NULL || !strcmp(o.prefix, "model"));
}

/* (a) every entry without a shard (or LR_MODEL_FILE): one file, the bytes lr_safetensors_write
 * gives. */
static void test_write_single_file(void **state)
{
    (void)state;
    char *dir = tmpdir();
    fixture f;
    fixture_init(&f, 0);
    static const lr_st_meta meta[2] = { { "format", "pt" }, { "source", "test_model" } };
    char *ref = lr_test_path(dir, "ref.safetensors");
    lr_err err = { { 0 } };
    assert_int_equal(lr_safetensors_write(ref, f.t, NT, meta, 2, &err), LR_OK);
    size_t nref, nout;
    unsigned char *want = lr_test_read_file(ref, &nref);

    const char *shards[2] = { NULL, LR_MODEL_FILE };
    const lr_model_write_opts zero = lr_model_write_opts_default();
    for (int v = 0; v < 2; v++) {
        char name[64];
        snprintf(name, sizeof name, "out%d.safetensors", v);
        char *out = lr_test_path(dir, name);
        lr_model_entry e[NT];
        entries_plain(e, &f, shards[v]);
        lr_model_writer w;
        if (lr_model_writer_init(&w, out, e, NT, meta, 2, NULL, v ? &zero : NULL, &err)) fail_msg("init: %s", err.msg);
        put_all(&w, &f, NULL);
        if (lr_model_writer_commit(&w, &err)) fail_msg("commit: %s", err.msg);
        lr_model_writer_free(&w);
        unsigned char *got = lr_test_read_file(out, &nout);
        assert_int_equal(nout, nref);
        assert_memory_equal(got, want, nref);
        free(got);
        /* and it reads back as a model */
        lr_model m;
        open_ok(&m, out);
        check_single_named(&m, &f, out, name);
        lr_model_free(&m);
        free(out);
    }
    /* a file each, nothing else: no index, no temp file */
    assert_false(file_exists(dir, LR_MODEL_INDEX));
    assert_int_equal(visible_entries(dir), 3);
    assert_int_equal(lr_test_hidden_entries(dir), 0);
    free(want);
    free(ref);
    lr_test_rmtree(dir);
    fixture_free(&f);
    free(dir);
}

/* The index written at dir: weight_map[name] = shard_of_spec[k] for each tensor, total_size
 * the sum of the tensors' bytes, `note` kept from index_meta (NULL: no other key). */
static void check_index_json(const char *dir, const char *const *shard_of_spec, const char *note)
{
    char *p = lr_test_path(dir, LR_MODEL_INDEX);
    json_error_t je;
    json_t *root = json_load_file(p, JSON_REJECT_DUPLICATES, &je);
    if (!root) fail_msg("%s: %s (line %d)", p, je.text, je.line);
    assert_true(json_is_object(root));
    json_t *wm = json_object_get(root, "weight_map");
    assert_true(json_is_object(wm));
    assert_int_equal(json_object_size(wm), NT);
    for (size_t k = 0; k < NT; k++) {
        json_t *v = json_object_get(wm, SPEC[k].name);
        if (!json_is_string(v)) fail_msg("%s: weight_map has no string for %s", p, SPEC[k].name);
        assert_string_equal(json_string_value(v), shard_of_spec[k]);
    }
    json_t *md = json_object_get(root, "metadata");
    assert_true(json_is_object(md));
    json_t *ts = json_object_get(md, "total_size");
    if (!json_is_integer(ts)) fail_msg("%s: metadata.total_size is not an integer", p);
    assert_int_equal(json_integer_value(ts), TOTAL_BYTES);
    if (note) {
        json_t *n = json_object_get(md, "note");
        assert_true(json_is_string(n));
        assert_string_equal(json_string_value(n), note);
    } else {
        assert_int_equal(json_object_size(md), 1);
    }
    json_decref(root);
    free(p);
}

/* (b) a 3-shard model read, then written in its own layout: the same model, the same shard
 * files byte for byte, and an index transformers would write. */
static void test_write_layout_of_read_model(void **state)
{
    (void)state;
    setup s;
    setup3(&s);
    lr_model src;
    open_ok(&src, s.dir);
    lr_model_entry e[NT];
    for (size_t i = 0; i < NT; i++) {
        e[i].t = *lr_model_at(&src, i);
        e[i].shard = lr_model_shard_name(&src, lr_model_shard_of(&src, i));
    }
    char *out = lr_test_path(s.tmp, "out"); /* does not exist: init makes it */
    lr_model_writer w;
    lr_err err = { { 0 } };
    if (lr_model_writer_init(&w, out, e, NT, META, 1, "{\"note\": \"kept\"}", NULL, &err)) fail_msg("init: %s", err.msg);
    /* copied from the source, tensor by tensor in two pieces */
    unsigned char buf[512];
    for (size_t i = 0; i < NT; i++) {
        const char *name = lr_model_at(&src, i)->name;
        size_t k = spec_index(name), nb = s.f.nbytes[k], half = nb / 2;
        if (lr_model_get_bytes(&src, buf, name, 0, nb, &err)) fail_msg("%s", err.msg);
        if (lr_model_writer_put(&w, name, buf, half, &err)) fail_msg("put: %s", err.msg);
        if (lr_model_writer_put(&w, name, buf + half, nb - half, &err)) fail_msg("put: %s", err.msg);
    }
    if (lr_model_writer_commit(&w, &err)) fail_msg("commit: %s", err.msg);
    lr_model_writer_free(&w);
    lr_model_free(&src);

    /* read back: the same model */
    lr_model m;
    open_ok(&m, out);
    check_sharded(&m, &s.f, out, LR_MODEL_INDEX);
    lr_model_free(&m);
    /* each shard file as lr_safetensors_write wrote the source's */
    for (int k = 0; k < 3; k++) {
        char *a = lr_test_path(s.dir, SHARD[k]), *b = lr_test_path(out, SHARD[k]);
        size_t na, nb;
        unsigned char *x = lr_test_read_file(a, &na), *y = lr_test_read_file(b, &nb);
        assert_int_equal(na, nb);
        assert_memory_equal(x, y, na);
        free(x), free(y), free(a), free(b);
    }
    const char *want_shard[NT];
    for (size_t k = 0; k < NT; k++) want_shard[k] = SHARD[SPEC[k].shard];
    check_index_json(out, want_shard, "kept");
    assert_int_equal(visible_entries(out), 4);
    assert_int_equal(lr_test_hidden_entries(out), 0);

    /* without index_meta: total_size alone; into the existing directory */
    lr_model_entry e3[NT];
    entries_3(e3, &s.f);
    if (lr_model_writer_init(&w, out, e3, NT, META, 1, NULL, NULL, &err)) fail_msg("init: %s", err.msg);
    put_all(&w, &s.f, NULL);
    if (lr_model_writer_commit(&w, &err)) fail_msg("commit: %s", err.msg);
    lr_model_writer_free(&w);
    check_index_json(out, want_shard, NULL);
    open_ok(&m, out);
    check_sharded(&m, &s.f, out, LR_MODEL_INDEX);
    lr_model_free(&m);
    assert_int_equal(visible_entries(out), 4);
    assert_int_equal(lr_test_hidden_entries(out), 0);
    free(out);
    teardown3(&s);
}

/* (c) entries packed in order into shards of at most max_shard_bytes, named
 * PREFIX-0000k-of-0000N.safetensors. */
static void test_write_max_shard_bytes(void **state)
{
    (void)state;
    char *dir = tmpdir();
    fixture f;
    fixture_init(&f, 0);
    /* sizes in entry order: 256 256 192 256 32 256 */
    struct {
        size_t max;
        const char *prefix; /* NULL: the default */
        size_t nshards;
        size_t shard_of[NT]; /* by entry */
    } cases[] = {
        /* 256 | 256 | 192 | 256+32 | 256 */
        { 300, NULL, 5, { 0, 1, 2, 3, 3, 4 } },
        /* 256+256 | 192+256+32 | 256: the 3-shard layout */
        { 512, "model", 3, { 0, 0, 1, 1, 1, 2 } },
        /* every tensor alone; 256 > 200 each in a shard of its own */
        { 200, "pytorch_model", 6, { 0, 1, 2, 3, 4, 5 } },
        /* 256+256+192 | 256+32+256 */
        { 800, "w", 2, { 0, 0, 0, 1, 1, 1 } },
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char sub[32];
        snprintf(sub, sizeof sub, "out%zu", c);
        char *out = lr_test_path(dir, sub);
        lr_model_write_opts o = lr_model_write_opts_default();
        o.max_shard_bytes = cases[c].max;
        if (cases[c].prefix) o.prefix = cases[c].prefix;
        const char *prefix = cases[c].prefix ? cases[c].prefix : "model";
        size_t ns = cases[c].nshards;
        char names[NT][64];
        const char *np[NT];
        for (size_t k = 0; k < ns; k++) {
            snprintf(names[k], sizeof names[k], "%s-%05zu-of-%05zu.safetensors", prefix, k + 1, ns);
            np[k] = names[k];
        }
        lr_model_entry e[NT];
        entries_plain(e, &f, NULL);
        lr_model_writer w;
        lr_err err = { { 0 } };
        if (lr_model_writer_init(&w, out, e, NT, META, 1, NULL, &o, &err)) fail_msg("init (max %zu): %s", cases[c].max, err.msg);
        put_all(&w, &f, NULL);
        if (lr_model_writer_commit(&w, &err)) fail_msg("commit (max %zu): %s", cases[c].max, err.msg);
        lr_model_writer_free(&w);

        for (size_t k = 0; k < ns; k++)
            if (!file_exists(out, names[k])) fail_msg("max %zu: no %s", cases[c].max, names[k]);
        assert_int_equal(visible_entries(out), (int)ns + 1);
        assert_int_equal(lr_test_hidden_entries(out), 0);
        const char *want_shard[NT];
        for (size_t k = 0; k < NT; k++) want_shard[k] = names[cases[c].shard_of[k]];
        check_index_json(out, want_shard, NULL);

        /* read back: shards in name order, each tensor where the packing put it, in offset
         * order (dtype size, then name) within its shard */
        size_t order[NT], sof[NT], n = 0;
        for (size_t k = 0; k < ns; k++) {
            for (int pass = 0; pass < 2; pass++) /* F32 first, then BF16 */
                for (size_t j = 0; j < NT; j++)
                    if (cases[c].shard_of[j] == k && (SPEC[j].dtype == LR_ST_F32) == (pass == 0)) {
                        order[n] = j;
                        sof[n++] = k;
                    }
        }
        assert_int_equal(n, NT);
        lr_model m;
        open_ok(&m, out);
        assert_string_equal(lr_model_path(&m), out);
        assert_non_null(lr_model_index_path(&m));
        check_model(&m, &f, order, sof, np, ns);
        lr_model_free(&m);
        free(out);
    }
    lr_test_rmtree(dir);
    fixture_free(&f);
    free(dir);
}

typedef struct {
    char name[256];
    unsigned char *bytes;
    size_t n;
} saved_file;

/* Every visible file of dir (at most 16), read. */
static size_t save_dir(const char *dir, saved_file *s)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        assert_true(n < 16);
        snprintf(s[n].name, sizeof s[n].name, "%s", e->d_name);
        char *p = lr_test_path(dir, e->d_name);
        s[n].bytes = lr_test_read_file(p, &s[n].n);
        free(p);
        n++;
    }
    closedir(d);
    return n;
}

/* dir holds exactly the files saved, byte for byte, and no temp file (after `what`). */
static void assert_dir_unchanged(const char *dir, const saved_file *s, size_t n, const char *what)
{
    if (visible_entries(dir) != (int)n) fail_msg("after %s: %s holds %d files, expected %zu", what, dir, visible_entries(dir), n);
    if (lr_test_hidden_entries(dir)) fail_msg("after %s: a temp file is left in %s", what, dir);
    for (size_t i = 0; i < n; i++) {
        char *p = lr_test_path(dir, s[i].name);
        size_t len;
        unsigned char *b = lr_test_read_file(p, &len);
        if (len != s[i].n || memcmp(b, s[i].bytes, len)) fail_msg("after %s: %s changed", what, p);
        free(b);
        free(p);
    }
}

static void free_saved(saved_file *s, size_t n)
{
    for (size_t i = 0; i < n; i++) free(s[i].bytes);
}

/* (d) a commit that fails (a tensor short of bytes) leaves the old model as it was. */
static void test_write_failure_keeps_old(void **state)
{
    (void)state;
    char *dir = tmpdir();
    fixture f, g;
    fixture_init(&f, 0);
    fixture_init(&g, 7); /* other values: a file overwritten would show */
    lr_model_entry e[NT];
    lr_model_writer w;
    lr_err err = { { 0 } };

    /* the 3-shard layout by name, then 5 shards by max_shard_bytes; the short tensor in the
     * first shard, then in the last (every other shard complete) */
    const char *shorts[2] = { "embed.weight", "lm_head.weight" };
    for (int layout = 0; layout < 2; layout++) {
        char *out = lr_test_path(dir, layout ? "out5" : "out3");
        lr_model_write_opts o = lr_model_write_opts_default();
        if (layout) o.max_shard_bytes = 300;
        if (layout) entries_plain(e, &f, NULL);
        else entries_3(e, &f);
        if (lr_model_writer_init(&w, out, e, NT, META, 1, NULL, &o, &err)) fail_msg("init: %s", err.msg);
        put_all(&w, &f, NULL);
        if (lr_model_writer_commit(&w, &err)) fail_msg("commit: %s", err.msg);
        lr_model_writer_free(&w);
        saved_file saved[16];
        size_t nsaved = save_dir(out, saved);
        assert_int_equal(nsaved, layout ? 6 : 4);

        for (int which = 0; which < 2; which++) {
            if (lr_model_writer_init(&w, out, e, NT, META, 1, "{\"note\":\"new\"}", &o, &err))
                fail_msg("init: %s", err.msg);
            put_all(&w, &g, shorts[which]);
            err.msg[0] = 0;
            assert_int_not_equal(lr_model_writer_commit(&w, &err), LR_OK);
            assert_msg_contains(err.msg, shorts[which]);
            lr_model_writer_free(&w);
            assert_dir_unchanged(out, saved, nsaved, "a failed commit (a tensor short of bytes)");
        }
        /* nothing put at all: the same */
        if (lr_model_writer_init(&w, out, e, NT, META, 1, NULL, &o, &err)) fail_msg("init: %s", err.msg);
        assert_int_not_equal(lr_model_writer_commit(&w, &err), LR_OK);
        lr_model_writer_free(&w);
        assert_dir_unchanged(out, saved, nsaved, "a commit with nothing put");
        /* freed without a commit: the same */
        if (lr_model_writer_init(&w, out, e, NT, META, 1, NULL, &o, &err)) fail_msg("init: %s", err.msg);
        put_all(&w, &g, NULL);
        lr_model_writer_free(&w);
        assert_dir_unchanged(out, saved, nsaved, "a writer freed without a commit");
        /* the old model still reads */
        lr_model m;
        open_ok(&m, out);
        for (size_t k = 0; k < NT; k++) {
            unsigned char buf[512];
            if (lr_model_get_bytes(&m, buf, SPEC[k].name, 0, f.nbytes[k], &err)) fail_msg("%s", err.msg);
            assert_memory_equal(buf, f.data[k], f.nbytes[k]);
        }
        lr_model_free(&m);
        free_saved(saved, nsaved);
        free(out);
    }

    /* a single file, the same */
    char *one = lr_test_path(dir, "one.safetensors");
    entries_plain(e, &f, NULL);
    if (lr_model_writer_init(&w, one, e, NT, META, 1, NULL, NULL, &err)) fail_msg("init: %s", err.msg);
    put_all(&w, &f, NULL);
    if (lr_model_writer_commit(&w, &err)) fail_msg("commit: %s", err.msg);
    lr_model_writer_free(&w);
    size_t n0;
    unsigned char *before = lr_test_read_file(one, &n0);
    if (lr_model_writer_init(&w, one, e, NT, META, 1, NULL, NULL, &err)) fail_msg("init: %s", err.msg);
    put_all(&w, &g, "layers.0.mlp.weight");
    assert_int_not_equal(lr_model_writer_commit(&w, &err), LR_OK);
    assert_msg_contains(err.msg, "layers.0.mlp.weight");
    lr_model_writer_free(&w);
    size_t n1;
    unsigned char *after = lr_test_read_file(one, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    assert_int_equal(lr_test_hidden_entries(dir), 0);
    assert_int_equal(visible_entries(dir), 3);
    free(before);
    free(after);
    free(one);

    lr_test_rmtree(dir);
    fixture_free(&f);
    fixture_free(&g);
    free(dir);
}

/* The shards are renamed only once all are complete: a write error while a later shard is
 * finished (here its file outgrows RLIMIT_FSIZE when flushed, as a full disk would fail it)
 * must not leave an earlier shard already replaced beside the old ones. Layout: shard 1
 * holds layers.1.norm alone (~150 bytes), shard 2 the rest (~1.4 KB); the limit lies
 * inside the last tensor written to shard 2 (so that the error comes when it is finished, not
 * at a put). The entries come in name order, then with layers.1.norm first, so that the small
 * shard is finished first whichever order (entries' or names') the writer takes. */
static void test_write_io_failure_keeps_old(void **state)
{
    (void)state;
    char *dir = tmpdir();
    fixture f, g;
    fixture_init(&f, 0);
    fixture_init(&g, 7);
    static const char *const two[2] = { "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors" };
    char *out = lr_test_path(dir, "out");
    lr_model_entry e[NT];
    entries_plain(e, &f, two[1]);
    e[spec_index("layers.1.norm")].shard = two[0];
    lr_model_writer w;
    lr_err err = { { 0 } };
    if (lr_model_writer_init(&w, out, e, NT, META, 1, NULL, NULL, &err)) fail_msg("init: %s", err.msg);
    put_all(&w, &f, NULL);
    if (lr_model_writer_commit(&w, &err)) fail_msg("commit: %s", err.msg);
    lr_model_writer_free(&w);
    saved_file saved[16];
    size_t nsaved = save_dir(out, saved);
    assert_int_equal(nsaved, 3);
    size_t small_n = 0, big_n = 0;
    for (size_t i = 0; i < nsaved; i++) {
        if (!strcmp(saved[i].name, two[0])) small_n = saved[i].n;
        if (!strcmp(saved[i].name, two[1])) big_n = saved[i].n;
    }
    assert_true(small_n > 0 && small_n + 256 < big_n);

    for (int variant = 0; variant < 2; variant++) {
        if (variant) { /* layers.1.norm's entry first */
            lr_model_entry tmp = e[0];
            e[0] = e[spec_index("layers.1.norm")];
            e[spec_index("layers.1.norm")] = tmp;
        }
        if (lr_model_writer_init(&w, out, e, NT, META, 1, NULL, NULL, &err)) fail_msg("init: %s", err.msg);
        struct rlimit saved_lim, lim;
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved_lim), 0);
        lim = saved_lim;
        lim.rlim_cur = (rlim_t)(big_n - 128); /* lm_head.weight, put last, is the big file's last 256 bytes */
        void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
        lr_status s = LR_OK;
        for (size_t k = 0; k < NT && !s; k++) s = lr_model_writer_put(&w, SPEC[k].name, g.data[k], g.nbytes[k], &err);
        if (!s) s = lr_model_writer_commit(&w, &err);
        lr_model_writer_free(&w);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved_lim), 0);
        signal(SIGXFSZ, oldsig);
        if (s == LR_OK) fail_msg("variant %d: the commit succeeded under a %zu-byte file limit", variant, (size_t)lim.rlim_cur);
        assert_dir_unchanged(out, saved, nsaved,
                             variant ? "a write error on shard 2 of 2 (the small shard 1 finished first)"
                                     : "a write error on shard 2 of 2 (entries in name order)");
    }

    free_saved(saved, nsaved);
    lr_test_rmtree(dir);
    fixture_free(&f);
    fixture_free(&g);
    free(out);
    free(dir);
}

/* index_meta must be a JSON object: anything else is refused, and (whenever it is found out)
 * before the old model is touched. */
static void test_write_bad_index_meta_keeps_old(void **state)
{
    (void)state;
    setup s;
    setup3(&s);
    fixture g;
    fixture_init(&g, 7);
    char *out = lr_test_path(s.tmp, "out");
    lr_model_entry e[NT];
    entries_3(e, &s.f);
    lr_model_writer w;
    lr_err err = { { 0 } };
    if (lr_model_writer_init(&w, out, e, NT, META, 1, NULL, NULL, &err)) fail_msg("init: %s", err.msg);
    put_all(&w, &s.f, NULL);
    if (lr_model_writer_commit(&w, &err)) fail_msg("commit: %s", err.msg);
    lr_model_writer_free(&w);
    saved_file saved[16];
    size_t nsaved = save_dir(out, saved);

    static const char *const bad[] = { "not json", "[1, 2]", "\"text\"", "{\"a\": ", "" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err.msg[0] = 0;
        lr_status st = lr_model_writer_init(&w, out, e, NT, META, 1, bad[i], NULL, &err);
        if (!st) {
            put_all(&w, &g, NULL);
            st = lr_model_writer_commit(&w, &err);
            lr_model_writer_free(&w);
        }
        if (st == LR_OK) fail_msg("index_meta '%s' accepted", bad[i]);
        char what[128];
        snprintf(what, sizeof what, "a writer given index_meta '%s'", bad[i]);
        assert_dir_unchanged(out, saved, nsaved, what);
        if (st == LR_ENOMEM) fail_msg("index_meta '%s': status LR_ENOMEM (%s), expected a refusal of the argument", bad[i], err.msg);
    }
    free_saved(saved, nsaved);
    free(out);
    fixture_free(&g);
    teardown3(&s);
}

/* A directory init made is gone again when nothing was committed. */
static void test_write_uncommitted_new_dir(void **state)
{
    (void)state;
    char *dir = tmpdir();
    fixture f;
    fixture_init(&f, 0);
    char *out = lr_test_path(dir, "new");
    lr_model_entry e[NT];
    entries_3(e, &f);
    lr_model_writer w;
    lr_err err = { { 0 } };
    /* freed with every byte put */
    if (lr_model_writer_init(&w, out, e, NT, META, 1, NULL, NULL, &err)) fail_msg("init: %s", err.msg);
    put_all(&w, &f, NULL);
    lr_model_writer_free(&w);
    assert_false(file_exists(dir, "new"));
    /* a failed commit */
    if (lr_model_writer_init(&w, out, e, NT, META, 1, NULL, NULL, &err)) fail_msg("init: %s", err.msg);
    put_all(&w, &f, "layers.1.attn.weight");
    assert_int_not_equal(lr_model_writer_commit(&w, &err), LR_OK);
    assert_msg_contains(err.msg, "layers.1.attn.weight");
    lr_model_writer_free(&w);
    assert_false(file_exists(dir, "new"));
    assert_int_equal(visible_entries(dir), 0);
    assert_int_equal(lr_test_hidden_entries(dir), 0);
    lr_test_rmtree(dir);
    fixture_free(&f);
    free(out);
    free(dir);
}

/* (e) put refuses a name not among the entries and bytes beyond a tensor's end. */
static void test_write_put_refusals(void **state)
{
    (void)state;
    char *dir = tmpdir();
    fixture f;
    fixture_init(&f, 0);
    char *out = lr_test_path(dir, "out");
    char *one = lr_test_path(dir, "one.safetensors");
    const unsigned char zeros[512] = { 0 };
    for (int layout = 0; layout < 2; layout++) {
        lr_model_entry e[NT];
        if (layout) entries_3(e, &f);
        else entries_plain(e, &f, NULL);
        const char *path = layout ? out : one;
        lr_model_writer w;
        lr_err err = { { 0 } };

        /* an unknown name */
        if (lr_model_writer_init(&w, path, e, NT, META, 1, NULL, NULL, &err)) fail_msg("init: %s", err.msg);
        assert_int_not_equal(lr_model_writer_put(&w, "no.such.weight", zeros, 4, &err), LR_OK);
        assert_msg_contains(err.msg, "no.such.weight");
        lr_model_writer_free(&w);

        /* more bytes than the tensor has, at once */
        if (lr_model_writer_init(&w, path, e, NT, META, 1, NULL, NULL, &err)) fail_msg("init: %s", err.msg);
        assert_int_not_equal(lr_model_writer_put(&w, "layers.1.norm", zeros, 36, &err), LR_OK);
        assert_msg_contains(err.msg, "layers.1.norm");
        lr_model_writer_free(&w);

        /* ... and after it is complete */
        if (lr_model_writer_init(&w, path, e, NT, META, 1, NULL, NULL, &err)) fail_msg("init: %s", err.msg);
        size_t lm = spec_index("lm_head.weight");
        assert_int_equal(lr_model_writer_put(&w, "lm_head.weight", f.data[lm], f.nbytes[lm], &err), LR_OK);
        assert_int_not_equal(lr_model_writer_put(&w, "lm_head.weight", zeros, 2, &err), LR_OK);
        assert_msg_contains(err.msg, "lm_head.weight");
        lr_model_writer_free(&w);

        /* nothing was left behind */
        assert_int_equal(visible_entries(dir), 0);
        assert_int_equal(lr_test_hidden_entries(dir), 0);
    }
    lr_test_rmtree(dir);
    fixture_free(&f);
    free(out);
    free(one);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_open_single_file, cleanup),
        cmocka_unit_test_teardown(test_open_sharded, cleanup),
        cmocka_unit_test_teardown(test_open_index_any_name, cleanup),
        cmocka_unit_test_teardown(test_single_file_taken_first, cleanup),
        cmocka_unit_test_teardown(test_stable_order, cleanup),
        cmocka_unit_test_teardown(test_get_errors, cleanup),
        cmocka_unit_test_teardown(test_refuse_missing_path, cleanup),
        cmocka_unit_test_teardown(test_refuse_no_model, cleanup),
        cmocka_unit_test_teardown(test_refuse_missing_shard, cleanup),
        cmocka_unit_test_teardown(test_refuse_bad_shard_file, cleanup),
        cmocka_unit_test_teardown(test_refuse_listed_absent, cleanup),
        cmocka_unit_test_teardown(test_refuse_unlisted_tensor, cleanup),
        cmocka_unit_test_teardown(test_refuse_wrong_shard, cleanup),
        cmocka_unit_test_teardown(test_refuse_tensor_in_two_shards, cleanup),
        cmocka_unit_test_teardown(test_refuse_path_leaving_dir, cleanup),
        cmocka_unit_test_teardown(test_refuse_weight_map_type, cleanup),
        cmocka_unit_test_teardown(test_refuse_invalid_json, cleanup),
        cmocka_unit_test_teardown(test_refuse_unlisted_shard_file, cleanup),
        cmocka_unit_test_teardown(test_write_opts_default, cleanup),
        cmocka_unit_test_teardown(test_write_single_file, cleanup),
        cmocka_unit_test_teardown(test_write_layout_of_read_model, cleanup),
        cmocka_unit_test_teardown(test_write_max_shard_bytes, cleanup),
        cmocka_unit_test_teardown(test_write_failure_keeps_old, cleanup),
        cmocka_unit_test_teardown(test_write_io_failure_keeps_old, cleanup),
        cmocka_unit_test_teardown(test_write_bad_index_meta_keeps_old, cleanup),
        cmocka_unit_test_teardown(test_write_uncommitted_new_dir, cleanup),
        cmocka_unit_test_teardown(test_write_put_refusals, cleanup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
