/* plot.h — a tiny dependency-free SVG writer for the MNIST demo's --plot FILE.svg.
 *
 * One file with up to two panels: a grouped bar chart of per-digit wrong counts for up to
 * three series (e.g. "pretrained", "LoRA", "LoRA disabled"), with value labels and a legend,
 * and, when a loss curve is given, a line chart of it (each step faint, a moving average
 * bold). Written crash-safely through lr_atomic_file. Not part of the library: a demo helper.
 */
#ifndef LOWRANK_DEMO_PLOT_H
#define LOWRANK_DEMO_PLOT_H

#include <stddef.h>

#define LR_PLOT_MAX_SERIES 3

/* wrong[s][d]: wrong predictions of digit d in series s, s < nseries (1..3), all >= 0.
 * series_names may be NULL (then "series 1", ...). loss: (nloss) per-step losses, may be
 * NULL / 0 to leave the loss panel out; non-finite values are skipped. title may be NULL.
 * Returns 0, or -1 with a message in errbuf (if non-NULL). */
int lr_plot_svg(const char *path, const char *title, const int wrong[][10],
                const char *const *series_names, int nseries, const float *loss, size_t nloss,
                char *errbuf, size_t errlen);

#endif
