/* dist_internal.h — the dist layer's counted collectives, shared by its files (lr__ names). */
#ifndef LOWRANK_DIST_INTERNAL_H
#define LOWRANK_DIST_INTERNAL_H

#include <mpi.h>
#include <stddef.h>
#include "lowrank/mpi/dist.h"

/* A communicator, this process's place in it, and the stats calls add to (NULL: none). */
typedef struct {
    MPI_Comm comm;
    int rank, size;
    lr_dist_stats *st;
} lr__dctx;

/* LR_EIO "what failed: MPI's message for rc". */
lr_status lr__mpi_fail(lr_err *err, const char *what, int rc);
lr_status lr__dist_init(lr__dctx *d, MPI_Comm comm, lr_dist_stats *stats, lr_err *err);
/* Adds one call of `bytes` that started at MPI_Wtime() t0 to d's stats. */
void lr__dist_count(lr__dctx *d, double t0, size_t bytes);
lr_status lr__dist_allreduce(lr__dctx *d, void *buf, size_t n, MPI_Datatype t, size_t width, MPI_Op op,
                             lr_err *err);
lr_status lr__dist_bcast(lr__dctx *d, void *buf, size_t n, MPI_Datatype t, size_t width, lr_err *err);
lr_status lr__dist_agree(lr__dctx *d, lr_status st, lr_err *err);

#endif
