#!/usr/bin/env bash
# Builds Lumen (installing what is missing) and runs every test suite.
# Golden data: $LUMEN_GOLDEN_DIR, default ../shared/golden.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
(cd build && ctest --output-on-failure -j 1 "$@")
# The parsers of untrusted input, fuzzed for a bounded time (and their saved crashes replayed).
scripts/fuzz.sh "${LUMEN_FUZZ_SECONDS:-20}"
