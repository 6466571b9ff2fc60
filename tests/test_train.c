/* test_train.c — the data loop on small synthetic datasets that are not MNIST: float
 * features (Gaussian blobs, 5 classes, normalised) and byte features (4x4 "images"). The loss
 * falls and a held-out set is learned, the run is reproducible bit for bit and equals plain
 * train steps, a label subset / step limit / loss curve / progress callback behave, and bad
 * inputs are refused (the dataset's own checks: test_dataset.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "lr_test.h"
#include "lowrank/nn/eval.h"
#include "lowrank/nn/train.h"
#include <stdio.h>

typedef struct {
    void *features;
    uint8_t *labels;
    lr_dataset d;
} synth_t;

static void synth_free(synth_t *s)
{
    free(s->features);
    free(s->labels);
}

/* n float examples of dim 6 around 5 class centres (centre k: 6 at feature k, the rest 0),
 * shifted by 10 and scaled by 4 so that the dataset's normalisation matters. */
static void blobs(synth_t *s, size_t n, uint64_t seed)
{
    lr_rng r;
    lr_rng_seed(&r, seed);
    float *f = malloc(n * 6 * sizeof *f);
    s->labels = malloc(n);
    for (size_t i = 0; i < n; i++) {
        uint8_t y = (uint8_t)lr_rng_below(&r, 5);
        s->labels[i] = y;
        for (size_t j = 0; j < 6; j++) f[i * 6 + j] = 10.0f + 4.0f * ((j == y ? 6.0f : 0.0f) + (float)lr_rng_normal(&r));
    }
    s->features = f;
    memset(&s->d, 0, sizeof s->d);
    s->d = (lr_dataset){ .n = n, .dim = 6, .classes = 5, .type = LR_DATA_F32, .features = f,
                         .labels = s->labels, .norm = { true, 4.0f, 2.5f, 1.0f } };
}

/* n byte examples of 4x4: the label's row is bright, the rest noise; 4 classes. */
static void images(synth_t *s, size_t n, uint64_t seed)
{
    lr_rng r;
    lr_rng_seed(&r, seed);
    uint8_t *px = malloc(n * 16);
    s->labels = malloc(n);
    for (size_t i = 0; i < n; i++) {
        uint8_t y = (uint8_t)lr_rng_below(&r, 4);
        s->labels[i] = y;
        for (size_t j = 0; j < 16; j++)
            px[i * 16 + j] = (uint8_t)(j / 4 == y ? 200 + lr_rng_below(&r, 56) : lr_rng_below(&r, 80));
    }
    s->features = px;
    s->d = (lr_dataset){ .n = n, .dim = 16, .classes = 4, .type = LR_DATA_U8, .features = px,
                         .labels = s->labels, .norm = { true, 255.0f, 0.3f, 0.3f } };
}

typedef struct { size_t calls, last_step, total; float last_avg; } progress_t;
static void on_progress(void *ctx, size_t step, size_t total, float avg)
{
    progress_t *p = ctx;
    p->calls++;
    assert_true(step > p->last_step && step <= total);
    p->last_step = step, p->total = total, p->last_avg = avg;
}

static void run(const lr_dataset *data, const lr_dataset *held_out, float *params_out, float *curve,
                size_t ncurve, lr_train_result *res, double *acc)
{
    lr_mlp net;
    assert_int_equal(lr_mlp_init(&net, (size_t[]){ 6, 32, 16, 5 }, 4, NULL), LR_OK);
    lr_rng r;
    lr_rng_seed(&r, 7);
    lr_mlp_reset_params(&net, &r);
    lr_train_opts o = lr_train_opts_default();
    o.seed = 42;
    o.epochs = 3;
    o.adam.lr = 1e-2;
    o.record_loss_curve = true;
    lr_err e;
    lr_train_result full;
    assert_int_equal(lr_train(&net, &full, data, &o, &e), LR_OK);
    assert_int_equal(full.steps, ncurve);
    memcpy(curve, full.loss_curve, ncurve * sizeof *curve);
    *res = full;
    res->loss_curve = NULL;
    lr_train_result_free(&full);
    assert_null(full.loss_curve);
    assert_int_equal(full.steps, 0);
    lr_train_result_free(&full); /* twice: a no-op */
    lr_eval_result er;
    assert_int_equal(lr_eval(&net, &er, held_out, 0, &e), LR_OK);
    *acc = er.accuracy;
    memcpy(params_out, net.params, net.n_params * sizeof(float));
    lr_mlp_free(&net);
}

