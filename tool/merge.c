/* merge.c — `lowrank merge BASE ADAPTER --out MERGED`: W ± s·B·A written into the weights
 * of a checkpoint, with what the merge changed and what rounding to the file's dtype cost. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tool.h"

#define SUB "merge"

static const char help[] =
"usage: " PROG " merge BASE ADAPTER_DIR --out MERGED [--unmerge] [--reference REF] [--json]\n"
"                      [--threads N] [--progress] [--max-shard-size SIZE]\n"
"\n"
"BASE (and REF) are a .safetensors file, a directory holding model.safetensors or a sharded\n"
"model.safetensors.index.json, or that index file; tensors are read and written one at a time.\n"
"Adds each layer of a PEFT LoRA adapter into its base weight, W' = W + s.B.A (s = lora_alpha\n"
"/ r, or / sqrt(r) with use_rslora; rank_pattern and alpha_pattern honoured), in float32,\n"
"stored in the weight's own dtype; every other tensor is copied unchanged. The adapter's\n"
"module M must be the base tensor M.weight with the adapter's shape.\n"
"\n"
"  --unmerge          subtract instead: W' = W - s.B.A (undo a merge)\n"
"  --reference FILE   compare the result with FILE's tensors (e.g. the original base after\n"
"                     --unmerge) and report the drift: max |W' - R| and ||W' - R||_F / ||R||_F\n"
"  --out OUT          the merged checkpoint (written crash-safely; never one of the inputs):\n"
"                     a file when BASE is one file, else a directory with BASE's shard\n"
"                     names and an index (written last)\n"
"  --max-shard-size SIZE  write shards of at most SIZE (5GB, 500MB, ...) instead\n"
"  --threads N        threads for the products (OpenBLAS)\n"
"  --progress         a line per tensor on stderr (also shown when stderr is a terminal)\n"
"  --json             one JSON object on stdout instead of the table\n"
"\n"
"Reported per layer: ||s.B.A||_F / ||W||_F (how much the merge moves the weight) and the\n"
"rounding drift of the stored result against W +- s.B.A computed in double precision.\n";

typedef struct {
    const lr_st_tensor *t;
    const lr_peft_layer *l;  /* an embedding's as the linear layer of ΔW = s·Aᵀ·Bᵀ (as_linear) */
    double scale, delta, w_fro, drift_fro, drift_max, ref_fro, ref_max; /* ref_*: NAN without --reference */
} layer;

/* An embedding's adapter (ΔW = s·(B·A)ᵀ: (vocab, dim)) as the linear layer with the same ΔW:
 * B' = Aᵀ: (vocab, r), A' = Bᵀ: (r, dim). Other layers are copied as they are. */
static lr_status as_linear(lr_peft_layer *out, const lr_peft_layer *l)
{
    *out = *l;
    out->a = out->b = NULL;
    if (!l->embedding) return LR_OK;
    out->out = l->in, out->in = l->out, out->embedding = false;
    out->b = malloc(l->in * l->r * sizeof *out->b), out->a = malloc(l->r * l->out * sizeof *out->a);
    if (!out->a || !out->b) return LR_ENOMEM;
    for (size_t i = 0; i < l->in; i++)
        for (size_t k = 0; k < l->r; k++) out->b[i * l->r + k] = l->a[k * l->in + i];
    for (size_t k = 0; k < l->r; k++)
        for (size_t j = 0; j < l->out; j++) out->a[k * l->out + j] = l->b[j * l->r + k];
    return LR_OK;
}

static int find_target(const tool_merge_args *a, lr_model *st, const lr_peft_layer *l, const lr_st_tensor **t)
{
    char name[1100];
    snprintf(name, sizeof name, "%s.weight", l->module);
    *t = lr_model_find(st, name);
    const char *why;
    if (!*t) return tool_failf(SUB, "%s: no tensor %s for the adapter's layer %s (%s)", a->base, name, l->module, a->adapter);
    if (!tool_is_matrix(*t, &why)) return tool_failf(SUB, "%s: %s: %s", a->base, name, why);
    if ((*t)->shape[0] != l->out || (*t)->shape[1] != l->in)
        return tool_failf(SUB, "%s: %s is %zux%zu, but the adapter %s has B: (%zu, r) and A: (r, %zu)", a->base, name,
                          (*t)->shape[0], (*t)->shape[1], a->adapter, l->out, l->in);
    return 0;
}

