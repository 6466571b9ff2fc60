/* test_cpu.c — the kernel family and the floating-point mode (cpu.h): LR_ISA's parsing, the
 * FTZ/DAZ mode in effect inside library calls (caller and worker threads) and restored after
 * them, and a short training run whose subnormal Adam moments are flushed without changing a
 * bit of the weights. */
#include <stdlib.h>
#include "lr_test.h"
#include "lowrank/base/cpu.h"
#include "lowrank/nn/linear.h"
#include "lowrank/nn/mlp.h"
#include "lowrank/base/rng.h"
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define HAVE_MXCSR 1
#endif

static void test_isa_names_and_caps(void **state)
{
    (void)state;
    assert_string_equal(lr_cpu_isa_name(LR_ISA_GENERIC), "generic");
    assert_string_equal(lr_cpu_isa_name(LR_ISA_AVX2), "avx2");
    assert_string_equal(lr_cpu_isa_name(LR_ISA_AVX512), "avx512");
    assert_string_equal(lr_cpu_isa_name((lr_isa)7), "?");
    assert_true(lr_cpu_isa() <= lr_cpu_isa_supported());
    /* under LR_ISA the kernels never use more than asked (CI runs the suite with generic) */
    const char *env = getenv("LR_ISA");
    if (env && strcmp(env, "generic") == 0) assert_int_equal(lr_cpu_isa(), LR_ISA_GENERIC);
    if (env && strcmp(env, "avx2") == 0) assert_true(lr_cpu_isa() <= LR_ISA_AVX2);
    /* the API caps on top of LR_ISA, and gives back the previous cap */
    lr_isa before = lr_cpu_isa();
    assert_int_equal(lr_cpu_isa_set(LR_ISA_GENERIC), LR_ISA_AVX512);
    assert_int_equal(lr_cpu_isa(), LR_ISA_GENERIC);
    assert_int_equal(lr_cpu_isa_set(LR_ISA_AVX2), LR_ISA_GENERIC);
    assert_true(lr_cpu_isa() <= LR_ISA_AVX2);
    assert_int_equal(lr_cpu_isa_set((lr_isa)9), LR_ISA_AVX2); /* out of range: no cap */
    assert_int_equal(lr_cpu_isa(), before);
}

