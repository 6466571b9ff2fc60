/* internal.h — private helpers shared by the files in lib/ (lr__ names, not installed). */
#ifndef LOWRANK_INTERNAL_H
#define LOWRANK_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include "lowrank/base/status.h"

/* Writes a printf-style reason into err (if non-NULL) and returns s, so a check
 * reads: if (bad) return lr__fail(err, LR_EDIM, "W: ld %zu < cols %zu", ld, cols); */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
lr_status lr__fail(lr_err *err, lr_status s, const char *fmt, ...);

/* n floats aligned to 64 bytes (a cache line), uninitialised; NULL if n*4 overflows or
 * memory is short. Released with free(). The dense kernels load 32 bytes at a time: from
 * malloc's 16-byte alignment half of those loads straddle two cache lines, which cost the
 * forward pass a third of its speed (measured 21 -> 31 GMAC/s on one core). */
float *lr__alloc_floats64(size_t n);

/* n zeroed floats for big arrays the kernels stream (parameters, Adam's moments, a frozen
 * layer's transposed copy): aligned to 2 MiB and marked for transparent huge pages where
 * Linux offers them (below 2 MiB: calloc). With 4 KiB pages most row switches of a kernel
 * that steps across rows are a TLB miss, and a fresh 8 MB array costs 2,000 page faults:
 * 21 ms in a VM where the copy itself takes 1.5 ms. NULL if n*4 overflows or memory is
 * short. Released with free(). */
float *lr__alloc_floats_huge(size_t n);

#endif
