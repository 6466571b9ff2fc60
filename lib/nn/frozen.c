/* frozen.c — kernels of a frozen layer (LoRA's base: weights that do not train).
 *
 * dx. A frozen layer needs no weight gradient, so its backward pass is dx = dy·w alone. Behind
 * a ReLU most of dy is zero for the whole batch (in the 784-1000-2000-10 MLP's LoRA fine-tune
 * 83 % of linear2's 2000 units are off for all 10 images), so the kernel lists the rows of w
 * whose dy is not zero and reads only those. The work is cut by columns of dx: each piece
 * owns 512 columns and sums every listed row into them, in walk order, with the sums in
 * registers. No piece shares an output with another, so there are no partial sums to add
 * afterwards (the fused kernel's row chunks wrote and re-read 640 KB of them a step), and
 * every dx entry is one sum over the rows in walk order whatever the thread count.
 *
 * Forward. The same zeros sit in the layer's input, so the forward pass reads a transposed
 * copy of w (lr__wpack) and only the rows of wᵀ whose input is on, summing in the row
 * kernel's order (same bits). The copy is made here; whoever owns it knows when w was
 * written and remakes it (mlp.c counts every write of a layer's weights).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "base/cpu_internal.h"
#include "base/internal.h"
#include "base/pool_internal.h"
#include "nn/linear_internal.h"
#include "nn/simd.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define LR__X86 1
#endif

/* Columns of dx per piece (a multiple of 32): two pieces for a 1000-wide layer. Narrower
 * pieces (64 columns) were no faster with AVX-512 and slower with AVX2 (docs/performance.md,
 * "Measured choices of the frozen-layer kernels"). */
#define LR__DXC 512
/* Rows per group: a group's pieces of w (16 rows x 2 KB) stay in L1 while the piece's
 * column blocks sweep them. */
#define LR__DXG 16
/* Rows per window: the active rows of a window are listed on the stack. */
#define LR__DXW 4096

/* One window of rows: its active rows in walk order, for every piece of columns. */
typedef struct {
    const float *w, *dy;   /* w: (out, in) ld ldw; dy: (batch, out) ld lddy */
    size_t ldw, lddy;
    float *dx;             /* (batch, in) ld lddx */
    size_t lddx, batch, in;
    const uint32_t *rows;  /* the window's rows whose dy is not zero in every batch row */
    size_t n;
    bool first;            /* the first window: the sums start from +0, later ones from dx */
} dxo_job;

/* Row o takes part only if some dy[b, o] is not zero. Skipping a row whose terms are all
 * exact zeros leaves every sum as it was: the sums start at +0 and adding ±0 changes
 * nothing. NaN is not zero, so a NaN in dy still reaches dx. */
static bool dy_row_active(const float *dy, size_t lddy, size_t batch, size_t o)
{
    for (size_t b = 0; b < batch; b++)
        if (dy[b * lddy + o] != 0.0f) return true;
    return false;
}

/* rows[] <- the active rows among [o0, o1), in walk order; returns their number. */
static size_t dxo_list(uint32_t *rows, const float *dy, size_t lddy, size_t batch, size_t o0, size_t o1,
                       bool reverse)
{
    size_t n = 0;
    for (size_t k = 0; k < o1 - o0; k++) {
        size_t o = reverse ? o1 - 1 - k : o0 + k;
        if (dy_row_active(dy, lddy, batch, o)) rows[n++] = (uint32_t)o;
    }
    return n;
}

/* Columns [j0, j1) of every batch row, in plain C: each dx entry is summed over the rows in
 * list order with fmaf, as the vector kernel does lane by lane. */
static void dxo_cols_c(const dxo_job *a, size_t j0, size_t j1)
{
    for (size_t b = 0; b < a->batch; b++) {
        float *dp = a->dx + b * a->lddx;
        if (a->first)
            for (size_t j = j0; j < j1; j++) dp[j] = 0.0f;
        for (size_t k = 0; k < a->n; k++) {
            const float *wr = a->w + (size_t)a->rows[k] * a->ldw;
            float d = a->dy[b * a->lddy + a->rows[k]];
            for (size_t j = j0; j < j1; j++) dp[j] = fmaf(d, wr[j], dp[j]);
        }
    }
}

