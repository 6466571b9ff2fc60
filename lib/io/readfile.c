/* readfile.c — opening an input file safely (see readfile.h). */
#include <errno.h>
#include <fcntl.h>
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
