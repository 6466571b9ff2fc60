/* test_linear.c — dense-layer kernels against naive double loops: forward (row-streaming
 * kernel and sgemm path), unfused backward, the fused backward+Adam kernel (with and
 * without dx, any thread count bit-identical), central differences in double for every
 * gradient, and shape checks (the LoRA branch: test_lora_weights.c). */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "lr_test.h"
#include "lowrank/base/cpu.h"
#include "lowrank/nn/linear.h"
#include "lowrank/base/rng.h"

/* Pools of 1..3 threads, started when first asked for and joined at the end of main. */
static lr_pool pools[4];
static const lr_pool *pool_n(int threads)
{
    if (threads > 1 && !pools[threads].impl)
        assert_int_equal(lr_pool_init(&pools[threads], threads, NULL), LR_OK);
    return &pools[threads];
}

/* y = x·wᵀ + b in double */
static void ref_forward(double *y, const float *x, const float *w, const float *b, size_t batch,
                        size_t in, size_t out)
{
    for (size_t i = 0; i < batch; i++)
        for (size_t o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (size_t j = 0; j < in; j++) s += (double)x[i * in + j] * w[o * in + j];
            y[i * out + o] = s;
        }
}

static void test_forward_matches_reference(void **state)
{
    (void)state;
    lr_rng r;
    lr_rng_seed(&r, 3);
    size_t batches[] = { 1, 3, 10, 12, 13, 33, 40 }, ins[] = { 5, 37, 600, 1030 };
    for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++)
        for (size_t ii = 0; ii < sizeof ins / sizeof *ins; ii++) {
            size_t batch = batches[bi], in = ins[ii], out = 7;
            float *x = lr_test_randn(&r, batch * in, 1), *w = lr_test_randn(&r, out * in, 0.1f), *b = lr_test_randn(&r, out, 1);
            float *y = malloc(batch * out * sizeof *y);
            double *yr = malloc(batch * out * sizeof *yr);
            assert_int_equal(lr_linear_forward(lr_mat_view(y, batch, out, out), lr_cmat_view(x, batch, in, in),
                                               lr_cmat_view(w, out, in, in), b, NULL), LR_OK);
            ref_forward(yr, x, w, b, batch, in, out);
            for (size_t i = 0; i < batch * out; i++) assert_allclose(y[i], yr[i], 1e-5, 1e-5);
            /* no bias */
            assert_int_equal(lr_linear_forward(lr_mat_view(y, batch, out, out), lr_cmat_view(x, batch, in, in),
                                               lr_cmat_view(w, out, in, in), NULL, NULL), LR_OK);
            ref_forward(yr, x, w, NULL, batch, in, out);
            for (size_t i = 0; i < batch * out; i++) assert_allclose(y[i], yr[i], 1e-5, 1e-5);
            free(x), free(w), free(b), free(y), free(yr);
        }
}

/* Loss used for the difference checks: L = Σ c ⊙ (x·wᵀ + b), in double. */
static double ref_proj_loss(const double *x, const double *w, const double *b, const float *c,
                            size_t batch, size_t in, size_t out)
{
    double L = 0;
    for (size_t i = 0; i < batch; i++)
        for (size_t o = 0; o < out; o++) {
            double s = b[o];
            for (size_t j = 0; j < in; j++) s += x[i * in + j] * w[o * in + j];
            L += c[i * out + o] * s;
        }
    return L;
}

/* Central difference of ref_proj_loss with respect to entry k of the array v. */
static double fd(double *v, size_t k, const double *x, const double *w, const double *b,
                 const float *c, size_t batch, size_t in, size_t out)
{
    double h = 1e-4, keep = v[k];
    v[k] = keep + h;
    double fp = ref_proj_loss(x, w, b, c, batch, in, out);
    v[k] = keep - h;
    double fm = ref_proj_loss(x, w, b, c, batch, in, out);
    v[k] = keep;
    return (fp - fm) / (2 * h);
}

