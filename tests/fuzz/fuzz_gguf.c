/* fuzz_gguf.c — the GGUF reader on arbitrary bytes: every file it accepts is walked (each
 * key through every typed getter, each array's elements, each tensor found by name and read:
 * F32/F16/BF16 as float32, the others as raw bytes), and what it promised is checked: the
 * tensors lie inside the file at offsets that are multiples of the alignment, every key and
 * name is found again, strings are NUL-terminated. A broken promise aborts. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "lowrank/io/gguf.h"

static void check(bool ok)
{
    if (!ok) abort();
}

/* Every element of an array, nested arrays included. */
static void walk(const lr_gguf_value *v, int depth)
{
    check(depth <= LR_GGUF_MAX_DEPTH);
    if (v->type == LR_GGUF_STRING) check(v->str.s && v->str.s[v->str.len] == '\0');
    if (v->type != LR_GGUF_ARRAY) return;
    check(lr_gguf_type_name(v->arr.type) != NULL && (v->arr.n == 0 || v->arr.data));
    volatile unsigned sum = 0;
    for (size_t i = 0; i < v->arr.n; i++) {
        if (v->arr.type == LR_GGUF_STRING) {
            const lr_gguf_str *s = &((const lr_gguf_str *)v->arr.data)[i];
            check(s->s && s->s[s->len] == '\0');
            sum += s->len ? (unsigned char)s->s[s->len - 1] : 0;
        } else if (v->arr.type == LR_GGUF_ARRAY) {
            const lr_gguf_value *e = &((const lr_gguf_value *)v->arr.data)[i];
            check(e->type == LR_GGUF_ARRAY);
            walk(e, depth + 1);
        } else if (v->arr.type == LR_GGUF_BOOL) {
            check(((const unsigned char *)v->arr.data)[i] <= 1);
        } else {
            sum += ((const unsigned char *)v->arr.data)[i];
        }
    }
    (void)sum;
}

static void getters(const lr_gguf *g, const char *key)
{
    lr_err e;
    const char *s;
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    bool b;
    const void *data;
    size_t n;
    int ok = 0;
    ok += lr_gguf_meta_get_string(g, &s, key, &e) == LR_OK;
    ok += lr_gguf_meta_get_u32(g, &u32, key, &e) == LR_OK;
    ok += lr_gguf_meta_get_i32(g, &i32, key, &e) == LR_OK;
    ok += lr_gguf_meta_get_u64(g, &u64, key, &e) == LR_OK;
    ok += lr_gguf_meta_get_i64(g, &i64, key, &e) == LR_OK;
    ok += lr_gguf_meta_get_f32(g, &f32, key, &e) == LR_OK;
    ok += lr_gguf_meta_get_f64(g, &f64, key, &e) == LR_OK;
    ok += lr_gguf_meta_get_bool(g, &b, key, &e) == LR_OK;
    for (int t = 0; t < LR_GGUF_NTYPES; t++)
        ok += lr_gguf_meta_get_array(g, &data, &n, key, (lr_gguf_type)t, &e) == LR_OK;
    const lr_gguf_kv *kv = lr_gguf_meta_find(g, key);
    check(kv && !strcmp(kv->key, key));
    /* exactly one getter fits a scalar of a type with a getter, or an array */
    lr_gguf_type t = kv->value.type;
    bool has_getter = t != LR_GGUF_UINT8 && t != LR_GGUF_INT8 && t != LR_GGUF_UINT16 && t != LR_GGUF_INT16;
    check(ok == (has_getter ? 1 : 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lr_gguf g;
    lr_err e = { { 0 } };
    if (lr_gguf_from_memory(&g, data, size, "fuzz.gguf", &e) != LR_OK) {
        check(g.arena == NULL && g.mem == NULL && e.msg[0] != '\0');
        return 0;
    }
    check(g.version == 2 || g.version == 3);
    check(g.alignment && !(g.alignment & (g.alignment - 1)));
    check(g.data_start <= size);
    for (size_t i = 0; i < lr_gguf_meta_count(&g); i++) {
        const lr_gguf_kv *kv = lr_gguf_meta_at(&g, i);
        check(kv->key[0] != '\0' && lr_gguf_meta_find(&g, kv->key) == kv);
        walk(&kv->value, 0);
        getters(&g, kv->key);
    }
    size_t end = g.data_start;
    for (size_t i = 0; i < lr_gguf_count(&g); i++) {
        const lr_gguf_tensor *t = lr_gguf_at(&g, i);
        check(lr_gguf_find(&g, t->name) == t && lr_ggml_type_name(t->type) != NULL);
        check(t->offset % g.alignment == 0 && g.data_start + t->offset >= end);
        check(t->nbytes <= size - g.data_start - t->offset);
        end = g.data_start + t->offset + t->nbytes;
        size_t n = 1;
        for (int d = 0; d < LR_GGUF_MAX_DIMS; d++) n *= t->ne[d];
        check(n / lr_ggml_block_elems(t->type) * lr_ggml_block_bytes(t->type) == t->nbytes);
        if (t->nbytes > (1u << 20)) continue;
        void *buf = malloc(t->nbytes ? t->nbytes * 2 : 1);
        if (!buf) continue;
        lr_status s = lr_gguf_get_f32(&g, buf, t->name, n, &e);
        bool fl = t->type == LR_GGML_F32 || t->type == LR_GGML_F16 || t->type == LR_GGML_BF16;
        check((s == LR_OK) == fl);
        check(lr_gguf_get_bytes(&g, buf, t->name, 0, t->nbytes, &e) == LR_OK);
        check(lr_gguf_get_bytes(&g, buf, t->name, 1, t->nbytes, &e) != LR_OK);
        free(buf);
    }
    check(lr_gguf_find(&g, "") == NULL && lr_gguf_meta_find(&g, "") == NULL);
    lr_gguf_free(&g);
    check(g.arena == NULL && lr_gguf_count(&g) == 0);
    return 0;
}
