/* lr_test.h — shared helpers for the cmocka tests (one test file per module). */
#ifndef LR_TEST_H
#define LR_TEST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdbool.h>
#include "lowrank/base/mat.h"
#include "lowrank/base/rng.h"

/* Fails the test unless |got - want| <= atol + rtol*|want| (numpy's allclose). */
void lr_test_allclose(double got, double want, double rtol, double atol, const char *expr,
                      const char *file, int line);
#define assert_allclose(got, want, rtol, atol) \
    lr_test_allclose((got), (want), (rtol), (atol), #got, __FILE__, __LINE__)

/* Element-wise allclose over two matrices, naming the first bad entry. */
void lr_test_mat_allclose(lr_cmat got, lr_cmat want, double rtol, double atol, const char *expr,
                          const char *file, int line);
#define assert_mat_allclose(got, want, rtol, atol) \
    lr_test_mat_allclose((got), (want), (rtol), (atol), #got, __FILE__, __LINE__)

/* Fails unless the message contains `needle` (errors must name the problem). */
#define assert_msg_contains(msg, needle)                                              \
    do {                                                                              \
        if (!strstr((msg), (needle)))                                                 \
            fail_msg("message \"%s\" does not mention \"%s\"", (msg), (needle));     \
    } while (0)

/* A fresh empty directory under $TMPDIR (or /tmp) for files a test writes;
 * removed with everything in it by lr_test_rmtree. Returns a static-free malloc'd path. */
char *lr_test_tmpdir(void);
void lr_test_rmtree(const char *path);
/* path = dir + "/" + name, malloc'd. */
char *lr_test_path(const char *dir, const char *name);
/* Writes n bytes to path (creating or truncating); fails the test on error. */
void lr_test_write_file(const char *path, const void *data, size_t n);

/* The whole file, malloc'd (one extra byte, so an empty file gives a valid pointer); fails
 * the test if it cannot be read. *n <- its length. */
unsigned char *lr_test_read_file(const char *path, size_t *n);
/* Entries in dir whose name starts with '.' (other than . and ..): leftover temp files. */
int lr_test_hidden_entries(const char *dir);

/* ‖a − u·diag(s)·vt‖_F in double; k = u.cols terms (none when s is NULL). */
double lr_test_svd_residual(lr_cmat a, const float *s, lr_cmat u, lr_cmat vt);

/* Gives every B of LoRA adapter `name` on lm N(0, 0.5²) entries (seeded), so that ΔW != 0. */
struct lr_lora;
void lr_test_randomize_lora_b(struct lr_lora *lm, const char *name, uint64_t seed);

/* n floats drawn N(0, sd²) from r, malloc'd (the caller frees); fails the test if out of memory. */
float *lr_test_randn(lr_rng *r, size_t n, float sd);
/* A malloc'd double copy of p[0..n). */
double *lr_test_to_double(const float *p, size_t n);

/* MNIST directory from $LR_MNIST_DIR, or NULL when the four files are not there. */
const char *lr_test_mnist_dir(void);

#include <string.h>
/* Reads the bytes of every t[i] whose data is NULL (tensors copied from an open file) from
 * st, for rewriting them; returns the buffers to pass to lr_test_st_free. */
struct lr_safetensors;
void **lr_test_st_fill(struct lr_safetensors *st, void *t, size_t n);
void lr_test_st_free(void **bufs, size_t n);

#endif
