/* mlp_internal.h — what the library's other writers of an MLP's weights tell it (private). */
#ifndef LOWRANK_MLP_INTERNAL_H
#define LOWRANK_MLP_INTERNAL_H

#include "lowrank/nn/mlp.h"

/* The library wrote weights of net's layers (initialisation, a checkpoint loaded over them,
 * the LoRA module's PiSSA residual, W₀ put back, a merge or an unmerge): the transposed
 * copies of frozen layers that training keeps (lib/nn/frozen.c) are dropped, and the next
 * training step remakes them from the weights as they are now. */
void lr__mlp_weights_written(lr_mlp *net);

#endif
