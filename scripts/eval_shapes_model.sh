#!/usr/bin/env bash
# Judges a ShapesWorld model the way SHAPES.md asks: `lumen txt2img` at 64x64,
# N seeds per caption, over the 108 seen-split and the 108 unseen (evaluation)
# captions, then `lumen shapes eval` on each folder.
#   scripts/eval_shapes_model.sh OUT_DIR [MODEL] -- [extra txt2img options]
# MODEL "" or "default" = the embedded default model. Environment: SEEDS (4),
# SAMPLER (ddim), STEPS (25), CFG (4), RESCALE (0.7), SPLITS ("seen eval"),
# THREADS (0 = one per core), LUMEN (build/lumen).
set -euo pipefail
out=${1:?usage: eval_shapes_model.sh OUT_DIR [MODEL] [-- txt2img options]}
model=${2:-default}
shift $(( $# >= 2 ? 2 : 1 ))
[[ "${1:-}" == "--" ]] && shift
lumen=${LUMEN:-build/lumen}
threads=${THREADS:-0}  # 0: one per core; use 1 when several evaluations run at once
seeds=${SEEDS:-4}; sampler=${SAMPLER:-ddim}; steps=${STEPS:-25}; cfg=${CFG:-4}; rescale=${RESCALE:-0.7}
model_args=()
[[ "$model" != "default" && -n "$model" ]] && model_args=(-m "$model")
mkdir -p "$out"
for split in ${SPLITS:-seen eval}; do
  dir="$out/$split"
  mkdir -p "$dir"
  # The split's captions, in all_captions() order (shapes render lists them).
  "$lumen" shapes render -o "$out/.captions-$split" --split "$split" --overwrite >/dev/null
  for txt in "$out/.captions-$split"/*.txt; do
    n=$(basename "$txt" .txt)
    caption=$(head -n1 "$txt")
    "$lumen" --threads "$threads" txt2img "${model_args[@]}" -p "$caption" -W 64 -H 64 --sampler "$sampler" --steps "$steps" \
      --cfg-scale "$cfg" --guidance-rescale "$rescale" -s 1000 --batch-size "$seeds" -o "$dir/$n" --overwrite "$@" >/dev/null
    for f in "$dir/$n"/*.png; do mv "$f" "$dir/${n}-$(basename "$f")"; done
    rmdir "$dir/$n"
  done
  rm -rf "$out/.captions-$split"
  echo "== $split: sampler $sampler, $steps steps, cfg $cfg, rescale $rescale, $seeds seeds, 64x64"
  "$lumen" shapes eval "$dir"
done
