/* linear.c — dense-layer kernels: forward, backward, backward fused with Adam, LoRA branch.
 *
 * The training step of the seed's model at batch 10 is memory-bound: every step streams the
 * weights (11 MB) in the forward pass and the weights plus Adam's two moments (34 MB, read
 * and written) in the update. So:
 *  - the forward pass for small batches reads each weight row ONCE for the whole batch
 *    (register tile of up to LR__FB batch rows), instead of sgemm's packing copy;
 *  - the backward pass never stores a weight gradient: lr_linear_backward_adam walks w
 *    once, 4 rows at a time, and for each 8-column chunk forms the gradient in registers,
 *    adds the old weights' contribution to dx, and applies Adam in place;
 *  - the work is cut into independent pieces (row chunks forward, column chunks backward:
 *    every output element belongs to one piece) handed to threads dynamically by
 *    lr__parallel_for, so results do not depend on the thread count or the schedule;
 *  - the training step alternates the direction of the backward walk every step, so the
 *    rows touched last (still in the last-level cache) are touched first next time.
 * The x86 kernels use AVX2+FMA (chosen at run time with __builtin_cpu_supports, so the
 * build stays portable); other machines run the plain C loops, which compute the same
 * quantities in the same order up to the FMA roundings.
 */
#include <math.h>
#include <string.h>
#include "lowrank/linear.h"
#include "lowrank/blas.h"
#include "internal.h"
#include "mlp_internal.h"
#include "parallel.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define LR__X86 1
#include <immintrin.h>
#endif

/* Largest batch the register-tiled forward handles in one tile. */
#define LR__FB 12
/* Batches up to this size use the row-streaming forward; larger ones sgemm. */
#define LR__SMALL_BATCH 32

static int have_avx2(void)
{
#ifdef LR__X86
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
#else
    return 0;
#endif
}

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
__attribute__((target("avx2,fma"))) static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One row against BT batch rows over columns [j0, j1), all accumulators in registers: the
 * row piece is read once for the whole batch. y += the partial dot products (the first
 * column block starts from the bias). */
__attribute__((target("avx2,fma"), always_inline)) static inline void
fwd_row_avx2(float *y, size_t ldy, const float *x, size_t ldx, const float *wr, float bias,
             size_t j0, size_t j1, size_t o, const int BT)
{
    __m256 acc[LR__FB];
    for (int b = 0; b < BT; b++) acc[b] = _mm256_setzero_ps();
    size_t j = j0;
    for (; j + 8 <= j1; j += 8) {
        __m256 wv = _mm256_loadu_ps(wr + j);
        for (int b = 0; b < BT; b++)
            acc[b] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + (size_t)b * ldx + j), acc[b]);
    }
    for (int b = 0; b < BT; b++) {
        float s = hsum8(acc[b]);
        const float *xr = x + (size_t)b * ldx;
        for (size_t jj = j; jj < j1; jj++) s = fmaf(wr[jj], xr[jj], s);
        float *yp = y + (size_t)b * ldy + o;
        *yp = (j0 == 0 ? bias : *yp) + s;
    }
}

/* Columns are taken in blocks of LR__FJ so the batch's piece of x (BT x LR__FJ floats,
 * 24 KB) stays in L1 while every row streams past it. */
#define LR__FJ 512
#define LR__FWD_CASE(n)                                                                      \
    case n:                                                                                  \
        for (size_t j0 = 0; j0 < in; j0 += LR__FJ) {                                         \
            size_t j1 = in - j0 < LR__FJ ? in : j0 + LR__FJ;                                 \
            for (size_t o = o0; o < o1; o++)                                                 \
                fwd_row_avx2(y, ldy, x, ldx, w + o * ldw, bias ? bias[o] : 0.0f, j0, j1, o, n); \
        }                                                                                    \
        break;

