/* dist_train.c — data-parallel training over MPI (dist.h): every process runs lr_train on
 * the same data with the same seed, so all of them see the same global batches; each takes
 * the gradient of its slice of every batch, the slices' packed gradients are summed over
 * the processes (lr_dist_sum), and every process makes the same Adam step, as PyTorch's
 * DistributedDataParallel and Horovod keep identical replicas by allreducing gradients.
 *
 * The sum is by default in rank order and independent of how MPI schedules its
 * collectives: rank k adds chunk k of every process's buffer, (b_0 + b_1) + b_2 …, after an
 * MPI_Alltoallv, then an MPI_Allgatherv hands every rank all chunks: a reduce-scatter plus
 * an allgather, which moves what a ring allreduce moves. Its result is what one process
 * computes with lr_train_opts.shards = N, bit for bit, and the same on every rank.
 */
#include "lowrank/mpi/dist.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/internal.h"
#include "mpi/dist_internal.h"

/* ---- sums ----------------------------------------------------------------------- */

/* The ordered sum of buf: (n) with work: (size · ceil(n / size)) floats. */
static lr_status sum_ordered(lr__dctx *d, float *buf, size_t n, float *work, lr_err *err)
{
    int cnt[d->size], dsp[d->size], rcnt[d->size], rdsp[d->size];
    size_t first, mine;
    lr_status s;
    for (int k = 0; k < d->size; k++) {
        size_t f, c;
        if ((s = lr_dist_block(&f, &c, n, k, d->size, err))) return s;
        cnt[k] = (int)c, dsp[k] = (int)f;
    }
    if ((s = lr_dist_block(&first, &mine, n, d->rank, d->size, err))) return s;
    for (int k = 0; k < d->size; k++) rcnt[k] = (int)mine, rdsp[k] = k * (int)mine;
    double t0 = MPI_Wtime();
    int rc = MPI_Alltoallv(buf, cnt, dsp, MPI_FLOAT, work, rcnt, rdsp, MPI_FLOAT, d->comm);
    if (rc != MPI_SUCCESS) return lr__mpi_fail(err, "MPI_Alltoallv", rc);
    float *acc = buf + first;
    memcpy(acc, work, mine * sizeof(float));
    for (int k = 1; k < d->size; k++)
        for (size_t i = 0; i < mine; i++) acc[i] += work[(size_t)k * mine + i];
    rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, cnt, dsp, MPI_FLOAT, d->comm);
    lr__dist_count(d, t0, n * sizeof(float));
    return rc == MPI_SUCCESS ? LR_OK : lr__mpi_fail(err, "MPI_Allgatherv", rc);
}

static lr_status sum_any(lr__dctx *d, float *buf, size_t n, lr_dist_sum_kind how, float *work, lr_err *err)
{
    if (how == LR_DIST_SUM_MPI) return lr__dist_allreduce(d, buf, n, MPI_FLOAT, sizeof(float), MPI_SUM, err);
    return sum_ordered(d, buf, n, work, err);
}

static size_t work_floats(size_t n, int size) { return (size_t)size * (n / (size_t)size + 1); }

lr_status lr_dist_sum(float *buf, lr_dist_stats *stats, size_t n, lr_dist_sum_kind how, MPI_Comm comm,
                      lr_err *err)
{
    lr__dctx d;
    lr_status s = lr__dist_init(&d, comm, stats, err);
    if (s) return s;
    if (how != LR_DIST_SUM_ORDERED && how != LR_DIST_SUM_MPI)
        s = lr__fail(err, LR_EINVAL, "dist sum: unknown kind %d", (int)how);
    else if (n > INT_MAX)
        s = lr__fail(err, LR_ERANGE, "dist sum: %zu floats is more than MPI's int count holds", n);
    else if (n && !buf)
        s = lr__fail(err, LR_EINVAL, "dist sum: buf is NULL");
    float *work = NULL;
    if (!s && how == LR_DIST_SUM_ORDERED && !(work = malloc(work_floats(n, d.size) * sizeof *work)))
        s = lr__fail(err, LR_ENOMEM, "dist sum: cannot allocate %zu floats", work_floats(n, d.size));
    if (!(s = lr__dist_agree(&d, s, err)) && n) s = sum_any(&d, buf, n, how, work, err);
    free(work);
    return s;
}

/* ---- training ------------------------------------------------------------------- */

typedef struct {
    lr__dctx d;
    lr_dist_sum_kind how;
    float *work;
} reduce_ctx;

/* lr_train's reduce: agree on the step's status, then sum (train.h: lr_train_reduce_fn). */
static lr_status reduce_cb(void *ctx, float *buf, size_t n, lr_status local, lr_err *err)
{
    reduce_ctx *c = ctx;
    lr_status s = lr__dist_agree(&c->d, local, err);
    if (s || n == 0) return s;
    return sum_any(&c->d, buf, n, c->how, c->work, err);
}

/* What every process must agree on before the first step; a mismatch would desynchronise
 * the collectives. */
enum { FP_N, FP_DIM, FP_BATCH, FP_SEED, FP_EPOCHS, FP_MAX_STEPS, FP_REPLAY, FP_GRAD, FP_HOW, FP_COUNT };
static const char *const fp_name[FP_COUNT] = { "examples",  "features",      "batch",         "seed", "epochs",
                                               "max_steps", "replay_per_batch", "gradient size", "sum kind" };

