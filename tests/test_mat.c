/* test_mat.c — views, allocation, checks and comparisons. */
#include "lr_test.h"
#include <math.h>
#include <stdint.h>
#include "lowrank/base/mat.h"

static void test_init_free(void **state)
{
    (void)state;
    lr_mat m;
    assert_int_equal(lr_mat_init(&m, 3, 4, NULL), LR_OK);
    assert_int_equal(m.ld, 4);
    for (size_t i = 0; i < 12; i++) assert_true(m.data[i] == 0.0f);
    lr_mat_free(&m);
    assert_null(m.data);
    lr_mat_free(&m); /* double free is a no-op */
    lr_mat_free(NULL);
    assert_int_equal(lr_mat_init(&m, 0, 0, NULL), LR_OK);
    lr_mat_free(&m);
}

static void test_overflow(void **state)
{
    (void)state;
    lr_mat m;
    lr_err e = { "" };
    assert_int_equal(lr_mat_init(&m, SIZE_MAX / 2, 3, &e), LR_ERANGE);
    assert_msg_contains(e.msg, "overflows");
    assert_null(m.data);
    assert_int_equal(lr_mat_check(lr_cmat_view((float *)&e, SIZE_MAX / 4, 4, 4), "W", &e), LR_ERANGE);
}

static void test_check(void **state)
{
    (void)state;
    float d[12];
    lr_err e;
    assert_int_equal(lr_mat_check(lr_cmat_view(d, 3, 4, 4), "W", &e), LR_OK);
    assert_int_equal(lr_mat_check(lr_cmat_view(d, 3, 4, 3), "W", &e), LR_EDIM);
    assert_msg_contains(e.msg, "W: ld 3 is smaller than cols 4");
    assert_int_equal(lr_mat_check(lr_cmat_view(NULL, 3, 4, 4), "X", &e), LR_EINVAL);
    assert_msg_contains(e.msg, "NULL");
    assert_int_equal(lr_mat_check(lr_cmat_view(NULL, 0, 4, 4), "X", &e), LR_OK);
    for (int i = 0; i < 12; i++) d[i] = (float)i;
    assert_int_equal(lr_mat_check_finite(lr_cmat_view(d, 3, 4, 4), "W", &e), LR_OK);
    d[6] = INFINITY;
    assert_int_equal(lr_mat_check_finite(lr_cmat_view(d, 3, 4, 4), "W", &e), LR_ENONFINITE);
    assert_msg_contains(e.msg, "(1,2) is +Inf");
    d[6] = NAN;
    assert_int_equal(lr_mat_check_finite(lr_cmat_view(d, 3, 4, 4), "W", &e), LR_ENONFINITE);
    assert_msg_contains(e.msg, "NaN");
    /* the padding beyond cols is not part of the matrix */
    assert_int_equal(lr_mat_check_finite(lr_cmat_view(d, 3, 2, 4), "W", &e), LR_OK);
}

static void test_block_copy_transpose(void **state)
{
    (void)state;
    float d[20];
    for (int i = 0; i < 20; i++) d[i] = (float)i;
    lr_mat a = lr_mat_view(d, 4, 5, 5), b;
    lr_err e;
    assert_int_equal(lr_mat_block(a, &b, 1, 2, 2, 3, &e), LR_OK);
    assert_true(lr_mat_get(lr_cm(b), 0, 0) == 7.0f);
    assert_true(lr_mat_get(lr_cm(b), 1, 2) == 14.0f);
    assert_int_equal(lr_mat_block(a, &b, 3, 0, 2, 1, &e), LR_EDIM);
    assert_msg_contains(e.msg, "outside a 4 x 5");
    assert_int_equal(lr_mat_block(a, &b, 1, 2, 2, 3, NULL), LR_OK);
    lr_mat c, t;
    assert_int_equal(lr_mat_init(&c, 2, 3, NULL), LR_OK);
    assert_int_equal(lr_mat_copy(c, lr_cm(b), &e), LR_OK);
    assert_true(lr_mat_equal(lr_cm(c), lr_cm(b)));
    assert_int_equal(lr_mat_copy(c, lr_cm(a), &e), LR_EDIM);
    assert_int_equal(lr_mat_init(&t, 3, 2, NULL), LR_OK);
    assert_int_equal(lr_mat_transpose(t, lr_cm(c), &e), LR_OK);
    assert_true(lr_mat_get(lr_cm(t), 2, 1) == 14.0f);
    assert_int_equal(lr_mat_transpose(c, lr_cm(c), &e), LR_EDIM);
    lr_mat_fill(c, 2.0f);
    assert_true(c.data[5] == 2.0f);
    lr_mat_free(&c);
    lr_mat_free(&t);
}

static void test_compare_norm(void **state)
{
    (void)state;
    float x[4] = { 3, 4, 0, 0 }, y[4] = { 3, 4, 0, 1e-7f };
    lr_cmat a = lr_cmat_view(x, 2, 2, 2), b = lr_cmat_view(y, 2, 2, 2);
    assert_allclose(lr_mat_norm_fro(a), 5.0, 0, 1e-12);
    assert_true(lr_mat_allclose(a, b, 1e-5f, 1e-6f));
    assert_false(lr_mat_allclose(a, b, 0, 1e-8f));
    assert_false(lr_mat_equal(a, b));
    assert_allclose(lr_mat_max_abs_diff(a, b), 1e-7, 1e-6, 0);
    assert_false(lr_mat_allclose(a, lr_cmat_view(y, 1, 4, 4), 1, 1));
    /* no overflow in the norm near FLT_MAX */
    float big[2] = { 3e38f, 3e38f };
    assert_allclose(lr_mat_norm_fro(lr_cmat_view(big, 1, 2, 2)), (double)big[0] * sqrt(2.0), 1e-12, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_free),   cmocka_unit_test(test_overflow),
        cmocka_unit_test(test_check),       cmocka_unit_test(test_block_copy_transpose),
        cmocka_unit_test(test_compare_norm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
