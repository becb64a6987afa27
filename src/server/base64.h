// Base64 for A1111's image fields (OpenSSL's codec, strict checking).
#pragma once
#include <optional>
#include <string>

namespace lumen::server {

std::string base64_encode(const std::string& bytes);
// Accepts a "data:image/...;base64," prefix and line breaks, as A1111 does;
// nullopt for anything else that is not base64.
std::optional<std::string> base64_decode(const std::string& text);

}  // namespace lumen::server
