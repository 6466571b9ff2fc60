#!/bin/sh
# demo_check.sh — runs the built lr-svd-demo as a user would and checks what it prints.
# Usage: demo_check.sh CASE DEMO JSON_CHECK    (CASE: default | json | npy | errors)
# Exit codes are checked exactly, so a crash or a sanitizer report (which changes the
# exit code) fails the test even where the demo is expected to fail.
set -u
case_=$1 demo=$2 jc=$3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lr-demo-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out err=$tmp/err

fail() {
    echo "FAIL: $*" >&2
    echo "--- stdout:" >&2; cat "$out" >&2
    echo "--- stderr:" >&2; cat "$err" >&2
    exit 1
}
# run WANT_RC ARGS...: runs the demo, stdout to $out, stderr to $err
run() {
    want=$1; shift
    "$demo" "$@" >"$out" 2>"$err"
    rc=$?
    [ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want"
}
has() { grep -qF -- "$1" "$out" || fail "stdout lacks '$1'"; }
err_has() { grep -qF -- "$1" "$err" || fail "stderr lacks '$1'"; }
quiet_err() { [ ! -s "$err" ] || fail "unexpected stderr"; }
no_out() { [ ! -s "$out" ] || fail "unexpected stdout on failure"; }
json() { "$jc" "$@" <"$out" 2>>"$err" || fail "JSON check failed: $*"; }

case $case_ in
default)
    run 0
    quiet_err
    has "seed 0"
    has "Rank of W: 2"
    has "B: (10 x 2)"
    has "A: (2 x 10)"
    has "allclose: True"
    has "Total parameters of W: 100"
    has "Total parameters of B and A: 40"
    has "Multiply-adds of Wx: 100"
    has "Multiply-adds of B(Ax): 40"
    ;;
json)
    run 0 --json
    quiet_err
    json mode=seed seed=0 rank=2 r=2 allclose=true params_W=100 params_BA=40 macs_Wx=100 macs_BAx=40 W B A y y_prime
    run 0 --json --seed 7 --split balanced
    json seed=7 rank=2 allclose=true split=balanced
    ;;
npy)
    # the seed matrix saved, then factored as a file
    run 0 --out-prefix "$tmp/seed"
    has "wrote $tmp/seed_W.npy"
    for f in W B A; do [ -s "$tmp/seed_$f.npy" ] || fail "seed_$f.npy not written"; done
    run 0 "$tmp/seed_W.npy" --rank 2 --out-prefix "$tmp/f"
    quiet_err
    has "matrix: $tmp/seed_W.npy, 10 x 10 float32"
    has "numerical rank: 2 of 10"
    has "rank r = 2  (--rank)"
    [ -s "$tmp/f_B.npy" ] && [ -s "$tmp/f_A.npy" ] || fail "f_B.npy / f_A.npy not written"
    run 0 "$tmp/seed_W.npy" --json --energy 0.999
    json mode=matrix numerical_rank=2 r=2 r_from=energy errors cost singular_values
    run 0 "$tmp/seed_W.npy" --json --randomized --rank 2 --oversample 3 --power-iters 2 --seed 5 --ranks 1,2
    json r=2 r_from=rank method errors
    grep -q '"algorithm": "subspace"' "$out" || fail "--oversample/--power-iters did not select subspace iteration"
    run 0 "$tmp/seed_W.npy" --randomized --rank 2 --krylov-depth 1 --ranks 1,2
    has "method: randomized SVD, block Krylov (Musco-Musco) at rank 2, block 2, depth 1, seed 0"
    run 0 "$tmp/seed_W.npy" --json --randomized --method subspace --rank 2
    grep -q '"power_iters": 4' "$out" || fail "--method subspace: default power_iters not reported"
    run 0 "$tmp/f_B.npy" --tol 1e-3 --top 0
    has "numerical rank: 2 of 2"
    run 0 "$tmp/seed_W.npy" --help
    has "--out-prefix"
    ;;