/* the exact W ± s·B·A of row i, in double */
static void exact_row(double *out, const float *w, const lr_peft_layer *l, double s, size_t i)
{
    for (size_t j = 0; j < l->in; j++) out[j] = w[i * l->in + j];
    for (size_t k = 0; k < l->r; k++) {
        double bik = s * (double)l->b[i * l->r + k];
        for (size_t j = 0; j < l->in; j++) out[j] += bik * (double)l->a[k * l->in + j];
    }
}

/* sums over the rows: the merge's change, the rounding drift, the difference to the reference */
typedef struct { double delta2, d2, dmax, r2, rmax, rn2; } sums;

static void compare(sums *q, const float *w0, const float *w1, const float *ref, const lr_peft_layer *l, double s,
                    double *ex)
{
    for (size_t i = 0; i < l->out; i++) {
        exact_row(ex, w0, l, s, i);
        for (size_t j = 0; j < l->in; j++) {
            size_t p = i * l->in + j;
            double d = (double)w1[p] - ex[j], c = ex[j] - (double)w0[p];
            q->delta2 += c * c, q->d2 += d * d, q->dmax = fmax(q->dmax, fabs(d));
            if (!ref) continue;
            double rd = (double)w1[p] - (double)ref[p];
            q->r2 += rd * rd, q->rn2 += (double)ref[p] * ref[p], q->rmax = fmax(q->rmax, fabs(rd));
        }
    }
}

static int load_ref(lr_model *ref, const layer *ly, lr_mat *r, lr_err *e)
{
    const lr_st_tensor *rt = lr_model_find(ref, ly->t->name);
    if (!rt || rt->ndim != 2 || rt->shape[0] != ly->l->out || rt->shape[1] != ly->l->in)
        return tool_failf(SUB, "%s: %s: missing, or not %zux%zu", lr_model_file_of(ref, ly->t->name), ly->t->name,
                          ly->l->out, ly->l->in);
    return tool_load(r, ref, rt, e) ? tool_failf(SUB, "%s", e->msg) : 0;
}

/* W' = W ± s·B·A for one layer, measured, encoded in W's dtype and put into the writer. */
static int merge_one(lr_model *st, lr_model *ref, layer *ly, double sign, const lr_peft *ad, lr_model_writer *w)
{
    lr_err e = { 0 };
    lr_mat w0 = { 0 }, w1 = { 0 }, r = { 0 };
    const lr_peft_layer *l = ly->l;
    size_t m = l->out, n = l->in;
    ly->scale = sign * lr_peft_scale(ad, l);
    sums q = { 0 };
    double *ex = malloc(n * sizeof *ex);
    void *buf = NULL;
    int rc = ref ? load_ref(ref, ly, &r, &e) : 0;
    lr_status s = rc ? LR_EINVAL : ex ? tool_load(&w0, st, ly->t, &e) : LR_ENOMEM;
    if (!s) s = lr_mat_init(&w1, m, n, &e);
    if (!s) s = lr_mat_copy(w1, lr_cm(w0), &e);
    if (!s) s = lr_gemm(w1, (float)ly->scale, lr_cmat_view(l->b, m, l->r, l->r), false,
                        lr_cmat_view(l->a, l->r, n, n), false, 1.0f, &e);
    if (!s) {
        tool_round(w1.data, m * n, ly->t->dtype);
        compare(&q, w0.data, w1.data, ref ? r.data : NULL, l, ly->scale, ex);
        ly->w_fro = lr_mat_norm_fro(lr_cm(w0));
        double wf = ly->w_fro > 0 ? ly->w_fro : 1;
        ly->delta = sqrt(q.delta2) / wf, ly->drift_fro = sqrt(q.d2) / wf, ly->drift_max = q.dmax;
        ly->ref_fro = ref ? sqrt(q.r2) / (q.rn2 > 0 ? sqrt(q.rn2) : 1) : NAN, ly->ref_max = ref ? q.rmax : NAN;
        size_t nb = m * n * (lr_st_dtype_bits(ly->t->dtype) / 8);
        buf = malloc(nb ? nb : 1);
        s = buf ? lr_st_encode_f32(buf, ly->t->dtype, w1.data, m * n, &e) : LR_ENOMEM;
        if (!s) s = lr_model_writer_put(w, ly->t->name, buf, nb, &e);
    }
    if (s == LR_ENOMEM && !e.msg[0]) snprintf(e.msg, sizeof e.msg, "out of memory");
    free(ex), free(buf);
    lr_mat_free(&w0), lr_mat_free(&w1), lr_mat_free(&r);
    return rc ? rc : s ? tool_failf(SUB, "%s: %s", ly->t->name, e.msg) : 0;
}

