/* test_dist_train.c — data-parallel training (dist.h: lr_dist_sum, lr_dist_train,
 * lr_dist_check_replicas), run by meson test under
 * `mpirun --allow-run-as-root --oversubscribe -np N` for N = 1, 2, 3 (suite 'dist').
 *
 * A plain C MPI program like test_dist.c: a failed check prints the rank, file and line and
 * calls MPI_Abort. Every rank builds the same synthetic dataset and net from the same seeds.
 *   - lr_dist_sum: the ordered sum is the rank-order sum bit for bit (n = 0, n < ranks,
 *     uneven chunks), MPI_Allreduce's agrees to rounding;
 *   - lr_dist_train equals one process's lr_train with shards = N bit for bit (parameters,
 *     adapters, loss curve), for the whole net and for LoRA adapters on a frozen base, with
 *     batches that do not divide by the ranks, a last short batch, a batch shorter than the
 *     ranks (empty slices), replay with soft targets and an after_step hook; it stays close
 *     to the fused one-process run; the replicas are identical;
 *   - ranks that disagree on the batch, a bad option on one rank, a hook failing on one rank
 *     mid-run, replicas that differ: the same status on every rank, the message naming the
 *     rank or the field.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mpi.h>

#include "lowrank/lowrank.h"
#include "lowrank/mpi/dist.h"
#include "lr_mpi_test.h"

int g_rank, g_size;

/* ---- lr_dist_sum ------------------------------------------------------------------ */

/* Rank k's buffer of n: magnitudes spread over 1e-3..1e3, so that the order of the sum shows. */
static void fill(float *b, size_t n, int k)
{
    lr_rng r;
    lr_rng_seed(&r, 1000u * (uint64_t)k + n);
    for (size_t i = 0; i < n; i++) b[i] = (float)(lr_rng_normal(&r) * pow(10.0, (double)lr_rng_below(&r, 7) - 3.0));
}

static void test_sum(void)
{
    const size_t sizes[] = { 0, 1, 2, 7, 1001 };
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        size_t n = sizes[t];
        float *mine = malloc((n + 1) * sizeof *mine), *mpi = malloc((n + 1) * sizeof *mpi),
              *want = malloc((n + 1) * sizeof *want), *other = malloc((n + 1) * sizeof *other);
        fill(want, n, 0);
        for (int k = 1; k < g_size; k++) {
            fill(other, n, k);
            for (size_t i = 0; i < n; i++) want[i] += other[i];
        }
        fill(mine, n, g_rank);
        fill(mpi, n, g_rank);
        lr_dist_stats st = { 0, 0, 0 };
        lr_err e = { "" };
        CHECK(lr_dist_sum(mine, &st, n, LR_DIST_SUM_ORDERED, MPI_COMM_WORLD, &e) == LR_OK, "%s", e.msg);
        CHECK(lr_dist_sum(mpi, &st, n, LR_DIST_SUM_MPI, MPI_COMM_WORLD, &e) == LR_OK, "%s", e.msg);
        CHECK(n == 0 || memcmp(mine, want, n * sizeof *want) == 0, "ordered sum of %zu differs", n);
        for (size_t i = 0; i < n; i++)
            CHECK(fabsf(mpi[i] - want[i]) <= 1e-5f * (fabsf(want[i]) + 1e-3f), "MPI sum [%zu] %g vs %g", i,
                  (double)mpi[i], (double)want[i]);
        CHECK(st.bytes == 8 * n + 8, "bytes %llu for n %zu", (unsigned long long)st.bytes, n);
        free(mine), free(mpi), free(want), free(other);
    }
    lr_err e = { "" };
    CHECK(lr_dist_sum(NULL, NULL, 3, LR_DIST_SUM_ORDERED, MPI_COMM_WORLD, &e) == LR_EINVAL, "NULL buf");
    CHECK(strstr(e.msg, "rank 0: dist sum: buf is NULL") != NULL, "%s", e.msg);
}

/* ---- training --------------------------------------------------------------------- */

enum { DIM = 8, CLASSES = 4, N = 53 };

