/* model.c — a checkpoint as one file or as shards with an index (see model.h).
 *
 * Opening reads the index with jansson, opens each shard header-only, and checks the two
 * against each other in an order that gives the most useful message first: shard paths,
 * shards that cannot be opened, tensors in two shards, tensors a shard holds that the index
 * does not list (or lists elsewhere), tensors listed but missing, and shard files beside the
 * index that it does not list. Writing keeps one lr_st_writer per shard open until every
 * tensor is complete, then renames them all and writes the index last.
 */
#include "lowrank/io/model.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/internal.h"
#include "lowrank/io/atomicfile.h"

/* ---- small helpers ---- */

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (d) memcpy(d, path, n), d[n] = '\0';
    return d;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A shard path inside the index's directory: not empty, not absolute, no ".." part. */
static bool safe_shard_path(const char *p)
{
    if (!*p || *p == '/') return false;
    for (const char *s = p; s;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 2 && s[0] == '.' && s[1] == '.') return false;
        s = e ? e + 1 : NULL;
    }
    return true;
}

/* "PREFIX-NNNNN-of-MMMMM.safetensors": *plen <- the length of PREFIX, *of <- MMMMM. */
static bool shard_pattern(const char *name, size_t *plen, unsigned long *of)
{
    size_t n = strlen(name);
    const char *suf = "-of-";
    if (!ends_with(name, ".safetensors") || n < 12 + 16) return false;
    const char *dig2 = name + n - 12 - 5, *mid = dig2 - 4, *dig1 = mid - 5;
    if (strncmp(mid, suf, 4) != 0) return false;
    for (int i = 0; i < 5; i++)
        if (dig1[i] < '0' || dig1[i] > '9' || dig2[i] < '0' || dig2[i] > '9') return false;
    if (dig1 == name || dig1[-1] != '-') return false;
    *plen = (size_t)(dig1 - 1 - name);
    *of = strtoul(dig2, NULL, 10);
    return true;
}

/* ---- the model ---- */

void lr_model_free(lr_model *m)
{
    if (!m) return;
    for (size_t k = 0; k < m->nshards; k++) {
        if (m->shard) lr_safetensors_free(&m->shard[k]);
        if (m->shard_name) free(m->shard_name[k]);
    }
    free(m->shard), free(m->shard_name), free(m->ts), free(m->ti), free(m->by_name);
    free(m->path), free(m->index), free(m->dir), free(m->index_meta);
    memset(m, 0, sizeof *m);
}

typedef struct { const char *name; size_t i; } named;

