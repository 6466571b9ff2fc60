/* atomicfile.c — temp file + fsync + rename + directory fsync (see atomicfile.h). */
#include "lowrank/io/atomicfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/internal.h"

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
    af->tmp_path = NULL;
    af->path = NULL;
    if (!path || !*path) return lr__fail(err, LR_EINVAL, "lr_atomic_open: empty path");
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
    if (fd < 0) {
        int e = errno;
        free(tmp);
        free(copy);
        return lr__fail(err, LR_EIO, "cannot create temp file for %s: %s", path, strerror(e));
    }
    /* mkstemp gives 0600; give the result the mode the user would expect */
    struct stat st;
    mode_t mode;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        mode = st.st_mode & 07777;
    } else {
        mode = 0666 & ~current_umask();
    }
    (void)fchmod(fd, mode); /* best effort: a mode we cannot set is no reason to fail */

    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(tmp);
        free(tmp);
        free(copy);
        return lr__fail(err, LR_EIO, "cannot open temp file for %s: %s", path, strerror(e));
    }
    af->f = f;
    af->tmp_path = tmp;
    af->path = copy;
    return LR_OK;
}

lr_status lr_atomic_commit(lr_atomic_file *af, lr_err *err)
{
    if (!af || !af->f || !af->tmp_path || !af->path)
        return lr__fail(err, LR_EINVAL, "lr_atomic_commit: file is not open");
    FILE *f = af->f;
    const char *what = NULL;
    int e = 0;

    if (fflush(f) != 0) { e = errno; what = "write"; }
    else if (ferror(f)) { e = EIO; what = "write"; }
    else if (fsync(fileno(f)) != 0) { e = errno; what = "fsync"; }
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
    if (rename(af->tmp_path, af->path) != 0) {
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
