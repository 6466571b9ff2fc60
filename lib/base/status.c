/* status.c — names for status codes and the error-message helper. */
#include <stdio.h>
#include "lowrank/base/status.h"
#include "base/internal.h"

const char *lr_status_str(lr_status s)
{
    switch (s) {
    case LR_OK: return "ok";
    case LR_EINVAL: return "invalid argument";
    case LR_EDIM: return "shape mismatch";
    case LR_ENOMEM: return "out of memory";
    case LR_ENOCONV: return "did not converge";
    case LR_EIO: return "input/output error";
    case LR_EFORMAT: return "malformed or unsupported file";
    case LR_ERANGE: return "value out of range";
    case LR_ENONFINITE: return "non-finite value (NaN or Inf)";
    }
    return "unknown status";
}

lr_status lr__fail(lr_err *err, lr_status s, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return s;
}
