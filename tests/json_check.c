/* json_check.c — test helper for the demos: reads stdin, fails unless it is exactly one
 * JSON object. Each argument names a key that must be present; "key=VALUE" also pins its
 * value (an integer, true or false, or a string). Prints what is wrong on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

int main(int argc, char **argv)
{
    json_error_t e;
    json_t *root = json_loadf(stdin, 0, &e); /* rejects trailing garbage too */
    if (!root) {
        fprintf(stderr, "json_check: not valid JSON: %s (line %d, column %d)\n", e.text, e.line, e.column);
        return 1;
    }
    int rc = 0;
    if (!json_is_object(root)) {
        fprintf(stderr, "json_check: the top level is not an object\n");
        rc = 1;
    }
    for (int i = 1; rc == 0 && i < argc; i++) {
        char key[256];
        const char *eq = strchr(argv[i], '=');
        size_t n = eq ? (size_t)(eq - argv[i]) : strlen(argv[i]);
        if (n >= sizeof key) n = sizeof key - 1;
        memcpy(key, argv[i], n);
        key[n] = '\0';
        json_t *v = json_object_get(root, key);
        if (!v) {
            fprintf(stderr, "json_check: key '%s' missing\n", key);
            rc = 1;
        } else if (eq) {
            const char *want = eq + 1;
            char got[256];
            if (json_is_integer(v)) snprintf(got, sizeof got, "%lld", (long long)json_integer_value(v));
            else if (json_is_boolean(v)) snprintf(got, sizeof got, "%s", json_is_true(v) ? "true" : "false");
            else if (json_is_string(v)) snprintf(got, sizeof got, "%s", json_string_value(v));
            else snprintf(got, sizeof got, "(another type)");
            if (strcmp(got, want) != 0) {
                fprintf(stderr, "json_check: '%s' is %s, expected %s\n", key, got, want);
                rc = 1;
            }
        }
    }
    json_decref(root);
    return rc;
}
