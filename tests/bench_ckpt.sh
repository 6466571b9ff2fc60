#!/usr/bin/env bash
# bench_ckpt.sh — `lowrank extract` against the two LoRA-extraction methods people use today, on
# a pair of real-shaped LLM checkpoints, run side by side in one sitting.
#
# What it measures. A checkpoint pair (BASE, TUNED) with a real model's tensor names, shapes and
# BF16 dtype is written by the reference generator llm_ckpt.py (or reused if already there). Then,
# interleaved round by round (the order rotates each round, so no method always runs first on a
# warm or cold page cache), each method extracts a rank-R LoRA from TUNED - BASE:
#   lowrank        ours: `lowrank extract BASE TUNED --rank R --out DIR --json --threads T`
#   exact          mergekit's method (mergekit-extract-lora): full torch.linalg.svd, keep R
#   lowrank-torch  kohya's method (sd-scripts): torch.svd_lowrank(q=R, niter=2)
# (the last two through extract_like_mergekit.py --method exact|lowrank). Every run is a separate
# process under `/usr/bin/time -f '%e %M'`: wall seconds (process start to exit, so the Python
# runs include the interpreter and `import torch`) and peak RSS.
# Quality: per module, rel err = ||dW - B.A||_F / ||dW||_F as each tool reports it; the exact SVD
# is the optimum at rank R (Eckart–Young), so error/optimum = rel err / exact's rel err is 1 for
# a perfect truncated SVD. The table gives, per method: wall s (min / median over --repeat runs),
# peak RSS MB (largest over runs), modules compared, mean rel err, max error/optimum, and how
# many modules are above 1.001x the optimum; then the time ratios mergekit / ours, kohya / ours.
# Quality figures come from each method's first run (kohya's method is randomized, unseeded).
#
# --limit K: the Python scripts stop after their first K modules (sorted names; for 8B, where the
# exact SVD takes hours); this script selects the same K modules and passes them to ours as an
# anchored --only, so all methods do the same work and only those modules are compared.
#
# Threads: every run gets --threads T (default 2) and OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = T
# (meson's test environment sets OPENBLAS_NUM_THREADS=1; that is overridden here). A lowrank
# binary that refuses --threads is run again without it (said in the output).
#
# Exit: 0 after the table; 77 (skip) if /usr/bin/python3 cannot import torch and numpy or the
# reference scripts are missing; 1 with a message if a method fails (lowrank's failure — a crash,
# or a directory it cannot read yet — is reported in the table, the other methods still run).
# The generated checkpoint (and a work directory this script created) is deleted at the end
# unless --keep; a checkpoint that was already in --workdir is never deleted.
#
# Registered in tests/meson.build as the benchmark 'ckpt' (`meson test -C build --benchmark ckpt`,
# never in CI). Environment: LR_BENCH_REFERENCE (default ../shared/reference beside the checkout) for
# llm_ckpt.py and extract_like_mergekit.py; LR_BENCH_PYTHON (default /usr/bin/python3).

set -uo pipefail

PROG=bench_ckpt
PYTHON=${LR_BENCH_PYTHON:-/usr/bin/python3}
REFERENCE=${LR_BENCH_REFERENCE:-$(cd "$(dirname "$0")/../.." && pwd)/shared/reference}
TIME=/usr/bin/time

# ---- options ----------------------------------------------------------------------------------

model=smollm2-135m
shards=1
layers=
rank=16
limit=
keep=0
workdir=
lowrank=
threads=2
methods=lowrank,exact,lowrank-torch
repeat=1

