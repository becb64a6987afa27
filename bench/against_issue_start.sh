#!/usr/bin/env bash
# Lumen now against Lumen as it was when the performance issue was filed
# ("today's" in its targets), on this machine, in one run, by the issue's own
# method: whole-process `txt2img` on a random-weight SD1.5 single file,
# Euler, CFG 7, 2 threads; seconds per step = (time at 4 steps - time at 1) / 3.
#
#   bench/against_issue_start.sh SIZE DTYPE [ROUNDS]
#
# Builds the `lumen` of commit 31cc1b2 (the last one before the issue's work
# began) in a git worktree under $WORK (default /tmp/lumen-issue-start) once,
# and writes the random model there. Rounds alternate old, new, old, new...
# Prints one line per run and the per-step medians. Needs /usr/bin/time
# (Debian's `time`). The worktree is registered in this checkout: remove it
# with `git worktree remove --force $WORK/tree`.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:?size}
dtype=${2:?dtype}
rounds=${3:-2}
work=${WORK:-/tmp/lumen-issue-start}
start_commit=31cc1b2
new_bin=$PWD/build/lumen
old_tree=$work/tree
old_bin=$old_tree/build/lumen
mkdir -p "$work"
[ -x /usr/bin/time ] || { echo "against_issue_start: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }

if [ ! -x "$old_bin" ]; then
  [ -d "$old_tree" ] || git worktree add --detach "$old_tree" "$start_commit" >/dev/null
  cmake -S "$old_tree" -B "$old_tree/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLUMEN_BUILD_TESTS=OFF >/dev/null
  ninja -C "$old_tree/build" lumen >/dev/null
fi
model=$work/sd15-random.safetensors
if [ ! -f "$model" ]; then
  "$new_bin" make-random --preset sd15 -o "$work/sd15-random" >/dev/null
  "$new_bin" convert "$work/sd15-random" -o "$model" --format single-file >/dev/null
  rm -rf "$work/sd15-random"
fi

run() {  # BIN STEPS -> "seconds peak_kB"
  /usr/bin/time -f "%e %M" -o "$work/time.txt" "$1" --threads 2 txt2img -m "$model" -W "$size" -H "$size" \
    --steps "$2" --sampler euler --cfg-scale 7 --seed 1 --dtype "$dtype" -p "a red circle" \
    -o "$work/out.png" --overwrite >/dev/null 2>&1
  cat "$work/time.txt"
}
# One discarded run of each first: the first run after the model is written
# reads it into the page cache and fills the new binary's hash cache.
run "$old_bin" 1 >/dev/null
run "$new_bin" 1 >/dev/null
declare -A per_step
for round in $(seq "$rounds"); do
  for which in old new; do
    bin=$old_bin
    [ "$which" = new ] && bin=$new_bin
    read -r t1 _ < <(run "$bin" 1)
    read -r t4 m4 < <(run "$bin" 4)
    step=$(awk -v a="$t1" -v b="$t4" 'BEGIN {print (b - a) / 3}')
    per_step[$which]+="$step "
    printf '%s round %d: 1 step %.2f s, 4 steps %.2f s, %.3f s/step, peak RSS %.2f GB\n' \
      "$which" "$round" "$t1" "$t4" "$step" "$(awk -v kb="$m4" 'BEGIN {print kb / 1048576}')"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
old=$(echo "${per_step[old]}" | median)
new=$(echo "${per_step[new]}" | median)
printf '%s² %s: issue start %.3f s/step, now %.3f s/step, %.2fx (medians of %d)\n' \
  "$size" "$dtype" "$old" "$new" "$(awk -v a="$old" -v b="$new" 'BEGIN {print a / b}')" "$rounds"
