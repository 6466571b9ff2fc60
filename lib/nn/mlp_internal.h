/* mlp_internal.h — what the library's other writers of an MLP's weights tell it (private). */
#ifndef LOWRANK_MLP_INTERNAL_H
#define LOWRANK_MLP_INTERNAL_H

#include "lowrank/nn/mlp.h"

/* The library wrote weights of net's layers (a checkpoint loaded over them, the LoRA
 * module's PiSSA residual, W₀ put back, a merge or an unmerge): every layer's generation is
 * bumped, as lr_mlp_weights_changed does for one layer, so the transposed copies of frozen
 * layers that training keeps (lib/nn/frozen.c) are remade from the weights as they are now
 * at the next step that reads them. mlp.c's own writers (lr_mlp_reset_params, the Adam
 * steps) count theirs there. */
void lr__mlp_weights_written(lr_mlp *net);

#endif
