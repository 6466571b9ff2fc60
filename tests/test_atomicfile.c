/* test_atomicfile.c — crash-safe output: the old file survives every failure, no temp is left.
 *
 * Tests run as root in CI, where a read-only directory does not stop writes; failures are
 * therefore simulated in ways root cannot bypass: a missing directory, a directory in the
 * target's place (rename fails), RLIMIT_FSIZE (write fails with EFBIG) and /dev/full
 * (fflush fails with ENOSPC). The chmod case runs only for non-root users.
 */
#include "lr_test.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lowrank/io/atomicfile.h"

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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
