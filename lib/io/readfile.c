/* readfile.c — opening an input file safely (see readfile.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/readfile.h"
#include "base/internal.h"

static const char *kind_of(mode_t m)
{
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO (named pipe)" : S_ISCHR(m) ? "a character device"
         : S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

lr_status lr__open_regular(FILE **f, struct stat *sb, const char *path, const char *what, lr_err *err)
{
    *f = NULL;
    if (!path || !*path) return lr__fail(err, LR_EINVAL, "empty path, expected %s", what);
    int fd = open(path, O_RDONLY | O_NONBLOCK); /* a FIFO without a writer does not block */
    if (fd < 0) return lr__fail(err, LR_EIO, "cannot open %s: %s", path, strerror(errno));
    if (fstat(fd, sb) != 0) {
        int e = errno;
        close(fd);
        return lr__fail(err, LR_EIO, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb->st_mode)) {
        close(fd);
        return lr__fail(err, LR_EIO, "%s: is %s, expected %s", path, kind_of(sb->st_mode), what);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl != -1) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    if (!(*f = fdopen(fd, "rb"))) {
        int e = errno;
        close(fd);
        return lr__fail(err, LR_EIO, "cannot open %s: %s", path, strerror(e));
    }
    return LR_OK;
}

lr_status lr__read_regular(unsigned char **buf, size_t *n, const char *path, const char *what, size_t max,
                           lr_err *err)
{
    *buf = NULL;
    *n = 0;
    FILE *f;
    struct stat sb;
    lr_status s = lr__open_regular(&f, &sb, path, what, err);
    if (s) return s;
    size_t size = (size_t)sb.st_size, got = 0;
    if (size > max) {
        fclose(f);
        return lr__fail(err, LR_EFORMAT, "%s: larger than %zu MiB, not %s", path, max >> 20, what);
    }
    unsigned char *b = malloc(size ? size : 1);
    if (!b) {
        fclose(f);
        return lr__fail(err, LR_ENOMEM, "%s: out of memory for %zu bytes", path, size);
    }
    int fd = fileno(f);
    while (got < size) {
        ssize_t r = read(fd, b + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            fclose(f);
            free(b);
            return lr__fail(err, LR_EIO, "cannot read %s: %s", path, strerror(e));
        }
        if (r == 0) break; /* shrank while we read: the caller's parser sees what is there */
        got += (size_t)r;
    }
    fclose(f);
    *buf = b;
    *n = got;
    return LR_OK;
}