static void test_backward_by_central_differences(void **state)
{
    (void)state;
    lr_rng r;
    lr_rng_seed(&r, 4);
    size_t batch = 3, in = 11, out = 5;
    float *x = lr_test_randn(&r, batch * in, 1), *w = lr_test_randn(&r, out * in, 0.3f), *b = lr_test_randn(&r, out, 1);
    float *c = lr_test_randn(&r, batch * out, 1); /* dy = c */
    float *dx = malloc(batch * in * 4), *dw = calloc(out * in, 4), *db = calloc(out, 4);
    assert_int_equal(lr_linear_backward(lr_mat_view(dx, batch, in, in), lr_mat_view(dw, out, in, in), db,
                                        lr_cmat_view(c, batch, out, out), lr_cmat_view(x, batch, in, in),
                                        lr_cmat_view(w, out, in, in), NULL), LR_OK);
    double *xd = lr_test_to_double(x, batch * in), *wd = lr_test_to_double(w, out * in), *bd = lr_test_to_double(b, out);
    for (size_t k = 0; k < batch * in; k++)
        assert_allclose(dx[k], fd(xd, k, xd, wd, bd, c, batch, in, out), 1e-5, 1e-6);
    for (size_t k = 0; k < out * in; k++)
        assert_allclose(dw[k], fd(wd, k, xd, wd, bd, c, batch, in, out), 1e-5, 1e-6);
    for (size_t k = 0; k < out; k++)
        assert_allclose(db[k], fd(bd, k, xd, wd, bd, c, batch, in, out), 1e-5, 1e-6);
    /* backward ADDS into dw and db */
    assert_int_equal(lr_linear_backward(lr_mat_view(NULL, 0, 0, 0), lr_mat_view(dw, out, in, in), db,
                                        lr_cmat_view(c, batch, out, out), lr_cmat_view(x, batch, in, in),
                                        lr_cmat_view(w, out, in, in), NULL), LR_OK);
    assert_allclose(dw[7], 2 * fd(wd, 7, xd, wd, bd, c, batch, in, out), 1e-5, 1e-6);
    assert_allclose(db[2], 2 * fd(bd, 2, xd, wd, bd, c, batch, in, out), 1e-5, 1e-6);
    free(x), free(w), free(b), free(c), free(dx), free(dw), free(db), free(xd), free(wd), free(bd);
}

/* The fused kernel must equal: dW = dyᵀx, db = Σ dy, dx = dy·w_old (naive, double), then
 * Adam on each element (lr_adam_elem). */
