/* fuzz.h — the entry point every fuzz target defines (libFuzzer's). Built with
 * -Dfuzz=enabled and clang, a target is a libFuzzer program; built without, replay_main.c
 * calls it on every file of its corpus, so meson test replays the corpus and every crash
 * found before, under the same sanitizers as the unit tests. */
#ifndef LR_FUZZ_H
#define LR_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
