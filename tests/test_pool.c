/* test_pool.c — caller-owned worker pools: start and join (the process's thread count goes
 * back), bad sizes, and two models, each with its own pool, trained at the same time from
 * two threads with the same bits as one after the other. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include "lr_test.h"
#include "lowrank/nn/mlp.h"
#include "lowrank/base/pool.h"
#include "lowrank/base/rng.h"

/* Threads of this process, from /proc/self/status (-1 where there is no /proc). */
static int process_threads(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1) break;
    if (f) fclose(f);
    return n;
}

static void test_init_free_joins(void **state)
{
    (void)state;
    lr_pool p;
    lr_err e = { { 0 } };
    assert_int_equal(lr_pool_init(&p, 4, &e), LR_OK);
    assert_int_equal(lr_pool_threads(&p), 4);
    int running = process_threads(); /* (a sanitizer may add a thread of its own at the first create) */
    lr_pool_free(&p);
    assert_null(p.impl);
    if (running > 0) assert_int_equal(process_threads(), running - 3); /* joined, not detached */
    lr_pool_free(&p);                                         /* empty: a no-op */
    lr_pool_free(NULL);
    assert_int_equal(lr_pool_threads(NULL), 1);
    assert_int_equal(lr_pool_init(&p, 1, &e), LR_OK);         /* 1: the caller only */
    assert_null(p.impl);
    assert_int_equal(lr_pool_threads(&p), 1);
    lr_pool_free(&p);
}

static void test_bad_sizes(void **state)
{
    (void)state;
    lr_pool p;
    lr_err e = { { 0 } };
    assert_int_equal(lr_pool_init(&p, 0, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "threads = 0, expected 1..64");
    assert_null(p.impl);
    assert_int_equal(lr_pool_init(&p, LR_POOL_MAX_THREADS + 1, &e), LR_EINVAL);
    assert_int_equal(lr_pool_init(NULL, 2, &e), LR_EINVAL);
    const size_t sizes[3] = { 4, 3, 2 };
    lr_mlp net;
    assert_int_equal(lr_mlp_init(&net, sizes, 3, &e), LR_OK);
    assert_int_equal(lr_mlp_set_threads(&net, -1, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "-1 threads");
    assert_int_equal(lr_mlp_set_threads(&net, 3, &e), LR_OK);
    assert_int_equal(lr_pool_threads(&net.pool), 3);
    assert_int_equal(lr_mlp_set_threads(&net, 2, &e), LR_OK);
    assert_int_equal(lr_pool_threads(&net.pool), 2);
    lr_mlp_free(&net); /* joins the net's pool */
}

typedef struct {
    int threads;
    uint64_t seed;
    float *params; /* out: the trained parameters */
    size_t n;
    lr_status st;
} job;

/* 60 Adam steps of a 64-300-1100-10 net (1100 rows: the fused kernel's 8 row chunks). */
static void *train(void *arg)
{
    job *j = arg;
    const size_t sizes[4] = { 64, 300, 1100, 10 };
    lr_mlp net;
    lr_err e;
    j->st = lr_mlp_init(&net, sizes, 4, &e);
    if (j->st) return NULL;
    if ((j->st = lr_mlp_set_threads(&net, j->threads, &e))) goto out;
    lr_rng rng;
    lr_rng_seed(&rng, j->seed);
    lr_mlp_reset_params(&net, &rng);
    lr_adam_opts adam = lr_adam_opts_default();
    float x[10 * 64];
    uint8_t y[10];
    for (int step = 0; step < 60 && !j->st; step++) {
        for (int b = 0; b < 10; b++) {
            y[b] = (uint8_t)lr_rng_below(&rng, 10);
            for (int k = 0; k < 64; k++) x[b * 64 + k] = (float)lr_rng_normal(&rng) + (k % 10 == y[b]);
        }
        j->st = lr_mlp_train_step(&net, NULL, x, y, NULL, 10, &adam, &e);
    }
    j->n = net.n_params;
    j->params = malloc(j->n * sizeof(float));
    if (j->params) memcpy(j->params, net.params, j->n * sizeof(float));
out:
    lr_mlp_free(&net);
    return NULL;
}

static void test_two_models_at_once(void **state)
{
    (void)state;
    job serial[2] = { { 1, 5, NULL, 0, LR_OK }, { 1, 6, NULL, 0, LR_OK } };
    job both[2] = { { 2, 5, NULL, 0, LR_OK }, { 2, 6, NULL, 0, LR_OK } };
    for (int k = 0; k < 2; k++) train(&serial[k]);
    pthread_t t[2];
    for (int k = 0; k < 2; k++) assert_int_equal(pthread_create(&t[k], NULL, train, &both[k]), 0);
    for (int k = 0; k < 2; k++) pthread_join(t[k], NULL);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(serial[k].st, LR_OK);
        assert_int_equal(both[k].st, LR_OK);
        assert_non_null(both[k].params);
        assert_memory_equal(serial[k].params, both[k].params, serial[k].n * sizeof(float));
        free(serial[k].params);
        free(both[k].params);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_free_joins),
        cmocka_unit_test(test_bad_sizes),
        cmocka_unit_test(test_two_models_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