#ifdef LR__X86
/* The vector kernels come in two widths, 8 lanes (AVX2) and 16 (AVX-512F), written out once
 * each: C has no templates, and one body for both types would take a macro. Both put one
 * output per lane and do every operation lane by lane, so both widths give the same bits;
 * the unit tests hold each to the plain C kernel under LR_ISA=avx2 and avx512. */

/* AVX2 has 16 vector registers: its tiles of two vectors of outputs take at most 6 batch
 * rows (12 accumulators), against AVX-512's 12 rows in 32 registers. Batch tiles of even
 * size (10 = 5 + 5). The tiling changes no sum: every output is its own. */
static size_t bt_tile6(size_t batch)
{
    size_t ntiles = (batch + 5) / 6;
    return ntiles ? (batch + ntiles - 1) / ntiles : 1;
}

/* The same columns j of the next group's rows (4 KB apart in a 1000-wide layer, in no order
 * the hardware prefetchers follow), for the list's row k. */
__attribute__((always_inline)) static inline void dxo_prefetch(const dxo_job *a, size_t k, size_t j)
{
    if (k + LR__DXG < a->n) __builtin_prefetch(a->w + (size_t)a->rows[k + LR__DXG] * a->ldw + j, 0, 3);
}

/* dx[b0 .. b0 + BT, j .. j + 8·CB) over the list's rows [g, g + gn): the sums stay in
 * registers while the rows stream past, so each w vector serves BT batch rows and each dy
 * broadcast CB vectors (0.6 loads per FMA at CB = 2, BT = 10). zero: start from +0 (the
 * first group of the first window), else from dx. CB <= 2 and BT <= LR__FB, both constants. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
dxo_block8(const dxo_job *a, size_t g, size_t gn, size_t b0, size_t j, bool zero, const int CB, const int BT)
{
    __m256 acc[LR__FB][2];
    float *dxb = a->dx + b0 * a->lddx + j;
    for (int b = 0; b < BT; b++)
        for (int c = 0; c < CB; c++)
            acc[b][c] = zero ? _mm256_setzero_ps() : _mm256_loadu_ps(dxb + (size_t)b * a->lddx + 8 * (size_t)c);
    for (size_t k = g; k < g + gn; k++) {
        size_t o = a->rows[k];
        const float *wr = a->w + o * a->ldw + j;
        __m256 wv[2];
        for (int c = 0; c < CB; c++) wv[c] = _mm256_loadu_ps(wr + 8 * c);
        dxo_prefetch(a, k, j);
        const float *dyo = a->dy + b0 * a->lddy + o;
        for (int b = 0; b < BT; b++) {
            __m256 d = _mm256_broadcast_ss(dyo + (size_t)b * a->lddy);
            if (CB > 1) LR__IN_REGISTER(d);
            for (int c = 0; c < CB; c++) acc[b][c] = _mm256_fmadd_ps(d, wv[c], acc[b][c]);
        }
    }
    for (int b = 0; b < BT; b++)
        for (int c = 0; c < CB; c++) _mm256_storeu_ps(dxb + (size_t)b * a->lddx + 8 * c, acc[b][c]);
}

/* dxo_block8 on 16 lanes: dx[b0 .. b0 + BT, j .. j + 16·CB). */
__attribute__((target("avx2,fma,avx512f"), always_inline)) static inline void
dxo_block16(const dxo_job *a, size_t g, size_t gn, size_t b0, size_t j, bool zero, const int CB, const int BT)
{
    __m512 acc[LR__FB][2];
    float *dxb = a->dx + b0 * a->lddx + j;
    for (int b = 0; b < BT; b++)
        for (int c = 0; c < CB; c++)
            acc[b][c] = zero ? _mm512_setzero_ps() : _mm512_loadu_ps(dxb + (size_t)b * a->lddx + 16 * (size_t)c);
    for (size_t k = g; k < g + gn; k++) {
        size_t o = a->rows[k];
        const float *wr = a->w + o * a->ldw + j;
        __m512 wv[2];
        for (int c = 0; c < CB; c++) wv[c] = _mm512_loadu_ps(wr + 16 * c);
        dxo_prefetch(a, k, j);
        const float *dyo = a->dy + b0 * a->lddy + o;
        for (int b = 0; b < BT; b++) {
            __m512 d = _mm512_set1_ps(dyo[(size_t)b * a->lddy]);
            if (CB > 1) LR__IN_REGISTER(d);
            for (int c = 0; c < CB; c++) acc[b][c] = _mm512_fmadd_ps(d, wv[c], acc[b][c]);
        }
    }
    for (int b = 0; b < BT; b++)
        for (int c = 0; c < CB; c++) _mm512_storeu_ps(dxb + (size_t)b * a->lddx + 16 * c, acc[b][c]);
}

