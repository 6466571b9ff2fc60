/* loss.c — numerically stable softmax cross-entropy (mean over the batch), as
 * torch.nn.CrossEntropyLoss: loss_b = log Σ_k exp(z_bk - max_b) + max_b - z_b,y, and its
 * weighted mix with KL(q_b || p_b) to soft targets (Learning without Forgetting, Li & Hoiem
 * 2016), whose log p_bk = z_bk - lse_b is the same stable log-softmax.
 * Row sums are taken in double so that a batch of large logits keeps its precision. */
#include <math.h>
#include <stdbool.h>
#include "lowrank/nn/loss.h"
#include "base/internal.h"
#include "base/cpu_internal.h"
#include "nn/loss_internal.h"

lr_status lr_softmax_xent(float *loss, float *dlogits, const float *logits, const uint8_t *labels,
                          size_t batch, size_t classes, lr_err *err)
{
    LR__FP_SCOPE();
    if (!loss || !logits || !labels)
        return lr__fail(err, LR_EINVAL, "lr_softmax_xent: loss, logits or labels is NULL");
    if (batch == 0 || classes == 0)
        return lr__fail(err, LR_EINVAL, "lr_softmax_xent: batch %zu and classes %zu must be >= 1",
                        batch, classes);
    for (size_t b = 0; b < batch; b++)
        if (labels[b] >= classes)
            return lr__fail(err, LR_ERANGE, "lr_softmax_xent: label %u of example %zu is >= %zu classes",
                            (unsigned)labels[b], b, classes);
    double total = 0.0;
    for (size_t b = 0; b < batch; b++) {
        const float *z = logits + b * classes;
        float mx = z[0];
        for (size_t k = 0; k < classes; k++) {
            if (!isfinite(z[k]))
                return lr__fail(err, LR_ENONFINITE, "lr_softmax_xent: logit (%zu,%zu) is %s", b, k,
                                isnan(z[k]) ? "NaN" : "Inf");
            if (z[k] > mx) mx = z[k];
        }
        double se = 0.0;
        for (size_t k = 0; k < classes; k++) se += exp((double)z[k] - mx);
        double lse = log(se) + mx;
        total += lse - z[labels[b]];
        if (dlogits) {
            float *d = dlogits + b * classes;
            double inv_n = 1.0 / (double)batch;
            uint8_t y = labels[b];
            for (size_t k = 0; k < classes; k++) {
                double p = exp((double)z[k] - lse);
                d[k] = (float)((p - (k == y ? 1.0 : 0.0)) * inv_n);
            }
        }
    }
    *loss = (float)(total / (double)batch);
    return LR_OK;
}

/* ---------------------------------------------------- weighted cross-entropy + KL -------- */

typedef struct {
    const uint8_t *y;   /* (batch) labels, or NULL */
    const float *c;     /* (batch) cross-entropy weights, NULL = all 1 */
    const float *q;     /* (batch, n) soft targets, or NULL */
    const float *d;     /* (batch) KL weights, NULL = all 1 */
    bool ce;            /* a cross-entropy term at all (false: lr_softmax_kl) */
} mix_terms;

static lr_status check_weights(const float *w, size_t batch, const char *fn, const char *what, lr_err *err)
{
    for (size_t b = 0; w && b < batch; b++)
        if (!(w[b] >= 0.0f) || !isfinite(w[b]))
            return lr__fail(err, LR_EINVAL, "%s: %s %g of example %zu is not a finite number >= 0", fn,
                            what, (double)w[b], b);
    return LR_OK;
}

static lr_status check_soft(const float *q, size_t batch, size_t n, const char *fn, lr_err *err)
{
    for (size_t b = 0; b < batch; b++) {
        double sum = 0.0;
        for (size_t k = 0; k < n; k++) {
            float v = q[b * n + k];
            if (!(v >= 0.0f) || !isfinite(v))
                return lr__fail(err, LR_EINVAL, "%s: soft target %zu of example %zu is %g, not a finite "
                                "probability", fn, k, b, (double)v);
            sum += v;
        }
        if (fabs(sum - 1.0) > 1e-3)
            return lr__fail(err, LR_EINVAL, "%s: soft targets of example %zu sum to %.7g, not 1 (within "
                            "1e-3)", fn, b, sum);
    }
    return LR_OK;
}

static lr_status check_terms(const mix_terms *t, size_t batch, size_t n, const char *fn, lr_err *err)
{
    lr_status s;
    if ((s = check_weights(t->c, batch, fn, "label weight", err)) ||
        (s = check_weights(t->d, batch, fn, "soft weight", err)))
        return s;
    if (t->d && !t->q) return lr__fail(err, LR_EINVAL, "%s: soft weights given without soft targets", fn);
    if (t->q && (s = check_soft(t->q, batch, n, fn, err))) return s;
    for (size_t b = 0; t->ce && !t->y && b < batch; b++)
        if (!t->c || t->c[b] != 0.0f)
            return lr__fail(err, LR_EINVAL, "%s: labels is NULL but example %zu has label weight %g", fn, b,
                            t->c ? (double)t->c[b] : 1.0);
    for (size_t b = 0; t->ce && t->y && b < batch; b++)
        if (t->y[b] >= n)
            return lr__fail(err, LR_ERANGE, "%s: label %u of example %zu is >= %zu classes", fn,
                            (unsigned)t->y[b], b, n);
    return LR_OK;
}

