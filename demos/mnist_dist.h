/* mnist_dist.h — lr-mnist under mpirun: data-parallel training over the processes of
 * MPI_COMM_WORLD (dist.h: lr_dist_train) when the demo is built with MPI (meson -Dmpi) and
 * started by mpirun, and one process exactly as before otherwise. Every process runs the
 * whole pipeline on identical replicas (same seed, same data, the same summed gradients);
 * only rank 0 prints and writes files. A demo helper, not part of the library.
 */
#ifndef LOWRANK_DEMO_MNIST_DIST_H
#define LOWRANK_DEMO_MNIST_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lowrank/nn/mlp.h"
#include "lowrank/nn/train.h"

typedef struct {
    int rank, size;         /* 0 and 1 in one process */
    int local_size;         /* processes of this run on this machine */
    bool mpi;               /* MPI_Init was called (and MPI_Finalize is due) */
    bool mpi_sum;           /* --dist-sum mpi: MPI_Allreduce instead of the rank-ordered sum */
} demo_dist;

/* What the last demo_dist_train cost: the gradient sums (one a step) and the agreements. */
typedef struct {
    size_t floats_per_step; /* lr_mlp_grad_size + 1 (the loss) */
    uint64_t bytes;         /* payload handed to MPI over the run */
    double comm_s;          /* wall time inside MPI (waiting for the slower process included) */
    double total_s;         /* wall time of the training */
    uint64_t checksum;      /* FNV-1a of the parameters, the same on every rank (checked) */
} demo_dist_report;

/* Starts MPI when this process was started by mpirun (OpenMPI's or a PMI launcher's
 * environment) and the demo has MPI; fills *d. Returns 0, or 2 with a message in msg when
 * mpirun started several processes of a demo built without MPI (each would run alone and
 * write the same files). */
int demo_dist_init(demo_dist *d, int *argc, char ***argv, char *msg, size_t cap);

/* lr_train over the processes (lr_dist_train, then lr_dist_check_replicas), or lr_train
 * itself in one process. rep may be NULL. */
lr_status demo_dist_train(const demo_dist *d, lr_mlp *net, lr_train_result *res, const lr_dataset *data,
                          const lr_train_opts *o, demo_dist_report *rep, lr_err *err);

/* The status every process agrees on (lr_dist_agree): a failure on one rank, named
 * "rank R: …", becomes every rank's. s itself in one process. */
lr_status demo_dist_agree(const demo_dist *d, lr_status s, lr_err *err);

/* MPI_Finalize when MPI was started. */
void demo_dist_finish(demo_dist *d);

#endif