/* dx columns [j0, j1) (multiples of 8) of batch rows [b0, b0 + BT) over the list's rows
 * [g, g + gn): 16 columns at a time, then 8. BT <= 6 (AVX2's tiler), a constant. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
dxo_tile8(const dxo_job *a, size_t g, size_t gn, size_t b0, size_t j0, size_t j1, bool zero, const int BT)
{
    size_t j = j0;
    for (; j + 16 <= j1; j += 16) dxo_block8(a, g, gn, b0, j, zero, 2, BT);
    for (; j < j1; j += 8) dxo_block8(a, g, gn, b0, j, zero, 1, BT);
}

/* dxo_tile8 on 16 lanes: 32 columns at a time, then 16, then 8 as AVX2 does; all give the
 * same bits. BT <= LR__FB. */
__attribute__((target("avx2,fma,avx512f"), always_inline)) static inline void
dxo_tile16(const dxo_job *a, size_t g, size_t gn, size_t b0, size_t j0, size_t j1, bool zero, const int BT)
{
    size_t j = j0;
    for (; j + 32 <= j1; j += 32) dxo_block16(a, g, gn, b0, j, zero, 2, BT);
    for (; j + 16 <= j1; j += 16) dxo_block16(a, g, gn, b0, j, zero, 1, BT);
    for (; j < j1; j += 8) dxo_block8(a, g, gn, b0, j, zero, 1, BT);
}

/* Columns [j0, j1) (multiples of 8) over every row of the list, group by group and batch tile
 * by batch tile: a call with a literal height for each tile height bt, so that every height
 * gets its own fully unrolled kernel. (Two functions: GCC inlines an AVX-512 block only into
 * an AVX-512 function.) */
__attribute__((target("avx2,fma"))) static void dxo_cols_avx2(const dxo_job *a, size_t j0, size_t j1)
{
    size_t tile = bt_tile6(a->batch);
    for (size_t g = 0; g < a->n; g += LR__DXG) {
        size_t gn = a->n - g < LR__DXG ? a->n - g : LR__DXG;
        bool zero = a->first && g == 0;
        for (size_t b0 = 0; b0 < a->batch; b0 += tile) {
            switch (a->batch - b0 < tile ? a->batch - b0 : tile) {
            case 1: dxo_tile8(a, g, gn, b0, j0, j1, zero, 1); break;
            case 2: dxo_tile8(a, g, gn, b0, j0, j1, zero, 2); break;
            case 3: dxo_tile8(a, g, gn, b0, j0, j1, zero, 3); break;
            case 4: dxo_tile8(a, g, gn, b0, j0, j1, zero, 4); break;
            case 5: dxo_tile8(a, g, gn, b0, j0, j1, zero, 5); break;
            case 6: dxo_tile8(a, g, gn, b0, j0, j1, zero, 6); break;
            default: break;
            }
        }
    }
}

__attribute__((target("avx2,fma,avx512f"))) static void dxo_cols_avx512(const dxo_job *a, size_t j0, size_t j1)
{
    for (size_t g = 0; g < a->n; g += LR__DXG) {
        size_t gn = a->n - g < LR__DXG ? a->n - g : LR__DXG;
        bool zero = a->first && g == 0;
        for (size_t b0 = 0; b0 < a->batch; b0 += LR__FB) {
            switch (a->batch - b0 < LR__FB ? a->batch - b0 : LR__FB) {
            case 1: dxo_tile16(a, g, gn, b0, j0, j1, zero, 1); break;
            case 2: dxo_tile16(a, g, gn, b0, j0, j1, zero, 2); break;
            case 3: dxo_tile16(a, g, gn, b0, j0, j1, zero, 3); break;
            case 4: dxo_tile16(a, g, gn, b0, j0, j1, zero, 4); break;
            case 5: dxo_tile16(a, g, gn, b0, j0, j1, zero, 5); break;
            case 6: dxo_tile16(a, g, gn, b0, j0, j1, zero, 6); break;
            case 7: dxo_tile16(a, g, gn, b0, j0, j1, zero, 7); break;
            case 8: dxo_tile16(a, g, gn, b0, j0, j1, zero, 8); break;
            case 9: dxo_tile16(a, g, gn, b0, j0, j1, zero, 9); break;
            case 10: dxo_tile16(a, g, gn, b0, j0, j1, zero, 10); break;
            case 11: dxo_tile16(a, g, gn, b0, j0, j1, zero, 11); break;
            case 12: dxo_tile16(a, g, gn, b0, j0, j1, zero, 12); break;
            default: break;
            }
        }
    }
}
#endif

