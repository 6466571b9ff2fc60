/* regex.h — what a POSIX extended regular expression may cost before glibc's regcomp sees it.
 *
 * glibc's regcomp writes a repeated part out once per copy ("x+" as "xx*", "x{2,5}" as five
 * x's), so stacked or nested repetitions grow exponentially: "a" and 24 '+', or
 * "(((a+)+)+)…" 24 deep, take gigabytes, and stars stacked on a large group take seconds in
 * its epsilon closures; its parser also recurses once per group, so 60,000 nested groups
 * overflow the stack (found by the adapter_config and toolcmd fuzz targets). The library
 * checks every regular expression it reads from a file (PEFT's rank_pattern / alpha_pattern
 * keys, a string target_modules), and a program that compiles regular expressions from its
 * users (the lowrank tool's --only / --skip) can check them the same way.
 */
#ifndef LOWRANK_REGEX_H
#define LOWRANK_REGEX_H

#include "lowrank/base/export.h"
#include "lowrank/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* LR_OK when regcomp(re, REG_EXTENDED) can afford re:
 *   - no quantifier (*, +, ?, {m,n}) follows another (POSIX leaves that undefined, Python's
 *     re refuses it);
 *   - groups nest at most 64 deep;
 *   - written out as regcomp copies it (a group counts its contents and two nodes) it is at
 *     most 4096 nodes longer than itself;
 *   - no '+' or {m,n} with more than one copy repeats something that can match the empty
 *     string ("(a?)+", "(x|)+": "(a?)*" means the same), and at most 256 parts can match
 *     it (x*, x?, x{0,n}, anchors, such groups): regcomp's epsilon closures grow
 *     exponentially with the first and as the cube of the second.
 * Else LR_EINVAL with the reason ("its groups nest more than 64 deep"); re NULL is
 * LR_EINVAL. Whether re is valid is regcomp's to say. */
LR_API lr_status lr_regex_check(const char *re, lr_err *err);

#ifdef __cplusplus
}
#endif
#endif