__attribute__((target("avx2,fma"))) static void
fwd_rows_avx2(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw,
              const float *bias, size_t bt, size_t in, size_t o0, size_t o1)
{
    switch (bt) {
        LR__FWD_CASE(1) LR__FWD_CASE(2) LR__FWD_CASE(3) LR__FWD_CASE(4) LR__FWD_CASE(5)
        LR__FWD_CASE(6) LR__FWD_CASE(7) LR__FWD_CASE(8) LR__FWD_CASE(9) LR__FWD_CASE(10)
        LR__FWD_CASE(11) LR__FWD_CASE(12)
    default: fwd_rows_c(y, ldy, x, ldx, w, ldw, bias, bt, in, o0, o1);
    }
}
#endif

static void fwd_rows(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw,
                     const float *bias, size_t batch, size_t in, size_t o0, size_t o1)
{
    for (size_t b0 = 0; b0 < batch; b0 += LR__FB) {
        size_t bt = batch - b0 < LR__FB ? batch - b0 : LR__FB;
#ifdef LR__X86
        if (have_avx2()) {
            fwd_rows_avx2(y + b0 * ldy, ldy, x + b0 * ldx, ldx, w, ldw, bias, bt, in, o0, o1);
            continue;
        }
#endif
        fwd_rows_c(y + b0 * ldy, ldy, x + b0 * ldx, ldx, w, ldw, bias, bt, in, o0, o1);
    }
}

typedef struct {
    lr_mat y;
    lr_cmat x, w;
    const float *b;
} fwd_job;

static void fwd_chunk(void *ctx, size_t c)
{
    const fwd_job *j = ctx;
    size_t out = j->w.rows, o0 = 64 * c, o1 = o0 + 64 < out ? o0 + 64 : out;
    fwd_rows(j->y.data, j->y.ld, j->x.data, j->x.ld, j->w.data, j->w.ld, j->b, j->x.rows, j->x.cols,
             o0, o1);
}

/* The forward kernel with threads over row ranges (each y entry is computed the same way
 * whatever the split, so the output does not depend on the thread count). */
void lr__linear_forward_mt(lr_mat y, lr_cmat x, lr_cmat w, const float *b, int threads)
{
    size_t batch = x.rows, in = x.cols, out = w.rows;
    if (batch > LR__SMALL_BATCH || in == 0) {
        /* big batches (evaluation): sgemm, with OpenBLAS's own threads */
        for (size_t i = 0; i < batch; i++)
            for (size_t o = 0; o < out; o++) y.data[i * y.ld + o] = b ? b[o] : 0.0f;
        lr_gemm(y, 1.0f, x, false, w, true, 1.0f, NULL);
        return;
    }
    /* rows in chunks of 64, handed out dynamically: each y entry is computed the same way
     * whoever computes it, so the output does not depend on the thread count */
    fwd_job job = { y, x, w, b };
    lr__parallel_for(threads, (out + 63) / 64, fwd_chunk, &job);
}

lr_status lr_linear_forward(lr_mat y, lr_cmat x, lr_cmat w, const float *b, lr_err *err)
{
    lr_status s;
    if ((s = lr_mat_check(lr_cm(y), "linear y", err)) || (s = lr_mat_check(x, "linear x", err)) ||
        (s = lr_mat_check(w, "linear w", err)))
        return s;
    if (x.cols != w.cols || y.rows != x.rows || y.cols != w.rows)
        return lr__fail(err, LR_EDIM, "linear forward: x is %zu x %zu, w is %zu x %zu, y is %zu x %zu "
                        "(want y %zu x %zu)", x.rows, x.cols, w.rows, w.cols, y.rows, y.cols,
                        x.rows, w.rows);
    if (y.rows == 0 || y.cols == 0) return LR_OK;
    lr__linear_forward_mt(y, x, w, b, 1);
    return LR_OK;
}

/* --------------------------------------------------------------- backward ---------- */

