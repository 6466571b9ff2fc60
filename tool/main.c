/* main.c — `lowrank`: low-rank tools for safetensors checkpoints and PEFT LoRA adapters.
 * Dispatches to the subcommands (inspect.c, compress.c, extract.c, combine.c, merge.c, clean.c,
 * rsvd.c, export.c); their command lines are parsed by tool_opts.c. */
#include <signal.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include "tool.h"

static const char usage[] =
"usage: " PROG " COMMAND [options]\n"
"\n"
"Low-rank tools for any safetensors checkpoint (every 2-D F32/F16/BF16/F64 tensor is a\n"
"candidate) and for LoRA adapters in PEFT's directory layout. MODEL, BASE and TUNED are a\n"
".safetensors file, a directory holding model.safetensors or a sharded\n"
"model.safetensors.index.json, or that index file; tensors are read one at a time.\n"
"\n"
"Commands:\n"
"  inspect MODEL            numerical rank, sigma_1, ranks for 90/99/99.9% energy, costs\n"
"  compress MODEL --out F   factor weights as B.A (--rank, --energy, --error or --budget)\n"
"  extract BASE TUNED --out DIR   a LoRA adapter from the difference of two checkpoints\n"
"  combine DIR... --out DIR       weighted sum of adapters, exact or truncated (--rank)\n"
"  merge BASE DIR --out F   W + s.B.A into the weights (--unmerge subtracts it)\n"
"  clean-temps DIR...       remove temp files a killed save left behind (by age and lock)\n"
"  rsvd FILE.npy --rank R   top singular values of a .npy matrix (over MPI ranks under mpirun)\n"
"  export DIR --gguf F      a PEFT adapter as a GGUF LoRA adapter llama.cpp applies exactly\n"
"\n"
"'" PROG " COMMAND --help' describes each. Exit status: 0 ok; 1 a failure (a message names\n"
"the file and tensor); 2 a bad command line. Outputs are written crash-safely: a failed\n"
"run leaves no partial file. docs/tool.md has the details and a tutorial.\n";

int main(int argc, char **argv)
{
    /* over RLIMIT_FSIZE a write fails with EFBIG, which the library reports, rather than
     * the process dying of SIGXFSZ with a temp file left behind */
    signal(SIGXFSZ, SIG_IGN);
#if defined(__GLIBC__)
    /* Tensors come and go one at a time, each a few MB to a GB. glibc's default raises its mmap
     * threshold to 32 MB after the first large free, so later tensors land in the heap and
     * its holes: on SmolLM2-135M extract's peak RSS was 459 MB with the default, 118 MB with
     * every block from 1 MiB up mapped and unmapped on its own. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
    if (argc < 2) {
        fputs(usage, stderr);
        return LR_CLI_USAGE;
    }
    const char *c = argv[1];
    if (!strcmp(c, "--help") || !strcmp(c, "-h") || !strcmp(c, "help")) {
        fputs(usage, stdout);
        return LR_CLI_OK;
    }
    if (!strcmp(c, "--version")) {
        printf(PROG " %s\n", LOWRANK_VERSION);
        return LR_CLI_OK;
    }
    /* in the order of tool_command_names (tool_opts.h) */
    static int (*const run[TOOL_NCMD])(int, char **) = {
        tool_inspect, tool_compress, tool_extract, tool_combine, tool_merge, tool_clean, tool_rsvd, tool_export,
    };
    int k = tool_command(c);
    if (k >= 0) return run[k](argc - 1, argv + 1);
    return tool_usage(NULL, "unknown command '%s' (inspect, compress, extract, combine, merge, clean-temps, rsvd, export)", c);
}
