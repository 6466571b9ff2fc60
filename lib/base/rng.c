/* rng.c — xoshiro256** with splitmix64 seeding; portable uniform and normal floats. */
#include <math.h>
#include "lowrank/base/rng.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void lr_rng_seed(lr_rng *rng, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
    rng->has_spare = 0;
    rng->spare = 0;
}

uint64_t lr_rng_u64(lr_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return r;
}

uint64_t lr_rng_below(lr_rng *rng, uint64_t n)
{
    /* rejection of the short top bucket (no modulo bias) */
    uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
    do x = lr_rng_u64(rng); while (x >= lim);
    return x % n;
}

float lr_rng_uniform(lr_rng *rng) { return (float)(lr_rng_u64(rng) >> 40) * 0x1.0p-24f; }

float lr_rng_normal(lr_rng *rng)
{
    if (rng->has_spare) { rng->has_spare = 0; return (float)rng->spare; }
    /* Box–Muller on 53-bit uniforms; u1 in (0,1] so log is finite */
    double u1 = ((double)(lr_rng_u64(rng) >> 11) + 1.0) * 0x1.0p-53;
    double u2 = (double)(lr_rng_u64(rng) >> 11) * 0x1.0p-53;
    double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
    rng->spare = rad * sin(th);
    rng->has_spare = 1;
    return (float)(rad * cos(th));
}

void lr_rng_fill_uniform(lr_rng *rng, lr_mat m, float lo, float hi)
{
    for (size_t i = 0; i < m.rows; i++)
        for (size_t j = 0; j < m.cols; j++) m.data[i * m.ld + j] = lo + (hi - lo) * lr_rng_uniform(rng);
}

void lr_rng_fill_normal(lr_rng *rng, lr_mat m, float mean, float std)
{
    for (size_t i = 0; i < m.rows; i++)
        for (size_t j = 0; j < m.cols; j++) m.data[i * m.ld + j] = mean + std * lr_rng_normal(rng);
}

void lr_rng_permutation(lr_rng *rng, size_t *perm, size_t n)
{
    for (size_t i = 0; i < n; i++) perm[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)lr_rng_below(rng, i), t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}
