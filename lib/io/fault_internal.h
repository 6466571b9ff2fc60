/* fault_internal.h — the atomic writer's fault seam, for tests (private, not installed). */
#ifndef LOWRANK_IO_FAULT_INTERNAL_H
#define LOWRANK_IO_FAULT_INTERNAL_H

#include <stddef.h>

/* Arms the seam: the at-th disk step from now (1-based: temp-file create, each write(2),
 * fsync, close, rename, in that order) fails with errno err, or with short_write set, a
 * write step writes only half; at = 0 disarms. Returns the number of steps counted since
 * the previous call (so a first call with at = 0, a save, and a second call count a save's
 * steps). Process-wide: for single-threaded tests only. */
size_t lr__io_fault(size_t at, int err, int short_write);

#endif