/* Piece k: columns [LR__DXC·k, LR__DXC·(k + 1)) of dx. */
static void dxo_piece(void *ctx, size_t k)
{
    const dxo_job *a = ctx;
    size_t j0 = LR__DXC * k, j1 = j0 + LR__DXC < a->in ? j0 + LR__DXC : a->in, jv = j1;
    if (a->n == 0) { /* no active row: zeros (first window), or nothing to add */
        if (a->first)
            for (size_t b = 0; b < a->batch; b++) memset(a->dx + b * a->lddx + j0, 0, (j1 - j0) * sizeof(float));
        return;
    }
#ifdef LR__X86
    if (lr__isa() >= LR_ISA_AVX2) {
        jv = j0 + ((j1 - j0) & ~(size_t)7); /* the vector columns; the rest in plain C */
        if (lr__isa() >= LR_ISA_AVX512) dxo_cols_avx512(a, j0, jv);
        else dxo_cols_avx2(a, j0, jv);
    } else {
        jv = j0;
    }
#else
    jv = j0;
#endif
    if (jv < j1) dxo_cols_c(a, jv, j1);
}

void lr__linear_dx_mt(lr_mat dx, lr_cmat dy, lr_cmat w, bool reverse, const lr_pool *pool)
{
    size_t out = w.rows;
    uint32_t rows[LR__DXW];
    dxo_job a = { .w = w.data, .dy = dy.data, .ldw = w.ld, .lddy = dy.ld, .dx = dx.data, .lddx = dx.ld,
                  .batch = dy.rows, .in = w.cols, .rows = rows, .first = true };
    /* at least one window, so that dx is zeroed when w has no rows */
    size_t nwin = out ? (out + LR__DXW - 1) / LR__DXW : 1, npiece = (a.in + LR__DXC - 1) / LR__DXC;
    for (size_t k = 0; k < nwin; k++) {
        size_t q = reverse ? nwin - 1 - k : k; /* windows in walk order too */
        size_t o0 = LR__DXW * q, o1 = o0 + LR__DXW < out ? o0 + LR__DXW : out;
        a.n = dxo_list(rows, dy.data, dy.ld, dy.rows, o0, o1, reverse);
        if (a.n > 0 || a.first) lr__parallel_for(pool, npiece, dxo_piece, &a);
        a.first = false;
    }
}

/* ------------------------------------------------- forward through a transposed copy ---- */

/* Outputs per piece of the packed forward (a multiple of 16). */
#define LR__PKO 128
/* Active columns the prefetch runs ahead. */
#define LR__PKF 8

