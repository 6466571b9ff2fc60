/* plot.c — SVG charts for the MNIST demo (see plot.h). Plain SVG 1.1 text, no dependencies
 * beyond the library's atomic file; the layout is fixed-size and computed here. */
#include "plot.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lowrank/io/atomicfile.h"

#define W 900.0            /* picture width */
#define BAR_TOP 80.0       /* top of the bar panel's plot area */
#define BAR_H 300.0        /* height of the bar panel's plot area */
#define LOSS_TOP 490.0     /* top of the loss panel's plot area */
#define LOSS_H 220.0
#define LEFT 70.0          /* left margin (y tick labels) */
#define RIGHT 30.0

static const char *const colors[LR_PLOT_MAX_SERIES] = { "#4e79a7", "#f28e2b", "#59a14f" };

static void set_err(char *buf, size_t len, const char *fmt, ...)
{
    if (!buf || !len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* Writes s with the five XML special characters escaped. */
static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* A "nice" tick step (1, 2 or 5 times a power of ten) giving about 5 ticks up to max. */
static double nice_step(double max)
{
    if (!(max > 0)) return 1;
    double raw = max / 5, mag = pow(10, floor(log10(raw))), norm = raw / mag;
    double k = norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10;
    return k * mag;
}

static void y_axis(FILE *f, double top, double h, double ymax, double step, const char *label)
{
    for (double v = 0; v <= ymax * (1 + 1e-9); v += step) {
        double y = top + h - v / ymax * h;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n",
                LEFT, y, W - RIGHT, y);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"12\">%g</text>\n",
                LEFT - 6, y + 4, v);
    }
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", LEFT,
            top, LEFT, top + h);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", LEFT,
            top + h, W - RIGHT, top + h);
    fprintf(f, "<text transform=\"translate(%.1f %.1f) rotate(-90)\" text-anchor=\"middle\" "
            "font-size=\"13\">%s</text>\n", 18.0, top + h / 2, label);
}

static void bars(FILE *f, const int wrong[][10], const char *const *names, int ns)
{
    int max = 1;
    for (int s = 0; s < ns; s++)
        for (int d = 0; d < 10; d++)
            if (wrong[s][d] > max) max = wrong[s][d];
    double step = nice_step(max), ymax = ceil(max / step) * step;
    if (ymax < max) ymax += step;
    y_axis(f, BAR_TOP, BAR_H, ymax, step, "wrong predictions");

    double gw = (W - LEFT - RIGHT) / 10, bw = gw * 0.8 / ns;
    for (int d = 0; d < 10; d++) {
        double gx = LEFT + d * gw + gw * 0.1;
        for (int s = 0; s < ns; s++) {
            double h = wrong[s][d] / ymax * BAR_H, x = gx + s * bw, y = BAR_TOP + BAR_H - h;
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">"
                    "<title>digit %d, ", x, y, bw - 1, h, colors[s], d);
            xml_text(f, names[s]);
            fprintf(f, ": %d wrong</title></rect>\n", wrong[s][d]);
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"10\" "
                    "fill=\"#333\">%d</text>\n", x + (bw - 1) / 2, y - 3, wrong[s][d]);
        }
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\">%d</text>\n",
                LEFT + d * gw + gw / 2, BAR_TOP + BAR_H + 18, d);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\">digit</text>\n",
            LEFT + (W - LEFT - RIGHT) / 2, BAR_TOP + BAR_H + 38);
    /* legend: one row under the title, so it never covers a bar */
    double lw = (W - LEFT - RIGHT) / ns;
    for (int s = 0; s < ns; s++) {
        double lx = LEFT + s * lw + 10, ly = BAR_TOP - 34;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"14\" fill=\"%s\"/>\n", lx, ly,
                colors[s]);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\">", lx + 20, ly + 12);
        xml_text(f, names[s]);
        fputs("</text>\n", f);
    }
}

