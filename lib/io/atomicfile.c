/* atomicfile.c — temp file + fsync + rename + directory fsync (see atomicfile.h).
 *
 * Every step that touches the disk goes through fault_now(), a test seam (lr__io_fault):
 * the tests make the k-th step fail, for every k of a real save, and check that the old
 * file survives and no temp file is left. Writes reach the disk through a glibc
 * fopencookie() stream, so even the writes stdio makes on its own are steps. */
#define _GNU_SOURCE 1 /* fopencookie */
#include "lowrank/io/atomicfile.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/internal.h"
#include "io/fault_internal.h"

/* ---- the fault seam (tests only; off unless lr__io_fault armed it) ---- */
static atomic_size_t fault_count, fault_at;
static atomic_int fault_errno, fault_short;

size_t lr__io_fault(size_t at, int err, int short_write)
{
    size_t n = atomic_exchange(&fault_count, 0);
    atomic_store(&fault_errno, err);
    atomic_store(&fault_short, short_write);
    atomic_store(&fault_at, at);
    return n;
}

/* Counts one step: 0 go on, 1 fail it (errno is then set), 2 write only half (a write step
 * armed for a short write; other steps go on). */
static int fault_step(bool is_write)
{
    size_t k = atomic_fetch_add(&fault_count, 1) + 1, at = atomic_load(&fault_at);
    if (!at || k != at) return 0;
    if (atomic_load(&fault_short)) return is_write ? 2 : 0;
    errno = atomic_load(&fault_errno);
    return 1;
}

static bool fault_now(void) { return fault_step(false) == 1; }

/* What the temp file's stream writes through: its descriptor, and the errno of the first
 * failed write (stdio may report a failure later, when errno says something else). */
struct lr__atomic_io {
    int fd, err;
};

#if defined(__GLIBC__)
/* The stream: write(2) and close(2) behind fault_now(). Every buffer stdio hands over is
 * written in full (write(2) may take only part of it: a short write, which glibc would not
 * retry for a cookie stream), or the first error is kept in io->err and 0 is returned (a
 * cookie's write must not return a negative count: fopencookie(3)). An injected short
 * write writes half and goes on, as the real retry does. */
static ssize_t cookie_write(void *c, const char *buf, size_t n)
{
    struct lr__atomic_io *io = c;
    size_t done = 0;
    while (done < n) {
        size_t want = n - done;
        int f = fault_step(true);
        if (f == 1 || (f == 2 && want < 2)) {
            if (!io->err) io->err = f == 1 ? errno : EIO;
            return 0;
        }
        if (f == 2) want /= 2;
        ssize_t w = write(io->fd, buf + done, want);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (!io->err) io->err = w < 0 ? errno : EIO;
            errno = io->err;
            return 0;
        }
        done += (size_t)w;
    }
    return (ssize_t)n;
}

static int cookie_close(void *c)
{
    struct lr__atomic_io *io = c;
    int rc = close(io->fd), e = errno;
    if (fault_now()) return -1;
    errno = e;
    return rc;
}

/* Seeking (lr_st_writer puts each tensor at its own offset): not a disk step. */
static int cookie_seek(void *c, off64_t *off, int whence)
{
    struct lr__atomic_io *io = c;
    off64_t r = lseek64(io->fd, *off, whence);
    if (r < 0) return -1;
    *off = r;
    return 0;
}

static FILE *stream_of(struct lr__atomic_io *io)
{
    cookie_io_functions_t fns = { .read = NULL, .write = cookie_write, .seek = cookie_seek, .close = cookie_close };
    return fopencookie(io, "wb", fns);
}
#else
static FILE *stream_of(struct lr__atomic_io *io) { return fdopen(io->fd, "wb"); }
#endif

/* Directory part of path ("." when there is none), malloc'd. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (d) { memcpy(d, path, n); d[n] = '\0'; }
    return d;
}

/* The process umask. Linux shows it in /proc/self/status, which reads it without changing
 * it; elsewhere umask() must set and restore it, which races with threads creating files. */
static mode_t current_umask(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        unsigned m;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "Umask: %o", &m) == 1) {
                fclose(f);
                return (mode_t)(m & 0777);
            }
        fclose(f);
    }
    mode_t mask = umask(022);
    umask(mask);
    return mask;
}

