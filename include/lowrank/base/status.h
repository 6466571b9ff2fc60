/* status.h — status codes and error messages shared by every lowrank routine.
 *
 * The library never prints, exits or aborts on bad input. Every fallible routine
 * returns an lr_status and, when the caller passes a non-NULL lr_err, writes a
 * one-line reason ("linear1.weight: expected shape (1000,784), got (784,1000)")
 * that a program can show as it is.
 */
#ifndef LOWRANK_STATUS_H
#define LOWRANK_STATUS_H

#include "lowrank/base/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LR_OK = 0,
    LR_EINVAL,    /* invalid argument: NULL pointer, r = 0, bad option value      */
    LR_EDIM,      /* shapes that do not fit together, ld < cols                      */
    LR_ENOMEM,    /* allocation failed                                               */
    LR_ENOCONV,   /* an iterative LAPACK routine did not converge (info > 0)         */
    LR_EIO,       /* a file could not be opened, read, written or renamed            */
    LR_EFORMAT,   /* a file's contents are malformed or of an unsupported kind       */
    LR_ERANGE,    /* a size product overflows size_t, or a value is out of range     */
    LR_ENONFINITE /* NaN or +-Inf where finite numbers are required                  */
} lr_status;

/* A short, static, human-readable name for a status ("shape mismatch"). */
LR_API const char *lr_status_str(lr_status s);

/* Optional out-parameter for the reason behind a non-LR_OK status. */
typedef struct lr_err {
    char msg[512];
} lr_err;

#ifdef __cplusplus
}
#endif
#endif
