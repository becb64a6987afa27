#!/usr/bin/env bash
# The GPU checks in one short run, on a machine with an NVIDIA GPU and a CUDA
# LibTorch 2.x (PyTorch's pip package carries one: its CMake config is found
# through python3):
#   1. builds Lumen's inference runtime against it (LUMEN_INFERENCE_ONLY: the
#      training and server dependencies are not needed; GPU_CHECK_FULL=1 builds all);
#   2. runs every golden case of the network kinds with the networks on the GPU
#      in float32 (TF32 off), against the golden tolerances;
#   3. `lumen bench` on the GPU: SD1.5 at 512² in f32, f16 and bf16, SDXL at
#      1024² in f16 and bf16 (random weights in the real architectures).
#
# Usage: scripts/gpu_check.sh [BUILD_DIR]            (default: build-cuda)
# Reports in GPU_CHECK_OUT: build.log, golden.txt, bench.log and bench-NAME.json.
# Environment: Torch_DIR (else python3's torch), LUMEN_GOLDEN_DIR (else
# ../shared/golden), GPU_CHECK_OUT (reports; default BUILD_DIR/gpu-check),
# CMAKE_ARGS (more cmake options), GPU_CHECK_SKIP_BUILD=1 (use BUILD_DIR as is).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-cuda}
out=${GPU_CHECK_OUT:-$build/gpu-check}
mkdir -p "$out"
log() { echo "gpu_check: $*" >&2; }

if [ "${GPU_CHECK_SKIP_BUILD:-0}" != 1 ]; then
  torch_dir=${Torch_DIR:-$(python3 -c 'import os, torch; print(os.path.join(torch.utils.cmake_prefix_path, "Torch"))')}
  inference_only=ON
  [ "${GPU_CHECK_FULL:-0}" = 1 ] && inference_only=OFF
  log "configuring against $torch_dir"
  # shellcheck disable=SC2086  # CMAKE_ARGS is a list of options
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTorch_DIR="$torch_dir" \
        -DLUMEN_INFERENCE_ONLY=$inference_only -DLUMEN_MALLOC=system ${CMAKE_ARGS:-} > "$out/build.log" 2>&1 ||
    { tail -40 "$out/build.log"; exit 1; }
  log "building"
  cmake --build "$build" --target lumen test_golden >> "$out/build.log" 2>&1 || { grep -m20 -B2 -A6 "error" "$out/build.log"; exit 1; }
fi
lumen="$build/lumen"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/bench.log" || true

log "golden cases, networks on cuda"
status=0
LUMEN_TEST_DEVICE=cuda "$build/tests/test_golden" --gtest_brief=1 > "$out/golden.txt" 2>&1 || status=$?
grep -E "^golden (networks|.*: (FAIL|SKIP))" "$out/golden.txt" || true
echo "golden: $(grep -c ': PASS' "$out/golden.txt") passed, $(grep -c ': FAIL' "$out/golden.txt") failed, $(grep -c ': SKIP' "$out/golden.txt") skipped (exit $status)"

bench() {  # NAME ARGS...: one bench, its text report and JSON
  local name=$1
  shift
  log "bench $name"
  echo "== $name: lumen bench --device cuda $*" >> "$out/bench.log"
  "$lumen" --threads 8 bench --device cuda "$@" --json > "$out/bench-$name.json" 2>> "$out/bench.log" ||
    { status=1; tail -3 "$out/bench.log"; return 0; }
  python3 - "$out/bench-$name.json" "$name" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
p = r["phases"]
med = lambda k: p.get(k, {}).get("median_s", 0)
u = r.get("unet_step", {})
rate = u.get("gflop", 0) / med("unet_step") / 1e3 if med("unet_step") else 0
print(f"{sys.argv[2]:>16}: UNet step {med('unet_step')*1e3:7.1f} ms ({rate:5.1f} TFLOP/s), VAE decode "
      f"{med('vae_decode')*1e3:7.1f} ms, {r['generation_steps']}-step generation {med('generation'):6.2f} s, "
      f"GPU peak {r.get('device_peak_bytes', 0)/1e9:5.2f} GB")
EOF
}
bench sd15-512-f32 --preset sd15 --size 512 --dtype f32 --repeats 5
bench sd15-512-f16 --preset sd15 --size 512 --dtype f16 --repeats 5
bench sd15-512-bf16 --preset sd15 --size 512 --dtype bf16 --repeats 5
bench sdxl-1024-f16 --preset sdxl --size 1024 --dtype f16 --repeats 3 --no-machine
bench sdxl-1024-bf16 --preset sdxl --size 1024 --dtype bf16 --repeats 3 --no-machine
exit $status
