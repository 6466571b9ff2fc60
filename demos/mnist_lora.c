/* mnist_lora.c — lr-mnist, the main demo: the seed's LoRA story on MNIST, told as a report.
 *
 * With no arguments it runs the whole pipeline of the seed (a PyTorch notebook that
 * pretrains "RichBoyNet" 784-1000-2000-10 for one epoch, then fine-tunes a rank-1 LoRA on
 * one digit it is bad at) and prints each step:
 *   1. load MNIST, pretrain one epoch (or --load CKPT), accuracy and per-digit wrong counts;
 *   2. the parameter table with LoRA on the chosen layers;
 *   3. freeze the base and fine-tune the adapters on one digit (100 batches of 10);
 *   4. per-digit errors with LoRA enabled and disabled; disabled must equal step 1 exactly,
 *      and the frozen weights must be bit-identical (checked, printed; a mismatch exits 1);
 *   5. a forgetting report: the per-digit change, the target's gain and the others' cost;
 *   6. optional outputs: --save CKPT, --adapter-out DIR, --plot FILE.svg.
 * With --load CKPT --adapter DIR it trains nothing: it loads a saved PEFT adapter onto the
 * checkpoint and prints the per-digit errors with the adapter off and on (eval_adapter).
 * Everything is seeded (--seed, printed). --json prints one JSON object with every result
 * on stdout; progress always goes to stderr. It is a client of the public API only.
 *
 * Exit status: 0 success, 1 a run-time failure or a failed check, 2 a usage error.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "lowrank/lora/adapter.h"
#include "lowrank/linalg/blas.h"
#include "lowrank/base/cpu.h"
#include "lowrank/nn/checkpoint.h"
#include "lowrank/nn/eval.h"
#include "lowrank/io/idx.h"
#include "lowrank/lora/lora.h"
#include "lowrank/nn/mlp.h"
#include "lowrank/base/rng.h"
#include "lowrank/nn/train.h"

#include "cli.h"
#include "mnist_dist.h"
#include "mnist_opts.h"
#include "plot.h"
#include "preserve_demo.h"

#define PROG MNIST_PROG
#define N_DIGITS 10

/* ------------------------------------------------------------------------ options */

/* The options (mnist_opts.h) come from mnist_opts.c, which the fuzz target shares. */
typedef mnist_opts options;

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(run '" PROG " --help' for the options)\n");
    va_end(ap);
    return 2;
}

/* Parses and checks the command line (mnist_opts_parse, with the filesystem checks); --help
 * prints the help and returns MNIST_OPTS_HELP; a usage error is printed and returns 2. */
static int parse_options(int argc, char **argv, options *o)
{
    size_t cap = 1024; /* room for every argument a message quotes, whole */
    for (int i = 1; i < argc; i++) cap += 2 * strlen(argv[i]);
    char *msg = malloc(cap);
    if (!msg) return usage_error("out of memory");
    int rc = mnist_opts_parse(argc, argv, o, true, msg, cap);
    if (rc == MNIST_OPTS_HELP) {
        free(msg);
        mnist_opts_usage(stdout);
        return rc;
    }
    if (rc) usage_error("%s", msg);
    free(msg);
    return rc;
}

/* The --lora-layers selection and the rank, for the net as loaded; 2 after a usage error. */
static int select_and_check_rank(const options *o, const lr_mlp *net, bool *sel)
{
    char msg[1024]; /* room for a whole lr_err message and the option's name */
    if (mnist_opts_select_layers(o->lora_layers, net->n_layers, sel, msg, sizeof msg) &&
        mnist_opts_check_rank(net->sizes, net->n_layers, sel, o->rank, msg, sizeof msg))
        return 0;
    return usage_error("%s", msg);
}

/* ------------------------------------------------------------------------ time, progress */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const char *label;
    bool tty, quiet;
    double t0, last_draw;
    size_t drawn;           /* a bar is on the screen */
} progress;

