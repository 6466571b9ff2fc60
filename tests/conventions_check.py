#!/usr/bin/env python3
"""conventions_check.py SOURCE_ROOT — the API convention of docs/design.md holds in every
public header, so a user who has read it can write a call without opening the header.

Checked for every LR_API function of include/lowrank/**/*.h:
  - a function that returns lr_status takes `lr_err *err`, and err is the last parameter;
  - every `_init` (or `_init_<how>`) has a `_free` of the same object;
  - an options struct is taken as `const lr_<x>_opts *opts`, its comment says what NULL
    means, nothing but workspace (an rng, a forward workspace, a communicator) and err
    follows it, and some test calls the function with NULL there;
  - `_add` is the last word of a name (it means: accumulate into an output), `_ex` is not
    used (options go through the one nullable pointer);
  - no two modules share a prefix: a name that starts with `lr_<module>_` for some
    module's header is declared in that module's header (the longest such prefix wins).
And the library checks every status it receives: lib/**/*.c is compiled (with $CC, default
cc) against a copy of the headers in which every LR_API function returning lr_status is
warn_unused_result; each "ignoring return value" is a breach.
Prints every breach; exit 1 if any."""
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = sys.argv[1] if len(sys.argv) > 1 else '.'
INC = os.path.join(ROOT, 'include', 'lowrank')
# what may follow the options pointer: workspace and the communicator, then err
AFTER_OPTS = re.compile(r'^(lr_rng \*\w+|lr_mlp_ws \*\w+|MPI_Comm \w+|lr_err \*err)$')


def split_params(s):
    out, depth, cur = [], 0, ''
    for c in s:
        if c in '([':
            depth += 1
        elif c in ')]':
            depth -= 1
        if c == ',' and depth == 0:
            out.append(cur.strip())
            cur = ''
        else:
            cur += c
    if cur.strip():
        out.append(cur.strip())
    return [p for p in out if p != 'void']


def declarations():
    """(header, module, name, ret, params, comment) for every LR_API function."""
    for layer in sorted(os.listdir(INC)):
        d = os.path.join(INC, layer)
        if not os.path.isdir(d):
            continue
        for f in sorted(os.listdir(d)):
            if not f.endswith('.h'):
                continue
            path = os.path.join(d, f)
            text = open(path, encoding='utf-8').read()
            rel = os.path.relpath(path, ROOT)
            for m in re.finditer(r'((?:/\*(?:(?!\*/).)*\*/\s*)*)LR_API\s+([^;(]*?)\b(lr_\w+)\s*\(([^;]*?)\)\s*;',
                                 text, re.S):
                comment, ret, name, params = m.group(1), m.group(2).strip(), m.group(3), m.group(4)
                if 'extern' in ret:
                    continue
                yield rel, f[:-2], name, ret, split_params(' '.join(params.split())), comment


def test_sources():
    tdir = os.path.join(ROOT, 'tests')
    text = ''
    for f in sorted(os.listdir(tdir)):
        if f.endswith('.c'):
            text += open(os.path.join(tdir, f), encoding='utf-8').read()
    return text


def call_args(text, name):
    """Argument lists of every call of name in text (top-level commas)."""
    for m in re.finditer(r'(?<![\w.>])' + re.escape(name) + r'\s*\(', text):
        i, depth, start = m.end() - 1, 0, m.end()
        args = []
        for j in range(i, len(text)):
            c = text[j]
            if c in '([{':
                depth += 1
            elif c in ')]}':
                depth -= 1
                if depth == 0:
                    args.append(text[start:j].strip())
                    break
            elif c == ',' and depth == 1:
                args.append(text[start:j].strip())
                start = j + 1
        yield args


def pkg_cflags(*pkgs):
    for pkg in pkgs:
        try:
            r = subprocess.run(['pkg-config', '--cflags', pkg], capture_output=True, text=True)
        except OSError:
            return []
        if r.returncode == 0:
            return r.stdout.split()
    return []


