/* regex.c — bounds on regular expressions before regcomp (regex.h, regex_internal.h).
 *
 * The cost model follows glibc's regcomp. Its size: a piece "x*" or "x?" adds a node to x,
 * "x+" is written "xx*" (twice x plus one), "x{m,n}" n copies of x (m + 1 for "x{m,}"), a
 * group is its contents and two nodes. Its epsilon closures (calc_eclosure): every part
 * that can match the empty string joins the closure of the parts before it, so many such
 * parts cost their number cubed ("(x?)*" 200 times: 0.03 s, 3,000 times: 59 s), and a
 * copied one nested in another copied one multiplies ("()" in 11 groups each with '+':
 * 5.7 s; measured with glibc 2.36). The scan is iterative over the characters and
 * recursive over groups, at most 64 deep. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lowrank/io/regex.h"
#include "base/internal.h"
#include "io/regex_internal.h"

enum { RX_DEPTH = 64, RX_COPIES = 4096, RX_NULLABLE = 256, RX_DUP_MAX = 0x7fff /* glibc's RE_DUP_MAX */, RX_BIG = 1 << 30 };

typedef struct {
    const char *p;   /* the next character            */
    int depth;       /* groups open at p              */
    size_t nullable; /* pieces that can match the empty string, so far */
    const char *why; /* set when the regex is refused */
} rx_scan;

static size_t rx_add(size_t a, size_t b) { return a + b > RX_BIG ? RX_BIG : a + b; }
static size_t rx_mul(size_t a, size_t b) { return b && a > RX_BIG / b ? RX_BIG : a * b; }

static size_t rx_alt(rx_scan *s, bool *empty);

/* past a bracket expression "[...]" (']' first is a member; "[:alpha:]" and the like inside) */
static void rx_bracket(rx_scan *s)
{
    const char *p = s->p + 1;
    if (*p == '^') p++;
    if (*p == ']') p++;
    while (*p && *p != ']') {
        if (p[0] == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
            const char *end = p + 2;
            while (*end && !(end[0] == p[1] && end[1] == ']')) end++;
            p = *end ? end + 2 : end;
        } else {
            p++;
        }
    }
    s->p = *p ? p + 1 : p;
}

/* {m}, {m,}, {m,n} or glibc's {,n} at s->p: the copies regcomp makes (at least 1; bounds
 * above RE_DUP_MAX or out of order are errors it reports before copying), *min <- m, or 0 if
 * this is no interval */
static size_t rx_interval(rx_scan *s, size_t *min)
{
    const char *p = s->p + 1;
    size_t m = 0, n = 0;
    bool digits = false, comma = false, upper = false;
    for (; *p >= '0' && *p <= '9'; p++) m = rx_add(rx_mul(m, 10), (size_t)(*p - '0')), digits = true;
    if (*p == ',') comma = true, p++;
    for (; comma && *p >= '0' && *p <= '9'; p++) n = rx_add(rx_mul(n, 10), (size_t)(*p - '0')), upper = true;
    if (!(digits || comma) || *p != '}') return 0;
    s->p = p + 1;
    *min = m;
    if (m > RX_DUP_MAX || (upper && (n > RX_DUP_MAX || n < m))) return 1;
    size_t copies = upper ? n : comma ? m + 1 : m;
    return copies ? copies : 1;
}

/* one atom at s->p: its size, *empty <- whether it can match the empty string (an anchor, a
 * word boundary, a group that can) */
static size_t rx_atom(rx_scan *s, bool *empty)
{
    *empty = false;
    if (*s->p == '(') {
        if (++s->depth > RX_DEPTH)
            return s->why = "its groups nest more than 64 deep (regcomp would overflow its stack)", RX_BIG;
        s->p++;
        size_t n = rx_add(rx_alt(s, empty), 2);
        if (*s->p == ')') s->p++;
        s->depth--;
        return n;
    }
    if (*s->p == '[') {
        rx_bracket(s);
    } else if (s->p[0] == '\\' && s->p[1]) {
        *empty = strchr("bB<>`'", s->p[1]) != NULL;
        s->p += 2;
    } else {
        *empty = *s->p == '^' || *s->p == '$';
        s->p++;
    }
    return 1;
}

