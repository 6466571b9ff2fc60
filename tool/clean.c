/* clean.c — `lowrank clean-temps DIR...`: removes the temp files that a killed save left
 * behind (".NAME.tmp-XXXXXX", lr_atomic_clean in atomicfile.h), by age and by lock. */
#include <stdlib.h>
#include <string.h>
#include "tool.h"

#define SUB "clean-temps"

static const char help[] =
"usage: " PROG " clean-temps DIR... [--older-than SECONDS] [--dry-run] [--json]\n"
"\n"
"Every save by lowrank, lr-mnist and lr-svd-demo writes a temp file \".NAME.tmp-XXXXXX\" beside\n"
"its target and renames it over the target when complete. A process killed before the\n"
"rename (kill -9, a power cut) leaves the target intact and the temp file behind. This\n"
"removes such files from each DIR (not its subdirectories): regular files of that naming,\n"
"not modified for SECONDS (default 3600), and not locked. A writer holds a lock on its temp\n"
"file until it is done, so a file another process is still writing is never removed,\n"
"whatever its age; symbolic links are never followed or removed.\n"
"\n"
"  --older-than S   minimum age in seconds since the last modification (default 3600)\n"
"  --dry-run        list what would be removed, remove nothing\n"
"  --json           one JSON object on stdout\n";

typedef struct {
    bool json, dry;
    json_t *files;
    size_t in_use;
} ctx;

static void on_file(void *p, const lr_atomic_stale *s)
{
    ctx *c = p;
    c->in_use += s->in_use;
    const char *what = s->in_use ? "in use, kept" : s->removed ? "removed" : c->dry ? "would remove" : "cannot remove";
    if (!c->json) printf("%-14s %12llu bytes %10.0f s old  %s\n", what, (unsigned long long)s->bytes, s->age_s, s->path);
    json_t *o = json_pack("{s:s,s:I,s:f,s:b,s:b}", "path", s->path, "bytes", (json_int_t)s->bytes, "age_s", s->age_s,
                          "removed", s->removed, "in_use", s->in_use);
    if (o) json_array_append_new(c->files, o);
}

int tool_clean(int argc, char **argv)
{
    char msg[512];
    const char *dirs[64], *v;
    size_t nd = 0, removed = 0, total = 0;
    double age = 3600;
    ctx c = { false, false, json_array(), 0 };
    int rc = c.files ? 0 : tool_failf(SUB, "out of memory");
    for (int i = 1; i < argc && !rc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            fputs(help, stdout);
            json_decref(c.files);
            return 0;
        }
        if (!strcmp(s, "--json")) c.json = true;
        else if (!strcmp(s, "--dry-run")) c.dry = true;
        else if (lr_cli_match(s, "--older-than")) {
            if (!lr_cli_value(argc, argv, &i, "--older-than", &v, msg, sizeof msg) ||
                !lr_cli_parse_double("--older-than", v, 0, false, 1e12, false, &age, msg, sizeof msg))
                rc = tool_usage(SUB, "%s", msg);
        } else if (s[0] == '-' && s[1]) rc = tool_usage(SUB, "unknown option '%s'", s);
        else if (nd == 64) rc = tool_usage(SUB, "at most 64 directories");
        else dirs[nd++] = s;
    }
    if (!rc && nd == 0) rc = tool_usage(SUB, "expected one or more directories");
    for (size_t i = 0; i < nd && !rc; i++) {
        lr_err e = { 0 };
        size_t n = 0;
        if (lr_atomic_clean(dirs[i], age, c.dry, on_file, &c, &n, &e)) rc = tool_fail(SUB, &e);
        removed += n;
    }
    total = json_array_size(c.files);
    if (!rc && c.json) {
        json_t *o = json_pack("{s:s,s:b,s:f,s:O,s:I,s:I}", "command", SUB, "dry_run", c.dry, "older_than_s", age,
                              "files", c.files, "removed", (json_int_t)removed, "in_use", (json_int_t)c.in_use);
        rc = o ? tool_json_print(o) : tool_failf(SUB, "out of memory");
        json_decref(o);
    } else if (!rc) {
        printf("%zu stale temp file%s %s, %zu in use kept\n", c.dry ? total - c.in_use : removed,
               (c.dry ? total - c.in_use : removed) == 1 ? "" : "s", c.dry ? "found (dry run)" : "removed", c.in_use);
    }
    json_decref(c.files);
    return rc;
}
