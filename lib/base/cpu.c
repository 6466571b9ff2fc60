/* cpu.c — the kernel family (CPU features capped by LR_ISA) and the floating-point mode of
 * library calls (see include/lowrank/base/cpu.h). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "lowrank/base/cpu.h"
#include "base/cpu_internal.h"
#include "base/internal.h"

atomic_int lr__fp_mode_v = LR_FP_FLUSH;

lr_fp_mode lr_fp_mode_set(lr_fp_mode mode)
{
    int m = mode == LR_FP_IEEE ? LR_FP_IEEE : LR_FP_FLUSH;
    return (lr_fp_mode)atomic_exchange(&lr__fp_mode_v, m);
}

lr_fp_mode lr_fp_mode_get(void) { return (lr_fp_mode)atomic_load(&lr__fp_mode_v); }

int lr_fp_flushing_now(void)
{
    return LR__FP_FLUSH_BITS && (lr__fp_get() & LR__FP_FLUSH_BITS) == LR__FP_FLUSH_BITS;
}

lr_isa lr_cpu_isa_supported(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    static atomic_int cached = -1;
    int c = atomic_load(&cached);
    if (c < 0) {
        __builtin_cpu_init();
        int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
        c = avx512 ? LR_ISA_AVX512 : avx2 ? LR_ISA_AVX2 : LR_ISA_GENERIC;
        atomic_store(&cached, c);
    }
    return (lr_isa)c;
#else
    return LR_ISA_GENERIC;
#endif
}

const char *lr_cpu_isa_name(lr_isa isa)
{
    switch (isa) {
    case LR_ISA_GENERIC: return "generic";
    case LR_ISA_AVX2: return "avx2";
    case LR_ISA_AVX512: return "avx512";
    }
    return "?";
}

lr_status lr_cpu_isa_env(lr_isa *cap, lr_err *err)
{
    const char *v = getenv("LR_ISA");
    lr_isa best = lr_cpu_isa_supported();
    if (cap) *cap = best;
    if (!v || !*v) return LR_OK;
    for (int i = LR_ISA_GENERIC; i <= LR_ISA_AVX512; i++)
        if (strcmp(v, lr_cpu_isa_name((lr_isa)i)) == 0) {
            if (cap) *cap = (lr_isa)i;
            return LR_OK;
        }
    return lr__fail(err, LR_EINVAL, "LR_ISA=\"%.64s\": expected generic, avx2 or avx512", v);
}

static atomic_int env_cap = -1; /* LR_ISA, read once */
static atomic_int api_cap = LR_ISA_AVX512; /* lr_cpu_isa_set */

int lr__isa(void)
{
    int e = atomic_load(&env_cap);
    if (e < 0) {
        lr_isa c;
        e = lr_cpu_isa_env(&c, NULL) == LR_OK ? (int)c : (int)lr_cpu_isa_supported();
        atomic_store(&env_cap, e);
    }
    int best = (int)lr_cpu_isa_supported(), t = atomic_load(&api_cap);
    int r = best < e ? best : e;
    return r < t ? r : t;
}

lr_isa lr_cpu_isa(void) { return (lr_isa)lr__isa(); }

lr_isa lr_cpu_isa_set(lr_isa cap)
{
    int c = cap <= LR_ISA_GENERIC ? LR_ISA_GENERIC : cap >= LR_ISA_AVX512 ? LR_ISA_AVX512 : (int)cap;
    return (lr_isa)atomic_exchange(&api_cap, c);
}
