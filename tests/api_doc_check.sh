#!/bin/sh
# api_doc_check.sh SOURCE_ROOT — docs/api.md is what scripts/api_doc.py makes of the public
# headers today, so the API reference covers every public type, constant and exported function
# and stays true; and the script refuses a header it cannot read fully rather than leave
# something out of api.md.
set -u
cd "$1" || exit 1
tmp=$(mktemp) || exit 1
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp" "$dir"' EXIT
python3 scripts/api_doc.py >"$tmp" || { echo "FAIL: scripts/api_doc.py failed (its reasons above)"; exit 1; }
if ! cmp -s "$tmp" docs/api.md; then
  echo "FAIL: docs/api.md is stale; run: scripts/api_doc.py > docs/api.md"
  diff "$tmp" docs/api.md | head -n 20
  exit 1
fi

# A header with a typedef and an LR_API declaration the script cannot parse: it must fail,
# write nothing, and name the header and both symbols.
mkdir -p "$dir/include" && cp -R include/lowrank "$dir/include/" || exit 1
cat >"$dir/include/lowrank/base/zz_unparsed.h" <<'EOF'
/* zz_unparsed.h — not a real header: api_doc_check.sh's deliberate violations. */
typedef struct { int a; } lr_zz_pair, *lr_zz_pair_ptr;
LR_API int (*lr_zz_handler(void))(int);
EOF
if python3 scripts/api_doc.py "$dir" >"$dir/out" 2>"$dir/err"; then
  echo "FAIL: scripts/api_doc.py accepted a header it cannot parse"
  exit 1
fi
for want in 'zz_unparsed.h:2: .*lr_zz_pair_ptr' 'zz_unparsed.h:3: .*lr_zz_handler'; do
  grep -q "$want" "$dir/err" || { echo "FAIL: no error matching '$want':"; cat "$dir/err"; exit 1; }
done
[ -s "$dir/out" ] && { echo "FAIL: scripts/api_doc.py printed a reference despite the errors"; exit 1; }

n=$(grep -ho 'LR_API [^(]*(' include/lowrank/*/*.h | wc -l)
t=$(grep -Ec '^(typedef|struct|union|enum|#define) ' docs/api.md)
echo "docs/api.md covers the $n exported declarations and $t type and constant definitions"
