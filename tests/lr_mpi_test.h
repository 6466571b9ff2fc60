/* lr_mpi_test.h — the checks of the MPI test programs (test_dist.c, test_dist_train.c):
 * plain C programs run under mpirun, where cmocka's runner would report from every rank. A
 * check that fails prints the rank, file and line and calls MPI_Abort, so the job exits
 * non-zero. Each program defines g_rank and g_size and sets them after MPI_Init. */
#ifndef LOWRANK_MPI_TEST_H
#define LOWRANK_MPI_TEST_H

#include <stdio.h>
#include <mpi.h>
#include "lowrank/base/status.h"

extern int g_rank, g_size;

#define CHECK(cond, ...)                                                                         \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "rank %d: %s:%d: CHECK(%s) failed: ", g_rank, __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                        \
            fputc('\n', stderr);                                                                 \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                        \
        }                                                                                        \
    } while (0)

/* call returns LR_OK */
#define CHECK_OK(call)                                                                           \
    do {                                                                                         \
        lr_status s_ = (call);                                                                   \
        CHECK(s_ == LR_OK, "%s", lr_status_str(s_));                                             \
    } while (0)

#endif
