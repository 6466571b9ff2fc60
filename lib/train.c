/* train.c — the data loop over an lr_mnist set: seeded shuffling, batching, per-batch
 * normalisation, Adam steps, the loss curve and progress reports (the library never prints).
 *
 * Reproducibility: the shuffle comes from one lr_rng seeded with p->seed (one permutation
 * per epoch, drawn in epoch order), batches are consecutive slices of it, and every kernel
 * sums in a fixed order (whatever the thread count), so the same seed gives a bit-identical run.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "lowrank/rng.h"
#include "lowrank/train.h"
#include "internal.h"
#include "cpu_internal.h"

lr_train_params lr_train_default_params(void)
{
    lr_train_params p;
    memset(&p, 0, sizeof p);
    p.batch = 10;
    p.epochs = 1;
    p.seed = 0;
    p.adam = lr_adam_default_params();
    p.only_label = -1;
    p.progress_every = 1;
    return p;
}

static lr_status check_params(const lr_mnist *data, const lr_train_params *p, lr_err *err)
{
    if (!data || !p) return lr__fail(err, LR_EINVAL, "train: data or params is NULL");
    if (data->n && (!data->pixels || !data->labels))
        return lr__fail(err, LR_EINVAL, "train: data has %zu examples but no pixels or labels", data->n);
    if (p->batch == 0) return lr__fail(err, LR_EINVAL, "train: batch size is 0");
    if (p->only_label < -1 || p->only_label > 255)
        return lr__fail(err, LR_EINVAL, "train: only_label %d is not -1 or a label", p->only_label);
    if (p->loss_curve_len && !p->loss_curve)
        return lr__fail(err, LR_EINVAL, "train: loss_curve is NULL but loss_curve_len is %zu",
                        p->loss_curve_len);
    return LR_OK;
}

/* Examples used: all, or those with label only_label. */
static size_t count_selected(const lr_mnist *data, int only)
{
    if (only < 0) return data->n;
    size_t k = 0;
    for (size_t i = 0; i < data->n; i++) k += data->labels[i] == (uint8_t)only;
    return k;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Step rates of the first and last tenth from the times at steps 0, n/10, n - n/10, n. */
static void set_rates(lr_train_result *res, size_t n, const double *t)
{
    size_t tenth = n / 10;
    if (!res || tenth == 0) return;
    res->rate_first_tenth = t[1] > t[0] ? (double)tenth / (t[1] - t[0]) : 0;
    res->rate_last_tenth = t[3] > t[2] ? (double)tenth / (t[3] - t[2]) : 0;
}

static size_t total_steps(size_t n_sel, const lr_train_params *p)
{
    size_t per_epoch = (n_sel + p->batch - 1) / p->batch, steps = per_epoch * p->epochs;
    if (p->epochs && steps / p->epochs != per_epoch) steps = SIZE_MAX;
    if (p->max_steps && steps > p->max_steps) steps = p->max_steps;
    return steps;
}

lr_status lr_train_count_steps(const lr_mnist *data, const lr_train_params *p, size_t *steps,
                               lr_err *err)
{
    lr_status s;
    if ((s = check_params(data, p, err))) return s;
    if (!steps) return lr__fail(err, LR_EINVAL, "train_count_steps: steps is NULL");
    *steps = total_steps(count_selected(data, p->only_label), p);
    return LR_OK;
}

lr_status lr_train(lr_mlp *net, const lr_mnist *data, const lr_train_params *p, lr_train_result *res,
                   lr_err *err)
{
    LR__FP_SCOPE();
    lr_status s;
    if (res) memset(res, 0, sizeof *res);
    if (!net || !net->params) return lr__fail(err, LR_EINVAL, "train: net is NULL or not initialised");
    if ((s = check_params(data, p, err))) return s;
    size_t d = data->rows * data->cols;
    if (d != net->sizes[0])
        return lr__fail(err, LR_EDIM, "train: images have %zu x %zu = %zu pixels, the net takes %zu inputs",
                        data->rows, data->cols, d, net->sizes[0]);
    size_t nout = net->sizes[net->n_layers];
    for (size_t i = 0; i < data->n; i++)
        if (data->labels[i] >= nout)
            return lr__fail(err, LR_ERANGE, "train: label %u of example %zu is >= %zu outputs",
                            (unsigned)data->labels[i], i, nout);
    size_t n_sel = count_selected(data, p->only_label);
    if (n_sel == 0)
        return lr__fail(err, LR_EINVAL, "train: no examples to train on (%zu in the set, label filter %d)",
                        data->n, p->only_label);
    size_t steps_total = total_steps(n_sel, p);
    size_t *sel = malloc(n_sel * sizeof *sel), *perm = malloc(n_sel * sizeof *perm);
    size_t *idx = malloc(p->batch * sizeof *idx);
    uint8_t *y = malloc(p->batch);
    float *x = lr__alloc_floats64(p->batch * d); /* batch*d fits: checked with the data */
    if (!sel || !perm || !idx || !y || !x) {
        s = lr__fail(err, LR_ENOMEM, "train: cannot allocate buffers for %zu examples", n_sel);
        goto done;
    }
    for (size_t i = 0, k = 0; i < data->n; i++)
        if (p->only_label < 0 || data->labels[i] == (uint8_t)p->only_label) sel[k++] = i;
    if (!p->keep_optimizer) lr_mlp_reset_optimizer(net);
    lr_rng rng;
    lr_rng_seed(&rng, p->seed);
    double loss_sum = 0.0, tmark[4] = { 0, 0, 0, 0 };
    tmark[0] = now_s();
    size_t step = 0, every = p->progress_every ? p->progress_every : 1;
    for (size_t e = 0; e < p->epochs && step < steps_total; e++) {
        lr_rng_permutation(&rng, perm, n_sel);
        for (size_t b0 = 0; b0 < n_sel && step < steps_total; b0 += p->batch) {
            size_t bs = n_sel - b0 < p->batch ? n_sel - b0 : p->batch;
            for (size_t b = 0; b < bs; b++) {
                idx[b] = sel[perm[b0 + b]];
                y[b] = data->labels[idx[b]];
            }
            lr_mnist_normalize(x, data, idx, bs);
            float loss;
            if ((s = lr_mlp_train_step(net, x, y, bs, &p->adam, &loss, err))) goto done;
            if (step < p->loss_curve_len) p->loss_curve[step] = loss;
            loss_sum += loss;
            step++;
            if (step == steps_total / 10) tmark[1] = now_s();
            if (step == steps_total - steps_total / 10) tmark[2] = now_s();
            if (step == steps_total) {
                tmark[3] = now_s();
                set_rates(res, steps_total, tmark);
            }
            if (res) {
                res->seconds = now_s() - tmark[0];
                res->steps = step;
                res->examples += bs;
                res->avg_loss = (float)(loss_sum / (double)step);
                res->last_loss = loss;
            }
            if (p->progress && (step % every == 0 || step == steps_total))
                p->progress(p->progress_ctx, step, steps_total, (float)(loss_sum / (double)step));
        }
    }
    s = LR_OK;
done:
    free(sel);
    free(perm);
    free(idx);
    free(y);
    free(x);
    return s;
}
