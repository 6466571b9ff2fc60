/* simd.h — x86 SIMD pieces shared by lib/ (private, not installed): the run-time check for
 * AVX2+FMA, Adam's element update on 8 lanes (the fused kernels in linear.c, lr_adam_update),
 * and the small-batch kernels' common pieces (linear.c, frozen.c). */
#ifndef LOWRANK_SIMD_H
#define LOWRANK_SIMD_H

#include "lowrank/nn/adam.h"
#include "base/cpu_internal.h"

/* Largest batch the register-tiled kernels handle in one tile. */
#define LR__FB 12
/* The forward kernels' column blocks: the batch's piece of x (LR__FB x LR__FJ floats, 48 KB
 * at most) stays in cache while every row streams past it; each y entry is the bias plus
 * the sums of its column blocks in order. */
#define LR__FJ 1024

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* Makes the compiler hold v in a register: left alone, GCC folds a load that feeds two
 * FMAs into both as a memory operand, loading it twice (the 2-row forward then issued 22
 * loads per 20 FMAs instead of 12). */
#define LR__IN_REGISTER(v) __asm__("" : "+v"(v))

/* Whether the kernels may use AVX2 and FMA (the CPU has them and LR_ISA allows them; the
 * build stays portable: only the kernels carry target attributes). */
static inline int lr__cpu_avx2_fma(void) { return lr__isa() >= LR_ISA_AVX2; }

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
#endif
#endif
