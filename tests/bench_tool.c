/* bench_tool.c — the `lowrank` tool's speed and memory goals (issue 10), printed, never
 * asserted:
 *   1. combine 4 adapters of rank 16 on a 4096x4096 layer into rank 32: the factored route
 *      (factor_sum.h) against the dense one (form ΔW, LAPACK SVD, truncate), each in a child
 *      process so that its peak resident memory (VmHWM after clear_refs) is its own;
 *   2. `lowrank compress CKPT --budget 0.25` on an MNIST-shaped checkpoint (784-1000-2000-10;
 *      LR_BENCH_CKPT=FILE uses a real one, e.g. from lr-mnist --save);
 *   3. `lowrank inspect` of a 4096x4096 F16 tensor (auto method), and the exact method for
 *      comparison.
 * usage: bench_tool [PATH/TO/lowrank] [--size N] (N: the combine layer's size, default 4096)
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "lowrank/lowrank.h"
#include "bench.h"

#define PROG "bench_tool"
#define NAD 4
#define RIN 16
#define ROUT 32

static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key))) v = atol(line + strlen(key));
    if (f) fclose(f);
    return v;
}

static void reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) fputs("5", f), fclose(f); /* 5: reset the peak RSS to the current RSS */
}

typedef struct { double secs; long peak_kb; float s[ROUT]; } route_result;

/* the NAD adapters' factors, seeded */
static void make_factors(lr_mat *b, lr_mat *a, size_t n, lr_err *e)
{
    lr_rng rng;
    lr_rng_seed(&rng, 42);
    for (int i = 0; i < NAD; i++) {
        LR_BENCH_CHECK(PROG, lr_mat_init(&b[i], n, RIN, e), *e);
        LR_BENCH_CHECK(PROG, lr_mat_init(&a[i], RIN, n, e), *e);
        lr_rng_fill_normal(&rng, b[i], 0, 1.0f / sqrtf((float)n));
        lr_rng_fill_normal(&rng, a[i], 0, 1.0f / sqrtf((float)n));
    }
}

static void route(bool dense, size_t n, route_result *res)
{
    lr_err e = { 0 };
    lr_mat b[NAD], a[NAD], bo, ao;
    lr_cmat bs[NAD], as[NAD];
    const float w[NAD] = { 1.0f, 0.5f, -0.7f, 2.0f };
    make_factors(b, a, n, &e);
    for (int i = 0; i < NAD; i++) bs[i] = lr_cm(b[i]), as[i] = lr_cm(a[i]);
    /* warm up: OpenBLAS starts its threads and LAPACK its workspace queries on first use */
    lr_usv warm;
    LR_BENCH_CHECK(PROG, lr_usv_from_factors(&warm, bs, as, w, NAD, &e), e);
    lr_usv_free(&warm);
    reset_peak();
    long base = status_kb("VmRSS:");
    double t0 = lr_bench_now();
    lr_usv f;
    if (dense) {
        lr_mat d;
        LR_BENCH_CHECK(PROG, lr_mat_init(&d, n, n, &e), e);
        for (int i = 0; i < NAD; i++) LR_BENCH_CHECK(PROG, lr_gemm(d, w[i], bs[i], false, as[i], false, 1.0f, &e), e);
        LR_BENCH_CHECK(PROG, lr_usv_from_svd(&f, lr_cm(d), &e), e);
        lr_mat_free(&d);
    } else {
        LR_BENCH_CHECK(PROG, lr_usv_from_factors(&f, bs, as, w, NAD, &e), e);
    }
    LR_BENCH_CHECK(PROG, lr_mat_init(&bo, n, ROUT, &e), e);
    LR_BENCH_CHECK(PROG, lr_mat_init(&ao, ROUT, n, &e), e);
    LR_BENCH_CHECK(PROG, lr_factor_from_usv(bo, ao, &f, ROUT, LR_SPLIT_US, &e), e);
    res->secs = lr_bench_now() - t0;
    res->peak_kb = status_kb("VmHWM:") - base;
    memcpy(res->s, f.s, sizeof res->s);
}