lr_status lr_linear_backward(lr_mat dx, lr_mat dw, float *db, lr_cmat dy, lr_cmat x, lr_cmat w,
                             lr_err *err)
{
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

size_t lr_linear_backward_adam_work(size_t batch, size_t in)
{
    (void)batch;
    (void)in;
    return 0; /* the column-chunked kernel writes dx in place: no partial sums */
}

/* Arguments of one fused pass, shared by the kernels. */
typedef struct {
    float *w, *mw, *vw;          /* (out, in), ld ldw / ldm / ldv */
    size_t ldw, ldm, ldv;
    const float *dy, *x;         /* (batch, out) ld lddy; (batch, in) ld ldx */
    size_t lddy, ldx, batch, in, out;
    float *dx;                   /* (batch, in) ld lddx, or NULL */
    size_t lddx;
    const lr_adam_step *s;       /* NULL: dx only (a frozen layer), w untouched */
    bool reverse;                /* walk rows and chunks backwards (see lr__linear_backward_adam_ex) */
} fused_args;

/* Columns [j0, j1), every row: plain C. */
static void fused_cols_c(const fused_args *a, size_t j0, size_t j1)
{
    size_t batch = a->batch, out = a->out;
    if (a->dx)
        for (size_t b = 0; b < batch; b++) memset(a->dx + b * a->lddx + j0, 0, (j1 - j0) * sizeof(float));
    for (size_t k = 0; k < out; k++) {
        size_t o = a->reverse ? out - 1 - k : k;
        float *wr = a->w + o * a->ldw;
        for (size_t j = j0; j < j1; j++) {
            float g = 0.0f, wold = wr[j];
            for (size_t b = 0; b < batch; b++) {
                float d = a->dy[b * a->lddy + o];
                if (a->s) g += d * a->x[b * a->ldx + j];
                if (a->dx) a->dx[b * a->lddx + j] += d * wold;
            }
            if (a->s)
                wr[j] = lr_adam_elem(wold, g, a->mw + o * a->ldm + j, a->vw + o * a->ldv + j, a->s);
        }
    }
}

#ifdef LR__X86
/* Adam on 8 lanes, the same operations in the same order as lr_adam_elem (no FMA), so the
 * update matches the scalar formula bit for bit given the same gradient. */
__attribute__((target("avx2,fma"), always_inline)) static inline __m256
adam8(__m256 w, __m256 g, float *m, float *v, const lr_adam_step *s)
{
    __m256 mm = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(s->beta1), _mm256_loadu_ps(m)),
                              _mm256_mul_ps(_mm256_set1_ps(s->one_minus_beta1), g));
    __m256 vv = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(s->beta2), _mm256_loadu_ps(v)),
                              _mm256_mul_ps(_mm256_set1_ps(s->one_minus_beta2),
                                            _mm256_mul_ps(g, g)));
    _mm256_storeu_ps(m, mm);
    _mm256_storeu_ps(v, vv);
    __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vv), _mm256_set1_ps(s->bc2_sqrt)),
                                 _mm256_set1_ps(s->eps));
    return _mm256_sub_ps(w, _mm256_mul_ps(_mm256_set1_ps(s->step_size), _mm256_div_ps(mm, denom)));
}

