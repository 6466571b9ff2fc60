/* fuzz_cli.c — the option-value parsers on arbitrary strings: the programs' strict number and
 * list parsers (cli/cli.c) and the library's --lora-layers / --lora-init parsers.
 *
 * Input: byte 0 picks the parser, byte 1 its bounds, the rest is the value (cut at the first
 * NUL, as argv would be). Besides the sanitizers, each call's contract is checked and a
 * breach aborts: an accepted value is in range and is what the digits say; a refused one
 * comes with a message that quotes the option. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "../../cli/cli.h"
#include "lowrank/lora/lora.h"

#define CHECK(c)                                                                   \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "fuzz_cli: contract broken: %s (line %d)\n", #c, __LINE__); \
            abort();                                                               \
        }                                                                          \
    } while (0)

/* s is a plain decimal for v: digits only, equal to v once leading zeros are dropped. */
static int same_number(const char *s, unsigned long long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", v);
    while (s[0] == '0' && s[1]) s++;
    return strcmp(s, buf) == 0;
}

static void sizes(const char *s, unsigned b)
{
    char msg[256] = "";
    size_t lo = b & 3, hi = b & 4 ? 1000 : SIZE_MAX, v = 0, list[8], n = 0;
    if (lr_cli_parse_size("--rank", s, lo, hi, &v, msg, sizeof msg)) {
        CHECK(v >= lo && v <= hi && same_number(s, v));
    } else {
        CHECK(strstr(msg, "--rank") != NULL);
    }
    msg[0] = '\0';
    if (lr_cli_parse_size_list("--sizes", s, lo, hi, list, 1 + (b >> 4 & 7), &n, msg, sizeof msg)) {
        CHECK(n >= 1 && n <= 1 + (b >> 4 & 7u));
        for (size_t i = 0; i < n; i++) CHECK(list[i] >= lo && list[i] <= hi);
    } else {
        CHECK(strstr(msg, "--sizes") != NULL);
    }
}

static void numbers(const char *s, unsigned b)
{
    char msg[256] = "";
    uint64_t u;
    if (lr_cli_parse_seed("--seed", s, &u, msg, sizeof msg)) CHECK(u <= INT64_MAX && same_number(s, u));
    else CHECK(strstr(msg, "--seed") != NULL);
    double d, lo = b & 1 ? 0.0 : -1.0, hi = b & 2 ? 1.0 : 1e30;
    bool lo_open = b & 4, hi_open = b & 8;
    msg[0] = '\0';
    if (lr_cli_parse_double("--lr", s, lo, lo_open, hi, hi_open, &d, msg, sizeof msg)) {
        CHECK(isfinite(d) && (lo_open ? d > lo : d >= lo) && (hi_open ? d < hi : d <= hi));
    } else {
        CHECK(strstr(msg, "--lr") != NULL);
    }
}

static void lora(const char *s, unsigned b)
{
    lr_err e = { "" };
    uint32_t mask = 0;
    size_t layers = 1 + b % 17; /* lr_mlp allows up to 16 layers */
    if (lr_lora_parse_targets(&mask, s, layers, &e) == LR_OK) CHECK(layers >= 32 || mask >> layers == 0);
    else CHECK(e.msg[0] != '\0');
    lr_lora_initializer k;
    e.msg[0] = '\0';
    if (lr_lora_parse_initializer(&k, s, &e) == LR_OK) CHECK(strcmp(lr_lora_initializer_name(k), s) == 0);
    else CHECK(e.msg[0] != '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    char *s = malloc(size - 1);
    if (!s) return 0;
    memcpy(s, data + 2, size - 2);
    s[size - 2] = '\0';
    switch (data[0] % 3) {
    case 0: sizes(s, data[1]); break;
    case 1: numbers(s, data[1]); break;
    default: lora(s, data[1]); break;
    }
    free(s);
    return 0;
}
