/* mnist_opts.c — lr-mnist's options: the table, the value parsers, the checks across options
 * (mnist_opts.h). Moved here from mnist_lora.c unchanged in what they accept and say, so the
 * demo and the fuzz target tests/fuzz/fuzz_cmdline.c share them.
 */
#include "mnist_opts.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lowrank/base/pool.h"
#include "lowrank/lora/lora.h"
#include "cli.h"

#define PROG MNIST_PROG

void mnist_opts_usage(FILE *f)
{
    fprintf(f,
"usage: " PROG " [options]\n"
"\n"
"Pretrains an MLP on MNIST, then fine-tunes a low-rank adapter (LoRA) on one digit with\n"
"the base frozen, and reports what it gained and what it cost. With no options it runs\n"
"the seed's pipeline: RichBoyNet 784-1000-2000-10, one epoch of batches of 10 with Adam\n"
"(lr 1e-3), rank-1 LoRA on all three layers, 100 fine-tuning batches on digit 9.\n"
"\n"
"Data and files:\n"
"  --data DIR         MNIST directory: train-/t10k-{images-idx3,labels-idx1}-ubyte, raw\n"
"                     or .gz (default: data/mnist, filled by scripts/setup.sh)\n"
"  --load CKPT        skip pretraining: load the model from a .safetensors checkpoint\n"
"                     (layer sizes come from the file)\n"
"  --save CKPT        save the pretrained model as .safetensors (PyTorch state-dict names)\n"
"  --adapter-out DIR  save the trained adapter in PEFT's layout (adapter_model.safetensors\n"
"                     + adapter_config.json); DIR is created if missing\n"
"  --adapter DIR      no training: load the PEFT adapter in DIR (as --adapter-out writes\n"
"                     it) onto the --load checkpoint, which it needs, and print the\n"
"                     per-digit errors with the adapter off and on. The fine-tuning\n"
"                     options below conflict with it. A checkpoint's layers may be\n"
"                     factored (linearK.B.weight, linearK.A.weight, as `lowrank compress`\n"
"                     writes them): --load multiplies them out.\n"
"  --plot FILE.svg    write a chart: per-digit errors before/after and the loss curves\n"
"\n"
"Pretraining:\n"
"  --seed N           seed for initialisation, shuffling and LoRA init (default 0)\n"
"  --epochs N         pretraining epochs (default 1)\n"
"  --batch N          batch size for pretraining and fine-tuning (default 10)\n"
"  --lr X             Adam learning rate for pretraining (default 0.001)\n"
"  --layers A,B,...   layer sizes, first 784 and last 10 (default 784,1000,2000,10)\n"
"  --threads N        worker threads (default: the number of CPUs)\n"
"  --keep-subnormals  strict IEEE arithmetic: do not flush subnormal floats to zero\n"
"                     (slow on many x86 CPUs; the default flushes them, see docs/training.md)\n"
"  --limit-train N    use only the first N training images (quick runs and tests)\n"
"  --limit-test N     evaluate on the first N test images only (quick runs, valgrind)\n"
"\n"
"LoRA fine-tuning:\n"
"  --rank R           adapter rank r >= 1 (default 1)\n"
"  --alpha A          scale numerator alpha > 0; scale = alpha/r (default 1)\n"
"  --rslora           scale = alpha/sqrt(r) (rank-stabilised LoRA)\n"
"  --init KIND        gaussian: A ~ N(0,1), B = 0, as the seed and the LoRA paper (default);\n"
"                     pissa: A, B from W's top-r singular triplets, residual frozen\n"
"  --lora-layers L    which layers get an adapter: 1-based numbers or names, comma-\n"
"                     separated, e.g. 1,2,3 or linear1,linear3, or all (default all)\n"
"  --steps N          fine-tuning batches (default 100)\n"
"  --ft-lr X          Adam learning rate for fine-tuning (default 0.001)\n"
"  --digit D          digit to fine-tune on: 0-9, or worst (the most errors after\n"
"                     pretraining; default 9)\n");
    fputs("\n"
"Forgetting-aware fine-tuning (docs/training.md; the other digits are the retained set):\n"
"  --preserve M       none (default), nullspace, replay, distill, a '+' combination such as\n"
"                     nullspace+replay, or all: every method from the same pretrained model\n"
"                     and one comparison table\n"
"  --preserve-energy E  nullspace: the share of the retained inputs' energy each adapter's A\n"
"                     is kept orthogonal to, (0, 1] (default 0.9)\n"
"  --replay-fraction F  replay, distill: the share of each batch drawn from the retained set,\n"
"                     (0, 0.9] (default 0.5)\n"
"  --distill-weight W   distill: weight of KL(base || adapted) on those examples (default 1)\n"
"  --retained-samples N the retained set: the first N training images of the other digits\n"
"                     (default 2000)\n"
"\n"
"Several processes (built with -Dmpi, started by `mpirun -np N " PROG " ...`; docs/dist.md):\n"
"  every process holds the whole model and takes its share of each batch; the gradients\n"
"  are summed before each step, so the replicas stay identical; rank 0 prints and writes.\n"
"  --dist-sum S       ordered: a rank-ordered sum, the same bits as one process taking the\n"
"                     batch in N slices (default); mpi: MPI_Allreduce, its order MPI's\n"
"  --shards N         in one process: take each batch's gradient in N slices and add them\n"
"                     in order, as N processes do: reproduces their run bit for bit\n"
"\n"
"Output:\n"
"  --json             print one JSON object with all results on stdout (progress on stderr)\n"
"  --quiet            no progress display\n"
"  --help             this text\n"
"\n"
"Environment: LR_ISA=generic|avx2|avx512 caps the kernels' instruction set.\n"
"\n"
"Exit status: 0 ok; 1 a failure or a failed check (LoRA-disabled results differ from the\n"
"pretrained ones, or the frozen weights changed); 2 a bad option.\n", f);
}

