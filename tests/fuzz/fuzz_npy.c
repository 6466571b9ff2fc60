/* fuzz_npy.c — the .npy parser on arbitrary bytes (lr_npy_load_mem). */
#include "fuzz.h"
#include "lowrank/io/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lr_mat m;
    lr_err e;
    if (lr_npy_load_mem(&m, data, size, "fuzz.npy", &e) == LR_OK) lr_mat_free(&m);
    return 0;
}
