/* test_atomicfile.c — crash-safe output: the old file survives every failure, no temp is left.
 *
 * Tests run as root in CI, where a read-only directory does not stop writes; failures are
 * therefore simulated in ways root cannot bypass: a missing directory, a directory in the
 * target's place (rename fails), RLIMIT_FSIZE (write fails with EFBIG) and /dev/full
 * (fflush fails with ENOSPC). The chmod case runs only for non-root users.
 */
#include "lr_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>
#include <sys/wait.h>

#include "lowrank/io/atomicfile.h"
#include "lowrank/base/rng.h"
#include "lowrank/io/npy.h"
#include "lowrank/io/safetensors.h"
#include "lowrank/lora/adapter.h"
#include "lowrank/lora/lora.h"
#include "lowrank/nn/checkpoint.h"
#include "lowrank/nn/mlp.h"

/* The atomic writer's test seam (lib/io/fault_internal.h). */
size_t lr__io_fault(size_t at, int err, int short_write);

static void assert_file_is(const char *path, const char *want)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char buf[256] = { 0 };
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    assert_int_equal(n, strlen(want));
    assert_string_equal(buf, want);
}

static void test_round_trip_and_replace(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "out.bin");
    lr_err err = { { 0 } };
    lr_atomic_file af = { 0 };

    assert_int_equal(lr_atomic_open(&af, p, &err), LR_OK);
    assert_non_null(af.f);
    /* the temp file is beside the target and hidden */
    assert_non_null(strstr(af.tmp_path, "/.out.bin.tmp-"));
    assert_int_equal(lr_test_hidden_entries(dir), 1);
    fputs("first", af.f);
    assert_int_equal(lr_atomic_commit(&af, &err), LR_OK);
    assert_null(af.f);
    assert_null(af.tmp_path);
    assert_file_is(p, "first");
    assert_int_equal(lr_test_hidden_entries(dir), 0);
    /* a new file gets 0666 & ~umask, as fopen would give (not mkstemp's 0600) */
    struct stat st0;
    assert_int_equal(stat(p, &st0), 0);
    mode_t mask = umask(027);
    umask(mask);
    assert_int_equal(st0.st_mode & 0777, 0666 & ~mask);

    /* replacing keeps the old file's mode */
    assert_int_equal(chmod(p, 0640), 0);
    assert_int_equal(lr_atomic_open(&af, p, &err), LR_OK);
    fputs("second", af.f);
    assert_int_equal(lr_atomic_commit(&af, &err), LR_OK);
    assert_file_is(p, "second");
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);

    /* abort and commit on a released handle are harmless / refused */
    lr_atomic_abort(&af);
    assert_int_equal(lr_atomic_commit(&af, &err), LR_EINVAL);
    lr_atomic_file zero = { 0 };
    lr_atomic_abort(&zero);
    lr_atomic_abort(NULL);

    /* a relative path (no directory part) works too */
    char *cwd = getcwd(NULL, 0);
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(lr_atomic_open(&af, "rel.txt", &err), LR_OK);
    fputs("rel", af.f);
    assert_int_equal(lr_atomic_commit(&af, &err), LR_OK);
    assert_int_equal(chdir(cwd), 0);
    free(cwd);
    char *rel = lr_test_path(dir, "rel.txt");
    assert_file_is(rel, "rel");
    free(rel);

    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

static void test_abort_keeps_old(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "keep.txt");
    lr_test_write_file(p, "old", 3);
    lr_atomic_file af = { 0 };
    assert_int_equal(lr_atomic_open(&af, p, NULL), LR_OK);
    fputs("new new new", af.f);
    lr_atomic_abort(&af);
    assert_null(af.f);
    assert_file_is(p, "old");
    assert_int_equal(lr_test_hidden_entries(dir), 0);
    lr_atomic_abort(&af); /* twice is fine */
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