/* The merged model, tensor by tensor in the base's order, in the base's layout. */
static int write_out(const tool_merge_args *a, lr_model *st, lr_model *ref, layer *ly, size_t n, const lr_peft *ad)
{
    size_t nt = lr_model_count(st);
    lr_model_entry *e = calloc(nt ? nt : 1, sizeof *e);
    json_t *o = json_pack("{s:s,s:s,s:s,s:b}", "command", SUB, "version", LOWRANK_VERSION, "adapter", a->adapter,
                          "unmerge", a->unmerge);
    char *rec = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    lr_model_writer w = { 0 };
    tool_progress pg = { 0 };
    int rc = e ? 0 : tool_failf(SUB, "out of memory");
    for (size_t i = 0; i < nt && !rc; i++) {
        e[i] = tool_entry(st, lr_model_at(st, i), *lr_model_at(st, i), a->max_shard);
        e[i].t.data = NULL;
    }
    if (!rc) rc = tool_writer_init(SUB, &w, a->out, st, e, nt, rec, a->max_shard);
    size_t *all = malloc((nt + 1) * sizeof *all);
    for (size_t i = 0; all && i < nt; i++) all[i] = i;
    if (!rc) tool_progress_init(&pg, a->progress, nt, all ? tool_bytes_of(st, all, nt) : 0);
    free(all);
    for (size_t i = 0; i < nt && !rc; i++) {
        const lr_st_tensor *t = lr_model_at(st, i);
        layer *l = NULL;
        for (size_t j = 0; j < n && !l; j++)
            if (ly[j].t == t) l = &ly[j];
        lr_err err = { 0 };
        if (l) rc = merge_one(st, ref, l, a->unmerge ? -1.0 : 1.0, ad, &w);
        else if (tool_copy_tensor(&w, st, t, &err)) rc = tool_fail(SUB, &err);
        tool_progress_step(&pg, i + 1, t->name, tool_bytes_of(st, &i, 1));
    }
    if (nt && !rc) tool_progress_end(&pg);
    lr_err err = { 0 };
    if (!rc && lr_model_writer_commit(&w, &err)) rc = tool_fail(SUB, &err);
    lr_model_writer_free(&w);
    free(e), free(rec);
    return rc;
}

