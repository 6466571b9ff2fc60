/* bench_lora.c — figures for the LoRA module on RichBoyNet (784-1000-2000-10): the drift of
 * a merge→unmerge round trip, PiSSA initialisation (time, output against the base),
 * extraction of a rank-r adapter from a perturbed "fine-tune" (time, errors), and adapter
 * save/load. Random weights from fixed seeds; never fails on time.
 * Usage: bench_lora [THREADS] (OpenBLAS threads, default 1).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "lowrank/lora/adapter.h"
#include "lowrank/linalg/blas.h"
#include "lowrank/lora/lora.h"
#include "bench.h"

#define DIE(s, e) LR_BENCH_CHECK("bench_lora", s, e)

static double max_abs(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        m = d > m ? d : m;
    }
    return m;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    lr_blas_set_threads(threads > 0 ? threads : 1);
    lr_err e;
    lr_mlp net, ft;
    lr_mlp_ws ws; /* forward scratch, reused by every timed call */
    lr_mlp_ws_init(&ws);
    lr_rng rng;
    lr_rng_seed(&rng, 1);
    DIE(lr_mlp_init(&net, lr_mlp_default_sizes, 4, &e), e);
    lr_mlp_reset_params(&net, &rng);
    lr_lora lm_store, *lm = &lm_store;
    DIE(lr_lora_init(lm, &net, &e), e);
    enum { B = 100 };
    float *x = malloc(B * 784 * sizeof(float)), y0[B * 10], y1[B * 10];
    for (size_t i = 0; i < B * 784; i++) x[i] = lr_rng_normal(&rng);
    DIE(lr_mlp_forward(&net, y0, x, B, &ws, &e), e);
    printf("RichBoyNet, OpenBLAS threads %d, %d random inputs\n", lr_blas_get_threads(), B);

    /* merge -> unmerge drift at two ranks, B ~ N(0, 0.01²) (a trained B is small) */
    size_t ranks[2] = { 1, 8 };
    for (int k = 0; k < 2; k++) {
        lr_lora_opts c = lr_lora_opts_default();
        c.rank = ranks[k];
        c.seed = 42;
        char name[16];
        snprintf(name, sizeof name, "r%zu", ranks[k]);
        DIE(lr_lora_insert(lm, name, &c, &e), e);
        for (size_t i = 0; i < 3; i++) lr_rng_fill_normal(&rng, lr_lora_layer(lm, name, i)->b, 0, 0.01f);
        DIE(lr_lora_select(lm, name, &e), e);
        double t0 = lr_bench_now();
        DIE(lr_lora_merge(lm, LR_LORA_MERGE_KEEP_COPY, &e), e);
        double t1 = lr_bench_now();
        lr_lora_drift d;
        DIE(lr_lora_unmerge(lm, &d, false, &e), e);
        double t2 = lr_bench_now();
        printf("merge/unmerge rank %zu: %.1f / %.1f ms; drift max |W - W0| per layer %.3g %.3g %.3g "
               "(all %.3g)\n", ranks[k], 1e3 * (t1 - t0), 1e3 * (t2 - t1), d.max_abs[0], d.max_abs[1],
               d.max_abs[2], d.max_abs_all);
        DIE(lr_lora_merge(lm, LR_LORA_MERGE_KEEP_COPY, &e), e);
        DIE(lr_lora_unmerge(lm, &d, true, &e), e);
        DIE(lr_lora_select(lm, NULL, &e), e);
        DIE(lr_lora_remove(lm, name, &e), e);
    }

    /* PiSSA */
    for (int k = 0; k < 2; k++) {
        lr_lora_opts c = lr_lora_opts_default();
        c.init = LR_LORA_INIT_PISSA;
        c.rank = ranks[k];
        c.alpha = 2.0f * (float)ranks[k];
        double t0 = lr_bench_now();
        DIE(lr_lora_insert(lm, "p", &c, &e), e);
        double t1 = lr_bench_now();
        DIE(lr_lora_select(lm, "p", &e), e);
        DIE(lr_mlp_forward(&net, y1, x, B, &ws, &e), e);
        printf("PiSSA rank %zu (alpha %g): init %.2f s (3 SVDs); output vs base max |diff| %.3g "
               "(max |y| %.3g)\n", ranks[k], (double)c.alpha, t1 - t0, max_abs(y0, y1, B * 10),
               max_abs(y0, (float[B * 10]){ 0 }, B * 10));
        DIE(lr_lora_remove(lm, "p", &e), e);
    }

    /* extraction from a perturbed copy: ΔW = planted rank-4 part + small noise */
    DIE(lr_mlp_init(&ft, lr_mlp_default_sizes, 4, &e), e);
    memcpy(ft.params, net.params, net.n_params * sizeof(float));
    for (size_t l = 0; l < 3; l++) {
        lr_layer *ly = &ft.layer[l];
        lr_mat p, q;
        DIE(lr_mat_init(&p, ly->out, 4, &e), e);
        DIE(lr_mat_init(&q, 4, ly->in, &e), e);
        lr_rng_fill_normal(&rng, p, 0, 0.01f);
        lr_rng_fill_normal(&rng, q, 0, 0.1f);
        DIE(lr_gemm(ly->w, 1.0f, lr_cm(p), false, lr_cm(q), false, 1.0f, &e), e);
        for (size_t i = 0; i < ly->out * ly->in; i++) ly->w.data[i] += 1e-4f * lr_rng_normal(&rng);
        lr_mat_free(&p);
        lr_mat_free(&q);
    }
    size_t xr[3] = { 1, 4, 8 };
    for (int k = 0; k < 3; k++) {
        lr_lora_opts c = lr_lora_opts_default();
        c.rank = xr[k];
        lr_lora_extract_report rep;
        char name[16];
        snprintf(name, sizeof name, "x%zu", xr[k]);
        double t0 = lr_bench_now();
        DIE(lr_lora_extract(lm, &rep, name, &ft, &c, &e), e);
        printf("extract rank %zu: %.2f s\n", xr[k], lr_bench_now() - t0);
        for (size_t l = 0; l < 3; l++)
            printf("  linear%zu  |dW|_F %.4f  error measured %.4f  Eckart-Young %.4f  sigma_r+1 %.4g  "
                   "params dense %zu lora %zu saved %lld\n", l + 1, rep.row[l].delta_fro,
                   rep.row[l].err_fro, rep.row[l].err_eckart_young, rep.row[l].err_spectral,
                   rep.row[l].params_dense, rep.row[l].params_lora, rep.row[l].params_saved);
    }

    /* adapter files */
    char dir[] = "/tmp/bench_lora_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char sub[64];
    snprintf(sub, sizeof sub, "%s/x8", dir);
    double t0 = lr_bench_now();
    DIE(lr_adapter_save(lm, sub, "x8", "RichBoyNet", &e), e);
    double t1 = lr_bench_now();
    DIE(lr_adapter_load(lm, sub, "x8-again", NULL, &e), e);
    double t2 = lr_bench_now();
    char f1[96], f2[96];
    snprintf(f1, sizeof f1, "%s/%s", sub, LR_ADAPTER_WEIGHTS);
    snprintf(f2, sizeof f2, "%s/%s", sub, LR_ADAPTER_CONFIG);
    struct stat s1, s2;
    stat(f1, &s1);
    stat(f2, &s2);
    printf("adapter rank 8: save %.1f ms (with fsyncs), load %.1f ms; %lld + %lld bytes\n",
           1e3 * (t1 - t0), 1e3 * (t2 - t1), (long long)s1.st_size, (long long)s2.st_size);
    unlink(f1);
    unlink(f2);
    rmdir(sub);
    rmdir(dir);
    lr_lora_free(lm);
    lr_mlp_free(&ft);
    lr_mlp_ws_free(&ws);
    lr_mlp_free(&net);
    free(x);
    return 0;
}
