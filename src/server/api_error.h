// An HTTP error answer: status, a short kind and what was wrong.
#pragma once
#include <stdexcept>
#include <string>

namespace lumen::server {

struct ApiError : std::runtime_error {
  ApiError(int status, std::string kind, const std::string& detail)
      : std::runtime_error(detail), status(status), kind(std::move(kind)) {}
  int status;
  std::string kind;
};

}  // namespace lumen::server
