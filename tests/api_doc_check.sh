#!/bin/sh
# api_doc_check.sh SOURCE_ROOT — docs/api.md is what scripts/api_doc.py makes of the public
# headers today, so the API reference covers every exported function and stays true.
set -u
cd "$1" || exit 1
tmp=$(mktemp) || exit 1
trap 'rm -f "$tmp"' EXIT
python3 scripts/api_doc.py >"$tmp" || { echo "FAIL: scripts/api_doc.py failed"; exit 1; }
if ! cmp -s "$tmp" docs/api.md; then
  echo "FAIL: docs/api.md is stale; run: scripts/api_doc.py > docs/api.md"
  diff "$tmp" docs/api.md | head -n 20
  exit 1
fi
n=$(grep -ho 'LR_API [^(]*(' include/lowrank/*/*.h | wc -l)
echo "docs/api.md covers the $n exported declarations"