static int report(const tool_merge_args *a, const layer *ly, size_t n)
{
    if (!a->json) {
        printf("%-32s %-13s %5s %10s %12s %12s %12s", "tensor", "shape", "rank", "scale", "|sBA|/|W|", "round.rel",
               "round.max");
        printf(a->ref ? " %12s %12s\n" : "\n", "ref.rel", "ref.max");
        for (size_t i = 0; i < n; i++) {
            char shape[32];
            snprintf(shape, sizeof shape, "%zux%zu", ly[i].l->out, ly[i].l->in);
            printf("%-32s %-13s %5zu %10.4g %12.4g %12.3g %12.3g", ly[i].t->name, shape, ly[i].l->r, ly[i].scale,
                   ly[i].delta, ly[i].drift_fro, ly[i].drift_max);
            if (a->ref) printf(" %12.3g %12.3g", ly[i].ref_fro, ly[i].ref_max);
            printf("\n");
        }
        printf("\n%s %zu layer%s; round.*: the stored weights against W %s s.B.A in double precision%s\nwrote %s\n",
               a->unmerge ? "unmerged" : "merged", n, n == 1 ? "" : "s", a->unmerge ? "-" : "+",
               a->ref ? "; ref.*: against the reference file" : "", a->out);
        return 0;
    }
    bool ok = true;
    json_t *js = json_object(), *ls = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_object();
        lr_cli_json_set(r, "name", json_string(ly[i].t->name), &ok);
        lr_cli_json_set(r, "shape", tool_json_shape(ly[i].l->out, ly[i].l->in), &ok);
        lr_cli_json_set(r, "rank", tool_json_size(ly[i].l->r), &ok);
        lr_cli_json_set(r, "scale", lr_cli_json_real(ly[i].scale), &ok);
        lr_cli_json_set(r, "delta_rel", lr_cli_json_real(ly[i].delta), &ok);
        lr_cli_json_set(r, "rounding_rel", lr_cli_json_real(ly[i].drift_fro), &ok);
        lr_cli_json_set(r, "rounding_max", lr_cli_json_real(ly[i].drift_max), &ok);
        if (a->ref) {
            lr_cli_json_set(r, "reference_rel", lr_cli_json_real(ly[i].ref_fro), &ok);
            lr_cli_json_set(r, "reference_max", lr_cli_json_real(ly[i].ref_max), &ok);
        }
        ok = ok && !json_array_append_new(ls, r);
    }
    lr_cli_json_set(js, "command", json_string(SUB), &ok);
    lr_cli_json_set(js, "base", json_string(a->base), &ok);
    lr_cli_json_set(js, "adapter", json_string(a->adapter), &ok);
    lr_cli_json_set(js, "unmerge", json_boolean(a->unmerge), &ok);
    lr_cli_json_set(js, "out", json_string(a->out), &ok);
    lr_cli_json_set(js, "layers", ls, &ok);
    int rc = ok ? tool_json_print(js) : tool_failf(SUB, "out of memory building the JSON report");
    json_decref(js);
    return rc;
}

int tool_merge(int argc, char **argv)
{
    tool_merge_args a = { 0 };
    lr_model st = { 0 }, ref = { 0 };
    lr_peft ad = { 0 };
    lr_err e = { 0 };
    layer *ly = NULL;
    size_t cap = tool_msg_cap(argc, argv);
    char *msg = malloc(cap);
    int rc = msg ? tool_parsed(SUB, tool_merge_parse(argc, argv, &a, msg, cap), msg, help, false)
                 : tool_failf(SUB, "out of memory");
    free(msg);
    const char *in[3] = { a.base, a.adapter, a.ref };
    if (!rc) rc = tool_check_out(SUB, a.out, in, a.ref ? 3 : 2);
    if (!rc) tool_threads(a.threads);
    if (!rc) rc = tool_open(SUB, &st, a.base);
    if (!rc && a.ref) rc = tool_open(SUB, &ref, a.ref);
    if (!rc) rc = tool_check_out_model(SUB, a.out, &st);
    if (!rc && a.ref) rc = tool_check_out_model(SUB, a.out, &ref);
    if (!rc && lr_peft_read(&ad, a.adapter, NULL, &e)) rc = tool_fail(SUB, &e);
    if (!rc && !(ly = calloc(ad.n, sizeof *ly))) rc = tool_failf(SUB, "out of memory");
    lr_peft_layer *lin = rc ? NULL : calloc(ad.n ? ad.n : 1, sizeof *lin);
    if (!rc && !lin) rc = tool_failf(SUB, "out of memory");
    for (size_t i = 0; i < ad.n && !rc; i++) {
        if (as_linear(&lin[i], &ad.layer[i])) rc = tool_failf(SUB, "out of memory");
        ly[i].l = lin[i].a ? &lin[i] : &ad.layer[i];
        rc = find_target(&a, &st, ly[i].l, &ly[i].t);
    }
    if (!rc) rc = write_out(&a, &st, a.ref ? &ref : NULL, ly, ad.n, &ad);
    if (!rc) rc = report(&a, ly, ad.n);
    for (size_t i = 0; lin && i < ad.n; i++) free(lin[i].a), free(lin[i].b);
    free(ly), free(lin);
    lr_peft_free(&ad);
    lr_model_free(&st), lr_model_free(&ref);
    return rc < 0 ? 0 : rc; /* after --help */
}
