/* preserve_demo.h — lr-mnist's forgetting-aware fine-tuning (--preserve): sets up the methods
 * of lora/preserve.h and train.h for one fine-tuning run on a digit, and reports them. A demo
 * helper, not part of the library. */
#ifndef LOWRANK_DEMO_PRESERVE_H
#define LOWRANK_DEMO_PRESERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "lowrank/lora/lora.h"
#include "lowrank/lora/preserve.h"
#include "lowrank/nn/train.h"

enum { PRESERVE_NULLSPACE = 1, PRESERVE_REPLAY = 2, PRESERVE_DISTILL = 4 };

typedef struct {
    unsigned mask;          /* PRESERVE_* bits; 0 = none */
    bool all;               /* --preserve all: every method, one comparison table */
    double energy;          /* --preserve-energy */
    double replay_fraction; /* --replay-fraction: the share of each batch from the other digits */
    double distill_weight;  /* --distill-weight */
    size_t samples;         /* --retained-samples: the retained pool, the other digits' first N */
} preserve_cfg;

/* "none", "nullspace", "replay", "distill", "nullspace+replay", … or "all". */
bool preserve_parse(const char *s, preserve_cfg *c, char *msg, size_t cap);
/* "nullspace+replay", "none". */
const char *preserve_name(unsigned mask, char *buf, size_t n);

typedef struct {
    unsigned mask;
    size_t *rows;                /* the other digits' rows of the training set */
    lr_dataset retained;         /* view: the training examples of every other digit */
    float *soft;                 /* (retained.n, 10) the base's softmax on them (distill) */
    lr_preserve_basis basis;
    double leak_before[LR_MLP_MAX_LAYERS], leak_after[LR_MLP_MAX_LAYERS];
    double t_setup;              /* seconds: SVDs of the retained inputs, the teacher's pass */
    size_t extra_bytes;          /* memory the method holds beyond plain fine-tuning */
} preserve_state;

/* With the adapter attached and enabled, before training: builds what mask asks for and sets
 * tp (replay, weights, the projection after every step). Returns 0, or 1 with e set. */
int preserve_begin(preserve_state *ps, const preserve_cfg *c, unsigned mask, lr_lora *lm, const lr_dataset *train,
                   int digit, lr_train_opts *tp, lr_err *e);
/* After training: the leakage with the trained adapter. */
int preserve_end(preserve_state *ps, const lr_mlp *net, lr_err *e);
void preserve_free(preserve_state *ps);
/* Text lines and a JSON object describing the run's method. */
void preserve_print(const preserve_state *ps, const lr_mlp *net);
json_t *preserve_json(const preserve_state *ps, const lr_mlp *net);
/* --preserve all --plot: the comparison as an SVG (crash-safe). 0, or 1 with msg. */
int preserve_plot(const char *path, int digit, const char *const *names, const size_t *target, const size_t *others,
                  size_t n, size_t target_before, size_t others_before, char *msg, size_t cap);

#endif
