/* test_misuse.c — table-driven API misuse across the public headers.
 *
 * Each row calls one public routine with one bad argument (a NULL pointer, a shape that
 * does not fit, an out-of-range option) and states the status it must return and a word
 * its message must contain. Every row runs twice: with an lr_err, and with err = NULL
 * (which must be allowed everywhere). A crash, LR_OK or a silent wrong code fails the row,
 * and the failure names it. The per-module tests check each routine's errors in depth;
 * this table checks that none of them forgets the basic contract of status.h.
 */
#include "lr_test.h"
#include <stdio.h>
#include <math.h>
#include "lowrank/lowrank.h"

typedef lr_status (*misuse_fn)(lr_err *err);

typedef struct {
    const char *what;   /* the misuse, as the failure message shows it */
    misuse_fn call;
    lr_status want;
    const char *needle; /* the message must contain this (case-sensitive) */
} misuse_row;

static float g_buf[64];

static lr_mat m_(size_t r, size_t c) { return lr_mat_view(g_buf, r, c, c); }
static lr_cmat c_(size_t r, size_t c) { return lr_cm(m_(r, c)); }

/* --- base --- */
static lr_status mat_init_null(lr_err *e) { return lr_mat_init(NULL, 2, 2, e); }
static lr_status mat_check_ld(lr_err *e) { return lr_mat_check(lr_cmat_view(g_buf, 2, 3, 2), "w", e); }
static lr_status mat_copy_shape(lr_err *e) { return lr_mat_copy(m_(2, 2), c_(2, 3), e); }
static lr_status mat_transpose_shape(lr_err *e) { return lr_mat_transpose(m_(2, 3), c_(2, 3), e); }
static lr_status mat_block_out(lr_err *e)
{
    lr_mat out;
    return lr_mat_block(m_(2, 2), &out, 1, 1, 2, 2, e);
}
static lr_status pool_threads_zero(lr_err *e)
{
    lr_pool p;
    return lr_pool_init(&p, 0, e);
}
static lr_status dataset_null(lr_err *e) { return lr_dataset_check(NULL, e); }
static lr_status dataset_no_features(lr_err *e)
{
    static const uint8_t lab[2] = { 0, 1 };
    lr_dataset d = { .n = 2, .dim = 4, .classes = 2, .type = LR_DATA_U8, .labels = lab };
    return lr_dataset_check(&d, e);
}

/* --- linalg --- */
static lr_status gemm_shape(lr_err *e) { return lr_gemm(m_(2, 2), 1, c_(2, 3), false, c_(2, 2), false, 0, e); }
static lr_status gemv_null(lr_err *e) { return lr_gemv(NULL, 1, c_(2, 2), false, g_buf, 0, e); }
static lr_status svd_s_null(lr_err *e) { return lr_svd_values(NULL, c_(2, 2), NULL, e); }
static lr_status svd_u_shape(lr_err *e) { return lr_svd(g_buf + 32, m_(3, 2), m_(2, 2), c_(2, 2), NULL, e); }
static lr_status usv_null(lr_err *e) { return lr_usv_from_svd(NULL, c_(2, 2), e); }
static lr_status rank_null(lr_err *e) { return lr_rank(NULL, NULL, c_(2, 2), NULL, e); }
static lr_status rank_tol_nan(lr_err *e)
{
    size_t r;
    lr_rank_opts o = { LR_TOL_ABS, NAN };
    return lr_rank(&r, NULL, c_(2, 2), &o, e);
}
static lr_status rsvd_rank_zero(lr_err *e)
{
    lr_rng rng;
    lr_rng_seed(&rng, 1);
    return lr_rsvd(g_buf + 32, m_(4, 0), m_(0, 4), c_(4, 4), 0, NULL, &rng, e);
}
static lr_status rsvd_rng_null(lr_err *e)
{
    return lr_rsvd(g_buf + 32, lr_mat_view(g_buf + 40, 4, 1, 1), lr_mat_view(g_buf + 48, 1, 4, 4),
                   c_(4, 4), 1, NULL, NULL, e);
}
static lr_status factor_rank_big(lr_err *e) { return lr_factor(m_(2, 3), m_(3, 2), c_(2, 2), 3, LR_SPLIT_US, e); }
static lr_status factor_init_null(lr_err *e) { return lr_factor_alloc(NULL, NULL, c_(2, 2), 1, LR_SPLIT_US, e); }
static lr_status approx_null(lr_err *e) { return lr_approx_predict(NULL, g_buf, 2, 1, e); }
static lr_status energy_target(lr_err *e)
{
    size_t r;
    return lr_approx_rank_for_energy(&r, g_buf, 2, 1.5, e);
}
static lr_status cost_null(lr_err *e) { return lr_cost_layer(NULL, 2, 2, 1, false, e); }
static lr_status cost_table_null(lr_err *e) { return lr_cost_table(NULL, NULL, NULL, 1, e); }