/* runs one route in a child and reads its result through a pipe */
static route_result in_child(bool dense, size_t n)
{
    int fd[2];
    route_result r = { 0 };
    if (pipe(fd)) exit(1);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        route(dense, n, &r);
        _exit(write(fd[1], &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fd[1]);
    int st;
    if (read(fd[0], &r, sizeof r) != (ssize_t)sizeof r || waitpid(pid, &st, 0) < 0 || st) {
        fprintf(stderr, PROG ": the %s route failed\n", dense ? "dense" : "factored");
        exit(1);
    }
    close(fd[0]);
    return r;
}

static void bench_combine(size_t n)
{
    printf("== combine %d adapters of rank %d on a %zux%zu layer into rank %d ==\n", NAD, RIN, n, n, ROUT);
    route_result f = in_child(false, n), d = in_child(true, n);
    double dmax = 0;
    for (int i = 0; i < ROUT; i++) dmax = fmax(dmax, fabs((double)f.s[i] - d.s[i]) / d.s[0]);
    printf("factored (QR of the stacked factors, %dx%d core SVD): %8.4f s, peak %8ld KiB\n", NAD * RIN, NAD * RIN,
           f.secs, f.peak_kb);
    printf("dense (form dW, LAPACK sgesdd, truncate):          %8.4f s, peak %8ld KiB\n", d.secs, d.peak_kb);
    printf("speedup %.0fx, peak memory %.0fx smaller; top-%d singular values agree to %.2g of s_1\n",
           d.secs / f.secs, (double)d.peak_kb / (double)(f.peak_kb > 0 ? f.peak_kb : 1), ROUT, dmax);
}

/* wall time of a shell command (best of reps); its stdout goes to out (or /dev/null) */
static double time_cmd(const char *cmd, const char *out, int reps)
{
    char full[4096];
    snprintf(full, sizeof full, "%s > %s", cmd, out ? out : "/dev/null");
    double best = INFINITY;
    for (int i = 0; i < reps; i++) {
        double t0 = lr_bench_now();
        if (system(full) != 0) {
            fprintf(stderr, PROG ": failed: %s\n", full);
            exit(1);
        }
        best = fmin(best, lr_bench_now() - t0);
    }
    return best;
}

static void write_random_ckpt(const char *path)
{
    static const size_t sz[4] = { 784, 1000, 2000, 10 };
    lr_st_tensor t[6];
    char names[6][32];
    float *buf[6];
    lr_rng rng;
    lr_rng_seed(&rng, 7);
    lr_err e = { 0 };
    for (int l = 0; l < 3; l++)
        for (int k = 0; k < 2; k++) {
            int i = 2 * l + k;
            size_t m = sz[l + 1], n = k ? 1 : sz[l];
            buf[i] = malloc(m * n * sizeof(float));
            if (!buf[i]) exit(1);
            lr_rng_fill_normal(&rng, lr_mat_view(buf[i], m, n, n), 0, 1.0f / sqrtf((float)sz[l]));
            snprintf(names[i], sizeof names[i], "linear%d.%s", l + 1, k ? "bias" : "weight");
            t[i] = (lr_st_tensor){ .name = names[i], .dtype = LR_ST_F32, .ndim = k ? 1 : 2,
                                   .shape = { m, n }, .data = buf[i] };
        }
    LR_BENCH_CHECK(PROG, lr_safetensors_write(path, t, 6, NULL, 0, &e), e);
    for (int i = 0; i < 6; i++) free(buf[i]);
}

static void bench_compress(const char *tool, const char *dir)
{
    char ckpt[512], cmd[2048], out[600];
    const char *real = getenv("LR_BENCH_CKPT");
    if (real) snprintf(ckpt, sizeof ckpt, "%s", real);
    else snprintf(ckpt, sizeof ckpt, "%s/mnist_shaped.safetensors", dir), write_random_ckpt(ckpt);
    snprintf(out, sizeof out, "%s/compressed.safetensors", dir);
    snprintf(cmd, sizeof cmd, "%s compress %s --budget 0.25 --out %s --json 2>/dev/null", tool, ckpt, out);
    printf("\n== compress a 784-1000-2000-10 checkpoint (%s) at --budget 0.25 ==\n",
           real ? real : "random weights; LR_BENCH_CKPT=FILE for a real one");
    printf("lowrank compress: %.3f s (best of 3, whole process)\n", time_cmd(cmd, NULL, 3));
}

static void write_f16_matrix(const char *path, size_t n)
{
    lr_err e = { 0 };
    lr_mat g, h, w;
    const size_t k = 256;
    lr_rng rng;
    lr_rng_seed(&rng, 11);
    LR_BENCH_CHECK(PROG, lr_mat_init(&g, n, k, &e), e);
    LR_BENCH_CHECK(PROG, lr_mat_init(&h, k, n, &e), e);
    LR_BENCH_CHECK(PROG, lr_mat_init(&w, n, n, &e), e);
    lr_rng_fill_normal(&rng, g, 0, 1);
    lr_rng_fill_normal(&rng, h, 0, 1);
    for (size_t j = 0; j < k; j++) /* a decaying spectrum, then noise: like a trained weight */
        for (size_t i = 0; i < n; i++) g.data[i * k + j] *= expf(-(float)j / 40.0f) / (float)n;
    lr_rng_fill_normal(&rng, w, 0, 1e-4f);
    LR_BENCH_CHECK(PROG, lr_gemm(w, 1.0f, lr_cm(g), false, lr_cm(h), false, 1.0f, &e), e);
    unsigned char *f16 = malloc(n * n * 2);
    if (!f16) exit(1);
    LR_BENCH_CHECK(PROG, lr_st_encode_f32(f16, LR_ST_F16, w.data, n * n, &e), e);
    lr_st_tensor t = { .name = "layer.weight", .dtype = LR_ST_F16, .ndim = 2, .shape = { n, n }, .data = f16 };
    LR_BENCH_CHECK(PROG, lr_safetensors_write(path, &t, 1, NULL, 0, &e), e);
    free(f16);
    lr_mat_free(&g), lr_mat_free(&h), lr_mat_free(&w);
}

static void print_inspect(const char *label, double secs, const char *json_path)
{
    json_error_t je;
    json_t *o = json_load_file(json_path, 0, &je), *t = json_array_get(json_object_get(o, "tensors"), 0);
    json_t *er = json_object_get(t, "energy_ranks");
    printf("%-28s %7.3f s  svd %-10s sigma1 %.6g  r90 %s  r99 %s  r99.9 %s  unexplained %.3g\n", label, secs,
           json_string_value(json_object_get(t, "svd")), json_number_value(json_object_get(t, "sigma1")),
           json_is_integer(json_object_get(er, "0.9")) ? json_dumps(json_object_get(er, "0.9"), JSON_ENCODE_ANY) : "?",
           json_is_integer(json_object_get(er, "0.99")) ? json_dumps(json_object_get(er, "0.99"), JSON_ENCODE_ANY) : ">",
           json_is_integer(json_object_get(er, "0.999")) ? json_dumps(json_object_get(er, "0.999"), JSON_ENCODE_ANY) : ">",
           json_number_value(json_object_get(t, "unexplained_energy")) /
               fmax(json_number_value(json_object_get(t, "energy")), 1e-300));
    json_decref(o);
}

static void bench_inspect(const char *tool, const char *dir)
{
    char f[512], cmd[2048], js[600];
    snprintf(f, sizeof f, "%s/f16_4096.safetensors", dir);
    snprintf(js, sizeof js, "%s/inspect.json", dir);
    write_f16_matrix(f, 4096);
    printf("\n== inspect a 4096x4096 F16 tensor (rank-256 decaying signal + noise) ==\n");
    snprintf(cmd, sizeof cmd, "%s inspect %s --json", tool, f);
    print_inspect("lowrank inspect (auto)", time_cmd(cmd, js, 3), js);
    snprintf(cmd, sizeof cmd, "%s inspect %s --json --method exact", tool, f);
    print_inspect("lowrank inspect --method exact", time_cmd(cmd, js, 1), js);
}

int main(int argc, char **argv)
{
    const char *tool = NULL;
    size_t n = 4096;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--size") && i + 1 < argc) n = (size_t)atol(argv[++i]);
        else tool = argv[i];
    char dir[] = "/tmp/bench_tool.XXXXXX";
    if (!mkdtemp(dir)) return 1;
    bench_combine(n);
    if (tool) {
        bench_compress(tool, dir);
        bench_inspect(tool, dir);
    } else {
        printf("\n(no path to the lowrank program given: compress and inspect skipped)\n");
    }
    char rm[600];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    return system(rm) != 0;
}
