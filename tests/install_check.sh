#!/bin/sh
# install_check.sh BUILD_DIR SOURCE_ROOT — lowrank as a user gets it from `meson install`
# (suite 'install'): installs into a temporary DESTDIR, then
#   - the shared library exports only lr_ names and has the soname liblowrank.so.0;
#   - every installed public header compiles on its own (C11, -Wall -Wextra -pedantic -Werror);
#   - the README's C example, compiled with `pkg-config --cflags --libs lowrank`, prints what
#     the README says, linked against the shared library and against the static one
#     (`pkg-config --static`);
#   - the programs (lr-mnist, lr-svd-demo, lowrank) are installed and run.
#   - the installed tree moved to another folder still works: with plain pkg-config and with
#     `pkg-config --define-prefix` (which resets prefix to the .pc's folder + /../.., wrong under
#     a multiarch libdir), the paths point into the new place and the example builds and runs.
set -u
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lr-install.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { printf 'FAIL: %s\n' "$*"; fails=$((fails + 1)); }
cc=${CC:-cc}

meson install -C "$build" --no-rebuild --destdir "$tmp/root" --quiet >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; echo "FAIL: meson install"; exit 1; }
pc=$(find "$tmp/root" -name lowrank.pc | head -n 1)
so=$(find "$tmp/root" -name 'liblowrank.so.*.*' | head -n 1)
[ -n "$pc" ] && [ -n "$so" ] || { echo "FAIL: no lowrank.pc or liblowrank.so installed"; exit 1; }
if nm -D "$so" | grep -q ' U __asan_init'; then
  echo "a sanitizer build: programs outside meson cannot link it as a user would; skipped"
  exit 77
fi
export PKG_CONFIG_PATH="$(dirname "$pc")"
pcflags() { pkg-config "$@" lowrank; }  # lowrank.pc is relocatable (prefix from its own place)
libdir=$(pcflags --variable=libdir)
incdir=$(pcflags --variable=includedir)

# exports and soname
bad=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^lr_[a-z0-9]' || true)
[ -z "$bad" ] || fail "the shared library exports non-API symbols: $(echo $bad | head -c 300)"
nm -D --defined-only "$so" | awk '{print $3}' | grep -qx lr_svd || fail "lr_svd is not exported"
objdump -p "$so" | grep -q 'SONAME *liblowrank.so.0$' || fail "soname is not liblowrank.so.0"

# every public header on its own
nh=0
for h in $(cd "$incdir" && find lowrank -name '*.h' | sort); do
  printf '#include <%s>\ntypedef int lr_check_not_empty;\n' "$h" >"$tmp/h.c"
  # dist/ (installed only with MPI) includes mpi.h: lowrank.pc then requires ompi-c
  case $h in lowrank/mpi/*) extra=$(pcflags --cflags) ;; *) extra= ;; esac
  # shellcheck disable=SC2086
  $cc -std=c11 -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$incdir" $extra "$tmp/h.c" 2>"$tmp/h.err" ||
    fail "$h does not compile on its own: $(head -n 3 "$tmp/h.err")"
  nh=$((nh + 1))
done
[ "$nh" -ge 30 ] || fail "only $nh public headers installed"

# the README's example: the first C block after "## A short tour of the API"
awk '/^## A short tour of the API/ {tour = 1} tour && /^```c$/ {on = 1; next} on && /^```$/ {exit} on {print}' \
  "$src/README.md" >"$tmp/example.c"
want=$(awk '/^## A short tour of the API/ {tour = 1} tour && /`rank [0-9]/ {print; exit}' "$src/README.md" |
  sed 's/.*`\(rank [^`]*\)`.*/\1/')
[ -s "$tmp/example.c" ] && [ -n "$want" ] || fail "no C example or expected output found in README.md"
export OPENBLAS_NUM_THREADS=1
# shellcheck disable=SC2046
if $cc -std=c11 -o "$tmp/ex" "$tmp/example.c" $(pcflags --cflags --libs) 2>"$tmp/cc.err"; then
  got=$(LD_LIBRARY_PATH="$libdir" "$tmp/ex")
  [ "$got" = "$want" ] || fail "README example (shared) printed '$got', README says '$want'"