static void test_float_features_learned_and_repeat_exactly(void **state)
{
    (void)state;
    synth_t tr, te;
    blobs(&tr, 300, 1);
    blobs(&te, 200, 2);
    size_t np = lr_mlp_count_params((size_t[]){ 6, 32, 16, 5 }, 4);
    float *p1 = malloc(np * 4), *p2 = malloc(np * 4), c1[90], c2[90];
    lr_train_result r1, r2;
    double acc1, acc2;
    run(&tr.d, &te.d, p1, c1, 90, &r1, &acc1);
    run(&tr.d, &te.d, p2, c2, 90, &r2, &acc2);
    assert_int_equal(r1.steps, 90); /* 3 epochs of 30 batches of 10 */
    assert_int_equal(r1.examples, 900);
    assert_memory_equal(p1, p2, np * 4);
    assert_memory_equal(c1, c2, sizeof c1);
    double first = 0, last = 0;
    for (int i = 0; i < 10; i++) first += c1[i], last += c1[80 + i];
    assert_true(last < 0.5 * first);
    assert_true(acc1 > 0.95); /* blobs 6 sigma apart: a learned net separates them */
    assert_allclose(r1.last_loss, c1[89], 0, 0);
    double mean = 0;
    for (int i = 0; i < 90; i++) mean += c1[i];
    assert_allclose(r1.avg_loss, mean / 90, 1e-6, 0);
    synth_free(&tr), synth_free(&te);
    free(p1), free(p2);
}

/* lr_train is lr_mlp_train_step over lr_rng_permutation's batches, bit for bit: what a
 * caller writing the loop by hand gets. 305 examples: batches of 10 and a last one of 5,
 * over 2 epochs. */
static void test_train_equals_plain_steps(void **state)
{
    (void)state;
    synth_t s;
    images(&s, 305, 3);
    const size_t sizes[4] = { 16, 32, 16, 4 };
    lr_mlp a, b;
    assert_int_equal(lr_mlp_init(&a, sizes, 4, NULL), LR_OK);
    assert_int_equal(lr_mlp_init(&b, sizes, 4, NULL), LR_OK);
    lr_rng r;
    lr_rng_seed(&r, 8);
    lr_mlp_reset_params(&a, &r);
    memcpy(b.params, a.params, a.n_params * sizeof(float));
    lr_train_opts o = lr_train_opts_default();
    o.seed = 5;
    o.epochs = 2;
    lr_train_result res;
    assert_int_equal(lr_train(&a, &res, &s.d, &o, NULL), LR_OK);
    lr_rng_seed(&r, o.seed);
    size_t perm[305];
    float x[10 * 16], loss;
    uint8_t y[10];
    size_t steps = 0;
    for (size_t e = 0; e < 2; e++) {
        lr_rng_permutation(&r, perm, s.d.n);
        for (size_t b0 = 0; b0 < s.d.n; b0 += 10) {
            size_t bs = s.d.n - b0 < 10 ? s.d.n - b0 : 10;
            lr_dataset_batch(&s.d, x, y, perm + b0, bs);
            assert_int_equal(lr_mlp_train_step(&b, &loss, x, y, NULL, bs, &o.adam, NULL), LR_OK);
            steps++;
        }
    }
    assert_int_equal(res.steps, steps);
    assert_memory_equal(a.params, b.params, a.n_params * sizeof(float));
    lr_mlp_free(&a);
    lr_mlp_free(&b);
    synth_free(&s);
}

