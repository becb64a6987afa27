// Architecture detection for single-file (LDM / SGM) Stable Diffusion
// checkpoints: family and diffusers / transformers configs inferred from the
// tensor names and shapes alone. What the weights cannot tell (head counts,
// upcasting, sample sizes, VAE scaling) comes from family rules and is
// reported in `notes`; callers may override any field with a user config.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "convert/ldm_keymap.h"

namespace lumen {

enum class ModelFamily { SD1, SD2, SDXL, SDXLRefiner, Unknown };

const char* family_name(ModelFamily f);  // "SD1", "SD2", "SDXL", "SDXLRefiner", "Unknown"

struct DetectedArch {
  ModelFamily family = ModelFamily::Unknown;
  nlohmann::json unet_config;            // diffusers UNet2DConditionModel config fields
  nlohmann::json vae_config;             // diffusers AutoencoderKL config fields (null if no VAE)
  nlohmann::json text_encoder_config;    // transformers CLIPTextConfig fields (null if no TE)
  nlohmann::json text_encoder_2_config;  // CLIPTextModelWithProjection config (SDXL), else null
  std::vector<std::string> notes;        // what was guessed or not understood
};

// Infers family and configs from keys + shapes. Throws
// lumen::Error(file_for_errors, ...) if it is not a recognisable SD-family
// checkpoint (no LDM UNet, or a UNet whose layout does not parse).
DetectedArch detect_architecture(const std::vector<TensorInfo>& tensors, const std::string& file_for_errors);

}  // namespace lumen
