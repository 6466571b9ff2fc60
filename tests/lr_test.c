/* lr_test.c — implementations of the shared test helpers. */
#define _XOPEN_SOURCE 700
#include "lr_test.h"
#include "lowrank/lora/lora.h"
#include "lowrank/io/safetensors.h"
#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void lr_test_allclose(double got, double want, double rtol, double atol, const char *expr,
                      const char *file, int line)
{
    if (!(fabs(got - want) <= atol + rtol * fabs(want)) || isnan(got) != isnan(want)) {
        if (isnan(got) && isnan(want)) return;
        fprintf(stderr, "  %s = %.9g, expected %.9g (rtol %g, atol %g)\n", expr, got, want, rtol, atol);
        _fail(file, line);
    }
}

void lr_test_mat_allclose(lr_cmat got, lr_cmat want, double rtol, double atol, const char *expr,
                          const char *file, int line)
{
    if (got.rows != want.rows || got.cols != want.cols) {
        fprintf(stderr, "  %s is %zu x %zu, expected %zu x %zu\n", expr, got.rows, got.cols,
                want.rows, want.cols);
        _fail(file, line);
    }
    for (size_t i = 0; i < got.rows; i++)
        for (size_t j = 0; j < got.cols; j++) {
            double g = got.data[i * got.ld + j], w = want.data[i * want.ld + j];
            if (!(fabs(g - w) <= atol + rtol * fabs(w))) {
                fprintf(stderr, "  %s(%zu,%zu) = %.9g, expected %.9g (rtol %g, atol %g)\n", expr, i,
                        j, g, w, rtol, atol);
                _fail(file, line);
            }
        }
}

char *lr_test_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char buf[4096];
    snprintf(buf, sizeof buf, "%s/lowrank-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(buf)) fail_msg("mkdtemp %s failed", buf);
    return strdup(buf);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    chmod(p, 0700);
    return remove(p);
}

void lr_test_rmtree(const char *path)
{
    if (path) nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *lr_test_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

void lr_test_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s", path);
    if (n && fwrite(data, 1, n, f) != n) fail_msg("cannot write %s", path);
    fclose(f);
}

const char *lr_test_mnist_dir(void)
{
    static char buf[4096];
    const char *d = getenv("LR_MNIST_DIR");
    const char *names[] = { "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte" };
    if (!d || !*d) return NULL;
    for (int i = 0; i < 4; i++) {
        snprintf(buf, sizeof buf, "%s/%s", d, names[i]);
        if (access(buf, R_OK) != 0) return NULL;
    }
    snprintf(buf, sizeof buf, "%s", d);
    return buf;
}

unsigned char *lr_test_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (len < 0) fail_msg("cannot size %s", path);
    unsigned char *b = malloc((size_t)len + 1);
    if (!b) fail_msg("out of memory reading %s", path);
    if (fread(b, 1, (size_t)len, f) != (size_t)len) fail_msg("cannot read %s", path);
    fclose(f);
    *n = (size_t)len;
    return b;
}

int lr_test_hidden_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) fail_msg("cannot open directory %s", dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

double lr_test_svd_residual(lr_cmat a, const float *s, lr_cmat u, lr_cmat vt)
{
    size_t k = s ? u.cols : 0;
    double r = 0;
    for (size_t i = 0; i < a.rows; i++)
        for (size_t j = 0; j < a.cols; j++) {
            double t = a.data[i * a.ld + j];
            for (size_t p = 0; p < k; p++)
                t -= (double)u.data[i * u.ld + p] * s[p] * vt.data[p * vt.ld + j];
            r += t * t;
        }
    return sqrt(r);
}

void lr_test_randomize_lora_b(struct lr_lora *lm, const char *name, uint64_t seed)
{
    lr_rng rng;
    lr_rng_seed(&rng, seed);
    for (size_t i = 0; i < lr_lora_net(lm)->n_layers; i++) {
        lr_lora_weights *w = lr_lora_layer(lm, name, i);
        if (w) lr_rng_fill_normal(&rng, w->b, 0.0f, 0.5f);
    }
}

float *lr_test_randn(lr_rng *r, size_t n, float sd)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = sd * (float)lr_rng_normal(r);
    return p;
}

double *lr_test_to_double(const float *p, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof *d);
    assert_non_null(d);
    for (size_t i = 0; i < n; i++) d[i] = p[i];
    return d;
}

void **lr_test_st_fill(struct lr_safetensors *st, void *tv, size_t n)
{
    lr_st_tensor *t = tv;
    void **bufs = calloc(n ? n : 1, sizeof *bufs);
    assert_non_null(bufs);
    for (size_t i = 0; i < n; i++) {
        if (t[i].data || !lr_safetensors_find(st, t[i].name)) continue;
        size_t nb = 0;
        lr_err e;
        assert_int_equal(lr_st_tensor_nbytes(&t[i], &nb, &e), LR_OK);
        bufs[i] = malloc(nb ? nb : 1);
        if (lr_safetensors_get_bytes(st, bufs[i], t[i].name, 0, nb, &e)) fail_msg("%s", e.msg);
        t[i].data = bufs[i];
    }
    return bufs;
}

void lr_test_st_free(void **bufs, size_t n)
{
    for (size_t i = 0; bufs && i < n; i++) free(bufs[i]);
    free(bufs);
}
