/* parallel.h — a tiny private thread pool for the training kernels (lr__ names, not installed).
 *
 * Why not OpenMP: on a machine whose cores are shared with other work, libgomp's spinning
 * barrier waits cost more than the kernels (measured 4x slower steps at load 4 on 2 cores).
 * These workers spin only briefly and then sleep on a condition variable, chunks are handed
 * out from an atomic counter (a preempted thread does not hold the others back), and the
 * calling thread works too.
 */
#ifndef LOWRANK_PARALLEL_H
#define LOWRANK_PARALLEL_H

#include <stddef.h>

typedef void (*lr__task_fn)(void *ctx, size_t chunk);

/* Runs fn(ctx, c) for every c in [0, n) on up to `threads` threads, the caller included,
 * and returns when all are done. Each chunk runs exactly once, on some thread; callers
 * make chunks independent so the result does not depend on the schedule. If the pool is
 * busy (another thread is using it) or threads <= 1, everything runs on the caller. */
void lr__parallel_for(int threads, size_t n, lr__task_fn fn, void *ctx);

#endif
