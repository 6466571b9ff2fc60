/* fuzz_idx.c — the IDX reader (raw or gzip) on arbitrary bytes, as images and as labels,
 * in memory: lr_idx_*_from_memory run the same parser as the file readers. */
#include "fuzz.h"
#include "lowrank/io/idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lr_mnist m;
    lr_err e;
    lr_idx_images_from_memory(&m, data, size, "fuzz.idx", 0, 0, &e);
    lr_mnist_free(&m);
    lr_idx_labels_from_memory(&m, data, size, "fuzz.idx", 255, &e);
    lr_mnist_free(&m);
    return 0;
}
