/* pool.h — worker threads that the caller creates, owns and frees.
 *
 * The training kernels cut their work into pieces whose number and bounds depend only on the
 * shapes, so a pool changes the speed, never a bit of the result. A pool belongs to whoever
 * called lr_pool_init; lr_pool_free joins its workers. Nothing is process-wide: two models,
 * each with its own pool, train at the same time from two threads. A pool runs one job at a
 * time: a call that finds it busy (another thread is using it) runs its pieces on its own
 * thread instead, with the same result.
 *
 * Why not OpenMP: on a machine whose cores are shared with other work, libgomp's spinning
 * barrier waits cost more than the kernels (measured 4x slower steps at load 4 on 2 cores).
 * These workers spin only briefly and then sleep on a condition variable, pieces are handed
 * out from an atomic counter (a preempted thread does not hold the others back), and the
 * calling thread works too.
 */
#ifndef LOWRANK_POOL_H
#define LOWRANK_POOL_H

#include "lowrank/base/export.h"
#include "lowrank/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LR_POOL_MAX_THREADS 64

typedef struct lr_pool {
    struct lr__pool *impl; /* NULL: no workers (every job runs on the caller's thread) */
} lr_pool;

/* threads: 1..LR_POOL_MAX_THREADS, the caller's own thread counted (threads - 1 workers are
 * started; 1 starts none). On failure the pool is empty and no thread is left running. */
LR_API lr_status lr_pool_init(lr_pool *pool, int threads, lr_err *err);

/* Stops and joins the workers and empties the pool; a no-op on NULL or an empty pool. The
 * pool must not be in use by another thread. */
LR_API void lr_pool_free(lr_pool *pool);

/* Threads a job may use, the caller's counted: 1 for NULL or an empty pool. */
LR_API int lr_pool_threads(const lr_pool *pool);

#ifdef __cplusplus
}
#endif
#endif
