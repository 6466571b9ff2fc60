/* svgplot.c — inspect's --spectrum chart: log10(s_i / s_1) against i / k for every tensor, so
 * tensors of different sizes share one axis. Plain SVG, written crash-safely. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "tool.h"

#define W 900
#define H 560
#define L 70   /* plot area: x from L to W - R, y from T to H - B */
#define R 260
#define T 40
#define B 60
static double YMIN = -8.0; /* log10 of the smallest ratio drawn: the data's lowest decade, >= -8 */

static const char *const colors[] = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                                      "#e377c2", "#7f7f7f", "#bcbd22", "#17becf" };

static double px(double f) { return L + f * (W - L - R); }
static double py(double lg) { return T + (0 - lg) / (0 - YMIN) * (H - T - B); }

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++)
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else fputc(*s, f);
}

static void axes(FILE *f)
{
    fprintf(f, "<rect x='%d' y='%d' width='%d' height='%d' fill='none' stroke='#333'/>\n", L, T, W - L - R,
            H - T - B);
    for (int e = 0; e >= (int)YMIN; e--) {
        fprintf(f, "<line x1='%d' x2='%d' y1='%.1f' y2='%.1f' stroke='#ddd'/>\n", L, W - R, py(e), py(e));
        fprintf(f, "<text x='%d' y='%.1f' font-size='11' text-anchor='end'>1e%d</text>\n", L - 6, py(e) + 4, e);
    }
    for (int q = 0; q <= 4; q++)
        fprintf(f, "<text x='%.1f' y='%d' font-size='11' text-anchor='middle'>%.2g</text>\n", px(q / 4.0),
                H - B + 16, q / 4.0);
    fprintf(f, "<text x='%.1f' y='%d' font-size='12' text-anchor='middle'>i / values computed</text>\n",
            px(0.5), H - B + 36);
    fprintf(f, "<text x='16' y='%.1f' font-size='12' transform='rotate(-90 16 %.1f)' text-anchor='middle'>"
            "s_i / s_1 (log scale)</text>\n", py(YMIN / 2), py(YMIN / 2));
    fprintf(f, "<text x='%d' y='24' font-size='14'>Normalised singular values</text>\n", L);
}

static void series(FILE *f, const char *name, const float *s, size_t k, size_t idx, size_t count)
{
    const char *c = colors[idx % 10];
    const size_t kmax = k < 4000 ? k : 4000; /* at most 4000 points a line */
    fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='1.5' points='", c);
    for (size_t q = 0; q < kmax && s[0] > 0; q++) {
        size_t i = kmax == k ? q : q * k / kmax;
        double lg = s[i] > 0 ? log10((double)s[i] / s[0]) : YMIN;
        fprintf(f, "%.1f,%.1f ", px(k > 1 ? (double)i / (double)(k - 1) : 0), py(lg < YMIN ? YMIN : lg));
    }
    fputs("'/>\n", f);
    if (idx < 24) {
        double y = T + 10 + 16.0 * (double)idx;
        fprintf(f, "<line x1='%d' x2='%d' y1='%.1f' y2='%.1f' stroke='%s' stroke-width='3'/>\n", W - R + 12,
                W - R + 30, y, y, c);
        fprintf(f, "<text x='%d' y='%.1f' font-size='11'>", W - R + 36, y + 4);
        xml_text(f, name);
        fputs("</text>\n", f);
    } else if (idx == 24) {
        fprintf(f, "<text x='%d' y='%.1f' font-size='11'>… and %zu more</text>\n", W - R + 12,
                T + 14 + 16.0 * 24, count - 24);
    }
}

int tool_spectrum_svg(const char *path, const char *const *names, const float *const *s, const size_t *k,
                      size_t count, char *msg, size_t cap)
{
    lr_atomic_file af = { 0 };
    lr_err e = { 0 };
    if (lr_atomic_open(&af, path, &e)) {
        snprintf(msg, cap, "%s", e.msg);
        return 1;
    }
    FILE *f = af.f;
    double lo = 0;
    for (size_t i = 0; i < count; i++)
        for (size_t j = 0; j < k[i] && s[i][0] > 0; j++)
            if (s[i][j] > 0) lo = fmin(lo, log10((double)s[i][j] / s[i][0]));
    YMIN = fmax(-8.0, fmin(-1.0, floor(lo)));
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' font-family='sans-serif'>\n"
            "<rect width='100%%' height='100%%' fill='white'/>\n", W, H);
    axes(f);
    for (size_t i = 0; i < count; i++) series(f, names[i], s[i], k[i], i, count);
    fputs("</svg>\n", f);
    if (ferror(f)) {
        snprintf(msg, cap, "%s: cannot write: %s", path, strerror(errno));
        lr_atomic_abort(&af);
        return 1;
    }
    if (lr_atomic_commit(&af, &e)) {
        snprintf(msg, cap, "%s", e.msg);
        return 1;
    }
    return 0;
}
