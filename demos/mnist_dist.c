/* mnist_dist.c — lr-mnist's processes (mnist_dist.h). Without LOWRANK_HAVE_MPI every call is
 * the one-process behaviour. */
#include "mnist_dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef LOWRANK_HAVE_MPI
#include <mpi.h>
#include "lowrank/mpi/dist.h"
#endif

/* The number of processes a launcher says this one belongs to (0: not started by one). */
static int launched_size(const char **var)
{
    static const char *const vars[] = { "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE" };
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) {
            *var = vars[i];
            return atoi(v);
        }
    }
    return 0;
}

int demo_dist_init(demo_dist *d, int *argc, char ***argv, char *msg, size_t cap)
{
    memset(d, 0, sizeof *d);
    d->size = d->local_size = 1;
    const char *var = NULL;
    int n = launched_size(&var);
#ifdef LOWRANK_HAVE_MPI
    if (n < 1) return 0;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) {
        snprintf(msg, cap, "MPI_Init failed (started by mpirun: %s=%d)", var, n);
        return 2;
    }
    d->mpi = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    d->local_size = ls && atoi(ls) > 0 ? atoi(ls) : d->size;
    return 0;
#else
    (void)argc, (void)argv;
    if (n <= 1) return 0;
    snprintf(msg, cap, "started by mpirun as one of %d processes (%s), but built without MPI: each would "
             "train alone; rebuild with `meson setup -Dmpi=enabled` (scripts/setup.sh installs OpenMPI)", n, var);
    return 2;
#endif
}

lr_status demo_dist_train(const demo_dist *d, lr_mlp *net, lr_train_result *res, const lr_dataset *data,
                          const lr_train_opts *o, demo_dist_report *rep, lr_err *err)
{
    demo_dist_report r;
    memset(&r, 0, sizeof r);
    lr_status s;
#ifdef LOWRANK_HAVE_MPI
    if (d->mpi) {
        lr_dist_stats st = { 0, 0, 0 };
        double t0 = MPI_Wtime();
        r.floats_per_step = lr_mlp_grad_size(net) + 1;
        s = lr_dist_train(net, res, &st, data, d->mpi_sum ? LR_DIST_SUM_MPI : LR_DIST_SUM_ORDERED, o, MPI_COMM_WORLD,
                          err);
        r.total_s = MPI_Wtime() - t0;
        r.bytes = st.bytes, r.comm_s = st.seconds;
        if (!s) s = lr_dist_check_replicas(&r.checksum, net, MPI_COMM_WORLD, err);
        if (rep) *rep = r;
        return s;
    }
#endif
    (void)d;
    s = lr_train(net, res, data, o, err);
    if (rep) *rep = r;
    return s;
}

lr_status demo_dist_agree(const demo_dist *d, lr_status s, lr_err *err)
{
#ifdef LOWRANK_HAVE_MPI
    if (d->mpi) return lr_dist_agree(s, MPI_COMM_WORLD, err);
#endif
    (void)d, (void)err;
    return s;
}

void demo_dist_finish(demo_dist *d)
{
#ifdef LOWRANK_HAVE_MPI
    if (d->mpi) MPI_Finalize();
#endif
    d->mpi = false;
}
