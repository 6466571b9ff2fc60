/* test_dataset.c — dataset views: batches hold (v / div - mean) / std in float32 in that order
 * (bytes and floats), or the features as they are; label subsets and subsets of subsets; and
 * every field lr_dataset_check refuses, with a message naming it. */
#include <stdlib.h>
#include <string.h>
#include "lr_test.h"
#include "lowrank/base/dataset.h"
#include "lowrank/base/rng.h"

/* n examples of 4x4 bytes, 4 classes; pixels random. */
static lr_dataset bytes_set(uint8_t *px, uint8_t *labels, size_t n, uint64_t seed)
{
    lr_rng r;
    lr_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        labels[i] = (uint8_t)lr_rng_below(&r, 4);
        for (size_t j = 0; j < 16; j++) px[i * 16 + j] = (uint8_t)lr_rng_below(&r, 256);
    }
    return (lr_dataset){ .n = n, .dim = 16, .classes = 4, .type = LR_DATA_U8, .features = px,
                         .labels = labels, .norm = { true, 255.0f, 0.3f, 0.7f } };
}

static void test_batches_normalise(void **state)
{
    (void)state;
    uint8_t px[5 * 16], lb[5];
    lr_dataset d = bytes_set(px, lb, 5, 4);
    assert_int_equal(lr_dataset_check(&d, NULL), LR_OK);
    float x[2 * 16];
    uint8_t y[2];
    size_t idx[2] = { 3, 1 };
    lr_dataset_batch(&d, x, y, idx, 2);
    for (int b = 0; b < 2; b++)
        for (int j = 0; j < 16; j++) {
            float v = (float)px[idx[b] * 16 + j] / 255.0f;
            v = v - 0.3f;
            assert_true(x[b * 16 + j] == v / 0.7f);
        }
    assert_int_equal(y[0], lb[3]);
    assert_int_equal(y[1], lb[1]);
    d.norm.on = false; /* bytes as they are */
    lr_dataset_range(&d, x, y, 4, 1);
    for (int j = 0; j < 16; j++) assert_true(x[j] == (float)px[4 * 16 + j]);
    /* floats, normalised and not */
    float f[3 * 2] = { 1, 2, 3, 4, 5, 6 };
    uint8_t fl[3] = { 0, 1, 0 };
    lr_dataset g = { .n = 3, .dim = 2, .classes = 2, .type = LR_DATA_F32, .features = f, .labels = fl,
                     .norm = { true, 2.0f, 1.0f, 0.5f } };
    lr_dataset_range(&g, x, y, 1, 2);
    for (int j = 0; j < 4; j++) assert_true(x[j] == (f[2 + j] / 2.0f - 1.0f) / 0.5f);
    assert_int_equal(y[1], 0);
    g.norm.on = false;
    lr_dataset_range(&g, x, NULL, 0, 3);
    assert_memory_equal(x, f, sizeof f);
}

