/* cpu_internal.h — the kernel family and the floating-point mode of library calls (private, not installed; see
 * include/lowrank/base/cpu.h for what the modes mean and why).
 *
 * A public entry point that runs the training kernels starts with LR__FP_SCOPE(): it saves the
 * calling thread's control register, switches flush-to-zero / denormals-are-zero on (LR_FP_FLUSH)
 * or off (LR_FP_IEEE), and restores the saved value when the function returns, on every return
 * path (GCC/Clang's cleanup attribute). Nested calls save and restore the same value, so they
 * cost two register accesses each (a few cycles). lr__parallel_for hands the caller's register
 * value to the workers with each job. */
#ifndef LOWRANK_CPU_INTERNAL_H
#define LOWRANK_CPU_INTERNAL_H

#include <stdatomic.h>
#include "lowrank/base/cpu.h"

extern atomic_int lr__fp_mode_v; /* lr_fp_mode, process-wide (cpu.c) */

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define LR__FP_FLUSH_BITS 0x8040u /* MXCSR: FTZ (bit 15) | DAZ (bit 6) */
static inline unsigned lr__fp_get(void) { return _mm_getcsr(); }
static inline void lr__fp_set(unsigned v) { _mm_setcsr(v); }
#elif defined(__aarch64__)
#define LR__FP_FLUSH_BITS (1u << 24) /* FPCR.FZ */
static inline unsigned lr__fp_get(void)
{
    unsigned long v;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(v));
    return (unsigned)v;
}
static inline void lr__fp_set(unsigned v)
{
    unsigned long w = v;
    __asm__ __volatile__("msr fpcr, %0" : : "r"(w));
}
#else
#define LR__FP_FLUSH_BITS 0u
static inline unsigned lr__fp_get(void) { return 0; }
static inline void lr__fp_set(unsigned v) { (void)v; }
#endif

typedef struct { unsigned saved; } lr__fpscope;

/* Switches the calling thread to the library's mode; returns what to restore. */
static inline lr__fpscope lr__fp_enter(void)
{
    lr__fpscope s = { lr__fp_get() };
    unsigned want = atomic_load_explicit(&lr__fp_mode_v, memory_order_relaxed) == LR_FP_IEEE
                        ? s.saved & ~LR__FP_FLUSH_BITS
                        : s.saved | LR__FP_FLUSH_BITS;
    if (want != s.saved) lr__fp_set(want);
    return s;
}

static inline void lr__fp_leave(const lr__fpscope *s)
{
    if (lr__fp_get() != s->saved) lr__fp_set(s->saved);
}

#if defined(__GNUC__)
#define LR__FP_SCOPE() \
    __attribute__((cleanup(lr__fp_leave), unused)) const lr__fpscope lr__fp_scope_ = lr__fp_enter()
#else
#error "lowrank needs GCC or Clang (the cleanup attribute restores the caller's FP mode)"
#endif

/* The kernel family the kernels may use: lr_cpu_isa() as an int (the CPU's best, capped by
 * LR_ISA and lr_cpu_isa_set). */
int lr__isa(void);

#endif
