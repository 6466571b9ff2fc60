/* parallel.c — the private thread pool behind lr__parallel_for (see parallel.h). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include "cpu_internal.h"
#include "parallel.h"

#define LR__MAX_WORKERS 15
#define LR__SPIN 4000 /* polls before a worker sleeps (some tens of microseconds) */

static struct {
    pthread_mutex_t busy;          /* held by the one caller using the pool */
    pthread_mutex_t lock;          /* protects gen and the sleep */
    pthread_cond_t wake;
    int started;                   /* workers created (only as many as callers asked for) */
    atomic_uint gen;               /* job generation; workers run each new one once */
    /* the current job */
    lr__task_fn fn;
    void *ctx;
    size_t n;
    unsigned fpcsr;                /* the caller's floating-point control register */
    atomic_int active;             /* workers allowed to join the job */
    atomic_size_t next, done;
    atomic_int inside;             /* workers between "may I join?" and leaving the job */
} pool = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
           0, 0, NULL, NULL, 0, 0, 0, 0, 0, 0 };

static void run_chunks(void)
{
    size_t c;
    while ((c = atomic_fetch_add(&pool.next, 1)) < pool.n) {
        pool.fn(pool.ctx, c);
        atomic_fetch_add(&pool.done, 1);
    }
}

static void *worker(void *arg)
{
    int id = (int)(size_t)arg;
    /* flush subnormals for the worker's whole life (each job then sets the caller's mode) */
    lr__fp_set(lr__fp_get() | LR__FP_FLUSH_BITS);
    unsigned seen = atomic_load(&pool.gen);
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load(&pool.gen)) == seen && spins < LR__SPIN) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
            spins++;
        }
        if (g == seen) {
            pthread_mutex_lock(&pool.lock);
            while ((g = atomic_load(&pool.gen)) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
            pthread_mutex_unlock(&pool.lock);
        }
        seen = g;
        /* announce first, then check: the caller clears `active` and then waits for
         * `inside` to drain, so no worker can touch a job after its caller returned */
        atomic_fetch_add(&pool.inside, 1);
        if (id < atomic_load(&pool.active)) {
            /* run the job in the mode of the call that started it (FTZ/DAZ or strict IEEE) */
            if (lr__fp_get() != pool.fpcsr) lr__fp_set(pool.fpcsr);
            run_chunks();
        }
        atomic_fetch_sub(&pool.inside, 1);
    }
    return NULL;
}

/* Creates workers until `want` exist (called with `busy` held). Only as many as asked for:
 * every worker wakes and spins on each job, so idle extra workers would take CPU time from
 * the ones doing the work (with 15 of them on a 2-core machine a 2-thread step was slower
 * than a 1-thread one). */
static void grow_workers(int want)
{
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    while (pool.started < want && pool.started < LR__MAX_WORKERS) {
        pthread_t t;
        if (pthread_create(&t, &at, worker, (void *)(size_t)pool.started) != 0) break;
        pool.started++;
    }
    pthread_attr_destroy(&at);
}

void lr__parallel_for(int threads, size_t n, lr__task_fn fn, void *ctx)
{
    if (threads > 1 && n > 1 && pthread_mutex_trylock(&pool.busy) == 0) {
        grow_workers(threads - 1);
        int workers = threads - 1 < pool.started ? threads - 1 : pool.started;
        if (workers > 0) {
            pool.fn = fn;
            pool.ctx = ctx;
            pool.n = n;
            pool.fpcsr = lr__fp_get();
            atomic_store(&pool.next, 0);
            atomic_store(&pool.done, 0);
            atomic_store(&pool.active, workers);
            pthread_mutex_lock(&pool.lock);
            atomic_fetch_add(&pool.gen, 1);
            pthread_cond_broadcast(&pool.wake);
            pthread_mutex_unlock(&pool.lock);
            run_chunks();
            /* wait for chunks still running elsewhere; yield so a preempted worker gets on */
            while (atomic_load(&pool.done) < n) sched_yield();
            atomic_store(&pool.active, 0);
            while (atomic_load(&pool.inside) > 0) sched_yield();
            pthread_mutex_unlock(&pool.busy);
            return;
        }
        pthread_mutex_unlock(&pool.busy);
    }
    for (size_t c = 0; c < n; c++) fn(ctx, c);
}