/* Writes a printf-style usage error into msg and returns 2 (the exit status of one). */
__attribute__((format(printf, 3, 4))) static int usage_fail(char *msg, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return 2;
}

/* Writes a printf-style reason into msg and returns false (the option setters' failure). */
__attribute__((format(printf, 3, 4))) static bool opt_fail(char *msg, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return false;
}

/* --layers A,B,...: 2..LR_MLP_MAX_LAYERS+1 sizes, the first 784, the last 10. */
static bool parse_layers(const char *s, mnist_opts *o, char *msg, size_t cap)
{
    size_t n = 0;
    if (!lr_cli_parse_size_list("--layers", s, 1, 100000, o->sizes, LR_MLP_MAX_LAYERS + 1, &n, msg, cap))
        return false;
    if (n < 2) return opt_fail(msg, cap, "--layers: need at least an input and an output size, got '%s'", s);
    if (o->sizes[0] != 784)
        return opt_fail(msg, cap, "--layers: the first size must be 784 (28x28 MNIST pixels), got %zu", o->sizes[0]);
    if (o->sizes[n - 1] != 10)
        return opt_fail(msg, cap, "--layers: the last size must be 10 (the digits), got %zu", o->sizes[n - 1]);
    o->n_sizes = n;
    o->sizes_given = true;
    return true;
}

/* An output path: not empty; with check_files also its parent directory exists (so it can be
 * written) and it is (want_dir) or is not a directory. 0, or 2 with msg. */
static int check_output_path(const char *opt, const char *path, bool want_dir, bool check_files, char *msg,
                             size_t cap)
{
    struct stat st;
    if (!*path) return usage_fail(msg, cap, "%s: empty path", opt);
    if (!check_files) return 0;
    if (stat(path, &st) == 0) {
        if (want_dir && !S_ISDIR(st.st_mode))
            return usage_fail(msg, cap, "%s: '%s' exists and is not a directory", opt, path);
        if (!want_dir && S_ISDIR(st.st_mode))
            return usage_fail(msg, cap, "%s: '%s' is a directory; give a file name", opt, path);
        return 0;
    }
    char *dup = strdup(path);
    if (!dup) return usage_fail(msg, cap, "out of memory");
    size_t len = strlen(dup);
    while (len > 1 && dup[len - 1] == '/') dup[--len] = '\0';
    char *slash = strrchr(dup, '/');
    const char *parent = ".";
    if (slash == dup) parent = "/";
    else if (slash) { *slash = '\0'; parent = dup; }
    int rc = 0;
    if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode))
        rc = usage_fail(msg, cap, "%s: cannot write '%s': directory '%s' does not exist", opt, path,
                        parent);
    free(dup);
    return rc;
}