lr_status lr__wpack_make(lr__wpack *p, lr_cmat w, size_t max_batch, float *lend, size_t lend_n, float *lend2,
                         size_t lend2_n, lr_err *err)
{
    memset(p, 0, sizeof *p);
    if (w.cols > LR__PK_MAXJB * LR__FJ || max_batch == 0)
        return lr__fail(err, LR_EINVAL, "frozen layer: %zu x %zu at batch %zu is not packed", w.rows, w.cols,
                        max_batch);
    size_t ld = (w.rows + 15) & ~(size_t)15, n, nx;
    if (lr_size_mul(&n, w.cols, ld, NULL) || lr_size_mul(&nx, w.cols, max_batch, NULL) || nx > SIZE_MAX / 8 - n)
        return lr__fail(err, LR_ERANGE, "frozen layer: a %zu x %zu copy overflows", w.cols, ld);
    size_t split = lend ? lend_n / ld : 0;
    if (split > w.cols) split = w.cols;
    bool lent = lend && (w.cols - split) * ld <= (lend2 ? lend2_n : 0);
    /* the scratch (xt, then cols: 4 bytes each), and the copy itself unless lent */
    p->own = lr__alloc_floats_huge(nx + w.cols + (lent ? 0 : n));
    if (!p->own) return lr__fail(err, LR_ENOMEM, "frozen layer: cannot allocate a %zu x %zu copy", w.cols, ld);
    p->xt = p->own;
    p->cols = (uint32_t *)(p->own + nx);
    p->t0 = lent ? lend : p->own + nx + w.cols;
    p->t1 = lent ? lend2 : p->t0 + w.cols * ld;
    p->split = lent ? split : w.cols;
    p->in = w.cols;
    p->out = w.rows;
    p->ld = ld;
    p->max_batch = max_batch;
    /* wᵀ in blocks of 64 x 64, so both sides stay in cache; the padding zeroed */
    for (size_t o0 = 0; o0 < ld; o0 += 64)
        for (size_t j0 = 0; j0 < w.cols; j0 += 64)
            for (size_t j = j0; j < j0 + 64 && j < w.cols; j++) {
                float *tr = (float *)lr__wpack_row(p, j);
                for (size_t o = o0; o < o0 + 64 && o < ld; o++) tr[o] = o < w.rows ? w.data[o * w.ld + j] : 0.0f;
            }
    return LR_OK;
}

void lr__wpack_free(lr__wpack *p)
{
    if (!p) return;
    free(p->own);
    memset(p, 0, sizeof *p);
}

/* The job of one packed forward: the active columns of x, lane by lane (see below). */
typedef struct {
    const lr__wpack *p;
    float *y;               /* (batch, out) ld ldy */
    size_t ldy, batch;
    const float *x;         /* (batch, in) ld ldx: the tail columns are read from here */
    size_t ldx;
    const float *bias;      /* (out) or NULL */
    size_t nact;            /* active columns listed in p->cols, x's values for them in p->xt */
    size_t lane[LR__PK_MAXJB][9]; /* column block q, lane l: p->cols[lane[q][l] .. lane[q][l + 1]) */
} pk_job;

/* The columns of block q: [j0, j1), the vector part ending at jt. */
static void pk_block(const lr__wpack *p, size_t q, size_t *j0, size_t *j1, size_t *jt)
{
    *j0 = LR__FJ * q;
    *j1 = *j0 + LR__FJ < p->in ? *j0 + LR__FJ : p->in;
    *jt = *j0 + ((*j1 - *j0) & ~(size_t)7);
}

#ifdef LR__X86

/* Outputs [o, o + W·CB) for batch rows [b0, b0 + BT), column block q, as fwd_tile_avx2 in
 * linear.c sums them: lane l of the 8 accumulates the active columns j ≡ l (mod 8) in
 * increasing order (here one register lane per output instead of one per lane of the 8),
 * then the 8 are added in hsum8's tree, then the tail columns, then the bias or the previous
 * blocks' sum. So each y entry gets the row kernel's value, bit for bit. W = 8 (AVX2) or 16
 * (AVX-512F), written out once each as the dx kernels above. */

/* Asks for the piece's LR__PKO outputs from o in the row of wᵀ of active column k. The
 * tiles call it LR__PKF columns ahead of their walk, and only for the piece's first outputs:
 * the later tiles of the piece find the rows in cache. */
__attribute__((always_inline)) static inline void pk_prefetch(const lr__wpack *p, size_t k, size_t o)
{
    const float *pf = lr__wpack_row(p, p->cols[k]) + o;
    for (int m = 0; m < LR__PKO; m += 16) __builtin_prefetch(pf + m, 0, 3);
}

