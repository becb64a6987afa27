#!/usr/bin/env bash
# Peak memory of one ReFL-style step with and without gradient checkpointing
# (bench/checkpoint_memory.cpp), one configuration per process, one at a time.
# A run whose RSS passes LIMIT_MB is stopped rather than left to exhaust memory.
#   scripts/measure_checkpoint_memory.sh MODEL    (e.g. after `build/lumen make-random --preset sd15 -o /tmp/sd15`)
# Environment: SIZES ("256 512"), MODES ("on off"), THREADS (2), LIMIT_MB (14000),
# BENCH (build/bench/lumen_bench_checkpoint_memory).
set -uo pipefail
model=${1:?usage: measure_checkpoint_memory.sh MODEL}
bench=${BENCH:-build/bench/lumen_bench_checkpoint_memory}
limit_mb=${LIMIT_MB:-14000}
for size in ${SIZES:-256 512}; do
  for mode in ${MODES:-on off}; do
    "$bench" "$model" --checkpointing "$mode" --size "$size" --threads "${THREADS:-2}" &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
      rss_mb=$(awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$pid/status" 2>/dev/null)
      if (( ${rss_mb:-0} > limit_mb )); then
        kill "$pid"
        echo "{\"checkpointing\": \"$mode\", \"size\": $size, \"stopped\": \"RSS passed $limit_mb MB\"}"
        break
      fi
      sleep 0.2
    done
    wait "$pid"
  done
done