static void test_missing_directory(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "no/such/dir/out.bin");
    lr_err err = { { 0 } };
    lr_atomic_file af = { 0 };
    assert_int_equal(lr_atomic_open(&af, p, &err), LR_EIO);
    assert_msg_contains(err.msg, p);
    assert_msg_contains(err.msg, strerror(ENOENT));
    assert_null(af.f);
    lr_atomic_abort(&af);
    assert_int_equal(lr_test_hidden_entries(dir), 0);

    assert_int_equal(lr_atomic_open(&af, "", &err), LR_EINVAL);
    assert_int_equal(lr_atomic_open(&af, NULL, &err), LR_EINVAL);
    assert_int_equal(lr_atomic_open(NULL, p, &err), LR_EINVAL);
    assert_int_equal(lr_atomic_open(&af, "somedir/", &err), LR_EINVAL);
    assert_msg_contains(err.msg, "somedir/");
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* A directory where the file should go: rename(2) fails at commit; nothing changes. */
static void test_rename_fails(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "target");
    assert_int_equal(mkdir(p, 0755), 0);
    char *inner = lr_test_path(p, "inside.txt");
    lr_test_write_file(inner, "old", 3);
    lr_err err = { { 0 } };
    lr_atomic_file af = { 0 };
    assert_int_equal(lr_atomic_open(&af, p, &err), LR_OK);
    fputs("new", af.f);
    assert_int_equal(lr_atomic_commit(&af, &err), LR_EIO);
    assert_msg_contains(err.msg, p);
    assert_msg_contains(err.msg, "rename");
    assert_null(af.f);
    assert_file_is(inner, "old");
    assert_int_equal(lr_test_hidden_entries(dir), 0);
    free(inner);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* A write that fails part-way (file size limit, as on a full disk): the old file stays. */
static void test_write_fails_fsize(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "big.bin");
    lr_test_write_file(p, "old", 3);
    lr_err err = { { 0 } };
    lr_atomic_file af = { 0 };
    assert_int_equal(lr_atomic_open(&af, p, &err), LR_OK);

    struct rlimit saved, small;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    small = saved;
    small.rlim_cur = 4096;
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    static char block[65536];
    memset(block, 7, sizeof block);
    fwrite(block, 1, sizeof block, af.f); /* the error is sticky; commit must see it */
    lr_status s = lr_atomic_commit(&af, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, oldsig);

    assert_int_equal(s, LR_EIO);
    assert_msg_contains(err.msg, p);
    assert_msg_contains(err.msg, "old file left unchanged");
    assert_file_is(p, "old");
    assert_int_equal(lr_test_hidden_entries(dir), 0);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* A buffered write that only fails at fflush (ENOSPC from /dev/full). */
static void test_write_fails_at_flush(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "full.bin");
    lr_test_write_file(p, "old", 3);
    lr_err err = { { 0 } };
    lr_atomic_file af = { 0 };
    assert_int_equal(lr_atomic_open(&af, p, &err), LR_OK);
    FILE *full = fopen("/dev/full", "wb");
    if (!full) {
        lr_atomic_abort(&af);
        free(p);
        lr_test_rmtree(dir);
        free(dir);
        skip();
    }
    fclose(af.f);
    af.f = full; /* the temp file still exists; commit must remove it */
    fputs("new", af.f);
    assert_int_equal(lr_atomic_commit(&af, &err), LR_EIO);
    assert_msg_contains(err.msg, strerror(ENOSPC));
    assert_file_is(p, "old");
    assert_int_equal(lr_test_hidden_entries(dir), 0);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

static void test_read_only_dir(void **state)
{
    (void)state;
    if (geteuid() == 0) skip(); /* root writes anyway; covered by the cases above */
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "ro.txt");
    lr_test_write_file(p, "old", 3);
    assert_int_equal(chmod(dir, 0555), 0);
    lr_err err = { { 0 } };
    lr_atomic_file af = { 0 };
    assert_int_equal(lr_atomic_open(&af, p, &err), LR_EIO);
    assert_msg_contains(err.msg, p);
    assert_msg_contains(err.msg, strerror(EACCES));
    chmod(dir, 0755);
    assert_file_is(p, "old");
    assert_int_equal(lr_test_hidden_entries(dir), 0);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* ---- every step of every write path, failed in turn ---- */

typedef struct {
    const char *dir;
    lr_mlp *net;
    lr_lora *lm;
    float *w;      /* 64 x 48 */
    int version;   /* bumped by each save, so old and new contents differ */
} wctx;

static lr_status save_npy(wctx *c, lr_err *e)
{
    char *p = lr_test_path(c->dir, "m.npy");
    c->w[0] = (float)++c->version;
    lr_status s = lr_npy_save(lr_cmat_view(c->w, 64, 48, 48), p, e);
    free(p);
    return s;
}

