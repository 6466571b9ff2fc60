/* bench_read.c — reading every tensor of a safetensors file as float32, two ways, each in a
 * child process: the library's reader (pread in 256 KiB pieces, converted as they arrive) and
 * the same through mmap (the file mapped, each tensor converted from the mapping). Prints
 * wall seconds and peak RSS of each, so the choice in safetensors.c rests on a measurement.
 *
 *     bench_read FILE.safetensors [ROUNDS]
 *
 * A benchmark (`meson test --benchmark read` needs LR_BENCH_ST=FILE); it never fails on time.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "lowrank/lowrank.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static size_t elems(const lr_st_tensor *t)
{
    size_t n = 1;
    for (size_t d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

static int is_float(lr_st_dtype d)
{
    return d == LR_ST_F32 || d == LR_ST_F16 || d == LR_ST_BF16 || d == LR_ST_F64;
}

/* The library's reader: every float tensor through lr_safetensors_get_f32. */
static double read_pread(lr_safetensors *st)
{
    double sum = 0;
    for (size_t i = 0; i < lr_safetensors_count(st); i++) {
        const lr_st_tensor *t = lr_safetensors_at(st, i);
        if (!is_float(t->dtype)) continue;
        size_t n = elems(t);
        float *x = malloc((n ? n : 1) * sizeof *x);
        if (!x || lr_safetensors_get_f32(st, x, t->name, t->ndim, t->shape, NULL)) exit(1);
        sum += n ? x[n / 2] : 0;
        free(x);
    }
    return sum;
}

/* The same through a mapping of the whole file (BF16, F16 and F32; the offsets from the header
 * the library parsed: its tensors lie back to back from data_start in file order). */
static double read_mmap(lr_safetensors *st, const char *path)
{
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb)) exit(1);
    const unsigned char *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) exit(1);
    double sum = 0;
    for (size_t i = 0; i < lr_safetensors_count(st); i++) {
        const lr_st_tensor *t = lr_safetensors_at(st, i);
        const unsigned char *p = m + st->data_start + st->begin[i];
        size_t n = elems(t);
        if (!is_float(t->dtype) || t->dtype == LR_ST_F64) continue;
        float *x = malloc((n ? n : 1) * sizeof *x);
        if (!x) exit(1);
        if (t->dtype == LR_ST_F32) memcpy(x, p, n * 4);
        else if (t->dtype == LR_ST_BF16) /* the library's own loop: a shift the compiler vectorises */
            for (size_t k = 0; k < n; k++) {
                uint32_t u = (uint32_t)(p[2 * k] | p[2 * k + 1] << 8) << 16;
                memcpy(&x[k], &u, 4);
            }
        else
            for (size_t k = 0; k < n; k++) x[k] = lr_f16_to_f32((uint16_t)(p[2 * k] | p[2 * k + 1] << 8));
        sum += n ? x[n / 2] : 0;
        free(x);
    }
    munmap((void *)m, (size_t)sb.st_size);
    close(fd);
    return sum;
}

/* One way in a child: wall seconds, peak RSS in MB. */
static void run(const char *path, int way, double *sec, double *mb)
{
    int fd[2];
    if (pipe(fd)) exit(1);
    pid_t pid = fork();
    if (pid == 0) {
        lr_safetensors st;
        if (lr_safetensors_open(&st, path, NULL)) _exit(1);
        double t0 = now(), s = way ? read_mmap(&st, path) : read_pread(&st), dt = now() - t0;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double out[2] = { dt, (double)ru.ru_maxrss / 1024.0 + 0 * s };
        if (write(fd[1], out, sizeof out) != sizeof out) _exit(1);
        _exit(0);
    }
    double in[2] = { -1, -1 };
    if (read(fd[0], in, sizeof in) != sizeof in) in[0] = in[1] = -1;
    waitpid(pid, NULL, 0);
    close(fd[0]), close(fd[1]);
    *sec = in[0], *mb = in[1];
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : getenv("LR_BENCH_ST");
    int rounds = argc > 2 ? atoi(argv[2]) : 3;
    if (!path) {
        puts("bench_read: no file (bench_read FILE.safetensors, or LR_BENCH_ST=FILE): skipped");
        return 77;
    }
    printf("bench_read %s, %d rounds, interleaved (the page cache warm after the first)\n", path, rounds);
    for (int r = 0; r < rounds; r++)
        for (int way = 0; way < 2; way++) {
            double sec, mb;
            run(path, way, &sec, &mb);
            printf("round %d  %-6s %7.3f s  peak RSS %7.1f MB\n", r + 1, way ? "mmap" : "pread", sec, mb);
        }
    return 0;
}
