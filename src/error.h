// Lumen's one exception type: every user-facing failure names the file (or
// object) and the problem, so the CLI can print it and exit cleanly.
#pragma once
#include <stdexcept>
#include <string>

namespace lumen {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
  // "<where>: <problem>", where is usually a file path.
  Error(const std::string& where, const std::string& problem)
      : std::runtime_error(where + ": " + problem) {}
};

}  // namespace lumen
