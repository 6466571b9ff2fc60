/* test_regex.c — lr_regex_check (io/regex.h): the regular expressions regcomp can afford pass,
 * and those that make it take gigabytes, seconds or its whole stack are refused with the
 * reason. Every refused case is compiled nowhere; the accepted ones are compiled by regcomp
 * to show they are cheap (a bounded loop, well under a second). */
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include "lr_test.h"
#include "lowrank/io/regex.h"

static void test_accepts_ordinary_expressions(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "",         "linear2",           "^(.*\\.)?(linear1|linear2)$", "model\\.layers\\.[0-9]+\\.q_proj",
        "a{2,5}",   "(ab){3}b*",         "[[:alpha:]]+[]a-z]*",         "x(y(z(w)+)?)*",
        "a\\+\\+",  "((((((((a))))))))", "(a|b|c)+d?e*",                "a{,3}",
        "(ab?)+",   "(a{0,1}b)+",        "(x|y)*z+",                    "(a?){1}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        lr_err e = { "" };
        assert_int_equal(lr_regex_check(ok[i], &e), LR_OK);
        regex_t rx;
        assert_int_equal(regcomp(&rx, ok[i], REG_EXTENDED | REG_NOSUB), 0);
        regfree(&rx);
    }
}

/* s <- prefix, then `times` copies of unit, then suffix */
static char *repeat(const char *prefix, const char *unit, size_t times, const char *suffix)
{
    size_t n = strlen(prefix) + times * strlen(unit) + strlen(suffix) + 1;
    char *s = malloc(n);
    strcpy(s, prefix);
    for (size_t i = 0; i < times; i++) strcat(s, unit);
    strcat(s, suffix);
    return s;
}

static void refused(const char *re, const char *why)
{
    lr_err e = { "" };
    assert_int_equal(lr_regex_check(re, &e), LR_EINVAL);
    assert_non_null(strstr(e.msg, "refused"));
    assert_non_null(strstr(e.msg, why));
}

static void test_refuses_what_regcomp_cannot_afford(void **state)
{
    (void)state;
    char *s = repeat("linear2", "+", 30, ""); /* the adapter_config finding */
    refused(s, "a quantifier follows another");
    free(s);
    refused("a+{2}", "a quantifier follows another");
    refused("a*?", "a quantifier follows another");
    /* nested groups each repeated: 2^24 copies (the hole the toolcmd target left open) */
    char *open = repeat("", "(", 24, "linear2"), *nested = repeat(open, ")+", 24, "");
    refused(nested, "4096 extra nodes");
    free(open), free(nested);
    refused("(a{99}){99}", "4096 extra nodes");
    refused("((((ab){8}){8}){8}){8}", "4096 extra nodes");
    /* 20,000 nested groups: regcomp's parser would overflow its stack */
    open = repeat("", "(", 20000, "a");
    nested = repeat(open, ")", 20000, "");
    refused(nested, "nest more than 64 deep");
    free(open), free(nested);
    /* stars stacked on a group (the toolcmd timeout: seconds in regcomp's epsilon closures) */
    char *plus = repeat("()", "+", 12, ""), *stars = repeat(plus, "*", 35, "");
    refused(stars, "repeats something that can match the empty string");
    free(plus), free(stars);
    /* repeats of what can match "": "()" in 9 groups each with '+' (the adapter_config target's
     * timeout), and the like; their closures grow exponentially */
    open = repeat("", "(", 9, "()");
    nested = repeat(open, ")+", 9, "");
    refused(nested, "repeats something that can match the empty string");
    free(open), free(nested);
    refused("(x?)+", "repeats something that can match the empty string");
    refused("(a|)+", "repeats something that can match the empty string");
    refused("(^){2}", "repeats something that can match the empty string");
    refused("(a*b?){2,3}", "repeats something that can match the empty string");
    /* many parts that can match "": the closures grow as their cube ("(x?)*" 3,000 times: 59 s) */
    char *many = repeat("", "(x?)*", 300, "");
    refused(many, "more than 256 parts");
    free(many);
    many = repeat("", "x?", 200, ""); /* 200 such parts pass, and compile at once */
    assert_int_equal(lr_regex_check(many, NULL), LR_OK);
    regex_t rx;
    assert_int_equal(regcomp(&rx, many, REG_EXTENDED | REG_NOSUB), 0);
    regfree(&rx);
    free(many);
    lr_err e;
    assert_int_equal(lr_regex_check(NULL, &e), LR_EINVAL);
    /* at the limits: 64 groups deep passes, 65 does not */
    open = repeat("", "(", 64, "a");
    nested = repeat(open, ")", 64, "");
    assert_int_equal(lr_regex_check(nested, NULL), LR_OK);
    free(open), free(nested);
    open = repeat("", "(", 65, "a");
    nested = repeat(open, ")", 65, "");
    refused(nested, "nest more than 64 deep");
    free(open), free(nested);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_ordinary_expressions),
        cmocka_unit_test(test_refuses_what_regcomp_cannot_afford),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