/* --- io --- */
static lr_status npy_load_null(lr_err *e) { return lr_npy_load(NULL, "x.npy", e); }
static lr_status npy_load_path_null(lr_err *e)
{
    lr_mat m;
    return lr_npy_load(&m, NULL, e);
}
static lr_status npy_missing(lr_err *e)
{
    lr_mat m;
    return lr_npy_load(&m, "/nonexistent/lowrank-misuse.npy", e);
}
static lr_status npy_mem_null(lr_err *e)
{
    lr_mat m;
    return lr_npy_load_mem(&m, NULL, 10, "buf", e);
}
static lr_status npy_save_path_null(lr_err *e) { return lr_npy_save(c_(2, 2), NULL, e); }
static lr_status npy_save_dir(lr_err *e) { return lr_npy_save(c_(2, 2), "/", e); }
static lr_status st_open_null(lr_err *e) { return lr_safetensors_open(NULL, "x", e); }
static lr_status st_mem_short(lr_err *e)
{
    lr_safetensors st;
    return lr_safetensors_from_memory(&st, g_buf, 3, "buf", e);
}
static lr_status st_write_null_names(lr_err *e)
{
    return lr_safetensors_write("/nonexistent/x.safetensors", NULL, 1, NULL, 0, e);
}
static lr_status idx_null(lr_err *e) { return lr_idx_read_labels(NULL, "x", 9, e); }
static lr_status idx_mem_null(lr_err *e)
{
    lr_mnist m;
    return lr_idx_images_from_memory(&m, NULL, 16, "buf", 28, 28, e);
}
static lr_status mnist_dir_split(lr_err *e)
{
    lr_mnist m;
    return lr_mnist_load_dir(&m, "/nonexistent", "valid", e);
}
static lr_status atomic_null(lr_err *e) { return lr_atomic_open(NULL, "x", e); }
static lr_status atomic_path_null(lr_err *e)
{
    lr_atomic_file af;
    return lr_atomic_open(&af, NULL, e);
}
static lr_status atomic_commit_null(lr_err *e) { return lr_atomic_commit(NULL, e); }

/* --- nn --- */
static lr_status mlp_init_null(lr_err *e) { return lr_mlp_init(NULL, lr_mlp_default_sizes, 4, e); }
static lr_status mlp_init_one_size(lr_err *e)
{
    lr_mlp net;
    return lr_mlp_init(&net, lr_mlp_default_sizes, 1, e);
}
static lr_status mlp_init_zero_size(lr_err *e)
{
    lr_mlp net;
    const size_t sizes[3] = { 4, 0, 2 };
    return lr_mlp_init(&net, sizes, 3, e);
}
static lr_status forward_null_net(lr_err *e) { return lr_mlp_forward(NULL, g_buf, g_buf, 1, NULL, e); }
static lr_status train_step_null(lr_err *e) { return lr_mlp_train_step(NULL, NULL, g_buf, NULL, NULL, 1, NULL, e); }
static lr_status train_null_data(lr_err *e)
{
    lr_train_opts o = lr_train_opts_default();
    return lr_train_count_steps(NULL, NULL, &o, e);
}
static lr_status xent_label(lr_err *e)
{
    float loss, logits[2] = { 0, 0 };
    const uint8_t lab[1] = { 2 };
    return lr_softmax_xent(&loss, NULL, logits, lab, 1, 2, e);
}
static lr_status eval_null(lr_err *e) { return lr_eval(NULL, NULL, NULL, 0, e); }
static lr_status eval_add_label(lr_err *e)
{
    lr_eval_result r = { 0 };
    float logits[2] = { 0, 1 };
    const uint8_t lab[1] = { 7 };
    return lr_eval_add(&r, logits, lab, 1, 2, e);
}
static lr_status linear_shape(lr_err *e) { return lr_linear_forward(m_(2, 3), c_(2, 4), c_(2, 4), NULL, e); }
static lr_status lora_weights_rank0(lr_err *e)
{
    lr_lora_weights lw;
    return lr_lora_weights_init(&lw, 0, 4, 4, 1.0f, e);
}
static lr_status checkpoint_load_null(lr_err *e) { return lr_checkpoint_load(NULL, "x", NULL, e); }
static lr_status checkpoint_save_null_path(lr_err *e)
{
    lr_mlp net;
    const size_t sizes[2] = { 2, 2 };
    lr_status s = lr_mlp_init(&net, sizes, 2, NULL);
    if (s != LR_OK) return LR_OK; /* makes the row fail visibly */
    s = lr_checkpoint_save(&net, NULL, NULL, e);
    lr_mlp_free(&net);
    return s;
}

