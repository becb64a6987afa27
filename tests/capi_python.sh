#!/usr/bin/env bash
# examples/python/txt2img.py (ctypes, no binding code) on liblumen.so: one
# image of the embedded default model, written with its parameters text.
set -euo pipefail
lib=$1
work=$(mktemp -d /tmp/lumen_python_XXXXXX)
trap 'rm -rf "$work"' EXIT
out=$(python3 examples/python/txt2img.py --lib "$lib" "a small blue square at the top on a white background" "$work/py.png")
echo "$out"
test -s "$work/py.png"
grep -q "(64x64, 25 steps)" <<<"$out"
grep -q "Steps: 25, Sampler: " <<<"$out"