static lr_status check_same(lr__dctx *d, const uint64_t *fp, lr_err *err)
{
    uint64_t lo[FP_COUNT], hi[FP_COUNT];
    int rc = MPI_Allreduce(fp, lo, FP_COUNT, MPI_UINT64_T, MPI_MIN, d->comm);
    if (rc == MPI_SUCCESS) rc = MPI_Allreduce(fp, hi, FP_COUNT, MPI_UINT64_T, MPI_MAX, d->comm);
    if (rc != MPI_SUCCESS) return lr__mpi_fail(err, "MPI_Allreduce", rc);
    for (int i = 0; i < FP_COUNT; i++)
        if (lo[i] != hi[i])
            return lr__fail(err, LR_EDIM, "dist train: the processes disagree on the %s: from %llu to %llu "
                            "(every process needs the same data, options and model)", fp_name[i],
                            (unsigned long long)lo[i], (unsigned long long)hi[i]);
    return LR_OK;
}

lr_status lr_dist_train(lr_mlp *net, lr_train_result *res, lr_dist_stats *stats, const lr_dataset *data,
                        lr_dist_sum_kind how, const lr_train_opts *opts, MPI_Comm comm, lr_err *err)
{
    reduce_ctx c = { .how = how };
    lr_train_opts def = lr_train_opts_default();
    const lr_train_opts *o = opts ? opts : &def; /* NULL: the defaults */
    lr_status s = lr__dist_init(&c.d, comm, stats, err);
    if (s) return s;
    if (!net || !data) s = lr__fail(err, LR_EINVAL, "lr_dist_train: net or data is NULL");
    else if (o->reduce || o->shards > 1) s = lr__fail(err, LR_EINVAL, "dist train: options already sharded");
    else if (how != LR_DIST_SUM_ORDERED && how != LR_DIST_SUM_MPI)
        s = lr__fail(err, LR_EINVAL, "dist train: unknown sum kind %d", (int)how);
    size_t n = s ? 0 : lr_mlp_grad_size(net) + 1;
    if (!s && n > INT_MAX) s = lr__fail(err, LR_ERANGE, "dist train: %zu gradient floats exceed MPI's int count", n);
    if (!s && how == LR_DIST_SUM_ORDERED && !(c.work = malloc(work_floats(n, c.d.size) * sizeof *c.work)))
        s = lr__fail(err, LR_ENOMEM, "dist train: cannot allocate %zu floats", work_floats(n, c.d.size));
    if (!(s = lr__dist_agree(&c.d, s, err))) {
        uint64_t fp[FP_COUNT] = { data->n, data->dim, o->batch, o->seed, o->epochs, o->max_steps,
                                  o->replay ? o->replay_per_batch : 0, n, (uint64_t)how };
        s = check_same(&c.d, fp, err);
    }
    if (!s) {
        lr_train_opts so = *o;
        if (c.d.size > 1) { /* one process is plain lr_train, the fused step */
            so.shards = (size_t)c.d.size;
            so.shard = (size_t)c.d.rank;
            so.reduce = reduce_cb;
            so.reduce_ctx = &c;
        }
        s = lr_train(net, res, data, &so, err);
        if (c.d.size == 1) s = lr__dist_agree(&c.d, s, err); /* its message prefixed "rank 0: " too */
    }
    free(c.work);
    return s;
}

/* ---- replicas ------------------------------------------------------------------- */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3u;
    return h;
}

static uint64_t mat_hash(uint64_t h, lr_mat m)
{
    for (size_t i = 0; i < m.rows; i++) h = fnv1a(h, m.data + i * m.ld, m.cols * sizeof(float));
    return h;
}

/* FNV-1a 64 of the parameters, the attached adapters' A and B, and the Adam step count. */
static uint64_t net_hash(const lr_mlp *net)
{
    uint64_t h = fnv1a(0xcbf29ce484222325u, net->params, net->n_params * sizeof(float));
    for (size_t l = 0; l < net->n_layers; l++) {
        const lr_lora_weights *lw = net->layer[l].lora;
        if (lw) h = mat_hash(mat_hash(h, lw->a), lw->b);
    }
    return fnv1a(h, &net->adam_t, sizeof net->adam_t);
}

lr_status lr_dist_check_replicas(uint64_t *checksum, const lr_mlp *net, MPI_Comm comm, lr_err *err)
{
    lr__dctx d;
    lr_status s = lr__dist_init(&d, comm, NULL, err);
    if (s) return s;
    if (!net || !net->params) s = lr__fail(err, LR_EINVAL, "dist check replicas: net is NULL or empty");
    uint64_t h = s ? 0 : net_hash(net), *all = malloc((size_t)d.size * sizeof *all);
    if (!s && !all) s = lr__fail(err, LR_ENOMEM, "dist check replicas: out of memory");
    if ((s = lr__dist_agree(&d, s, err))) {
        free(all);
        return s;
    }
    int rc = MPI_Allgather(&h, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, comm);
    if (rc != MPI_SUCCESS) s = lr__mpi_fail(err, "MPI_Allgather", rc);
    for (int k = 1; !s && k < d.size; k++)
        if (all[k] != all[0])
            s = lr__fail(err, LR_EINVAL, "dist: the replicas differ: rank %d's parameters hash %016llx, rank 0's "
                         "%016llx", k, (unsigned long long)all[k], (unsigned long long)all[0]);
    if (!s && checksum) *checksum = h;
    free(all);
    return s;
}
