#!/usr/bin/env bash
# The table of docs/feedback.md and assets/unifl-lora/README.md: every model
# judged by `lumen shapes judge-model` on both splits, 4 seeds per caption,
# 64x64, the default model's recommended sampler (DDIM, CFG 1.5, rescale 0.7).
# Rows go to runs/unifl/table.md. Two judgings at a time, one thread each.
#   scripts/unifl_table.sh            # after scripts/make_unifl_lora.sh
set -euo pipefail
cd "$(dirname "$0")/.."
lumen=${LUMEN:-build/lumen}
r=runs/unifl out=$r/table-parts
mkdir -p $out
judge() {  # label, lora file ("" = base), steps
  local part="$out/$1-$3.md"
  [[ -s "$part" ]] && return
  "$lumen" --threads 1 shapes judge-model --steps "$3" --seeds 4 ${2:+--lora "$2"} --markdown "$1" > "$part.tmp"
  mv "$part.tmp" "$part"
}
jobs_list=()
for steps in 1 2 4 25; do
  jobs_list+=("base||$steps" "unifl|$r/stage2/final/lora.safetensors|$steps")
done
for steps in 1 2 4; do
  for a in stage1 no-pefl-stage1 global-stage1 random-stage1; do jobs_list+=("$a|$r/$a/final/lora.safetensors|$steps"); done
done
for ((i = 0; i < ${#jobs_list[@]}; i += 2)); do
  IFS='|' read -r l1 f1 s1 <<< "${jobs_list[i]}"
  judge "$l1" "$f1" "$s1" & a=$!
  if ((i + 1 < ${#jobs_list[@]})); then IFS='|' read -r l2 f2 s2 <<< "${jobs_list[i+1]}"; judge "$l2" "$f2" "$s2"; fi
  wait $a
done
{
  echo "| model | steps | split | correct | single | colour | shape | position | size | background | bg_error | mask IoU |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  for label in base unifl stage1 no-pefl-stage1 global-stage1 random-stage1; do
    for steps in 1 2 4 25; do [[ -f "$out/$label-$steps.md" ]] && cat "$out/$label-$steps.md"; done
  done
} > $r/table.md
cat $r/table.md
