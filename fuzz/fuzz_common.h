// Shared by the fuzz targets: what counts as a clean refusal, and a scratch
// file for readers that take a path.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "error.h"

namespace lumen::fuzz {

// Runs `body`; lumen::Error is the documented refusal of bad input. Any other
// exception escapes and libFuzzer reports it as a crash.
template <typename Body>
void expect_clean(Body&& body) {
  try {
    body();
  } catch (const lumen::Error&) {
  }
}

// A per-process scratch file holding the input, for path-taking readers.
inline std::string write_scratch(const uint8_t* data, size_t size, const char* suffix) {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    return std::string(tmp && *tmp ? tmp : "/tmp");
  }();
  const std::string path = dir + "/lumen-fuzz-" + std::to_string(::getpid()) + suffix;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

// Where the source tree's assets are (the tokenizer's vocabulary).
inline std::string source_asset(const std::string& relative) { return std::string(LUMEN_SOURCE_ASSET_DIR) + "/" + relative; }

}  // namespace lumen::fuzz
