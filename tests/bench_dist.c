/* bench_dist.c — what the MPI layer costs and gains, for docs/dist.md and the scaling model of
 * docs/scale.md. Run it under mpirun with one OpenBLAS thread per process:
 *     OPENBLAS_NUM_THREADS=1 mpirun -np 1 build/tests/bench_dist
 *     OPENBLAS_NUM_THREADS=1 mpirun -np 2 build/tests/bench_dist
 * Rank 0 prints one JSON object:
 *   - "sum": seconds per lr_dist_sum (rank-ordered and MPI_Allreduce) of n floats, medians;
 *   - "train": data-parallel training of RichBoyNet (784-1000-2000-10) on synthetic MNIST-shaped
 *     data, global batch 10, with lr_dist_train: the LoRA fine-tune (rank 1 on all layers,
 *     base frozen, 1000 steps) and the whole net (100 steps): wall seconds, seconds inside MPI,
 *     floats and bytes per step;
 *   - "step" (one process only): the gradient of a slice of b examples plus the Adam step
 *     (lr_mlp_grad_shard + lr_mlp_apply_grad), LoRA and whole, for b = 1 … 500: the compute
 *     cost a node pays for its share of a batch;
 *   - "rsvd": lr_dist_rsvd of a 20000 x 4000 matrix (each rank makes its own rows), rank 20,
 *     default options: seconds, seconds inside MPI, bytes, σ₁ and σ₂₀.
 * Never fails on time; exits 1 if a call fails. With --quick, smaller sizes (a smoke test).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mpi.h>

#include "lowrank/lowrank.h"
#include "lowrank/mpi/dist.h"

static int g_rank, g_size;
static bool g_quick;

static void check(lr_status s, const lr_err *e, const char *what)
{
    if (s == LR_OK) return;
    fprintf(stderr, "bench_dist: rank %d: %s: %s\n", g_rank, what, e->msg);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* ---- sums --------------------------------------------------------------------- */

/* Median seconds of one lr_dist_sum of n floats (the slowest rank's time per call). */
static double time_sum(size_t n, lr_dist_sum_kind how)
{
    float *b = calloc(n, sizeof *b);
    int reps = g_quick ? 3 : n > 100000 ? 10 : 200;
    double t[200];
    lr_err e;
    for (int i = 0; i < reps; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        check(lr_dist_sum(b, NULL, n, how, MPI_COMM_WORLD, &e), &e, "sum");
        t[i] = MPI_Wtime() - t0;
        MPI_Allreduce(MPI_IN_PLACE, &t[i], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    }
    free(b);
    return median(t, reps);
}

static void bench_sums(void)
{
    static const size_t ns[] = { 1, 256, 6795, 65536, 524288, 2807011 };
    if (g_rank == 0) printf("\"sum\": [");
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++) {
        double o = time_sum(ns[i], LR_DIST_SUM_ORDERED), m = time_sum(ns[i], LR_DIST_SUM_MPI);
        if (g_rank == 0)
            printf("%s{\"floats\": %zu, \"ordered_s\": %.3e, \"mpi_allreduce_s\": %.3e}", i ? ", " : "", ns[i], o, m);
    }
    if (g_rank == 0) printf("],\n");
}

/* ---- training ------------------------------------------------------------------- */

typedef struct {
    uint8_t *px, *labels;
    lr_dataset d;
} data_t;

static void make_data(data_t *s, size_t n)
{
    lr_rng r;
    lr_rng_seed(&r, 3);
    s->px = malloc(n * 784);
    s->labels = malloc(n);
    for (size_t i = 0; i < n * 784; i++) s->px[i] = (uint8_t)lr_rng_below(&r, 256);
    for (size_t i = 0; i < n; i++) s->labels[i] = (uint8_t)lr_rng_below(&r, 10);
    s->d = (lr_dataset){ .n = n, .dim = 784, .classes = 10, .type = LR_DATA_U8, .features = s->px,
                         .labels = s->labels, .norm = { true, 255.0f, 0.1307f, 0.3081f } };
}

typedef struct {
    lr_mlp net;
    lr_lora_weights lw[3];
    bool lora;
} model_t;