static void test_isa_env_parsing(void **state)
{
    (void)state;
    char *saved = getenv("LR_ISA") ? strdup(getenv("LR_ISA")) : NULL;
    lr_err e = { { 0 } };
    lr_isa cap;
    unsetenv("LR_ISA");
    assert_int_equal(lr_cpu_isa_env(&cap, &e), LR_OK);
    assert_int_equal(cap, lr_cpu_isa_supported());
    setenv("LR_ISA", "generic", 1);
    assert_int_equal(lr_cpu_isa_env(&cap, &e), LR_OK);
    assert_int_equal(cap, LR_ISA_GENERIC);
    setenv("LR_ISA", "avx512", 1);
    assert_int_equal(lr_cpu_isa_env(&cap, &e), LR_OK);
    assert_int_equal(cap, LR_ISA_AVX512);
    setenv("LR_ISA", "AVX2 ", 1);
    assert_int_equal(lr_cpu_isa_env(&cap, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "LR_ISA=\"AVX2 \"");
    assert_msg_contains(e.msg, "expected generic, avx2 or avx512");
    assert_int_equal(lr_cpu_isa_env(NULL, NULL), LR_EINVAL);
    if (saved) setenv("LR_ISA", saved, 1);
    else unsetenv("LR_ISA");
    free(saved);
}

static void test_fp_mode_set_get(void **state)
{
    (void)state;
    assert_int_equal(lr_fp_mode_get(), LR_FP_FLUSH); /* the default */
    assert_int_equal(lr_fp_mode_set(LR_FP_IEEE), LR_FP_FLUSH);
    assert_int_equal(lr_fp_mode_get(), LR_FP_IEEE);
    assert_int_equal(lr_fp_mode_set((lr_fp_mode)42), LR_FP_IEEE); /* unknown -> default */
    assert_int_equal(lr_fp_mode_get(), LR_FP_FLUSH);
}

/* A 2-layer net whose input is subnormal (1e-40) and whose first weights are 1e30: kept, the
 * products are 1e-10 and the logits move; flushed (DAZ), the input reads as 0 and the logits
 * are exactly the last bias. 256 hidden rows make 4 chunks, so the worker takes part. */
static void subnormal_logits(lr_mlp *net, float *logits)
{
    lr_err e = { { 0 } };
    float x[2 * 8];
    for (int i = 0; i < 16; i++) x[i] = 1e-40f;
    assert_int_equal(lr_mlp_forward(net, logits, x, 2, NULL, &e), LR_OK);
}

static void test_mode_inside_calls_and_restored(void **state)
{
    (void)state;
    const size_t sizes[3] = { 8, 256, 3 };
    lr_mlp net;
    lr_err e = { { 0 } };
    assert_int_equal(lr_mlp_init(&net, sizes, 3, &e), LR_OK);
    assert_int_equal(lr_mlp_set_threads(&net, 2, &e), LR_OK);
    for (size_t i = 0; i < net.layer[0].w.rows * net.layer[0].w.cols; i++) net.layer[0].w.data[i] = 1e30f;
    for (size_t i = 0; i < 3 * 256; i++) net.layer[1].w.data[i] = 1.0f;
    for (size_t i = 0; i < 3; i++) net.layer[1].b[i] = 0.25f;
    float logits[6];
    for (int callerftz = 0; callerftz < 2; callerftz++) {
#ifdef HAVE_MXCSR
        unsigned before = _mm_getcsr();
        _mm_setcsr(callerftz ? before | 0x8040u : before & ~0x8040u);
        unsigned caller = _mm_getcsr();
#else
        if (callerftz) break;
#endif
        int flush_before = lr_fp_flushing_now();
        for (int rep = 0; rep < 20; rep++) {
            lr_fp_mode_set(LR_FP_FLUSH);
            subnormal_logits(&net, logits);
            for (int i = 0; i < 6; i++) assert_true(logits[i] == 0.25f);
            assert_int_equal(lr_fp_flushing_now(), flush_before);
            lr_fp_mode_set(LR_FP_IEEE);
            subnormal_logits(&net, logits);
            for (int i = 0; i < 6; i++) assert_allclose(logits[i], 0.25 + 256 * 8 * 1e-10, 1e-3, 0);
            assert_int_equal(lr_fp_flushing_now(), flush_before);
        }
#ifdef HAVE_MXCSR
        assert_int_equal(_mm_getcsr() & 0xFFC0u, caller & 0xFFC0u); /* control bits restored */
        volatile float tiny = 1e-20f;
        float prod = tiny * tiny; /* 1e-40: subnormal unless the caller flushes */
        assert_true(callerftz ? prod == 0.0f : prod > 0.0f);
        _mm_setcsr(before);
#endif
    }
    lr_fp_mode_set(LR_FP_FLUSH);
    lr_mlp_free(&net);
}

static uint64_t fnv1a(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* 1000 Adam steps of a small net where inputs 0..7 are live for the first 40 steps and zero
 * after: their weight columns' first moments decay by beta1 per step into the subnormal range,
 * as those of dead ReLU units do in the seed's pretraining. */
static void short_run(lr_fp_mode mode, uint64_t *sum, lr_mlp_subnormals *sn)
{
    const size_t sizes[3] = { 16, 24, 4 };
    lr_mlp net;
    lr_err e = { { 0 } };
    assert_int_equal(lr_mlp_init(&net, sizes, 3, &e), LR_OK);
    lr_rng rng;
    lr_rng_seed(&rng, 3);
    lr_mlp_reset_params(&net, &rng);
    lr_fp_mode_set(mode);
    lr_adam_opts adam = lr_adam_opts_default();
    float x[10 * 16];
    uint8_t y[10];
    for (int step = 0; step < 1000; step++) {
        for (int b = 0; b < 10; b++) {
            y[b] = (uint8_t)lr_rng_below(&rng, 4);
            for (int j = 0; j < 16; j++)
                x[b * 16 + j] = (j < 8 && step >= 40) ? 0.0f : (float)lr_rng_normal(&rng) + (float)y[b];
        }
        assert_int_equal(lr_mlp_train_step(&net, NULL, x, y, NULL, 10, &adam, &e), LR_OK);
    }
    lr_fp_mode_set(LR_FP_FLUSH);
    *sum = fnv1a(net.params, net.n_params * sizeof(float));
    assert_int_equal(lr_mlp_count_subnormals(&net, sn, &e), LR_OK);
    lr_mlp_free(&net);
}

static void test_flush_keeps_weights_bit_identical(void **state)
{
    (void)state;
    uint64_t sum_flush, sum_ieee;
    lr_mlp_subnormals sn_flush, sn_ieee;
    short_run(LR_FP_FLUSH, &sum_flush, &sn_flush);
    short_run(LR_FP_IEEE, &sum_ieee, &sn_ieee);
    /* kept: the decayed moments are there (the run does make subnormals) ... */
    assert_true(sn_ieee.adam_m > 0);
    /* ... flushed: none, and the weights are the same bits */
    assert_int_equal(sn_flush.adam_m + sn_flush.adam_v + sn_flush.params + sn_flush.activations, 0);
    assert_true(sum_flush == sum_ieee);
}

static void test_count_subnormals_bad_input(void **state)
{
    (void)state;
    lr_err e = { { 0 } };
    lr_mlp_subnormals sn;
    lr_mlp empty;
    memset(&empty, 0, sizeof empty);
    assert_int_equal(lr_mlp_count_subnormals(NULL, &sn, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "mlp_count_subnormals");
    assert_int_equal(lr_mlp_count_subnormals(&empty, &sn, &e), LR_EINVAL);
    const size_t sizes[2] = { 3, 2 };
    lr_mlp net;
    assert_int_equal(lr_mlp_init(&net, sizes, 2, &e), LR_OK);
    assert_int_equal(lr_mlp_count_subnormals(&net, NULL, &e), LR_EINVAL);
    net.params[0] = 1e-40f;
    net.params[1] = -1e-39f;
    net.params[2] = 1.17549435e-38f; /* FLT_MIN: normal */
    assert_int_equal(lr_mlp_count_subnormals(&net, &sn, &e), LR_OK);
    assert_int_equal(sn.params, 2);
    lr_mlp_free(&net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_isa_names_and_caps),
        cmocka_unit_test(test_isa_env_parsing),
        cmocka_unit_test(test_fp_mode_set_get),
        cmocka_unit_test(test_mode_inside_calls_and_restored),
        cmocka_unit_test(test_flush_keeps_weights_bit_identical),
        cmocka_unit_test(test_count_subnormals_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
