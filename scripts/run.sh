#!/usr/bin/env bash
# The main job: set up (packages, build), then make pictures with the embedded
# default model (ShapesWorld, assets/default-model; nothing is downloaded) and
# let the ShapesWorld judge say whether they show what was asked.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build/lumen txt2img -p "a large red circle at the right on a black background" \
  --steps 25 --cfg-scale 1.5 --guidance-rescale 0.7 --batch-size 4 -s 1 -o out/default --overwrite
build/lumen shapes eval out/default