else
  fail "README example does not compile against the installed library: $(head -n 5 "$tmp/cc.err")"
fi
# static: the same flags from --static, with liblowrank.a in place of -llowrank
static_libs=$(pcflags --static --libs | sed 's/-llowrank/-l:liblowrank.a/')
# shellcheck disable=SC2086
if $cc -std=c11 -o "$tmp/ex-static" "$tmp/example.c" $(pcflags --cflags) $static_libs 2>"$tmp/cc.err"; then
  ldd "$tmp/ex-static" | grep -q liblowrank && fail "static example still needs liblowrank.so"
  got=$("$tmp/ex-static")
  [ "$got" = "$want" ] || fail "README example (static) printed '$got', README says '$want'"
else
  fail "README example does not link statically with pkg-config --static: $(head -n 5 "$tmp/cc.err")"
fi

# the programs: both demos and the lowrank tool, runnable from the install
for p in lr-mnist lr-svd-demo lowrank; do
  exe=$(find "$tmp/root" -type f -name "$p" | head -n 1)
  [ -n "$exe" ] || { fail "$p is not installed"; continue; }
  LD_LIBRARY_PATH="$libdir" "$exe" --help >"$tmp/help.out" 2>&1 || fail "installed $p --help failed: $(head -n 3 "$tmp/help.out")"
done
exe=$(find "$tmp/root" -type f -name lowrank | head -n 1)
[ -z "$exe" ] || [ "$(LD_LIBRARY_PATH="$libdir" "$exe" --version)" = "lowrank $(pcflags --modversion)" ] ||
  fail "installed lowrank --version does not print the library's version"

# relocation: move the whole installed prefix, then build the README example from it again
prefixdir=$(cd "$(pcflags --variable=prefix)" && pwd -P)
pcdir=$(cd "$(dirname "$pc")" && pwd -P)
case $pcdir in
  "$prefixdir"/*)
    mkdir "$tmp/moved" && mv "$prefixdir" "$tmp/moved/prefix" || fail "could not move $prefixdir"
    moved_pc=$tmp/moved/prefix/${pcdir#"$prefixdir"/}
    # shellcheck disable=SC2086
    mpc() { PKG_CONFIG_PATH="$moved_pc" pkg-config $opt "$@" lowrank; }
    for mode in plain --define-prefix; do
      case $mode in plain) opt= ;; *) opt=$mode ;; esac
      mlib=$(cd "$(mpc --variable=libdir)" 2>/dev/null && pwd -P)
      minc=$(cd "$(mpc --variable=includedir)" 2>/dev/null && pwd -P)
      case $mlib in "$tmp/moved/prefix"/*) ;; *) fail "moved, pkg-config ($mode): libdir is '$(mpc --variable=libdir)'" ;; esac
      case $minc in "$tmp/moved/prefix"/*) ;; *) fail "moved, pkg-config ($mode): includedir is '$(mpc --variable=includedir)'" ;; esac
      [ -f "$minc/lowrank/lowrank.h" ] && [ -e "$mlib/liblowrank.so" ] ||
        fail "moved, pkg-config ($mode): no lowrank/lowrank.h or liblowrank.so where -I/-L point: $(mpc --cflags-only-I --libs-only-L)"
      # shellcheck disable=SC2046
      if $cc -std=c11 -o "$tmp/ex-moved" "$tmp/example.c" $(mpc --cflags --libs) 2>"$tmp/cc.err"; then
        got=$(LD_LIBRARY_PATH="$mlib" "$tmp/ex-moved")
        [ "$got" = "$want" ] || fail "README example from the moved install ($mode) printed '$got'"
      else
        fail "README example does not build from the moved install with pkg-config ($mode): $(head -n 3 "$tmp/cc.err")"
      fi
    done
    ;;
  *) fail "lowrank.pc ($pcdir) is not under its prefix ($prefixdir): the install is not relocatable" ;;
esac

[ "$fails" -eq 0 ] || { printf '%d check(s) failed\n' "$fails"; exit 1; }
echo "all checks passed"