/* --- lora --- */
static lr_status lora_init_null(lr_err *e) { return lr_lora_init(NULL, NULL, e); }
static lr_status lora_add_null(lr_err *e) { return lr_lora_insert(NULL, "a", NULL, e); }
static lr_status lora_targets_bad(lr_err *e)
{
    uint32_t mask;
    return lr_lora_parse_targets(&mask, "linear9", 3, e);
}
static lr_status lora_init_kind_bad(lr_err *e)
{
    lr_lora_initializer k;
    return lr_lora_parse_initializer(&k, "olora", e);
}
static lr_status lora_param_count_null(lr_err *e) { return lr_lora_param_count(NULL, NULL, 0, 0, 1, e); }
static lr_status adapter_save_null(lr_err *e) { return lr_adapter_save(NULL, "/tmp", "a", NULL, e); }
static lr_status adapter_load_null(lr_err *e) { return lr_adapter_load(NULL, "/tmp", "a", NULL, e); }

static const misuse_row rows[] = {
    { "lr_mat_init(NULL)", mat_init_null, LR_EINVAL, "NULL" },
    { "lr_mat_check with ld < cols", mat_check_ld, LR_EDIM, "w" },
    { "lr_mat_copy of another shape", mat_copy_shape, LR_EDIM, "2 x 3" },
    { "lr_mat_transpose into the same shape", mat_transpose_shape, LR_EDIM, "3 x 2" },
    { "lr_mat_block past the edge", mat_block_out, LR_EDIM, "outside" },
    { "lr_pool_init with 0 threads", pool_threads_zero, LR_EINVAL, "0" },
    { "lr_dataset_check(NULL)", dataset_null, LR_EINVAL, "NULL" },
    { "lr_dataset_check without features", dataset_no_features, LR_EINVAL, "features" },
    { "lr_gemm with inner dims 3 vs 2", gemm_shape, LR_EDIM, "2 x 3" },
    { "lr_gemv with y NULL", gemv_null, LR_EINVAL, "NULL" },
    { "lr_svd_values with s NULL", svd_s_null, LR_EINVAL, "NULL" },
    { "lr_svd with u (3,2) for a (2,2)", svd_u_shape, LR_EDIM, "u" },
    { "lr_usv_from_svd(NULL)", usv_null, LR_EINVAL, "NULL" },
    { "lr_rank with rank NULL", rank_null, LR_EINVAL, "NULL" },
    { "lr_rank with tol NaN", rank_tol_nan, LR_EINVAL, "tol" },
    { "lr_rsvd with r = 0", rsvd_rank_zero, LR_EINVAL, "r" },
    { "lr_rsvd with rng NULL", rsvd_rng_null, LR_EINVAL, "rng" },
    { "lr_factor with r > min(m,n)", factor_rank_big, LR_EINVAL, "r" },
    { "lr_factor_alloc(NULL, NULL)", factor_init_null, LR_EINVAL, "NULL" },
    { "lr_approx_predict(NULL)", approx_null, LR_EINVAL, "NULL" },
    { "lr_approx_rank_for_energy with target 1.5", energy_target, LR_EINVAL, "1.5" },
    { "lr_cost_layer(NULL)", cost_null, LR_EINVAL, "NULL" },
    { "lr_cost_table with layers NULL", cost_table_null, LR_EINVAL, "NULL" },
    { "lr_npy_load(NULL)", npy_load_null, LR_EINVAL, "NULL" },
    { "lr_npy_load with path NULL", npy_load_path_null, LR_EINVAL, "NULL" },
    { "lr_npy_load of a missing file", npy_missing, LR_EIO, "lowrank-misuse.npy" },
    { "lr_npy_load_mem with buf NULL", npy_mem_null, LR_EINVAL, "NULL" },
    { "lr_npy_save with path NULL", npy_save_path_null, LR_EINVAL, "NULL" },
    { "lr_npy_save to /", npy_save_dir, LR_EINVAL, "directory" },
    { "lr_safetensors_open(NULL)", st_open_null, LR_EINVAL, "NULL" },
    { "lr_safetensors_from_memory of 3 bytes", st_mem_short, LR_EFORMAT, "buf" },
    { "lr_safetensors_write with tensors NULL", st_write_null_names, LR_EINVAL, "NULL" },
    { "lr_idx_read_labels(NULL)", idx_null, LR_EINVAL, "NULL" },
    { "lr_idx_images_from_memory with buf NULL", idx_mem_null, LR_EINVAL, "NULL" },
    { "lr_mnist_load_dir with split \"valid\"", mnist_dir_split, LR_EINVAL, "valid" },
    { "lr_atomic_open(NULL)", atomic_null, LR_EINVAL, "NULL" },
    { "lr_atomic_open with path NULL", atomic_path_null, LR_EINVAL, "path is NULL" },
    { "lr_atomic_commit(NULL)", atomic_commit_null, LR_EINVAL, "not open" },
    { "lr_mlp_init(NULL)", mlp_init_null, LR_EINVAL, "NULL" },
    { "lr_mlp_init with one size", mlp_init_one_size, LR_EINVAL, "need 2" },
    { "lr_mlp_init with a layer of 0", mlp_init_zero_size, LR_EINVAL, "0" },
    { "lr_mlp_forward with net NULL", forward_null_net, LR_EINVAL, "NULL" },
    { "lr_mlp_train_step with net NULL", train_step_null, LR_EINVAL, "NULL" },
    { "lr_train_count_steps with data NULL", train_null_data, LR_EINVAL, "NULL" },
    { "lr_softmax_xent with label 2 of 2 classes", xent_label, LR_ERANGE, "label 2" },
    { "lr_eval(NULL)", eval_null, LR_EINVAL, "NULL" },
    { "lr_eval_add with label 7 of 2 classes", eval_add_label, LR_ERANGE, "label 7" },
    { "lr_linear_forward with y (2,3), w (2,4)", linear_shape, LR_EDIM, "want y" },
    { "lr_lora_weights_init with rank 0", lora_weights_rank0, LR_EINVAL, "rank" },
    { "lr_checkpoint_load(NULL)", checkpoint_load_null, LR_EINVAL, "NULL" },
    { "lr_checkpoint_save with path NULL", checkpoint_save_null_path, LR_EINVAL, "NULL" },
    { "lr_lora_init(NULL)", lora_init_null, LR_EINVAL, "NULL" },
    { "lr_lora_insert(NULL)", lora_add_null, LR_EINVAL, "NULL" },
    { "lr_lora_parse_targets(\"linear9\") on 3 layers", lora_targets_bad, LR_EINVAL, "linear9" },
    { "lr_lora_parse_initializer(\"olora\")", lora_init_kind_bad, LR_EINVAL, "olora" },
    { "lr_lora_param_count with sizes NULL", lora_param_count_null, LR_EINVAL, "NULL" },
    { "lr_adapter_save(NULL)", adapter_save_null, LR_EINVAL, "NULL" },
    { "lr_adapter_load(NULL)", adapter_load_null, LR_EINVAL, "NULL" },
};

static void test_every_row(void **st)
{
    (void)st;
    int bad = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const misuse_row *r = &rows[i];
        lr_err err;
        strcpy(err.msg, "");
        lr_status with = r->call(&err);
        lr_status without = r->call(NULL);
        if (with != r->want || without != r->want) {
            print_error("%s: got %s / %s (err NULL), want %s; message \"%s\"\n", r->what,
                        lr_status_str(with), lr_status_str(without), lr_status_str(r->want), err.msg);
            bad++;
        } else if (!err.msg[0] || !strstr(err.msg, r->needle)) {
            print_error("%s: message \"%s\" is empty or does not mention \"%s\"\n", r->what, err.msg,
                        r->needle);
            bad++;
        }
    }
    if (bad) fail_msg("%d of %zu misuse rows failed", bad, sizeof rows / sizeof rows[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_every_row) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