bool mnist_opts_select_layers(const char *spec, size_t n, bool *sel, char *msg, size_t cap)
{
    uint32_t mask;
    lr_err e = { { 0 } };
    if (lr_lora_parse_targets(&mask, spec ? spec : "all", n, &e))
        return opt_fail(msg, cap, "--lora-layers: %s", e.msg);
    for (size_t i = 0; i < n; i++) sel[i] = mask == 0 || (mask >> i & 1u);
    return true;
}

/* A larger r adds parameters but no expressiveness, and PiSSA's truncated SVD has only
 * min(in, out) triplets. */
bool mnist_opts_check_rank(const size_t *sizes, size_t n_layers, const bool *sel, size_t rank, char *msg,
                           size_t cap)
{
    for (size_t i = 0; i < n_layers; i++) {
        size_t m = sizes[i] < sizes[i + 1] ? sizes[i] : sizes[i + 1];
        if (sel[i] && rank > m)
            return opt_fail(msg, cap, "--rank %zu: layer linear%zu is %zu x %zu, so its rank is at most "
                            "%zu", rank, i + 1, sizes[i + 1], sizes[i], m);
    }
    return true;
}

/* The options lr-mnist takes; a flag takes no value. */
static const struct { const char *name; bool flag; } known_opts[] = {
    { "--data", false }, { "--load", false }, { "--save", false }, { "--adapter-out", false },
    { "--plot", false }, { "--adapter", false }, { "--seed", false }, { "--epochs", false }, { "--batch", false },
    { "--lr", false }, { "--layers", false }, { "--threads", false }, { "--rank", false },
    { "--alpha", false }, { "--init", false }, { "--lora-layers", false }, { "--steps", false },
    { "--ft-lr", false }, { "--digit", false }, { "--limit-train", false }, { "--limit-test", false },
    { "--preserve", false }, { "--preserve-energy", false }, { "--replay-fraction", false },
    { "--distill-weight", false }, { "--retained-samples", false }, { "--dist-sum", false },
    { "--shards", false },
    { "--rslora", true },
    { "--json", true }, { "--quiet", true }, { "--keep-subnormals", true },
};

/* A learning rate or alpha: a number in (0, 1e6] that stays positive in float32. */
static bool parse_pos_float(const char *opt, const char *s, double *out, char *msg, size_t cap)
{
    if (!lr_cli_parse_double(opt, s, 0.0, true, 1e6, false, out, msg, cap)) return false;
    if ((float)*out > 0.0f) return true;
    snprintf(msg, cap, "%s: %s is 0 in float32", opt, s);
    return false;
}