static void check_fused(size_t batch, size_t in, size_t out, bool want_dx, int threads, size_t t)
{
    lr_rng r;
    lr_rng_seed(&r, 100 + batch + in + out);
    float *x = lr_test_randn(&r, batch * in, 1), *w = lr_test_randn(&r, out * in, 0.1f), *b = lr_test_randn(&r, out, 0.1f);
    float *dy = lr_test_randn(&r, batch * out, 0.5f);
    float *m = lr_test_randn(&r, out * in, 0.01f), *v = lr_test_randn(&r, out * in, 0.01f);
    float *mb = lr_test_randn(&r, out, 0.01f), *vb = lr_test_randn(&r, out, 0.01f);
    for (size_t i = 0; i < out * in; i++) v[i] = fabsf(v[i]);
    for (size_t i = 0; i < out; i++) vb[i] = fabsf(vb[i]);
    float *w2 = malloc(out * in * 4), *m2 = malloc(out * in * 4), *v2 = malloc(out * in * 4);
    float *b2 = malloc(out * 4), *mb2 = malloc(out * 4), *vb2 = malloc(out * 4);
    memcpy(w2, w, out * in * 4), memcpy(m2, m, out * in * 4), memcpy(v2, v, out * in * 4);
    memcpy(b2, b, out * 4), memcpy(mb2, mb, out * 4), memcpy(vb2, vb, out * 4);
    float *dx = malloc(batch * in * 4), *work = malloc(lr_linear_backward_adam_work(batch, in) * 4 + 4);
    lr_adam_opts ap = lr_adam_opts_default();
    lr_adam_step s = lr_adam_step_for(t, &ap);
    lr_mat dxv = want_dx ? lr_mat_view(dx, batch, in, in) : lr_mat_view(NULL, 0, 0, 0);
    assert_int_equal(lr_linear_backward_adam(dxv, lr_mat_view(w, out, in, in), b, lr_mat_view(m, out, in, in),
                                             lr_mat_view(v, out, in, in), mb, vb,
                                             lr_cmat_view(dy, batch, out, out), lr_cmat_view(x, batch, in, in),
                                             &s, work, pool_n(threads), NULL), LR_OK);
    for (size_t o = 0; o < out; o++) {
        for (size_t j = 0; j < in; j++) {
            double g = 0;
            for (size_t i = 0; i < batch; i++) g += (double)dy[i * out + o] * x[i * in + j];
            size_t k = o * in + j;
            float want = lr_adam_elem(w2[k], (float)g, &m2[k], &v2[k], &s);
            assert_allclose(m[k], m2[k], 1e-5, 1e-7);
            assert_allclose(v[k], v2[k], 1e-4, 1e-9);
            assert_allclose(w[k], want, 1e-6, 1e-6);
        }
        double g = 0;
        for (size_t i = 0; i < batch; i++) g += dy[i * out + o];
        float want = lr_adam_elem(b2[o], (float)g, &mb2[o], &vb2[o], &s);
        assert_allclose(b[o], want, 1e-6, 1e-6);
    }
    if (want_dx)
        for (size_t i = 0; i < batch; i++)
            for (size_t j = 0; j < in; j++) {
                double sdx = 0;
                for (size_t o = 0; o < out; o++) sdx += (double)dy[i * out + o] * w2[o * in + j];
                assert_allclose(dx[i * in + j], sdx, 1e-5, 1e-5);
            }
    free(x), free(w), free(b), free(dy), free(m), free(v), free(mb), free(vb);
    free(w2), free(m2), free(v2), free(b2), free(mb2), free(vb2), free(dx), free(work);
}

static void test_fused_backward_adam_matches_naive(void **state)
{
    (void)state;
    /* rows not a multiple of 4 or of the parts, columns not a multiple of 8 or of the
     * column block, batch 1 and 10 */
    check_fused(10, 37, 13, true, 1, 1);
    check_fused(10, 300, 9, false, 2, 5);
    check_fused(1, 8, 4, true, 2, 2);
    check_fused(7, 600, 21, true, 2, 100);
    check_fused(10, 5, 3, true, 1, 3);
}

/* One fused pass on copies of the same state; returns nothing, fills w, v, dx. */
static void fused_once(size_t batch, size_t in, size_t out, const float *x, const float *dy, const float *w0,
                       float *w, float *v, float *dx, bool with_work, int threads)
{
    float *m = calloc(out * in, 4), *b = calloc(out, 4), *mb = calloc(out, 4), *vb = calloc(out, 4);
    float *work = with_work ? malloc(lr_linear_backward_adam_work(batch, in) * 4 + 4) : NULL;
    memcpy(w, w0, out * in * 4);
    memset(v, 0, out * in * 4);
    lr_adam_opts ap = lr_adam_opts_default();
    lr_adam_step s = lr_adam_step_for(1, &ap);
    assert_int_equal(lr_linear_backward_adam(lr_mat_view(dx, batch, in, in), lr_mat_view(w, out, in, in), b,
                                             lr_mat_view(m, out, in, in), lr_mat_view(v, out, in, in), mb, vb,
                                             lr_cmat_view(dy, batch, out, out), lr_cmat_view(x, batch, in, in),
                                             &s, work, pool_n(threads), NULL), LR_OK);
    free(m), free(b), free(mb), free(vb), free(work);
}

/* The pass is cut into row chunks whose dx shares are added in chunk order: 1, 2 or 3
 * threads, and a caller workspace or none, must give the same bits. out = 50, 300 and
 * 1100 make 1, 2 and 8 chunks. */
