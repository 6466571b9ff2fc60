/* test_lora_weights.c — one layer's LoRA branch: the forward pass equals the dense layer with
 * W₀ + s·B·A, the backward pass (rank 1's contiguous path and the general one) against
 * central differences in double, and bad shapes and sizes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "lr_test.h"
#include "lowrank/nn/linear.h"
#include "lowrank/nn/lora_weights.h"
#include "lowrank/base/rng.h"

/* y = x·wᵀ + b in double, w given in double */
static void ref_forward(double *y, const float *x, const double *w, const float *b, size_t batch,
                        size_t in, size_t out)
{
    for (size_t i = 0; i < batch; i++)
        for (size_t o = 0; o < out; o++) {
            double s = b[o];
            for (size_t j = 0; j < in; j++) s += (double)x[i * in + j] * w[o * in + j];
            y[i * out + o] = s;
        }
}

/* LoRA: y = x·W₀ᵀ + b + s·(x·Aᵀ)·Bᵀ equals the dense layer with W₀ + s·BA. */
static void test_lora_forward_equals_merged_dense(void **state)
{
    (void)state;
    lr_rng r;
    lr_rng_seed(&r, 5);
    size_t batch = 4, in = 19, out = 6, rank = 3;
    lr_lora_weights lw;
    assert_int_equal(lr_lora_weights_init(&lw, rank, in, out, 0.7f, NULL), LR_OK);
    lr_rng_fill_normal(&r, lw.a, 0, 1);
    lr_rng_fill_normal(&r, lw.b, 0, 1);
    float *x = lr_test_randn(&r, batch * in, 1), *w = lr_test_randn(&r, out * in, 0.2f), *b = lr_test_randn(&r, out, 1);
    float y[4 * 6], u[4 * 3];
    double wm[6 * 19];
    double yr[4 * 6];
    for (size_t o = 0; o < out; o++)
        for (size_t j = 0; j < in; j++) {
            double d = w[o * in + j];
            for (size_t k = 0; k < rank; k++) d += 0.7 * lw.b.data[o * rank + k] * lw.a.data[k * in + j];
            wm[o * in + j] = d;
        }
    assert_int_equal(lr_linear_forward(lr_mat_view(y, batch, out, out), lr_cmat_view(x, batch, in, in),
                                       lr_cmat_view(w, out, in, in), b, NULL), LR_OK);
    assert_int_equal(lr_lora_weights_forward_add(lr_mat_view(y, batch, out, out), lr_mat_view(u, batch, rank, rank),
                                         lr_cmat_view(x, batch, in, in), &lw, NULL), LR_OK);
    ref_forward(yr, x, wm, b, batch, in, out);
    for (size_t i = 0; i < batch * out; i++) assert_allclose(y[i], yr[i], 1e-5, 1e-5);
    lr_lora_weights_free(&lw);
    free(x), free(w), free(b);
}

/* L = Σ c ⊙ (s·(x·Aᵀ)·Bᵀ), double; v points at the entry being varied. */
static double lora_loss(const double *x, const double *a, const double *bm, double s, const float *c,
                        size_t batch, size_t in, size_t out, size_t rank)
{
    double L = 0;
    for (size_t i = 0; i < batch; i++)
        for (size_t o = 0; o < out; o++) {
            double y = 0;
            for (size_t k = 0; k < rank; k++) {
                double uk = 0;
                for (size_t j = 0; j < in; j++) uk += x[i * in + j] * a[k * in + j];
                y += bm[o * rank + k] * uk;
            }
            L += c[i * out + o] * s * y;
        }
    return L;
}

/* rank 1 takes its own (contiguous-column) path, rank 2 the general one */
static void check_lora_backward(size_t rank)
{
    lr_rng r;
    lr_rng_seed(&r, 6 + rank);
    size_t batch = 3, in = 7, out = 13;
    lr_lora_weights lw;
    assert_int_equal(lr_lora_weights_init(&lw, rank, in, out, 1.5f, NULL), LR_OK);
    lr_rng_fill_normal(&r, lw.a, 0, 1);
    lr_rng_fill_normal(&r, lw.b, 0, 1);
    float *x = lr_test_randn(&r, batch * in, 1), *c = lr_test_randn(&r, batch * out, 1);
    float y[3 * 13] = { 0 }, u[3 * 2], t[3 * 2], dx[3 * 7] = { 0 };
    assert_int_equal(lr_lora_weights_forward_add(lr_mat_view(y, batch, out, out), lr_mat_view(u, batch, rank, rank),
                                         lr_cmat_view(x, batch, in, in), &lw, NULL), LR_OK);
    assert_int_equal(lr_lora_weights_backward(lr_mat_view(dx, batch, in, in), &lw, lr_cmat_view(c, batch, out, out),
                                      lr_cmat_view(x, batch, in, in), lr_cmat_view(u, batch, rank, rank),
                                      lr_mat_view(t, batch, rank, rank), NULL), LR_OK);
    double *xd = lr_test_to_double(x, batch * in), *ad = lr_test_to_double(lw.a.data, rank * in);
    double *bd = lr_test_to_double(lw.b.data, out * rank), h = 1e-5;
    double *vars[3] = { ad, bd, xd };
    const float *got[3] = { lw.ga.data, lw.gb.data, dx };
    size_t n[3] = { rank * in, out * rank, batch * in };
    for (int which = 0; which < 3; which++)
        for (size_t k = 0; k < n[which]; k++) {
            double keep = vars[which][k];
            vars[which][k] = keep + h;
            double fp = lora_loss(xd, ad, bd, 1.5, c, batch, in, out, rank);
            vars[which][k] = keep - h;
            double fm = lora_loss(xd, ad, bd, 1.5, c, batch, in, out, rank);
            vars[which][k] = keep;
            assert_allclose(got[which][k], (fp - fm) / (2 * h), 1e-4, 1e-5);
        }
    lr_lora_weights_free(&lw);
    free(x), free(c), free(xd), free(ad), free(bd);
}

static void test_lora_backward_by_central_differences(void **state)
{
    (void)state;
    check_lora_backward(1);
    check_lora_backward(2);
}

static void test_bad_shapes(void **state)
{
    (void)state;
    float buf[64] = { 0 };
    lr_err e;
    lr_mat y = lr_mat_view(buf, 2, 3, 3);
    lr_cmat x = lr_cmat_view(buf, 2, 4, 4);
    lr_lora_weights lw;
    assert_int_equal(lr_lora_weights_init(&lw, 0, 4, 3, 1, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "rank 0");
    assert_int_equal(lr_lora_weights_init(&lw, 2, 5, 3, 1, &e), LR_OK);
    assert_int_equal(lr_lora_weights_forward_add(y, lr_mat_view(buf, 2, 2, 2), x, &lw, &e), LR_EDIM);
    assert_msg_contains(e.msg, "layer is 4 -> 3");
    assert_int_equal(lr_lora_weights_forward_add(y, lr_mat_view(buf, 2, 2, 2), x, NULL, &e), LR_EINVAL);
    lr_lora_weights_free(&lw);
    lr_lora_weights_free(&lw); /* twice: a no-op */
    lr_lora_weights_free(NULL);
    assert_int_equal(lr_lora_weights_init(&lw, 1, 4, 3, NAN, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "scale is not finite");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lora_forward_equals_merged_dense),
        cmocka_unit_test(test_lora_backward_by_central_differences),
        cmocka_unit_test(test_bad_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
