#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/: clang, AddressSanitizer + UBSan), runs
# the parsers' torch-free unit suites built with the same sanitizers, then
# runs each target for a bounded time: first every saved crash regression once
# (fuzz/regressions/<target>/), then new inputs grown from the seed corpus
# (fuzz/corpus/<target>/, copied: the repository's corpus is not changed).
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 20 s, all)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(safetensors keymap tokenizer prompt recipe png a1111)

cmake -S fuzz -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null
cmake --build build-fuzz -j "$(nproc)"

# The torch-free unit suites of these parsers, sanitized.
for suite in build-fuzz/sanitized_test_*; do
  [[ $suite != *.log && -x $suite ]] || continue  # an earlier run's logs sit beside them
  "$suite" --gtest_brief=1 >build-fuzz/"$(basename "$suite")".log 2>&1 ||
    { tail -40 build-fuzz/"$(basename "$suite")".log; echo "fuzz: $suite fails under the sanitizers"; exit 1; }
  echo "fuzz: $(basename "$suite"): $(grep -o '[0-9]* tests\? from [0-9]* test suites\? ran' build-fuzz/"$(basename "$suite")".log | head -1), no sanitizer report"
done

for t in "${targets[@]}"; do
  bin=build-fuzz/fuzz_$t
  if compgen -G "fuzz/regressions/$t/*" >/dev/null; then
    "$bin" fuzz/regressions/$t/* 2>build-fuzz/$t-regressions.log ||
      { tail -40 build-fuzz/$t-regressions.log; echo "fuzz: $t: a saved regression fails again"; exit 1; }
  fi
  work=build-fuzz/corpus-$t
  rm -rf "$work" && mkdir -p "$work" && cp fuzz/corpus/$t/* "$work"/
  if ! "$bin" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix=build-fuzz/crash-$t- "$work" 2>build-fuzz/$t.log; then
    tail -40 build-fuzz/$t.log
    echo "fuzz: $t found a crash: build-fuzz/crash-$t-*; add it to fuzz/regressions/$t/ with its fix"
    exit 1
  fi
  echo "fuzz: $t: $(grep -o 'stat::number_of_executed_units: *[0-9]*' build-fuzz/$t.log | grep -o '[0-9]*$' || echo '?') runs in ${seconds} s, no crash"
done
