#!/bin/sh
# layers_check.sh SOURCE_ROOT — the layering of docs/design.md holds: a file in lib/<layer>/
# or include/lowrank/<layer>/ includes only headers of its own layer or of the layers below
# it (base < linalg < io < nn < lora < mpi). Prints every include that runs back up.
# The programs too: tool/ and demos/ share cli/ and neither reaches into the other's folder.
set -u
cd "$1" || exit 1
rank() { case $1 in base) echo 1 ;; linalg) echo 2 ;; io) echo 3 ;; nn) echo 4 ;; lora) echo 5 ;; mpi) echo 6 ;; *) echo 0 ;; esac; }
bad=0
files=0
for f in lib/*/*.c lib/*/*.h include/lowrank/*/*.h; do
  [ -f "$f" ] || continue
  files=$((files + 1))
  own=$(echo "$f" | sed -E 's#^(lib|include/lowrank)/([a-z]+)/.*#\2#')
  for l in $(sed -nE 's@^#include "(lowrank/)?(base|linalg|io|nn|lora|mpi)/[a-z_]+\.h".*@\2@p' "$f"); do
    if [ "$(rank "$l")" -gt "$(rank "$own")" ]; then
      echo "FAIL: $f ($own) includes a $l header: $(grep -nE "#include \"(lowrank/)?$l/" "$f" | head -n 1)"
      bad=$((bad + 1))
    fi
  done
done
# the MPI layer stays out of the umbrella header: a program without MPI never sees mpi.h
if grep -q 'mpi/' include/lowrank/lowrank.h; then
  echo "FAIL: include/lowrank/lowrank.h includes the mpi layer (mpi.h): $(grep -n 'mpi/' include/lowrank/lowrank.h)"
  bad=$((bad + 1))
fi
# the programs: tool/ and demos/ share their option parsing through cli/, and neither
# compiles or includes the other's files (nor does cli/ know either of them)
for pair in tool:demos demos:tool cli:demos cli:tool; do
  from=${pair%%:*} to=${pair#*:}
  hits=$(grep -rnE "(\.\./|/ *')$to([/'\"]|\$)" "$from" --include='*.c' --include='*.h' --include=meson.build)
  if [ -n "$hits" ]; then
    echo "FAIL: $from/ reaches into $to/: $(echo "$hits" | head -n 1)"
    bad=$((bad + 1))
  fi
done
[ "$files" -ge 60 ] || { echo "FAIL: only $files files found under lib/ and include/lowrank/"; exit 1; }
[ "$bad" -eq 0 ] || { echo "$bad include(s) run back up the layers"; exit 1; }
echo "$files files: every include points down or sideways"
