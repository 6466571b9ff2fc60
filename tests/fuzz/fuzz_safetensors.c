/* fuzz_safetensors.c — the safetensors reader on arbitrary bytes, then every tensor it
 * accepted read as float32 (the checked accessor), and the metadata walked. */
#include <stdlib.h>
#include "fuzz.h"
#include "lowrank/io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lr_safetensors st;
    lr_err e;
    if (lr_safetensors_from_memory(&st, data, size, "fuzz.safetensors", &e) != LR_OK) return 0;
    for (size_t i = 0; i < lr_safetensors_count(&st); i++) {
        const lr_st_tensor *t = lr_safetensors_at(&st, i);
        size_t n = 1;
        for (size_t d = 0; d < t->ndim; d++) n *= t->shape[d];
        if (n > (1u << 20)) continue;
        float *buf = malloc((n ? n : 1) * sizeof *buf);
        if (buf) lr_safetensors_get_f32(&st, buf, t->name, t->ndim, t->shape, &e);
        free(buf);
    }
    for (size_t i = 0; i < lr_safetensors_meta_count(&st); i++) (void)lr_safetensors_meta_at(&st, i);
    lr_safetensors_free(&st);
    return 0;
}