/* The tile (see above) on 8 outputs a vector: CB <= 2 vectors, BT <= LR__FB rows, constants. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
pk_tile8(const pk_job *a, size_t q, size_t o, size_t b0, bool first_o, const int CB, const int BT)
{
    const lr__wpack *p = a->p;
    size_t j0, j1, jt;
    pk_block(p, q, &j0, &j1, &jt);
    __m256 lanes[8][LR__FB][2];
    for (int l = 0; l < 8; l++) {
        __m256 acc[LR__FB][2];
        for (int b = 0; b < BT; b++)
            for (int c = 0; c < CB; c++) acc[b][c] = _mm256_setzero_ps();
        for (size_t k = a->lane[q][l]; k < a->lane[q][l + 1]; k++) {
            const float *wr = lr__wpack_row(p, p->cols[k]) + o;
            __m256 wv[2];
            for (int c = 0; c < CB; c++) wv[c] = _mm256_loadu_ps(wr + 8 * c);
            if (first_o && k + LR__PKF < a->nact) pk_prefetch(p, k + LR__PKF, o);
            const float *xk = p->xt + k * a->batch + b0;
            for (int b = 0; b < BT; b++) {
                __m256 xb = _mm256_broadcast_ss(xk + b);
                if (CB > 1) LR__IN_REGISTER(xb);
                for (int c = 0; c < CB; c++) acc[b][c] = _mm256_fmadd_ps(wv[c], xb, acc[b][c]);
            }
        }
        for (int b = 0; b < BT; b++)
            for (int c = 0; c < CB; c++) lanes[l][b][c] = acc[b][c];
    }
    for (int b = 0; b < BT; b++) {
        const float *xr = a->x + (b0 + (size_t)b) * a->ldx;
        float *yr = a->y + (b0 + (size_t)b) * a->ldy;
        for (int c = 0; c < CB; c++) {
            __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(lanes[0][b][c], lanes[4][b][c]),
                                                   _mm256_add_ps(lanes[2][b][c], lanes[6][b][c])),
                                     _mm256_add_ps(_mm256_add_ps(lanes[1][b][c], lanes[5][b][c]),
                                                   _mm256_add_ps(lanes[3][b][c], lanes[7][b][c])));
            size_t oc = o + 8 * (size_t)c;
            for (size_t jj = jt; jj < j1; jj++)
                s = _mm256_fmadd_ps(_mm256_loadu_ps(lr__wpack_row(p, jj) + oc), _mm256_broadcast_ss(xr + jj), s);
            if (oc + 8 <= p->out) {
                __m256 base = q > 0 ? _mm256_loadu_ps(yr + oc)
                              : a->bias ? _mm256_loadu_ps(a->bias + oc) : _mm256_setzero_ps();
                _mm256_storeu_ps(yr + oc, _mm256_add_ps(base, s));
            } else { /* the last, partial block of outputs */
                float sv[8];
                _mm256_storeu_ps(sv, s);
                for (size_t m = 0; m < 8 && oc + m < p->out; m++)
                    yr[oc + m] = (q > 0 ? yr[oc + m] : a->bias ? a->bias[oc + m] : 0.0f) + sv[m];
            }
        }
    }
}

/* pk_tile8 on 16 outputs a vector. */
__attribute__((target("avx2,fma,avx512f"), always_inline)) static inline void
pk_tile16(const pk_job *a, size_t q, size_t o, size_t b0, bool first_o, const int CB, const int BT)
{
    const lr__wpack *p = a->p;
    size_t j0, j1, jt;
    pk_block(p, q, &j0, &j1, &jt);
    __m512 lanes[8][LR__FB][2];
    for (int l = 0; l < 8; l++) {
        __m512 acc[LR__FB][2];
        for (int b = 0; b < BT; b++)
            for (int c = 0; c < CB; c++) acc[b][c] = _mm512_setzero_ps();
        for (size_t k = a->lane[q][l]; k < a->lane[q][l + 1]; k++) {
            const float *wr = lr__wpack_row(p, p->cols[k]) + o;
            __m512 wv[2];
            for (int c = 0; c < CB; c++) wv[c] = _mm512_loadu_ps(wr + 16 * c);
            if (first_o && k + LR__PKF < a->nact) pk_prefetch(p, k + LR__PKF, o);
            const float *xk = p->xt + k * a->batch + b0;
            for (int b = 0; b < BT; b++) {
                __m512 xb = _mm512_set1_ps(xk[b]);
                if (CB > 1) LR__IN_REGISTER(xb);
                for (int c = 0; c < CB; c++) acc[b][c] = _mm512_fmadd_ps(wv[c], xb, acc[b][c]);
            }
        }
        for (int b = 0; b < BT; b++)
            for (int c = 0; c < CB; c++) lanes[l][b][c] = acc[b][c];
    }
    for (int b = 0; b < BT; b++) {
        const float *xr = a->x + (b0 + (size_t)b) * a->ldx;
        float *yr = a->y + (b0 + (size_t)b) * a->ldy;
        for (int c = 0; c < CB; c++) {
            __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(lanes[0][b][c], lanes[4][b][c]),
                                                   _mm512_add_ps(lanes[2][b][c], lanes[6][b][c])),
                                     _mm512_add_ps(_mm512_add_ps(lanes[1][b][c], lanes[5][b][c]),
                                                   _mm512_add_ps(lanes[3][b][c], lanes[7][b][c])));
            size_t oc = o + 16 * (size_t)c;
            for (size_t jj = jt; jj < j1; jj++)
                s = _mm512_fmadd_ps(_mm512_loadu_ps(lr__wpack_row(p, jj) + oc), _mm512_set1_ps(xr[jj]), s);
            if (oc + 16 <= p->out) {
                __m512 base = q > 0 ? _mm512_loadu_ps(yr + oc)
                              : a->bias ? _mm512_loadu_ps(a->bias + oc) : _mm512_setzero_ps();
                _mm512_storeu_ps(yr + oc, _mm512_add_ps(base, s));
            } else { /* the last, partial block of outputs */
                float sv[16];
                _mm512_storeu_ps(sv, s);
                for (size_t m = 0; m < 16 && oc + m < p->out; m++)
                    yr[oc + m] = (q > 0 ? yr[oc + m] : a->bias ? a->bias[oc + m] : 0.0f) + sv[m];
            }
        }
    }
}

