/* bench.h — what the benchmark programs share: a monotonic clock and a fatal-error exit
 * (benchmarks are programs, so unlike the library they may print and exit). */
#ifndef LR_BENCH_H
#define LR_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "lowrank/base/status.h"

/* Seconds on the monotonic clock. */
static inline double lr_bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Exits with the reason when status s is not LR_OK: "PROG: msg (status)". */
#define LR_BENCH_CHECK(prog, s, e)                                                         \
    do {                                                                                   \
        lr_status lr__s = (s);                                                             \
        if (lr__s) {                                                                       \
            fprintf(stderr, "%s: %s (%s)\n", (prog), (e).msg, lr_status_str(lr__s));      \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

#endif
