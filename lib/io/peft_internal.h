/* peft_internal.h — the in-memory step of lr_peft_read (peft.h), for the fuzz target. */
#ifndef LOWRANK_PEFT_INTERNAL_H
#define LOWRANK_PEFT_INTERNAL_H

#include <stddef.h>
#include "lowrank/io/peft.h"

/* *ad <- the adapter whose adapter_config.json is cfg[0..ncfg) and whose
 * adapter_model.safetensors is weights[0..nweights): what lr_peft_read does once it has read
 * the two files. On failure *ad is empty. */
lr_status lr__peft_from_memory(lr_peft *ad, const void *cfg, size_t ncfg, const void *weights, size_t nweights,
                               lr_err *err);

#endif
