#!/usr/bin/env bash
# The table of docs/resadapter.md and assets/resadapter/README.md: the default
# model judged by `lumen shapes judge-model` at each size, both splits, 4 seeds
# per caption, CAPTIONS captions per split evenly spread over it (default 27 of
# 108), its recommended sampler (DDIM 25 steps, CFG 1.5, rescale 0.7):
#   base        the model alone
#   resadapter  with the ResAdapter (RESADAPTER, default assets/resadapter)
#   lora        with the ResAdapter and the UniFL LoRA (assets/unifl-lora)
#   ceiling     the VAE's reconstructions of the reference renders (one per caption: the VAE is deterministic)
# Each row is kept in runs/resadapter-table/ (reused on a rerun).
#   scripts/resadapter_table.sh base 32x32 48x48 ...   # one kind, these sizes
#   scripts/resadapter_table.sh table 32x32 48x48 ...  # the rows made so far, by size
set -euo pipefail
cd "$(dirname "$0")/.."
lumen=${LUMEN:-build/lumen}
resadapter=${RESADAPTER:-assets/resadapter}
captions=${CAPTIONS:-27}
out=runs/resadapter-table
mkdir -p "$out"
kind=$1
shift
if [[ $kind == table ]]; then
  echo "| model | steps | split | correct | single | colour | shape | position | size | background | bg_error | mask IoU |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  for size in "$@"; do
    for k in base resadapter lora ceiling; do
      [[ -s "$out/$k-$size.md" ]] && cat "$out/$k-$size.md"
    done
  done
  exit 0
fi
for size in "$@"; do
  w=${size%x*} h=${size#*x}
  part="$out/$kind-$size.md"
  [[ -s "$part" ]] && continue
  args=()
  case $kind in
    base) label="$size" ;;
    resadapter) label="$size + ResAdapter"; args=(--resadapter "$resadapter") ;;
    lora) label="$size + ResAdapter + UniFL LoRA"; args=(--resadapter "$resadapter" --lora assets/unifl-lora/unifl-shapes.safetensors) ;;
    ceiling) label="$size VAE ceiling"; args=(--vae-ceiling) ;;
    *) echo "unknown kind $kind (base, resadapter, lora, ceiling)" >&2; exit 2 ;;
  esac
  "$lumen" --threads 1 shapes judge-model -W "$w" -H "$h" --captions "$captions" --seeds 4 "${args[@]}" \
    --markdown "$label" > "$part.tmp"
  mv "$part.tmp" "$part"
  cat "$part"
done