/* Sets one valued option; false with the reason in msg. */
static bool set_option(mnist_opts *o, const char *name, const char *val, char *msg, size_t cap)
{
    size_t z = 0;
    lr_err e = { { 0 } };
    lr_lora_initializer kind;
    if (!strcmp(name, "--data") || !strcmp(name, "--load")) {
        if (!*val) return opt_fail(msg, cap, "%s: empty %s name", name, name[2] == 'd' ? "directory" : "file");
        *(name[2] == 'd' ? &o->data_dir : &o->load) = val;
        return true;
    }
    if (!strcmp(name, "--adapter")) {
        if (!*val) return opt_fail(msg, cap, "--adapter: empty directory name");
        o->adapter = val;
        return true;
    }
    const char **path = !strcmp(name, "--save") ? &o->save : !strcmp(name, "--adapter-out") ? &o->adapter_out
                      : !strcmp(name, "--plot")  ? &o->plot : NULL;
    if (path) {
        *path = val;
        return true;
    }
    if (!strcmp(name, "--seed")) return lr_cli_parse_seed(name, val, &o->seed, msg, cap);
    if (!strcmp(name, "--epochs")) return lr_cli_parse_size(name, val, 1, 1000, &o->epochs, msg, cap);
    if (!strcmp(name, "--batch")) return lr_cli_parse_size(name, val, 1, 60000, &o->batch, msg, cap);
    if (!strcmp(name, "--limit-train")) return lr_cli_parse_size(name, val, 1, SIZE_MAX, &o->limit_train, msg, cap);
    if (!strcmp(name, "--limit-test")) return lr_cli_parse_size(name, val, 1, SIZE_MAX, &o->limit_test, msg, cap);
    if (!strcmp(name, "--lr")) return parse_pos_float(name, val, &o->lr, msg, cap);
    if (!strcmp(name, "--ft-lr")) return parse_pos_float(name, val, &o->ft_lr, msg, cap);
    if (!strcmp(name, "--alpha")) return parse_pos_float(name, val, &o->alpha, msg, cap);
    if (!strcmp(name, "--rank")) return lr_cli_parse_size(name, val, 1, 100000, &o->rank, msg, cap);
    if (!strcmp(name, "--steps")) return lr_cli_parse_size(name, val, 1, 10000000, &o->steps, msg, cap);
    if (!strcmp(name, "--threads")) {
        bool ok = lr_cli_parse_size(name, val, 1, LR_POOL_MAX_THREADS, &z, msg, cap);
        o->threads = (int)z;
        return ok;
    }
    if (!strcmp(name, "--init")) {
        if (lr_lora_parse_initializer(&kind, val, &e)) return opt_fail(msg, cap, "--init: %s", e.msg);
        o->pissa = kind == LR_LORA_INIT_PISSA;
        return true;
    }
    if (!strcmp(name, "--lora-layers")) {
        if (!*val) return opt_fail(msg, cap, "--lora-layers: empty list");
        o->lora_layers = val;
        return true;
    }
    if (!strcmp(name, "--digit")) {
        bool worst = !strcmp(val, "worst");
        if (worst || lr_cli_parse_size(name, val, 0, 9, &z, msg, cap)) {
            o->digit = worst ? -1 : (int)z;
            return true;
        }
        return opt_fail(msg, cap, "--digit: expected a digit 0-9 or 'worst', got '%s'", val);
    }
    if (!strcmp(name, "--shards")) return lr_cli_parse_size(name, val, 1, 60000, &o->shards, msg, cap);
    if (!strcmp(name, "--dist-sum")) {
        if (strcmp(val, "ordered") && strcmp(val, "mpi"))
            return opt_fail(msg, cap, "--dist-sum: expected 'ordered' or 'mpi', got '%s'", val);
        o->dist_sum_mpi = val[0] == 'm';
        return true;
    }
    if (!strcmp(name, "--preserve")) return preserve_parse(val, &o->preserve, msg, cap);
    if (!strcmp(name, "--preserve-energy"))
        return lr_cli_parse_double(name, val, 0, true, 1, false, &o->preserve.energy, msg, cap);
    if (!strcmp(name, "--replay-fraction"))
        return lr_cli_parse_double(name, val, 0, true, 0.9, false, &o->preserve.replay_fraction, msg, cap);
    if (!strcmp(name, "--retained-samples"))
        return lr_cli_parse_size(name, val, 1, 60000, &o->preserve.samples, msg, cap);
    if (!strcmp(name, "--distill-weight"))
        return lr_cli_parse_double(name, val, 0, true, 1e6, false, &o->preserve.distill_weight, msg, cap);
    return parse_layers(val, o, msg, cap); /* --layers */
}

static void set_flag(mnist_opts *o, const char *name)
{
    if (!strcmp(name, "--rslora")) o->rslora = true;
    else if (!strcmp(name, "--json")) o->json = true;
    else if (!strcmp(name, "--keep-subnormals")) o->keep_subnormals = true;
    else o->quiet = true;
}

/* Checks across options, and the output paths, before anything runs (a bad path fails in a
 * second, not after the run). The paths' checks that look at the filesystem run only with
 * check_files, at their place in the order, so the first error reported is the same. */