/* one atom and its quantifier: its size written out; *empty <- whether it can match "" */
static size_t rx_piece(rx_scan *s, bool *empty)
{
    size_t copies, min = 0;
    bool atom_empty;
    size_t n = rx_atom(s, &atom_empty);
    *empty = atom_empty;
    for (int q = 0; !s->why; q++) {
        bool dup = false;
        if (*s->p == '*' || *s->p == '?') n = rx_add(n, 1), s->p++, *empty = true;
        else if (*s->p == '+') n = rx_add(rx_mul(n, 2), 1), s->p++, dup = true;
        else if (*s->p == '{' && (copies = rx_interval(s, &min))) n = rx_add(rx_mul(n, copies), 1), dup = copies > 1,
                                                                  *empty = *empty || min == 0;
        else break;
        if (q == 1) return s->why = "a quantifier follows another (\"a**\", \"a+{2}\": undefined in POSIX)", RX_BIG;
        if (dup && atom_empty)
            return s->why = "'+' or {m,n} repeats something that can match the empty string (\"(a?)+\": write "
                            "\"(a?)*\"); regcomp's closures grow exponentially with such repeats", RX_BIG;
    }
    if (*empty && ++s->nullable > RX_NULLABLE)
        return s->why = "more than 256 parts that can match the empty string (regcomp's closures grow as their cube)",
               RX_BIG;
    return n;
}

/* alternatives of pieces up to ')' or the end: their size; *empty <- whether one can match "" */
static size_t rx_alt(rx_scan *s, bool *empty)
{
    size_t n = 0;
    bool branch = true; /* the current alternative, empty so far, matches "" */
    *empty = false;
    while (*s->p && *s->p != ')' && !s->why) {
        if (*s->p == '|') {
            *empty = *empty || branch, branch = true;
            n = rx_add(n, 1), s->p++;
        } else {
            bool e;
            n = rx_add(n, rx_piece(s, &e));
            branch = branch && e;
        }
    }
    *empty = *empty || branch;
    return n;
}

/* NULL when regcomp can afford re, else the reason */
static const char *rx_cost(const char *re)
{
    rx_scan s = { re, 0, 0, NULL };
    size_t n = 0, len = strlen(re);
    bool empty;
    while (*s.p && !s.why) {
        n = rx_add(n, rx_alt(&s, &empty));
        if (*s.p == ')') n = rx_add(n, 1), s.p++; /* unmatched: regcomp's to judge */
    }
    if (!s.why && n > rx_add(len, RX_COPIES))
        s.why = "regcomp would write its repetitions out as more than 4096 extra nodes";
    return s.why;
}

lr_status lr_regex_check(const char *re, lr_err *err)
{
    if (!re) return lr__fail(err, LR_EINVAL, "regex check: the expression is NULL");
    const char *why = rx_cost(re);
    if (why)
        return lr__fail(err, LR_EINVAL, "regular expression '%.80s%s' refused: %s", re, strlen(re) > 80 ? "..." : "",
                        why);
    return LR_OK;
}

/* ---- a config's keys: also short, with one small interval at most ------------------- */

#define REGEX_MAX 256
#define INTERVAL_MAX 64

/* the first interval {m,n} with a bound above 64, or the second interval, in re */
static const char *intervals_too_big(const char *re)
{
    int seen = 0;
    for (const char *p = re; *p; p++) {
        if (*p == '\\') {
            if (!*++p) break;
            continue;
        }
        if (*p != '{') continue;
        char *q;
        long lo = strtol(p + 1, &q, 10), hi = lo;
        if (q == p + 1 || lo < 0 || lo > INTERVAL_MAX) return "an interval {m,n} malformed or with a bound above 64";
        if (*q == ',') {
            const char *h = q + 1;
            hi = *h == '}' ? lo : strtol(h, &q, 10);
            if (*h == '}') q = (char *)h;
            if (hi < lo || hi > INTERVAL_MAX) return "an interval {m,n} malformed or with a bound above 64";
        }
        if (*q != '}') return "an interval {m,n} malformed or with a bound above 64";
        if (++seen > 1) return "more than one {m,n} interval";
    }
    return NULL;
}

bool lr__regex_check(const char *re, const char **why)
{
    if (strlen(re) > REGEX_MAX) return *why = "longer than 256 bytes", false;
    *why = intervals_too_big(re);
    if (!*why) *why = rx_cost(re);
    return *why == NULL;
}
