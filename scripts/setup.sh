#!/usr/bin/env bash
# Installs what Lumen needs on Debian (only what is missing) and builds it.
# Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-openmp      # OpenBLAS: the reference BLAS is ~30x slower
  libopencv-dev libstb-dev libpng-dev libssl-dev
  libcli11-dev libyaml-cpp-dev nlohmann-json3-dev libcpp-httplib-dev libicu-dev
  libgtest-dev libbenchmark-dev
  libgloo-dev                           # c10d's Gloo backend: data-parallel training
  libprotobuf-dev protobuf-compiler libboost-dev  # TensorBoard event files (protobuf, CRC-32C)
  clang libclang-rt-14-dev              # libFuzzer and the sanitizers for fuzz/ (scripts/fuzz.sh)
  libgoogle-perftools-dev               # tcmalloc: freed activations reused, not faulted in again each step
  python3                               # the C API's ctypes example (examples/python), run by a test
  chromium                              # the web page's test in a real (headless) browser
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# LibTorch links libblas.so.3; make sure the alternative points at OpenBLAS.
blas=/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3
if [ -e "$blas" ] && [ "$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)" != "$(readlink -f "$blas")" ]; then
  ${sudo_cmd:-} update-alternatives --set libblas.so.3-x86_64-linux-gnu "$blas"
fi

# ccache can reuse compiles that use the LibTorch precompiled header only with these.
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