typedef struct {
    float x[N * DIM];
    uint8_t y[N];
    lr_dataset d;
} data_t;

/* N examples: class c has a bump at features 2c, 2c+1, plus noise. */
static void make_data(data_t *s)
{
    lr_rng r;
    lr_rng_seed(&r, 5);
    for (size_t i = 0; i < N; i++) {
        uint8_t c = (uint8_t)lr_rng_below(&r, CLASSES);
        s->y[i] = c;
        for (size_t j = 0; j < DIM; j++) s->x[i * DIM + j] = (j / 2 == c ? 3.0f : 0.0f) + (float)lr_rng_normal(&r);
    }
    s->d = (lr_dataset){ .n = N, .dim = DIM, .classes = CLASSES, .type = LR_DATA_F32, .features = s->x,
                         .labels = s->y, .norm = { false, 1.0f, 0.0f, 1.0f } };
}

typedef struct {
    lr_mlp net;
    lr_lora_weights lw[2];
    bool lora;
} model_t;

/* The same net on every rank: 8-12-4 from seed 7; with lora, frozen and with rank-2
 * adapters on both layers (A from seed 9, B zero, scale 2). */
static void make_model(model_t *m, bool lora)
{
    CHECK(lr_mlp_init(&m->net, (size_t[]){ DIM, 12, CLASSES }, 3, NULL) == LR_OK, "init");
    lr_rng r;
    lr_rng_seed(&r, 7);
    lr_mlp_reset_params(&m->net, &r);
    m->lora = lora;
    if (!lora) return;
    lr_mlp_freeze_all(&m->net, true);
    lr_rng_seed(&r, 9);
    for (size_t l = 0; l < 2; l++) {
        CHECK(lr_lora_weights_init(&m->lw[l], 2, m->net.layer[l].in, m->net.layer[l].out, 2.0f, NULL) == LR_OK, "lw");
        lr_rng_fill_normal(&r, m->lw[l].a, 0.0f, 0.3f);
        CHECK(lr_mlp_set_lora(&m->net, l, &m->lw[l], NULL) == LR_OK, "set_lora");
    }
}

static void free_model(model_t *m)
{
    lr_mlp_free(&m->net);
    if (m->lora)
        for (size_t l = 0; l < 2; l++) lr_lora_weights_free(&m->lw[l]);
}

static bool same_model(const model_t *a, const model_t *b)
{
    if (memcmp(a->net.params, b->net.params, a->net.n_params * sizeof(float))) return false;
    for (size_t l = 0; a->lora && l < 2; l++)
        if (memcmp(a->lw[l].a.data, b->lw[l].a.data, 2 * a->lw[l].in * sizeof(float)) ||
            memcmp(a->lw[l].b.data, b->lw[l].b.data, 2 * a->lw[l].out * sizeof(float)))
            return false;
    return true;
}

static double max_diff(const model_t *a, const model_t *b)
{
    double d = 0;
    for (size_t i = 0; i < a->net.n_params; i++) d = fmax(d, fabs((double)a->net.params[i] - b->net.params[i]));
    for (size_t l = 0; a->lora && l < 2; l++)
        for (size_t i = 0; i < 2 * a->lw[l].in; i++) d = fmax(d, fabs((double)a->lw[l].a.data[i] - b->lw[l].a.data[i]));
    return d;
}

typedef struct { size_t calls; size_t fail_at; int fail_rank; } hook_t;

static lr_status on_step(void *ctx, lr_mlp *net, size_t step, lr_err *err)
{
    hook_t *h = ctx;
    (void)net;
    h->calls++;
    if (step == h->fail_at && g_rank == h->fail_rank) {
        snprintf(err->msg, sizeof err->msg, "hook stopped at %zu", step);
        return LR_EINVAL;
    }
    return LR_OK;
}

/* One configuration: the data-parallel run against the one-process shards = N run (bit for
 * bit) and the fused one (close). */
