#!/bin/sh
# tool_check.sh — the `lowrank` program end to end, checked against numpy (suite 'tool').
#
#   tool_check.sh SECTION LOWRANK   SECTION: inspect, compress, extract, combine, merge, errors, clean, shards
#
# Runs tests/tool_check.py SECTION in a fresh temporary directory (removed afterwards). The
# helper writes its inputs as safetensors files by hand and checks every output against
# numpy. Exit 77 (skipped) when /usr/bin/python3 or its numpy is missing.
set -u
section=$1
prog=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
if [ ! -x "$py" ]; then
  echo "SKIP: $py is missing"
  exit 77
fi
if ! "$py" -c 'import numpy' >/dev/null 2>&1; then
  echo "SKIP: $py has no numpy"
  exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lowrank-tool-check.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
"$py" "$here/tool_check.py" "$section" "$prog" "$tmp"
