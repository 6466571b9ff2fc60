/* internal.h — private helpers shared by the files in lib/ (lr__ names, not installed). */
#ifndef LOWRANK_INTERNAL_H
#define LOWRANK_INTERNAL_H

#include <stdarg.h>
#include "lowrank/status.h"

/* Writes a printf-style reason into err (if non-NULL) and returns s, so a check
 * reads: if (bad) return lr__fail(err, LR_EDIM, "W: ld %zu < cols %zu", ld, cols); */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
lr_status lr__fail(lr_err *err, lr_status s, const char *fmt, ...);

#endif