static int cmp_named(const void *a, const void *b)
{
    const named *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* ts, ti <- every shard's tensors in shard then file order; by_name; a tensor in two
 * shards is refused. */
static lr_status index_tensors(lr_model *m, lr_err *err)
{
    size_t nt = 0;
    for (size_t k = 0; k < m->nshards; k++) nt += lr_safetensors_count(&m->shard[k]);
    size_t c = nt ? nt : 1;
    m->ts = malloc(c * sizeof *m->ts), m->ti = malloc(c * sizeof *m->ti), m->by_name = malloc(c * sizeof *m->by_name);
    named *nm = malloc(c * sizeof *nm);
    if (!m->ts || !m->ti || !m->by_name || !nm) {
        free(nm);
        return lr__fail(err, LR_ENOMEM, "%s: out of memory", m->path);
    }
    for (size_t k = 0, i = 0; k < m->nshards; k++)
        for (size_t j = 0; j < lr_safetensors_count(&m->shard[k]); j++, i++) {
            m->ts[i] = k, m->ti[i] = j;
            nm[i] = (named){ lr_safetensors_at(&m->shard[k], j)->name, i };
        }
    m->nt = nt;
    if (nt > 1) qsort(nm, nt, sizeof *nm, cmp_named);
    lr_status s = LR_OK;
    for (size_t i = 0; i < nt && !s; i++) {
        m->by_name[i] = nm[i].i;
        if (i && !strcmp(nm[i].name, nm[i - 1].name))
            s = lr__fail(err, LR_EFORMAT, "%s: tensor %s is in both %s and %s", m->index ? m->index : m->path,
                         nm[i].name, m->shard_name[m->ts[nm[i - 1].i]], m->shard_name[m->ts[nm[i].i]]);
    }
    free(nm);
    return s;
}

static lr_status open_single(lr_model *m, const char *file, lr_err *err)
{
    const char *base = strrchr(file, '/');
    m->shard = calloc(1, sizeof *m->shard);
    m->shard_name = calloc(1, sizeof *m->shard_name);
    if (!m->shard || !m->shard_name || !(m->shard_name[0] = strdup(base ? base + 1 : file)) ||
        !(m->dir = dir_of(file)))
        return lr__fail(err, LR_ENOMEM, "%s: out of memory", file);
    m->nshards = 1;
    lr_status s = lr_safetensors_open(&m->shard[0], file, err);
    return s ? s : index_tensors(m, err);
}

/* A shard path without leading "./" parts ("./x" is x). */
static const char *plain(const char *f)
{
    while (f[0] == '.' && f[1] == '/') f += 2;
    return f;
}

/* The distinct shard names of weight_map wm, sorted, each checked to stay in the directory. */
static lr_status shard_names(lr_model *m, json_t *wm, lr_err *err)
{
    size_t n = json_object_size(wm), k = 0;
    const char **v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return lr__fail(err, LR_ENOMEM, "%s: out of memory", m->index);
    const char *key;
    json_t *val;
    lr_status s = LR_OK;
    json_object_foreach(wm, key, val) {
        if (!json_is_string(val)) {
            s = lr__fail(err, LR_EFORMAT, "%s: weight_map: tensor %s: the shard is not a string", m->index, key);
            break;
        }
        const char *f = json_string_value(val);
        f = plain(f);
        if (!safe_shard_path(f)) {
            s = lr__fail(err, LR_EFORMAT, "%s: weight_map: tensor %s: shard path '%s' leaves the index's directory "
                         "(absolute, empty, or with a '..' part)", m->index, key, f);
            break;
        }
        v[k++] = f;
    }
    if (!s && k > 1) qsort(v, k, sizeof *v, cmp_str);
    size_t u = 0;
    for (size_t i = 0; !s && i < k; i++)
        if (!i || strcmp(v[i], v[i - 1])) v[u++] = v[i];
    if (!s && !(m->shard_name = calloc(u ? u : 1, sizeof *m->shard_name)))
        s = lr__fail(err, LR_ENOMEM, "%s: out of memory", m->index);
    for (size_t i = 0; !s && i < u; i++)
        if (!(m->shard_name[i] = strdup(v[i]))) s = lr__fail(err, LR_ENOMEM, "%s: out of memory", m->index);
    if (!s) m->nshards = u;
    else if (m->shard_name) {
        for (size_t i = 0; i < u; i++) free(m->shard_name[i]);
        free(m->shard_name), m->shard_name = NULL;
    }
    free(v);
    return s;
}

/* The first tensor weight_map lists for shard `name` (for messages). */
static const char *listed_for(json_t *wm, const char *name)
{
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) if (!strcmp(plain(json_string_value(val)), name)) return key;
    return "?";
}

static lr_status open_shards(lr_model *m, json_t *wm, lr_err *err)
{
    if (!(m->shard = calloc(m->nshards ? m->nshards : 1, sizeof *m->shard)))
        return lr__fail(err, LR_ENOMEM, "%s: out of memory", m->index);
    for (size_t k = 0; k < m->nshards; k++) {
        char *p = join(m->dir, m->shard_name[k]);
        lr_err e = { "out of memory" };
        lr_status s = p ? lr_safetensors_open(&m->shard[k], p, &e) : LR_ENOMEM;
        free(p);
        if (s)
            return lr__fail(err, s, "%s: shard %s (listed for %s): %s", m->index, m->shard_name[k],
                            listed_for(wm, m->shard_name[k]), e.msg);
    }
    return LR_OK;
}

