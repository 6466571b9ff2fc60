/* bench_train.c — speed of the training engine on RichBoyNet (784-1000-2000-10), batch 10.
 *
 * Prints: ms/step for the forward pass and for backward+Adam (fused), the bytes of weights
 * and optimizer state one step moves against a measured memory bandwidth (triad), the full
 * epoch, evaluation of 10,000 images, a LoRA (rank 1, all layers, base frozen) step against
 * a full step, and peak RSS. The epoch runs twice, with subnormals flushed (the library's default)
 * and kept (LR_FP_IEEE): each run prints its step rate over the first and the last tenth of the
 * epoch, the subnormal floats left in the parameters, Adam's moments and the activations, and
 * a checksum of the weights (the two must agree). Real MNIST when $LR_MNIST_DIR holds it, else synthetic data.
 * Usage: bench_train [THREADS] (default $LR_THREADS, else 2). Never fails on time.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <time.h>
#include "lowrank/linalg/blas.h"
#include "lowrank/base/cpu.h"
#include "lowrank/nn/eval.h"
#include "lowrank/io/idx.h"
#include "lowrank/nn/mlp.h"
#include "lowrank/nn/train.h"
#include "bench.h"

/* CPU time of the whole process (all threads): what a run costs when the machine is shared
 * (wall time then depends on the other load; the bench prints both and the load average). */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double loadavg(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

#define DIE(s, e) LR_BENCH_CHECK("bench_train", s, e)

/* ---- memory bandwidth: STREAM-like triad a = b + s*c over arrays far beyond L3 ---- */
typedef struct { float *a, *b, *c; size_t n; } triad_arg;
static void *triad_run(void *p)
{
    triad_arg *t = p;
    for (size_t i = 0; i < t->n; i++) t->a[i] = t->b[i] + 3.0f * t->c[i];
    return NULL;
}
static double triad_gbs(int threads)
{
    size_t n = (size_t)32 << 20; /* 32 Mi floats = 128 MB per array */
    float *a = malloc(n * 4), *b = malloc(n * 4), *c = malloc(n * 4);
    if (!a || !b || !c) return 0;
    for (size_t i = 0; i < n; i++) a[i] = 0, b[i] = (float)i, c[i] = 1;
    double best = 1e30;
    for (int rep = 0; rep < 4; rep++) {
        pthread_t th[16];
        triad_arg arg[16];
        double t0 = lr_bench_now();
        for (int k = 0; k < threads; k++) {
            size_t i0 = n * (size_t)k / (size_t)threads, i1 = n * (size_t)(k + 1) / (size_t)threads;
            arg[k] = (triad_arg){ a + i0, b + i0, c + i0, i1 - i0 };
            pthread_create(&th[k], NULL, triad_run, &arg[k]);
        }
        for (int k = 0; k < threads; k++) pthread_join(th[k], NULL);
        double dt = lr_bench_now() - t0;
        if (dt < best) best = dt;
    }
    volatile float sink = a[n / 2];
    (void)sink;
    free(a), free(b), free(c);
    return 3.0 * 4.0 * (double)n / best / 1e9; /* 2 reads + 1 write per element */
}

/* In a child process, so the 384 MB of arrays do not count in this process's peak RSS. */
static double triad_gbs_child(int threads)
{
    int fd[2];
    double r = 0;
    if (pipe(fd)) return 0;
    pid_t pid = fork();
    if (pid == 0) {
        r = triad_gbs(threads);
        ssize_t k = write(fd[1], &r, sizeof r);
        _exit(k == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fd[1]);
    if (pid < 0 || read(fd[0], &r, sizeof r) != (ssize_t)sizeof r) r = 0;
    close(fd[0]);
    if (pid > 0) waitpid(pid, NULL, 0);
    return r;
}

/* FNV-1a over bytes: the demo's checksum of the weights. */
static uint64_t fnv1a(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void synthetic(lr_mnist *m, size_t n, uint64_t seed)
{
    lr_rng r;
    lr_rng_seed(&r, seed);
    m->n = n, m->rows = 28, m->cols = 28;
    m->pixels = malloc(n * 784), m->labels = malloc(n);
    for (size_t i = 0; i < n; i++) {
        m->labels[i] = (uint8_t)lr_rng_below(&r, 10);
        for (size_t j = 0; j < 784; j++)
            m->pixels[i * 784 + j] = (uint8_t)((j % 28 == 3 * m->labels[i] % 28) ? 255 : lr_rng_below(&r, 64));
    }
}

int main(int argc, char **argv)
{
    int threads = 2;
    if (getenv("LR_THREADS")) threads = atoi(getenv("LR_THREADS"));
    if (argc > 1) threads = atoi(argv[1]);
    if (threads < 1) threads = 1;
    lr_blas_set_threads(threads);
    lr_err e;
    lr_status s;

    lr_mnist train = { 0 }, test = { 0 };
    const char *dir = getenv("LR_MNIST_DIR");
    int real = 0;
    if (dir && lr_mnist_load_dir(&train, dir, "train", &e) == LR_OK &&
        lr_mnist_load_dir(&test, dir, "t10k", &e) == LR_OK)
        real = 1;
    else {
        lr_mnist_free(&train);
        synthetic(&train, 60000, 1);
        synthetic(&test, 10000, 2);
    }
    lr_dataset train_set = lr_mnist_dataset(&train), test_set = lr_mnist_dataset(&test);
    printf("bench_train: RichBoyNet 784-1000-2000-10, batch 10, %d thread(s), %s data, kernels %s\n",
           threads, real ? "real MNIST" : "synthetic", lr_cpu_isa_name(lr_cpu_isa()));

    double bw1 = triad_gbs_child(1), bwn = threads > 1 ? triad_gbs_child(threads) : bw1;
    printf("memory bandwidth (triad, 128 MB arrays): %.1f GB/s 1 thread, %.1f GB/s %d threads\n", bw1,
           bwn, threads);

    lr_mlp net;
    lr_mlp_ws ws; /* forward scratch, reused by every timed call */
    lr_mlp_ws_init(&ws);
    DIE(lr_mlp_init(&net, lr_mlp_default_sizes, 4, &e), e);
    DIE(lr_mlp_set_threads(&net, threads, &e), e);
    lr_rng rng;
    lr_rng_seed(&rng, 0);
    lr_mlp_reset_params(&net, &rng);
    size_t P = net.n_params;

    /* per-step split on real batches */
    float x[10 * 784], logits[10 * 10];
    uint8_t y[10];
    size_t idx[10];
    lr_adam_opts adam = lr_adam_opts_default();
    int reps = 300;
    double tf = 0, ts = 0;
    for (int r = 0; r < reps + 20; r++) {
        for (int b = 0; b < 10; b++) idx[b] = ((size_t)r * 10 + (size_t)b) % train.n;
        lr_dataset_batch(&train_set, x, y, idx, 10);
        double t0 = lr_bench_now();
        DIE(lr_mlp_forward(&net, logits, x, 10, &ws, &e), e);
        double t1 = lr_bench_now();
        float loss;
        DIE(lr_mlp_train_step(&net, &loss, x, y, NULL, 10, &adam, &e), e);
        double t2 = lr_bench_now();
        if (r >= 20) tf += t1 - t0, ts += t2 - t1;
    }
    tf /= reps, ts /= reps;
    double tb = ts - tf;
    double fwd_bytes = 4.0 * (double)P, upd_bytes = 6.0 * 4.0 * (double)P;
    printf("full step: %.3f ms = forward %.3f ms + backward+Adam (fused) %.3f ms\n", ts * 1e3, tf * 1e3,
           tb * 1e3);
    printf("  forward reads weights %.1f MB -> %.1f GB/s; backward+Adam reads+writes w,m,v %.1f MB -> %.1f GB/s\n",
           fwd_bytes / 1e6, fwd_bytes / tf / 1e9, upd_bytes / 1e6, upd_bytes / tb / 1e9);
    printf("  step total %.1f MB -> %.1f GB/s = %.0f%% of the %d-thread triad bandwidth\n",
           (fwd_bytes + upd_bytes) / 1e6, (fwd_bytes + upd_bytes) / ts / 1e9,
           100.0 * (fwd_bytes + upd_bytes) / ts / 1e9 / bwn, threads);

    /* full epoch like the seed: fresh init, seed 0; IEEE mode first, the default last (the
     * LoRA figures below start from the default run's weights) */
    lr_train_opts tp = lr_train_opts_default();
    lr_train_result tr;
    uint64_t sum[2];
    for (int k = 0; k < 2; k++) {
        lr_fp_mode mode = k == 0 ? LR_FP_IEEE : LR_FP_FLUSH;
        lr_fp_mode_set(mode);
        lr_rng_seed(&rng, 0);
        lr_mlp_reset_params(&net, &rng);
        double la0 = loadavg(), c0 = cpu_now();
        DIE(lr_train(&net, &tr, &train_set, &tp, &e), e);
        double epoch_cpu = cpu_now() - c0;
        lr_mlp_subnormals sn;
        DIE(lr_mlp_count_subnormals(&net, &sn, &e), e);
        sum[k] = fnv1a(net.params, net.n_params * sizeof(float));
        printf("one epoch, subnormals %s: %zu steps in %.2f s wall (%.3f ms/step), %.2f s CPU, mean loss "
               "%.4f (load average %.2f before, %.2f after)\n", mode == LR_FP_IEEE ? "kept (LR_FP_IEEE)"
               : "flushed (default)", tr.steps, tr.seconds, tr.seconds * 1e3 / (double)tr.steps,
               epoch_cpu, (double)tr.avg_loss, la0, loadavg());
        printf("  step rate: first tenth %.0f steps/s, last tenth %.0f steps/s (ratio %.2f)\n",
               tr.rate_first_tenth, tr.rate_last_tenth, tr.rate_last_tenth / tr.rate_first_tenth);
        printf("  subnormal floats at the end: params %zu, Adam m %zu, Adam v %zu, activations %zu; "
               "weights checksum %016llx\n", sn.params, sn.adam_m, sn.adam_v, sn.activations,
               (unsigned long long)sum[k]);
    }
    printf("  weights %s with subnormals flushed and kept\n", sum[0] == sum[1] ? "bit-identical" : "DIFFER");
    lr_eval_result er;
    double t0 = lr_bench_now();
    DIE(lr_eval(&net, &er, &test_set, 1000, &e), e);
    double tev = lr_bench_now() - t0;
    printf("eval of %zu images: %.3f s, accuracy %.4f\n", er.n, tev, er.accuracy);

    /* LoRA rank 1 on every layer, base frozen, 100 steps on digit 9 */
    lr_lora_weights lw[3];
    for (int l = 0; l < 3; l++) {
        DIE(lr_lora_weights_init(&lw[l], 1, net.layer[l].in, net.layer[l].out, 1.0f, &e), e);
        lr_rng_fill_normal(&rng, lw[l].a, 0, 1);
        DIE(lr_mlp_set_lora(&net, (size_t)l, &lw[l], &e), e);
    }
    lr_mlp_freeze_all(&net, true);
    size_t *nine_rows = malloc(train.n * sizeof *nine_rows);
    lr_dataset nines;
    DIE(nine_rows ? lr_dataset_select_label(&train_set, &nines, nine_rows, 9, &e) : LR_ENOMEM, e);
    tp.max_steps = 100;
    double c0 = cpu_now();
    t0 = lr_bench_now();
    DIE(lr_train(&net, &tr, &nines, &tp, &e), e);
    double tl = lr_bench_now() - t0, tl_cpu = cpu_now() - c0;
    printf("LoRA fine-tune: %zu steps in %.1f ms wall (%.3f ms/step incl. batching), %.1f ms CPU\n",
           tr.steps, tl * 1e3, tl * 1e3 / (double)tr.steps, tl_cpu * 1e3);
    DIE(lr_eval(&net, &er, &test_set, 1000, &e), e);
    printf("  after fine-tune: accuracy %.4f, digit-9 wrong %zu\n", er.accuracy, er.wrong[9]);

    /* LoRA step against full step measured in the same minutes: rounds of 20 full steps on
     * `net` (nothing frozen, no adapters) then 20 LoRA steps on `lnet` (a copy of its weights,
     * frozen, with the rank-1 adapters), on the same batches; the median of the per-round
     * ratios. A shared machine's load drifts over seconds, which skews two figures taken
     * minutes apart. Two nets, so that the frozen layers' transposed copies (made at a frozen
     * net's first step; lib/nn/frozen.c) are made once, as in a fine-tune, and not again in
     * every round; that first step is timed on its own. */
    for (int l = 0; l < 3; l++) DIE(lr_mlp_set_lora(&net, (size_t)l, NULL, &e), e);
    lr_mlp_freeze_all(&net, false);
    lr_mlp lnet;
    DIE(lr_mlp_init(&lnet, lr_mlp_default_sizes, 4, &e), e);
    DIE(lr_mlp_set_threads(&lnet, threads, &e), e);
    memcpy(lnet.params, net.params, P * sizeof(float));
    for (int l = 0; l < 3; l++) DIE(lr_mlp_set_lora(&lnet, (size_t)l, &lw[l], &e), e);
    lr_mlp_freeze_all(&lnet, true);
    lr_mlp_reset_optimizer(&lnet); /* as lr_train does: the frozen layers then lend their moments */
    float loss;
    lr_dataset_range(&train_set, x, y, 0, 10);
    double tfirst = lr_bench_now();
    DIE(lr_mlp_train_step(&lnet, &loss, x, y, NULL, 10, &adam, &e), e);
    tfirst = lr_bench_now() - tfirst;
    size_t copy_floats = 0;
    for (size_t l = 0; l < lnet.n_layers; l++) copy_floats += lnet.layer[l].in * ((lnet.layer[l].out + 15) / 16 * 16);
    enum { ROUNDS = 15, PER = 20 };
    double ratio[ROUNDS], tfull[ROUNDS], tlora[ROUNDS];
    for (int rd = 0; rd < ROUNDS; rd++) {
        for (int mode = 0; mode < 2; mode++) {
            double t = 0;
            for (int k = 0; k < PER; k++) {
                for (int b = 0; b < 10; b++) idx[b] = ((size_t)(rd * PER + k) * 10 + (size_t)b) % train.n;
                lr_dataset_batch(&train_set, x, y, idx, 10);
                double t1 = lr_bench_now();
                DIE(lr_mlp_train_step(mode ? &lnet : &net, &loss, x, y, NULL, 10, &adam, &e), e);
                t += lr_bench_now() - t1;
            }
            (mode ? tlora : tfull)[rd] = t / PER;
        }
        ratio[rd] = tlora[rd] / tfull[rd];
    }
    qsort(ratio, ROUNDS, sizeof *ratio, cmp_double);
    qsort(tfull, ROUNDS, sizeof *tfull, cmp_double);
    qsort(tlora, ROUNDS, sizeof *tlora, cmp_double);
    printf("LoRA step vs full step, interleaved (%d rounds of %d + %d steps): full %.3f ms, LoRA %.3f ms "
           "(medians); ratio median %.3f (range %.3f-%.3f)\n", ROUNDS, PER, PER, tfull[ROUNDS / 2] * 1e3,
           tlora[ROUNDS / 2] * 1e3, ratio[ROUNDS / 2], ratio[0], ratio[ROUNDS - 1]);
    printf("  the frozen net's first LoRA step, which makes its layers' transposed copies (%.1f MB, in the "
           "moments they do not use): %.2f ms\n",
           4.0 * (double)copy_floats / 1e6, tfirst * 1e3);
    lr_mlp_free(&lnet);
    for (int l = 0; l < 3; l++) lr_lora_weights_free(&lw[l]);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak RSS: %.1f MB\n", (double)ru.ru_maxrss / 1024.0);
    (void)s;
    free(nine_rows);
    lr_mlp_ws_free(&ws);
    lr_mlp_free(&net);
    lr_mnist_free(&train);
    lr_mnist_free(&test);
    return 0;
}