usage() {
    cat <<EOF
usage: tests/bench_ckpt.sh [--model M] [--shards N] [--layers L] [--rank R] [--limit K]
                           [--repeat N] [--keep] [--workdir DIR] [--lowrank PATH]
                           [--threads T] [--methods lowrank,exact,lowrank-torch]

  --model M      smollm2-135m (default), qwen2.5-0.5b, llama-3.2-1b, llama-3-8b
  --shards N     checkpoint shards when generating (default 1: one model.safetensors)
  --layers L     only the first L decoder layers when generating
  --rank R       LoRA rank (default 16)
  --limit K      compare only the first K modules (the Python scripts' --limit; ours --only)
  --repeat N     runs per method, interleaved (default 1); wall time min / median
  --keep         keep the generated checkpoint and the run logs
  --workdir DIR  where the checkpoint is (DIR/base, DIR/tuned) or is generated
                 (default: a new directory under \${TMPDIR:-/tmp})
  --lowrank PATH the lowrank program (default: build/tool/lowrank next to this script's tests/)
  --threads T    threads for every method (default 2)
  --methods LIST comma-separated subset of lowrank,exact,lowrank-torch (exact is the optimum)
EOF
}

die() { echo "$PROG: $*" >&2; exit 1; }
skip() { echo "$PROG: skipped: $*"; exit 77; }
is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --help|-h) usage; exit 0 ;;
            --keep) keep=1; shift; continue ;;
        esac
        [ $# -ge 2 ] || die "$1 needs a value (try --help)"
        case $1 in
            --model) model=$2 ;;
            --shards) shards=$2 ;;
            --layers) layers=$2 ;;
            --rank) rank=$2 ;;
            --limit) limit=$2 ;;
            --repeat) repeat=$2 ;;
            --workdir) workdir=$2 ;;
            --lowrank) lowrank=$2 ;;
            --threads) threads=$2 ;;
            --methods) methods=$2 ;;
            *) die "unknown option '$1' (try --help)" ;;
        esac
        shift 2
    done
    local v
    for v in shards rank repeat threads; do is_count "${!v}" || die "--$v must be a positive integer"; done
    for v in layers limit; do [ -z "${!v}" ] || is_count "${!v}" || die "--$v must be a positive integer"; done
    case $model in smollm2-135m|qwen2.5-0.5b|llama-3.2-1b|llama-3-8b) ;; *) die "unknown --model '$model'" ;; esac
    IFS=, read -r -a method_list <<<"$methods"
    [ ${#method_list[@]} -gt 0 ] || die "--methods is empty"
    for v in "${method_list[@]}"; do
        case $v in lowrank|exact|lowrank-torch) ;; *) die "unknown method '$v' in --methods" ;; esac
    done
    if [ -z "$lowrank" ]; then lowrank=$(cd "$(dirname "$0")/.." && pwd)/build/tool/lowrank; fi
    [[ $lowrank == /* ]] || lowrank=$PWD/$lowrank   # meson passes it relative to the build directory
}

# ---- prerequisites ----------------------------------------------------------------------------

check_prerequisites() {
    "$PYTHON" -c 'import torch, numpy' >/dev/null 2>&1 ||
        skip "$PYTHON cannot import torch and numpy (the reference methods need them)"
    local f
    for f in llm_ckpt.py extract_like_mergekit.py; do
        [ -f "$REFERENCE/$f" ] || skip "no $f in $REFERENCE (set LR_BENCH_REFERENCE)"
    done
    # GNU time gives the peak RSS; Debian/Ubuntu: apt-get install -y time
    [ -x "$TIME" ] || die "$TIME is missing (Debian/Ubuntu: apt-get install -y time)"
    if [[ " ${method_list[*]} " == *" lowrank "* ]]; then
        [ -x "$lowrank" ] || die "no lowrank program at $lowrank (build it: ninja -C build; or --lowrank PATH)"
    fi
}

# ---- the checkpoint pair ----------------------------------------------------------------------

created_workdir=0   # this script made the work directory: remove it at the end
generated=0         # this script wrote DIR/base and DIR/tuned: remove them at the end
scratch=            # adapters, logs, timings of this run

ckpt_side_present() { [ -f "$1/model.safetensors" ] || [ -f "$1/model.safetensors.index.json" ]; }

# What ours is given: the directory of a sharded checkpoint, else its one model.safetensors.
lowrank_input() {
    if [ -f "$1/model.safetensors.index.json" ]; then echo "$1"; else echo "$1/model.safetensors"; fi
}

cleanup() {
    if [ "$keep" = 1 ]; then
        [ -z "$scratch" ] || echo "kept: run logs in $scratch"
        [ "$generated" = 0 ] || echo "kept: checkpoint in $workdir"
        return
    fi
    [ -z "$scratch" ] || rm -rf "$scratch"
    if [ "$generated" = 1 ]; then rm -rf "$workdir/base" "$workdir/tuned"; fi
    if [ "$created_workdir" = 1 ]; then rmdir "$workdir" 2>/dev/null || true; fi
}

# Fails early if the pair (both sides, BF16) would not fit on the work directory's disk.
check_space() {
    "$PYTHON" - "$REFERENCE" "$model" "${layers:-0}" "$1" <<'PY'
import importlib.util, os, sys
ref, model, layers, where = sys.argv[1], sys.argv[2], int(sys.argv[3]) or None, sys.argv[4]
spec = importlib.util.spec_from_file_location('llm_ckpt', os.path.join(ref, 'llm_ckpt.py'))
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
need = 2 * sum(2 * int(m.np.prod(s)) for _, s, _ in m.layout(model, layers))
st = os.statvfs(where); free = st.f_bavail * st.f_frsize
if need * 1.05 > free:
    sys.exit(f'the {model} pair needs {need / 1e9:.1f} GB, {where} has {free / 1e9:.1f} GB free')
print(f'{need / 1e9:.2f} GB for both sides')
PY
}

prepare_checkpoint() {
    if [ -z "$workdir" ]; then
        workdir=$(mktemp -d "${TMPDIR:-/tmp}/bench_ckpt.XXXXXX") || die "cannot make a work directory"
        created_workdir=1
    elif [ ! -d "$workdir" ]; then
        mkdir -p "$workdir" || die "cannot make $workdir"
        created_workdir=1
    fi
    workdir=$(cd "$workdir" && pwd)
    if ckpt_side_present "$workdir/base" && ckpt_side_present "$workdir/tuned"; then
        ckpt_note="reused $workdir (--model/--shards/--layers do not apply; kept at the end)"
        return
    fi
    local size t0=$SECONDS
    size=$(check_space "$workdir") || die "not enough disk space: $size"
    echo "generating $model (shards $shards${layers:+, layers $layers}, $size) in $workdir ..."
    generated=1
    run_child "$scratch/generate.log" "$scratch/generate.err" \
        "$PYTHON" "$REFERENCE/llm_ckpt.py" "$workdir" "$model" --shards "$shards" ${layers:+--layers "$layers"} ||
        { cat "$scratch/generate.err" >&2; die "llm_ckpt.py failed"; }
    ckpt_note="generated $model (shards $shards${layers:+, layers $layers}) in $((SECONDS - t0)) s"
}

# With --limit K: the first K modules extract_like_mergekit.py takes (its filter: sorted names,
# *.weight without 'embed'/'norm', BF16/F16/F32, 2-D, delta not zero), one per line, to
# $scratch/modules; and ours' --only regex for exactly those names, to $scratch/only.
select_modules() {
    "$PYTHON" - "$workdir/base" "$workdir/tuned" "$limit" "$scratch" <<'PY' || die "cannot select the first $limit modules"
import json, os, struct, sys
base, tuned, limit, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

def index(d):  # tensor name -> file, as extract_like_mergekit.py reads a checkpoint directory
    ix = os.path.join(d, 'model.safetensors.index.json')
    if os.path.exists(ix):
        return {k: os.path.join(d, f) for k, f in json.load(open(ix))['weight_map'].items()}
    p = os.path.join(d, 'model.safetensors')
    return {k: p for k in header(p)[0] if k != '__metadata__'}

headers = {}
def header(p):
    if p not in headers:
        with open(p, 'rb') as f:
            n = struct.unpack('<Q', f.read(8))[0]; headers[p] = (json.loads(f.read(n)), 8 + n)
    return headers[p]

def data(p, k):
    h, start = header(p); s, e = h[k]['data_offsets']
    with open(p, 'rb') as f:
        f.seek(start + s); return f.read(e - s)

ib, it = index(base), index(tuned)
names = []
for k in sorted(ib):
    if not k.endswith('.weight') or 'embed' in k or 'norm' in k: continue
    v = header(ib[k])[0][k]
    if v['dtype'] not in ('BF16', 'F16', 'F32') or len(v['shape']) != 2: continue
    if data(ib[k], k) == data(it[k], k): continue
    names.append(k)
    if len(names) >= limit: break
open(os.path.join(out, 'modules'), 'w').write(''.join(n + '\n' for n in names))
esc = lambda n: ''.join(c if c.isalnum() or c == '_' else '[' + c + ']' for c in n)
open(os.path.join(out, 'only'), 'w').write('^(' + '|'.join(map(esc, names)) + ')$')
print(len(names))
PY
}

# ---- one timed run ----------------------------------------------------------------------------

# run_child OUT ERR CMD...: CMD in the background in its own process group (set -m in main), so
# that on SIGINT/SIGTERM on_signal can stop it — an exact SVD of 8B runs for hours. Returns its status.
child=
run_child() {
    local out=$1 err=$2; shift 2
    "$@" >"$out" 2>"$err" </dev/null &
    child=$!
    wait "$child"
    local rc=$?
    child=
    return $rc
}

on_signal() {
    # (bash reports the killed job on stderr as it reaps it: not worth a line)
    [ -z "$child" ] || { kill -TERM -- -"$child"; wait "$child"; } 2>/dev/null
    echo "$PROG: interrupted" >&2
    exit 130
}

lowrank_threads_flag=1   # 0 once the binary refused --threads
lowrank_failed=0
notes=()

# run_timed TAG CMD...: CMD under /usr/bin/time; stdout to $scratch/TAG.json, stderr to TAG.err,
# "wall_s peak_kb" to TAG.time. Returns CMD's exit status.
run_timed() {
    local tag=$1; shift
    run_child "$scratch/$tag.json" "$scratch/$tag.err" "$TIME" -o "$scratch/$tag.tm" -f '%e %M' "$@"
    local rc=$?
    tail -n 1 "$scratch/$tag.tm" >"$scratch/$tag.time"
    # GNU time's own line for a failed command ("Command terminated by signal 11")
    [ $rc -eq 0 ] || head -n -1 "$scratch/$tag.tm" >>"$scratch/$tag.err"
    return $rc
}

run_lowrank() {
    local tag=$1 out="$scratch/adapter"
    local cmd=("$lowrank" extract "$(lowrank_input "$workdir/base")" "$(lowrank_input "$workdir/tuned")"
               --rank "$rank" --out "$out" --json)
    [ -z "$limit" ] || cmd+=(--only "$(cat "$scratch/only")")
    rm -rf "$out"
    if [ $lowrank_threads_flag = 1 ]; then
        run_timed "$tag" "${cmd[@]}" --threads "$threads"
        local rc=$?
        if [ $rc -ne 0 ] && grep -q -- "--threads" "$scratch/$tag.err"; then
            lowrank_threads_flag=0
            notes+=("lowrank refused --threads ($(head -n 1 "$scratch/$tag.err")): run without it, OPENBLAS_NUM_THREADS=$threads")
        else
            rm -rf "$out"; return $rc
        fi
    fi
    run_timed "$tag" "${cmd[@]}"
    local rc=$?
    rm -rf "$out"
    return $rc
}

run_python() {
    local tag=$1 method=$2
    run_timed "$tag" "$PYTHON" "$REFERENCE/extract_like_mergekit.py" "$workdir/base" "$workdir/tuned" \
        --rank "$rank" --method "$method" --threads "$threads" ${limit:+--limit "$limit"}
}

# run_method METHOD ROUND: one run, logged as a line of $scratch/runs (method round status tag).
run_method() {
    local m=$1 r=$2 tag="$1.$2" rc
    case $m in
        lowrank) run_lowrank "$tag" ;;
        exact) run_python "$tag" exact ;;
        lowrank-torch) run_python "$tag" lowrank ;;
    esac
    rc=$?
    printf '%s %s %s %s\n' "$m" "$r" "$rc" "$tag" >>"$scratch/runs"
    printf '  round %d  %-14s %s\n' "$r" "$m" \
        "$([ $rc -eq 0 ] && awk '{printf "%.2f s, %.0f MB", $1, $2 / 1024}' "$scratch/$tag.time" || echo "FAILED (exit $rc)")"
    if [ $rc -ne 0 ]; then
        sed 's/^/      | /' "$scratch/$tag.err" | tail -n 5
        [ "$m" != lowrank ] || lowrank_failed=1
    fi
}

run_all() {
    local r i n=${#method_list[@]}
    for ((r = 1; r <= repeat; r++)); do
        for ((i = 0; i < n; i++)); do
            local m=${method_list[$(((i + r - 1) % n))]}
            # a failed lowrank is not run again: the failure is the result
            if [ "$m" = lowrank ] && [ $lowrank_failed = 1 ]; then continue; fi
            run_method "$m" "$r"
        done
    done
}

# ---- the report -------------------------------------------------------------------------------

cpu_line() {
    LC_ALL=C lscpu 2>/dev/null | awk -F: '
        /^Model name:/ { sub(/^[ \t]+/, "", $2); name = $2 }
        /^CPU family:/ { gsub(/[ \t]/, "", $2); fam = $2 }
        /^Model:/      { gsub(/[ \t]/, "", $2); mod = $2 }
        END { printf "%s (family %s, model %s)", name, fam, mod }'
}

report() {
    "$PYTHON" - "$scratch" "${limit:-0}" "${method_list[@]}" <<'PY'
import json, os, statistics, sys
scratch, limit, methods = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
LABEL = {'lowrank': 'lowrank extract (ours)', 'exact': 'mergekit: exact SVD',
         'lowrank-torch': 'kohya: svd_lowrank niter=2'}
ORDER = [m for m in ('lowrank', 'exact', 'lowrank-torch') if m in methods]

runs = {m: [] for m in ORDER}          # per method: [(round, rc, wall_s, peak_kb, tag)]
for line in open(os.path.join(scratch, 'runs')):
    m, r, rc, tag = line.split()
    wall, kb = open(os.path.join(scratch, tag + '.time')).read().split()
    runs[m].append((int(r), int(rc), float(wall), int(kb), tag))

def errors(m):  # {module: rel err} from the method's first successful run, or None
    ok = [x for x in runs[m] if x[1] == 0]
    if not ok: return None
    d = json.load(open(os.path.join(scratch, ok[0][4] + '.json')))
    if m == 'lowrank': return {l['name']: float(l['measured_rel_error']) for l in d['layers']}
    return {row['name']: float(row['rel_err']) for row in d['rows']}

err = {m: errors(m) for m in ORDER}
if limit:   # only the modules the --limit selection names
    sel = set(open(os.path.join(scratch, 'modules')).read().split())
    err = {m: e and {k: v for k, v in e.items() if k in sel} for m, e in err.items()}
opt = err.get('exact')

def ratio(e, o):
    if o > 1e-12: return e / o
    return 1.0 if e <= 1e-6 else float('inf')

rows, med = [], {}
for m in ORDER:
    ok = [x for x in runs[m] if x[1] == 0]
    if not ok:
        rc = runs[m][0][1] if runs[m] else '?'
        rows.append([LABEL[m], f'FAILED (exit {rc})', '-', '-', '-', '-', '-']); continue
    walls = [x[2] for x in ok]
    med[m] = statistics.median(walls)
    wall = f'{walls[0]:.2f}' if len(walls) == 1 else f'{min(walls):.2f} / {med[m]:.2f}'
    rss = f'{max(x[3] for x in ok) / 1024:.0f}'
    e = err[m]
    mean = f'{statistics.fmean(e.values()):.5f}' if e else '-'
    if opt:
        rs = [ratio(v, opt[k]) for k, v in e.items() if k in opt]
        mx = f'{max(rs):.5f}' if rs else '-'
        above = f'{sum(r > 1.001 for r in rs)} / {len(rs)}' if rs else '-'
    else:
        mx = above = 'n/a (no exact run)'
    rows.append([LABEL[m], wall, rss, str(len(e)), mean, mx, above])

head = ['method', 'wall s' + (' (min / median)' if any(len(v) > 1 for v in runs.values()) else ''),
        'peak RSS MB', 'modules', 'mean rel err', 'max error/optimum', 'modules above 1.001x optimum']
w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
fmt = lambda r: '| ' + ' | '.join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) + ' |'
print(fmt(head)); print('|' + '|'.join('-' * (x + 2) for x in w) + '|')
for r in rows: print(fmt(r))
print()
if 'lowrank' in med:
    for m, what in (('exact', 'mergekit time / ours'), ('lowrank-torch', 'kohya time / ours')):
        if m in med: print(f'{what}: {med[m] / med["lowrank"]:.2f}x' + (' (median wall times)' if len(runs['lowrank']) > 1 else ''))
# modules one tool took and another did not (they should agree)
names = {m: set(e) for m, e in err.items() if e is not None}
for m, s in names.items():
    for o, t in names.items():
        if m < o and s != t:
            print(f'note: {LABEL[m]} and {LABEL[o]} differ in modules: {len(s - t)} only in the first, {len(t - s)} only in the second')
for m in ('exact', 'lowrank-torch'):
    ok = [x for x in runs.get(m, []) if x[1] == 0]
    if ok:
        inner = [json.load(open(os.path.join(scratch, x[4] + '.json')))['wall_s'] for x in ok]
        print(f'note: {LABEL[m]}: its own loop time {statistics.median(inner):.2f} s '
              f'(the wall time above adds interpreter start and import torch)')
PY
}

# ---- main -------------------------------------------------------------------------------------

main() {
    parse_args "$@"
    check_prerequisites
    set -m   # job control: each child in its own process group (run_child)
    trap cleanup EXIT
    trap on_signal INT TERM
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/bench_ckpt_run.XXXXXX") || die "cannot make a scratch directory"
    export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
    : >"$scratch/runs"

    prepare_checkpoint
    if [ -n "$limit" ]; then
        local k
        k=$(select_modules) || exit 1
        [ "$k" -gt 0 ] || die "no module differs between $workdir/base and $workdir/tuned"
        limit_note="--limit $limit: the first $k modules (sorted names) for every method; ours via --only"
    fi

    echo "running: ${method_list[*]}, $repeat round(s), interleaved ..."
    run_all

    echo
    echo "== lowrank extract vs mergekit / kohya: LoRA extraction from a checkpoint pair =="
    echo "CPU:        $(cpu_line)"
    echo "date:       $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "checkpoint: $ckpt_note"
    echo "            base $(lowrank_input "$workdir/base")"
    echo "rank:       $rank   threads: $threads   repeat: $repeat${limit:+   limit: $limit}"
    echo "lowrank:    $lowrank"
    echo "python:     $PYTHON (torch $("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null))"
    [ -z "${limit_note:-}" ] || echo "modules:    $limit_note"
    local n
    for n in "${notes[@]}"; do echo "note:       $n"; done
    echo
    report || die "could not build the table (logs in $scratch; rerun with --keep to keep them)"

    local failed
    failed=$(awk '$3 != 0 { print $1 }' "$scratch/runs" | sort -u | tr '\n' ' ')
    if [ -n "$failed" ]; then
        [ $lowrank_failed = 0 ] ||
            echo "$PROG: lowrank extract FAILED on this checkpoint (its message is above; the other methods ran)" >&2
        die "failed: $failed"
    fi
}

main "$@"
