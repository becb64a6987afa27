#!/usr/bin/env bash
# Data-parallel training measured on this machine (docs/distributed.md):
# fine-tuning the embedded default model (task: diffusion, 64², full UNet and
# text encoder) with a global batch of 2 shards × BATCH images per step, as
#   1 process  × 1 thread   (accumulating both shards)
#   1 process  × 2 threads  (accumulating both shards)
#   2 processes × 1 thread  (one shard each), gradients overlapped with backward
#   2 processes × 1 thread, LUMEN_DIST_OVERLAP=0 (all-reduce after backward)
# Prints samples per second (steps after the first) and, for the two-process
# runs, the share of step time rank 0 waited on the all-reduce.
#   bench/distributed.sh [STEPS] [BATCH] [BUCKET_MB]
set -euo pipefail
cd "$(dirname "$0")/.."
lumen=${LUMEN:-$PWD/build/lumen}
steps=${1:-30} batch=${2:-8} bucket=${3:-1}
work=$(mktemp -d /tmp/lumen-ddp-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

recipe() {  # NAME THREADS
  cat > "$work/$1.yaml" <<YAML
task: diffusion
output: $work/$1
seed: 1
threads: $2
steps: $steps
batch_size: $batch
data_shards: 2
dataset: {type: shapes, width: 64, height: 64, split: train}
optimizer: {lr: 1.0e-5, warmup_steps: 1}
checkpoint_every: 1000000
log_every: 1
model: {base: $PWD/assets/default-model}
YAML
}
# Samples per second over steps 2..N (the first step warms up), and rank 0's
# mean comm_wait_s / step_s over the same steps when logged.
report() {  # NAME LABEL
  awk -v label="$2" -v batch="$batch" -F'[,:}]' '
    { for (i = 1; i < NF; i++) { if ($i ~ /"step"$/) s = $(i+1); if ($i ~ /"time_s"$/) t = $(i+1);
        if ($i ~ /"comm_wait_s"$/) w = $(i+1); if ($i ~ /"step_s"$/) st = $(i+1) }
      if (s == 1) t1 = t; else { wait += w; step += st }; last = t; n = s }
    END { rate = (n - 1) * 2 * batch / (last - t1);
          share = step > 0 ? sprintf("%.1f%%", 100 * wait / step) : "-";
          printf "| %s | %.2f | %s |\n", label, rate, share }' "$work/$1/metrics.jsonl"
}
two() {  # NAME [ENV...]
  local name=$1; shift
  local port=$((29000 + RANDOM % 1000))
  (env "$@" WORLD_SIZE=2 RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port LUMEN_DIST_BUCKET_MB=$bucket \
     "$lumen" train "$work/$name.yaml" > "$work/$name.rank1.log" 2>&1) &
  env "$@" WORLD_SIZE=2 RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port LUMEN_DIST_BUCKET_MB=$bucket \
    "$lumen" train "$work/$name.yaml" > "$work/$name.rank0.log" 2>&1
  wait
}

recipe one1 1; recipe one2 2; recipe two 1; recipe two_serial 1
"$lumen" train "$work/one1.yaml" > "$work/one1.log" 2>&1
"$lumen" train "$work/one2.yaml" > "$work/one2.log" 2>&1
two two
two two_serial LUMEN_DIST_OVERLAP=0
echo "| run ($steps steps, 2 shards of $batch images, ${bucket} MB buckets) | samples/s | rank 0 waiting on all-reduce |"
echo "| --- | --- | --- |"
report one1 "1 process × 1 thread"
report one2 "1 process × 2 threads"
report two "2 processes × 1 thread, overlapped"
report two_serial "2 processes × 1 thread, LUMEN_DIST_OVERLAP=0"
