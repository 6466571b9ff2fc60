/* preserve_demo.c — lr-mnist --preserve (preserve_demo.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "lowrank/nn/eval.h"
#include "lowrank/io/atomicfile.h"
#include "preserve_demo.h"

static const char *const names[] = { "nullspace", "replay", "distill" };

bool preserve_parse(const char *s, preserve_cfg *c, char *msg, size_t cap)
{
    c->mask = 0, c->all = false;
    if (!strcmp(s, "all")) return c->all = true;
    if (!strcmp(s, "none")) return true;
    char buf[64];
    size_t len = strlen(s);
    bool bad = !len || len >= sizeof buf || s[0] == '+' || s[len - 1] == '+' || strstr(s, "++");
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, "+", &save); t; t = strtok_r(NULL, "+", &save)) {
        int k = 0;
        while (k < 3 && strcmp(t, names[k])) k++;
        if (bad || k == 3 || (c->mask & (1u << k))) {
            snprintf(msg, cap, "--preserve: expected none, nullspace, replay, distill, a '+' combination of "
                     "them, or all; got '%s'", s);
            return false;
        }
        c->mask |= 1u << k;
    }
    return true;
}

const char *preserve_name(unsigned mask, char *buf, size_t n)
{
    buf[0] = 0;
    for (int k = 0; k < 3; k++)
        if (mask & (1u << k)) snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", buf[0] ? "+" : "", names[k]);
    if (!buf[0]) snprintf(buf, n, "none");
    return buf;
}

/* the first `limit` training examples of the digits other than `digit` */
static int select_others(preserve_state *ps, const lr_dataset *train, int digit, size_t limit, lr_err *e)
{
    ps->rows = malloc((train->n ? train->n : 1) * sizeof *ps->rows);
    if (!ps->rows) return snprintf(e->msg, sizeof e->msg, "out of memory"), 1;
    size_t k = 0;
    for (size_t i = 0; i < train->n && k < limit; i++) {
        size_t row = train->rows ? train->rows[i] : i;
        if (train->labels[row] != digit) ps->rows[k++] = row;
    }
    ps->retained = *train;
    ps->retained.rows = ps->rows, ps->retained.n = k, ps->retained.stored = train->stored ? train->stored : train->n;
    ps->extra_bytes += train->n * sizeof *ps->rows;
    return 0;
}

