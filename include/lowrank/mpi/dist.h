/* dist.h — lowrank across MPI processes: a matrix distributed by rows over the ranks of a
 * communicator, read from a .npy by each rank's own rows, and its randomized SVD.
 *
 * Built only with MPI (meson -Dmpi=enabled, or auto with OpenMPI found) and installed only
 * then; <lowrank/lowrank.h> does not include it, so a program without MPI never sees
 * mpi.h. The caller owns MPI: it calls MPI_Init and MPI_Finalize and passes the
 * communicator; nothing here changes the communicator's error handler.
 *
 * Every function taking an MPI_Comm is collective: each rank of comm calls it, and all
 * ranks return the same status. A failure on one rank (a bad argument, a file it cannot
 * read, memory) is made known to all of them (lr_dist_agree), and err on every rank then
 * holds the failing rank's message prefixed "rank R: " (R the lowest failing rank), so that
 * rank 0 alone can print it. An MPI call that returns an error (only when the
 * communicator's handler is not MPI_ERRORS_ARE_FATAL, the default) is LR_EIO naming it.
 *
 * The row layout: rank k holds rows first_k .. first_k + m_k − 1 of the global (m, n)
 * matrix, in rank order (first_0 = 0, first_{k+1} = first_k + m_k), any m_k >= 0.
 * lr_dist_block gives the balanced split the readers use.
 */
#ifndef LOWRANK_DIST_H
#define LOWRANK_DIST_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>
#include "lowrank/base/export.h"
#include "lowrank/base/mat.h"
#include "lowrank/base/rng.h"
#include "lowrank/base/status.h"
#include "lowrank/linalg/rsvd.h"
#include "lowrank/nn/mlp.h"
#include "lowrank/nn/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a collective call cost this rank; the functions below add to it (+=), so one
 * struct can add up a whole pipeline. Zero it to start. */
typedef struct {
    uint64_t bytes;   /* payload this rank handed to MPI: an Allreduce or Bcast of k floats
                       * counts 4k (what the rank contributes or receives, not the wire
                       * traffic of the algorithm MPI picks: a ring Allreduce sends about
                       * 2(N−1)/N of it per rank)                                            */
    uint64_t calls;   /* collective calls                                                    */
    double seconds;   /* wall time inside them (MPI_Wtime), waiting for slower ranks included */
} lr_dist_stats;

/* The balanced split of `rows` over `nranks`: rank k gets rows/nranks rows, the first
 * rows % nranks ranks one more, in rank order (so some blocks are empty when rows <
 * nranks). Pure; LR_EINVAL for nranks < 1, rank outside 0..nranks−1 or a NULL pointer. */
LR_API lr_status lr_dist_block(size_t *first, size_t *count, size_t rows, int rank, int nranks, lr_err *err);

/* Makes the ranks agree on a status: st and err are this rank's; returns on every rank
 * the status of the lowest failing rank (LR_OK when none failed) and fills err (when
 * non-NULL) with "rank R: " and its message. One MPI_Allreduce of an int, and an MPI_Bcast
 * of the message only when some rank failed. */
LR_API lr_status lr_dist_agree(lr_status st, MPI_Comm comm, lr_err *err);

/* This rank's block of the balanced split (lr_dist_block) of the 2-D .npy file at path,
 * read by offset (lr_npy_load_rows: no rank reads more than its rows). *out <- the
 * owning (count, cols) block (empty rows when count = 0), *first <- its first row in the
 * file, *rows <- the file's row count. Collective; errors as lr_npy_load. */
LR_API lr_status lr_dist_npy_load_rows(lr_mat *out, size_t *first, size_t *rows, const char *path, MPI_Comm comm,
                                       lr_err *err);

/* *f2 <- ‖a‖²_F of the distributed matrix (a: this rank's rows), summed in double: one
 * Allreduce of a double. stats may be NULL. */
LR_API lr_status lr_dist_frob2(double *f2, lr_dist_stats *stats, lr_cmat a, MPI_Comm comm, lr_err *err);

