// The server's request parsing: A1111 txt2img/img2img JSON bodies (field
// types and ranges, <lora:...> tags, base64 uploads, sampler names). ApiError
// is its documented refusal; anything else is a crash.
#include <nlohmann/json.hpp>

#include "fuzz_common.h"
#include "server/a1111_request.h"
#include "server/api_error.h"
#include "server/base64.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const nlohmann::json body = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  const lumen::server::Limits limits;
  for (bool img2img : {false, true}) {
    try {
      const auto r = lumen::server::parse_generation_request(body, img2img, limits);
      if (r.steps && (*r.steps < 1 || *r.steps > limits.max_steps)) std::abort();
      if (r.batch_size * r.n_iter > limits.max_images) std::abort();
      if (r.width && r.height && int64_t{*r.width} * *r.height > limits.max_pixels) std::abort();
      if (img2img && r.init_image_bytes.empty()) std::abort();
    } catch (const lumen::server::ApiError& e) {
      if (e.status != 404 && e.status != 422) std::abort();
    }
  }
  // The raw text as a prompt and as base64.
  std::vector<lumen::server::LoraTag> tags;
  try {
    lumen::server::extract_lora_tags(text, tags);
  } catch (const lumen::server::ApiError&) {
  }
  if (const auto bytes = lumen::server::base64_decode(text))
    if (lumen::server::base64_decode(lumen::server::base64_encode(*bytes)) != bytes) std::abort();
  return 0;
}