static int check_options(const mnist_opts *o, bool check_files, char *msg, size_t cap)
{
    if (o->load && o->sizes_given)
        return usage_fail(msg, cap, "--layers and --load conflict: a checkpoint's layer sizes come from the file");
    if (o->adapter && o->train_only)
        return usage_fail(msg, cap, "--adapter and %s conflict: --adapter evaluates a saved adapter without "
                           "fine-tuning", o->train_only);
    if (o->pissa && (o->preserve.all || (o->preserve.mask & PRESERVE_NULLSPACE)))
        return usage_fail(msg, cap, "--init pissa and --preserve %s conflict: the nullspace projection would change "
                           "PiSSA's A, which its residual base is built from", o->preserve.all ? "all" : "nullspace");
    if (o->adapter && !o->load)
        return usage_fail(msg, cap, "--adapter needs --load CKPT: the base model the adapter was trained on");
    if (o->save && check_output_path("--save", o->save, false, check_files, msg, cap)) return 2;
    if (o->plot && check_output_path("--plot", o->plot, false, check_files, msg, cap)) return 2;
    if (o->adapter_out && check_output_path("--adapter-out", o->adapter_out, true, check_files, msg, cap)) return 2;
    if (o->save && o->load && (strcmp(o->save, o->load) == 0 || (check_files && lr_cli_same_file(o->save, o->load))))
        return usage_fail(msg, cap, "--save '%s' and --load '%s' are the same file", o->save, o->load);
    if (!o->load) { /* sizes known now: check the layer list and the rank */
        bool sel[LR_MLP_MAX_LAYERS];
        if (!mnist_opts_select_layers(o->lora_layers, o->n_sizes - 1, sel, msg, cap) ||
            !mnist_opts_check_rank(o->sizes, o->n_sizes - 1, sel, o->rank, msg, cap))
            return 2;
    }
    return 0;
}

static void default_options(mnist_opts *o)
{
    memset(o, 0, sizeof *o);
    o->epochs = 1;
    o->batch = 10;
    o->lr = 1e-3;
    o->n_sizes = 4;
    memcpy(o->sizes, lr_mlp_default_sizes, sizeof lr_mlp_default_sizes);
    o->rank = 1;
    o->alpha = 1.0;
    o->steps = 100;
    o->ft_lr = 1e-3;
    o->digit = 9;
    o->preserve.energy = 0.9;
    o->preserve.replay_fraction = 0.5;
    o->preserve.distill_weight = 1.0;
    o->preserve.samples = 2000;
}

/* The options that only mean something when an adapter is trained here. */
static bool is_finetune_option(const char *name)
{
    static const char *const ft[] = { "--rank", "--alpha", "--rslora", "--init", "--lora-layers",
                                      "--steps", "--ft-lr", "--digit", "--adapter-out", "--preserve",
                                      "--preserve-energy", "--replay-fraction", "--distill-weight",
                                      "--retained-samples" };
    for (size_t i = 0; i < sizeof ft / sizeof *ft; i++)
        if (!strcmp(name, ft[i])) return true;
    return false;
}

int mnist_opts_parse(int argc, char **argv, mnist_opts *o, bool check_files, char *msg, size_t cap)
{
    default_options(o);
    char m[512]; /* a value's message, cut at 511 bytes as it always was */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return MNIST_OPTS_HELP;
        if (strncmp(a, "--", 2) != 0) return usage_fail(msg, cap, "unexpected argument '%s' (options start with --)", a);
        size_t k = 0, n = sizeof known_opts / sizeof *known_opts;
        while (k < n && !lr_cli_match(a, known_opts[k].name)) k++;
        if (k == n) return usage_fail(msg, cap, "unknown option '%.*s'", (int)strcspn(a, "="), a);
        const char *name = known_opts[k].name;
        if (!o->train_only && is_finetune_option(name)) o->train_only = name;
        if (known_opts[k].flag) {
            if (strchr(a, '=')) return usage_fail(msg, cap, "%s takes no value, got '%s'", name, a);
            set_flag(o, name);
        } else if (!lr_cli_value(argc, argv, &i, name, &val, m, sizeof m) ||
                   !set_option(o, name, val, m, sizeof m)) {
            return usage_fail(msg, cap, "%s", m);
        }
    }
    return check_options(o, check_files, msg, cap);
}