/* Every tensor of every shard listed for that shard, and every listed tensor in its shard. */
static lr_status check_listing(lr_model *m, json_t *wm, lr_err *err)
{
    for (size_t i = 0; i < m->nt; i++) {
        const char *name = lr_safetensors_at(&m->shard[m->ts[i]], m->ti[i])->name, *sh = m->shard_name[m->ts[i]];
        json_t *v = json_object_get(wm, name);
        if (!v)
            return lr__fail(err, LR_EFORMAT, "%s: tensor %s is in shard %s, but the index does not list it",
                            m->index, name, sh);
        if (strcmp(plain(json_string_value(v)), sh))
            return lr__fail(err, LR_EFORMAT, "%s: tensor %s is in shard %s, but the index lists it in %s", m->index,
                            name, sh, json_string_value(v));
    }
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        if (!lr_model_find(m, key))
            return lr__fail(err, LR_EFORMAT, "%s: tensor %s is listed in shard %s, which does not hold it", m->index,
                            key, json_string_value(val));
    }
    return LR_OK;
}

/* A file beside the index named like its shards (same prefix and count) but not listed. */
static lr_status check_unlisted(const lr_model *m, lr_err *err)
{
    size_t plen;
    unsigned long of;
    const char *ref = NULL;
    for (size_t k = 0; k < m->nshards && !ref; k++)
        if (!strchr(m->shard_name[k], '/') && shard_pattern(m->shard_name[k], &plen, &of)) ref = m->shard_name[k];
    DIR *d = ref ? opendir(m->dir) : NULL;
    if (!d) return LR_OK;
    lr_status s = LR_OK;
    for (struct dirent *de; !s && (de = readdir(d));) {
        size_t pl;
        unsigned long o;
        if (!shard_pattern(de->d_name, &pl, &o) || pl != plen || strncmp(de->d_name, ref, plen)) continue;
        const char *key = de->d_name;
        if (!bsearch(&key, m->shard_name, m->nshards, sizeof *m->shard_name, cmp_str))
            s = lr__fail(err, LR_EFORMAT, "%s: %s is named like a shard of this model, but the index does not list it "
                         "(a leftover of another save?)", m->index, de->d_name);
    }
    closedir(d);
    return s;
}

static lr_status open_index(lr_model *m, lr_err *err)
{
    json_error_t je;
    json_t *root = json_load_file(m->index, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        struct stat sb;
        if (stat(m->index, &sb) != 0)
            return lr__fail(err, LR_EIO, "cannot open %s: %s", m->index, strerror(errno));
        return lr__fail(err, LR_EFORMAT, "%s: not a valid index: %s (line %d, column %d)", m->index, je.text,
                        je.line, je.column);
    }
    lr_status s = LR_OK;
    json_t *wm = json_object_get(root, "weight_map"), *meta = json_object_get(root, "metadata");
    if (!json_is_object(root) || !json_is_object(wm))
        s = lr__fail(err, LR_EFORMAT, "%s: expected an object with \"weight_map\": {tensor: shard file}", m->index);
    else if (json_object_size(wm) == 0)
        s = lr__fail(err, LR_EFORMAT, "%s: weight_map lists no tensor", m->index);
    else if (meta && !json_is_object(meta))
        s = lr__fail(err, LR_EFORMAT, "%s: \"metadata\" is not an object", m->index);
    if (!s && meta && !(m->index_meta = json_dumps(meta, JSON_COMPACT | JSON_PRESERVE_ORDER)))
        s = lr__fail(err, LR_ENOMEM, "%s: out of memory", m->index);
    if (!s) s = shard_names(m, wm, err);
    if (!s) s = open_shards(m, wm, err);
    if (!s) s = index_tensors(m, err);
    if (!s) s = check_listing(m, wm, err);
    if (!s) s = check_unlisted(m, err);
    json_decref(root);
    return s;
}

