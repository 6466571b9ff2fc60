/* pool_internal.h — lr__parallel_for, the kernels' one way onto an lr_pool (private). */
#ifndef LOWRANK_POOL_INTERNAL_H
#define LOWRANK_POOL_INTERNAL_H

#include <stddef.h>
#include "lowrank/base/pool.h"

typedef void (*lr__task_fn)(void *ctx, size_t piece);

/* Runs fn(ctx, c) for every c in [0, n) on the pool's threads, the caller's included, and
 * returns when all are done. Each piece runs exactly once, on some thread; callers make pieces
 * independent so the result does not depend on the schedule. With pool NULL or empty, or busy
 * (another thread is using it), everything runs on the caller's thread. */
void lr__parallel_for(const lr_pool *pool, size_t n, lr__task_fn fn, void *ctx);

#endif