static void test_label_subset_step_limit_progress(void **state)
{
    (void)state;
    synth_t s;
    images(&s, 200, 2);
    size_t n2 = 0;
    for (size_t i = 0; i < s.d.n; i++) n2 += s.labels[i] == 2;
    size_t rows[200];
    lr_dataset two;
    assert_int_equal(lr_dataset_select_label(&s.d, &two, rows, 2, NULL), LR_OK);
    assert_int_equal(two.n, n2);
    for (size_t i = 0; i < two.n; i++) assert_int_equal(s.labels[two.rows[i]], 2);
    lr_mlp net;
    assert_int_equal(lr_mlp_init(&net, (size_t[]){ 16, 8, 4 }, 3, NULL), LR_OK);
    lr_rng r;
    lr_rng_seed(&r, 1);
    lr_mlp_reset_params(&net, &r);
    lr_train_opts o = lr_train_opts_default();
    size_t steps;
    assert_int_equal(lr_train_count_steps(&steps, &two, &o, NULL), LR_OK);
    assert_int_equal(steps, (n2 + 9) / 10);
    size_t steps_def = 0; /* NULL options: the defaults */
    assert_int_equal(lr_train_count_steps(&steps_def, &two, NULL, NULL), LR_OK);
    assert_int_equal(steps_def, steps);
    o.max_steps = 3;
    assert_int_equal(lr_train_count_steps(&steps, &two, &o, NULL), LR_OK);
    assert_int_equal(steps, 3);
    progress_t pr = { 0 };
    o.progress = on_progress;
    o.progress_ctx = &pr;
    o.progress_every = 2;
    lr_train_result res;
    assert_int_equal(lr_train(&net, &res, &two, &o, NULL), LR_OK);
    assert_int_equal(res.steps, 3);
    assert_int_equal(res.examples, 30);
    assert_int_equal(pr.calls, 2); /* step 2, and the last step 3 */
    assert_int_equal(pr.last_step, 3);
    assert_int_equal(pr.total, 3);
    assert_allclose(pr.last_avg, res.avg_loss, 1e-6, 0);
    assert_null(res.loss_curve); /* not asked for */
    assert_int_equal(net.adam_t, 3); /* fresh Adam state per run */
    /* a batch larger than the set: one short batch per epoch */
    o.batch = 1000;
    o.max_steps = 0;
    o.progress = NULL;
    assert_int_equal(lr_train(&net, &res, &two, &o, NULL), LR_OK);
    assert_int_equal(res.steps, 1);
    assert_int_equal(res.examples, n2);
    lr_mlp_free(&net);
    synth_free(&s);
}

typedef struct { size_t calls, last, stop_at; } hook_t;
static lr_status on_step(void *ctx, lr_mlp *net, size_t step, lr_err *err)
{
    hook_t *h = ctx;
    (void)net;
    h->calls++;
    assert_int_equal(step, h->last + 1); /* 1, 2, 3, ... */
    h->last = step;
    if (step == h->stop_at) {
        snprintf(err->msg, sizeof err->msg, "stopped at %zu", step);
        return LR_EINVAL;
    }
    return LR_OK;
}

/* Rehearsal: fine-tuning on one class forgets the others, and replaying them keeps them. The
 * after-step hook sees every step and can stop the run. */
static void test_replay_and_after_step(void **state)
{
    (void)state;
    synth_t s;
    blobs(&s, 600, 4);
    size_t rows0[600], rows_other[600], no = 0;
    lr_dataset zero, other = s.d;
    assert_int_equal(lr_dataset_select_label(&s.d, &zero, rows0, 0, NULL), LR_OK);
    for (size_t i = 0; i < s.d.n; i++)
        if (s.labels[i] != 0) rows_other[no++] = i;
    other.rows = rows_other, other.n = no, other.stored = s.d.n;
    double acc[3];
    static float soft[600 * 5];
    for (int replay = 0; replay < 3; replay++) { /* none, rehearsal, distillation alone */
        lr_mlp net;
        assert_int_equal(lr_mlp_init(&net, (size_t[]){ 6, 16, 5 }, 3, NULL), LR_OK);
        lr_rng r;
        lr_rng_seed(&r, 3);
        lr_mlp_reset_params(&net, &r);
        lr_train_opts o = lr_train_opts_default();
        o.epochs = 3;
        assert_int_equal(lr_train(&net, NULL, &s.d, &o, NULL), LR_OK); /* learn all 5 classes */
        if (replay == 2) { /* the teacher: this net's softmax on the other classes */
            static float x[600 * 6];
            lr_dataset_range(&other, x, NULL, 0, other.n);
            assert_int_equal(lr_mlp_forward(&net, soft, x, other.n, NULL, NULL), LR_OK);
            for (size_t i = 0; i < other.n; i++) {
                float *p = soft + i * 5, mx = p[0], sum = 0;
                for (int c = 1; c < 5; c++) mx = p[c] > mx ? p[c] : mx;
                for (int c = 0; c < 5; c++) sum += (p[c] = expf(p[c] - mx));
                for (int c = 0; c < 5; c++) p[c] /= sum;
            }
            o.replay_soft = soft;
            o.replay_label_weight = 0; /* the labels of the other classes are not used */
        }
        o.epochs = 20;                                                   /* then only class 0 */
        o.adam.lr = 0.01f;
        o.replay = replay ? &other : NULL;
        o.replay_per_batch = replay ? 5 : 0;
        hook_t h = { 0, 0, 0 };
        o.after_step = on_step, o.after_step_ctx = &h;
        size_t steps;
        assert_int_equal(lr_train_count_steps(&steps, &zero, &o, NULL), LR_OK);
        assert_int_equal(steps, 20 * ((zero.n + (replay ? 4 : 9)) / (replay ? 5 : 10)));
        lr_train_result res;
        assert_int_equal(lr_train(&net, &res, &zero, &o, NULL), LR_OK);
        assert_int_equal(h.calls, steps);
        assert_int_equal(res.steps, steps);
        lr_eval_result ev;
        assert_int_equal(lr_eval(&net, &ev, &other, 100, NULL), LR_OK);
        acc[replay] = (double)ev.correct / (double)other.n;
        if (replay == 1) { /* the hook stops a run */
            h = (hook_t){ 0, 0, 4 };
            lr_err e;
            assert_int_equal(lr_train(&net, &res, &zero, &o, &e), LR_EINVAL);
            assert_int_equal(res.steps, 3);
            assert_string_equal(e.msg, "stopped at 4");
        }
        lr_mlp_free(&net);
    }
    print_message("accuracy on the other classes after 20 epochs of class 0: %.3f alone, %.3f with replay, "
                  "%.3f with distillation\n", acc[0], acc[1], acc[2]);
    assert_true(acc[0] < 0.5);  /* forgotten */
    assert_true(acc[1] > 0.9);  /* kept */
    assert_true(acc[2] > 0.9);  /* kept, without their labels */
    /* bad replay options */
    lr_train_opts o = lr_train_opts_default();
    lr_mlp net;
    assert_int_equal(lr_mlp_init(&net, (size_t[]){ 6, 4, 5 }, 3, NULL), LR_OK);
    o.replay_per_batch = 2;
    assert_int_equal(lr_train(&net, NULL, &zero, &o, NULL), LR_EINVAL);
    o.replay = &other, o.replay_per_batch = 10;
    lr_err e;
    assert_int_equal(lr_train(&net, NULL, &zero, &o, &e), LR_EINVAL);
    assert_non_null(strstr(e.msg, "no room"));
    lr_mlp_free(&net);
    synth_free(&s);
}

