// AUTOMATIC1111's txt2img/img2img request bodies: field names, sampler names
// and <lora:NAME:WEIGHT> prompt tags as A1111 reads them, checked against the
// server's limits. Fields left out stay unset: the model's recommendation
// fills them.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "lumen/lumen.hpp"

namespace lumen::server {

struct Limits {
  size_t max_body_bytes = 64u << 20;
  int64_t max_pixels = 2048 * 2048;  // width·height of one image
  int max_side = 4096;
  int max_steps = 150;
  int max_images = 16;  // batch_size · n_iter
  // A request body must arrive within this grace period plus its size at the
  // rate below, so a client that trickles it cannot hold a handler for hours.
  double body_grace_seconds = 10;
  double min_body_bytes_per_second = 32 << 10;
};

struct LoraTag {
  std::string name;
  float weight = 1;
};

struct GenerationRequest {
  std::string prompt;  // without its <lora:...> tags
  std::string negative_prompt;
  std::vector<LoraTag> loras;
  std::string sampler;  // Lumen's name; "": the model's scheduler
  std::optional<int> steps, width, height;
  std::optional<float> cfg_scale, guidance_rescale;
  int64_t seed = -1;  // -1: random
  int batch_size = 1, n_iter = 1;
  std::string checkpoint;  // override_settings.sd_model_checkpoint; "": the selected one
  bool restore_afterwards = true;  // override_settings_restore_afterwards: the override is for this request only
  // img2img
  std::string init_image_bytes, mask_bytes;  // the first init image and the mask, base64-decoded; "" for none
  std::shared_ptr<const lumen::Images> init_image, mask;  // those decoded (decode_uploads); null for none
  float denoising_strength = 0.75f;
};

// Throws ApiError 422 (wrong types or values), 404 (unknown sampler).
// Torch- and model-free: uploads stay bytes here (see decode_uploads).
GenerationRequest parse_generation_request(const nlohmann::json& body, bool img2img, const Limits& limits);

// "Euler a", "k_euler_a" or "euler_a" (any case), with A1111's scheduler
// field ("Karras", "Automatic"); nullopt if unknown.
std::optional<std::string> lumen_sampler(const std::string& name, const std::string& scheduler);

// Takes the <lora:NAME:WEIGHT> (and <lyco:...>) tags out of a prompt.
std::string extract_lora_tags(const std::string& prompt, std::vector<LoraTag>& tags);

}  // namespace lumen::server