static void release(lr_atomic_file *af)
{
    free(af->tmp_path);
    free(af->path);
    free(af->io);
    af->io = NULL;
    af->f = NULL;
    af->tmp_path = NULL;
    af->path = NULL;
}

/* fsync a directory so a rename in it is durable. Some filesystems refuse fsync on a
 * directory (EINVAL); there is nothing more to do on those, so that is not an error. */
static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && e == EINVAL) return 0;
    errno = e;
    return rc;
}

lr_status lr_atomic_open(lr_atomic_file *af, const char *path, lr_err *err)
{
    if (!af) return lr__fail(err, LR_EINVAL, "lr_atomic_open: af is NULL");
    af->f = NULL;
    af->io = NULL;
    af->tmp_path = NULL;
    af->path = NULL;
    if (!path || !*path) return lr__fail(err, LR_EINVAL, "lr_atomic_open: path is NULL or empty");
    size_t len = strlen(path);
    if (path[len - 1] == '/')
        return lr__fail(err, LR_EINVAL, "%s: is a directory name, expected a file name", path);

    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path) + 1 : 0; /* keeps the '/' */
    const char *base = path + dlen;
    /* "<dir>/." + base + ".tmp-XXXXXX" */
    size_t n = dlen + 1 + strlen(base) + 11 + 1;
    char *tmp = malloc(n);
    char *copy = strdup(path);
    if (!tmp || !copy) {
        free(tmp);
        free(copy);
        return lr__fail(err, LR_ENOMEM, "%s: out of memory", path);
    }
    memcpy(tmp, path, dlen);
    snprintf(tmp + dlen, n - dlen, ".%s.tmp-XXXXXX", base);

    int fd = mkstemp(tmp);
    if (fd >= 0 && fault_now()) { /* as if the create had failed */
        int e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
        fd = -1;
    }
    if (fd < 0) {
        int e = errno;
        free(tmp);
        free(copy);
        return lr__fail(err, LR_EIO, "cannot create temp file for %s: %s", path, strerror(e));
    }
    /* held while the file is being written, released by close or by the process dying: how
     * lr_atomic_clean tells a temp file in use from a stale one */
    (void)flock(fd, LOCK_EX | LOCK_NB);
    /* mkstemp gives 0600; give the result the mode the user would expect */
    struct stat st;
    mode_t mode;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        mode = st.st_mode & 07777;
    } else {
        mode = 0666 & ~current_umask();
    }
    (void)fchmod(fd, mode); /* best effort: a mode we cannot set is no reason to fail */

    struct lr__atomic_io *io = calloc(1, sizeof *io);
    FILE *f = NULL;
    if (io) {
        io->fd = fd;
        f = stream_of(io);
    }
    if (!f) {
        int e = io ? errno : ENOMEM;
        free(io);
        close(fd);
        unlink(tmp);
        free(tmp);
        free(copy);
        return lr__fail(err, LR_EIO, "cannot open temp file for %s: %s", path, strerror(e));
    }
    af->f = f;
    af->io = io;
    af->tmp_path = tmp;
    af->path = copy;
    return LR_OK;
}

lr_status lr_atomic_sync(lr_atomic_file *af, lr_err *err)
{
    if (!af || !af->f || !af->tmp_path || !af->path)
        return lr__fail(err, LR_EINVAL, "lr_atomic_sync: file is not open");
    const char *what = NULL;
    int e = 0;
    if (fflush(af->f) != 0 || ferror(af->f)) {
        e = af->io && af->io->err ? af->io->err : errno ? errno : EIO;
        what = "write";
    } else if (fault_now() || fsync(af->io ? af->io->fd : fileno(af->f)) != 0) {
        e = errno;
        what = "fsync";
    }
    if (!what) return LR_OK;
    lr_status s = lr__fail(err, LR_EIO, "cannot %s %s: %s (old file left unchanged)", what, af->path, strerror(e));
    lr_atomic_abort(af);
    return s;
}