static lr_status save_st(wctx *c, lr_err *e)
{
    char *p = lr_test_path(c->dir, "t.safetensors"), v[16];
    snprintf(v, sizeof v, "%d", ++c->version);
    lr_st_tensor t[2] = { { "a", LR_ST_F32, 2, { 64, 48 }, c->w }, { "b", LR_ST_F32, 1, { 48 }, c->w } };
    lr_st_meta m[1] = { { "version", v } };
    lr_status s = lr_safetensors_write(p, t, 2, m, 1, e);
    free(p);
    return s;
}

static lr_status save_ckpt(wctx *c, lr_err *e)
{
    char *p = lr_test_path(c->dir, "c.safetensors");
    c->net->params[0] = (float)++c->version;
    lr_status s = lr_checkpoint_save(c->net, p, NULL, e);
    free(p);
    return s;
}

static lr_status save_adapter(wctx *c, lr_err *e)
{
    char *p = lr_test_path(c->dir, "ad"), base[16];
    snprintf(base, sizeof base, "v%d", ++c->version);
    lr_status s = lr_adapter_save(c->lm, p, "x", base, e);
    free(p);
    return s;
}

/* lr_st_writer: the tensors in reverse file order, the large one in three pieces. */
static lr_status save_st_pieces(wctx *c, lr_err *e)
{
    char *p = lr_test_path(c->dir, "p.safetensors"), v[16];
    snprintf(v, sizeof v, "%d", ++c->version);
    lr_st_tensor t[2] = { { "a", LR_ST_F32, 2, { 64, 48 }, NULL }, { "b", LR_ST_F32, 1, { 48 }, NULL } };
    lr_st_meta m[1] = { { "version", v } };
    lr_st_writer w;
    lr_status s = lr_st_writer_init(&w, p, t, 2, m, 1, e);
    if (!s) s = lr_st_writer_put(&w, "b", c->w, 48 * 4, e);
    if (!s) s = lr_st_writer_put(&w, "a", c->w, 1000 * 4, e);
    if (!s) s = lr_st_writer_put(&w, "a", c->w + 1000, 1072 * 4, e);
    if (!s) s = lr_st_writer_put(&w, "a", c->w + 2072, 1000 * 4, e);
    if (!s) s = lr_st_writer_commit(&w, e);
    lr_st_writer_free(&w);
    free(p);
    return s;
}

/* A raw atomic file synced (lr_atomic_sync) before more is written and it is committed. */
static lr_status save_synced(wctx *c, lr_err *e)
{
    char *p = lr_test_path(c->dir, "s.bin");
    lr_atomic_file af;
    lr_status s = lr_atomic_open(&af, p, e);
    free(p);
    if (s) return s;
    c->w[0] = (float)++c->version;
    fwrite(c->w, sizeof *c->w, 64 * 48, af.f);
    if ((s = lr_atomic_sync(&af, e))) return s; /* released on failure */
    fwrite(c->w, sizeof *c->w, 100, af.f);
    return lr_atomic_commit(&af, e);
}

/* The bytes of every regular file under dir (recursively), names included: a snapshot. */
static void snapshot(const char *dir, char **buf, size_t *n)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "cd '%s' && find . -type f | LC_ALL=C sort | while read f; do echo \"$f\"; cat \"$f\"; done",
             dir);
    FILE *pp = popen(cmd, "r");
    assert_non_null(pp);
    size_t cap = 1 << 16, k = 0, got;
    char *b = malloc(cap);
    while ((got = fread(b + k, 1, cap - k, pp)) > 0) {
        k += got;
        if (k == cap) b = realloc(b, cap *= 2);
    }
    pclose(pp);
    *buf = b;
    *n = k;
}

/* For each step k of one successful save: make step k fail (EIO, then ENOSPC) and check a
 * clear error, every old file byte for byte, and no temp file; make it a short write and
 * check the save still succeeds. Returns the steps a save takes. */