/* Outputs [o0, o1) (o0 a multiple of 16) of batch rows [b0, b0 + BT) in column block q, two
 * registers of 8 outputs at a time. BT <= 6 (AVX2's tiler), a constant. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
pk_outs8(const pk_job *a, size_t q, size_t b0, size_t o0, size_t o1, const int BT)
{
    for (size_t o = o0; o < o1; o += 16) pk_tile8(a, q, o, b0, o == o0, 2, BT);
}

/* pk_outs8 on 16 outputs a vector: two at a time, and one for the last 16 when the padded
 * row (a multiple of 16) ends there. BT <= LR__FB. */
__attribute__((target("avx2,fma,avx512f"), always_inline)) static inline void
pk_outs16(const pk_job *a, size_t q, size_t b0, size_t o0, size_t o1, const int BT)
{
    size_t o = o0;
    for (; o + 32 <= a->p->ld && o < o1; o += 32) pk_tile16(a, q, o, b0, o == o0, 2, BT);
    for (; o < o1; o += 16) pk_tile16(a, q, o, b0, o == o0, 1, BT);
}

/* Outputs [o0, o1), every column block and batch tile: a call with a literal height for each
 * tile height bt, so that every height gets its own fully unrolled kernel. */
__attribute__((target("avx2,fma"))) static void pk_piece_avx2(const pk_job *a, size_t o0, size_t o1)
{
    size_t nq = (a->p->in + LR__FJ - 1) / LR__FJ, tile = bt_tile6(a->batch);
    for (size_t q = 0; q < nq; q++)
        for (size_t b0 = 0; b0 < a->batch; b0 += tile) {
            switch (a->batch - b0 < tile ? a->batch - b0 : tile) {
            case 1: pk_outs8(a, q, b0, o0, o1, 1); break;
            case 2: pk_outs8(a, q, b0, o0, o1, 2); break;
            case 3: pk_outs8(a, q, b0, o0, o1, 3); break;
            case 4: pk_outs8(a, q, b0, o0, o1, 4); break;
            case 5: pk_outs8(a, q, b0, o0, o1, 5); break;
            case 6: pk_outs8(a, q, b0, o0, o1, 6); break;
            default: break;
            }
        }
}

__attribute__((target("avx2,fma,avx512f"))) static void pk_piece_avx512(const pk_job *a, size_t o0, size_t o1)
{
    size_t nq = (a->p->in + LR__FJ - 1) / LR__FJ;
    for (size_t q = 0; q < nq; q++)
        for (size_t b0 = 0; b0 < a->batch; b0 += LR__FB) {
            switch (a->batch - b0 < LR__FB ? a->batch - b0 : LR__FB) {
            case 1: pk_outs16(a, q, b0, o0, o1, 1); break;
            case 2: pk_outs16(a, q, b0, o0, o1, 2); break;
            case 3: pk_outs16(a, q, b0, o0, o1, 3); break;
            case 4: pk_outs16(a, q, b0, o0, o1, 4); break;
            case 5: pk_outs16(a, q, b0, o0, o1, 5); break;
            case 6: pk_outs16(a, q, b0, o0, o1, 6); break;
            case 7: pk_outs16(a, q, b0, o0, o1, 7); break;
            case 8: pk_outs16(a, q, b0, o0, o1, 8); break;
            case 9: pk_outs16(a, q, b0, o0, o1, 9); break;
            case 10: pk_outs16(a, q, b0, o0, o1, 10); break;
            case 11: pk_outs16(a, q, b0, o0, o1, 11); break;
            case 12: pk_outs16(a, q, b0, o0, o1, 12); break;
            default: break;
            }
        }
}