static void make_model(model_t *m, bool lora)
{
    lr_err e;
    check(lr_mlp_init(&m->net, lr_mlp_default_sizes, 4, &e), &e, "mlp");
    lr_rng r;
    lr_rng_seed(&r, 1);
    lr_mlp_reset_params(&m->net, &r);
    m->lora = lora;
    if (!lora) return;
    lr_mlp_freeze_all(&m->net, true);
    for (size_t l = 0; l < 3; l++) {
        check(lr_lora_weights_init(&m->lw[l], 1, m->net.layer[l].in, m->net.layer[l].out, 1.0f, &e), &e, "lora");
        lr_rng_fill_normal(&r, m->lw[l].a, 0.0f, 1.0f);
        check(lr_mlp_set_lora(&m->net, l, &m->lw[l], &e), &e, "set_lora");
    }
}

static void free_model(model_t *m)
{
    lr_mlp_free(&m->net);
    for (size_t l = 0; m->lora && l < 3; l++) lr_lora_weights_free(&m->lw[l]);
}

static void bench_train_one(const data_t *s, bool lora, bool last)
{
    model_t m;
    make_model(&m, lora);
    lr_train_opts o = lr_train_opts_default();
    o.max_steps = g_quick ? 3 : lora ? 1000 : 100;
    lr_dist_stats st = { 0, 0, 0 };
    lr_train_result res;
    lr_err e;
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    check(lr_dist_train(&m.net, &res, &st, &s->d, LR_DIST_SUM_ORDERED, &o, MPI_COMM_WORLD, &e), &e, "train");
    double wall = MPI_Wtime() - t0;
    uint64_t sum;
    check(lr_dist_check_replicas(&sum, &m.net, MPI_COMM_WORLD, &e), &e, "replicas");
    if (g_rank == 0)
        printf("{\"what\": \"%s\", \"steps\": %zu, \"seconds\": %.4f, \"ms_per_step\": %.4f, \"mpi_seconds\": %.4f, "
               "\"floats_per_step\": %zu, \"bytes_per_step\": %.0f, \"checksum\": \"%016llx\"}%s",
               lora ? "lora" : "full", res.steps, wall, 1e3 * wall / (double)res.steps, st.seconds,
               lr_mlp_grad_size(&m.net) + 1, (double)st.bytes / (double)res.steps, (unsigned long long)sum,
               last ? "" : ", ");
    free_model(&m);
}

/* The compute a node pays for a slice of b examples: gradient + Adam step, in one process. */
static void bench_steps(const data_t *s)
{
    static const size_t bs[] = { 1, 2, 5, 10, 20, 50, 100, 200, 500 };
    float *x = malloc(500 * 784 * sizeof *x);
    uint8_t y[500];
    lr_dataset_range(&s->d, x, y, 0, 500);
    printf("\"step\": [");
    for (int lora = 1; lora >= 0; lora--) {
        model_t m;
        make_model(&m, lora);
        float *g = malloc((lr_mlp_grad_size(&m.net) + 1) * sizeof *g), loss;
        lr_adam_opts ap = lr_adam_opts_default();
        lr_err e;
        for (size_t i = 0; i < sizeof bs / sizeof *bs; i++) {
            int reps = g_quick || bs[i] > 100 ? 3 : 31;
            double t[31];
            for (int k = 0; k < reps; k++) {
                double t0 = MPI_Wtime();
                check(lr_mlp_grad_shard(&m.net, g, &loss, x, y, NULL, bs[i], bs[i], &e), &e, "grad");
                check(lr_mlp_apply_grad(&m.net, g, &ap, &e), &e, "apply");
                t[k] = MPI_Wtime() - t0;
            }
            printf("%s{\"what\": \"%s\", \"batch\": %zu, \"ms\": %.4f}", lora == 1 && i == 0 ? "" : ", ",
                   lora ? "lora" : "full", bs[i], 1e3 * median(t, reps));
        }
        free(g);
        free_model(&m);
    }
    printf("],\n");
    free(x);
}

