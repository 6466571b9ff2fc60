/* atomicfile.h — crash-safe output files: a reader sees the old file or the new one, never half.
 *
 * lr_atomic_open creates a temporary file ".NAME.tmp-XXXXXX" beside the target (same
 * directory, hence the same filesystem, so rename(2) is atomic). The caller writes through
 * af.f. lr_atomic_commit flushes, fsyncs the data, closes, renames over the target and
 * fsyncs the directory so the rename itself survives a power cut (the usual POSIX recipe,
 * as in SQLite's and git's lock files). lr_atomic_abort closes and unlinks the temp file.
 * On any failure the old target is left as it was and no temp file remains.
 *
 *     lr_atomic_file af;
 *     if (lr_atomic_open(&af, "model.safetensors", err)) return ...;
 *     fwrite(..., af.f);                      (write errors are caught at commit)
 *     if (lr_atomic_commit(&af, err)) return ...;   (also releases af; no abort needed)
 *
 * A new file gets mode 0666 & ~umask like fopen would; replacing a file keeps its mode.
 */
#ifndef LOWRANK_ATOMICFILE_H
#define LOWRANK_ATOMICFILE_H

#include "lowrank/base/export.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "lowrank/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    FILE *f;        /* write here; NULL when not open */
    struct lr__atomic_io *io; /* the library's: the temp file's descriptor and write errors */
    char *tmp_path; /* the temporary file, malloc'd */
    char *path;     /* the target, malloc'd */
} lr_atomic_file;

/* Opens a temp file for `path`. On failure *af is zeroed (abort on it is a no-op) and the
 * message names the path and strerror ("cannot create temp file for out/m.st: ..."). */
LR_API lr_status lr_atomic_open(lr_atomic_file *af, const char *path, lr_err *err);

/* Makes the written data the contents of af->path. Always releases af: on failure the
 * temp file is removed and the old target is untouched (LR_EIO, naming path and strerror).
 * A failed fsync of the directory after the rename is also reported as LR_EIO; then the new
 * file is in place but may not survive a crash. LR_EINVAL if af is not open. */
LR_API lr_status lr_atomic_commit(lr_atomic_file *af, lr_err *err);

/* Flushes and fsyncs what was written, leaving af open for a later commit, so that several
 * files can be made durable before any is renamed (a sharded model: io/model.h). On failure
 * af is released as by lr_atomic_abort (LR_EIO naming path and strerror). */
LR_API lr_status lr_atomic_sync(lr_atomic_file *af, lr_err *err);

/* Discards the temp file. A no-op on a zeroed, committed or already aborted af. */
LR_API void lr_atomic_abort(lr_atomic_file *af);

/* Stale temp files. A process killed between lr_atomic_open and the rename (kill -9, a power
 * cut) leaves its ".NAME.tmp-XXXXXX" behind: the target is intact, the temp file is garbage.
 * The writer holds an exclusive flock(2) on its temp file from creation to commit or abort,
 * and the kernel drops it when the process dies. lr_atomic_clean removes from dir (not its
 * subdirectories) every file named like ours that is a regular file (not a symbolic link),
 * last modified at least min_age_s seconds ago, and not locked: a file another process is
 * still writing is never touched, whatever its age. dry_run only reports. fn (may be NULL)
 * is called for each old-enough candidate, removed or not; *removed (may be NULL) counts the
 * files removed. */
typedef struct {
    const char *path;
    uint64_t bytes;
    double age_s;       /* since the last modification */
    bool removed;
    bool in_use;        /* locked by a writer: left alone */
} lr_atomic_stale;
typedef void (*lr_atomic_stale_fn)(void *ctx, const lr_atomic_stale *s);
LR_API lr_status lr_atomic_clean(size_t *removed, const char *dir, double min_age_s, bool dry_run, lr_atomic_stale_fn fn,
                                 void *ctx, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
