/* fuzz_peft.c — a whole PEFT adapter (peft.h) from arbitrary bytes: the first two bytes (little
 * endian) give the length of adapter_config.json, the rest is adapter_model.safetensors. It
 * calls the in-memory step of lr_peft_read (lib/io/peft_internal.h). What it accepts must be
 * consistent: every layer's shapes positive, its values finite, its scale positive. */
#include <math.h>
#include <stdlib.h>
#include "fuzz.h"
#include "lowrank/io/peft.h"

/* lib/io/peft_internal.h */
lr_status lr__peft_from_memory(lr_peft *ad, const void *cfg, size_t ncfg, const void *weights, size_t nweights,
                               lr_err *err);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t nc = (size_t)data[0] | (size_t)data[1] << 8;
    if (nc > size - 2) nc = size - 2;
    lr_peft ad;
    lr_err e;
    if (lr__peft_from_memory(&ad, data + 2, nc, data + 2 + nc, size - 2 - nc, &e) == LR_OK) {
        for (size_t i = 0; i < ad.n; i++) {
            const lr_peft_layer *l = &ad.layer[i];
            if (!l->r || !l->in || !l->out || !(lr_peft_scale(&ad, l) > 0)) abort();
            for (size_t k = 0; k < l->r * l->in; k++)
                if (!isfinite(l->a[k])) abort();
            for (size_t k = 0; k < l->out * l->r; k++)
                if (!isfinite(l->b[k])) abort();
        }
        lr_peft_free(&ad);
    }
    return 0;
}
