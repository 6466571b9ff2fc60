/* rng.h — explicit, seeded random numbers that are the same on every machine.
 *
 * xoshiro256** (Blackman & Vigna 2018) seeded through splitmix64. Uniform floats
 * use the top 24 bits, so they are exact and portable; Gaussians use the
 * Box–Muller transform computed in double and rounded once to float.
 * There is no global state: every caller owns its lr_rng.
 */
#ifndef LOWRANK_RNG_H
#define LOWRANK_RNG_H

#include "lowrank/base/export.h"
#include <stdint.h>
#include "lowrank/base/mat.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint64_t s[4];
    int has_spare;     /* Box–Muller makes normals in pairs */
    double spare;
} lr_rng;

LR_API void lr_rng_seed(lr_rng *rng, uint64_t seed);
LR_API uint64_t lr_rng_u64(lr_rng *rng);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
LR_API uint64_t lr_rng_below(lr_rng *rng, uint64_t n);
/* Uniform float in [0, 1). */
LR_API float lr_rng_uniform(lr_rng *rng);
/* Standard normal N(0, 1). */
LR_API float lr_rng_normal(lr_rng *rng);

/* m <- uniform in [lo, hi) / N(mean, std^2), row by row. */
LR_API void lr_rng_fill_uniform(lr_rng *rng, lr_mat m, float lo, float hi);
LR_API void lr_rng_fill_normal(lr_rng *rng, lr_mat m, float mean, float std);
/* A uniformly random permutation of 0..n-1 (Fisher–Yates). */
LR_API void lr_rng_permutation(lr_rng *rng, size_t *perm, size_t n);

#ifdef __cplusplus
}
#endif
#endif
