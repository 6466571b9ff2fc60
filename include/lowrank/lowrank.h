/* lowrank.h — every public header of lowrank, layer by layer (docs/design.md): base, linear
 * algebra, file formats, neural network, LoRA. Include this, or only the headers you use. */
#ifndef LOWRANK_LOWRANK_H
#define LOWRANK_LOWRANK_H

#include "lowrank/base/cpu.h"
#include "lowrank/base/dataset.h"
#include "lowrank/base/export.h"
#include "lowrank/base/mat.h"
#include "lowrank/base/pool.h"
#include "lowrank/base/rng.h"
#include "lowrank/base/status.h"
#include "lowrank/linalg/approx.h"
#include "lowrank/linalg/blas.h"
#include "lowrank/linalg/cost.h"
#include "lowrank/linalg/factor.h"
#include "lowrank/linalg/rank.h"
#include "lowrank/linalg/rsvd.h"
#include "lowrank/linalg/svd.h"
#include "lowrank/io/atomicfile.h"
#include "lowrank/io/idx.h"
#include "lowrank/io/npy.h"
#include "lowrank/io/safetensors.h"
#include "lowrank/nn/activation.h"
#include "lowrank/nn/adam.h"
#include "lowrank/nn/checkpoint.h"
#include "lowrank/nn/eval.h"
#include "lowrank/nn/linear.h"
#include "lowrank/nn/lora_layer.h"
#include "lowrank/nn/loss.h"
#include "lowrank/nn/mlp.h"
#include "lowrank/nn/train.h"
#include "lowrank/lora/adapter.h"
#include "lowrank/lora/lora.h"

#endif