static void test_fused_is_thread_count_independent(void **state)
{
    (void)state;
    const size_t outs[3] = { 50, 300, 1100 };
    for (int c = 0; c < 3; c++) {
        lr_rng r;
        lr_rng_seed(&r, 9);
        size_t batch = 10, in = 300, out = outs[c];
        float *x = lr_test_randn(&r, batch * in, 1), *dy = lr_test_randn(&r, batch * out, 1);
        float *w0 = lr_test_randn(&r, out * in, 0.1f);
        float *w[4], *v[4], *dx[4];
        for (int k = 0; k < 4; k++) {
            w[k] = malloc(out * in * 4), v[k] = malloc(out * in * 4), dx[k] = malloc(batch * in * 4);
            /* k = 0..2: 1..3 threads with a workspace; k = 3: 2 threads, no workspace */
            fused_once(batch, in, out, x, dy, w0, w[k], v[k], dx[k], k < 3, k < 3 ? k + 1 : 2);
        }
        for (int k = 1; k < 4; k++) {
            assert_memory_equal(w[0], w[k], out * in * 4);
            assert_memory_equal(dx[0], dx[k], batch * in * 4);
            assert_memory_equal(v[0], v[k], out * in * 4);
        }
        for (int k = 0; k < 4; k++) free(w[k]), free(v[k]), free(dx[k]);
        free(x), free(dy), free(w0);
    }
}


/* Private entry of lib/nn/linear.c (lib/nn/linear_internal.h): dx <- dy·w for a frozen layer. */
void lr__linear_dx_mt(lr_mat dx, lr_cmat dy, lr_cmat w, bool reverse, const lr_pool *pool);

/* Zeros behind a ReLU are skipped: whole 8-column blocks of x that are zero in every batch
 * row (forward), rows of w whose dy is zero in every batch row (dx of a frozen layer). That
 * must not change a bit. The reference is the same kernel with nothing to skip: one more
 * batch row of ones makes every block and row active, and each output row is computed the
 * same way whatever the other rows are. */
static void test_skipping_zeros_changes_no_bit(void **state)
{
    (void)state;
    lr_rng r;
    lr_rng_seed(&r, 33);
    size_t in = 1000, out = 300, n = 10;
    float *w = lr_test_randn(&r, out * in, 0.1f), *b = lr_test_randn(&r, out, 0.1f);
    float *x = lr_test_randn(&r, (n + 1) * in, 1), *dy = lr_test_randn(&r, (n + 1) * out, 1);
    for (size_t q = 0; q < in / 8; q++) /* 7 of 8 column blocks zero in all n rows */
        if (q % 8)
            for (size_t i = 0; i < n; i++) memset(x + i * in + 8 * q, 0, 8 * sizeof(float));
    for (size_t o = 0; o < out; o++) /* 5 of 6 rows of dy zero in all n rows */
        if (o % 6)
            for (size_t i = 0; i < n; i++) dy[i * out + o] = 0.0f;
    for (size_t q = 1; q < in / 8; q += 8) x[3 * in + 8 * q + 7] = -0.5f; /* one value in a block */
    for (size_t o = 1; o < out; o += 6) dy[4 * out + o] = -0.25f;         /* one value in a row */
    for (size_t j = 0; j < in; j++) x[n * in + j] = 1.0f;
    for (size_t o = 0; o < out; o++) dy[n * out + o] = 1.0f;
    float *y1 = malloc(n * out * 4), *y2 = malloc((n + 1) * out * 4);
    float *d1 = malloc(n * in * 4), *d2 = malloc((n + 1) * in * 4);
    float *work = malloc(lr_linear_backward_adam_work(n + 1, in) * 4);
    for (int isa = 2; isa >= 1; isa--) {
        lr_isa old = lr_cpu_isa_set((lr_isa)(isa));
        assert_int_equal(lr_linear_forward(lr_mat_view(y1, n, out, out), lr_cmat_view(x, n, in, in),
                                           lr_cmat_view(w, out, in, in), b, NULL), LR_OK);
        assert_int_equal(lr_linear_forward(lr_mat_view(y2, n + 1, out, out), lr_cmat_view(x, n + 1, in, in),
                                           lr_cmat_view(w, out, in, in), b, NULL), LR_OK);
        assert_memory_equal(y1, y2, n * out * 4);
        for (int rev = 0; rev < 2; rev++) {
            lr__linear_dx_mt(lr_mat_view(d1, n, in, in), lr_cmat_view(dy, n, out, out),
                             lr_cmat_view(w, out, in, in), rev, pool_n(2));
            lr__linear_dx_mt(lr_mat_view(d2, n + 1, in, in), lr_cmat_view(dy, n + 1, out, out),
                             lr_cmat_view(w, out, in, in), rev, pool_n(2));
            assert_memory_equal(d1, d2, n * in * 4);
        }
        lr_cpu_isa_set(old);
    }
    /* a dy that is zero everywhere leaves no row to use: dx must still come out all zeros
     * (over a buffer full of garbage), tail columns included */
    size_t in2 = 1003;
    float *w2 = lr_test_randn(&r, out * in2, 0.1f), *dz = calloc(n * out, 4), *d3 = malloc(n * in2 * 4);
    float *work2 = malloc(lr_linear_backward_adam_work(n, in2) * 4);
    for (int isa = 2; isa >= 1; isa--) {
        lr_isa old = lr_cpu_isa_set((lr_isa)(isa));
        for (size_t k = 0; k < n * in2; k++) d3[k] = 7.0f;
        lr__linear_dx_mt(lr_mat_view(d3, n, in2, in2), lr_cmat_view(dz, n, out, out),
                         lr_cmat_view(w2, out, in2, in2), false, pool_n(2));
        for (size_t k = 0; k < n * in2; k++) assert_true(d3[k] == 0.0f);
        lr_cpu_isa_set(old);
    }
    free(w2), free(dz), free(d3), free(work2);
    /* and the skipped sums are still right: y and dx against double */
    double *yr = malloc(n * out * sizeof *yr);
    ref_forward(yr, x, w, b, n, in, out);
    for (size_t k = 0; k < n * out; k++) assert_allclose(y1[k], yr[k], 1e-4, 1e-4);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < in; j++) {
            double sdx = 0;
            for (size_t o = 0; o < out; o++) sdx += (double)dy[i * out + o] * w[o * in + j];
            assert_allclose(d1[i * in + j], sdx, 1e-4, 1e-4);
        }
    free(w), free(b), free(x), free(dy), free(y1), free(y2), free(d1), free(d2), free(work), free(yr);
}

