/* linear.c — dense-layer kernels: forward, backward, backward fused with Adam (a layer's LoRA branch is lora_weights.c's).
 *
 * The training step of the seed's model at batch 10 is memory-bound: every step streams the
 * weights (11 MB) in the forward pass and the weights plus Adam's two moments (34 MB, read
 * and written) in the update. So:
 *  - the forward pass for small batches reads each weight row ONCE for the whole batch
 *    (register tile of up to LR__FB batch rows, two rows at a time with AVX-512VL),
 *    instead of sgemm's packing copy, and prefetches the rows two ahead;
 *  - the backward pass never stores a weight gradient: lr_linear_backward_adam walks w
 *    once, 4 whole rows at a time, and for each 8-column chunk forms the gradient in
 *    registers, adds the old weights' contribution to dx, and applies Adam in place;
 *  - a frozen layer (LoRA's base) has its own kernels, in frozen.c;
 *  - the work is cut into independent pieces (row chunks of 64 forward; up to 16 row chunks
 *    backward, each adding its share of dx into its own partial sum, the partials then
 *    added in chunk order) handed to threads dynamically by lr__parallel_for; the pieces
 *    depend on the shapes only, so results do not depend on the thread count or schedule;
 *  - the training step alternates the direction of the backward walk every step, so the
 *    rows touched last (possibly still in the last-level cache) are touched first next time.
 * The x86 kernels use AVX2+FMA, and AVX-512VL's extra registers where present (chosen at
 * run time with __builtin_cpu_supports, so the build stays portable; AVX2 and AVX-512 give
 * the same bits); other machines run the plain C loops, which compute the same quantities
 * in the same order up to the FMA roundings.
 */
/* No contraction: a·b + c is never fused into one FMA behind the code's back, so every
 * number here is the same whichever compiler built it. Clang fuses within an expression by
 * default, and in the avx2,fma kernels below that rounded the Adam update of the tail
 * columns (lr_adam_elem) differently from the 8-lane one (adam8), by an ulp against
 * lr_mlp_apply_grad's; GCC does not fuse in ISO C mode (meson's c_std=c11). Where an FMA is
 * meant it is written (fmaf, _mm256_fmadd_ps). Before the includes: it must cover adam.h's
 * inline lr_adam_elem. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "lowrank/nn/linear.h"
#include "lowrank/linalg/blas.h"
#include "base/cpu_internal.h"
#include "base/internal.h"
#include "nn/linear_internal.h"
#include "base/pool_internal.h"
#include "nn/simd.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define LR__X86 1
#include <immintrin.h>
#endif

/* Widest input (in 8-column blocks) whose all-zero blocks the forward kernel skips. */
#define LR__MAXBLK 1024
/* Batches up to this size use the row-streaming forward; larger ones sgemm. */
#define LR__SMALL_BATCH 32

/* The kernel families (cpu.h): the CPU's best, capped by LR_ISA and by the tests. */
enum { LR__ISA_C = LR_ISA_GENERIC, LR__ISA_AVX2 = LR_ISA_AVX2, LR__ISA_AVX512 = LR_ISA_AVX512 };

static int have_isa(void)
{
#ifdef LR__X86
    return lr__isa();
#else
    return LR__ISA_C;
#endif
}

static int have_avx2(void) { return have_isa() >= LR__ISA_AVX2; }

/* ---------------------------------------------------------------- forward ---------- */

/* y[b, o] for b < bt, o in [o0, o1): plain C. */
static void fwd_rows_c(float *y, size_t ldy, const float *x, size_t ldx, const float *w,
                       size_t ldw, const float *bias, size_t bt, size_t in, size_t o0, size_t o1)
{
    for (size_t o = o0; o < o1; o++) {
        const float *wr = w + o * ldw;
        for (size_t b = 0; b < bt; b++) {
            const float *xr = x + b * ldx;
            float s = 0.0f;
            for (size_t j = 0; j < in; j++) s += wr[j] * xr[j];
            y[b * ldy + o] = s + (bias ? bias[o] : 0.0f);
        }
    }
}

#ifdef LR__X86
/* Asks for the line `ahead` floats past p (integer arithmetic: the address may lie past
 * the end of the array, which a prefetch may touch but a pointer may not point to).
 * __builtin_prefetch, not _mm_prefetch: GCC 12 dropped the latter as dead code once
 * inlined here into the avx2 kernels. */
