/* cpu.h — what the library's own kernels do on this CPU: which instruction set they use, and
 * how they treat subnormal floats. Both are visible and settable by the caller.
 *
 * Instruction set. The dense training kernels (linear, adam, the LoRA branch) come in three
 * families: plain C ("generic"), AVX2+FMA and AVX-512VL, picked at run time from the CPU. The
 * environment variable LR_ISA=generic|avx2|avx512, read once at the first kernel call, caps the
 * family (a cap above what the CPU has changes nothing), so every path can be tested on one
 * machine. AVX2 and AVX-512 give the same bits; the generic loops round differently (no FMA):
 * docs/performance.md says which results agree across families and which do not.
 *
 * Subnormal floats. On many x86 CPUs (Intel's in particular) an operation that reads or makes
 * a subnormal float takes a microcode assist costing ~100 cycles. Adam's first moments of
 * weights whose gradient stays exactly zero (rows of dead ReLU units) decay by beta1 every step
 * and reach the subnormal range after a few hundred steps, so a long training run slowed to an
 * eighth of its speed on such a CPU. By default (LR_FP_FLUSH) every library call that runs the
 * training kernels sets flush-to-zero and denormals-are-zero (x86 MXCSR FTZ|DAZ, AArch64 FPCR.FZ)
 * on the calling thread for the duration of the call and restores the caller's mode on return;
 * the library's worker threads run each job in the mode of the call that started it. The
 * caller's floating-point environment is never changed behind its back. LR_FP_IEEE keeps
 * subnormals (strict IEEE arithmetic, PyTorch's default, slow on such CPUs).
 * What it changes: only values that would be subnormal (|x| < FLT_MIN = 1.18e-38) become zero.
 * On the MNIST demo's pretraining run the weights come out bit-identical either way (an Adam step
 * built from a subnormal moment is far below half an ulp of any weight); tests pin that.
 * Not covered: OpenBLAS's and LAPACK's own threads (sgemm in lr_gemm, the SVDs), which the
 * library does not own; the calling thread's share of such work does run in the chosen mode
 * when it happens inside a training call.
 */
#ifndef LOWRANK_CPU_H
#define LOWRANK_CPU_H

#include "lowrank/base/export.h"
#include "lowrank/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LR_ISA_GENERIC = 0, /* plain C loops (any CPU)            */
    LR_ISA_AVX2 = 1,    /* x86-64 with AVX2 and FMA           */
    LR_ISA_AVX512 = 2   /* x86-64 with AVX-512F and AVX-512VL */
} lr_isa;

/* The kernel family in use: the CPU's best, capped by LR_ISA when that is set and valid, and
 * by lr_cpu_isa_set. */
LR_API lr_isa lr_cpu_isa(void);

/* Caps the kernel family for the calls that start after it, process-wide (atomic), on top of
 * LR_ISA; returns the previous cap. LR_ISA_AVX512 removes the cap. A cap above what the CPU
 * has changes nothing. */
LR_API lr_isa lr_cpu_isa_set(lr_isa cap);

/* The CPU's best family, whatever LR_ISA says. */
LR_API lr_isa lr_cpu_isa_supported(void);

/* "generic", "avx2", "avx512" (or "?" for a value outside the enum). */
LR_API const char *lr_cpu_isa_name(lr_isa isa);

/* LR_ISA's value checked: LR_OK when it is unset or one of generic|avx2|avx512 (with *cap
 * set to it, or to the CPU's best when unset; cap may be NULL); LR_EINVAL with a message
 * naming the value otherwise. The kernels ignore an invalid LR_ISA; programs call this to
 * report it. */
LR_API lr_status lr_cpu_isa_env(lr_isa *cap, lr_err *err);

typedef enum {
    LR_FP_FLUSH = 0, /* default: flush-to-zero and denormals-are-zero inside library calls */
    LR_FP_IEEE = 1   /* keep subnormals (strict IEEE 754)                                   */
} lr_fp_mode;

/* Sets the mode for the library calls that start after it, from any thread (process-wide,
 * atomic); returns the previous mode. */
LR_API lr_fp_mode lr_fp_mode_set(lr_fp_mode mode);
LR_API lr_fp_mode lr_fp_mode_get(void);

/* Whether flush-to-zero is in effect on the calling thread right now (x86: MXCSR.FTZ,
 * AArch64: FPCR.FZ; false elsewhere). For tests and diagnostics. */
LR_API int lr_fp_flushing_now(void);

#ifdef __cplusplus
}
#endif
#endif