/* R rows starting at o, columns [j0, j1): per 8-column chunk the R gradients stay in
 * registers over the batch loop, dx takes the old weights' contribution, then Adam writes
 * the rows back. UPD = 0: dx only. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
fused_block_avx2(const fused_args *a, size_t o, size_t j0, size_t j1, const int R,
                 const int want_dx, const int UPD)
{
    size_t batch = a->batch, j = j0;
    float *wr[4], *mr[4], *vr[4];
    for (int r = 0; r < R; r++) {
        wr[r] = a->w + (o + r) * a->ldw;
        mr[r] = UPD ? a->mw + (o + r) * a->ldm : NULL;
        vr[r] = UPD ? a->vw + (o + r) * a->ldv : NULL;
    }
    for (; j + 8 <= j1; j += 8) {
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
                float *dp = a->dx + b * a->lddx + j;
                __m256 acc = _mm256_loadu_ps(dp);
                for (int r = 0; r < R; r++) acc = _mm256_fmadd_ps(d[r], wv[r], acc);
                _mm256_storeu_ps(dp, acc);
            }
        }
        if (UPD)
            for (int r = 0; r < R; r++)
                _mm256_storeu_ps(wr[r] + j, adam8(wv[r], g[r], mr[r] + j, vr[r] + j, a->s));
    }
    for (; j < j1; j++)
        for (int r = 0; r < R; r++) {
            float gs = 0.0f, wold = wr[r][j];
            for (size_t b = 0; b < batch; b++) {
                float d = a->dy[b * a->lddy + o + r];
                if (UPD) gs = fmaf(d, a->x[b * a->ldx + j], gs);
                if (want_dx) {
                    float *dp = a->dx + b * a->lddx + j;
                    *dp = fmaf(d, wold, *dp);
                }
            }
            if (UPD) wr[r][j] = lr_adam_elem(wold, gs, &mr[r][j], &vr[r][j], a->s);
        }
}

#define LR__FUSED_VARIANT(NAME, WANT_DX, UPD)                                                \
    __attribute__((target("avx2,fma"))) static void NAME(const fused_args *a, size_t j0,     \
                                                         size_t j1)                          \
    {                                                                                        \
        size_t out = a->out, n4 = out / 4;                                                   \
        if (WANT_DX)                                                                         \
            for (size_t b = 0; b < a->batch; b++)                                            \
                memset(a->dx + b * a->lddx + j0, 0, (j1 - j0) * sizeof(float));              \
        if (!a->reverse) {                                                                   \
            for (size_t k = 0; k < n4; k++) fused_block_avx2(a, 4 * k, j0, j1, 4, WANT_DX, UPD); \
            for (size_t o = 4 * n4; o < out; o++) fused_block_avx2(a, o, j0, j1, 1, WANT_DX, UPD); \
        } else {                                                                             \
            for (size_t o = out; o-- > 4 * n4;) fused_block_avx2(a, o, j0, j1, 1, WANT_DX, UPD); \
            for (size_t k = n4; k-- > 0;) fused_block_avx2(a, 4 * k, j0, j1, 4, WANT_DX, UPD); \
        }                                                                                    \
    }
LR__FUSED_VARIANT(fused_cols_avx2_dx, 1, 1)
LR__FUSED_VARIANT(fused_cols_avx2_nodx, 0, 1)
LR__FUSED_VARIANT(fused_cols_avx2_dxonly, 1, 0)
#endif

static void fused_cols(const fused_args *a, size_t j0, size_t j1)
{
#ifdef LR__X86
    if (have_avx2()) {
        if (!a->s) fused_cols_avx2_dxonly(a, j0, j1);
        else if (a->dx) fused_cols_avx2_dx(a, j0, j1);
        else fused_cols_avx2_nodx(a, j0, j1);
        return;
    }
#endif
    fused_cols_c(a, j0, j1);
}

/* Column chunks: every element of w, of dw and of dx belongs to exactly one chunk, so the
 * chunks are independent and the result does not depend on which thread runs which (or
 * on the thread count). An even number of chunks of about 128 columns (a multiple of 8)
 * keeps x's and dx's pieces in L1 and the threads balanced; they are handed out
 * dynamically so a thread the OS preempts does not hold the other back. */
static size_t fused_chunks(const fused_args *a) { return 2 * ((a->in + 255) / 256); }

static void fused_chunk(void *ctx, size_t k)
{
    const fused_args *a = ctx;
    size_t in = a->in, nch = fused_chunks(a), c = a->reverse ? nch - 1 - k : k;
    size_t j0 = (in * c / nch) & ~(size_t)7, j1 = c + 1 == nch ? in : (in * (c + 1) / nch) & ~(size_t)7;
    if (j1 > j0) fused_cols(a, j0, j1);
}

