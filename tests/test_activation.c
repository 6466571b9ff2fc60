/* test_activation.c — ReLU forward/backward, NaN propagation, masking by the output. */
#include <math.h>
#include "lr_test.h"
#include "lowrank/nn/activation.h"

static void test_relu(void **state)
{
    (void)state;
    float x[6] = { -2.0f, -0.0f, 0.0f, 0.5f, 3.0f, NAN };
    lr_relu_forward(x, 6);
    assert_true(x[0] == 0.0f && x[1] == 0.0f && x[2] == 0.0f && x[3] == 0.5f && x[4] == 3.0f);
    assert_true(isnan(x[5])); /* NaN must reach the non-finite check, not vanish */
    float dh[6] = { 1, 2, 3, 4, 5, 6 };
    lr_relu_backward(dh, x, 5);
    /* the gradient passes only where the output is > 0 (PyTorch's threshold_backward) */
    assert_true(dh[0] == 0 && dh[1] == 0 && dh[2] == 0 && dh[3] == 4 && dh[4] == 5 && dh[5] == 6);
    lr_relu_forward(NULL, 0); /* empty: nothing to do */
}

static void test_relu_gradient_by_differences(void **state)
{
    (void)state;
    /* d/dx Σ c_i relu(x_i) = c_i [x_i > 0], away from the kink */
    double xs[5] = { -1.3, -0.2, 0.4, 2.5, 7.0 }, c[5] = { 0.3, -1.0, 2.0, -0.5, 1.5 }, h = 1e-6;
    float out[5], d[5];
    for (int i = 0; i < 5; i++) out[i] = (float)xs[i], d[i] = (float)c[i];
    lr_relu_forward(out, 5);
    lr_relu_backward(d, out, 5);
    for (int i = 0; i < 5; i++) {
        double fp = c[i] * fmax(xs[i] + h, 0), fm = c[i] * fmax(xs[i] - h, 0);
        assert_allclose(d[i], (fp - fm) / (2 * h), 1e-6, 1e-9);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relu),
        cmocka_unit_test(test_relu_gradient_by_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
