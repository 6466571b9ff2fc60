/* lora_internal.h — private entry points shared by lora.c and adapter.c (lr__ names). */
#ifndef LOWRANK_LORA_INTERNAL_H
#define LOWRANK_LORA_INTERNAL_H

#include "lowrank/lora/adapter.h"
#include "lowrank/lora/lora.h"

/* Adds adapter `name` with every A and B zero and cfg recorded as given (its init kind is
 * NOT applied, the base is not touched): the loader fills A and B itself. */
lr_status lr__lora_add_zero(lr_lora *lm, const char *name, const lr_lora_opts *cfg,
                            lr_err *err);

/* The layers cfg targets on net (cfg->targets, 0 = all). */
uint32_t lr__lora_mask(const lr_lora_opts *cfg, const lr_mlp *net);

/* Parses and checks the adapter_config.json text buf[0..n) against net (what
 * lr_adapter_read_config does once it has read the file); `name` stands for the file in
 * messages. Also the in-memory entry point of the fuzz target. */
lr_status lr__adapter_config_parse(const lr_mlp *net, lr_adapter_info *info, const void *buf, size_t n,
                                  const char *name, lr_err *err);

#endif