static void fused_run(const fused_args *a, int threads)
{
    lr__parallel_for(threads, fused_chunks(a), fused_chunk, (void *)a);
}

void lr__linear_dx_mt(lr_mat dx, lr_cmat dy, lr_cmat w, bool reverse, int threads)
{
    fused_args a = { (float *)w.data, NULL, NULL, w.ld, 0, 0, dy.data, NULL, dy.ld, 0,
                     dy.rows, w.cols, w.rows, dx.data, dx.ld, NULL, reverse };
    fused_run(&a, threads);
}

lr_status lr__linear_backward_adam_ex(lr_mat dx, lr_mat w, float *b, lr_mat m_w, lr_mat v_w,
                                      float *m_b, float *v_b, lr_cmat dy, lr_cmat x,
                                      const lr_adam_step *s, float *work, int threads, bool reverse,
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
    fused_args a = { w.data, m_w.data, v_w.data, w.ld, m_w.ld, v_w.ld, dy.data, x.data,
                     dy.ld, x.ld, batch, in, out, dx.data, dx.ld, s, reverse };
    (void)work;
    fused_run(&a, threads);
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
                                  float *work, int threads, lr_err *err)
{
    return lr__linear_backward_adam_ex(dx, w, b, m_w, v_w, m_b, v_b, dy, x, s, work, threads, false,
                                       err);
}

/* ------------------------------------------------------------------- LoRA ---------- */

/* Σ a[j]·b[j] with 8 partial sums (vectorisable without reassociation flags). */
static float dot(const float *a, const float *b, size_t n)
{
    float p[8] = { 0 };
    size_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) p[l] += a[j + l] * b[j + l];
    float s = ((p[0] + p[4]) + (p[1] + p[5])) + ((p[2] + p[6]) + (p[3] + p[7]));
    for (; j < n; j++) s += a[j] * b[j];
    return s;
}

static lr_status lora_check(const lr_lora_weights *lw, size_t in, size_t out, lr_err *err)
{
    if (!lw) return lr__fail(err, LR_EINVAL, "lora: adapter is NULL");
    if (lw->in != in || lw->out != out || lw->a.rows != lw->rank || lw->a.cols != in ||
        lw->b.rows != out || lw->b.cols != lw->rank)
        return lr__fail(err, LR_EDIM, "lora: adapter A is %zu x %zu and B %zu x %zu (rank %zu), "
                        "layer is %zu -> %zu", lw->a.rows, lw->a.cols, lw->b.rows, lw->b.cols,
                        lw->rank, in, out);
    return LR_OK;
}

lr_status lr_lora_forward_add(lr_mat y, lr_mat u, lr_cmat x, const lr_lora_weights *lw, lr_err *err)
{
    lr_status s;
    if ((s = lr_mat_check(lr_cm(y), "lora y", err)) || (s = lr_mat_check(x, "lora x", err)) ||
        (s = lr_mat_check(lr_cm(u), "lora u", err)) || (s = lora_check(lw, x.cols, y.cols, err)))
        return s;
    if (y.rows != x.rows || u.rows != x.rows || u.cols != lw->rank)
        return lr__fail(err, LR_EDIM, "lora forward: x has %zu rows, y %zu, u is %zu x %zu (want %zu x %zu)",
                        x.rows, y.rows, u.rows, u.cols, x.rows, lw->rank);
    /* u = x·Aᵀ (batch, r); y += s·u·Bᵀ. Never forms W₀ + s·BA. Plain loops, not sgemm:
     * at rank 1..16 these are a few thousand multiply-adds per example, less than a BLAS
     * call's set-up, and the training step then never wakes OpenBLAS's threads. */
    size_t batch = x.rows, in = x.cols, out = y.cols, r = lw->rank;
    for (size_t b = 0; b < batch; b++) {
        const float *xb = x.data + b * x.ld;
        float *ub = u.data + b * u.ld;
        for (size_t k = 0; k < r; k++) ub[k] = dot(xb, lw->a.data + k * lw->a.ld, in);
        float *yb = y.data + b * y.ld;
        for (size_t o = 0; o < out; o++) {
            const float *bo = lw->b.data + o * lw->b.ld;
            float t = 0.0f;
            for (size_t k = 0; k < r; k++) t += ub[k] * bo[k];
            yb[o] += lw->scale * t;
        }
    }
    return LR_OK;
}

