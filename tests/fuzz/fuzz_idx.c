/* fuzz_idx.c — the IDX reader (raw or gzip) on arbitrary bytes, as images and as labels. */
#include "fuzz.h"
#include "lowrank/io/idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = lr_fuzz_file("fuzz.idx", data, size);
    lr_mnist m;
    lr_err e;
    lr_idx_read_images(&m, p, 0, 0, &e);
    lr_mnist_free(&m);
    lr_idx_read_labels(&m, p, 255, &e);
    lr_mnist_free(&m);
    return 0;
}
