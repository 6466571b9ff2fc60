/* npy.h — 2-D float matrices in numpy's .npy format, so numpy users can hand
 * matrices in and take factors out.
 *
 * Format (numpy/lib/format.py, NEP 1): the magic "\x93NUMPY", a version byte pair,
 * a little-endian header length (2 bytes in 1.0, 4 bytes in 2.0 and 3.0), then a
 * Python dict literal such as
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * padded with spaces and a final '\n', then the raw element bytes.
 *
 * Reading accepts versions 1.0, 2.0 and 3.0 (3.0 only differs in allowing a UTF-8
 * header), descr '<f4' or '<f8', fortran_order False and a 2-D shape; float64 is
 * rounded to float32, and a finite value too large for float32 is an error rather
 * than a silent Inf. Anything else — big-endian or integer dtypes, Fortran order,
 * 1-D or 3-D shapes, truncated or over-long data, malformed headers — is
 * LR_EFORMAT with a message naming the file and what was found.
 *
 * Writing produces exactly what np.save writes for a float32 C-order array
 * (version 1.0, header padded to a multiple of 64 bytes), through a temporary
 * file renamed into place (atomicfile.h), so a failed write leaves no partial file
 * and an existing file untouched.
 */
#ifndef LOWRANK_NPY_H
#define LOWRANK_NPY_H

#include "lowrank/base/export.h"
#include <stdio.h>
#include <stddef.h>
#include "lowrank/base/mat.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads a 2-D .npy file into a fresh owning matrix (ld = cols) that the caller
 * frees with lr_mat_free. On failure *out is empty.
 * LR_EIO: cannot open/read; LR_EFORMAT: not a supported .npy (message says what
 * was found); LR_ERANGE: size overflow or a float64 value beyond float32;
 * LR_ENOMEM; LR_EINVAL: NULL arguments. */
LR_API lr_status lr_npy_load(lr_mat *out, const char *path, lr_err *err);

/* *rows, *cols <- the shape of a 2-D .npy file, reading only its preamble and header; the
 * file is checked as lr_npy_load checks it (dtype, order, 2-D, data size equal to the
 * shape's), only its data is not read. Errors as lr_npy_load; on failure both are 0. */
LR_API lr_status lr_npy_shape(size_t *rows, size_t *cols, const char *path, lr_err *err);

/* Rows first..first+count-1 of a 2-D .npy file into a fresh owning matrix (count, cols),
 * reading only those rows (one seek to their offset): a process of a distributed job
 * reads its block of a matrix that would not fit in its memory. The file is checked
 * exactly as lr_npy_load checks it (the whole file's size included), float64 is rounded
 * as there, and count = 0 gives an empty (0, cols) matrix. first + count beyond the rows
 * is LR_EDIM naming the shape; other errors as lr_npy_load. On failure *out is empty. */
LR_API lr_status lr_npy_load_rows(lr_mat *out, const char *path, size_t first, size_t count, lr_err *err);

/* The same from n bytes in memory; `name` (may be NULL) prefixes messages. */
LR_API lr_status lr_npy_load_mem(lr_mat *out, const void *buf, size_t n, const char *name, lr_err *err);

/* Writes m as a float32 '<f4' C-order .npy (version 1.0, or 2.0 if the header were
 * ever to need it), crash-safely: temp file + fsync + rename. Any ld is accepted.
 * NaN and Inf are written as they are (numpy can hold them). */
LR_API lr_status lr_npy_save(lr_cmat m, const char *path, lr_err *err);

/* Writes the same bytes to an open stream f (e.g. an lr_atomic_file's, to commit several
 * files together); `name` stands for the file in messages. Write errors are LR_EIO. */
LR_API lr_status lr_npy_write(lr_cmat m, FILE *f, const char *name, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