/* m->index or the single file, from what the user passed. */
static lr_status resolve(lr_model *m, char **file, lr_err *err)
{
    struct stat sb;
    *file = NULL;
    if (stat(m->path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        char *f = join(m->path, LR_MODEL_FILE), *ix = join(m->path, LR_MODEL_INDEX);
        if (!f || !ix) {
            free(f), free(ix);
            return lr__fail(err, LR_ENOMEM, "%s: out of memory", m->path);
        }
        if (stat(f, &sb) == 0) *file = f, free(ix);
        else if (stat(ix, &sb) == 0) m->index = ix, free(f);
        else {
            free(f), free(ix);
            return lr__fail(err, LR_EIO, "%s: is a directory holding neither %s nor %s", m->path, LR_MODEL_FILE,
                            LR_MODEL_INDEX);
        }
    } else if (ends_with(m->path, ".json")) {
        m->index = strdup(m->path);
    } else {
        *file = strdup(m->path);
    }
    if ((!*file && !m->index) || (m->index && !(m->dir = dir_of(m->index))))
        return lr__fail(err, LR_ENOMEM, "%s: out of memory", m->path);
    return LR_OK;
}

lr_status lr_model_open(lr_model *m, const char *path, lr_err *err)
{
    if (!m) return lr__fail(err, LR_EINVAL, "lr_model_open: m is NULL");
    memset(m, 0, sizeof *m);
    if (!path || !*path) return lr__fail(err, LR_EINVAL, "model: empty path");
    if (!(m->path = strdup(path))) return lr__fail(err, LR_ENOMEM, "%s: out of memory", path);
    char *file = NULL;
    lr_status s = resolve(m, &file, err);
    if (!s) s = file ? open_single(m, file, err) : open_index(m, err);
    free(file);
    if (s) lr_model_free(m);
    return s;
}

const char *lr_model_path(const lr_model *m) { return m ? m->path : NULL; }
const char *lr_model_index_path(const lr_model *m) { return m ? m->index : NULL; }
const char *lr_model_dir(const lr_model *m) { return m ? m->dir : NULL; }
const char *lr_model_index_meta(const lr_model *m) { return m ? m->index_meta : NULL; }
size_t lr_model_count(const lr_model *m) { return m ? m->nt : 0; }
size_t lr_model_shard_count(const lr_model *m) { return m ? m->nshards : 0; }

const lr_st_tensor *lr_model_at(const lr_model *m, size_t i)
{
    return m && i < m->nt ? lr_safetensors_at(&m->shard[m->ts[i]], m->ti[i]) : NULL;
}

const char *lr_model_shard_name(const lr_model *m, size_t k)
{
    return m && k < m->nshards ? m->shard_name[k] : NULL;
}

lr_safetensors *lr_model_shard_at(const lr_model *m, size_t k)
{
    return m && k < m->nshards ? &m->shard[k] : NULL;
}

size_t lr_model_shard_of(const lr_model *m, size_t i)
{
    return m && i < m->nt ? m->ts[i] : (size_t)-1;
}

static ptrdiff_t find_index(const lr_model *m, const char *name)
{
    if (!m || !name || !m->by_name) return -1;
    size_t lo = 0, hi = m->nt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(lr_model_at(m, m->by_name[mid])->name, name);
        if (c == 0) return (ptrdiff_t)m->by_name[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return -1;
}

const lr_st_tensor *lr_model_find(const lr_model *m, const char *name)
{
    ptrdiff_t i = find_index(m, name);
    return i < 0 ? NULL : lr_model_at(m, (size_t)i);
}

const char *lr_model_file_of(const lr_model *m, const char *name)
{
    ptrdiff_t i = find_index(m, name);
    return i < 0 ? lr_model_path(m) : lr_safetensors_path(&m->shard[m->ts[i]]);
}

lr_status lr_model_get_f32(lr_model *m, float *dst, const char *name, size_t ndim, const size_t *shape,
                           lr_err *err)
{
    if (!m || !name) return lr__fail(err, LR_EINVAL, "lr_model_get_f32: NULL argument");
    ptrdiff_t i = find_index(m, name);
    if (i < 0) return lr__fail(err, LR_EFORMAT, "%s: missing tensor %s", m->path ? m->path : "(null)", name);
    return lr_safetensors_get_f32(&m->shard[m->ts[i]], dst, name, ndim, shape, err);
}

lr_status lr_model_get_f32_rows(lr_model *m, float *dst, const char *name, size_t r0, size_t k, lr_err *err)
{
    if (!m || !name) return lr__fail(err, LR_EINVAL, "lr_model_get_f32_rows: NULL argument");
    ptrdiff_t i = find_index(m, name);
    if (i < 0) return lr__fail(err, LR_EFORMAT, "%s: missing tensor %s", m->path ? m->path : "(null)", name);
    return lr_safetensors_get_f32_rows(&m->shard[m->ts[i]], dst, name, r0, k, err);
}

lr_status lr_model_get_bytes(lr_model *m, void *dst, const char *name, size_t off, size_t n, lr_err *err)
{
    if (!m || !name) return lr__fail(err, LR_EINVAL, "lr_model_get_bytes: NULL argument");
    ptrdiff_t i = find_index(m, name);
    if (i < 0) return lr__fail(err, LR_EFORMAT, "%s: missing tensor %s", m->path ? m->path : "(null)", name);
    return lr_safetensors_get_bytes(&m->shard[m->ts[i]], dst, name, off, n, err);
}

/* ---- writing ---- */

lr_model_write_opts lr_model_write_opts_default(void)
{
    return (lr_model_write_opts){ .max_shard_bytes = 0, .prefix = "model" };
}

void lr_model_writer_free(lr_model_writer *w)
{
    if (!w) return;
    for (size_t k = 0; k < w->nshards; k++) {
        if (w->w) lr_st_writer_free(&w->w[k]);
        if (w->shard_name) free(w->shard_name[k]);
    }
    for (size_t i = 0; w->name && i < w->nt; i++) free(w->name[i]);
    if (w->made_dir) rmdir(w->out); /* only if still empty: nothing was committed */
    free(w->w), free(w->shard_name), free(w->name), free(w->shard_of), free(w->out), free(w->index_meta);
    memset(w, 0, sizeof *w);
}

static bool wants_shards(const lr_model_entry *e, size_t n, const lr_model_write_opts *o)
{
    if (o->max_shard_bytes) return true;
    for (size_t i = 0; i < n; i++)
        if (e[i].shard && strcmp(e[i].shard, LR_MODEL_FILE)) return true;
    return false;
}

/* sh[i] <- entry i's shard name (owned by w->shard_name), packing by size or as named. */
static lr_status assign_shards(lr_model_writer *w, const lr_model_entry *e, size_t n, const lr_model_write_opts *o,
                               size_t *sh, lr_err *err)
{
    size_t cap = n ? n : 1, k = 0, used = 0;
    if (!(w->shard_name = calloc(cap, sizeof *w->shard_name))) return lr__fail(err, LR_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t nb = 0;
        lr_status s = lr_st_tensor_nbytes(&e[i].t, &nb, err);
        if (s) return s;
        if (o->max_shard_bytes) {
            if (i == 0 || (used && used + nb > o->max_shard_bytes)) k = i == 0 ? 0 : k + 1, used = 0;
            sh[i] = k, used += nb;
            continue;
        }
        if (!e[i].shard || !safe_shard_path(e[i].shard) || strchr(e[i].shard, '/'))
            return lr__fail(err, LR_EINVAL, "%s: tensor %s: shard '%s' is not a file name in the output directory",
                            w->out, e[i].t.name, e[i].shard ? e[i].shard : "(none)");
        size_t j = 0;
        while (j < k && strcmp(w->shard_name[j], e[i].shard)) j++;
        if (j == k && !(w->shard_name[k++] = strdup(e[i].shard))) return lr__fail(err, LR_ENOMEM, "out of memory");
        sh[i] = j;
    }
    w->nshards = o->max_shard_bytes ? (n ? k + 1 : 0) : k;
    if (o->max_shard_bytes && w->nshards <= 1) { /* it all fits: one model.safetensors, no index */
        w->nshards = 1, w->single_in_dir = true;
        return (w->shard_name[0] = strdup(LR_MODEL_FILE)) ? LR_OK : lr__fail(err, LR_ENOMEM, "out of memory");
    }
    for (size_t j = 0; o->max_shard_bytes && j < w->nshards; j++) {
        char buf[64];
        snprintf(buf, sizeof buf, "-%05zu-of-%05zu.safetensors", j + 1, w->nshards);
        if (!(w->shard_name[j] = join("", o->prefix))) return lr__fail(err, LR_ENOMEM, "out of memory");
        char *full = malloc(strlen(w->shard_name[j]) + strlen(buf) + 1);
        if (!full) return lr__fail(err, LR_ENOMEM, "out of memory");
        strcat(strcpy(full, w->shard_name[j]), buf);
        free(w->shard_name[j]), w->shard_name[j] = full;
    }
    return LR_OK;
}

/* out must be a directory (made if missing) holding no shard of another layout. */
static lr_status prepare_dir(lr_model_writer *w, lr_err *err)
{
    struct stat sb;
    if (stat(w->out, &sb) != 0) {
        if (mkdir(w->out, 0777) != 0) return lr__fail(err, LR_EIO, "cannot create %s: %s", w->out, strerror(errno));
        w->made_dir = true;
        return LR_OK;
    }
    if (!S_ISDIR(sb.st_mode))
        return lr__fail(err, LR_EINVAL, "%s: is not a directory, and a sharded model is written into one", w->out);
    DIR *d = opendir(w->out);
    if (!d) return lr__fail(err, LR_EIO, "cannot read %s: %s", w->out, strerror(errno));
    lr_status s = LR_OK;
    for (struct dirent *de; !s && (de = readdir(d));) {
        size_t pl;
        unsigned long of;
        const char *key = de->d_name;
        if (!strcmp(de->d_name, LR_MODEL_FILE) &&
            !bsearch(&key, w->shard_name, w->nshards, sizeof *w->shard_name, cmp_str))
            s = lr__fail(err, LR_EINVAL, "%s: holds %s, which readers take before an index: write into an empty "
                         "directory", w->out, LR_MODEL_FILE);
        else if (shard_pattern(de->d_name, &pl, &of) &&
            !bsearch(&key, w->shard_name, w->nshards, sizeof *w->shard_name, cmp_str))
            s = lr__fail(err, LR_EINVAL, "%s: holds %s, a shard of another layout: write into an empty directory",
                         w->out, de->d_name);
    }
    closedir(d);
    return s;
}

/* One lr_st_writer per shard, each with its entries. */
static lr_status open_writers(lr_model_writer *w, const lr_model_entry *e, size_t n, const size_t *sh,
                              const lr_st_meta *meta, size_t nm, lr_err *err)
{
    lr_st_tensor *t = malloc((n ? n : 1) * sizeof *t);
    if (!(w->w = calloc(w->nshards ? w->nshards : 1, sizeof *w->w)) || !t) {
        free(t);
        return lr__fail(err, LR_ENOMEM, "%s: out of memory", w->out);
    }
    lr_status s = LR_OK;
    for (size_t k = 0; k < w->nshards && !s; k++) {
        size_t c = 0;
        for (size_t i = 0; i < n; i++)
            if (sh[i] == k) t[c++] = e[i].t;
        char *p = w->sharded ? join(w->out, w->shard_name[k]) : strdup(w->out);
        s = p ? lr_st_writer_init(&w->w[k], p, t, c, meta, nm, err) : lr__fail(err, LR_ENOMEM, "out of memory");
        free(p);
    }
    free(t);
    return s;
}

/* name, shard_of <- the entries sorted by name (for put), total_size. */
static lr_status route(lr_model_writer *w, const lr_model_entry *e, size_t n, const size_t *sh, lr_err *err)
{
    named *nm = malloc((n ? n : 1) * sizeof *nm);
    w->name = calloc(n ? n : 1, sizeof *w->name);
    w->shard_of = malloc((n ? n : 1) * sizeof *w->shard_of);
    if (!nm || !w->name || !w->shard_of) {
        free(nm);
        return lr__fail(err, LR_ENOMEM, "%s: out of memory", w->out);
    }
    for (size_t i = 0; i < n; i++) nm[i] = (named){ e[i].t.name, i };
    if (n > 1) qsort(nm, n, sizeof *nm, cmp_named);
    lr_status s = LR_OK;
    for (size_t i = 0; i < n && !s; i++) {
        size_t nb = 0;
        if ((s = lr_st_tensor_nbytes(&e[nm[i].i].t, &nb, err))) break;
        w->total_size += nb;
        if (i && !strcmp(nm[i].name, nm[i - 1].name))
            s = lr__fail(err, LR_EINVAL, "%s: tensor name %s appears twice", w->out, nm[i].name);
        else if (!(w->name[i] = strdup(nm[i].name))) s = lr__fail(err, LR_ENOMEM, "%s: out of memory", w->out);
        w->shard_of[i] = sh[nm[i].i];
        w->nt = i + 1;
    }
    free(nm);
    return s;
}

lr_status lr_model_writer_init(lr_model_writer *w, const char *out, const lr_model_entry *e, size_t n,
                               const lr_st_meta *meta, size_t nm, const char *index_meta,
                               const lr_model_write_opts *opts, lr_err *err)
{
    if (!w) return lr__fail(err, LR_EINVAL, "lr_model_writer_init: w is NULL");
    memset(w, 0, sizeof *w);
    lr_model_write_opts o = opts ? *opts : lr_model_write_opts_default();
    if (!o.prefix || !*o.prefix || strchr(o.prefix, '/'))
        return lr__fail(err, LR_EINVAL, "model writer: prefix '%s' is not a file name", o.prefix ? o.prefix : "");
    if (!out || !*out) return lr__fail(err, LR_EINVAL, "model writer: empty output path");
    if (n && !e) return lr__fail(err, LR_EINVAL, "%s: NULL entries", out);
    size_t *sh = calloc(n ? n : 1, sizeof *sh);
    lr_status s = LR_OK;
    if (!sh || !(w->out = strdup(out)) || (index_meta && !(w->index_meta = strdup(index_meta))))
        s = lr__fail(err, LR_ENOMEM, "%s: out of memory", out);
    if (!s && index_meta) {
        json_error_t je;
        json_t *j = json_loads(index_meta, 0, &je);
        if (!json_is_object(j))
            s = lr__fail(err, LR_EINVAL, "%s: the index metadata is not a JSON object: %.80s", out, index_meta);
        json_decref(j);
    }
    w->sharded = wants_shards(e, n, &o);
    if (!s && w->sharded) s = assign_shards(w, e, n, &o, sh, err);
    if (!s && !w->sharded && !(w->shard_name = calloc(1, sizeof *w->shard_name))) s = LR_ENOMEM;
    if (!s && !w->sharded) w->nshards = 1; /* sh[] stays 0 */
    if (!s && w->sharded) {
        char **sorted = malloc((w->nshards ? w->nshards : 1) * sizeof *sorted);
        if (!sorted) s = lr__fail(err, LR_ENOMEM, "out of memory");
        else {
            memcpy(sorted, w->shard_name, w->nshards * sizeof *sorted);
            if (w->nshards > 1) qsort(sorted, w->nshards, sizeof *sorted, cmp_str);
            char **keep = w->shard_name;
            w->shard_name = sorted; /* prepare_dir looks names up */
            s = prepare_dir(w, err);
            w->shard_name = keep;
            free(sorted);
        }
    }
    if (!s) s = open_writers(w, e, n, sh, meta, nm, err);
    if (!s) s = route(w, e, n, sh, err);
    free(sh);
    if (s) lr_model_writer_free(w);
    return s;
}

lr_status lr_model_writer_put(lr_model_writer *w, const char *name, const void *data, size_t n, lr_err *err)
{
    if (!w || !w->w || !name) return lr__fail(err, LR_EINVAL, "lr_model_writer_put: writer not open, or NULL name");
    const char *key = name;
    char **hit = bsearch(&key, w->name, w->nt, sizeof *w->name, cmp_str);
    if (!hit) return lr__fail(err, LR_EINVAL, "%s: tensor %s is not among the tensors being written", w->out, name);
    return lr_st_writer_put(&w->w[w->shard_of[hit - w->name]], name, data, n, err);
}

/* The index: {"metadata": {..., "total_size": N}, "weight_map": {name: shard}} (names sorted),
 * written to *af and synced, not yet renamed. */
static lr_status write_index(lr_model_writer *w, lr_atomic_file *af, lr_err *err)
{
    json_error_t je;
    json_t *root = json_object(), *wm = json_object();
    json_t *meta = w->index_meta ? json_loads(w->index_meta, 0, &je) : json_object();
    bool ok = root && wm && json_is_object(meta) &&
              !json_object_set_new(meta, "total_size", json_integer((json_int_t)w->total_size));
    for (size_t i = 0; ok && i < w->nt; i++)
        ok = !json_object_set_new(wm, w->name[i], json_string(w->shard_name[w->shard_of[i]]));
    ok = ok && !json_object_set(root, "metadata", meta) && !json_object_set(root, "weight_map", wm);
    char *text = ok ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root), json_decref(wm), json_decref(meta);
    char *path = join(w->out, LR_MODEL_INDEX);
    lr_status s = text && path ? LR_OK : lr__fail(err, LR_ENOMEM, "%s: out of memory writing the index", w->out);
    if (!s) s = lr_atomic_open(af, path, err);
    if (!s && (fputs(text, af->f) == EOF || fputc('\n', af->f) == EOF))
        s = lr__fail(err, LR_EIO, "cannot write %s: %s", path, strerror(errno));
    if (!s) s = lr_atomic_sync(af, err);
    if (s) lr_atomic_abort(af);
    free(text), free(path);
    return s;
}

lr_status lr_model_writer_commit(lr_model_writer *w, lr_err *err)
{
    if (!w || !w->w) return lr__fail(err, LR_EINVAL, "lr_model_writer_commit: writer not open");
    for (size_t k = 0; k < w->nshards; k++) /* all complete before anything is renamed */
        for (size_t i = 0; i < w->w[k].nt; i++)
            if (w->w[k].done[i] != w->w[k].nbytes[i])
                return lr__fail(err, LR_EINVAL, "%s: tensor %s has %zu of its %zu bytes (nothing written)",
                                w->out, w->w[k].name[i], w->w[k].done[i], w->w[k].nbytes[i]);
    for (size_t k = 0; k < w->nshards; k++) { /* every shard on disk before any is renamed */
        lr_status s = w->w[k].failed ? lr__fail(err, LR_EIO, "%s: an earlier write failed (old model left unchanged)",
                                                w->w[k].path)
                                     : lr_atomic_sync(&w->w[k].af, err);
        if (s) return s;
    }
    lr_atomic_file ix = { 0 }; /* and the index too */
    lr_status s = w->sharded && !w->single_in_dir ? write_index(w, &ix, err) : LR_OK;
    for (size_t k = 0; k < w->nshards && !s; k++) {
        s = lr_st_writer_commit(&w->w[k], err);
        w->made_dir = false; /* something is in it now */
    }
    if (!s && ix.f) s = lr_atomic_commit(&ix, err); /* the index renamed last */
    lr_atomic_abort(&ix);
    return s;
}