/* Randomized SVD of the row-distributed a: (m, n), m = Σ m_k, no rank holding more than
 * its rows: a ≈ U·diag(s)·vt, U distributed as a is, s and vt the same on every rank.
 *
 * Method: opts->method as in lr_rsvd, with the same default (LR_RSVD_BLOCK_KRYLOV) and the
 * same widths, then Rayleigh–Ritz (HMT Algorithm 5.1). The range is always sought on the
 * side of the distributed rows (lr_rsvd works on aᵀ when m < n). Ω is Gaussian from rank
 * 0's rng and broadcast, drawn as lr_rsvd draws it (Ωᵀ row by row), so with m >= n and
 * the same options and seed the two start from the same Ω and agree to rounding.
 *  Block Krylov (Musco & Musco 2015, Algorithm 2): Ω: (n, b), b = block (0 = r),
 *  q = krylov_depth, L = b·(q+1); b·(q+1) >= min(m, n) makes b = min(m, n), q = 0 (exact).
 *   Y_0 = a_k·Ω                           local
 *   j = 0..q: Q_j = orth(Y_j against Q_<j)   BCGS2 over the ranks (below)
 *             W_j = Q_jᵀ·a = Σ_k Q_jkᵀ·a_k   local product + Allreduce of b·n floats
 *             Y_{j+1} = a_k·W_jᵀ          local
 *   B = Qᵀ·a = [W_0; …; W_q]: (L, n)      nothing more to sum
 *  The basis is built block by block as lr_rsvd builds it: block classical Gram–Schmidt
 *  twice (P = Q_<jᵀ·Y_j, local + Allreduce of j·b·b floats; Y_j −= Q_<j·P), Cholesky-QR2
 *  after the first projection, one pivoted Cholesky-QR sweep after the second. A column
 *  the second projection leaves with less than half its norm (‖P_col‖² > 3/4) was rounding
 *  noise inside the earlier span (a has low rank, or the space is exhausted): it is
 *  replaced by a Gaussian column and projected again, and a third pass (at most a fourth)
 *  follows — deflation, which only widens the space. 2(q+1) passes over a with b columns.
 *  Subspace iteration (HMT Algorithm 4.4): l = min(r + oversample, m, n), q = power_iters.
 *   Y_k = a_k·Ω, Ω: (n, l)                local
 *   Q = orth(Y)                           Cholesky-QR2 over the ranks (below)
 *   q times: Z = aᵀ·Q = Σ_k a_kᵀ·Q_k     local product + Allreduce of (n, l) floats
 *            Q̃ = qr(Z)                   Householder, replicated (Z is the same everywhere)
 *            Y_k = a_k·Q̃; Q = orth(Y)
 *   B = Qᵀ·a = Σ_k Q_kᵀ·a_k              local product + Allreduce of (l, n) floats
 *  Both: B = Ũ·S·Vᵀ (lr_svd, replicated); U_k = Q_k·Ũ[:, :r], s = S[:r], vt = Vᵀ[:r, :].
 * orth(Y) is Cholesky-QR2 (Yamamoto et al. 2015) with the Gram matrix of the panel (l×l,
 * or b×b for a Krylov block) formed and factored in double and summed by an Allreduce
 * (one per sweep): in double it holds for κ(Y) up to about 1e7, beyond what float32 data
 * resolves. Rank deficiency (a of rank < l, a = 0, columns of Y numerically dependent)
 * shows as a pivot of the pivoted Cholesky factorisation (LAPACK dpstrf) below
 * 1e-12·max: those columns of Y are replaced by Gaussian ones (drawn per global row, so
 * the result does not depend on the split) and the orth is repeated.
 * Communication per call (each rank's payload, added to stats):
 *  Krylov: 1 Bcast of n·b + 2 floats, q+1 Allreduces of b·n floats, 2 + 3q of b² doubles
 *   (Gram matrices), 2q of the projections (block j: two of j·b² floats; q(q+1)·b² floats
 *   in all); a deflation or a third pass adds a projection and one or two Gram matrices;
 *  subspace: 1 Bcast of n·l + 2 floats, q+1 Allreduces of n·l floats, 2(q+1) of l² doubles;
 *  both: 2 agreements of an int, an Allreduce of 10 uint64 (the arguments agree) and an
 *   Allgather of 8 bytes per rank (the row counts).
 *
 * a: this rank's (m_k, n) rows (m_k = 0 allowed, data may then be NULL); u: (m_k, r);
 * s: (r); vt: (r, n); 1 <= r <= min(m, n). rng: read on rank 0 only (NULL elsewhere is
 * fine). opts NULL = lr_rsvd_opts_default(); only the fields of opts->method are read,
 * and checked as lr_rsvd checks them (LR_EINVAL naming the field). Ranks that disagree on
 * n, r, the method or its two fields get LR_EDIM / LR_EINVAL naming both values. Every
 * rank must run the same library with the same OpenBLAS thread count: the replicated
 * small factorisations are then bit-identical on all ranks (the tests check vt). NaN/Inf
 * in a is LR_ENONFINITE naming the entry by its global row. Memory per rank: about
 * (m_k + 2n)·L floats + m_k·b doubles (L = b = l for subspace iteration). */
