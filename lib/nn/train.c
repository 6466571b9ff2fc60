/* train.c — the data loop over an lr_dataset: seeded shuffling, batching, per-batch
 * normalisation, Adam steps, the loss curve, step rates and progress reports (the library
 * never prints).
 *
 * Reproducibility: the shuffle comes from one lr_rng seeded with o->seed (one permutation
 * per epoch, drawn in epoch order), batches are consecutive slices of it, and every kernel
 * sums in a fixed order (whatever the thread count), so the same seed gives a bit-identical run.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "lowrank/base/rng.h"
#include "lowrank/nn/train.h"
#include "base/internal.h"
#include "base/cpu_internal.h"

lr_train_opts lr_train_opts_default(void)
{
    lr_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = 10;
    o.epochs = 1;
    o.seed = 0;
    o.adam = lr_adam_opts_default();
    o.progress_every = 1;
    o.replay_soft_weight = 1.0f;
    o.replay_label_weight = 1.0f;
    return o;
}

static lr_status check_opts(const lr_dataset *data, const lr_train_opts *o, const char *what, lr_err *err)
{
    if (!data || !o) return lr__fail(err, LR_EINVAL, "%s: data is NULL", what);
    lr_status s = lr_dataset_check(data, err);
    if (s) return s;
    lr_err ae;
    if (lr_adam_opts_check(&o->adam, &ae)) return lr__fail(err, LR_EINVAL, "%s: opts->%s", what, ae.msg);
    if (o->batch == 0) return lr__fail(err, LR_EINVAL, "%s: batch size is 0", what);
    if (o->replay_per_batch && !o->replay)
        return lr__fail(err, LR_EINVAL, "%s: replay_per_batch is %zu but replay is NULL", what, o->replay_per_batch);
    if (o->replay_per_batch >= o->batch && o->replay)
        return lr__fail(err, LR_EINVAL, "%s: replay_per_batch %zu leaves no room in a batch of %zu", what,
                        o->replay_per_batch, o->batch);
    if (!(o->replay_soft_weight >= 0) || !(o->replay_label_weight >= 0) || !isfinite(o->replay_soft_weight) ||
        !isfinite(o->replay_label_weight))
        return lr__fail(err, LR_EINVAL, "%s: replay weights must be finite and >= 0 (soft %g, label %g)", what,
                        (double)o->replay_soft_weight, (double)o->replay_label_weight);
    size_t nsh = o->shards ? o->shards : 1;
    if (o->reduce && o->shard >= nsh)
        return lr__fail(err, LR_EINVAL, "%s: shard %zu of %zu does not exist", what, o->shard, nsh);
    if (o->replay && o->replay_per_batch) {
        if ((s = lr_dataset_check(o->replay, err))) return s;
        if (o->replay->dim != data->dim || o->replay->n == 0)
            return lr__fail(err, LR_EDIM, "%s: the replay set has %zu examples of %zu features; need >= 1 of %zu", what,
                            o->replay->n, o->replay->dim, data->dim);
    }
    return LR_OK;
}

/* examples of data per batch */
static size_t own_batch(const lr_train_opts *o)
{
    return o->replay && o->replay_per_batch ? o->batch - o->replay_per_batch : o->batch;
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

static size_t total_steps(size_t n, const lr_train_opts *o)
{
    size_t b = own_batch(o), per_epoch = (n + b - 1) / b, steps = per_epoch * o->epochs;
    if (o->epochs && steps / o->epochs != per_epoch) steps = SIZE_MAX;
    if (o->max_steps && steps > o->max_steps) steps = o->max_steps;
    return steps;
}

lr_status lr_train_count_steps(size_t *steps, const lr_dataset *data, const lr_train_opts *opts, lr_err *err)
{
    lr_train_opts def = lr_train_opts_default();
    const lr_train_opts *o = opts ? opts : &def; /* NULL: the defaults */
    lr_status s;
    if ((s = check_opts(data, o, "lr_train_count_steps", err))) return s;
    if (!steps) return lr__fail(err, LR_EINVAL, "lr_train_count_steps: steps is NULL");
    *steps = total_steps(data->n, o);
    return LR_OK;
}

static lr_status check_fit(const lr_mlp *net, const lr_dataset *data, const lr_train_opts *o, lr_err *err)
{
    if (!net || !net->params) return lr__fail(err, LR_EINVAL, "lr_train: net is NULL or not initialised");
    if (data->dim != net->sizes[0])
        return lr__fail(err, LR_EDIM, "lr_train: examples have %zu features, the net takes %zu inputs", data->dim,
                        net->sizes[0]);
    size_t nout = net->sizes[net->n_layers];
    if (data->classes > nout)
        return lr__fail(err, LR_EDIM, "lr_train: the dataset has %zu classes, the net only %zu outputs",
                        data->classes, nout);
    if (data->n == 0) return lr__fail(err, LR_EINVAL, "lr_train: the dataset has no examples");
    if (o->replay && o->replay_per_batch && o->replay->classes > nout)
        return lr__fail(err, LR_EDIM, "lr_train: the replay set has %zu classes, the net only %zu outputs",
                        o->replay->classes, nout);
    return LR_OK;
}

/* Bookkeeping after step `step` (1-based) of `total`: loss curve, result, rates, progress. */
static void after_step(lr_train_result *res, const lr_train_opts *o, size_t step, size_t total, size_t bs,
                       float loss, double loss_sum, double *tmark)
{
    if (res && res->loss_curve) res->loss_curve[step - 1] = loss;
    if (step == total / 10) tmark[1] = now_s();
    if (step == total - total / 10) tmark[2] = now_s();
    if (step == total) {
        tmark[3] = now_s();
        set_rates(res, total, tmark);
    }
    if (res) {
        res->seconds = now_s() - tmark[0];
        res->steps = step;
        res->examples += bs;
        res->avg_loss = (float)(loss_sum / (double)step);
        res->last_loss = loss;
    }
    size_t every = o->progress_every ? o->progress_every : 1;
    if (o->progress && (step % every == 0 || step == total))
        o->progress(o->progress_ctx, step, total, (float)(loss_sum / (double)step));
}

/* The replayed examples' own stream: a permutation of the replay set, redrawn when used up. */
typedef struct {
    lr_rng rng;
    size_t *perm, n, next;
    size_t *at;   /* (replay_per_batch) view indices of the batch's replayed examples */
    float *tbuf;  /* (batch·(2 + outputs)) per-example weights and soft targets */
} replay_stream;

/* x, y <- k replayed examples; at[i] <- their index in the replay view */
static void replay_take(replay_stream *r, const lr_dataset *d, float *x, uint8_t *y, size_t *at, size_t k)
{
    for (size_t i = 0; i < k; i++) {
        if (r->next == r->n) {
            lr_rng_permutation(&r->rng, r->perm, r->n);
            r->next = 0;
        }
        at[i] = r->perm[r->next];
        lr_dataset_batch(d, x + i * d->dim, y + i, r->perm + r->next++, 1);
    }
}

/* The per-example targets of a batch of own data examples then nr replayed ones (train.h). */
static void replay_targets(lr_mlp_targets *tg, float *buf, const lr_train_opts *o, const size_t *at, size_t own,
                           size_t nr, size_t nout)
{
    float *lw = buf, *sw = lw + own + nr, *soft = sw + own + nr;
    for (size_t i = 0; i < own + nr; i++) {
        bool rep = i >= own;
        lw[i] = rep ? o->replay_label_weight : 1.0f;
        sw[i] = rep && o->replay_soft ? o->replay_soft_weight : 0.0f;
        for (size_t c = 0; c < nout; c++)
            soft[i * nout + c] = rep && o->replay_soft ? o->replay_soft[at[i - own] * nout + c] : 1.0f / (float)nout;
    }
    *tg = (lr_mlp_targets){ lw, o->replay_soft ? soft : NULL, o->replay_soft ? sw : NULL };
}

/* The packed-gradient buffers of a sharded step: acc (n + 1: the sum, then the loss), g (n). */
typedef struct {
    float *acc, *g;
    size_t n;
} shard_bufs;

static bool sharded(const lr_train_opts *o) { return o->shards > 1 || o->reduce; }

/* Rows [*first, *first + *count) of a batch of bs: slice k of the balanced split over nsh. */
static void slice_of(size_t *first, size_t *count, size_t bs, size_t k, size_t nsh)
{
    size_t q = bs / nsh, r = bs % nsh;
    *first = k * q + (k < r ? k : r);
    *count = q + (k < r ? 1 : 0);
}

/* tg's per-example arrays from example `first` on. */
static lr_mlp_targets targets_from(const lr_mlp_targets *tg, size_t first, size_t nout)
{
    lr_mlp_targets t = { NULL, NULL, NULL };
    if (!tg) return t;
    t.label_weight = tg->label_weight ? tg->label_weight + first : NULL;
    t.soft = tg->soft ? tg->soft + first * nout : NULL;
    t.soft_weight = tg->soft_weight ? tg->soft_weight + first : NULL;
    return t;
}

/* One step of the data-parallel kind (train.h: shards): the slices' gradients (here all of
 * them, or with reduce this process's one, then summed by reduce), then one Adam step. */
static lr_status sharded_step(lr_mlp *net, const lr_train_opts *o, shard_bufs *sb, const float *x,
                              const uint8_t *y, const lr_mlp_targets *tg, size_t bs, size_t dim, float *loss,
                              lr_err *err)
{
    size_t nsh = o->shards ? o->shards : 1, nout = net->sizes[net->n_layers];
    size_t k0 = o->reduce ? o->shard : 0, k1 = o->reduce ? o->shard + 1 : nsh;
    lr_status s = LR_OK;
    float sum = 0.0f;
    for (size_t k = k0; k < k1 && !s; k++) {
        size_t first, count;
        float lk;
        slice_of(&first, &count, bs, k, nsh);
        lr_mlp_targets t = targets_from(tg, first, nout);
        float *dst = k == k0 ? sb->acc : sb->g;
        s = lr_mlp_grad_shard(net, dst, &lk, x + first * dim, y + first, tg ? &t : NULL, count, bs, err);
        if (!s && k > k0)
            for (size_t i = 0; i < sb->n; i++) sb->acc[i] += sb->g[i]; /* in slice order */
        sum = k == k0 ? lk : sum + lk;
    }
    sb->acc[sb->n] = sum;
    if (o->reduce) {
        if (s) memset(sb->acc, 0, (sb->n + 1) * sizeof(float)); /* the others still sum */
        s = o->reduce(o->reduce_ctx, sb->acc, sb->n + 1, s, err);
    }
    if (s) return s;
    *loss = sb->acc[sb->n];
    return lr_mlp_apply_grad(net, sb->acc, &o->adam, err);
}

static lr_status one_step(lr_mlp *net, const lr_dataset *data, const lr_train_opts *o, replay_stream *rs,
                          shard_bufs *sb, const size_t *idx, size_t own, size_t step, float *x, uint8_t *y,
                          float *loss, lr_err *err)
{
    size_t nr = rs->perm ? o->replay_per_batch : 0;
    lr_dataset_batch(data, x, y, idx, own);
    if (nr) replay_take(rs, o->replay, x + own * data->dim, y + own, rs->at, nr);
    lr_mlp_targets tg;
    bool weighted = nr && (o->replay_soft || o->replay_label_weight != 1.0f);
    if (weighted) replay_targets(&tg, rs->tbuf, o, rs->at, own, nr, net->sizes[net->n_layers]);
    lr_status s = sharded(o) ? sharded_step(net, o, sb, x, y, weighted ? &tg : NULL, own + nr, data->dim, loss, err)
                             : lr_mlp_train_step(net, loss, x, y, weighted ? &tg : NULL, own + nr, &o->adam, err);
    if (!s && o->after_step) {
        s = o->after_step(o->after_step_ctx, net, step, err);
        if (o->reduce) s = o->reduce(o->reduce_ctx, NULL, 0, s, err); /* a hook failing on one process */
    }
    return s;
}

void lr_train_result_free(lr_train_result *res)
{
    if (!res) return;
    free(res->loss_curve);
    memset(res, 0, sizeof *res);
}

lr_status lr_train(lr_mlp *net, lr_train_result *res, const lr_dataset *data, const lr_train_opts *o,
                   lr_err *err)
{
    LR__FP_SCOPE();
    lr_status s;
    lr_train_opts def = lr_train_opts_default();
    if (!o) o = &def; /* NULL options: the defaults (design.md, rule 3) */
    if (res) memset(res, 0, sizeof *res);
    if ((s = check_opts(data, o, "lr_train", err)) || (s = check_fit(net, data, o, err))) {
        if (o && o->reduce) s = o->reduce(o->reduce_ctx, NULL, 0, s, err); /* the set-up agreement */
        return s;
    }
    const size_t n = data->n, d = data->dim, steps_total = total_steps(n, o), own = own_batch(o);
    size_t *perm = malloc(n * sizeof *perm);
    uint8_t *y = malloc(o->batch);
    float *x = lr__alloc_floats64(o->batch * d); /* batch*d fits: checked with the data */
    replay_stream rs = { .perm = NULL };
    if (own < o->batch) {
        rs.n = rs.next = o->replay->n;
        rs.perm = malloc(rs.n * sizeof *rs.perm);
        rs.at = malloc(o->replay_per_batch * sizeof *rs.at);
        rs.tbuf = malloc(o->batch * (2 + net->sizes[net->n_layers]) * sizeof *rs.tbuf);
        lr_rng_seed(&rs.rng, o->seed ^ 0x9e3779b97f4a7c15u); /* its own stream: data's shuffle unchanged */
    }
    shard_bufs sb = { NULL, NULL, sharded(o) ? lr_mlp_grad_size(net) : 0 };
    if (sharded(o)) {
        sb.acc = lr__alloc_floats64(sb.n + 1);
        sb.g = lr__alloc_floats64(sb.n + 1);
    }
    if (res && o->record_loss_curve) res->loss_curve = calloc(steps_total ? steps_total : 1, sizeof(float));
    if (!perm || !y || !x || (own < o->batch && (!rs.perm || !rs.at || !rs.tbuf)) ||
        (sharded(o) && (!sb.acc || !sb.g)) || (res && o->record_loss_curve && !res->loss_curve)) {
        s = lr__fail(err, LR_ENOMEM, "lr_train: cannot allocate buffers for %zu examples", n);
        if (o->reduce) s = o->reduce(o->reduce_ctx, NULL, 0, s, err);
        goto done;
    }
    if (o->reduce && (s = o->reduce(o->reduce_ctx, NULL, 0, LR_OK, err))) goto done;
    if (!o->keep_optimizer) lr_mlp_reset_optimizer(net);
    lr_rng rng;
    lr_rng_seed(&rng, o->seed);
    double loss_sum = 0.0, tmark[4] = { now_s(), 0, 0, 0 };
    size_t step = 0;
    for (size_t e = 0; e < o->epochs && step < steps_total; e++) {
        lr_rng_permutation(&rng, perm, n);
        for (size_t b0 = 0; b0 < n && step < steps_total; b0 += own) {
            size_t bs = n - b0 < own ? n - b0 : own;
            float loss;
            if ((s = one_step(net, data, o, &rs, &sb, perm + b0, bs, step + 1, x, y, &loss, err))) goto done;
            loss_sum += loss;
            after_step(res, o, ++step, steps_total, bs + (o->batch - own), loss, loss_sum, tmark);
        }
    }
    s = LR_OK;
done:
    if (s && res) free(res->loss_curve), res->loss_curve = NULL; /* the counts stay: where it stopped */
    free(rs.perm), free(rs.at), free(rs.tbuf);
    free(sb.acc), free(sb.g);
    free(perm);
    free(y);
    free(x);
    return s;
}
