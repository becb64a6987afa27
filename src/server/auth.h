// Who may use the server: an API key (Authorization: Bearer KEY) or HTTP
// basic credentials as A1111's --api-auth USER:PASS[,USER:PASS...]. Secrets
// are compared in constant time.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace lumen::server {

class Auth {
 public:
  Auth() = default;  // open: everyone may
  static Auth api_key(const std::string& key);
  static Auth basic(const std::string& credentials);  // "user:pass,user2:pass2"; throws lumen::Error if malformed

  bool open() const { return mode_ == Mode::Open; }
  bool basic_mode() const { return mode_ == Mode::Basic; }
  // Whether a request with this Authorization header value may proceed.
  bool allows(const std::string& authorization) const;
  // The WWW-Authenticate challenge of a 401.
  std::string challenge() const;

 private:
  enum class Mode { Open, Key, Basic };
  Mode mode_ = Mode::Open;
  std::vector<std::string> secrets_;  // the key, or each "user:pass"
};

// Equality that takes the same time wherever the strings differ (and whatever their lengths).
bool constant_time_equals(const std::string& a, const std::string& b);

}  // namespace lumen::server