LR_API lr_status lr_dist_rsvd(float *s, lr_mat u, lr_mat vt, lr_dist_stats *stats, lr_cmat a, size_t r,
                              const lr_rsvd_opts *opts, lr_rng *rng, MPI_Comm comm, lr_err *err);

/* ---- data-parallel training ------------------------------------------------------- */

/* How lr_dist_sum adds the processes' buffers. */
typedef enum {
    /* In rank order, (b_0 + b_1) + b_2 …, whatever MPI's algorithms: rank k adds chunk k of
     * the buffers (MPI_Alltoallv), then every rank gathers all chunks (MPI_Allgatherv), a
     * reduce-scatter plus an allgather, the traffic of a ring allreduce. Deterministic, the
     * same on every rank, and equal to one process adding the slices (lr_train_opts.shards). */
    LR_DIST_SUM_ORDERED,
    /* MPI_Allreduce with MPI_SUM: the order of the additions is MPI's choice, so the result
     * may change with the number of processes' placement or MPI's tuning in the last bits. */
    LR_DIST_SUM_MPI
} lr_dist_sum_kind;

/* buf: (n) <- the sum over the ranks of their buf, the same on every rank. stats += one
 * call of 4n bytes (the payload, as for an Allreduce). n <= INT_MAX; every rank passes
 * the same n and kind. */
LR_API lr_status lr_dist_sum(float *buf, lr_dist_stats *stats, size_t n, lr_dist_sum_kind how, MPI_Comm comm,
                             lr_err *err);

/* Data-parallel lr_train: every rank calls it with the same data, options (o->shards 0,
 * o->reduce NULL) and an identical net, as after the same seeded initialisation or
 * checkpoint. Each global batch (the same on every rank: same seed, same shuffle) is cut
 * into comm's size slices, the balanced split (train.h: shards); this rank takes the
 * gradient of its slice (lr_mlp_grad_shard), the packed gradients and losses are summed
 * with `how` (lr_mlp_grad_size + 1 floats a step: 6,795 for the 784-1000-2000-10 MLP's rank-1 adapters,
 * 2,807,011 trained whole), and every rank makes the same Adam step, so the replicas stay
 * identical (lr_dist_check_replicas). With LR_DIST_SUM_ORDERED the run equals, bit for bit,
 * lr_train with shards = the number of processes in one process; it differs from the
 * fused one-process step by the rounding of the slices' sums (docs/dist.md). A
 * communicator of one process runs lr_train itself (the fused step, no communication).
 *
 * Trains LoRA adapters alone (frozen base) or the whole net, with replay, soft targets and
 * after_step hooks as lr_train; progress and after_step run on every rank (a program
 * prints on rank 0 only). Ranks whose data size, dim, batch, seed, epochs, max_steps,
 * replay_per_batch or gradient size differ get LR_EDIM naming the field and its range
 * before any step. A failure on one rank during a step stops all ranks with its message
 * ("rank R: …"). stats (may be NULL) += the gradient sums and agreements. res as lr_train's
 * (its seconds include the communication). opts NULL = lr_train_opts_default(). */
LR_API lr_status lr_dist_train(lr_mlp *net, lr_train_result *res, lr_dist_stats *stats, const lr_dataset *data,
                               lr_dist_sum_kind how, const lr_train_opts *opts, MPI_Comm comm, lr_err *err);

/* Checks that every rank holds the same model: an FNV-1a 64 hash of the parameters, the
 * attached adapters' A and B and the Adam step count, gathered from all ranks. *checksum
 * (may be NULL) <- the hash; ranks that differ are LR_EINVAL naming the first one and both
 * hashes, on every rank. */
LR_API lr_status lr_dist_check_replicas(uint64_t *checksum, const lr_mlp *net, MPI_Comm comm, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
