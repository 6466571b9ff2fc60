/* fuzz_adapter_config.c — a PEFT adapter_config.json of arbitrary bytes, read and checked
 * against a small 4-6-3 network. */
#include <string.h>
#include "fuzz.h"
#include "lowrank/lora/adapter.h"
#include "lowrank/lora/lora.h"
#include "lowrank/nn/mlp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lr_mlp net;
    static lr_lora lm;
    static int ready;
    if (!ready) {
        const size_t sizes[3] = { 4, 6, 3 };
        if (lr_mlp_init(&net, sizes, 3, NULL) || lr_lora_init(&lm, &net, NULL)) return 0;
        ready = 1;
    }
    const char *p = lr_fuzz_file(LR_ADAPTER_CONFIG, data, size);
    char dir[512];
    strncpy(dir, p, sizeof dir - 1);
    dir[sizeof dir - 1] = '\0';
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    lr_adapter_info info;
    lr_err e;
    lr_adapter_read_config(&lm, &info, dir, &e);
    return 0;
}