/* log Σ_k exp(z_k), stably; LR_ENONFINITE naming (b, k) for a NaN/Inf logit. */
static lr_status row_lse(double *lse, const float *z, size_t b, size_t n, const char *fn, lr_err *err)
{
    float mx = z[0];
    for (size_t k = 0; k < n; k++) {
        if (!isfinite(z[k]))
            return lr__fail(err, LR_ENONFINITE, "%s: logit (%zu,%zu) is %s", fn, b, k, isnan(z[k]) ? "NaN" : "Inf");
        if (z[k] > mx) mx = z[k];
    }
    double se = 0.0;
    for (size_t k = 0; k < n; k++) se += exp((double)z[k] - mx);
    *lse = log(se) + mx;
    return LR_OK;
}

/* Row b's weighted loss (read before dz is written: dz may alias z), then its gradient. */
static double row_mix(const mix_terms *t, size_t b, const float *z, double lse, size_t n, double inv_n, float *dz)
{
    double cb = !t->ce ? 0.0 : t->c ? t->c[b] : 1.0, db = !t->q ? 0.0 : t->d ? t->d[b] : 1.0, loss = 0.0;
    const float *q = t->q ? t->q + b * n : NULL;
    if (cb != 0.0) loss += cb * (lse - z[t->y[b]]);
    for (size_t k = 0; q && db != 0.0 && k < n; k++)
        if (q[k] > 0.0f) loss += db * q[k] * (log((double)q[k]) - ((double)z[k] - lse));
    for (size_t k = 0; dz && k < n; k++) {
        double p = exp((double)z[k] - lse), g = 0.0;
        if (cb != 0.0) g = cb * (p - (k == t->y[b] ? 1.0 : 0.0));
        if (db != 0.0) g += db * (p - q[k]);
        dz[k] = (float)(g * inv_n);
    }
    return loss;
}

/* The mixed loss of the batch's rows divided by denom (batch for a mean; the global batch when
 * these rows are one process's or one shard's share of it), and its gradient. */
static lr_status softmax_mix(float *loss, float *dlogits, const float *logits, const mix_terms *t, size_t batch,
                             size_t denom, size_t n, const char *fn, lr_err *err)
{
    LR__FP_SCOPE();
    if (!loss || !logits) return lr__fail(err, LR_EINVAL, "%s: loss or logits is NULL", fn);
    if (batch == 0 || n == 0)
        return lr__fail(err, LR_EINVAL, "%s: batch %zu and classes %zu must be >= 1", fn, batch, n);
    if (denom < batch) return lr__fail(err, LR_EINVAL, "%s: divisor %zu < batch %zu", fn, denom, batch);
    lr_status s = check_terms(t, batch, n, fn, err);
    double total = 0.0, lse = 0.0;
    for (size_t b = 0; !s && b < batch; b++)
        if (!(s = row_lse(&lse, logits + b * n, b, n, fn, err)))
            total += row_mix(t, b, logits + b * n, lse, n, 1.0 / (double)denom, dlogits ? dlogits + b * n : NULL);
    if (!s) *loss = (float)(total / (double)denom);
    return s;
}

lr_status lr__softmax_xent_kl_sum(float *loss, float *dlogits, const float *logits, const uint8_t *labels,
                                  const float *label_weight, const float *soft, const float *soft_weight,
                                  size_t batch, size_t denom, size_t classes, lr_err *err)
{
    mix_terms t = { labels, label_weight, soft, soft_weight, true };
    return softmax_mix(loss, dlogits, logits, &t, batch, denom, classes, "softmax_xent_kl", err);
}

lr_status lr_softmax_xent_kl(float *loss, float *dlogits, const float *logits, const uint8_t *labels,
                             const float *label_weight, const float *soft, const float *soft_weight,
                             size_t batch, size_t classes, lr_err *err)
{
    mix_terms t = { labels, label_weight, soft, soft_weight, true };
    return softmax_mix(loss, dlogits, logits, &t, batch, batch, classes, "softmax_xent_kl", err);
}

lr_status lr_softmax_kl(float *loss, float *dlogits, const float *logits, const float *q, const float *w,
                        size_t batch, size_t n, lr_err *err)
{
    if (!q) return lr__fail(err, LR_EINVAL, "lr_softmax_kl: q is NULL");
    mix_terms t = { NULL, NULL, q, w, false };
    return softmax_mix(loss, dlogits, logits, &t, batch, batch, n, "softmax_kl", err);
}