static void pk_run(void *ctx, size_t k)
{
    const pk_job *a = ctx;
    size_t o0 = LR__PKO * k, o1 = o0 + LR__PKO < a->p->out ? o0 + LR__PKO : a->p->out;
    if (lr__isa() >= LR_ISA_AVX512) pk_piece_avx512(a, o0, o1);
    else pk_piece_avx2(a, o0, o1);
}
#endif

/* Lists the active columns of x lane by lane into p->cols and their values, transposed, into
 * p->xt; returns how many, or SIZE_MAX as soon as there are more than `most`. An active
 * column is one that is not zero in some batch row: a column that is zero in every row adds
 * exact zeros to every sum, which leaves it as it was (the lane sums start at +0), for
 * finite weights. */
static size_t pk_list(pk_job *a, size_t most)
{
    const lr__wpack *p = a->p;
    size_t nq = (p->in + LR__FJ - 1) / LR__FJ, n = 0;
    for (size_t q = 0; q < nq; q++) {
        size_t j0, j1, jt;
        pk_block(p, q, &j0, &j1, &jt);
        uint8_t any[LR__FJ] = { 0 }; /* row by row, which vectorises */
        for (size_t b = 0; b < a->batch; b++)
            for (size_t j = j0; j < jt; j++) any[j - j0] |= a->x[b * a->ldx + j] != 0.0f; /* NaN counts */
        for (int l = 0; l < 8; l++) {
            a->lane[q][l] = n;
            for (size_t j = j0 + (size_t)l; j < jt; j += 8) {
                if (!any[j - j0]) continue;
                if (n == most) return SIZE_MAX;
                p->cols[n] = (uint32_t)j;
                for (size_t b = 0; b < a->batch; b++) p->xt[n * a->batch + b] = a->x[b * a->ldx + j];
                n++;
            }
        }
        a->lane[q][8] = n;
    }
    return n;
}

bool lr__linear_forward_packed_mt(lr_mat y, lr_cmat x, const lr__wpack *p, const float *b, const lr_pool *pool)
{
#ifdef LR__X86
    if (!p || !p->own || x.rows > p->max_batch || x.cols != p->in || y.cols != p->out || lr__isa() < LR_ISA_AVX2)
        return false;
    pk_job a = { .p = p, .y = y.data, .ldy = y.ld, .batch = x.rows, .x = x.data, .ldx = x.ld, .bias = b };
    /* AVX-512 does 16 outputs per FMA here against the row kernel's 8 inputs, and wins even
     * when every column is active; AVX2 wins only on sparse input, so it stops listing past
     * half the columns and leaves the layer to the row kernel (the figures:
     * docs/performance.md, "Measured choices of the frozen-layer kernels"). */
    a.nact = pk_list(&a, lr__isa() >= LR_ISA_AVX512 ? SIZE_MAX : p->in / 2);
    if (a.nact == SIZE_MAX) return false;
    lr__parallel_for(pool, (p->out + LR__PKO - 1) / LR__PKO, pk_run, &a);
    return true;
#else
    (void)y, (void)x, (void)p, (void)b, (void)pool;
    return false;
#endif
}

lr_status lr__linear_forward_packed_once(lr_mat y, lr_cmat x, lr_cmat w, const float *b, const lr_pool *pool,
                                         bool *used, lr_err *err)
{
    lr__wpack p;
    lr_status s = lr__wpack_make(&p, w, x.rows, NULL, 0, NULL, 0, err);
    if (s) return s;
    *used = lr__linear_forward_packed_mt(y, x, &p, b, pool);
    lr__wpack_free(&p);
    return LR_OK;
}