lr_status lr_lora_backward(lr_mat dx, lr_lora_weights *lw, lr_cmat dy, lr_cmat x, lr_cmat u,
                           lr_mat t_work, lr_err *err)
{
    lr_status s;
    if ((s = lr_mat_check(dy, "lora dy", err)) || (s = lr_mat_check(x, "lora x", err)) ||
        (s = lr_mat_check(u, "lora u", err)) || (s = lr_mat_check(lr_cm(t_work), "lora t", err)) ||
        (s = lora_check(lw, x.cols, dy.cols, err)))
        return s;
    if (dy.rows != x.rows || u.rows != x.rows || u.cols != lw->rank || t_work.rows != x.rows ||
        t_work.cols != lw->rank)
        return lr__fail(err, LR_EDIM, "lora backward: dy %zu x %zu, x %zu x %zu, u %zu x %zu, t %zu x %zu "
                        "(rank %zu)", dy.rows, dy.cols, x.rows, x.cols, u.rows, u.cols, t_work.rows,
                        t_work.cols, lw->rank);
    if (dx.data && (dx.rows != x.rows || dx.cols != x.cols))
        return lr__fail(err, LR_EDIM, "lora backward: dx is %zu x %zu, want %zu x %zu", dx.rows,
                        dx.cols, x.rows, x.cols);
    /* gB = s·dyᵀ·u (out, r); t = s·dy·B (batch, r); gA = tᵀ·x (r, in); dx += t·A.
     * Plain loops (see lr_lora_forward_add), each sum in batch order. */
    size_t batch = x.rows, in = x.cols, out = dy.cols, r = lw->rank;
    float sc = lw->scale;
    for (size_t o = 0; o < out; o++) {
        float *gbo = lw->gb.data + o * lw->gb.ld;
        for (size_t k = 0; k < r; k++) {
            float acc = 0.0f;
            for (size_t b = 0; b < batch; b++) acc += dy.data[b * dy.ld + o] * u.data[b * u.ld + k];
            gbo[k] = sc * acc;
        }
    }
    for (size_t b = 0; b < batch; b++) {
        const float *dyb = dy.data + b * dy.ld;
        float *tb = t_work.data + b * t_work.ld;
        for (size_t k = 0; k < r; k++) tb[k] = 0.0f;
        for (size_t o = 0; o < out; o++) {
            const float *bo = lw->b.data + o * lw->b.ld;
            for (size_t k = 0; k < r; k++) tb[k] += dyb[o] * bo[k];
        }
        for (size_t k = 0; k < r; k++) tb[k] *= sc;
    }
    for (size_t k = 0; k < r; k++) {
        float *gak = lw->ga.data + k * lw->ga.ld;
        for (size_t j = 0; j < in; j++) gak[j] = 0.0f;
        for (size_t b = 0; b < batch; b++) {
            float tk = t_work.data[b * t_work.ld + k];
            const float *xb = x.data + b * x.ld;
            for (size_t j = 0; j < in; j++) gak[j] += tk * xb[j];
        }
    }
    if (dx.data)
        for (size_t b = 0; b < batch; b++) {
            float *dxb = dx.data + b * dx.ld;
            for (size_t k = 0; k < r; k++) {
                float tk = t_work.data[b * t_work.ld + k];
                const float *ak = lw->a.data + k * lw->a.ld;
                for (size_t j = 0; j < in; j++) dxb[j] += tk * ak[j];
            }
        }
    return LR_OK;
}
