/* mpi.c — `lowrank` under mpirun (tool.h's tool_mpi_*): tensors split over the processes,
 * their results sent to rank 0, which writes and prints. MPI starts only when the program was
 * launched by mpirun with more than one process (OMPI_COMM_WORLD_SIZE, PMI_SIZE), so a plain
 * run never pays MPI_Init; built without MPI everything here is one process. */
#include <limits.h>
#include <stdlib.h>
#include "tool.h"
#ifdef LOWRANK_HAVE_MPI
#include <mpi.h>
#endif

static int started;

int tool_mpi_start(int *rank, int *size)
{
    *rank = 0, *size = 1;
#ifdef LOWRANK_HAVE_MPI
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n) n = getenv("PMI_SIZE");
    if (!n || atoi(n) <= 1) return 0;
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) MPI_Init(NULL, NULL);
    started = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    if (*rank != 0) { /* only rank 0 prints a report and notes; every rank's errors reach stderr */
        FILE *o = freopen("/dev/null", "w", stdout);
        (void)o;
        tool_notes_off();
    }
#endif
    return 0;
}

void tool_mpi_end(void)
{
#ifdef LOWRANK_HAVE_MPI
    if (started) MPI_Finalize();
    started = 0;
#endif
}

int tool_mpi_agree(int rc)
{
#ifdef LOWRANK_HAVE_MPI
    if (started) {
        int all = rc;
        MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        return all;
    }
#endif
    return rc;
}

void tool_mpi_send(const void *buf, size_t n, int to)
{
#ifdef LOWRANK_HAVE_MPI
    for (const char *p = buf; started && n;) {
        int k = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        MPI_Send(p, k, MPI_BYTE, to, 0, MPI_COMM_WORLD);
        p += k, n -= (size_t)k;
    }
#else
    (void)buf, (void)n, (void)to;
#endif
}

void tool_mpi_recv(void *buf, size_t n, int from)
{
#ifdef LOWRANK_HAVE_MPI
    for (char *p = buf; started && n;) {
        int k = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        MPI_Recv(p, k, MPI_BYTE, from, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        p += k, n -= (size_t)k;
    }
#else
    (void)buf, (void)n, (void)from;
#endif
}
