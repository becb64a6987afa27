// Reading small text files (configs, vocabularies, indexes) the same careful
// way everywhere: only regular files (a FIFO would block), and JSON errors
// as "<file>: is not valid JSON: <where>" without the library's tags. Torch-free.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace lumen {

// Throws lumen::Error naming `path` unless it is a regular file: a FIFO or a
// device would block a reader or never end.
void require_regular_file(const std::string& path);

// The whole file; throws lumen::Error naming it (missing, not a regular file, unreadable).
std::string read_text_file(const std::string& path);

// The file parsed as JSON; throws lumen::Error naming it and the position of a syntax error.
nlohmann::json read_json_file(const std::string& path);

// nlohmann's message without its "[json.exception.parse_error.101] " tag.
std::string json_error_message(const nlohmann::json::exception& e);

}  // namespace lumen
