/* regex_guard.c — bounds on the regular expressions read from files (regex_guard.h). */
#include <stdlib.h>
#include <string.h>
#include "io/regex_guard.h"

#define REGEX_MAX 256
#define INTERVAL_MAX 64

static bool quantifier(char c)
{
    return c == '*' || c == '+' || c == '?' || c == '{';
}

/* at p = '{': parses {m}, {m,} or {m,n}; *end <- past '}'; false if malformed or a bound > 64 */
static bool interval(const char *p, const char **end)
{
    char *q;
    long lo = strtol(p + 1, &q, 10), hi = lo;
    if (q == p + 1 || lo < 0 || lo > INTERVAL_MAX) return false;
    if (*q == ',') {
        const char *h = q + 1;
        hi = *h == '}' ? lo : strtol(h, &q, 10);
        if (*h == '}') q = (char *)h;
        if (hi < lo || hi > INTERVAL_MAX) return false;
    }
    if (*q != '}') return false;
    *end = q + 1;
    return true;
}

bool lr__regex_check(const char *re, const char **why)
{
    if (strlen(re) > REGEX_MAX) return *why = "longer than 256 bytes", false;
    int intervals = 0;
    bool after_quant = false;
    for (const char *p = re; *p;) {
        if (*p == '\\') { /* an escaped character is a literal */
            p += p[1] ? 2 : 1;
            after_quant = false;
            continue;
        }
        if (quantifier(*p)) {
            if (after_quant) return *why = "a quantifier follows another (e.g. \"a++\")", false;
            if (*p == '{') {
                if (++intervals > 1) return *why = "more than one {m,n} interval", false;
                if (!interval(p, &p)) return *why = "an interval {m,n} malformed or with a bound above 64", false;
            } else {
                p++;
            }
            after_quant = true;
            continue;
        }
        after_quant = false;
        p++;
    }
    return true;
}
