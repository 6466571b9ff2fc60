/* fuzz_adapter_config.c — a PEFT adapter_config.json of arbitrary bytes, parsed and checked
 * against a small 4-6-3 network. It calls the in-memory step that lr_adapter_read_config
 * runs once it has read the file (lib/lora/lora_internal.h), so no scratch file is needed. */
#include "fuzz.h"
#include "lowrank/lora/adapter.h"
#include "lowrank/nn/mlp.h"

/* lib/lora/lora_internal.h */
lr_status lr__adapter_config_parse(const lr_mlp *net, lr_adapter_info *info, const void *buf, size_t n,
                                  const char *name, lr_err *err);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lr_mlp net;
    static int ready;
    if (!ready) {
        const size_t sizes[3] = { 4, 6, 3 };
        if (lr_mlp_init(&net, sizes, 3, NULL)) return 0;
        ready = 1;
    }
    lr_adapter_info info;
    lr_err e;
    lr__adapter_config_parse(&net, &info, data, size, LR_ADAPTER_CONFIG, &e);
    return 0;
}