/* The AVX-512 forward (two rows at a time) and the AVX2 one (one row) sum every output in
 * the same order, so a machine with or without AVX-512 gives the same bits. On a machine
 * without them both runs fall back to the same kernel and the check holds trivially. */
static void test_forward_same_bits_on_every_isa(void **state)
{
    (void)state;
    lr_rng r;
    lr_rng_seed(&r, 21);
    const size_t shapes[4][3] = { { 10, 1000, 67 }, { 7, 784, 130 }, { 12, 2000, 9 }, { 1, 13, 3 } };
    for (int c = 0; c < 4; c++) {
        size_t batch = shapes[c][0], in = shapes[c][1], out = shapes[c][2];
        float *x = lr_test_randn(&r, batch * in, 1), *w = lr_test_randn(&r, out * in, 0.1f), *b = lr_test_randn(&r, out, 0.1f);
        float *y[2];
        for (int k = 0; k < 2; k++) {
            y[k] = malloc(batch * out * 4);
            lr_isa old = lr_cpu_isa_set((lr_isa)(2 - k));
            assert_int_equal(lr_linear_forward(lr_mat_view(y[k], batch, out, out), lr_cmat_view(x, batch, in, in),
                                               lr_cmat_view(w, out, in, in), b, NULL), LR_OK);
            lr_cpu_isa_set(old);
        }
        assert_memory_equal(y[0], y[1], batch * out * 4);
        free(x), free(w), free(b), free(y[0]), free(y[1]);
    }
}

/* Private entry of lib/nn/frozen.c (lib/nn/linear_internal.h): a frozen layer's forward pass
 * through a transposed copy of w, made and freed in the call; *used: whether it ran. */
lr_status lr__linear_forward_packed_once(lr_mat y, lr_cmat x, lr_cmat w, const float *b, const lr_pool *pool,
                                         bool *used, lr_err *err);