static size_t fail_every_step(wctx *c, lr_status (*save)(wctx *, lr_err *), const char *name)
{
    lr_err e = { { 0 } };
    assert_int_equal(save(c, &e), LR_OK); /* the old files */
    lr__io_fault(0, 0, 0);
    assert_int_equal(save(c, &e), LR_OK);
    size_t steps = lr__io_fault(0, 0, 0);
    assert_true(steps >= 4); /* create, write, fsync, close, rename at least */
    const int errs[2] = { EIO, ENOSPC };
    for (size_t k = 1; k <= steps; k++) {
        for (int m = 0; m < 3; m++) {
            char *before, *after;
            size_t nb, na;
            snapshot(c->dir, &before, &nb);
            lr__io_fault(k, m < 2 ? errs[m] : 0, m == 2);
            e.msg[0] = '\0';
            lr_status s = save(c, &e);
            lr__io_fault(0, 0, 0);
            snapshot(c->dir, &after, &na);
            if (m == 2) { /* a short write is no error: the rest is written */
                if (s != LR_OK) fail_msg("%s: step %zu short write: %s", name, k, e.msg);
            } else {
                if (s == LR_OK) fail_msg("%s: step %zu of %zu failed with %s but the save succeeded", name, k,
                                         steps, strerror(errs[m]));
                if (!e.msg[0]) fail_msg("%s: step %zu: no message", name, k);
                if (nb != na || memcmp(before, after, nb) != 0)
                    fail_msg("%s: step %zu (%s): the old files changed: %s", name, k, strerror(errs[m]), e.msg);
            }
            assert_int_equal(lr_test_hidden_entries(c->dir), 0);
            free(before);
            free(after);
        }
    }
    return steps;
}

static void test_every_write_step_fails_cleanly(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    lr_mlp net;
    lr_lora lm;
    const size_t sizes[3] = { 48, 32, 10 };
    assert_int_equal(lr_mlp_init(&net, sizes, 3, NULL), LR_OK);
    assert_int_equal(lr_lora_init(&lm, &net, NULL), LR_OK);
    lr_lora_opts o = lr_lora_opts_default();
    assert_int_equal(lr_lora_insert(&lm, "x", &o, NULL), LR_OK);
    float *w = calloc(64 * 48, sizeof *w);
    for (int i = 0; i < 64 * 48; i++) w[i] = (float)i;
    wctx c = { dir, &net, &lm, w, 0 };
    size_t n = fail_every_step(&c, save_npy, "lr_npy_save");
    n += fail_every_step(&c, save_st, "lr_safetensors_write");
    n += fail_every_step(&c, save_ckpt, "lr_checkpoint_save");
    n += fail_every_step(&c, save_adapter, "lr_adapter_save");
    n += fail_every_step(&c, save_st_pieces, "lr_st_writer");
    n += fail_every_step(&c, save_synced, "lr_atomic_sync");
    print_message("%zu fault points injected, 3 ways each\n", n);
    free(w);
    lr_lora_free(&lm);
    lr_mlp_free(&net);
    lr_test_rmtree(dir);
    free(dir);
}

/* kill -9 at random moments of large saves, 60 times: the target is always one complete
 * file, old or new, never a mix. (The temp file of a killed save may be left; it is
 * removed here, and formats.md says so.) */
/* files in dir whose name has ".tmp-" */
static size_t count_temps(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) n += strstr(e->d_name, ".tmp-") != NULL;
    if (d) closedir(d);
    return n;
}

static void make_file(const char *path, double age_s)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("partial", f);
    fclose(f);
    struct timespec t[2];
    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec -= (time_t)age_s;
    t[1] = t[0];
    assert_int_equal(utimensat(AT_FDCWD, path, t, 0), 0);
}

typedef struct { size_t seen, in_use; } clean_log;
static void on_stale(void *ctx, const lr_atomic_stale *s)
{
    clean_log *c = ctx;
    c->seen++;
    c->in_use += s->in_use;
}