static void check_case(const data_t *s, bool lora, size_t batch, bool replay, const char *what)
{
    static float soft[N * CLASSES];
    for (size_t i = 0; i < N; i++)
        for (size_t c = 0; c < CLASSES; c++) soft[i * CLASSES + c] = c == s->y[i] ? 0.7f : 0.1f;
    lr_train_opts o = lr_train_opts_default();
    o.batch = batch, o.epochs = 3, o.seed = 11, o.adam.lr = 1e-2;
    if (replay) o.replay = &s->d, o.replay_per_batch = batch / 3, o.replay_soft = soft, o.replay_label_weight = 0.5f;
    size_t steps;
    CHECK(lr_train_count_steps(&steps, &s->d, &o, NULL) == LR_OK, "count");
    model_t dist, one, fused;
    make_model(&dist, lora), make_model(&one, lora), make_model(&fused, lora);
    hook_t h = { 0, 0, -1 };
    o.after_step = on_step, o.after_step_ctx = &h;
    o.record_loss_curve = true;
    lr_dist_stats st = { 0, 0, 0 };
    lr_train_result rd, r1;
    lr_err e = { "" };
    CHECK(lr_dist_train(&dist.net, &rd, &st, &s->d, LR_DIST_SUM_ORDERED, &o, MPI_COMM_WORLD, &e) == LR_OK, "%s: %s",
          what, e.msg);
    CHECK(rd.steps == steps && h.calls == steps, "%s: %zu steps, %zu hook calls, want %zu", what, rd.steps, h.calls,
          steps);
    o.shards = (size_t)g_size;
    CHECK(lr_train(&one.net, &r1, &s->d, &o, &e) == LR_OK, "%s: one process: %s", what, e.msg);
    CHECK(same_model(&dist, &one), "%s: differs from one process with %d shards", what, g_size);
    CHECK(rd.loss_curve && r1.loss_curve && memcmp(rd.loss_curve, r1.loss_curve, steps * sizeof(float)) == 0,
          "%s: loss curves differ", what);
    lr_train_result_free(&rd), lr_train_result_free(&r1);
    o.shards = 0, o.record_loss_curve = false;
    CHECK(lr_train(&fused.net, NULL, &s->d, &o, &e) == LR_OK, "%s: fused: %s", what, e.msg);
    double d = max_diff(&dist, &fused);
    CHECK(d < 1e-3, "%s: %g from the fused run", what, d);
    uint64_t sum;
    CHECK(lr_dist_check_replicas(&sum, &dist.net, MPI_COMM_WORLD, &e) == LR_OK, "%s: %s", what, e.msg);
    size_t gs = lr_mlp_grad_size(&dist.net) + 1;
    CHECK(g_size == 1 || st.bytes >= steps * 4 * gs, "%s: %llu bytes for %zu steps of %zu floats", what,
          (unsigned long long)st.bytes, steps, gs);
    if (g_rank == 0)
        printf("%-34s %3zu steps, %5zu floats a step, max |diff| to the fused run %.2e, checksum %016llx\n", what,
               steps, gs, d, (unsigned long long)sum);
    free_model(&dist), free_model(&one), free_model(&fused);
}

/* LR_DIST_SUM_MPI trains too, with identical replicas, close to the ordered sum. */
static void check_mpi_sum(const data_t *s)
{
    model_t a, b;
    make_model(&a, false), make_model(&b, false);
    lr_train_opts o = lr_train_opts_default();
    o.epochs = 2, o.adam.lr = 1e-2;
    lr_err e = { "" };
    CHECK(lr_dist_train(&a.net, NULL, NULL, &s->d, LR_DIST_SUM_MPI, &o, MPI_COMM_WORLD, &e) == LR_OK, "%s", e.msg);
    CHECK(lr_dist_train(&b.net, NULL, NULL, &s->d, LR_DIST_SUM_ORDERED, &o, MPI_COMM_WORLD, &e) == LR_OK, "%s", e.msg);
    CHECK(lr_dist_check_replicas(NULL, &a.net, MPI_COMM_WORLD, &e) == LR_OK, "%s", e.msg);
    CHECK(max_diff(&a, &b) < 1e-4, "MPI vs ordered: %g", max_diff(&a, &b));
    free_model(&a), free_model(&b);
}

