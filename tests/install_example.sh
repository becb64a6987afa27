#!/usr/bin/env bash
# Installs Lumen into a temporary prefix and builds the example apps against
# it with find_package(lumen): a C app (lumen.h) and a C++ app (lumen.hpp).
# Both run on the embedded default model that the package installed, found
# beside liblumen.so; so does the Python ctypes example on the installed library.
set -euo pipefail
build_dir=$1
source_dir=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/lumen_install_XXXXXX)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
# Only the public headers are installed.
headers=$(cd "$work/prefix/include" && find . -type f | sort | tr '\n' ' ')
[[ $headers == "./lumen/lumen.h ./lumen/lumen.hpp " ]] || { echo "installed headers: $headers"; exit 1; }
for app in c_app cpp_app; do
  cmake -S "$source_dir/examples/$app" -B "$work/$app" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
  cmake --build "$work/$app" >/dev/null
done
# Elsewhere than the source tree, so the assets can only come from the package.
cd "$work"
"$work/c_app/c_app" "a large red circle at the right on a black background" "$work/c.png" 2>/dev/null | tee "$work/c.txt"
grep -q "Steps: 25," "$work/c.txt"
"$work/cpp_app/cpp_app" "a small blue square at the top on a white background" "$work/cpp.png" | tee "$work/cpp.txt"
grep -q "^cancelled: " "$work/cpp.txt"
python3 "$source_dir/examples/python/txt2img.py" --lib "$(find "$work/prefix" -name liblumen.so | head -1)" "a small green triangle on a black background" \
  "$work/py.png" 2>/dev/null
test -s "$work/c.png" && test -s "$work/cpp.png" && test -s "$work/py.png"
echo "installed package: C, C++ and Python apps made their images"
