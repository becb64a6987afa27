#include "server/auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "error.h"
#include "server/base64.h"

namespace lumen::server {

bool constant_time_equals(const std::string& a, const std::string& b) {
  // Comparing digests hides the lengths too.
  unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(a.data()), a.size(), da);
  SHA256(reinterpret_cast<const unsigned char*>(b.data()), b.size(), db);
  return CRYPTO_memcmp(da, db, sizeof da) == 0;
}

Auth Auth::api_key(const std::string& key) {
  if (key.empty()) throw Error("--api-key", "is empty");
  Auth auth;
  auth.mode_ = Mode::Key;
  auth.secrets_ = {key};
  return auth;
}

Auth Auth::basic(const std::string& credentials) {
  Auth auth;
  auth.mode_ = Mode::Basic;
  size_t begin = 0;
  while (begin <= credentials.size()) {
    const size_t comma = std::min(credentials.find(',', begin), credentials.size());
    const std::string pair = credentials.substr(begin, comma - begin);
    const size_t colon = pair.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == pair.size())
      throw Error("--api-auth", "expects USER:PASSWORD[,USER:PASSWORD...]");
    auth.secrets_.push_back(pair);
    begin = comma + 1;
  }
  return auth;
}

bool Auth::allows(const std::string& authorization) const {
  if (mode_ == Mode::Open) return true;
  const std::string scheme = mode_ == Mode::Key ? "Bearer " : "Basic ";
  if (authorization.compare(0, scheme.size(), scheme) != 0) return false;
  std::string given = authorization.substr(scheme.size());
  if (mode_ == Mode::Basic) {
    const auto decoded = base64_decode(given);
    if (!decoded) return false;
    given = *decoded;
  }
  bool match = false;
  for (const auto& secret : secrets_) match |= constant_time_equals(given, secret);  // no early exit
  return match;
}

std::string Auth::challenge() const {
  return mode_ == Mode::Basic ? "Basic realm=\"lumen\", charset=\"UTF-8\"" : "Bearer realm=\"lumen\"";
}

}  // namespace lumen::server
