#!/usr/bin/env bash
# Installs Lumen into a temporary prefix, builds examples/txt2img_app against
# it with find_package(lumen), and runs it on a tiny random model.
set -euo pipefail
build_dir=$1
source_dir=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/lumen_install_XXXXXX)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
cmake -S "$source_dir/examples/txt2img_app" -B "$work/app" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null
cmake --build "$work/app" >/dev/null
"$work/prefix/bin/lumen" make-random --preset tiny -o "$work/model" >/dev/null
"$work/app/txt2img_app" "$work/model" "a red circle" "$work/out.png" 2>/dev/null
test -s "$work/out.png"
echo "installed package: find_package(lumen) app built and made $work/out.png"