typedef struct { size_t setup, sums, agrees, floats; } reduce_count;

/* A one-process stand-in for dist.h's reduce: the sum over one process is its own buffer. */
static lr_status count_reduce(void *ctx, float *buf, size_t n, lr_status local, lr_err *err)
{
    reduce_count *c = ctx;
    (void)err;
    if (n == 0 && c->sums == 0 && c->agrees == 0 && c->setup == 0) c->setup++;
    else if (n == 0) c->agrees++;
    else c->sums++, c->floats = n, assert_non_null(buf);
    return local;
}

static lr_status nop_step(void *ctx, lr_mlp *net, size_t step, lr_err *err)
{
    (void)ctx, (void)net, (void)step, (void)err;
    return LR_OK;
}

/* shards: each batch's slices taken apart and summed (what a data-parallel run computes) stay
 * within rounding of the fused step, repeat bit for bit, and call a reduce in the order
 * train.h gives: one set-up agreement, one sum a step, one agreement after each hook. */
static void test_shards(void **state)
{
    (void)state;
    synth_t s;
    images(&s, 305, 3);
    lr_mlp net[3];
    float *p[3];
    for (int k = 0; k < 3; k++) {
        assert_int_equal(lr_mlp_init(&net[k], (size_t[]){ 16, 12, 4 }, 3, NULL), LR_OK);
        lr_rng r;
        lr_rng_seed(&r, 8);
        lr_mlp_reset_params(&net[k], &r);
        lr_train_opts o = lr_train_opts_default();
        o.epochs = 2, o.seed = 4, o.adam.lr = 1e-2;
        o.shards = k == 0 ? 0 : 3; /* fused, then 3 slices twice (10 = 4 + 3 + 3, last batch 5 = 2 + 2 + 1) */
        if (k == 2) assert_int_equal(lr_mlp_set_threads(&net[k], 2, NULL), LR_OK); /* the same bits */
        assert_int_equal(lr_train(&net[k], NULL, &s.d, &o, NULL), LR_OK);
        p[k] = net[k].params;
    }
    size_t np = net[0].n_params;
    assert_memory_equal(p[1], p[2], np * sizeof(float));
    assert_mat_allclose(lr_cmat_view(p[0], 1, np, np), lr_cmat_view(p[1], 1, np, np), 1e-4, 1e-5);
    /* more slices than rows: the empty ones add nothing */
    lr_train_opts o = lr_train_opts_default();
    o.shards = 25, o.max_steps = 3;
    assert_int_equal(lr_train(&net[1], NULL, &s.d, &o, NULL), LR_OK);
    /* the reduce protocol */
    reduce_count c = { 0, 0, 0, 0 };
    o = lr_train_opts_default();
    o.max_steps = 7, o.reduce = count_reduce, o.reduce_ctx = &c, o.after_step = nop_step;
    assert_int_equal(lr_train(&net[2], NULL, &s.d, &o, NULL), LR_OK);
    assert_int_equal(c.setup, 1);
    assert_int_equal(c.sums, 7);
    assert_int_equal(c.agrees, 7);
    assert_int_equal(c.floats, lr_mlp_grad_size(&net[2]) + 1);
    o.shard = 1; /* of 1 */
    lr_err e;
    assert_int_equal(lr_train(&net[2], NULL, &s.d, &o, &e), LR_EINVAL);
    assert_string_equal(e.msg, "lr_train: shard 1 of 1 does not exist");
    for (int k = 0; k < 3; k++) lr_mlp_free(&net[k]);
    synth_free(&s);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    synth_t s;
    images(&s, 20, 3);
    lr_mlp net;
    assert_int_equal(lr_mlp_init(&net, (size_t[]){ 16, 4 }, 2, NULL), LR_OK);
    lr_train_opts o = lr_train_opts_default();
    lr_err e;
    assert_int_equal(lr_train(NULL, NULL, &s.d, &o, &e), LR_EINVAL);
    assert_int_equal(lr_train(&net, NULL, NULL, &o, &e), LR_EINVAL);
    { /* NULL options: the defaults, the same bits as passing them */
        lr_mlp n1, n2;
        assert_int_equal(lr_mlp_init(&n1, (size_t[]){ 16, 4 }, 2, NULL), LR_OK);
        assert_int_equal(lr_mlp_init(&n2, (size_t[]){ 16, 4 }, 2, NULL), LR_OK);
        assert_int_equal(lr_train(&n1, NULL, &s.d, NULL, &e), LR_OK);
        assert_int_equal(lr_train(&n2, NULL, &s.d, &o, &e), LR_OK);
        assert_memory_equal(n1.params, n2.params, n1.n_params * sizeof *n1.params);
        lr_mlp_free(&n1), lr_mlp_free(&n2);
    }
    o.batch = 0;
    assert_int_equal(lr_train(&net, NULL, &s.d, &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "batch size is 0");
    o = lr_train_opts_default();
    size_t rows[20];
    lr_dataset none;
    s.labels[0] = 3;
    for (size_t i = 1; i < 20; i++) s.labels[i] = s.labels[i] == 3 ? 0 : s.labels[i];
    assert_int_equal(lr_dataset_select_label(&s.d, &none, rows, 3, &e), LR_OK);
    s.labels[0] = 0;
    assert_int_equal(lr_dataset_select_label(&s.d, &none, rows, 3, &e), LR_OK);
    assert_int_equal(none.n, 0);
    assert_int_equal(lr_train(&net, NULL, &none, &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "no examples");
    o.adam.lr = -1; /* named as the caller wrote it, before anything runs */
    assert_int_equal(lr_train(&net, NULL, &s.d, &o, &e), LR_EINVAL);
    assert_msg_contains(e.msg, "lr_train: opts->adam: lr -1,");
    o.adam = lr_adam_opts_default();
    o.record_loss_curve = true; /* a failed run leaves no curve */
    lr_train_result res = { .loss_curve = NULL };
    s.labels[3] = 4;
    assert_int_equal(lr_train(&net, &res, &s.d, &o, &e), LR_ERANGE);
    assert_null(res.loss_curve);
    s.labels[3] = 0;
    o.record_loss_curve = false;
    s.labels[3] = 4; /* 4 classes */
    assert_int_equal(lr_train(&net, NULL, &s.d, &o, &e), LR_ERANGE);
    assert_msg_contains(e.msg, "example 3: label 4 >= 4 classes");
    s.labels[3] = 0;
    s.d.classes = 5; /* more classes than the net's 4 outputs */
    assert_int_equal(lr_train(&net, NULL, &s.d, &o, &e), LR_EDIM);
    assert_msg_contains(e.msg, "5 classes, the net only 4 outputs");
    s.d.classes = 4;
    s.d.dim = 15;
    assert_int_equal(lr_train(&net, NULL, &s.d, &o, &e), LR_EDIM);
    assert_msg_contains(e.msg, "the net takes 16 inputs");
    s.d.dim = 16;
    size_t steps;
    assert_int_equal(lr_train_count_steps(NULL, &s.d, &o, &e), LR_EINVAL);
    assert_int_equal(lr_train_count_steps(&steps, &s.d, &o, &e), LR_OK);
    assert_int_equal(steps, 2);
    lr_mlp_free(&net);
    synth_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_float_features_learned_and_repeat_exactly),
        cmocka_unit_test(test_train_equals_plain_steps),
        cmocka_unit_test(test_label_subset_step_limit_progress),
        cmocka_unit_test(test_shards),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_replay_and_after_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
