/* adam.h — the Adam optimizer (Kingma & Ba 2015) exactly as torch.optim.Adam (non-fused,
 * single-tensor path, no weight decay, no amsgrad) computes it in float32.
 *
 * Per step t (1-based), for every trainable tensor p with gradient g:
 *     m <- β1·m + (1-β1)·g
 *     v <- β2·v + (1-β2)·g²
 *     step_size = lr / (1 - β1^t)                  (in double, then rounded once)
 *     denom     = sqrt(v) / sqrt(1 - β2^t) + eps
 *     p <- p - step_size · m / denom
 * The scalars are computed per step by lr_adam_step_for, in double as Python does; the
 * element-wise update is lr_adam_update (and the fused kernels in linear.c use the same
 * inline formula, lr_adam_elem, so both paths round identically).
 */
#ifndef LOWRANK_ADAM_H
#define LOWRANK_ADAM_H

#include "lowrank/base/export.h"
#include <math.h>
#include <stddef.h>
#include "lowrank/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Hyper-parameters in double, like the Python floats torch.optim.Adam receives: 1 - β2 and
 * the bias corrections are then formed exactly as Python forms them, and rounded to float
 * only where PyTorch does. */
typedef struct {
    double lr;      /* 1e-3 */
    double beta1;   /* 0.9 */
    double beta2;   /* 0.999 */
    double eps;     /* 1e-8 */
} lr_adam_opts;

/* PyTorch's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8. */
LR_API lr_adam_opts lr_adam_opts_default(void);

/* LR_EINVAL unless lr >= 0, 0 <= β1, β2 < 1 and eps >= 0, all finite; the message gives the
 * four values ("adam: lr -1, betas (0.9, 0.999), eps 1e-08 out of range (…)"). opts NULL is
 * LR_EINVAL: the options are what it checks. */
LR_API lr_status lr_adam_opts_check(const lr_adam_opts *opts, lr_err *err);

/* The per-step scalars of step t >= 1. */
typedef struct {
    float beta1, one_minus_beta1;  /* β1, 1-β1 */
    float beta2, one_minus_beta2;  /* β2, 1-β2 */
    float eps;
    float step_size;               /* lr / (1 - β1^t) */
    float bc2_sqrt;                /* sqrt(1 - β2^t) */
} lr_adam_step;

/* The scalars of step t >= 1 under opts (opts NULL: lr_adam_opts_default()). */
LR_API lr_adam_step lr_adam_step_for(size_t t, const lr_adam_opts *opts);

/* One element: updates *m, *v and returns the new parameter. */
static inline float lr_adam_elem(float p, float g, float *m, float *v, const lr_adam_step *s)
{
    float mm = s->beta1 * *m + s->one_minus_beta1 * g;
    float vv = s->beta2 * *v + s->one_minus_beta2 * (g * g);
    *m = mm;
    *v = vv;
    float denom = sqrtf(vv) / s->bc2_sqrt + s->eps;
    return p - s->step_size * (mm / denom);
}

/* p, m, v: (n) updated in place with gradient g: (n). */
LR_API void lr_adam_update(float *p, float *m, float *v, const float *g, size_t n,
                           const lr_adam_step *s);

#ifdef __cplusplus
}
#endif
#endif
