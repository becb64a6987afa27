#!/usr/bin/env bash
# The main job at this stage of the project: set up, then make a tiny
# random-weight SD model with Lumen itself and describe it with `lumen info`.
# (txt2img with the embedded ShapesWorld model replaces this when it lands.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
model=out/random-tiny
mkdir -p out
[ -d "$model" ] || build/lumen make-random --preset tiny -o "$model"
build/lumen info "$model"
