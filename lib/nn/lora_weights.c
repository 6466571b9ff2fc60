/* lora_weights.c — one layer's LoRA adapter: allocation, and the forward and backward kernels
 * of its branch (see lora_weights.h). */
/* No contraction: clang would fuse the plain loops' a·b + c into FMAs where the target has
 * them (GCC in ISO C mode does not), and the branch's numbers would depend on the compiler
 * (see linear.c). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
#include <math.h>
#include <string.h>
#include "lowrank/nn/lora_weights.h"
#include "base/cpu_internal.h"
#include "base/internal.h"

/* ------------------------------------------------------------- LoRA weights -------- */

lr_status lr_lora_weights_init(lr_lora_weights *lw, size_t rank, size_t in, size_t out, float scale,
                               lr_err *err)
{
    if (!lw) return lr__fail(err, LR_EINVAL, "lr_lora_weights_init: lw is NULL");
    memset(lw, 0, sizeof *lw);
    if (rank == 0 || in == 0 || out == 0)
        return lr__fail(err, LR_EINVAL, "lr_lora_weights_init: rank %zu, in %zu, out %zu must all be >= 1",
                        rank, in, out);
    if (!isfinite(scale))
        return lr__fail(err, LR_EINVAL, "lr_lora_weights_init: scale is not finite");
    lr_status s;
    lr_mat *ra[4] = { &lw->a, &lw->ga, &lw->ma, &lw->va };
    lr_mat *rb[4] = { &lw->b, &lw->gb, &lw->mb, &lw->vb };
    for (int i = 0; i < 4; i++) {
        if ((s = lr_mat_init(ra[i], rank, in, err)) || (s = lr_mat_init(rb[i], out, rank, err))) {
            lr_lora_weights_free(lw);
            return s;
        }
    }
    lw->rank = rank;
    lw->in = in;
    lw->out = out;
    lw->scale = scale;
    lw->enabled = true;
    return LR_OK;
}

void lr_lora_weights_free(lr_lora_weights *lw)
{
    if (!lw) return;
    lr_mat *all[8] = { &lw->a, &lw->b, &lw->ga, &lw->gb, &lw->ma, &lw->va, &lw->mb, &lw->vb };
    for (int i = 0; i < 8; i++) lr_mat_free(all[i]);
    memset(lw, 0, sizeof *lw);
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

lr_status lr_lora_weights_forward_add(lr_mat y, lr_mat u, lr_cmat x, const lr_lora_weights *lw, lr_err *err)
{
    LR__FP_SCOPE();
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
        if (r == 1 && lw->b.ld == 1) {
            /* rank 1 (the seed's): B is one contiguous column, and this loop vectorises */
            const float *bc = lw->b.data;
            float u0 = ub[0];
            for (size_t o = 0; o < out; o++) yb[o] += lw->scale * (u0 * bc[o]);
            continue;
        }
        for (size_t o = 0; o < out; o++) {
            const float *bo = lw->b.data + o * lw->b.ld;
            float t = 0.0f;
            for (size_t k = 0; k < r; k++) t += ub[k] * bo[k];
            yb[o] += lw->scale * t;
        }
    }
    return LR_OK;
}

lr_status lr_lora_weights_backward(lr_mat dx, lr_lora_weights *lw, lr_cmat dy, lr_cmat x, lr_cmat u,
                           lr_mat t_work, lr_err *err)
{
    LR__FP_SCOPE();
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
     * Plain loops (see lr_lora_weights_forward_add), each sum in batch order. */
    size_t batch = x.rows, in = x.cols, out = dy.cols, r = lw->rank;
    float sc = lw->scale;
    if (r == 1 && lw->gb.ld == 1 && lw->b.ld == 1) {
        /* rank 1: the same sums, in the same order, as loops over contiguous columns
         * (they vectorise; the general loops below step through B and gB by rows) */
        float *gb = lw->gb.data;
        const float *bc = lw->b.data;
        for (size_t o = 0; o < out; o++) gb[o] = 0.0f;
        for (size_t b = 0; b < batch; b++) {
            const float *dyb = dy.data + b * dy.ld;
            float ub = u.data[b * u.ld];
            for (size_t o = 0; o < out; o++) gb[o] += dyb[o] * ub;
        }
        for (size_t o = 0; o < out; o++) gb[o] *= sc;
        for (size_t b = 0; b < batch; b++)
            t_work.data[b * t_work.ld] = sc * dot(dy.data + b * dy.ld, bc, out);
    } else {
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
