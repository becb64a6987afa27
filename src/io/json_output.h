// JSON as text for output: to the terminal, a file or an HTTP client.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace lumen {

// Strings here hold bytes from file names, prompts and PNG text, which need
// not be UTF-8; their bad bytes become U+FFFD instead of making dump() throw.
inline std::string dump_for_output(const nlohmann::json& value, int indent = -1) {
  return value.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace lumen
