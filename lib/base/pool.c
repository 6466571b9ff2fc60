/* pool.c — worker threads owned by an lr_pool (see pool.h) and lr__parallel_for over them.
 *
 * A job is published by bumping `gen` under `lock`; workers spin briefly on `gen`, then sleep
 * on `wake`. Each joins the job, takes pieces from the atomic counter `next` until none are
 * left, and leaves. The caller works too, then waits until every piece is done and every
 * worker has left the job (`inside`), so no worker touches a job after its caller returned.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include "lowrank/base/pool.h"
#include "base/cpu_internal.h"
#include "base/internal.h"
#include "base/pool_internal.h"

#define LR__SPIN 4000 /* polls before a worker sleeps (some tens of microseconds) */

struct lr__pool {
    pthread_mutex_t busy;          /* held by the one caller using the pool */
    pthread_mutex_t lock;          /* protects gen, stop and the sleep */
    pthread_cond_t wake;
    int workers;                   /* started */
    pthread_t tid[LR_POOL_MAX_THREADS];
    atomic_uint gen;               /* job generation; workers run each new one once */
    atomic_bool stop;
    /* the current job */
    lr__task_fn fn;
    void *ctx;
    size_t n;
    unsigned fpcsr;                /* the caller's floating-point control register */
    atomic_size_t next, done;
    atomic_bool open;              /* the job may still be joined */
    atomic_int inside;             /* workers between "may I join?" and leaving the job */
};

static void run_pieces(struct lr__pool *p)
{
    size_t c;
    while ((c = atomic_fetch_add(&p->next, 1)) < p->n) {
        p->fn(p->ctx, c);
        atomic_fetch_add(&p->done, 1);
    }
}

/* Waits for a generation after `seen`; returns it, or `seen` when the pool stops. */
static unsigned wait_job(struct lr__pool *p, unsigned seen)
{
    unsigned g;
    for (int spins = 0; spins < LR__SPIN; spins++) {
        if ((g = atomic_load(&p->gen)) != seen || atomic_load(&p->stop)) return g;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    pthread_mutex_lock(&p->lock);
    while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->wake, &p->lock);
    pthread_mutex_unlock(&p->lock);
    return g;
}

static void *worker(void *arg)
{
    struct lr__pool *p = arg;
    /* flush subnormals for the worker's whole life (each job then sets the caller's mode) */
    lr__fp_set(lr__fp_get() | LR__FP_FLUSH_BITS);
    unsigned seen = atomic_load(&p->gen);
    for (;;) {
        seen = wait_job(p, seen);
        if (atomic_load(&p->stop)) return NULL;
        /* announce first, then check the job is still open: the caller closes it and then
         * waits for `inside` to drain, so no worker touches a job after its caller returned */
        atomic_fetch_add(&p->inside, 1);
        if (atomic_load(&p->open)) {
            /* run the job in the mode of the call that started it (FTZ/DAZ or strict IEEE) */
            if (lr__fp_get() != p->fpcsr) lr__fp_set(p->fpcsr);
            run_pieces(p);
        }
        atomic_fetch_sub(&p->inside, 1);
    }
}

static void stop_workers(struct lr__pool *p)
{
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->workers; i++) pthread_join(p->tid[i], NULL);
}

lr_status lr_pool_init(lr_pool *pool, int threads, lr_err *err)
{
    if (!pool) return lr__fail(err, LR_EINVAL, "lr_pool_init: pool is NULL");
    pool->impl = NULL;
    if (threads < 1 || threads > LR_POOL_MAX_THREADS)
        return lr__fail(err, LR_EINVAL, "lr_pool_init: threads = %d, expected 1..%d", threads,
                        LR_POOL_MAX_THREADS);
    if (threads == 1) return LR_OK;
    struct lr__pool *p = calloc(1, sizeof *p);
    if (!p) return lr__fail(err, LR_ENOMEM, "lr_pool_init: out of memory");
    pthread_mutex_init(&p->busy, NULL);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    for (; p->workers < threads - 1; p->workers++) {
        int rc = pthread_create(&p->tid[p->workers], NULL, worker, p);
        if (rc) {
            int started = p->workers;
            stop_workers(p);
            pthread_cond_destroy(&p->wake);
            pthread_mutex_destroy(&p->lock);
            pthread_mutex_destroy(&p->busy);
            free(p);
            return lr__fail(err, LR_ENOMEM, "lr_pool_init: cannot start worker %d of %d (error %d)",
                            started + 1, threads - 1, rc);
        }
    }
    pool->impl = p;
    return LR_OK;
}

void lr_pool_free(lr_pool *pool)
{
    if (!pool || !pool->impl) return;
    struct lr__pool *p = pool->impl;
    stop_workers(p);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->busy);
    free(p);
    pool->impl = NULL;
}

int lr_pool_threads(const lr_pool *pool) { return pool && pool->impl ? pool->impl->workers + 1 : 1; }

void lr__parallel_for(const lr_pool *pool, size_t n, lr__task_fn fn, void *ctx)
{
    struct lr__pool *p = pool ? pool->impl : NULL;
    if (p && n > 1 && pthread_mutex_trylock(&p->busy) == 0) {
        p->fn = fn;
        p->ctx = ctx;
        p->fpcsr = lr__fp_get();
        p->n = n;
        atomic_store(&p->done, 0);
        atomic_store(&p->next, 0);
        atomic_store(&p->open, true); /* after every field of the job is written */
        pthread_mutex_lock(&p->lock);
        atomic_fetch_add(&p->gen, 1);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
        run_pieces(p);
        /* wait for pieces still running elsewhere; yield so a preempted worker gets on */
        while (atomic_load(&p->done) < n) sched_yield();
        atomic_store(&p->open, false);
        while (atomic_load(&p->inside) > 0) sched_yield();
        pthread_mutex_unlock(&p->busy);
        return;
    }
    for (size_t c = 0; c < n; c++) fn(ctx, c);
}