/* The packed forward gives the row kernel's bits: sparse and dense inputs, batches over one
 * tile (13, 32), inputs over one column block (2000) or not a multiple of 8 (1003), outputs
 * not a multiple of 32, no bias, any thread count, on AVX-512 and on AVX2 (which takes it
 * only for sparse inputs). Where neither is present it never runs, and says so. */
static void test_packed_forward_same_bits(void **state)
{
    (void)state;
    lr_rng r;
    lr_rng_seed(&r, 41);
    const size_t shapes[6][3] = { { 10, 1000, 300 }, { 10, 784, 1000 }, { 13, 2000, 10 },
                                  { 32, 1003, 67 }, { 1, 9, 3 }, { 7, 64, 33 } };
    for (int c = 0; c < 6; c++) {
        size_t batch = shapes[c][0], in = shapes[c][1], out = shapes[c][2];
        float *x = lr_test_randn(&r, batch * in, 1), *w = lr_test_randn(&r, out * in, 0.1f);
        float *b = lr_test_randn(&r, out, 0.1f), *y0 = malloc(batch * out * 4), *y1 = malloc(batch * out * 4);
        for (int sparse = 0; sparse < 2; sparse++) {
            if (sparse) /* most columns zero in every row, the rest in some rows only */
                for (size_t j = 0; j < in; j++)
                    for (size_t i = 0; i < batch; i++)
                        if (j % 11 != 3 || i % 3 == 1) x[i * in + j] = 0.0f;
            for (int isa = 2; isa >= 0; isa--) {
                lr_isa old = lr_cpu_isa_set((lr_isa)isa);
                bool with_bias = c % 2 == 0, used = false;
                assert_int_equal(lr_linear_forward(lr_mat_view(y0, batch, out, out), lr_cmat_view(x, batch, in, in),
                                                   lr_cmat_view(w, out, in, in), with_bias ? b : NULL, NULL), LR_OK);
                for (int th = 1; th <= 3; th++) {
                    memset(y1, 0xff, batch * out * 4);
                    assert_int_equal(lr__linear_forward_packed_once(lr_mat_view(y1, batch, out, out),
                                                                    lr_cmat_view(x, batch, in, in),
                                                                    lr_cmat_view(w, out, in, in), with_bias ? b : NULL,
                                                                    pool_n(th), &used, NULL), LR_OK);
                    bool expect = lr_cpu_isa() == LR_ISA_AVX512 || (lr_cpu_isa() == LR_ISA_AVX2 && sparse);
                    assert_true(used == expect);
                    if (used) assert_memory_equal(y0, y1, batch * out * 4);
                }
                lr_cpu_isa_set(old);
            }
        }
        free(x), free(w), free(b), free(y0), free(y1);
    }
}

/* dx of a frozen layer: one sum per entry over the rows in walk order (fused multiply-adds),
 * so neither the thread count nor the kernel family (AVX-512, AVX2, plain C's fmaf) changes
 * a bit; right against double in both walk orders, over more rows than one window (4096) and
 * columns not a multiple of 8. */