static void test_label_subsets(void **state)
{
    (void)state;
    uint8_t px[200 * 16], lb[200];
    lr_dataset d = bytes_set(px, lb, 200, 2);
    size_t n2 = 0;
    for (size_t i = 0; i < 200; i++) n2 += lb[i] == 2;
    size_t rows[200], rows2[200];
    lr_dataset two, two_again;
    assert_int_equal(lr_dataset_select_label(&d, &two, rows, 2, NULL), LR_OK);
    assert_int_equal(two.n, n2);
    assert_int_equal(two.stored, 200);
    for (size_t i = 0; i < two.n; i++) assert_int_equal(lb[two.rows[i]], 2);
    for (size_t i = 1; i < two.n; i++) assert_true(two.rows[i] > two.rows[i - 1]); /* in order */
    assert_int_equal(lr_dataset_check(&two, NULL), LR_OK);
    /* a subset of a subset maps to the same stored rows */
    assert_int_equal(lr_dataset_select_label(&two, &two_again, rows2, 2, NULL), LR_OK);
    assert_int_equal(two_again.n, n2);
    assert_memory_equal(rows2, rows, n2 * sizeof *rows);
    /* the batch of a subset is the stored rows' */
    float x1[16], x2[16];
    size_t i0 = 0;
    lr_dataset_batch(&two, x1, NULL, &i0, 1);
    lr_dataset_range(&d, x2, NULL, rows[0], 1);
    assert_memory_equal(x1, x2, sizeof x1);
    /* an empty subset is fine; a label outside the classes is not */
    lr_err e;
    for (size_t i = 0; i < 200; i++) lb[i] = lb[i] == 3 ? 0 : lb[i];
    lr_dataset none;
    assert_int_equal(lr_dataset_select_label(&d, &none, rows, 3, &e), LR_OK);
    assert_int_equal(none.n, 0);
    assert_int_equal(lr_dataset_select_label(&d, &none, rows, 4, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "label 4 >= 4 classes");
    assert_int_equal(lr_dataset_select_label(&d, NULL, rows, 1, &e), LR_EINVAL);
    assert_int_equal(lr_dataset_select_label(&d, &none, NULL, 1, &e), LR_EINVAL);
}

static void test_check_names_the_problem(void **state)
{
    (void)state;
    uint8_t px[20 * 16], lb[20];
    lr_dataset d = bytes_set(px, lb, 20, 3), bad;
    lr_err e;
    assert_int_equal(lr_dataset_check(NULL, &e), LR_EINVAL);
    bad = d, bad.dim = 0;
    assert_int_equal(lr_dataset_check(&bad, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "dim is 0");
    bad = d, bad.classes = 257;
    assert_int_equal(lr_dataset_check(&bad, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "257 classes, expected 1..256");
    bad = d, bad.type = (lr_data_type)7;
    assert_int_equal(lr_dataset_check(&bad, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "feature type 7");
    bad = d, bad.norm.std = 0;
    assert_int_equal(lr_dataset_check(&bad, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "std 0");
    bad = d, bad.norm.mean = 1.0f / 0.0f;
    assert_int_equal(lr_dataset_check(&bad, &e), LR_EINVAL);
    bad = d, bad.features = NULL;
    assert_int_equal(lr_dataset_check(&bad, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "no features or labels");
    lb[7] = 4;
    assert_int_equal(lr_dataset_check(&d, &e), LR_ERANGE);
    assert_msg_contains(e.msg, "example 7: label 4 >= 4 classes");
    lb[7] = 1;
    size_t rows[2] = { 0, 20 };
    bad = d, bad.rows = rows, bad.n = 2, bad.stored = 20;
    assert_int_equal(lr_dataset_check(&bad, &e), LR_ERANGE);
    assert_msg_contains(e.msg, "example 1 is row 20, beyond the 20 stored rows");
    bad = d, bad.n = SIZE_MAX / 8, bad.stored = 0;
    assert_int_equal(lr_dataset_check(&bad, &e), LR_ERANGE);
    assert_msg_contains(e.msg, "overflow");
}

/* Your own arrays: the constructors set the type and check; a zeroed dataset (no type) with
 * float rows is refused instead of read as bytes. */
static void test_from_arrays(void **state)
{
    (void)state;
    float f[3 * 2] = { 1, 2, 3, 4, 5, 6 };
    uint8_t px[3 * 2] = { 1, 2, 3, 4, 5, 6 }, y[3] = { 0, 1, 0 };
    lr_dataset d;
    lr_err e;
    assert_int_equal(lr_dataset_from_f32(&d, f, y, 3, 2, 2, &e), LR_OK);
    assert_int_equal(d.type, LR_DATA_F32);
    float x[6];
    lr_dataset_range(&d, x, NULL, 0, 3);
    assert_memory_equal(x, f, sizeof f);
    assert_int_equal(lr_dataset_from_u8(&d, px, y, 3, 2, 2, &e), LR_OK);
    assert_int_equal(d.type, LR_DATA_U8);
    lr_dataset_range(&d, x, NULL, 0, 3);
    for (int j = 0; j < 6; j++) assert_true(x[j] == (float)px[j]);
    y[2] = 2; /* label 2 of 2 classes */
    assert_int_equal(lr_dataset_from_f32(&d, f, y, 3, 2, 2, &e), LR_ERANGE);
    assert_msg_contains(e.msg, "example 2: label 2 >= 2 classes");
    assert_int_equal(d.n, 0);
    assert_int_equal(lr_dataset_from_u8(NULL, px, y, 3, 2, 2, &e), LR_EINVAL);
    assert_int_equal(lr_dataset_from_f32(&d, NULL, NULL, 0, 2, 2, &e), LR_OK); /* empty */
    lr_dataset zeroed = { .n = 3, .dim = 2, .classes = 2, .features = f, .labels = y };
    assert_int_equal(lr_dataset_check(&zeroed, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "feature type 0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batches_normalise),
        cmocka_unit_test(test_label_subsets),
        cmocka_unit_test(test_check_names_the_problem),
        cmocka_unit_test(test_from_arrays),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