def ignored_statuses():
    """Breaches: calls in lib/ that drop a returned lr_status."""
    cc = os.environ.get('CC', 'cc').split()
    flags = pkg_cflags('openblas') + pkg_cflags('ompi-c', 'mpi')
    bad = []
    with tempfile.TemporaryDirectory() as tmp:
        inc = os.path.join(tmp, 'include')
        shutil.copytree(os.path.join(ROOT, 'include'), inc)
        for dirpath, _, files in os.walk(inc):
            for f in files:
                p = os.path.join(dirpath, f)
                t = open(p, encoding='utf-8').read()
                t = re.sub(r'^LR_API lr_status ', 'LR_API __attribute__((warn_unused_result)) lr_status ', t, flags=re.M)
                open(p, 'w', encoding='utf-8').write(t)
        srcs = sorted(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(ROOT, 'lib')) for f in fs
                      if f.endswith('.c'))
        def compile_one(src):
            return subprocess.run(cc + ['-std=c11', '-D_GNU_SOURCE', '-c', '-o', os.devnull, '-I', inc, '-I',
                                        os.path.join(ROOT, 'lib')] + flags + [src], capture_output=True, text=True)
        with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            results = list(pool.map(compile_one, srcs))
        for src, r in zip(srcs, results):
            rel = os.path.relpath(src, ROOT)
            if r.returncode != 0 and 'mpi.h' in r.stderr and '/mpi/' in src:
                print(f'note: {rel} not compiled (no mpi.h)')
                continue
            if r.returncode != 0:
                bad.append(f'{rel} does not compile: {r.stderr.strip().splitlines()[0]}')
            for line in r.stderr.splitlines():
                m = re.search(r':(\d+):\d+: warning: ignoring return value of (.(lr_\w+))?', line)
                if m:  # gcc names the function, clang does not
                    bad.append(f'{rel}:{m.group(1)}: the status of {m.group(3) or "a call"} is dropped')
    return bad, len(srcs)


def main():
    decls = list(declarations())
    names = {d[2] for d in decls}
    modules = {d[1] for d in decls} | {os.path.splitext(f)[0] for _, _, fs in os.walk(INC) for f in fs}
    tests = test_sources()
    bad = []
    for hdr, mod, name, ret, params, comment in decls:
        where = f'{hdr}: {name}'
        errs = [i for i, p in enumerate(params) if re.search(r'\blr_err\s*\*', p)]
        if ret == 'lr_status' and not errs:
            bad.append(f'{where} returns lr_status but takes no lr_err *err')
        if errs and errs[-1] != len(params) - 1:
            bad.append(f'{where}: lr_err *err is parameter {errs[-1] + 1} of {len(params)}, not the last')
        if errs and params[errs[-1]] != 'lr_err *err':
            bad.append(f'{where}: the error parameter is "{params[errs[-1]]}", not "lr_err *err"')
        m = re.match(r'(lr_\w+?)_init(_\w+)?$', name)
        if m and m.group(1) + '_free' not in names:
            bad.append(f'{where} has no {m.group(1)}_free')
        if re.search(r'_ex(_|$)', name):
            bad.append(f'{where}: _ex is not a word of the convention (options go through one nullable pointer)')
        if '_add_' in name:
            bad.append(f'{where}: _add must end the name (it means: accumulate into an output)')
        for k, p in enumerate(params):
            om = re.match(r'^(const\s+)?(lr_\w+_opts)\s*\*\s*(\w+)$', p)
            if not om:
                continue
            if not om.group(1) or om.group(3) != 'opts':
                bad.append(f'{where}: options parameter "{p}", want "const {om.group(2)} *opts"')
            if name.startswith(om.group(2) + '_'):
                continue  # lr_x_opts_check: the options are its subject, not options
            if not re.search(r'\bopts\b[^.]{0,40}\bNULL\b|\bNULL\b[^.]{0,20}\bopts\b|opts NULL', comment.replace('\n', ' ')):
                bad.append(f'{where}: the comment does not say what opts NULL means')
            for q in params[k + 1:]:
                if not AFTER_OPTS.match(q):
                    bad.append(f'{where}: "{q}" follows the options (only workspace, comm and err may)')
            if not any(len(a) == len(params) and a[k] == 'NULL' for a in call_args(tests, name)):
                bad.append(f'{where}: no test calls it with opts NULL')
        owner = max((md for md in modules if name.startswith('lr_' + md + '_')), key=len, default=None)
        if owner and owner != mod:
            bad.append(f'{where}: the prefix lr_{owner}_ belongs to {owner}.h, not {mod}.h')
    dropped, nsrc = ignored_statuses()
    bad += dropped
    for b in bad:
        print('FAIL:', b)
    print(f'{len(decls)} public functions in {len(modules)} headers and the calls of {nsrc} library sources '
          f'checked, {len(bad)} breaches')
    return 1 if bad else 0


sys.exit(main())
