// Small helpers the training, feedback and reward suites share.
#pragma once
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "error.h"

namespace lumen::testing {

// A fresh folder under /tmp, removed with everything in it at scope exit.
struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/lumen-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string path;
};

// Writes `text` to `path` and returns the path.
inline std::string write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

// Replaces every occurrence of each key (placeholders in recipe templates).
inline std::string fill(std::string text, const std::map<std::string, std::string>& values) {
  for (const auto& [key, value] : values)
    for (size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + value.size()))
      text.replace(at, key.size(), value);
  return text;
}

inline double mean(const std::vector<double>& v, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += v[i];
  return s / static_cast<double>(to - from);
}

// The message of the lumen::Error `fn` throws, or "no error".
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace lumen::testing