/* lr_atomic_clean: by name, by age, by lock; never a file being written, never a link */
static void test_clean_stale(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *old = lr_test_path(dir, ".m.safetensors.tmp-AbC123"), *young = lr_test_path(dir, ".m.npy.tmp-xyz789"),
         *other = lr_test_path(dir, ".m.tmp-abc"), *plain = lr_test_path(dir, "m.tmp-ABCDEF"),
         *link = lr_test_path(dir, ".l.npy.tmp-LLLLLL"), *target = lr_test_path(dir, "keep.npy");
    make_file(old, 7200);
    make_file(young, 10);
    make_file(other, 7200);
    make_file(plain, 7200);
    make_file(target, 7200);
    assert_int_equal(symlink(target, link), 0);
    /* a writer in the middle of its save, its temp file made to look old */
    lr_atomic_file af;
    assert_int_equal(lr_atomic_open(&af, target, NULL), LR_OK);
    fputs("new", af.f);
    fflush(af.f);
    struct timespec t[2] = { { 0, UTIME_NOW }, { 0, UTIME_NOW } };
    t[0].tv_sec = t[1].tv_sec = time(NULL) - 7200;
    t[0].tv_nsec = t[1].tv_nsec = 0;
    assert_int_equal(utimensat(AT_FDCWD, af.tmp_path, t, 0), 0);

    clean_log log = { 0, 0 };
    size_t removed = 9;
    assert_int_equal(lr_atomic_clean(&removed, dir, 3600, true, on_stale, &log, NULL), LR_OK);
    assert_int_equal(removed, 0); /* dry run */
    assert_int_equal(log.seen, 2);
    assert_int_equal(log.in_use, 1);
    assert_int_equal(lr_atomic_clean(&removed, dir, 3600, false, NULL, NULL, NULL), LR_OK);
    assert_int_equal(removed, 1);
    assert_int_equal(access(old, F_OK), -1);       /* stale: removed */
    assert_int_equal(access(young, F_OK), 0);      /* too young */
    assert_int_equal(access(other, F_OK), 0);      /* not our naming */
    assert_int_equal(access(plain, F_OK), 0);
    assert_int_equal(access(link, F_OK), 0);       /* a link, whatever its name */
    assert_int_equal(access(af.tmp_path, F_OK), 0); /* being written */
    assert_int_equal(lr_atomic_commit(&af, NULL), LR_OK);
    assert_file_is(target, "new");
    assert_int_equal(lr_atomic_clean(&removed, dir, 0, false, NULL, NULL, NULL), LR_OK);
    assert_int_equal(removed, 1); /* the young one, at age 0 */
    lr_err e;
    assert_int_equal(lr_atomic_clean(NULL, old, 0, false, NULL, NULL, &e), LR_EIO);
    assert_non_null(strstr(e.msg, "cannot open directory"));
    assert_int_equal(lr_atomic_clean(NULL, dir, -1, false, NULL, NULL, NULL), LR_EINVAL);
    free(old), free(young), free(other), free(plain), free(link), free(target);
    lr_test_rmtree(dir);
    free(dir);
}

static void test_kill9_leaves_old_or_new(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir(), *p = lr_test_path(dir, "big.npy");
    enum { R = 512, C = 1024 }; /* 2 MB of data */
    float *v = malloc(R * C * sizeof *v);
    assert_non_null(v);
    unsigned char *img[2];
    size_t len[2];
    for (int k = 0; k < 2; k++) { /* the two contents, as files */
        for (size_t i = 0; i < (size_t)R * C; i++) v[i] = (float)(k + 1) + (float)i * 1e-7f;
        assert_int_equal(lr_npy_save(lr_cmat_view(v, R, C, C), p, NULL), LR_OK);
        img[k] = lr_test_read_file(p, &len[k]);
    }
    lr_rng rng;
    lr_rng_seed(&rng, 9);
    int seen[2] = { 0, 0 };
    size_t stale_total = 0;
    for (int round = 0; round < 60; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) { /* save the two contents in turn until killed */
            for (int k = 0;; k ^= 1) {
                for (size_t i = 0; i < (size_t)R * C; i++) v[i] = (float)(k + 1) + (float)i * 1e-7f;
                if (lr_npy_save(lr_cmat_view(v, R, C, C), p, NULL)) _exit(3);
            }
        }
        struct timespec ts = { 0, (long)lr_rng_below(&rng, 30) * 1000000L + 200000L };
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFSIGNALED(st)); /* killed in the middle of its work, not exited */
        size_t n;
        unsigned char *got = lr_test_read_file(p, &n);
        int which = n == len[0] && memcmp(got, img[0], n) == 0 ? 0 : n == len[1] && memcmp(got, img[1], n) == 0 ? 1 : -1;
        if (which < 0) fail_msg("round %d: big.npy is neither the old nor the new file (%zu bytes)", round, n);
        seen[which]++;
        free(got);
        /* the killed writer's temp file, if any, is stale now: its lock died with it */
        size_t removed = 9;
        assert_int_equal(lr_atomic_clean(&removed, dir, 0, false, NULL, NULL, NULL), LR_OK);
        assert_true(removed <= 1);
        stale_total += removed;
        assert_int_equal(count_temps(dir), 0);
    }
    print_message("lr_atomic_clean removed %zu stale temp files the kills left\n", stale_total);
    print_message("60 kills: old file %d times, new file %d times, never a mix\n", seen[0], seen[1]);
    free(img[0]);
    free(img[1]);
    free(v);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* ---- lr_atomic_sync: durable before the rename ---- */