static void loss_curve(FILE *f, const float *loss, size_t n)
{
    double max = 0;
    size_t finite = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(loss[i])) {
            finite++;
            if (loss[i] > max) max = loss[i];
        }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"15\">training loss "
            "(%zu steps)</text>\n", W / 2, LOSS_TOP - 14, n);
    double step = nice_step(max), ymax = ceil(max / step) * step;
    if (!(ymax > 0)) ymax = 1;
    y_axis(f, LOSS_TOP, LOSS_H, ymax, step, "loss");
    double pw = W - LEFT - RIGHT;
    double xs = n > 1 ? pw / (double)(n - 1) : 0;
    if (finite == 0) return;
    /* each step, faint */
    fputs("<polyline fill=\"none\" stroke=\"#9bb5d6\" stroke-width=\"0.8\" points=\"", f);
    for (size_t i = 0; i < n; i++)
        if (isfinite(loss[i]))
            fprintf(f, "%.1f,%.1f ", LEFT + i * xs, LOSS_TOP + LOSS_H - loss[i] / ymax * LOSS_H);
    fputs("\"/>\n", f);
    /* a centred moving average over ~2% of the run (window win, cut at the ends), bold */
    size_t win = n / 50 ? n / 50 : 1;
    fputs("<polyline fill=\"none\" stroke=\"#1f4e79\" stroke-width=\"2\" points=\"", f);
    for (size_t i = 0; i < n; i++) {
        size_t lo = i >= win / 2 ? i - win / 2 : 0, hi = i + win / 2 + 1 < n ? i + win / 2 + 1 : n;
        double sum = 0;
        size_t cnt = 0;
        for (size_t k = lo; k < hi; k++)
            if (isfinite(loss[k])) { sum += loss[k]; cnt++; }
        if (cnt)
            fprintf(f, "%.1f,%.1f ", LEFT + i * xs, LOSS_TOP + LOSS_H - sum / cnt / ymax * LOSS_H);
    }
    fputs("\"/>\n", f);
    /* x ticks: first, middle, last step */
    size_t ticks[3] = { 1, (n + 1) / 2, n };
    for (int k = 0; k < 3; k++)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">%zu</text>\n",
                LEFT + (ticks[k] - 1) * xs, LOSS_TOP + LOSS_H + 16, ticks[k]);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\">step "
            "(faint: each step; bold: centred mean of %zu)</text>\n", LEFT + pw / 2,
            LOSS_TOP + LOSS_H + 34, win);
}

int lr_plot_svg(const char *path, const char *title, const int wrong[][10],
                const char *const *series_names, int nseries, const float *loss, size_t nloss,
                char *errbuf, size_t errlen)
{
    if (!path || !*path) {
        set_err(errbuf, errlen, "plot: empty output path");
        return -1;
    }
    if (!wrong || nseries < 1 || nseries > LR_PLOT_MAX_SERIES) {
        set_err(errbuf, errlen, "plot %s: %d series, expected 1 to %d", path, nseries,
                LR_PLOT_MAX_SERIES);
        return -1;
    }
    for (int s = 0; s < nseries; s++)
        for (int d = 0; d < 10; d++)
            if (wrong[s][d] < 0) {
                set_err(errbuf, errlen, "plot %s: series %d digit %d has %d wrong, expected >= 0",
                        path, s, d, wrong[s][d]);
                return -1;
            }
    const char *names[LR_PLOT_MAX_SERIES] = { "series 1", "series 2", "series 3" };
    for (int s = 0; s < nseries; s++)
        if (series_names && series_names[s]) names[s] = series_names[s];
    if (!loss) nloss = 0;

    lr_atomic_file af = { 0 };
    lr_err err;
    if (lr_atomic_open(&af, path, &err)) {
        set_err(errbuf, errlen, "%s", err.msg);
        return -1;
    }
    FILE *f = af.f;
    double height = nloss ? LOSS_TOP + LOSS_H + 50 : BAR_TOP + BAR_H + 50;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, height, W, height);
    fprintf(f, "<text x=\"%.1f\" y=\"30\" text-anchor=\"middle\" font-size=\"17\" "
            "font-weight=\"bold\">", W / 2);
    xml_text(f, title ? title : "MNIST test errors per digit");
    fputs("</text>\n", f);
    bars(f, wrong, names, nseries);
    if (nloss) loss_curve(f, loss, nloss);
    fputs("</svg>\n", f);
    if (lr_atomic_commit(&af, &err)) {
        set_err(errbuf, errlen, "%s", err.msg);
        return -1;
    }
    return 0;
}
