/* regex_internal.h — what a regular expression from a file must look like before regcomp sees it.
 *
 * PEFT configs carry regular expressions (rank_pattern / alpha_pattern keys, a string
 * target_modules). glibc's regcomp copies a repeated subexpression once per repetition, so a
 * hostile key such as "a++++…+" or "(a{99}){99}" takes gigabytes to compile (found by the
 * adapter_config fuzz target: "linear2" and 30 '+' exhausted 2 GB). Python's re, which PEFT
 * uses, refuses stacked quantifiers anyway. A key is accepted when it is at most 256 bytes,
 * has at most one interval {m,n}, with bounds <= 64, and passes lr_regex_check (regex.h: no
 * quantifier after another, groups at most 64 deep, at most 4096 nodes copied). */
#ifndef LOWRANK_REGEX_INTERNAL_H
#define LOWRANK_REGEX_INTERNAL_H

#include <stdbool.h>

/* true if re is acceptable; else false with *why a short reason */
bool lr__regex_check(const char *re, const char **why);

#endif