static void fmt_duration(char *buf, size_t n, double s)
{
    if (!isfinite(s) || s < 0) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.1fs", s);
    else snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

/* On a terminal: one line redrawn in place (at most 10 times a second). Otherwise: one plain
 * line per callback, and lr_train calls back every progress_every steps. */
static void on_progress(void *ctx, size_t step, size_t total, float avg_loss)
{
    progress *p = ctx;
    if (p->quiet) return;
    double t = now_s(), el = t - p->t0;
    bool last = step >= total;
    if (p->tty && !last && t - p->last_draw < 0.1) return;
    p->last_draw = t;
    double rate = el > 0 ? (double)step / el : 0.0;
    char left[32], spent[32];
    fmt_duration(left, sizeof left, rate > 0 ? (double)(total - step) / rate : -1);
    fmt_duration(spent, sizeof spent, el);
    if (p->tty) {
        enum { W = 24 };
        char bar[W + 1];
        size_t fill = total ? step * W / total : W;
        for (size_t i = 0; i < W; i++) bar[i] = i < fill ? '#' : '-';
        bar[W] = '\0';
        fprintf(stderr, "\r\033[K%s [%s] %zu/%zu  loss %.4f  %.0f steps/s  %s %s", p->label,
                bar, step, total, avg_loss, rate, last ? "took" : "left", last ? spent : left);
        if (last) fputc('\n', stderr);
        p->drawn = !last;
    } else {
        fprintf(stderr, "%s: step %zu/%zu  loss %.4f  %.0f steps/s  %s %s\n", p->label, step,
                total, avg_loss, rate, last ? "took" : "left", last ? spent : left);
    }
    fflush(stderr);
}

static void progress_start(progress *p, const char *label, const options *o, size_t total,
                           lr_train_opts *tp)
{
    p->label = label;
    p->tty = isatty(fileno(stderr));
    p->quiet = o->quiet;
    p->t0 = now_s();
    p->last_draw = 0;
    p->drawn = 0;
    tp->progress = on_progress;
    tp->progress_ctx = p;
    /* a terminal bar redraws itself (throttled); a log gets about ten lines */
    tp->progress_every = p->tty ? 1 : (total >= 10 ? total / 10 : 1);
}

/* ------------------------------------------------------------------------ evaluation */

/* Forward the whole test set in batches of 1000, keeping the logits: (n, classes), so a
 * second run can be compared bit for bit, and tally the seed's per-digit table. */
static lr_status eval_keep_logits(const lr_mlp *net, const lr_dataset *test, float *logits,
                                  lr_eval_result *res, lr_err *err)
{
    size_t in = net->sizes[0], classes = net->sizes[net->n_layers];
    size_t chunk = 1000;
    float *x = malloc(chunk * in * sizeof *x);
    if (!x) { snprintf(err->msg, sizeof err->msg, "out of memory"); return LR_ENOMEM; }
    uint8_t y[1000];
    lr_eval_reset(res);
    lr_status st = LR_OK;
    lr_mlp_ws ws;
    lr_mlp_ws_init(&ws);
    for (size_t first = 0; first < test->n && !st; first += chunk) {
        size_t b = test->n - first < chunk ? test->n - first : chunk;
        lr_dataset_range(test, x, y, first, b);
        st = lr_mlp_forward(net, logits + first * classes, x, b, &ws, err);
        if (!st) st = lr_eval_add(res, logits + first * classes, y, b, classes, err);
    }
    lr_mlp_ws_free(&ws);
    free(x);
    return st;
}

/* FNV-1a 64 over the bytes of the base parameters: a short fingerprint to print. The
 * proof of "unchanged" is a full memcmp against a copy. */
static uint64_t fnv1a64(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* ------------------------------------------------------------------------ report pieces */

static void print_wrong_table(const char *title, const lr_eval_result *r, const size_t *count)
{
    printf("%s: accuracy %.4f (%zu/%zu correct)\n", title, r->accuracy, r->correct, r->n);
    printf("  digit  wrong  of test  error\n");
    for (int d = 0; d < N_DIGITS; d++)
        printf("  %5d  %5zu  %7zu  %5.2f%%\n", d, r->wrong[d], count[d],
               count[d] ? 100.0 * (double)r->wrong[d] / (double)count[d] : 0.0);
}

static void group_thousands(char *buf, size_t n, uint64_t v)
{
    char tmp[32];
    int len = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    size_t o = 0;
    for (int i = 0; i < len && o + 1 < n; i++) {
        if (i > 0 && (len - i) % 3 == 0 && o + 2 < n) buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = '\0';
}

static json_t *json_wrong(const size_t *wrong)
{
    json_t *a = json_array();
    for (int d = 0; d < N_DIGITS; d++) json_array_append_new(a, json_integer((json_int_t)wrong[d]));
    return a;
}

static json_t *json_eval(const lr_eval_result *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "accuracy", json_real(r->accuracy));
    json_object_set_new(o, "correct", json_integer((json_int_t)r->correct));
    json_object_set_new(o, "n", json_integer((json_int_t)r->n));
    json_object_set_new(o, "wrong", json_wrong(r->wrong));
    return o;
}

static void fail_msg(const char *what, const lr_err *e)
{
    fprintf(stderr, PROG ": %s: %s\n", what, e->msg[0] ? e->msg : "failed");
}

/* ------------------------------------------------------------------------ the pipeline */

typedef struct {
    options o;
    lr_mnist train, test;
    lr_dataset train_set, test_set;  /* views of train and test for the library */
    size_t *digit_rows;              /* the fine-tuning digit's rows of train */
    lr_mlp net;
    lr_lora lm_store, *lm;             /* the adapters over net (lm = &lm_store once made) */
    char adapter[32];                  /* the fine-tuned adapter's name, "digit9" */
    uint32_t targets;                  /* bit i: layer i carries an adapter */
    bool sel[LR_MLP_MAX_LAYERS];
    size_t count[N_DIGITS];            /* test examples per digit */
    float *logits_before, *logits_off; /* (n_test, classes) */
    float *params_pre;                 /* the pretrained parameters */
    float *params_copy;                /* the base at the start of fine-tuning (PiSSA: residual) */
    float *pre_curve, *ft_curve;       /* per-step losses */
    size_t pre_steps, ft_steps;
    json_t *js;                        /* --json: the result object */
    /* results of the steps, in pipeline order */
    double t_start, t_load, t_pretrain, t_ft, t_eval[3]; /* seconds */
    lr_eval_result before, on, off;    /* pretrained; LoRA on; LoRA off (PiSSA: residual) */
    int digit;                         /* the fine-tuning digit (--digit, or the worst) */
    uint64_t sum_before, sum_after;    /* FNV-1a of the base around fine-tuning */
    bool frozen_same;                  /* the base did not change while fine-tuning */
    bool off_same, off_checked;        /* LoRA off (or removed) gives the pretrained results */
    preserve_state ps;                 /* --preserve: the method's state during fine-tuning */
    demo_dist dist;                    /* the processes of an mpirun (one otherwise) */
    demo_dist_report pre_rep, ft_rep;  /* what data-parallel pretraining / fine-tuning cost */
    unsigned method;                   /* PRESERVE_* bits of the run being trained */
} run;

static void run_free(run *r)
{
    preserve_free(&r->ps);
    lr_lora_free(r->lm);
    lr_mlp_free(&r->net);
    free(r->digit_rows);
    lr_mnist_free(&r->train);
    lr_mnist_free(&r->test);
    free(r->logits_before);
    free(r->logits_off);
    free(r->params_pre);
    free(r->params_copy);
    free(r->pre_curve);
    free(r->ft_curve);
    json_decref(r->js);
}

/* text output goes to stdout unless --json, where stdout carries only the JSON object */
static bool text(const run *r) { return !r->o.json; }

/* Resolves and loads the data directory; a missing default says how to get it. */
static int load_data(run *r)
{
    lr_err e = { { 0 } };
    const char *dir = r->o.data_dir ? r->o.data_dir : "data/mnist";
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        if (!r->o.data_dir)
            fprintf(stderr, PROG ": MNIST not found: no directory data/mnist under the current "
                    "directory.\n  Run scripts/setup.sh from the lowrank source tree (it downloads "
                    "MNIST into data/mnist/),\n  or pass --data DIR pointing at the four IDX files.\n");
        else
            fprintf(stderr, PROG ": --data: '%s' is not a directory\n", dir);
        return 1;
    }
    if (lr_mnist_load_dir(&r->train, dir, "train", &e) ||
        lr_mnist_load_dir(&r->test, dir, "t10k", &e)) {
        fail_msg("loading MNIST", &e);
        if (!r->o.data_dir) fprintf(stderr, "  (scripts/setup.sh fetches and checks the files)\n");
        return 1;
    }
    if (r->o.limit_train && r->o.limit_train < r->train.n) r->train.n = r->o.limit_train;
    if (r->o.limit_test && r->o.limit_test < r->test.n) r->test.n = r->o.limit_test;
    r->train_set = lr_mnist_dataset(&r->train);
    r->test_set = lr_mnist_dataset(&r->test);
    for (size_t i = 0; i < r->test.n; i++) r->count[r->test.labels[i]]++;
    if (text(r))
        printf("data: %s (%zu training, %zu test images)\n", dir, r->train.n, r->test.n);
    return 0;
}

static void print_sizes(char *buf, size_t n, const lr_mlp *net)
{
    size_t o = 0;
    for (size_t i = 0; i <= net->n_layers && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%zu", i ? "-" : "", net->sizes[i]);
}

/* Step 1: a trained model, from pretraining or from --load. */
/* Under mpirun: what the gradient sums of a training cost, as text and into the JSON
 * object p ("data_parallel"). */
static void dist_report(const run *r, json_t *p, const demo_dist_report *d, size_t steps)
{
    if (r->dist.size < 2) return;
    double per_step = steps ? (double)d->bytes / (double)steps : 0, compute = d->total_s - d->comm_s;
    if (text(r))
        printf("data-parallel over %d processes: %zu floats summed a step (%.1f KB handed to MPI), "
               "%.2f s computing, %.2f s communicating; replicas identical (checksum %016" PRIx64 ")\n",
               r->dist.size, d->floats_per_step, per_step / 1e3, compute, d->comm_s, d->checksum);
    json_t *j = json_object();
    json_object_set_new(j, "processes", json_integer(r->dist.size));
    json_object_set_new(j, "sum", json_string(r->dist.mpi_sum ? "MPI_Allreduce" : "rank-ordered"));
    json_object_set_new(j, "floats_per_step", json_integer((json_int_t)d->floats_per_step));
    json_object_set_new(j, "bytes_per_step", json_real(per_step));
    json_object_set_new(j, "compute_seconds", json_real(compute));
    json_object_set_new(j, "comm_seconds", json_real(d->comm_s));
    char sum[17];
    snprintf(sum, sizeof sum, "%016" PRIx64, d->checksum);
    json_object_set_new(j, "replica_checksum", json_string(sum));
    json_object_set_new(j, "replicas_identical", json_true());
    json_object_set_new(p, "data_parallel", j);
}

/* Frees the loss curve lr_train recorded (copied out by the caller); the counts stay. */
static void free_curve(lr_train_result *res)
{
    lr_train_result curve = { .loss_curve = res->loss_curve };
    res->loss_curve = NULL;
    lr_train_result_free(&curve);
}

static int pretrain(run *r, double *t_pretrain)
{
    const options *o = &r->o;
    lr_err e = { { 0 } };
    double t0 = now_s();
    if (o->load) {
        lr_checkpoint_info info;
        if (lr_checkpoint_load_new(&r->net, o->load, &info, &e)) {
            fail_msg("--load", &e);
            return 1;
        }
        if (r->net.sizes[0] != 784 || r->net.sizes[r->net.n_layers] != 10) {
            fprintf(stderr, PROG ": --load: %s: model maps %zu inputs to %zu outputs; MNIST "
                    "needs 784 to 10\n", o->load, r->net.sizes[0], r->net.sizes[r->net.n_layers]);
            return 1;
        }
        if (lr_mlp_set_threads(&r->net, o->threads, &e)) {
            fail_msg("starting the worker threads", &e);
            return 1;
        }
        *t_pretrain = now_s() - t0;
        char sz[128];
        print_sizes(sz, sizeof sz, &r->net);
        if (text(r)) {
            printf("\n== 1. Pretrained model: loaded from %s ==\n", o->load);
            printf("model %s", sz);
            if (info.has_seed) printf(", trained with seed %" PRIu64, info.seed);
            printf("\n");
        }
        json_t *p = json_object();
        json_object_set_new(p, "loaded_from", json_string(o->load));
        json_object_set_new(p, "seconds", json_real(*t_pretrain));
        if (info.has_seed) json_object_set_new(p, "checkpoint_seed", json_integer((json_int_t)info.seed));
        json_object_set_new(r->js, "pretrain", p);
        return 0;
    }
    if (lr_mlp_init(&r->net, o->sizes, o->n_sizes, &e)) {
        fail_msg("creating the model", &e);
        return 1;
    }
    if (lr_mlp_set_threads(&r->net, o->threads, &e)) {
        fail_msg("starting the worker threads", &e);
        return 1;
    }
    lr_rng rng;
    lr_rng_seed(&rng, o->seed);
    lr_mlp_reset_params(&r->net, &rng);

    lr_train_opts tp = lr_train_opts_default();
    tp.batch = o->batch;
    tp.epochs = o->epochs;
    tp.seed = o->seed;
    tp.adam.lr = o->lr;
    tp.shards = o->shards;
    if (lr_train_count_steps(&r->pre_steps, &r->train_set, &tp, &e)) {
        fail_msg("pretraining", &e);
        return 1;
    }
    r->pre_curve = calloc(r->pre_steps ? r->pre_steps : 1, sizeof *r->pre_curve);
    if (!r->pre_curve) { fprintf(stderr, PROG ": out of memory\n"); return 1; }
    tp.record_loss_curve = true;
    if (text(r)) {
        char sz[128];
        print_sizes(sz, sizeof sz, &r->net);
        printf("\n== 1. Pretraining %s: %zu epoch%s, %zu steps of batch %zu, Adam lr %g ==\n",
               sz, o->epochs, o->epochs == 1 ? "" : "s", r->pre_steps, o->batch, (double)o->lr);
        fflush(stdout);
    }
    progress pg;
    progress_start(&pg, "pretrain", o, r->pre_steps, &tp);
    lr_train_result res;
    if (demo_dist_train(&r->dist, &r->net, &res, &r->train_set, &tp, &r->pre_rep, &e)) {
        if (pg.drawn) fputc('\n', stderr);
        fail_msg("pretraining", &e);
        return 1;
    }
    *t_pretrain = now_s() - t0;
    memcpy(r->pre_curve, res.loss_curve, res.steps * sizeof *r->pre_curve);
    free_curve(&res); /* the counts stay in res for the report */
    if (text(r))
        printf("trained %zu steps in %.2f s (%.0f steps/s; first tenth %.0f, last tenth %.0f), "
               "mean loss %.4f, last %.4f\n", res.steps, *t_pretrain, (double)res.steps / *t_pretrain,
               res.rate_first_tenth, res.rate_last_tenth, (double)res.avg_loss, (double)res.last_loss);
    json_t *p = json_object();
    dist_report(r, p, &r->pre_rep, res.steps);
    json_object_set_new(p, "steps_per_s_first_tenth", json_real(res.rate_first_tenth));
    json_object_set_new(p, "steps_per_s_last_tenth", json_real(res.rate_last_tenth));
    json_object_set_new(p, "steps", json_integer((json_int_t)res.steps));
    json_object_set_new(p, "avg_loss", json_real(res.avg_loss));
    json_object_set_new(p, "last_loss", json_real(res.last_loss));
    json_object_set_new(p, "seconds", json_real(*t_pretrain));
    json_object_set_new(r->js, "pretrain", p);
    return 0;
}

static void param_table_text(const lr_lora_param_table *t)
{
    printf("\n== 2. Parameters with rank-%zu LoRA ==\n", t->rank);
    printf("  layer    W             b        A            B\n");
    for (size_t i = 0; i < t->n_layers; i++) {
        const lr_lora_param_row *L = &t->row[i];
        char w[32], b[32], a[32] = "-", bb[32] = "-";
        snprintf(w, sizeof w, "(%zu, %zu)", L->out, L->in);
        snprintf(b, sizeof b, "(%zu)", L->out);
        if (L->lora) {
            snprintf(a, sizeof a, "(%zu, %zu)", L->a_rows, L->a_cols);
            snprintf(bb, sizeof bb, "(%zu, %zu)", L->b_rows, L->b_cols);
        }
        printf("  %-7s  %-12s  %-7s  %-11s  %s\n", L->name, w, b, a, bb);
    }
    char s1[32], s2[32], s3[32], s4[32], s5[32];
    group_thousands(s1, sizeof s1, t->original);
    group_thousands(s2, sizeof s2, t->with_lora);
    group_thousands(s3, sizeof s3, t->added);
    group_thousands(s4, sizeof s4, t->lora_macs);
    group_thousands(s5, sizeof s5, t->base_macs);
    printf("  total parameters (original):        %s\n", s1);
    printf("  total parameters (original + LoRA): %s\n", s2);
    printf("  parameters introduced by LoRA:      %s\n", s3);
    printf("  parameters increment:               %.3f%%\n", t->increment_pct);
    printf("  multiply-adds per image:            %s base + %s LoRA\n", s5, s4);
}

static json_t *param_table_json(const lr_lora_param_table *t)
{
    json_t *layers = json_array(), *p = json_object();
    for (size_t i = 0; i < t->n_layers; i++) {
        const lr_lora_param_row *L = &t->row[i];
        json_t *l = json_object();
        json_object_set_new(l, "name", json_string(L->name));
        json_object_set_new(l, "in", json_integer((json_int_t)L->in));
        json_object_set_new(l, "out", json_integer((json_int_t)L->out));
        json_object_set_new(l, "lora", json_boolean(L->lora));
        json_object_set_new(l, "lora_params", json_integer((json_int_t)L->lora_params));
        json_array_append_new(layers, l);
    }
    json_object_set_new(p, "rank", json_integer((json_int_t)t->rank));
    json_object_set_new(p, "layers", layers);
    json_object_set_new(p, "original", json_integer((json_int_t)t->original));
    json_object_set_new(p, "with_lora", json_integer((json_int_t)t->with_lora));
    json_object_set_new(p, "added", json_integer((json_int_t)t->added));
    json_object_set_new(p, "increment_pct", json_real(t->increment_pct));
    json_object_set_new(p, "base_macs_per_sample", json_integer((json_int_t)t->base_macs));
    json_object_set_new(p, "lora_macs_per_sample", json_integer((json_int_t)t->lora_macs));
    return p;
}

/* Step 2b: per-layer W, b, A, B and the seed's totals. */
static int param_table(run *r)
{
    lr_err e = { { 0 } };
    lr_lora_param_table t;
    if (lr_lora_param_count(&t, r->net.sizes, r->net.n_layers + 1, r->targets, r->o.rank, &e)) {
        fail_msg("counting parameters", &e);
        return 1;
    }
    if (text(r)) param_table_text(&t);
    json_object_set_new(r->js, "parameters", param_table_json(&t));
    return 0;
}

/* Step 3a: the adapter on the selected layers. Gaussian: A ~ N(0,1), B = 0 (the seed, and
 * LoRA §4.1), drawn from a generator seeded with seed+1 so the adapter does not depend on
 * whether the model was pretrained here or loaded. PiSSA rewrites the base to the residual. */
static int make_adapter(run *r, int digit)
{
    lr_err e = { { 0 } };
    const options *o = &r->o;
    lr_lora_opts c = lr_lora_opts_default();
    c.rank = o->rank;
    c.alpha = (float)o->alpha;
    c.use_rslora = o->rslora;
    c.init = o->pissa ? LR_LORA_INIT_PISSA : LR_LORA_INIT_GAUSSIAN;
    c.targets = r->targets;
    c.seed = o->seed + 1;
    snprintf(r->adapter, sizeof r->adapter, "digit%d", digit);
    r->lm = &r->lm_store;
    if (lr_lora_init(r->lm, &r->net, &e) || lr_lora_opts_check(&c, &r->net, &e) ||
        lr_lora_insert(r->lm, r->adapter, &c, &e) || lr_lora_select(r->lm, r->adapter, &e)) {
        fail_msg("creating the adapter", &e);
        return 1;
    }
    lr_lora_freeze_base(r->lm, true);
    return 0;
}

/* Step 3b: freeze the base and train the adapters on one digit. */
static int finetune(run *r, int digit, double *t_ft)
{
    lr_err e = { { 0 } };
    const options *o = &r->o;
    lr_train_opts tp = lr_train_opts_default();
    tp.batch = o->batch;
    tp.epochs = o->steps;      /* enough epochs for any step count; max_steps stops it */
    tp.max_steps = o->steps;
    tp.seed = o->seed;
    tp.adam.lr = o->ft_lr;
    tp.shards = o->shards;
    lr_dataset digit_set; /* the seed's x[y == digit] */
    if (!(r->digit_rows = malloc((r->train.n ? r->train.n : 1) * sizeof *r->digit_rows))) {
        fprintf(stderr, PROG ": out of memory\n");
        return 1;
    }
    if (lr_dataset_select_label(&r->train_set, &digit_set, r->digit_rows, (unsigned)digit, &e) ||
        lr_train_count_steps(&r->ft_steps, &digit_set, &tp, &e)) {
        fail_msg("fine-tuning", &e);
        return 1;
    }
    r->ft_curve = calloc(r->ft_steps ? r->ft_steps : 1, sizeof *r->ft_curve);
    if (!r->ft_curve) { fprintf(stderr, PROG ": out of memory\n"); return 1; }
    tp.record_loss_curve = true;
    size_t n_digit = digit_set.n;
    if (text(r) && !o->preserve.all) {
        printf("\n== 3. Fine-tuning the adapters on digit %d: base frozen, %zu steps of batch %zu "
               "(%zu training images of %d), Adam lr %g ==\n", digit, r->ft_steps, o->batch,
               n_digit, digit, (double)o->ft_lr);
        fflush(stdout);
    }
    preserve_free(&r->ps);
    if (preserve_begin(&r->ps, &o->preserve, r->method, r->lm, &r->train_set, digit, &tp, &e)) {
        fail_msg("--preserve", &e);
        return 1;
    }
    progress pg;
    progress_start(&pg, "fine-tune", o, r->ft_steps, &tp);
    double t0 = now_s();
    lr_train_result res;
    if (demo_dist_train(&r->dist, &r->net, &res, &digit_set, &tp, &r->ft_rep, &e) ||
        preserve_end(&r->ps, &r->net, &e)) {
        if (pg.drawn) fputc('\n', stderr);
        fail_msg("fine-tuning", &e);
        return 1;
    }
    *t_ft = now_s() - t0;
    memcpy(r->ft_curve, res.loss_curve, res.steps * sizeof *r->ft_curve);
    free_curve(&res); /* the counts stay in res for the report */
    if (text(r)) preserve_print(&r->ps, &r->net);
    if (text(r) && !o->preserve.all)
        printf("trained %zu steps in %.3f s (%.0f steps/s), mean loss %.4f, last %.4f\n",
               res.steps, *t_ft, (double)res.steps / *t_ft, (double)res.avg_loss,
               (double)res.last_loss);
    json_t *p = json_object();
    dist_report(r, p, &r->ft_rep, res.steps);
    json_object_set_new(p, "digit", json_integer(digit));
    json_object_set_new(p, "steps", json_integer((json_int_t)res.steps));
    json_object_set_new(p, "avg_loss", json_real(res.avg_loss));
    json_object_set_new(p, "last_loss", json_real(res.last_loss));
    json_object_set_new(p, "seconds", json_real(*t_ft));
    json_t *curve = json_array();
    for (size_t i = 0; i < res.steps && i < r->ft_steps; i++)
        json_array_append_new(curve, json_real(r->ft_curve[i]));
    json_object_set_new(p, "loss_curve", curve);
    json_object_set_new(p, "preserve", preserve_json(&r->ps, &r->net));
    json_object_set_new(r->js, "finetune", p);
    return 0;
}

static bool same_eval(const lr_eval_result *a, const lr_eval_result *b)
{
    return a->n == b->n && a->correct == b->correct &&
           memcmp(a->wrong, b->wrong, sizeof a->wrong) == 0 &&
           memcmp(a->confusion, b->confusion, sizeof a->confusion) == 0;
}

/* Step 5: what the fine-tune gained on the target and cost on every other digit. */
/* What the adapter did to each digit: the target's errors and the others'. */
typedef struct {
    long change[N_DIGITS];             /* errors with the adapter minus before */
    size_t target_before, target_after, others_before, others_after;
    double factor;                     /* target_before / target_after (inf when none left) */
} forgetting_t;

static forgetting_t measure_forgetting(int digit, const lr_eval_result *before, const lr_eval_result *on)
{
    forgetting_t f = { { 0 }, before->wrong[digit], on->wrong[digit], 0, 0, 0 };
    for (int d = 0; d < N_DIGITS; d++) {
        f.change[d] = (long)on->wrong[d] - (long)before->wrong[d];
        if (d == digit) continue;
        f.others_before += before->wrong[d];
        f.others_after += on->wrong[d];
    }
    f.factor = f.target_after ? (double)f.target_before / (double)f.target_after : INFINITY;
    return f;
}

static void forgetting_text(const run *r, const forgetting_t *f, int digit, const lr_eval_result *before,
                            const lr_eval_result *on)
{
    printf("\n== 5. Forgetting: per-digit change with the adapter (digit %d targeted) ==\n", digit);
    printf("  digit  before  after  change  error before -> after\n");
    for (int d = 0; d < N_DIGITS; d++) {
        double c = r->count[d] ? 100.0 / (double)r->count[d] : 0.0;
        printf("  %5d  %6zu  %5zu  %+6ld  %5.2f%% -> %5.2f%%%s\n", d, before->wrong[d], on->wrong[d], f->change[d],
               c * (double)before->wrong[d], c * (double)on->wrong[d], d == digit ? "   <- target" : "");
    }
    printf("  target digit %d: %zu -> %zu wrong (", digit, f->target_before, f->target_after);
    if (f->target_after) printf("%.1fx fewer", f->factor);
    else printf("none left");
    printf(")\n  other digits:   %zu -> %zu wrong (%+ld)\n", f->others_before, f->others_after,
           (long)f->others_after - (long)f->others_before);
    printf("  overall accuracy %.4f -> %.4f\n", before->accuracy, on->accuracy);
}

static json_t *forgetting_json(const forgetting_t *f)
{
    json_t *p = json_object(), *change = json_array();
    for (int d = 0; d < N_DIGITS; d++) json_array_append_new(change, json_integer(f->change[d]));
    json_object_set_new(p, "change", change);
    json_object_set_new(p, "target_before", json_integer((json_int_t)f->target_before));
    json_object_set_new(p, "target_after", json_integer((json_int_t)f->target_after));
    json_object_set_new(p, "target_reduction_factor", f->target_after ? json_real(f->factor) : json_null());
    json_object_set_new(p, "others_before", json_integer((json_int_t)f->others_before));
    json_object_set_new(p, "others_after", json_integer((json_int_t)f->others_after));
    return p;
}

/* Step 5: what the adapter cost the other digits. */
static void forgetting(run *r, int digit, const lr_eval_result *before, const lr_eval_result *on)
{
    forgetting_t f = measure_forgetting(digit, before, on);
    if (text(r)) forgetting_text(r, &f, digit, before, on);
    json_object_set_new(r->js, "forgetting", forgetting_json(&f));
}

/* Step 6: the adapter (PEFT layout) and the chart. */
static int save_outputs(run *r, int digit, const lr_eval_result *before, const lr_eval_result *on,
                        const lr_eval_result *off)
{
    lr_err e = { { 0 } };
    const options *o = &r->o;
    if (o->adapter_out) {
        /* the base is named by the checkpoint it lives in, when there is one */
        const char *base = o->save ? o->save : o->load;
        if (lr_adapter_save(r->lm, o->adapter_out, r->adapter, base, &e)) {
            fail_msg("--adapter-out", &e);
            return 1;
        }
        if (text(r)) printf("\nsaved adapter '%s' to %s/ (%s, %s)\n", r->adapter, o->adapter_out,
                            LR_ADAPTER_WEIGHTS, LR_ADAPTER_CONFIG);
        json_object_set_new(r->js, "adapter_out", json_string(o->adapter_out));
    }
    if (o->plot) {
        int wrong[3][10];
        for (int d = 0; d < N_DIGITS; d++) {
            wrong[0][d] = (int)before->wrong[d];
            wrong[1][d] = (int)on->wrong[d];
            wrong[2][d] = (int)off->wrong[d];
        }
        char on_name[48], title[160];
        snprintf(on_name, sizeof on_name, "LoRA on (fine-tuned on %d)", digit);
        const char *names[3] = { "pretrained", on_name, o->pissa ? "residual base" : "LoRA off" };
        snprintf(title, sizeof title, "lr-mnist: rank-%zu LoRA fine-tuned on digit %d (seed %"
                 PRIu64 "); below, the fine-tuning loss", o->rank, digit, o->seed);
        char msg[256] = "";
        if (lr_plot_svg(o->plot, title, (const int(*)[10])wrong, names, 3, r->ft_curve,
                        r->ft_steps, msg, sizeof msg)) {
            fprintf(stderr, PROG ": --plot: %s\n", msg[0] ? msg : "cannot write the chart");
            return 1;
        }
        if (text(r)) printf("wrote the chart to %s\n", o->plot);
        json_object_set_new(r->js, "plot", json_string(o->plot));
    }
    return 0;
}

/* The options as the report's "config" object. */
static json_t *json_config(const options *o)
{
    json_t *cfg = json_object();
    json_object_set_new(cfg, "data", json_string(o->data_dir ? o->data_dir : "data/mnist"));
    json_object_set_new(cfg, "epochs", json_integer((json_int_t)o->epochs));
    json_object_set_new(cfg, "batch", json_integer((json_int_t)o->batch));
    json_object_set_new(cfg, "lr", json_real(o->lr));
    json_object_set_new(cfg, "limit_train", json_integer((json_int_t)o->limit_train));
    json_object_set_new(cfg, "limit_test", json_integer((json_int_t)o->limit_test));
    json_object_set_new(cfg, "shards", json_integer((json_int_t)o->shards));
    if (o->adapter) { /* nothing is fine-tuned: the adapter's settings come from its config */
        json_object_set_new(cfg, "adapter", json_string(o->adapter));
        return cfg;
    }
    json_object_set_new(cfg, "rank", json_integer((json_int_t)o->rank));
    json_object_set_new(cfg, "alpha", json_real(o->alpha));
    json_object_set_new(cfg, "rslora", json_boolean(o->rslora));
    json_object_set_new(cfg, "init", json_string(o->pissa ? "pissa" : "gaussian"));
    json_object_set_new(cfg, "lora_layers", json_string(o->lora_layers ? o->lora_layers : "all"));
    json_object_set_new(cfg, "steps", json_integer((json_int_t)o->steps));
    json_object_set_new(cfg, "ft_lr", json_real(o->ft_lr));
    json_object_set_new(cfg, "digit", o->digit < 0 ? json_string("worst") : json_integer(o->digit));
    return cfg;
}

/* Step 0: environment, threads, the report's header and configuration. */
static int start(run *r)
{
    options *o = &r->o;
    lr_err e = { { 0 } };
    lr_isa isa;
    if (lr_cpu_isa_env(&isa, &e)) return usage_error("%s", e.msg);
    lr_fp_mode_set(o->keep_subnormals ? LR_FP_IEEE : LR_FP_FLUSH);
    if (o->threads == 0) { /* the CPUs, shared among this machine's processes of an mpirun */
        long n = sysconf(_SC_NPROCESSORS_ONLN) / r->dist.local_size;
        o->threads = n < 1 ? 1 : n > LR_POOL_MAX_THREADS ? LR_POOL_MAX_THREADS : (int)n;
    }
    lr_blas_set_threads(o->threads);
    r->t_start = now_s();
    if (text(r)) {
        printf("lr-mnist: LoRA fine-tuning on MNIST with lowrank\n");
        printf("seed %" PRIu64 ", %d thread%s, %s kernels, subnormals %s\n", o->seed, o->threads,
               o->threads == 1 ? "" : "s", lr_cpu_isa_name(lr_cpu_isa()),
               o->keep_subnormals ? "kept" : "flushed");
        if (r->dist.size > 1)
            printf("data-parallel: %d processes (mpirun), each with the whole model and 1/%d of every batch; "
                   "gradients summed %s\n", r->dist.size, r->dist.size,
                   r->dist.mpi_sum ? "by MPI_Allreduce" : "in rank order");
    }
    r->js = json_object();
    json_object_set_new(r->js, "kernels", json_string(lr_cpu_isa_name(lr_cpu_isa())));
    json_object_set_new(r->js, "subnormals", json_string(o->keep_subnormals ? "kept" : "flushed"));
    json_object_set_new(r->js, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(r->js, "threads", json_integer(o->threads));
    json_object_set_new(r->js, "processes", json_integer(r->dist.size));
    json_object_set_new(r->js, "config", json_config(o));
    return 0;
}

/* Step 1b: the model's sizes in the report, --save, and the pretrained model's errors. */
static int evaluate_pretrained(run *r)
{
    const options *o = &r->o;
    lr_err e = { { 0 } };
    lr_mlp *net = &r->net;
    size_t classes = net->sizes[net->n_layers];
    json_t *layers = json_array();
    for (size_t i = 0; i <= net->n_layers; i++) json_array_append_new(layers, json_integer((json_int_t)net->sizes[i]));
    json_object_set_new(r->js, "layers", layers);
    if (o->save) {
        lr_checkpoint_info info = { .has_seed = !o->load, .seed = o->seed };
        if (lr_checkpoint_save(net, o->save, &info, &e)) {
            fail_msg("--save", &e);
            return 1;
        }
        if (text(r)) printf("saved the pretrained model to %s\n", o->save);
        json_object_set_new(r->js, "saved_checkpoint", json_string(o->save));
    }
    r->logits_before = malloc(r->test.n * classes * sizeof(float));
    r->logits_off = malloc(r->test.n * classes * sizeof(float));
    r->params_pre = malloc(net->n_params * sizeof(float));
    r->params_copy = malloc(net->n_params * sizeof(float));
    if (!r->logits_before || !r->logits_off || !r->params_pre || !r->params_copy) {
        fprintf(stderr, PROG ": out of memory\n");
        return 1;
    }
    double t0 = now_s();
    if (eval_keep_logits(net, &r->test_set, r->logits_before, &r->before, &e)) {
        fail_msg("evaluating", &e);
        return 1;
    }
    r->t_eval[0] = now_s() - t0;
    if (text(r) && !o->adapter) print_wrong_table("pretrained model", &r->before, r->count);
    json_object_set_new(r->js, "pretrained", json_eval(&r->before));
    r->digit = o->digit;
    if (r->digit < 0) {
        r->digit = 0;
        for (int d = 1; d < N_DIGITS; d++)
            if (r->before.wrong[d] > r->before.wrong[r->digit]) r->digit = d;
        if (text(r)) printf("--digit worst: digit %d has the most errors (%zu)\n", r->digit,
                            r->before.wrong[r->digit]);
    }
    return 0;
}

/* Step 2: which layers get an adapter, and what it costs. Returns 2 for a bad option. */
static int plan_adapter(run *r)
{
    lr_mlp *net = &r->net;
    int rc = select_and_check_rank(&r->o, net, r->sel);
    if (rc) return rc;
    for (size_t i = 0; i < net->n_layers; i++)
        if (r->sel[i]) r->targets |= 1u << i;
    return param_table(r);
}

/* Step 3: freeze, remember the base bit for bit, fine-tune. */
static int train_adapter(run *r)
{
    lr_mlp *net = &r->net;
    size_t pbytes = net->n_params * sizeof(float);
    memcpy(r->params_pre, net->params, pbytes);
    if (make_adapter(r, r->digit)) return 1;
    memcpy(r->params_copy, net->params, pbytes); /* PiSSA: the residual */
    r->sum_before = fnv1a64(net->params, pbytes);
    if (finetune(r, r->digit, &r->t_ft)) return 1;
    r->sum_after = fnv1a64(net->params, pbytes);
    r->frozen_same = memcmp(r->params_copy, net->params, pbytes) == 0;
    return 0;
}

static void report_on_off_text(const run *r)
{
    printf("\n== 4. Per-digit errors: pretrained, LoRA enabled, LoRA disabled ==\n");
    printf("  digit  of test  pretrained  LoRA on  %s\n", r->o.pissa ? "residual" : "LoRA off");
    for (int d = 0; d < N_DIGITS; d++)
        printf("  %5d  %7zu  %10zu  %7zu  %8zu%s\n", d, r->count[d], r->before.wrong[d], r->on.wrong[d],
               r->off.wrong[d], d == r->digit ? "   <- target" : "");
    printf("  accuracy        %10.4f  %7.4f  %8.4f\n", r->before.accuracy, r->on.accuracy, r->off.accuracy);
    if (r->off_checked)
        printf("LoRA disabled equals the pretrained model: %s (all %zu predictions and "
               "logits compared bit for bit)\n", r->off_same ? "yes" : "NO", r->test.n);
    else
        printf("LoRA disabled runs PiSSA's residual base (W0 - s*B0*A0); W0 is checked when "
               "the adapter is removed, below.\n");
    printf("frozen weights (%zu floats) FNV-1a before fine-tuning %016" PRIx64 ", after %016" PRIx64 ": %s\n",
           r->net.n_params, r->sum_before, r->sum_after, r->frozen_same ? "bit-identical" : "CHANGED");
}

static void report_on_off_json(run *r)
{
    json_object_set_new(r->js, "lora_enabled", json_eval(&r->on));
    json_object_set_new(r->js, r->o.pissa ? "residual" : "lora_disabled", json_eval(&r->off));
    if (r->off_checked) json_object_set_new(r->js, "disabled_equals_pretrained", json_boolean(r->off_same));
    char hex[2][17];
    snprintf(hex[0], sizeof hex[0], "%016" PRIx64, r->sum_before);
    snprintf(hex[1], sizeof hex[1], "%016" PRIx64, r->sum_after);
    json_object_set_new(r->js, "frozen_checksum_before", json_string(hex[0]));
    json_object_set_new(r->js, "frozen_checksum_after", json_string(hex[1]));
    json_object_set_new(r->js, "frozen_unchanged", json_boolean(r->frozen_same));
}

/* Whether the last evaluation into logits_off gives the pretrained results bit for bit. */
static bool off_equals_pretrained(const run *r)
{
    size_t classes = r->net.sizes[r->net.n_layers];
    return same_eval(&r->before, &r->off) &&
           memcmp(r->logits_before, r->logits_off, r->test.n * classes * sizeof(float)) == 0;
}

/* Step 4: LoRA on, LoRA off. Gaussian: disabled runs W0 itself and must match step 1
 * exactly. PiSSA: disabled runs the residual W0 - s*B0*A0; W0 comes back when the adapter is
 * removed (restore_pissa). */
static int compare_on_off(run *r)
{
    lr_err e = { { 0 } };
    double t0 = now_s();
    if (eval_keep_logits(&r->net, &r->test_set, r->logits_off, &r->on, &e)) {
        fail_msg("evaluating with LoRA", &e);
        return 1;
    }
    r->t_eval[1] = now_s() - t0;
    lr_lora_set_enabled(r->lm, false);
    t0 = now_s();
    if (eval_keep_logits(&r->net, &r->test_set, r->logits_off, &r->off, &e)) {
        fail_msg("evaluating with LoRA disabled", &e);
        return 1;
    }
    r->t_eval[2] = now_s() - t0;
    lr_lora_set_enabled(r->lm, true);
    r->off_same = off_equals_pretrained(r);
    r->off_checked = !r->o.pissa;
    if (text(r)) report_on_off_text(r);
    report_on_off_json(r);
    return 0;
}

/* PiSSA: removing the adapter must give back the pretrained W0 and its results. */
static int restore_pissa(run *r)
{
    if (!r->o.pissa) return 0;
    lr_err e = { { 0 } };
    if (lr_lora_remove(r->lm, r->adapter, &e)) {
        fail_msg("removing the PiSSA adapter", &e);
        return 1;
    }
    bool w_back = memcmp(r->params_pre, r->net.params, r->net.n_params * sizeof(float)) == 0;
    double t0 = now_s();
    if (eval_keep_logits(&r->net, &r->test_set, r->logits_off, &r->off, &e)) {
        fail_msg("evaluating the restored model", &e);
        return 1;
    }
    r->t_eval[2] += now_s() - t0;
    r->off_same = w_back && off_equals_pretrained(r);
    r->off_checked = true;
    if (text(r))
        printf("\nPiSSA adapter removed: W0 restored %s, results equal the pretrained model: %s\n",
               w_back ? "bit for bit" : "NOT bit for bit", r->off_same ? "yes" : "NO");
    json_object_set_new(r->js, "removed_equals_pretrained", json_boolean(r->off_same));
    return 0;
}

/* ------------------------------------------------------------------------ --adapter */

static json_t *adapter_info_json(const run *r, const lr_adapter_info *info, float scale)
{
    json_t *p = json_object(), *layers = json_array();
    for (size_t i = 0; i < r->net.n_layers; i++) {
        if (!(info->cfg.targets & (1u << i))) continue;
        json_t *l = json_object();
        json_object_set_new(l, "name", json_string(r->net.layer[i].name));
        json_object_set_new(l, "rank", json_integer((json_int_t)info->layer_rank[i]));
        json_object_set_new(l, "alpha", json_real(info->layer_alpha[i]));
        json_array_append_new(layers, l);
    }
    json_object_set_new(p, "dir", json_string(r->o.adapter));
    json_object_set_new(p, "init_lora_weights", json_string(info->init_lora_weights));
    json_object_set_new(p, "base_model", json_string(info->base_model));
    json_object_set_new(p, "rank", json_integer((json_int_t)info->cfg.rank));
    json_object_set_new(p, "alpha", json_real(info->cfg.alpha));
    json_object_set_new(p, "rslora", json_boolean(info->cfg.use_rslora));
    json_object_set_new(p, "scale", json_real(scale));
    json_object_set_new(p, "patterns", json_boolean(info->has_patterns));
    json_object_set_new(p, "layers", layers);
    return p;
}

static void adapter_info_text(const run *r, const lr_adapter_info *info, float scale)
{
    printf("\n== 2. Adapter: loaded from %s ==\n", r->o.adapter);
    printf("PEFT adapter (init %s, base %s): rank %zu, alpha %g, scale %g%s\n", info->init_lora_weights,
           info->base_model[0] ? info->base_model : "not recorded", info->cfg.rank, (double)info->cfg.alpha,
           (double)scale, info->cfg.use_rslora ? " (rsLoRA)" : "");
    for (size_t i = 0; i < r->net.n_layers; i++)
        if (info->cfg.targets & (1u << i))
            printf("  %-7s  r %zu, alpha %g\n", r->net.layer[i].name, info->layer_rank[i],
                   (double)info->layer_alpha[i]);
    if (info->has_patterns)
        printf("(rank_pattern / alpha_pattern: loaded at rank %zu, each layer zero-padded and its scale "
               "folded into B)\n", info->cfg.rank);
}

/* Step 2 with --adapter: the saved adapter onto the loaded base, selected. The base as
 * loaded is kept to check that loading and evaluating leave it untouched. */
static int load_adapter(run *r)
{
    lr_err e = { { 0 } };
    double t0 = now_s();
    memcpy(r->params_pre, r->net.params, r->net.n_params * sizeof(float));
    r->sum_before = fnv1a64(r->net.params, r->net.n_params * sizeof(float));
    snprintf(r->adapter, sizeof r->adapter, "adapter");
    r->lm = &r->lm_store;
    lr_adapter_info info;
    if (lr_lora_init(r->lm, &r->net, &e) || lr_adapter_load(r->lm, r->o.adapter, r->adapter, &info, &e) ||
        lr_lora_select(r->lm, r->adapter, &e)) {
        fail_msg("--adapter", &e);
        return 1;
    }
    r->t_ft = now_s() - t0;
    if (!strcmp(info.init_lora_weights, "pissa"))
        fprintf(stderr, PROG ": note: %s is a PiSSA adapter: it belongs on the residual base it was "
                "trained with, not on the pretrained weights\n", r->o.adapter);
    float scale = lr_lora_scale(info.cfg.rank, info.cfg.alpha, info.cfg.use_rslora);
    if (text(r)) adapter_info_text(r, &info, scale);
    json_object_set_new(r->js, "adapter", adapter_info_json(r, &info, scale));
    return 0;
}

static void adapter_eval_text(const run *r)
{
    printf("\n== 3. Per-digit errors with the adapter off and on (no training) ==\n");
    printf("  digit  of test  adapter off  adapter on  change\n");
    for (int d = 0; d < N_DIGITS; d++)
        printf("  %5d  %7zu  %11zu  %10zu  %+6ld\n", d, r->count[d], r->off.wrong[d], r->on.wrong[d],
               (long)r->on.wrong[d] - (long)r->off.wrong[d]);
    printf("  accuracy         %11.4f  %10.4f\n", r->off.accuracy, r->on.accuracy);
    printf("adapter disabled equals the loaded model: %s (all %zu predictions and logits compared "
           "bit for bit)\n", r->off_same ? "yes" : "NO", r->test.n);
    printf("base weights (%zu floats) unchanged by loading the adapter: %s\n", r->net.n_params,
           r->frozen_same ? "bit-identical" : "CHANGED");
}

static void adapter_eval_json(run *r)
{
    json_t *change = json_array();
    for (int d = 0; d < N_DIGITS; d++)
        json_array_append_new(change, json_integer((json_int_t)r->on.wrong[d] - (json_int_t)r->off.wrong[d]));
    json_object_set_new(r->js, "lora_enabled", json_eval(&r->on));
    json_object_set_new(r->js, "lora_disabled", json_eval(&r->off));
    json_object_set_new(r->js, "change", change);
    json_object_set_new(r->js, "disabled_equals_pretrained", json_boolean(r->off_same));
    json_object_set_new(r->js, "frozen_unchanged", json_boolean(r->frozen_same));
}

/* Step 3 with --adapter: the test set with the adapter on, then off; off must give the
 * loaded model's results (step 1) bit for bit, and the base must be as loaded. */
static int eval_adapter(run *r)
{
    lr_err e = { { 0 } };
    double t0 = now_s();
    if (eval_keep_logits(&r->net, &r->test_set, r->logits_off, &r->on, &e)) {
        fail_msg("evaluating with the adapter", &e);
        return 1;
    }
    r->t_eval[1] = now_s() - t0;
    lr_lora_set_enabled(r->lm, false);
    t0 = now_s();
    if (eval_keep_logits(&r->net, &r->test_set, r->logits_off, &r->off, &e)) {
        fail_msg("evaluating with the adapter disabled", &e);
        return 1;
    }
    r->t_eval[2] = now_s() - t0;
    lr_lora_set_enabled(r->lm, true);
    r->off_same = off_equals_pretrained(r);
    r->off_checked = true;
    r->sum_after = fnv1a64(r->net.params, r->net.n_params * sizeof(float));
    r->frozen_same = memcmp(r->params_pre, r->net.params, r->net.n_params * sizeof(float)) == 0;
    if (text(r)) adapter_eval_text(r);
    adapter_eval_json(r);
    return 0;
}

/* --plot with --adapter: the per-digit errors of the base and with the adapter, no loss. */
static int plot_adapter(run *r)
{
    if (!r->o.plot) return 0;
    int wrong[2][10];
    for (int d = 0; d < N_DIGITS; d++) {
        wrong[0][d] = (int)r->off.wrong[d];
        wrong[1][d] = (int)r->on.wrong[d];
    }
    const char *names[2] = { "base", "adapter" };
    char title[300], msg[256] = "";
    snprintf(title, sizeof title, "lr-mnist: adapter %.100s on %.100s", r->o.adapter, r->o.load);
    if (lr_plot_svg(r->o.plot, title, (const int(*)[10])wrong, names, 2, NULL, 0, msg, sizeof msg)) {
        fprintf(stderr, PROG ": --plot: %s\n", msg[0] ? msg : "cannot write the chart");
        return 1;
    }
    if (text(r)) printf("wrote the chart to %s\n", r->o.plot);
    json_object_set_new(r->js, "plot", json_string(r->o.plot));
    return 0;
}

/* The time block, the exit status, the JSON object, and the failed check if any. */
/* --preserve all: every method from the same pretrained model, one table. */
typedef struct {
    unsigned mask;
    lr_eval_result on;
    double t_ft, t_setup;
    size_t extra;
} method_row;

static int run_method(run *r, method_row *m)
{
    lr_err e = { { 0 } };
    size_t pbytes = r->net.n_params * sizeof(float);
    if (r->lm) lr_lora_remove(r->lm, r->adapter, NULL); /* puts a PiSSA base back */
    lr_lora_free(r->lm); /* the previous method's adapter: the next starts from the same init */
    r->lm = NULL;
    if (make_adapter(r, r->digit)) return 1;
    r->method = m->mask;
    free(r->ft_curve), r->ft_curve = NULL;
    free(r->digit_rows), r->digit_rows = NULL;
    if (finetune(r, r->digit, &m->t_ft)) return 1;
    if (memcmp(r->params_pre, r->net.params, pbytes) != 0) r->frozen_same = false;
    if (lr_eval(&r->net, &m->on, &r->test_set, 1000, &e)) {
        fail_msg("evaluating", &e);
        return 1;
    }
    m->t_setup = r->ps.t_setup, m->extra = r->ps.extra_bytes;
    return 0;
}

static void compare_row(const run *r, const method_row *m, json_t *arr)
{
    char nm[64];
    size_t ob = 0, oa = 0, worst = 10;
    long worst_d = 0;
    for (int d = 0; d < N_DIGITS; d++) {
        if (d == r->digit) continue;
        ob += r->before.wrong[d], oa += m->on.wrong[d];
        long dd = (long)m->on.wrong[d] - (long)r->before.wrong[d];
        if (worst == 10 || dd > worst_d) worst = (size_t)d, worst_d = dd;
    }
    preserve_name(m->mask, nm, sizeof nm);
    if (text(r))
        printf("  %-18s %4zu -> %-4zu   %5zu -> %-5zu  %zu: %3zu -> %-4zu  %.4f  %8.3f s  %7.3f s  %6.1f MB\n", nm,
               r->before.wrong[r->digit], m->on.wrong[r->digit], ob, oa, worst, r->before.wrong[worst],
               m->on.wrong[worst], m->on.accuracy, m->t_ft, m->t_setup, (double)m->extra / 1e6);
    json_t *o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:I}", "method", nm, "target_before",
                          (json_int_t)r->before.wrong[r->digit], "target_after", (json_int_t)m->on.wrong[r->digit],
                          "others_before", (json_int_t)ob, "others_after", (json_int_t)oa, "worst_digit",
                          (json_int_t)worst, "worst_before", (json_int_t)r->before.wrong[worst], "worst_after",
                          (json_int_t)m->on.wrong[worst], "accuracy", m->on.accuracy, "finetune_seconds", m->t_ft,
                          "setup_seconds", m->t_setup, "extra_bytes", (json_int_t)m->extra);
    json_object_set_new(o, "wrong", json_wrong(m->on.wrong));
    json_array_append_new(arr, o);
}

static int plot_methods(run *r, const method_row *rows, size_t n)
{
    char names[8][64], msg[512];
    const char *np[8];
    size_t tgt[8], oth[8], ob = 0;
    for (int d = 0; d < N_DIGITS; d++) ob += d == r->digit ? 0 : r->before.wrong[d];
    for (size_t i = 0; i < n && i < 8; i++) {
        np[i] = preserve_name(rows[i].mask, names[i], sizeof names[i]);
        tgt[i] = rows[i].on.wrong[r->digit], oth[i] = 0;
        for (int d = 0; d < N_DIGITS; d++) oth[i] += d == r->digit ? 0 : rows[i].on.wrong[d];
    }
    if (preserve_plot(r->o.plot, r->digit, np, tgt, oth, n, r->before.wrong[r->digit], ob, msg, sizeof msg)) {
        fprintf(stderr, PROG ": --plot: %s\n", msg);
        return 1;
    }
    if (text(r)) printf("\nwrote the comparison chart to %s\n", r->o.plot);
    json_object_set_new(r->js, "plot", json_string(r->o.plot));
    return 0;
}

static int compare_methods(run *r)
{
    static const unsigned masks[] = { 0, PRESERVE_NULLSPACE, PRESERVE_REPLAY, PRESERVE_DISTILL,
                                      PRESERVE_NULLSPACE | PRESERVE_REPLAY, PRESERVE_REPLAY | PRESERVE_DISTILL,
                                      PRESERVE_NULLSPACE | PRESERVE_DISTILL };
    enum { NM = sizeof masks / sizeof *masks };
    method_row rows[NM];
    memcpy(r->params_pre, r->net.params, r->net.n_params * sizeof(float));
    r->frozen_same = true;
    if (text(r))
        printf("\n== 3. Fine-tuning on digit %d with each method (%zu steps, batch %zu, the same initial adapter) ==\n",
               r->digit, r->o.steps, r->o.batch);
    for (size_t i = 0; i < NM; i++) {
        rows[i].mask = masks[i];
        if (run_method(r, &rows[i])) return 1;
    }
    r->off_same = true; /* the base is compared bit for bit after every method instead */
    json_t *arr = json_array();
    if (text(r))
        printf("\n  %-18s %-13s  %-14s  %-14s  %-6s  %-10s  %-9s  %s\n", "method", "digit errors", "other digits",
               "worst other", "acc.", "fine-tune", "setup", "extra memory");
    for (size_t i = 0; i < NM; i++) compare_row(r, &rows[i], arr);
    json_object_set_new(r->js, "preserve_comparison", arr);
    if (r->o.plot && plot_methods(r, rows, NM)) return 1;
    r->t_ft = 0;
    for (size_t i = 0; i < NM; i++) r->t_ft += rows[i].t_ft + rows[i].t_setup;
    return 0;
}

static int finish(run *r)
{
    double t_total = now_s() - r->t_start, t_ev = r->t_eval[0] + r->t_eval[1] + r->t_eval[2];
    if (text(r)) {
        printf("\n== Time ==\n");
        printf("  load data   %8.3f s\n", r->t_load);
        printf("  pretrain    %8.3f s%s\n", r->t_pretrain, r->o.load ? " (loading the checkpoint)" : "");
        printf("  evaluate    %8.3f s (3 passes over %zu test images)\n", t_ev, r->test.n);
        printf("  %-10s  %8.3f s\n", r->o.adapter ? "adapter" : "fine-tune", r->t_ft);
        printf("  total       %8.3f s\n", t_total);
    }
    json_t *tj = json_object();
    json_object_set_new(tj, "load_data", json_real(r->t_load));
    json_object_set_new(tj, "pretrain", json_real(r->t_pretrain));
    json_object_set_new(tj, "eval", json_real(t_ev));
    json_object_set_new(tj, r->o.adapter ? "load_adapter" : "finetune", json_real(r->t_ft));
    json_object_set_new(tj, "total", json_real(t_total));
    json_object_set_new(r->js, "seconds", tj);
    int status = r->off_same && r->frozen_same ? 0 : 1;
    json_object_set_new(r->js, "ok", json_boolean(status == 0));
    if (r->o.json) {
        char *s = json_dumps(r->js, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
        if (s) { puts(s); free(s); }
    }
    if (status)
        fprintf(stderr, PROG ": check FAILED: %s\n",
                !r->frozen_same ? (r->o.adapter ? "the base weights changed while loading the adapter"
                                                : "the frozen weights changed during fine-tuning")
                : r->o.pissa    ? "removing the PiSSA adapter did not restore the pretrained model"
                                : "LoRA-disabled results differ from the pretrained model");
    return status;
}

/* Under mpirun, ranks other than 0 compute the same pipeline silently (main drops their outputs). */
static void silence_replica(const run *r)
{
    if (r->dist.rank == 0) return;
    if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) { /* keep going */ }
}

/* The data on every process: one that cannot load it stops them all. */
static int load_data_everywhere(run *r)
{
    int rc = load_data(r);
    lr_err e = { { 0 } };
    snprintf(e.msg, sizeof e.msg, "cannot load MNIST from '%s'", r->o.data_dir ? r->o.data_dir : "data/mnist");
    if (demo_dist_agree(&r->dist, rc ? LR_EIO : LR_OK, &e) && !rc) {
        fprintf(stderr, PROG ": %s (every machine of the run needs the data)\n", e.msg);
        rc = 1;
    }
    return rc;
}

/* The pipeline after the options: data, pretraining, then the adapter's training and checks. */
static int run_pipeline(run *r)
{
    int rc;
    double t0 = now_s();
    if ((rc = load_data_everywhere(r))) return rc;
    r->t_load = now_s() - t0;
    if ((rc = pretrain(r, &r->t_pretrain)) || (rc = evaluate_pretrained(r))) return rc;
    if (r->o.adapter) { /* evaluate a saved adapter: no training */
        if (!(rc = load_adapter(r)) && !(rc = eval_adapter(r)) && !(rc = plot_adapter(r))) rc = finish(r);
        return rc;
    }
    r->method = r->o.preserve.mask;
    if (r->o.preserve.all) { /* every method, one table */
        if (!(rc = plan_adapter(r)) && !(rc = compare_methods(r))) rc = finish(r);
        return rc;
    }
    if ((rc = plan_adapter(r)) || (rc = train_adapter(r)) || (rc = compare_on_off(r))) return rc;
    forgetting(r, r->digit, &r->before, &r->on);
    if ((rc = save_outputs(r, r->digit, &r->before, &r->on, &r->off)) || (rc = restore_pissa(r))) return rc;
    return finish(r);
}

int main(int argc, char **argv)
{
    static run r; /* static: zeroed, and large arrays stay off the stack */
    /* over a file-size limit, report EFBIG from the write instead of dying of SIGXFSZ */
    signal(SIGXFSZ, SIG_IGN);
    char msg[512];
    int rc = demo_dist_init(&r.dist, &argc, &argv, msg, sizeof msg);
    if (rc) return usage_error("%s", msg);
    silence_replica(&r); /* before the options: a usage error is printed once */
    rc = parse_options(argc, argv, &r.o);
    r.dist.mpi_sum = r.o.dist_sum_mpi;
    if (r.dist.rank != 0) r.o.save = r.o.adapter_out = r.o.plot = NULL; /* rank 0 writes the files */
    if (!rc && r.o.shards > 1 && r.dist.size > 1)
        rc = usage_error("--shards is for one process; under mpirun every process takes its own slice");
    if (rc == MNIST_OPTS_HELP) rc = 0;
    else if (!rc && !(rc = start(&r))) rc = run_pipeline(&r);
    fflush(stdout);
    run_free(&r);
    demo_dist_finish(&r.dist);
    return rc;
}