/* the base's softmax on every retained example (adapters off), the distillation targets */
static int teacher(preserve_state *ps, lr_lora *lm, lr_err *e)
{
    lr_mlp *net = lr_lora_net(lm);
    size_t n = ps->retained.n, nout = net->sizes[net->n_layers], chunk = 1000;
    float *x = malloc(chunk * net->sizes[0] * sizeof *x);
    ps->soft = malloc(n * nout * sizeof *ps->soft);
    if (!x || !ps->soft) return free(x), snprintf(e->msg, sizeof e->msg, "out of memory"), 1;
    lr_lora_set_enabled(lm, false);
    lr_mlp_ws ws;
    lr_mlp_ws_init(&ws);
    int rc = 0;
    for (size_t i0 = 0; i0 < n && !rc; i0 += chunk) {
        size_t b = n - i0 < chunk ? n - i0 : chunk;
        lr_dataset_range(&ps->retained, x, NULL, i0, b);
        float *p = ps->soft + i0 * nout;
        rc = lr_mlp_forward(net, p, x, b, &ws, e) != LR_OK;
        for (size_t r = 0; r < b && !rc; r++, p += nout) {
            float mx = p[0], sum = 0;
            for (size_t c = 1; c < nout; c++) mx = p[c] > mx ? p[c] : mx;
            for (size_t c = 0; c < nout; c++) sum += (p[c] = expf(p[c] - mx));
            for (size_t c = 0; c < nout; c++) p[c] /= sum;
        }
    }
    lr_lora_set_enabled(lm, true);
    lr_mlp_ws_free(&ws);
    free(x);
    ps->extra_bytes += n * nout * sizeof *ps->soft;
    return rc;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int preserve_begin(preserve_state *ps, const preserve_cfg *c, unsigned mask, lr_lora *lm, const lr_dataset *train,
                   int digit, lr_train_opts *tp, lr_err *e)
{
    memset(ps, 0, sizeof *ps);
    ps->mask = mask;
    for (size_t l = 0; l < LR_MLP_MAX_LAYERS; l++) ps->leak_before[l] = ps->leak_after[l] = NAN;
    if (!mask) return 0;
    double t0 = now();
    lr_mlp *net = lr_lora_net(lm);
    if (select_others(ps, train, digit, c->samples, e)) return 1;
    if (mask & PRESERVE_NULLSPACE) {
        lr_preserve_opts po = lr_preserve_opts_default();
        po.energy = c->energy;
        po.max_samples = c->samples;
        if (lr_preserve_basis_init(&ps->basis, net, 0, &ps->retained, &po, e) ||
            lr_preserve_leakage(ps->leak_before, net, &ps->retained, 0, e) || lr_preserve_project(&ps->basis, net, e))
            return 1;
        for (size_t l = 0; l < net->n_layers; l++) ps->extra_bytes += ps->basis.k[l] * net->sizes[l] * sizeof(float);
        tp->after_step = lr_preserve_after_step, tp->after_step_ctx = &ps->basis;
    }
    if (mask & (PRESERVE_REPLAY | PRESERVE_DISTILL)) {
        size_t nr = (size_t)lround(c->replay_fraction * (double)tp->batch);
        tp->replay = &ps->retained;
        tp->replay_per_batch = nr ? nr : 1;
        if (tp->replay_per_batch >= tp->batch) tp->replay_per_batch = tp->batch - 1;
        tp->replay_label_weight = mask & PRESERVE_REPLAY ? 1.0f : 0.0f;
    }
    if ((mask & PRESERVE_DISTILL) && teacher(ps, lm, e)) return 1;
    if (mask & PRESERVE_DISTILL) tp->replay_soft = ps->soft, tp->replay_soft_weight = (float)c->distill_weight;
    ps->t_setup = now() - t0;
    return 0;
}

int preserve_end(preserve_state *ps, const lr_mlp *net, lr_err *e)
{
    if (!(ps->mask & PRESERVE_NULLSPACE)) return 0;
    return lr_preserve_leakage(ps->leak_after, net, &ps->retained, 0, e) != LR_OK;
}

void preserve_free(preserve_state *ps)
{
    free(ps->rows);
    free(ps->soft);
    lr_preserve_basis_free(&ps->basis);
    memset(ps, 0, sizeof *ps);
}

void preserve_print(const preserve_state *ps, const lr_mlp *net)
{
    char nm[64];
    if (!ps->mask) return;
    printf("preserving the other digits: %s (setup %.3f s, %.1f MB held)\n", preserve_name(ps->mask, nm, sizeof nm),
           ps->t_setup, (double)ps->extra_bytes / 1e6);
    if (ps->mask & PRESERVE_NULLSPACE)
        for (size_t l = 0; l < net->n_layers; l++)
            if (ps->basis.k[l])
                printf("  %s: k = %zu of %zu input directions (%.4f of the energy of %zu retained inputs); "
                       "leakage ||A X^T||/(||A|| ||X||) %.3g before, %.3g after\n", net->layer[l].name,
                       ps->basis.k[l], net->sizes[l], ps->basis.energy_kept[l], ps->basis.samples,
                       ps->leak_before[l], ps->leak_after[l]);
}

json_t *preserve_json(const preserve_state *ps, const lr_mlp *net)
{
    char nm[64];
    json_t *o = json_object(), *ls = json_array();
    json_object_set_new(o, "method", json_string(preserve_name(ps->mask, nm, sizeof nm)));
    json_object_set_new(o, "setup_seconds", json_real(ps->t_setup));
    json_object_set_new(o, "extra_bytes", json_integer((json_int_t)ps->extra_bytes));
    for (size_t l = 0; (ps->mask & PRESERVE_NULLSPACE) && l < net->n_layers; l++) {
        if (!ps->basis.k[l]) continue;
        json_t *x = json_pack("{s:s,s:I,s:I,s:f}", "layer", net->layer[l].name, "k", (json_int_t)ps->basis.k[l],
                              "inputs", (json_int_t)net->sizes[l], "energy_kept", ps->basis.energy_kept[l]);
        json_object_set_new(x, "leakage_before", isfinite(ps->leak_before[l]) ? json_real(ps->leak_before[l]) : json_null());
        json_object_set_new(x, "leakage_after", isfinite(ps->leak_after[l]) ? json_real(ps->leak_after[l]) : json_null());
        json_array_append_new(ls, x);
    }
    json_object_set_new(o, "nullspace", ls);
    return o;
}

/* --preserve all --plot: per method, the target digit's errors and the other digits' errors
 * after fine-tuning (two bar series, two scales), with the pretrained values as dashed lines. */
static void bars(FILE *f, const size_t *v, size_t n, size_t before, double x0, double w, const char *color,
                 const char *label, int panel)
{
    const double top = 60 + panel * 230, h = 170;
    size_t mx = before;
    for (size_t i = 0; i < n; i++) mx = v[i] > mx ? v[i] : mx;
    double scale = (h - 16) / (double)(mx ? mx : 1); /* headroom for the top label */
    fprintf(f, "<text x='%.0f' y='%.0f' font-size='13'>%s (pretrained %zu, dashed)</text>\n", x0, top - 8, label,
            before);
    for (size_t i = 0; i < n; i++) {
        double bh = (double)v[i] * scale, x = x0 + (double)i * w;
        fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%s'><title>%zu</title></rect>\n", x + 8,
                top + h - bh, w - 16, bh, color, v[i]);
        fprintf(f, "<text x='%.1f' y='%.1f' font-size='11' text-anchor='middle'>%zu</text>\n", x + w / 2,
                top + h - bh - 3, v[i]);
    }
    double yb = top + h - (double)before * scale;
    fprintf(f, "<line x1='%.0f' x2='%.0f' y1='%.1f' y2='%.1f' stroke='#333' stroke-dasharray='5,4'/>\n", x0,
            x0 + w * (double)n, yb, yb);
}