static void assert_file_bytes(const char *path, const char *want)
{
    size_t n;
    unsigned char *b = lr_test_read_file(path, &n);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(b, want, n);
    free(b);
}

/* sync flushes what was written into the temp file and keeps it open: more can be written
 * and a later commit renames it; an abort after a sync leaves the old file. */
static void test_sync_then_commit_or_abort(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "s.txt");
    lr_test_write_file(p, "old", 3);
    lr_err err = { { 0 } };
    lr_atomic_file af = { 0 };

    assert_int_equal(lr_atomic_open(&af, p, &err), LR_OK);
    fputs("new", af.f);
    assert_int_equal(lr_atomic_sync(&af, &err), LR_OK);
    assert_non_null(af.f); /* still open */
    assert_non_null(af.tmp_path);
    assert_file_bytes(af.tmp_path, "new"); /* on disk, not in a buffer */
    assert_file_is(p, "old");              /* not renamed yet */
    assert_int_equal(lr_test_hidden_entries(dir), 1);
    fputs(" more", af.f);
    assert_int_equal(lr_atomic_sync(&af, &err), LR_OK); /* again */
    assert_file_bytes(af.tmp_path, "new more");
    assert_int_equal(lr_atomic_sync(&af, &err), LR_OK); /* nothing new: fine */
    fputs("!", af.f);
    assert_int_equal(lr_atomic_commit(&af, &err), LR_OK); /* what came after the sync too */
    assert_null(af.f);
    assert_file_is(p, "new more!");
    assert_int_equal(lr_test_hidden_entries(dir), 0);

    /* sync, then abort: the old file, no temp */
    assert_int_equal(lr_atomic_open(&af, p, &err), LR_OK);
    fputs("discarded", af.f);
    assert_int_equal(lr_atomic_sync(&af, &err), LR_OK);
    lr_atomic_abort(&af);
    assert_null(af.f);
    assert_null(af.tmp_path);
    assert_file_is(p, "new more!");
    assert_int_equal(lr_test_hidden_entries(dir), 0);

    /* a new file (no old one): sync creates nothing at the target */
    char *q = lr_test_path(dir, "fresh.txt");
    assert_int_equal(lr_atomic_open(&af, q, &err), LR_OK);
    fputs("fresh", af.f);
    assert_int_equal(lr_atomic_sync(&af, &err), LR_OK);
    assert_int_equal(access(q, F_OK), -1);
    assert_int_equal(lr_atomic_commit(&af, &err), LR_OK);
    assert_file_is(q, "fresh");

    /* several files synced before any is renamed (as a sharded save does) */
    lr_atomic_file a2[3];
    char *names[3];
    for (int i = 0; i < 3; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "shard%d", i);
        names[i] = lr_test_path(dir, nm);
        assert_int_equal(lr_atomic_open(&a2[i], names[i], &err), LR_OK);
        fprintf(a2[i].f, "part %d", i);
    }
    for (int i = 0; i < 3; i++) assert_int_equal(lr_atomic_sync(&a2[i], &err), LR_OK);
    for (int i = 0; i < 3; i++) assert_int_equal(access(names[i], F_OK), -1);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(lr_atomic_commit(&a2[i], &err), LR_OK);
        char want[16];
        snprintf(want, sizeof want, "part %d", i);
        assert_file_is(names[i], want);
        free(names[i]);
    }
    assert_int_equal(lr_test_hidden_entries(dir), 0);

    /* a closed af (zeroed, committed, aborted) or NULL: LR_EINVAL */
    lr_atomic_file zero = { 0 };
    err.msg[0] = 0;
    assert_int_equal(lr_atomic_sync(&zero, &err), LR_EINVAL);
    assert_true(err.msg[0] != 0);
    assert_int_equal(lr_atomic_sync(&af, &err), LR_EINVAL); /* committed above */
    assert_int_equal(lr_atomic_sync(NULL, &err), LR_EINVAL);
    assert_int_equal(lr_atomic_open(&af, p, &err), LR_OK);
    lr_atomic_abort(&af);
    assert_int_equal(lr_atomic_sync(&af, NULL), LR_EINVAL);
    assert_file_is(p, "new more!");
    free(q);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

