#include "server/base64.h"

#include <openssl/evp.h>

#include <cctype>

namespace lumen::server {

std::string base64_encode(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::optional<std::string> base64_decode(const std::string& text) {
  size_t begin = 0;
  if (text.rfind("data:", 0) == 0) {
    const size_t comma = text.find(',');
    // "data:" MEDIATYPE ";base64,": the comma cannot come before the 12th character.
    if (comma == std::string::npos || comma < 12 || text.compare(comma - 7, 7, ";base64") != 0) return std::nullopt;
    begin = comma + 1;
  }
  std::string clean;
  clean.reserve(text.size() - begin);
  for (size_t i = begin; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '\n' || c == '\r' || c == ' ' || c == '\t') continue;
    if (!std::isalnum(c) && c != '+' && c != '/' && c != '=') return std::nullopt;
    clean.push_back(static_cast<char>(c));
  }
  if (clean.empty() || clean.size() % 4 != 0) return std::nullopt;
  const size_t first_pad = clean.find('=');
  size_t padding = 0;
  if (first_pad != std::string::npos) {
    padding = clean.size() - first_pad;
    if (padding > 2 || clean.find_first_not_of('=', first_pad) != std::string::npos) return std::nullopt;
  }
  std::string out(clean.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(clean.data()), static_cast<int>(clean.size()));
  if (n < 0 || static_cast<size_t>(n) != out.size()) return std::nullopt;
  out.resize(out.size() - padding);
  return out;
}

}  // namespace lumen::server
