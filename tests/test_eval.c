/* test_eval.c — argmax (ties to the first, NaN), the seed's wrong counts, the confusion
 * matrix, evaluation of a constructed net, bad inputs. */
#include <math.h>
#include <stdlib.h>
#include "lr_test.h"
#include "lowrank/nn/eval.h"

static void test_argmax(void **state)
{
    (void)state;
    float a[4] = { 1, 3, 3, 2 };
    assert_int_equal(lr_argmax(a, 4), 1); /* ties: first index, like torch.argmax */
    float b[3] = { NAN, -1, -2 };
    assert_int_equal(lr_argmax(b, 3), 1);
    float c[1] = { 5 };
    assert_int_equal(lr_argmax(c, 1), 0);
}

static void test_counts(void **state)
{
    (void)state;
    /* 3 classes; predictions 0, 2, 2, 1 for labels 0, 1, 2, 1 */
    float z[4 * 3] = { 5, 1, 1, 0, 1, 2, 0, 0, 9, 0, 4, 4 };
    uint8_t y[4] = { 0, 1, 2, 1 };
    lr_eval_result r;
    lr_eval_reset(&r);
    assert_int_equal(lr_eval_add(&r, z, y, 4, 3, NULL), LR_OK);
    assert_int_equal(r.n, 4);
    assert_int_equal(r.correct, 3); /* the tie (4, 4) picks class 1 = the label */
    assert_allclose(r.accuracy, 0.75, 0, 0);
    assert_int_equal(r.wrong[1], 1);
    assert_int_equal(r.wrong[0] + r.wrong[2], 0);
    assert_int_equal(r.confusion[1][2], 1);
    assert_int_equal(r.confusion[1][1], 1);
    assert_int_equal(r.confusion[2][2], 1);
    lr_err e;
    uint8_t bad = 3;
    assert_int_equal(lr_eval_add(&r, z, &bad, 1, 3, &e), LR_ERANGE);
    assert_int_equal(lr_eval_add(&r, z, y, 1, LR_EVAL_CLASSES + 1, &e), LR_EDIM);
    assert_int_equal(lr_eval_add(NULL, z, y, 1, 3, &e), LR_EINVAL);
    assert_int_equal(r.n, 4); /* unchanged by the failures */
}

static void test_eval_constructed_net(void **state)
{
    (void)state;
    /* 2x2 images -> 10 classes; class k's weight row picks pixel k % 4, so an image whose
     * brightest pixel is p is classified p (classes 4..9 get a large negative bias). */
    lr_mlp net;
    assert_int_equal(lr_mlp_init(&net, (size_t[]){ 4, 10 }, 2, NULL), LR_OK);
    for (size_t k = 0; k < 10; k++) {
        if (k < 4) net.layer[0].w.data[k * 4 + k] = 1.0f;
        net.layer[0].b[k] = k < 4 ? 0.0f : -100.0f;
    }
    uint8_t pixels[5 * 4], labels[5] = { 0, 1, 2, 3, 3 }, bright[5] = { 0, 1, 2, 3, 0 };
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 4; j++) pixels[i * 4 + j] = (uint8_t)(j == bright[i] ? 255 : 0);
    lr_dataset d = { .n = 5, .dim = 4, .classes = 10, .type = LR_DATA_U8, .features = pixels,
                     .labels = labels, .norm = { true, 255.0f, 0.1f, 0.5f } };
    lr_eval_result r;
    assert_int_equal(lr_eval(&net, &r, &d, 2, NULL), LR_OK); /* batches of 2: 2 + 2 + 1 */
    assert_int_equal(r.n, 5);
    assert_int_equal(r.correct, 4);
    assert_int_equal(r.wrong[3], 1);
    assert_int_equal(r.confusion[3][0], 1);
    lr_err e;
    d.dim = 3;
    assert_int_equal(lr_eval(&net, &r, &d, 0, &e), LR_EDIM);
    assert_msg_contains(e.msg, "the net takes 4 inputs");
    d.dim = 4;
    d.classes = 11;
    assert_int_equal(lr_eval(&net, &r, &d, 0, &e), LR_EDIM);
    assert_msg_contains(e.msg, "11 classes, the net only 10 outputs");
    d.classes = 10;
    labels[2] = 10;
    assert_int_equal(lr_eval(&net, &r, &d, 0, &e), LR_ERANGE);
    assert_msg_contains(e.msg, "example 2: label 10 >= 10 classes");
    assert_int_equal(lr_eval(NULL, &r, &d, 0, &e), LR_EINVAL);
    assert_int_equal(lr_eval(&net, NULL, &d, 0, &e), LR_EINVAL);
    lr_mlp_free(&net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argmax),
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_eval_constructed_net),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