int preserve_plot(const char *path, int digit, const char *const *names, const size_t *target, const size_t *others,
                  size_t n, size_t target_before, size_t others_before, char *msg, size_t cap)
{
    lr_atomic_file af = { 0 };
    lr_err e = { { 0 } };
    if (lr_atomic_open(&af, path, &e)) return snprintf(msg, cap, "%s", e.msg), 1;
    const double w = 110, x0 = 40;
    FILE *f = af.f;
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='540' font-family='sans-serif'>\n"
            "<rect width='100%%' height='100%%' fill='white'/>\n"
            "<text x='%.0f' y='24' font-size='15'>Fine-tuning on digit %d: what each method teaches and what it "
            "costs</text>\n", x0 * 2 + w * (double)n, x0, digit);
    char label[64];
    snprintf(label, sizeof label, "errors on digit %d", digit);
    bars(f, target, n, target_before, x0, w, "#1f77b4", label, 0);
    bars(f, others, n, others_before, x0, w, "#d62728", "errors on the other digits", 1);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "<text x='%.1f' y='520' font-size='11' text-anchor='middle'>%s</text>\n",
                x0 + (double)i * w + w / 2, names[i]);
    fputs("</svg>\n", f);
    if (lr_atomic_commit(&af, &e)) return snprintf(msg, cap, "%s", e.msg), 1;
    return 0;
}