static void check_errors(const data_t *s)
{
    model_t m;
    make_model(&m, false);
    lr_train_opts o = lr_train_opts_default();
    lr_err e = { "" };
    char want[128];
    if (g_size > 1) { /* ranks that disagree: caught before any step */
        o.batch = g_rank == 1 ? 11 : 10;
        CHECK(lr_dist_train(&m.net, NULL, NULL, &s->d, LR_DIST_SUM_ORDERED, &o, MPI_COMM_WORLD, &e) == LR_EDIM,
              "disagree");
        CHECK(strstr(e.msg, "disagree on the batch: from 10 to 11") != NULL, "%s", e.msg);
        o.batch = 10;
    }
    int last = g_size - 1;
    /* NULL options: the defaults (one epoch, batch 10), on every rank alike */
    CHECK(lr_dist_train(&m.net, NULL, NULL, &s->d, LR_DIST_SUM_ORDERED, NULL, MPI_COMM_WORLD, &e) == LR_OK, "%s",
          e.msg);
    /* a bad option on the last rank only: every rank stops with its message */
    o.replay_soft_weight = g_rank == last ? -1.0f : 1.0f;
    CHECK(lr_dist_train(&m.net, NULL, NULL, &s->d, LR_DIST_SUM_ORDERED, &o, MPI_COMM_WORLD, &e) == LR_EINVAL, "bad");
    snprintf(want, sizeof want, "rank %d: lr_train: replay weights must be finite", last);
    CHECK(strstr(e.msg, want) != NULL, "%s", e.msg);
    o.replay_soft_weight = 1.0f;
    /* a hook failing on the last rank at step 3 */
    hook_t h = { 0, 3, last };
    o.after_step = on_step, o.after_step_ctx = &h;
    lr_train_result res;
    CHECK(lr_dist_train(&m.net, &res, NULL, &s->d, LR_DIST_SUM_ORDERED, &o, MPI_COMM_WORLD, &e) == LR_EINVAL, "hook");
    snprintf(want, sizeof want, "rank %d: hook stopped at 3", last);
    CHECK(strcmp(e.msg, want) == 0 && h.calls == 3 && res.steps == 2, "%s (%zu calls, %zu steps)", e.msg, h.calls,
          res.steps);
    o.after_step = NULL;
    /* already sharded options */
    o.shards = 2;
    CHECK(lr_dist_train(&m.net, NULL, NULL, &s->d, LR_DIST_SUM_ORDERED, &o, MPI_COMM_WORLD, &e) == LR_EINVAL, "sh");
    /* replicas that differ */
    CHECK(lr_dist_check_replicas(NULL, &m.net, MPI_COMM_WORLD, &e) == LR_OK, "%s", e.msg);
    if (g_size > 1) {
        if (g_rank == last) m.net.params[3] += 1.0f;
        CHECK(lr_dist_check_replicas(NULL, &m.net, MPI_COMM_WORLD, &e) == LR_EINVAL, "replicas");
        snprintf(want, sizeof want, "the replicas differ: rank %d's parameters hash", last);
        CHECK(strstr(e.msg, want) != NULL, "%s", e.msg);
    }
    free_model(&m);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    test_sum();
    static data_t s;
    make_data(&s);
    check_case(&s, false, 10, false, "whole net, batch 10");
    check_case(&s, false, 7, false, "whole net, batch 7");
    check_case(&s, false, 2, false, "whole net, batch 2 (empty slices)");
    check_case(&s, true, 10, false, "LoRA, frozen base, batch 10");
    check_case(&s, true, 9, true, "LoRA, replay + soft targets");
    check_case(&s, false, 9, true, "whole net, replay + soft targets");
    check_mpi_sum(&s);
    check_errors(&s);
    if (g_rank == 0) printf("test_dist_train: %d process%s: all checks passed\n", g_size, g_size == 1 ? "" : "es");
    MPI_Finalize();
    return 0;
}
