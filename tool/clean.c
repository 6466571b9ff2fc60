/* clean.c — `lowrank clean-temps DIR...`: removes the temp files that a killed save left
 * behind (".NAME.tmp-XXXXXX", lr_atomic_clean in atomicfile.h), by age and by lock. */
#include <stdlib.h>
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
    tool_clean_args a = { 0 };
    size_t removed = 0, total = 0, cap = tool_msg_cap(argc, argv);
    ctx c = { false, false, json_array(), 0 };
    char *msg = c.files ? malloc(cap) : NULL;
    int rc = msg ? tool_parsed(SUB, tool_clean_parse(argc, argv, &a, msg, cap), msg, help, false)
                 : tool_failf(SUB, "out of memory");
    free(msg);
    c.json = a.json, c.dry = a.dry;
    for (size_t i = 0; i < a.nd && !rc; i++) {
        lr_err e = { 0 };
        size_t n = 0;
        if (lr_atomic_clean(&n, a.dirs[i], a.age, c.dry, on_file, &c, &e)) rc = tool_fail(SUB, &e);
        removed += n;
    }
    total = json_array_size(c.files);
    if (!rc && c.json) {
        json_t *o = json_pack("{s:s,s:b,s:f,s:O,s:I,s:I}", "command", SUB, "dry_run", c.dry, "older_than_s", a.age,
                              "files", c.files, "removed", (json_int_t)removed, "in_use", (json_int_t)c.in_use);
        rc = o ? tool_json_print(o) : tool_failf(SUB, "out of memory");
        json_decref(o);
    } else if (!rc) {
        printf("%zu stale temp file%s %s, %zu in use kept\n", c.dry ? total - c.in_use : removed,
               (c.dry ? total - c.in_use : removed) == 1 ? "" : "s", c.dry ? "found (dry run)" : "removed", c.in_use);
    }
    json_decref(c.files);
    return rc < 0 ? 0 : rc; /* after --help */
}
