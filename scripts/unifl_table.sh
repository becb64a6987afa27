#!/usr/bin/env bash
# The table of docs/feedback.md and assets/unifl-lora/README.md: each model
# judged by `lumen shapes judge-model` on both splits, 4 seeds per caption,
# 64x64, the default model's recommended sampler (DDIM, CFG 1.5, rescale 0.7).
# Rows go to runs/unifl/table.md (parts, reused on a rerun, in
# runs/unifl/table-parts/). Two judgings at a time, one thread each.
#   scripts/unifl_table.sh            # after scripts/make_unifl_lora.sh
set -euo pipefail
cd "$(dirname "$0")/.."
lumen=${LUMEN:-build/lumen}
r=runs/unifl out=$r/table-parts
mkdir -p $out
declare -A label=(
  [base]="base model"
  [stage1]="UniFL stage 1 (shipped)"
  [stage2]="stage 1 + adversarial stage 2"
  [no-pefl-stage1]="stage 1 without PeFL"
  [global-stage1]="stage 1, one global reward"
  [random-stage1]="stage 1, random prompts"
)
judge() {  # run name ("base": no LoRA), steps
  local part="$out/$1-$2.md" lora=""
  [[ -s "$part" ]] && return
  [[ $1 != base ]] && lora="$r/$1/final/lora.safetensors"
  "$lumen" --threads 1 shapes judge-model --steps "$2" --seeds 4 ${lora:+--lora "$lora"} --markdown "${label[$1]}" \
    > "$part.tmp"
  mv "$part.tmp" "$part"
}
order=(base stage1 stage2 no-pefl-stage1 global-stage1 random-stage1)
jobs_list=()
for name in "${order[@]}"; do
  for steps in 1 2 4 25; do
    # 25-step rows (minutes each) for the base model and the shipped LoRA; the
    # ablations are about few-step generation.
    [[ $steps == 25 && $name != base && $name != stage1 ]] && continue
    jobs_list+=("$name $steps")
  done
done
for ((i = 0; i < ${#jobs_list[@]}; i += 2)); do
  judge ${jobs_list[i]} & a=$!
  if ((i + 1 < ${#jobs_list[@]})); then judge ${jobs_list[i + 1]}; fi
  wait $a
done
{
  echo "| model | steps | split | correct | single | colour | shape | position | size | background | bg_error | mask IoU |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  for name in "${order[@]}"; do
    for steps in 1 2 4 25; do if [[ -f "$out/$name-$steps.md" ]]; then cat "$out/$name-$steps.md"; fi; done
  done
} > $r/table.md
cat $r/table.md
