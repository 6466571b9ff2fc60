/* peft_internal.h — private pieces of the PEFT reader (peft.c): its in-memory step (the fuzz
 * target's entry) and the "unused field" test lora/adapter.c shares. */
#ifndef LOWRANK_PEFT_INTERNAL_H
#define LOWRANK_PEFT_INTERNAL_H

#include <stddef.h>
#include <stdbool.h>
#include <jansson.h>
#include "lowrank/io/peft.h"

/* *ad <- the adapter whose adapter_config.json is cfg[0..ncfg) and whose
 * adapter_model.safetensors is weights[0..nweights): what lr_peft_read does once it has read
 * the two files. On failure *ad is empty. */
lr_status lr__peft_from_memory(lr_peft *ad, const void *cfg, size_t ncfg, const void *weights, size_t nweights,
                               lr_err *err);

/* A config field that means "not used": absent, null, false, or an empty object, array or
 * string. Both PEFT readers (this one and lora/adapter.c) refuse features that are not. */
bool lr__json_unset(const json_t *v);

#endif