errors)
    printf 'not a numpy file at all' >"$tmp/bad.npy"
    "$demo" --out-prefix "$tmp/seed" >/dev/null 2>&1 || fail "could not write the seed matrix"
    run 2 --bogus;                                no_out; err_has "unknown option '--bogus'"; err_has "--help"
    run 2 --rank abc;                             no_out; err_has "--rank: expected a positive integer, got 'abc'"
    run 2 --rank 0;                               no_out; err_has "--rank: expected a positive integer, got '0'"
    run 2 --rank -3;                              no_out; err_has "got '-3'"
    run 2 --rank;                                 no_out; err_has "--rank: needs a value"
    run 2 --seed 1x;                              no_out; err_has "--seed: expected a non-negative integer, got '1x'"
    run 2 --seed 18446744073709551615;            no_out; err_has "--seed: at most 9223372036854775807"
    run 0 --json --seed 9223372036854775807;      grep -q '"seed": 9223372036854775807' "$out" || fail "the largest seed is not reported exactly"
    run 2 "$tmp/seed_W.npy" --energy 1.5;         no_out; err_has "--energy: expected a number in (0, 1], got '1.5'"
    run 2 "$tmp/seed_W.npy" --energy nan;         no_out; err_has "expected a finite number"
    run 2 "$tmp/seed_W.npy" --rank 2 --energy 0.9; no_out; err_has "not both"
    run 2 "$tmp/seed_W.npy" --oversample 5;       no_out; err_has "--oversample: needs --randomized"
    run 2 --randomized;                           no_out; err_has "needs a matrix file"
    # a matrix whose singular values overflow float32: the error names the file
    { printf '\223NUMPY\001\000\166\000'; printf "%-117s\n" "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
      printf '\346\261\141\177\346\261\141\177\346\261\141\177\346\261\141\177'; } >"$tmp/huge.npy"
    run 1 "$tmp/huge.npy" --rank 1;               no_out; err_has "$tmp/huge.npy: rank: singular value 0 is inf"
    run 2 "$tmp/seed_W.npy" --block 4;            no_out; err_has "--block: needs --randomized"
    run 2 "$tmp/seed_W.npy" --randomized --method svd; no_out; err_has "--method: expected krylov or subspace, got 'svd'"
    run 2 "$tmp/seed_W.npy" --randomized --oversample 3 --block 2; no_out; err_has "give one method's options"
    run 2 "$tmp/seed_W.npy" --randomized --method krylov --power-iters 2; no_out; err_has "--power-iters does not apply to --method krylov"
    run 2 "$tmp/seed_W.npy" --randomized --block 0; no_out; err_has "--block"
    run 2 "$tmp/seed_W.npy" --split diagonal;     no_out; err_has "--split: expected 'us' or 'balanced'"
    run 2 "$tmp/seed_W.npy" --rank 11;            no_out; err_has "--rank: 11 is more than min(m, n) = 10"
    run 2 "$tmp/seed_W.npy" --ranks 1,,2;         no_out; err_has "--ranks"
    run 2 "$tmp/seed_W.npy" "$tmp/bad.npy";       no_out; err_has "one matrix file at a time"
    run 1 "$tmp/missing.npy" --rank 2;            no_out; err_has "cannot open $tmp/missing.npy"
    run 1 "$tmp/bad.npy" --rank 2 --json;         no_out; err_has "bad magic"
    run 1 "$tmp/seed_W.npy" --rank 2 --out-prefix "$tmp/nodir/f"; no_out; err_has "nodir/f_B.npy"
    [ ! -e "$tmp/nodir" ] || fail "a partial output appeared"
    # A cannot be written (its name is taken by a directory): B, written first, is removed
    mkdir "$tmp/x_A.npy"
    run 1 "$tmp/seed_W.npy" --rank 2 --out-prefix "$tmp/x"; no_out; err_has "x_A.npy: exists and is not a regular file"
    [ ! -e "$tmp/x_B.npy" ] || fail "x_B.npy left behind after x_A.npy failed"
    [ -z "$(ls -A "$tmp/x_A.npy")" ] || fail "something was written into x_A.npy/"
    ls -a "$tmp" | grep -q '\.tmp-' && fail "a temp file was left behind"
    # an old B survives a failed A, byte for byte (all or nothing)
    printf 'old B' >"$tmp/x_B.npy"
    run 1 "$tmp/seed_W.npy" --rank 2 --out-prefix "$tmp/x"; no_out
    [ "$(cat "$tmp/x_B.npy")" = "old B" ] || fail "the old x_B.npy was lost when x_A.npy failed"
    ls -a "$tmp" | grep -q '\.tmp-' && fail "a temp file was left behind"
    # the input is never an output, whatever path names it
    cp "$tmp/seed_W.npy" "$tmp/in_B.npy"
    run 1 "$tmp/in_B.npy" --rank 2 --out-prefix "$tmp/in"; no_out; err_has "in_B.npy is the input matrix: refusing to overwrite it"
    cmp -s "$tmp/seed_W.npy" "$tmp/in_B.npy" || fail "the input was overwritten"
    ln -s "$tmp/in_B.npy" "$tmp/link_B.npy"
    run 1 "$tmp/in_B.npy" --rank 2 --out-prefix "$tmp/link"; no_out; err_has "is the input matrix"
    # a file-size limit: SIGXFSZ is ignored, so the write fails with a message, not a signal
    ( ulimit -f 1; "$demo" "$tmp/seed_W.npy" --rank 10 --out-prefix "$tmp/big" >"$out" 2>"$err" ); rc=$?  # 528-byte files
    [ "$rc" = 1 ] || fail "--out-prefix under ulimit -f 1: exit $rc, want 1"
    err_has "File too large"
    ls -a "$tmp" | grep -q '\.tmp-' && fail "a temp file was left behind under ulimit -f"
    ;;
*)
    echo "demo_check.sh: unknown case '$case_'" >&2
    exit 1
    ;;
esac
exit 0
