#!/usr/bin/env bash
# demo.sh — set up (packages, MNIST, build) and run the main demo with any options given.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build >&2
exec build/demos/lr-mnist "$@"