static void test_frozen_dx(void **state)
{
    (void)state;
    lr_rng r;
    lr_rng_seed(&r, 43);
    size_t n = 10, in = 203, out = 5000;
    float *w = lr_test_randn(&r, out * in, 0.1f), *dy = lr_test_randn(&r, n * out, 1);
    for (size_t o = 0; o < out; o++) /* 2 of 3 rows of dy zero in every batch row */
        if (o % 3)
            for (size_t i = 0; i < n; i++) dy[i * out + o] = 0.0f;
    float *d[4];
    for (int rev = 0; rev < 2; rev++) {
        for (int th = 1; th <= 3; th++) {
            d[th] = malloc(n * in * 4);
            for (size_t k = 0; k < n * in; k++) d[th][k] = 7.0f; /* overwritten, not added to */
            lr__linear_dx_mt(lr_mat_view(d[th], n, in, in), lr_cmat_view(dy, n, out, out), lr_cmat_view(w, out, in, in),
                             rev, pool_n(th));
        }
        assert_memory_equal(d[1], d[2], n * in * 4);
        assert_memory_equal(d[1], d[3], n * in * 4);
        for (int isa = 1; isa >= 0; isa--) { /* d[2] again, with AVX2 and then plain C */
            lr_isa old = lr_cpu_isa_set((lr_isa)isa);
            lr__linear_dx_mt(lr_mat_view(d[2], n, in, in), lr_cmat_view(dy, n, out, out), lr_cmat_view(w, out, in, in),
                             rev, pool_n(2));
            lr_cpu_isa_set(old);
            assert_memory_equal(d[1], d[2], n * in * 4);
        }
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < in; j++) {
                double sdx = 0;
                for (size_t o = 0; o < out; o++) sdx += (double)dy[i * out + o] * w[o * in + j];
                assert_allclose(d[1][i * in + j], sdx, 1e-4, 1e-4);
            }
        for (int th = 1; th <= 3; th++) free(d[th]);
    }
    free(w), free(dy);
}

static void test_bad_shapes(void **state)
{
    (void)state;
    float buf[64] = { 0 }, work[256];
    lr_err e;
    lr_mat y = lr_mat_view(buf, 2, 3, 3);
    lr_cmat x = lr_cmat_view(buf, 2, 4, 4), w = lr_cmat_view(buf, 3, 4, 4), wbad = lr_cmat_view(buf, 3, 5, 5);
    assert_int_equal(lr_linear_forward(y, x, wbad, NULL, &e), LR_EDIM);
    assert_msg_contains(e.msg, "w is 3 x 5");
    assert_int_equal(lr_linear_forward(lr_mat_view(buf, 2, 3, 2), x, w, NULL, &e), LR_EDIM);
    assert_msg_contains(e.msg, "ld 2 is smaller than cols 3");
    assert_int_equal(lr_linear_forward(lr_mat_view(NULL, 2, 3, 3), x, w, NULL, &e), LR_EINVAL);
    assert_int_equal(lr_linear_backward(lr_mat_view(buf, 2, 3, 3), lr_mat_view(NULL, 0, 0, 0), NULL,
                                        lr_cm(y), x, w, &e), LR_EDIM);
    assert_msg_contains(e.msg, "dx is 2 x 3, want 2 x 4");
    lr_adam_opts ap = lr_adam_opts_default();
    lr_adam_step s = lr_adam_step_for(1, &ap);
    lr_mat wm = lr_mat_view(buf, 3, 4, 4), mbad = lr_mat_view(buf, 4, 4, 4);
    assert_int_equal(lr_linear_backward_adam(lr_mat_view(NULL, 0, 0, 0), wm, buf, mbad, wm, buf, buf, lr_cm(y),
                                             x, &s, work, NULL, &e), LR_EDIM);
    assert_msg_contains(e.msg, "moments are 4 x 4");
    assert_int_equal(lr_linear_backward_adam(lr_mat_view(NULL, 0, 0, 0), wm, buf, wm, wm, buf, buf, lr_cm(y),
                                             x, NULL, work, NULL, &e), LR_EINVAL);
    assert_int_equal(lr_linear_backward_adam(lr_mat_view(buf, 2, 3, 3), wm, buf, wm, wm, buf, buf, lr_cm(y),
                                             x, &s, NULL, NULL, &e), LR_EDIM);
    assert_msg_contains(e.msg, "dx is 2 x 3, want 2 x 4");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_matches_reference),
        cmocka_unit_test(test_backward_by_central_differences),
        cmocka_unit_test(test_fused_backward_adam_matches_naive),
        cmocka_unit_test(test_fused_is_thread_count_independent),
        cmocka_unit_test(test_forward_same_bits_on_every_isa),
        cmocka_unit_test(test_skipping_zeros_changes_no_bit),
        cmocka_unit_test(test_packed_forward_same_bits),
        cmocka_unit_test(test_frozen_dx),
        cmocka_unit_test(test_bad_shapes),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    for (int k = 0; k < 4; k++) lr_pool_free(&pools[k]);
    return rc;
}
