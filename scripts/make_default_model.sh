#!/usr/bin/env bash
# Trains the embedded default model from its two recipes and stores it in
# assets/default-model (float16 diffusers folder). Resumable: rerun after an
# interruption and each stage continues from its last checkpoint.
#   scripts/make_default_model.sh
set -euo pipefail
cd "$(dirname "$0")/.."
lumen=${LUMEN:-build/lumen}
stage() {  # recipe, run folder
  if [[ -f "$2/final/DONE" ]]; then echo "$1: done ($2/final)"; return; fi
  if [[ -d "$2" ]]; then "$lumen" train "$1" --resume; else "$lumen" train "$1"; fi
}
stage configs/shapes-vae.yaml runs/shapes-vae
stage configs/shapes-default.yaml runs/shapes-default
rm -rf assets/default-model.tmp
"$lumen" convert runs/shapes-default/final -o assets/default-model.tmp --format diffusers --dtype f16
rm -rf assets/default-model
mv assets/default-model.tmp assets/default-model
du -sh assets/default-model
