#include "server/a1111_request.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "samplers/a1111_names.h"
#include "server/api_error.h"
#include "server/base64.h"

namespace lumen::server {
namespace {

using nlohmann::json;

ApiError invalid(const std::string& field, const std::string& problem) {
  return ApiError(422, "invalid request", field + ": " + problem);
}

const json* field(const json& body, const char* name) {
  const auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

std::optional<std::string> string_field(const json& body, const char* name) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_string()) throw invalid(name, "must be a string");
  return v->get<std::string>();
}

// Integers may come as 20 or 20.0 (pydantic takes both), nothing else.
std::optional<int64_t> int_field(const json& body, const char* name, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number()) throw invalid(name, "must be an integer");
  const std::string range = "must be in " + std::to_string(lo) + ".." + std::to_string(hi);
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi)) throw invalid(name, range);
  const double d = v->get<double>();
  if (!std::isfinite(d) || d != std::floor(d)) throw invalid(name, "must be an integer");
  if (!v->is_number_integer() && (d < static_cast<double>(lo) || d > static_cast<double>(hi))) throw invalid(name, range);
  const int64_t n = v->is_number_integer() ? v->get<int64_t>() : static_cast<int64_t>(d);
  if (n < lo || n > hi) throw invalid(name, range);
  return n;
}

std::optional<float> float_field(const json& body, const char* name, double lo, double hi) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number()) throw invalid(name, "must be a number");
  const double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) throw invalid(name, "must be a number in " + json(lo).dump() + ".." + json(hi).dump());
  return static_cast<float>(d);
}

std::string image_field(const json& value, const std::string& name) {
  if (!value.is_string()) throw invalid(name, "must be a base64 string");
  auto bytes = base64_decode(value.get<std::string>());
  if (!bytes || bytes->empty()) throw invalid(name, "is not valid base64");
  return std::move(*bytes);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

}  // namespace

std::optional<std::string> lumen_sampler(const std::string& name, const std::string& scheduler) {
  const std::string wanted = lower(name);
  const std::string sched = lower(scheduler);
  if (!sched.empty() && sched != "automatic" && sched != "karras") return std::nullopt;
  for (const auto& s : samplers::a1111_samplers()) {
    bool match = wanted == lower(s.a1111) || wanted == s.lumen;
    for (const char* alias : s.aliases) match |= wanted == alias;
    if (!match) continue;
    std::string lumen_name = s.lumen;
    if (sched == "karras" && lumen_name == "dpm++_2m") lumen_name = "dpm++_2m_karras";
    else if (sched == "karras" && lumen_name != "dpm++_2m_karras") return std::nullopt;  // no Karras variant
    return lumen_name;
  }
  return std::nullopt;
}

// A scan, not std::regex: libstdc++'s regex recurses per character and a
// long hostile prompt would overflow the stack.
std::string extract_lora_tags(const std::string& prompt, std::vector<LoraTag>& tags) {
  std::string rest;
  size_t pos = 0;
  for (;;) {
    const size_t open = std::min(prompt.find("<lora:", pos), prompt.find("<lyco:", pos));
    const size_t close = open == std::string::npos ? open : prompt.find('>', open);
    if (close == std::string::npos) break;
    rest += prompt.substr(pos, open - pos);
    pos = close + 1;
    // NAME[:WEIGHT[:MORE]]
    const std::string inner = prompt.substr(open + 6, close - open - 6);
    const size_t colon = inner.find(':');
    LoraTag t;
    t.name = inner.substr(0, colon);
    const std::string w = colon == std::string::npos ? "" : inner.substr(colon + 1, inner.find(':', colon + 1) - colon - 1);
    if (t.name.empty()) throw invalid("prompt", "<lora:" + inner + ">: no LoRA name");
    if (!w.empty()) {
      char* end = nullptr;
      const double weight = std::strtod(w.c_str(), &end);
      if (end != w.c_str() + w.size() || !std::isfinite(weight) || std::abs(weight) > 100)
        throw invalid("prompt", "<lora:" + inner + ">: the weight is not a number within ±100");
      t.weight = static_cast<float>(weight);
    }
    tags.push_back(t);
  }
  return rest + prompt.substr(pos);
}

GenerationRequest parse_generation_request(const json& body, bool img2img, const Limits& limits) {
  if (!body.is_object()) throw ApiError(422, "invalid request", "the body must be a JSON object");
  GenerationRequest r;
  r.prompt = extract_lora_tags(string_field(body, "prompt").value_or(""), r.loras);
  r.negative_prompt = string_field(body, "negative_prompt").value_or("");
  const std::string sampler = string_field(body, "sampler_name").value_or(string_field(body, "sampler_index").value_or(""));
  const std::string scheduler = string_field(body, "scheduler").value_or("");
  if (!sampler.empty()) {
    const auto lumen_name = lumen_sampler(sampler, scheduler);
    if (!lumen_name) throw ApiError(404, "not found", "sampler '" + sampler + "'" +
                                                          (scheduler.empty() ? "" : " with scheduler '" + scheduler + "'") +
                                                          " not found (GET /sdapi/v1/samplers lists them)");
    r.sampler = *lumen_name;
  }
  if (auto v = int_field(body, "steps", 1, limits.max_steps)) r.steps = static_cast<int>(*v);
  for (auto [name, out] : {std::pair{"width", &r.width}, std::pair{"height", &r.height}}) {
    if (auto v = int_field(body, name, 8, limits.max_side)) {
      if (*v % 8) throw invalid(name, "must be a multiple of 8");
      *out = static_cast<int>(*v);
    }
  }
  if (r.width && r.height && static_cast<int64_t>(*r.width) * *r.height > limits.max_pixels)
    throw invalid("width", std::to_string(*r.width) + "x" + std::to_string(*r.height) + " is over the server's limit of " +
                               std::to_string(limits.max_pixels) + " pixels");
  r.cfg_scale = float_field(body, "cfg_scale", 0, 100);
  r.guidance_rescale = float_field(body, "guidance_rescale", 0, 1);
  r.seed = int_field(body, "seed", -1, INT64_MAX).value_or(-1);
  r.batch_size = static_cast<int>(int_field(body, "batch_size", 1, limits.max_images).value_or(1));
  r.n_iter = static_cast<int>(int_field(body, "n_iter", 1, limits.max_images).value_or(1));
  if (r.batch_size * r.n_iter > limits.max_images)
    throw invalid("batch_size", "batch_size·n_iter is over the server's limit of " + std::to_string(limits.max_images));
  if (const json* o = field(body, "override_settings")) {
    if (!o->is_object()) throw invalid("override_settings", "must be an object");
    r.checkpoint = string_field(*o, "sd_model_checkpoint").value_or("");
  }
  if (const json* v = field(body, "override_settings_restore_afterwards")) {
    if (!v->is_boolean()) throw invalid("override_settings_restore_afterwards", "must be true or false");
    r.restore_afterwards = v->get<bool>();
  }
  if (img2img) {
    const json* images = field(body, "init_images");
    if (!images || !images->is_array() || images->empty())
      throw invalid("init_images", "must be a list of base64 images, not empty");
    r.init_image_bytes = image_field(images->front(), "init_images[0]");
    if (const json* m = field(body, "mask")) r.mask_bytes = image_field(*m, "mask");
    r.denoising_strength = float_field(body, "denoising_strength", 0, 1).value_or(0.75f);
  }
  return r;
}

}  // namespace lumen::server