/* A sync whose fsync fails (the fault seam), or whose buffered write fails: LR_EIO naming the
 * path and the error, af released as by an abort, the old file intact, no temp file. */
static void test_sync_fails(void **state)
{
    (void)state;
    char *dir = lr_test_tmpdir();
    char *p = lr_test_path(dir, "f.txt");
    lr_test_write_file(p, "old", 3);
    lr_err err = { { 0 } };
    lr_atomic_file af = { 0 };
    const int errs[2] = { EIO, ENOSPC };
    for (int w = 0; w < 2; w++)
        for (int m = 0; m < 2; m++) {
            assert_int_equal(lr_atomic_open(&af, p, &err), LR_OK);
            fputs("new", af.f);
            if (w == 0) {
                /* the data already handed to the file: the next disk step is sync's fsync */
                assert_int_equal(fflush(af.f), 0);
            }
            /* w == 1: the next step is sync's write of the buffered "new" */
            lr__io_fault(1, errs[m], 0);
            err.msg[0] = 0;
            lr_status s = lr_atomic_sync(&af, &err);
            lr__io_fault(0, 0, 0);
            assert_int_equal(s, LR_EIO);
            assert_msg_contains(err.msg, p);
            assert_msg_contains(err.msg, strerror(errs[m]));
            assert_msg_contains(err.msg, w == 0 ? "fsync" : "write");
            assert_msg_contains(err.msg, "old file left unchanged");
            /* released: nothing left to commit or abort */
            assert_null(af.f);
            assert_null(af.tmp_path);
            assert_null(af.path);
            assert_int_equal(lr_atomic_commit(&af, &err), LR_EINVAL);
            lr_atomic_abort(&af);
            assert_file_is(p, "old");
            assert_int_equal(lr_test_hidden_entries(dir), 0);
        }

    /* a sync that succeeds, then a commit whose rename fails: still the old file */
    lr__io_fault(0, 0, 0);
    assert_int_equal(lr_atomic_open(&af, p, &err), LR_OK);
    fputs("new", af.f);
    assert_int_equal(lr_atomic_sync(&af, &err), LR_OK);
    /* the commit's steps now: fsync, close, rename (nothing left to write) */
    lr__io_fault(3, EIO, 0);
    lr_status s = lr_atomic_commit(&af, &err);
    size_t steps = lr__io_fault(0, 0, 0);
    assert_int_equal(s, LR_EIO);
    assert_int_equal(steps, 3);
    assert_msg_contains(err.msg, "rename");
    assert_file_is(p, "old");
    assert_int_equal(lr_test_hidden_entries(dir), 0);

    /* the steps of a sync after writing: one write and the fsync */
    assert_int_equal(lr_atomic_open(&af, p, &err), LR_OK);
    fputs("newer", af.f);
    lr__io_fault(0, 0, 0);
    assert_int_equal(lr_atomic_sync(&af, &err), LR_OK);
    assert_int_equal(lr__io_fault(0, 0, 0), 2);
    assert_int_equal(lr_atomic_commit(&af, &err), LR_OK);
    assert_file_is(p, "newer");
    assert_int_equal(lr_test_hidden_entries(dir), 0);
    free(p);
    lr_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_replace),
        cmocka_unit_test(test_abort_keeps_old),
        cmocka_unit_test(test_missing_directory),
        cmocka_unit_test(test_rename_fails),
        cmocka_unit_test(test_write_fails_fsize),
        cmocka_unit_test(test_write_fails_at_flush),
        cmocka_unit_test(test_read_only_dir),
        cmocka_unit_test(test_every_write_step_fails_cleanly),
        cmocka_unit_test(test_kill9_leaves_old_or_new),
        cmocka_unit_test(test_clean_stale),
        cmocka_unit_test(test_sync_then_commit_or_abort),
        cmocka_unit_test(test_sync_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
