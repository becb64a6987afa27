#!/usr/bin/env bash
# The main job at this stage of the project: set up, make a tiny random-weight
# SD model with Lumen itself, describe it, and run txt2img on it (the picture is
# noise: the weights are random). txt2img with the embedded ShapesWorld model
# replaces this when the default model lands.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
model=out/random-tiny
mkdir -p out
[ -d "$model" ] || build/lumen make-random --preset tiny -o "$model"
build/lumen info "$model"
build/lumen txt2img -m "$model" -p "a large red circle at the left on a black background" \
  --steps 20 --cfg-scale 5 -W 64 -H 64 -s 1 -o out/txt2img-random-tiny.png --overwrite
