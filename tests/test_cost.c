/* test_cost.c — multiply-add and parameter counts pinned exactly. */
#include "lr_test.h"
#include "lowrank/linalg/cost.h"

static void test_seed_10x10_rank2(void **st)
{
    (void)st;
    lr_cost c;
    assert_int_equal(lr_cost_layer(&c, 10, 10, 2, false, NULL), LR_OK);
    assert_int_equal(c.dense_params, 100);
    assert_int_equal(c.factored_params, 40);
    assert_int_equal(c.dense_macs, 100);
    assert_int_equal(c.factored_macs, 40);
    assert_allclose(c.param_reduction_pct, 60.0, 1e-12, 0);
    assert_allclose(c.mac_reduction_pct, 60.0, 1e-12, 0);
    assert_int_equal(lr_cost_layer(&c, 10, 10, 2, true, NULL), LR_OK);
    assert_int_equal(c.dense_params, 110);
    assert_int_equal(c.factored_params, 50);
    assert_int_equal(c.dense_macs, 100); /* bias adds are not multiply-adds */
}

static void test_mnist_layer(void **st)
{
    (void)st;
    lr_cost c;
    /* W: (1000, 784) at rank 1: 784000 vs 1·(1000+784) = 1784 */
    assert_int_equal(lr_cost_layer(&c, 1000, 784, 1, false, NULL), LR_OK);
    assert_int_equal(c.dense_macs, 784000);
    assert_int_equal(c.factored_macs, 1784);
    assert_int_equal(c.dense_params, 784000);
    assert_int_equal(c.factored_params, 1784);
    assert_int_equal(lr_cost_layer(&c, 1000, 784, 1, true, NULL), LR_OK);
    assert_int_equal(c.dense_params, 785000);
    assert_int_equal(c.factored_params, 2784);
    assert_allclose(c.param_reduction_pct, 100.0 * (1.0 - 2784.0 / 785000.0), 1e-12, 0);
    /* a rank above break-even makes the factored form larger: negative reduction */
    assert_int_equal(lr_cost_layer(&c, 10, 10, 8, false, NULL), LR_OK);
    assert_int_equal(c.factored_params, 160);
    assert_allclose(c.param_reduction_pct, -60.0, 1e-12, 0);
}

static void test_break_even(void **st)
{
    (void)st;
    size_t r;
    assert_int_equal(lr_cost_break_even(&r, 10, 10, NULL), LR_OK);
    assert_int_equal(r, 4); /* 4·20 = 80 < 100, 5·20 = 100 is not */
    assert_int_equal(lr_cost_break_even(&r, 1000, 784, NULL), LR_OK);
    assert_int_equal(r, 439); /* 439·1784 = 783176 < 784000 <= 440·1784 = 784960 */
    assert_int_equal(lr_cost_break_even(&r, 1, 50, NULL), LR_OK);
    assert_int_equal(r, 0);
    assert_int_equal(lr_cost_break_even(&r, 0, 0, NULL), LR_OK);
    assert_int_equal(r, 0);
    assert_int_equal(lr_cost_break_even(&r, 2, 2, NULL), LR_OK);
    assert_int_equal(r, 0); /* 1·4 = 4 is not < 4 */
    assert_int_equal(lr_cost_break_even(&r, 3, 3, NULL), LR_OK);
    assert_int_equal(r, 1);
}

static void test_table(void **st)
{
    (void)st;
    lr_layer_shape L[3] = { { "fc1", 256, 784, 16, true }, { "fc2", 128, 256, 16, true },
                            { "fc3", 10, 128, 0, true } };
    lr_cost per[3], t;
    assert_int_equal(lr_cost_table(per, &t, L, 3, NULL), LR_OK);
    assert_int_equal(per[0].dense_params, 256 * 784 + 256);
    assert_int_equal(per[0].factored_params, 16 * (256 + 784) + 256);
    assert_int_equal(per[2].factored_params, 10);
    assert_int_equal(t.dense_macs, 256 * 784 + 128 * 256 + 10 * 128);
    assert_int_equal(t.factored_macs, 16 * (256 + 784) + 16 * (128 + 256));
    assert_int_equal(t.dense_params, 256 * 784 + 256 + 128 * 256 + 128 + 10 * 128 + 10);
    assert_int_equal(t.factored_params, 16 * 1040 + 256 + 16 * 384 + 128 + 10);
    assert_allclose(t.param_reduction_pct, 100.0 * (1.0 - (double)t.factored_params / (double)t.dense_params), 1e-12, 0);
    assert_int_equal(lr_cost_table(NULL, &t, L, 3, NULL), LR_OK);
    assert_int_equal(lr_cost_table(NULL, &t, NULL, 0, NULL), LR_OK);
    assert_int_equal(t.dense_params, 0);
    assert_allclose(t.param_reduction_pct, 0.0, 0, 0);
}

static void test_bad_input(void **st)
{
    (void)st;
    lr_cost c;
    lr_err err;
    size_t big = (size_t)1 << 33;
    assert_int_equal(lr_cost_layer(&c, big, big, 1, false, &err), LR_ERANGE);
    assert_msg_contains(err.msg, "overflow");
    assert_int_equal(lr_cost_layer(&c, 4, 4, SIZE_MAX, false, &err), LR_ERANGE);
    assert_int_equal(lr_cost_layer(&c, SIZE_MAX, 1, 0, true, &err), LR_ERANGE); /* m + n */
    assert_int_equal(lr_cost_layer(NULL, 4, 4, 1, false, &err), LR_EINVAL);
    assert_msg_contains(err.msg, "out is NULL");
    size_t r;
    assert_int_equal(lr_cost_break_even(&r, big, big, &err), LR_ERANGE);
    assert_int_equal(lr_cost_break_even(NULL, 4, 4, &err), LR_EINVAL);
    lr_layer_shape L[2] = { { "huge1", (size_t)1 << 31, (size_t)1 << 31, 0, false },
                            { "huge2", (size_t)1 << 31, (size_t)1 << 31, 0, false } };
    lr_cost t;
    /* 2^62 each: the sum of four fits, but not of the 2^63 layers below */
    assert_int_equal(lr_cost_table(NULL, &t, L, 2, &err), LR_OK);
    L[0].m = L[1].m = (size_t)1 << 32;
    assert_int_equal(lr_cost_table(NULL, &t, L, 2, &err), LR_ERANGE);
    assert_msg_contains(err.msg, "huge2");
    L[0].m = big;
    L[0].n = big;
    assert_int_equal(lr_cost_table(NULL, &t, L, 2, &err), LR_ERANGE);
    assert_msg_contains(err.msg, "layer 0 (huge1)");
    assert_int_equal(lr_cost_table(NULL, &t, NULL, 2, &err), LR_EINVAL);
    assert_int_equal(lr_cost_table(NULL, NULL, L, 2, &err), LR_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_10x10_rank2),
        cmocka_unit_test(test_mnist_layer),
        cmocka_unit_test(test_break_even),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
