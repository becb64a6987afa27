// Random-weight models in the real architectures, for measurements and tests:
// presets "sd15", "sd21", "sdxl", "shapes" (the embedded default model's
// architecture) and "tiny". Written to a diffusers folder, or built in memory.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace lumen {

struct LoadedModel;

// A preset's diffusers configs: "unet", "vae", "text_encoder", maybe
// "text_encoder_2", and "scheduler". An unknown name is an error listing the presets.
nlohmann::json random_preset_configs(const std::string& preset);

// Each file is written atomically; the caller decides whether an existing
// folder may be replaced.
void write_random_model(const std::string& folder, const std::string& preset, uint64_t seed);

// The same weights' distribution, built in memory in float32 or bfloat16
// (filled after conversion: no float32 copy of a bf16 model is ever held).
std::shared_ptr<LoadedModel> make_random_model(const std::string& preset, uint64_t seed, bool bf16);

}  // namespace lumen
