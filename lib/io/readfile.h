/* readfile.h — opening an input file safely (private, not installed).
 *
 * Readers take regular files only. A FIFO with no writer would block the open for ever, and
 * /dev/zero would be read until memory runs out, so every reader opens with O_NONBLOCK,
 * fstat()s what it got, and refuses directories, FIFOs, devices and sockets at once with a
 * message naming the file and what it is. */
#ifndef LOWRANK_IO_READFILE_H
#define LOWRANK_IO_READFILE_H

#include <stdio.h>
#include <sys/stat.h>
#include "lowrank/base/status.h"

/* *f <- path opened for reading ("rb", blocking again once open) and *sb its fstat, when
 * it is a regular file; else an error: LR_EIO "cannot open X: ...", "X: is a directory,
 * expected <what>", "X: is a FIFO (named pipe), expected <what>", ... */
lr_status lr__open_regular(FILE **f, struct stat *sb, const char *path, const char *what, lr_err *err);

/* *buf <- the whole of the regular file path (malloc'd; free it), *n <- its length, read as
 * lr__open_regular opens it. A file longer than max bytes is LR_EFORMAT "X: larger than N
 * MiB, not <what>" before anything is allocated; one that shrinks while read gives what was
 * there. */
lr_status lr__read_regular(unsigned char **buf, size_t *n, const char *path, const char *what, size_t max,
                           lr_err *err);

#endif