lr_status lr_atomic_commit(lr_atomic_file *af, lr_err *err)
{
    if (!af || !af->f || !af->tmp_path || !af->path)
        return lr__fail(err, LR_EINVAL, "lr_atomic_commit: file is not open");
    FILE *f = af->f;
    const char *what = NULL;
    int e = 0;

    if (fflush(f) != 0 || ferror(f)) {
        e = af->io && af->io->err ? af->io->err : errno ? errno : EIO;
        what = "write";
    } else if (fault_now() || fsync(af->io ? af->io->fd : fileno(f)) != 0) {
        e = errno;
        what = "fsync";
    }
    int rc = fclose(f);
    af->f = NULL;
    if (!what && rc != 0) { e = errno; what = "close"; }
    if (what) {
        unlink(af->tmp_path);
        lr_status s = lr__fail(err, LR_EIO, "cannot %s %s: %s (old file left unchanged)", what,
                               af->path, strerror(e));
        release(af);
        return s;
    }
    if (fault_now() || rename(af->tmp_path, af->path) != 0) {
        e = errno;
        unlink(af->tmp_path);
        lr_status s = lr__fail(err, LR_EIO, "cannot rename temp file to %s: %s (old file left unchanged)",
                               af->path, strerror(e));
        release(af);
        return s;
    }
    char *dir = dir_of(af->path);
    lr_status s = LR_OK;
    if (!dir) {
        s = lr__fail(err, LR_ENOMEM, "%s: out of memory", af->path);
    } else if (fsync_dir(dir) != 0) {
        e = errno;
        s = lr__fail(err, LR_EIO, "%s written, but cannot fsync its directory %s: %s", af->path,
                     dir, strerror(e));
    }
    free(dir);
    release(af);
    return s;
}

void lr_atomic_abort(lr_atomic_file *af)
{
    if (!af) return;
    if (af->f) fclose(af->f);
    if (af->tmp_path) unlink(af->tmp_path);
    release(af);
}

/* ---- stale temp files ---- */

/* ".NAME.tmp-XXXXXX", NAME non-empty, X from mkstemp's alphabet */
static bool temp_name(const char *n)
{
    size_t len = strlen(n);
    if (len < 1 + 1 + 11 || n[0] != '.' || strncmp(n + len - 11, ".tmp-", 5) != 0) return false;
    for (size_t i = len - 6; i < len; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) return false;
    }
    return true;
}

/* One candidate: a regular file (not a link), old enough, and not locked by a writer. */
static void clean_one(const char *path, double min_age_s, bool dry_run, lr_atomic_stale_fn fn, void *ctx,
                      size_t *removed)
{
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) return;
    lr_atomic_stale s = { path, (uint64_t)st.st_size, difftime(time(NULL), st.st_mtime), false, false };
    if (s.age_s < min_age_s) return;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        s.in_use = true; /* a writer holds it: never touch */
    } else if (!dry_run) {
        s.removed = unlink(path) == 0;
        if (s.removed) (*removed)++;
    }
    close(fd);
    if (fn) fn(ctx, &s);
}

lr_status lr_atomic_clean(size_t *removed, const char *dir, double min_age_s, bool dry_run, lr_atomic_stale_fn fn,
                          void *ctx, lr_err *err)
{
    size_t none = 0;
    if (!removed) removed = &none;
    *removed = 0;
    if (!dir || !*dir) return lr__fail(err, LR_EINVAL, "lr_atomic_clean: dir is NULL or empty");
    if (!(min_age_s >= 0)) return lr__fail(err, LR_EINVAL, "lr_atomic_clean: age %g; need >= 0", min_age_s);
    DIR *d = opendir(dir);
    if (!d) return lr__fail(err, LR_EIO, "%s: cannot open directory: %s", dir, strerror(errno));
    struct dirent *e;
    size_t dl = strlen(dir);
    while ((e = readdir(d)) != NULL) {
        if (!temp_name(e->d_name)) continue;
        size_t n = dl + strlen(e->d_name) + 2;
        char *p = malloc(n);
        if (!p) {
            closedir(d);
            return lr__fail(err, LR_ENOMEM, "%s: out of memory", dir);
        }
        snprintf(p, n, "%s/%s", dir, e->d_name);
        clean_one(p, min_age_s, dry_run, fn, ctx, removed);
        free(p);
    }
    closedir(d);
    return LR_OK;
}