static void bench_training(void)
{
    data_t s;
    make_data(&s, 2000);
    if (g_size == 1) bench_steps(&s);
    if (g_rank == 0) printf("\"train\": [");
    bench_train_one(&s, true, false);
    bench_train_one(&s, false, true);
    if (g_rank == 0) printf("],\n");
    free(s.px), free(s.labels);
}

/* ---- distributed rSVD ----------------------------------------------------------- */

/* This rank's rows of W = G₁·diag(0.95ⁱ)·G₂/√n + 1e-3·noise, (m, n), inner dimension 200:
 * row g of G₁ and of the noise from a generator seeded by g, so the matrix does not depend
 * on the split. */
static lr_mat make_rows(size_t first, size_t count, size_t n)
{
    enum { K = 200 };
    float *g2 = malloc(K * n * sizeof *g2), *g1 = malloc((count ? count : 1) * K * sizeof *g1);
    lr_mat w = { malloc((count ? count : 1) * n * sizeof(float)), count, n, n };
    lr_rng r;
    lr_rng_seed(&r, 99);
    lr_rng_fill_normal(&r, lr_mat_view(g2, K, n, n), 0.0f, 1.0f);
    for (size_t k = 0; k < K; k++)
        for (size_t j = 0; j < n; j++) g2[k * n + j] *= (float)(pow(0.95, (double)k) / sqrt((double)n));
    for (size_t i = 0; i < count; i++) {
        lr_rng_seed(&r, 1000 + first + i);
        lr_rng_fill_normal(&r, lr_mat_view(g1 + i * K, 1, K, K), 0.0f, 1.0f);
    }
    lr_err e;
    if (count) check(lr_gemm(w, 1.0f, lr_cmat_view(g1, count, K, K), false, lr_cmat_view(g2, K, n, n), false, 0.0f, &e),
                     &e, "gemm");
    for (size_t i = 0; i < count; i++) {
        lr_rng_seed(&r, 5000000 + first + i);
        for (size_t j = 0; j < n; j++) w.data[i * n + j] += 1e-3f * (float)lr_rng_normal(&r);
    }
    free(g1), free(g2);
    return w;
}

static void bench_rsvd(void)
{
    size_t m = g_quick ? 2000 : 20000, n = g_quick ? 400 : 4000, r = 20, first, count;
    lr_err e;
    check(lr_dist_block(&first, &count, m, g_rank, g_size, &e), &e, "block");
    lr_mat w = make_rows(first, count, n);
    float s[20], *u = malloc((count ? count : 1) * r * sizeof *u), *vt = malloc(r * n * sizeof *vt);
    lr_rsvd_opts o = lr_rsvd_opts_default();
    double t[5], tmpi = 0;
    uint64_t bytes = 0, calls = 0;
    int reps = g_quick ? 1 : 5;
    for (int k = 0; k < reps; k++) {
        lr_dist_stats st = { 0, 0, 0 };
        lr_rng rng;
        lr_rng_seed(&rng, 7);
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        check(lr_dist_rsvd(s, lr_mat_view(u, count, r, r), lr_mat_view(vt, r, n, n), &st, lr_cm(w), r, &o, &rng,
                           MPI_COMM_WORLD, &e), &e, "rsvd");
        t[k] = MPI_Wtime() - t0;
        tmpi += st.seconds / reps, bytes = st.bytes, calls = st.calls;
    }
    if (g_rank == 0)
        printf("\"rsvd\": {\"rows\": %zu, \"cols\": %zu, \"rank\": %zu, \"seconds\": %.4f, \"mpi_seconds\": %.4f, "
               "\"bytes\": %llu, \"collectives\": %llu, \"sigma1\": %.7g, \"sigma20\": %.7g}\n", m, n, r,
               median(t, reps), tmpi, (unsigned long long)bytes, (unsigned long long)calls, (double)s[0], (double)s[19]);
    free(w.data), free(u), free(vt);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_quick = argc > 1 && !strcmp(argv[1], "--quick");
    lr_blas_set_threads(1);
    if (g_rank == 0) printf("{\"processes\": %d,\n", g_size);
    bench_sums();
    bench_training();
    bench_rsvd();
    if (g_rank == 0) printf("}\n");
    MPI_Finalize();
    return 0;
}