static inline void lr__prefetch_at(const float *p, size_t ahead)
{
    __builtin_prefetch((const void *)((uintptr_t)p + sizeof(float) * ahead), 0, 3);
}

__attribute__((target("avx2,fma"))) static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* R rows (o, o+1, ...) against BT batch rows over columns [j0, j1), all accumulators in
 * registers: each row piece is read once for the whole batch, and each x piece once for
 * the R rows. y += the partial dot products (the first column block starts from the bias).
 * Every y[b, o] is summed in the same order whatever R is (8 lane sums over the column
 * blocks, then the lanes, then the tail), so the 1- and 2-row kernels agree bit for bit. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
fwd_tile_avx2(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw,
              const float *bias, size_t j0, size_t j1, const uint32_t *blk, size_t nblk, size_t o,
              const int R, const int BT)
{
    __m256 acc[2][LR__FB];
    const float *wr[2];
    for (int r = 0; r < R; r++) {
        wr[r] = w + (o + (size_t)r) * ldw;
        for (int b = 0; b < BT; b++) acc[r][b] = _mm256_setzero_ps();
    }
    size_t jt = j0 + ((j1 - j0) & ~(size_t)7); /* the tail's first column */
    /* every 8-column block of [j0, jt), or only those listed (see fwd_blocks) */
    size_t nb = blk ? nblk : (jt - j0) / 8;
    for (size_t q = 0; q < nb; q++) {
        size_t j = blk ? blk[q] : j0 + 8 * q;
        __m256 wv[2];
        for (int r = 0; r < R; r++) {
            wv[r] = _mm256_loadu_ps(wr[r] + j);
            /* the hardware prefetchers alone left the row streams at ~5 GB/s: asking for
             * the line 2 KB ahead took the 3-layer forward from 2.1 to 1.35 ms (1 core);
             * the same columns two rows ahead did better still (layer 2: 1.05 -> 0.89 ms) */
            lr__prefetch_at(wr[r] + j, 2 * ldw);
        }
        for (int b = 0; b < BT; b++) {
            __m256 xv = _mm256_loadu_ps(x + (size_t)b * ldx + j);
            if (R > 1) LR__IN_REGISTER(xv);
            for (int r = 0; r < R; r++) acc[r][b] = _mm256_fmadd_ps(wv[r], xv, acc[r][b]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int b = 0; b < BT; b++) {
            float s = hsum8(acc[r][b]);
            const float *xr = x + (size_t)b * ldx;
            for (size_t jj = jt; jj < j1; jj++) s = fmaf(wr[r][jj], xr[jj], s);
            float *yp = y + (size_t)b * ldy + o + (size_t)r;
            *yp = (j0 == 0 ? (bias ? bias[o + (size_t)r] : 0.0f) : *yp) + s;
        }
}

/* Columns are taken in blocks of LR__FJ (simd.h). Whole rows of the seed's layers (784 and
 * 1000 wide) stream in one go: splitting them in halves (512) broke each row into two
 * strided streams and cost 20 % more. */
/* Rows [o0, o1) against a tile of BT batch rows, column block by column block. RMAX = 1: one
 * row at a time (AVX2 has 16 vector registers: a batch of 10 needs 10 accumulators).
 * RMAX = 2: pairs of rows, 20 accumulators, which AVX-512VL's 32 registers hold: x is then
 * loaded once per two rows (measured 8-18 % faster on Zen 4). */
__attribute__((target("avx2,fma"), always_inline)) static inline void
fwd_tile_rows(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw, const float *bias,
              size_t in, size_t o0, size_t o1, const uint32_t *blk, size_t nblk, const int BT, const int RMAX)
{
    for (size_t j0 = 0, q0 = 0; j0 < in; j0 += LR__FJ) {
        size_t j1 = in - j0 < LR__FJ ? in : j0 + LR__FJ, o = o0, q1 = q0;
        while (blk && q1 < nblk && blk[q1] < j1) q1++; /* the listed blocks in [j0, j1) */
        const uint32_t *bl = blk ? blk + q0 : NULL;
        if (RMAX == 2 && BT <= 10)
            for (; o + 2 <= o1; o += 2) fwd_tile_avx2(y, ldy, x, ldx, w, ldw, bias, j0, j1, bl, q1 - q0, o, 2, BT);
        for (; o < o1; o++) fwd_tile_avx2(y, ldy, x, ldx, w, ldw, bias, j0, j1, bl, q1 - q0, o, 1, BT);
        q0 = q1;
    }
}

/* A tile of bt batch rows: a call with a literal height for each bt, so that every height
 * 1..LR__FB gets its own fully unrolled kernel (taller tiles, which fwd_rows never makes, in
 * plain C). */
__attribute__((target("avx2,fma"), always_inline)) static inline void
fwd_rows_bt(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw, const float *bias,
            size_t bt, size_t in, size_t o0, size_t o1, const uint32_t *blk, size_t nblk, const int RMAX)
{
    switch (bt) {
    case 1: fwd_tile_rows(y, ldy, x, ldx, w, ldw, bias, in, o0, o1, blk, nblk, 1, RMAX); break;
    case 2: fwd_tile_rows(y, ldy, x, ldx, w, ldw, bias, in, o0, o1, blk, nblk, 2, RMAX); break;
    case 3: fwd_tile_rows(y, ldy, x, ldx, w, ldw, bias, in, o0, o1, blk, nblk, 3, RMAX); break;
    case 4: fwd_tile_rows(y, ldy, x, ldx, w, ldw, bias, in, o0, o1, blk, nblk, 4, RMAX); break;
    case 5: fwd_tile_rows(y, ldy, x, ldx, w, ldw, bias, in, o0, o1, blk, nblk, 5, RMAX); break;
    case 6: fwd_tile_rows(y, ldy, x, ldx, w, ldw, bias, in, o0, o1, blk, nblk, 6, RMAX); break;
    case 7: fwd_tile_rows(y, ldy, x, ldx, w, ldw, bias, in, o0, o1, blk, nblk, 7, RMAX); break;
    case 8: fwd_tile_rows(y, ldy, x, ldx, w, ldw, bias, in, o0, o1, blk, nblk, 8, RMAX); break;
    case 9: fwd_tile_rows(y, ldy, x, ldx, w, ldw, bias, in, o0, o1, blk, nblk, 9, RMAX); break;
    case 10: fwd_tile_rows(y, ldy, x, ldx, w, ldw, bias, in, o0, o1, blk, nblk, 10, RMAX); break;
    case 11: fwd_tile_rows(y, ldy, x, ldx, w, ldw, bias, in, o0, o1, blk, nblk, 11, RMAX); break;
    case 12: fwd_tile_rows(y, ldy, x, ldx, w, ldw, bias, in, o0, o1, blk, nblk, 12, RMAX); break;
    default: fwd_rows_c(y, ldy, x, ldx, w, ldw, bias, bt, in, o0, o1);
    }
}

/* The two instances: one row at a time (AVX2), pairs of rows (AVX-512VL). */
__attribute__((target("avx2,fma"))) static void
fwd_rows_avx2(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw,
              const float *bias, size_t bt, size_t in, size_t o0, size_t o1, const uint32_t *blk,
              size_t nblk)
{
    fwd_rows_bt(y, ldy, x, ldx, w, ldw, bias, bt, in, o0, o1, blk, nblk, 1);
}

__attribute__((target("avx2,fma,avx512f,avx512vl"))) static void
fwd_rows_avx512(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw,
                const float *bias, size_t bt, size_t in, size_t o0, size_t o1, const uint32_t *blk,
                size_t nblk)
{
    fwd_rows_bt(y, ldy, x, ldx, w, ldw, bias, bt, in, o0, o1, blk, nblk, 2);
}
#endif

static void fwd_rows(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw,
                     const float *bias, size_t batch, size_t in, size_t o0, size_t o1,
                     const uint32_t *blk, size_t nblk)
{
    for (size_t b0 = 0; b0 < batch; b0 += LR__FB) {
        size_t bt = batch - b0 < LR__FB ? batch - b0 : LR__FB;
#ifdef LR__X86
        if (have_isa() >= LR__ISA_AVX512) {
            fwd_rows_avx512(y + b0 * ldy, ldy, x + b0 * ldx, ldx, w, ldw, bias, bt, in, o0, o1, blk, nblk);
            continue;
        }
        if (have_isa() >= LR__ISA_AVX2) {
            fwd_rows_avx2(y + b0 * ldy, ldy, x + b0 * ldx, ldx, w, ldw, bias, bt, in, o0, o1, blk, nblk);
            continue;
        }
#endif
        (void)blk, (void)nblk;
        fwd_rows_c(y + b0 * ldy, ldy, x + b0 * ldx, ldx, w, ldw, bias, bt, in, o0, o1);
    }
}

typedef struct {
    lr_mat y;
    lr_cmat x, w;
    const float *b;
    const uint32_t *blk;  /* first columns of the 8-column blocks of x to use, or NULL: all */
    size_t nblk;
} fwd_job;

static void fwd_chunk(void *ctx, size_t c)
{
    const fwd_job *j = ctx;
    size_t out = j->w.rows, o0 = 64 * c, o1 = o0 + 64 < out ? o0 + 64 : out;
    fwd_rows(j->y.data, j->y.ld, j->x.data, j->x.ld, j->w.data, j->w.ld, j->b, j->x.rows, j->x.cols,
             o0, o1, j->blk, j->nblk);
}

/* Inputs that come out of a ReLU are mostly zero: in the seed's LoRA fine-tune 92 % of
 * linear1's outputs are zero for all 10 images of a batch. An 8-column block of x that is
 * zero in every batch row adds exact zeros to every sum (the lane sums start at +0, and
 * +0 plus ±0 is +0), so leaving it out changes no bit of y, for finite weights. Lists the
 * blocks to keep into blk (room for in / 8); returns their number, or SIZE_MAX when every
 * block is needed (then the plain loop runs). */
static size_t fwd_blocks(uint32_t *blk, lr_cmat x)
{
    size_t n = 0, nb = x.cols / 8;
    for (size_t q = 0; q < nb; q++) {
        bool any = false;
        for (size_t b = 0; b < x.rows && !any; b++) {
            const float *p = x.data + b * x.ld + 8 * q;
            for (int l = 0; l < 8; l++) any |= p[l] != 0.0f; /* NaN counts as non-zero */
        }
        if (any) blk[n++] = (uint32_t)(8 * q);
    }
    return n == nb ? SIZE_MAX : n;
}

/* The forward kernel with threads over row ranges (each y entry is computed the same way
 * whatever the split, so the output does not depend on the thread count). */
lr_status lr__linear_forward_mt(lr_mat y, lr_cmat x, lr_cmat w, const float *b, const lr_pool *pool,
                                lr_err *err)
{
    size_t batch = x.rows, in = x.cols, out = w.rows;
    if (batch > LR__SMALL_BATCH || in == 0) {
        /* big batches (evaluation): sgemm, with OpenBLAS's own threads */
        for (size_t i = 0; i < batch; i++)
            for (size_t o = 0; o < out; o++) y.data[i * y.ld + o] = b ? b[o] : 0.0f;
        return lr_gemm(y, 1.0f, x, false, w, true, 1.0f, err);
    }
    /* rows in chunks of 64, handed out dynamically: each y entry is computed the same way
     * whoever computes it, so the output does not depend on the thread count */
    fwd_job job = { y, x, w, b, NULL, 0 };
    uint32_t blk[LR__MAXBLK];
    if (in / 8 <= LR__MAXBLK) {
        size_t n = fwd_blocks(blk, x);
        if (n != SIZE_MAX) job.blk = blk, job.nblk = n;
    }
    lr__parallel_for(pool, (out + 63) / 64, fwd_chunk, &job);
    return LR_OK;
}

lr_status lr_linear_forward(lr_mat y, lr_cmat x, lr_cmat w, const float *b, lr_err *err)
{
    LR__FP_SCOPE();
    lr_status s;
    if ((s = lr_mat_check(lr_cm(y), "linear y", err)) || (s = lr_mat_check(x, "linear x", err)) ||
        (s = lr_mat_check(w, "linear w", err)))
        return s;
    if (x.cols != w.cols || y.rows != x.rows || y.cols != w.rows)
        return lr__fail(err, LR_EDIM, "linear forward: x is %zu x %zu, w is %zu x %zu, y is %zu x %zu "
                        "(want y %zu x %zu)", x.rows, x.cols, w.rows, w.cols, y.rows, y.cols,
                        x.rows, w.rows);
    if (y.rows == 0 || y.cols == 0) return LR_OK;
    return lr__linear_forward_mt(y, x, w, b, NULL, err);
}

/* --------------------------------------------------------------- backward ---------- */

lr_status lr_linear_backward(lr_mat dx, lr_mat dw, float *db, lr_cmat dy, lr_cmat x, lr_cmat w,
                             lr_err *err)
{
    LR__FP_SCOPE();
    lr_status s;
    if ((s = lr_mat_check(dy, "linear dy", err)) || (s = lr_mat_check(x, "linear x", err)) ||
        (s = lr_mat_check(w, "linear w", err)))
        return s;
    if (x.cols != w.cols || dy.rows != x.rows || dy.cols != w.rows)
        return lr__fail(err, LR_EDIM, "linear backward: x is %zu x %zu, w is %zu x %zu, dy is %zu x %zu",
                        x.rows, x.cols, w.rows, w.cols, dy.rows, dy.cols);
    if (dx.data && (dx.rows != x.rows || dx.cols != x.cols))
        return lr__fail(err, LR_EDIM, "linear backward: dx is %zu x %zu, want %zu x %zu", dx.rows,
                        dx.cols, x.rows, x.cols);
    if (dw.data && (dw.rows != w.rows || dw.cols != w.cols))
        return lr__fail(err, LR_EDIM, "linear backward: dw is %zu x %zu, want %zu x %zu", dw.rows,
                        dw.cols, w.rows, w.cols);
    if (dx.data && (s = lr_gemm(dx, 1.0f, dy, false, w, false, 0.0f, err))) return s;
    if (dw.data && (s = lr_gemm(dw, 1.0f, dy, true, x, false, 1.0f, err))) return s;
    if (db)
        for (size_t b = 0; b < dy.rows; b++)
            for (size_t o = 0; o < dy.cols; o++) db[o] += dy.data[b * dy.ld + o];
    return LR_OK;
}

/* ------------------------------------------------------- fused backward + Adam ---------- */

/* The fused pass is cut into row chunks: chunk c owns rows [row(c), row(c+1)) of w, m and
 * v, which it streams front to back as a few long sequential runs (the layout DRAM and the
 * prefetchers serve best; the earlier column chunks read each row in 512-byte pieces and
 * reached 8 GB/s where whole rows reach 17 GB/s on one core). Every chunk adds its rows'
 * share of dx into its own partial sum; the partials are then added in chunk order. The
 * number of chunks depends on `out` only, never on the thread count, so dx is the same
 * whatever runs it. Chunk 0 writes dx itself; chunks 1.. write to the work buffer. */
#define LR__NCH_MAX 16

static size_t fused_nch(size_t out)
{
    size_t n = out / 64;
    return n < 1 ? 1 : n > LR__NCH_MAX ? LR__NCH_MAX : n;
}

/* First row of chunk c (a multiple of 4, so the 4-row blocks never straddle chunks). */
static size_t fused_row(size_t out, size_t nch, size_t c)
{
    return c >= nch ? out : (out * c / nch) & ~(size_t)3;
}

size_t lr_linear_backward_adam_work(size_t batch, size_t in)
{
    size_t n;
    if (lr_size_mul(&n, batch, in, NULL) || n > SIZE_MAX / (LR__NCH_MAX - 1)) return SIZE_MAX;
    return (LR__NCH_MAX - 1) * n;
}

/* Arguments of one fused pass, shared by the kernels. */
typedef struct {
    float *w, *mw, *vw;          /* (out, in), ld ldw / ldm / ldv */
    size_t ldw, ldm, ldv;
    const float *dy, *x;         /* (batch, out) ld lddy; (batch, in) ld ldx */
    size_t lddy, ldx, batch, in, out;
    float *dx;                   /* (batch, in) ld lddx, or NULL */
    size_t lddx;
    float *part;                 /* (nch - 1) partial dx sums of (batch, in), ld in */
    size_t nch;
    const lr_adam_step *s;       /* Adam's step, or NULL with gw */
    float *gw;                   /* non-NULL (s NULL): store each row's gradient here, ld ldg, not update */
    size_t ldg;
    bool reverse;                /* walk rows and chunks backwards (see lr__linear_backward_adam_ex) */
} fused_args;

/* Where chunk c adds its share of dx: dx itself for chunk 0, else its partial. */
static float *fused_dx(const fused_args *a, size_t c, size_t *ld)
{
    if (!a->dx) return NULL;
    *ld = c == 0 ? a->lddx : a->in;
    return c == 0 ? a->dx : a->part + (c - 1) * a->batch * a->in;
}

/* Rows [o0, o1), every column: plain C. */
static void fused_rows_c(const fused_args *a, size_t o0, size_t o1, float *dx, size_t lddx)
{
    size_t batch = a->batch, in = a->in;
    for (size_t k = 0; k < o1 - o0; k++) {
        size_t o = a->reverse ? o1 - 1 - k : o0 + k;
        float *wr = a->w + o * a->ldw;
        for (size_t j = 0; j < in; j++) {
            float g = 0.0f, wold = wr[j];
            for (size_t b = 0; b < batch; b++) {
                float d = a->dy[b * a->lddy + o];
                if (a->s || a->gw) g += d * a->x[b * a->ldx + j];
                if (dx) dx[b * lddx + j] += d * wold;
            }
            if (a->gw) a->gw[o * a->ldg + j] = g;
            else if (a->s)
                wr[j] = lr_adam_elem(wold, g, a->mw + o * a->ldm + j, a->vw + o * a->ldv + j, a->s);
        }
    }
}

#ifdef LR__X86
/* R rows starting at o, every column: per 8-column chunk the R gradients stay in
 * registers over the batch loop, dx takes the old weights' contribution, then Adam writes
 * the rows back (UPD = 1), or the gradients are stored in a->gw (UPD = 2). UPD = 0: dx only. (No software prefetch here: with 4 rows of w, m and v
 * streaming at once, the hardware prefetchers do better alone; prefetching every stream
 * measured 5-15 % slower.) */
__attribute__((target("avx2,fma"), always_inline)) static inline void
fused_block_avx2(const fused_args *a, size_t o, float *dx, size_t lddx, const int R,
                 const int want_dx, const int UPD)
{
    size_t batch = a->batch, in = a->in, j = 0;
    float *wr[4], *mr[4], *vr[4];
    for (int r = 0; r < R; r++) {
        wr[r] = a->w + (o + r) * a->ldw;
        mr[r] = UPD ? a->mw + (o + r) * a->ldm : NULL;
        vr[r] = UPD ? a->vw + (o + r) * a->ldv : NULL;
    }
    for (; j + 8 <= in; j += 8) {
        __m256 g[4], wv[4];
        for (int r = 0; r < R; r++) {
            g[r] = _mm256_setzero_ps();
            wv[r] = _mm256_loadu_ps(wr[r] + j);
        }
        for (size_t b = 0; b < batch; b++) {
            const float *dyb = a->dy + b * a->lddy + o;
            __m256 d[4];
            for (int r = 0; r < R; r++) d[r] = _mm256_broadcast_ss(dyb + r);
            if (UPD) {
                __m256 xv = _mm256_loadu_ps(a->x + b * a->ldx + j);
                for (int r = 0; r < R; r++) g[r] = _mm256_fmadd_ps(d[r], xv, g[r]);
            }
            if (want_dx) {
                float *dp = dx + b * lddx + j;
                __m256 acc = _mm256_loadu_ps(dp);
                for (int r = 0; r < R; r++) acc = _mm256_fmadd_ps(d[r], wv[r], acc);
                _mm256_storeu_ps(dp, acc);
            }
        }
        if (UPD == 1)
            for (int r = 0; r < R; r++)
                _mm256_storeu_ps(wr[r] + j, adam8(wv[r], g[r], mr[r] + j, vr[r] + j, a->s));
        if (UPD == 2)
            for (int r = 0; r < R; r++) _mm256_storeu_ps(a->gw + (o + (size_t)r) * a->ldg + j, g[r]);
    }
    for (; j < in; j++)
        for (int r = 0; r < R; r++) {
            float gs = 0.0f, wold = wr[r][j];
            for (size_t b = 0; b < batch; b++) {
                float d = a->dy[b * a->lddy + o + r];
                if (UPD) gs = fmaf(d, a->x[b * a->ldx + j], gs);
                if (want_dx) {
                    float *dp = dx + b * lddx + j;
                    *dp = fmaf(d, wold, *dp);
                }
            }
            if (UPD == 1) wr[r][j] = lr_adam_elem(wold, gs, &mr[r][j], &vr[r][j], a->s);
            if (UPD == 2) a->gw[(o + (size_t)r) * a->ldg + j] = gs;
        }
}

/* Rows [o0, o1) (o0 a multiple of 4), in blocks of 4 then single rows; reversed walks
 * take the same blocks in the opposite order. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
fused_rows(const fused_args *a, size_t o0, size_t o1, float *dx, size_t lddx, const int WANT_DX, const int UPD)
{
    size_t n4 = (o1 - o0) / 4, e4 = o0 + 4 * n4;
    if (!a->reverse) {
        for (size_t k = 0; k < n4; k++) fused_block_avx2(a, o0 + 4 * k, dx, lddx, 4, WANT_DX, UPD);
        for (size_t o = e4; o < o1; o++) fused_block_avx2(a, o, dx, lddx, 1, WANT_DX, UPD);
    } else {
        for (size_t o = o1; o-- > e4;) fused_block_avx2(a, o, dx, lddx, 1, WANT_DX, UPD);
        for (size_t k = n4; k-- > 0;) fused_block_avx2(a, o0 + 4 * k, dx, lddx, 4, WANT_DX, UPD);
    }
}

/* The four instances: with or without dx, Adam (UPD 1) or stored gradients (UPD 2). */
__attribute__((target("avx2,fma"))) static void fused_rows_avx2(const fused_args *a, size_t o0, size_t o1,
                                                               float *dx, size_t lddx)
{
    if (dx && !a->gw) fused_rows(a, o0, o1, dx, lddx, 1, 1);
    else if (!a->gw) fused_rows(a, o0, o1, dx, lddx, 0, 1);
    else if (dx) fused_rows(a, o0, o1, dx, lddx, 1, 2);
    else fused_rows(a, o0, o1, dx, lddx, 0, 2);
}

#endif

static void fused_chunk(void *ctx, size_t k)
{
    const fused_args *a = ctx;
    size_t c = a->reverse ? a->nch - 1 - k : k, lddx = 0;
    size_t o0 = fused_row(a->out, a->nch, c), o1 = fused_row(a->out, a->nch, c + 1);
    float *dx = fused_dx(a, c, &lddx);
    if (dx)
        for (size_t b = 0; b < a->batch; b++) memset(dx + b * lddx, 0, a->in * sizeof(float));
    if (o1 <= o0) return;
#ifdef LR__X86
    if (have_avx2()) {
        fused_rows_avx2(a, o0, o1, dx, lddx);
        return;
    }
#endif
    fused_rows_c(a, o0, o1, dx, lddx);
}

/* dx += partial 1 + partial 2 + ..., in chunk order, over columns [64k, 64k + 64). */
static void fused_reduce(void *ctx, size_t k)
{
    const fused_args *a = ctx;
    size_t j0 = 64 * k, j1 = j0 + 64 < a->in ? j0 + 64 : a->in;
    for (size_t c = 1; c < a->nch; c++) {
        const float *p = a->part + (c - 1) * a->batch * a->in;
        for (size_t b = 0; b < a->batch; b++) {
            float *d = a->dx + b * a->lddx;
            const float *q = p + b * a->in;
            for (size_t j = j0; j < j1; j++) d[j] += q[j];
        }
    }
}

static void fused_run(fused_args *a, const lr_pool *pool)
{
    a->nch = fused_nch(a->out);
    lr__parallel_for(pool, a->nch, fused_chunk, a);
    if (a->dx && a->nch > 1) lr__parallel_for(pool, (a->in + 63) / 64, fused_reduce, a);
}

void lr__linear_backward_grad_mt(lr_mat dx, lr_mat dw, float *db, lr_cmat dy, lr_cmat x, lr_cmat w, float *work,
                                 bool reverse, const lr_pool *pool)
{
    /* the fused pass with the Adam update replaced by a store: w is only read */
    fused_args a = { .w = (float *)w.data, .ldw = w.ld, .dy = dy.data, .x = x.data, .lddy = dy.ld, .ldx = x.ld,
                     .batch = dy.rows, .in = w.cols, .out = w.rows, .dx = dx.data, .lddx = dx.ld, .part = work,
                     .gw = dw.data, .ldg = dw.ld, .reverse = reverse };
    fused_run(&a, pool);
    for (size_t o = 0; o < w.rows; o++) { /* the bias as the fused step sums it */
        float g = 0.0f;
        for (size_t bb = 0; bb < dy.rows; bb++) g += dy.data[bb * dy.ld + o];
        db[o] = g;
    }
}

lr_status lr__linear_backward_adam_ex(lr_mat dx, lr_mat w, float *b, lr_mat m_w, lr_mat v_w,
                                      float *m_b, float *v_b, lr_cmat dy, lr_cmat x,
                                      const lr_adam_step *s, float *work, const lr_pool *pool, bool reverse,
                                      lr_err *err)
{
    lr_status st;
    if ((st = lr_mat_check(dy, "linear dy", err)) || (st = lr_mat_check(x, "linear x", err)) ||
        (st = lr_mat_check(lr_cm(w), "linear w", err)) ||
        (st = lr_mat_check(lr_cm(m_w), "adam m", err)) ||
        (st = lr_mat_check(lr_cm(v_w), "adam v", err)))
        return st;
    if (!s || !b || !m_b || !v_b)
        return lr__fail(err, LR_EINVAL, "linear backward_adam: step, b, m_b or v_b is NULL");
    if (x.cols != w.cols || dy.rows != x.rows || dy.cols != w.rows)
        return lr__fail(err, LR_EDIM, "linear backward_adam: x is %zu x %zu, w is %zu x %zu, dy is %zu x %zu",
                        x.rows, x.cols, w.rows, w.cols, dy.rows, dy.cols);
    if (m_w.rows != w.rows || m_w.cols != w.cols || v_w.rows != w.rows || v_w.cols != w.cols)
        return lr__fail(err, LR_EDIM, "linear backward_adam: moments are %zu x %zu and %zu x %zu, w is %zu x %zu",
                        m_w.rows, m_w.cols, v_w.rows, v_w.cols, w.rows, w.cols);
    if (dx.data && (dx.rows != x.rows || dx.cols != x.cols))
        return lr__fail(err, LR_EDIM, "linear backward_adam: dx is %zu x %zu, want %zu x %zu", dx.rows,
                        dx.cols, x.rows, x.cols);
    size_t batch = x.rows, in = x.cols, out = w.rows;
    fused_args a = { .w = w.data, .mw = m_w.data, .vw = v_w.data, .ldw = w.ld, .ldm = m_w.ld, .ldv = v_w.ld,
                     .dy = dy.data, .x = x.data, .lddy = dy.ld, .ldx = x.ld, .batch = batch, .in = in,
                     .out = out, .dx = dx.data, .lddx = dx.ld, .part = work, .s = s, .reverse = reverse };
    float *own = NULL;
    if (dx.data && !work && fused_nch(out) > 1) {
        /* no caller workspace: borrow one for the partial dx sums */
        own = calloc(lr_linear_backward_adam_work(batch, in), sizeof(float));
        if (!own)
            return lr__fail(err, LR_ENOMEM, "linear backward_adam: cannot allocate %zu x %zu partial sums",
                            batch, in);
        a.part = own;
    }
    fused_run(&a, pool);
    free(own);
    /* bias: gradient Σ_b dy[b,o], summed in batch order like the weights' rows */
    for (size_t o = 0; o < out; o++) {
        float g = 0.0f;
        for (size_t bb = 0; bb < batch; bb++) g += dy.data[bb * dy.ld + o];
        b[o] = lr_adam_elem(b[o], g, &m_b[o], &v_b[o], s);
    }
    return LR_OK;
}

lr_status lr_linear_backward_adam(lr_mat dx, lr_mat w, float *b, lr_mat m_w, lr_mat v_w, float *m_b,
                                  float *v_b, lr_cmat dy, lr_cmat x, const lr_adam_step *s,
                                  float *work, const lr_pool *pool, lr_err *err)
{
    LR__FP_SCOPE();
    return lr__linear_backward_adam_ex(dx, w, b, m_w, v_w, m_b, v_b, dy, x, s, work, pool, false,
                                       err);
}
