// Small helpers for dotted state-dict keys ("down_blocks.0.resnets.1.conv1.weight"),
// shared by the key maps in both directions.
#pragma once
#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

namespace lumen::key_path {

using Parts = std::vector<std::string>;

inline bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

inline Parts split_dots(const std::string& s) {
  Parts parts;
  size_t start = 0;
  for (size_t dot; (dot = s.find('.', start)) != std::string::npos; start = dot + 1)
    parts.push_back(s.substr(start, dot - start));
  parts.push_back(s.substr(start));
  return parts;
}

inline std::string join_from(const Parts& parts, size_t from) {
  std::string out;
  for (size_t i = from; i < parts.size(); ++i) out += (i > from ? "." : "") + parts[i];
  return out;
}

// Non-negative decimal index, or -1 if `s` is not one.
inline int parse_index(const std::string& s) {
  if (s.empty() || s.size() > 6 ||
      !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; }))
    return -1;
  return std::stoi(s);
}

}  // namespace lumen::key_path
