// A model folder may recommend its generation settings in lumen_generation.json
// ({"steps": 25, "cfg_scale": 4, "guidance_rescale": 0.7}); the embedded
// default model carries one. Settings the caller gives win over them.
#pragma once
#include <optional>
#include <string>

namespace lumen {

struct RecommendedSettings {
  std::optional<int64_t> steps;
  std::optional<double> cfg_scale, guidance_rescale;
};

// A single file carries them in its safetensors metadata under this key
// (`lumen convert` puts them there).
inline constexpr const char* kRecommendedSettingsKey = "lumen_generation";

// Empty when the model (a folder or a file) recommends nothing. Throws
// lumen::Error naming the file when it is malformed.
RecommendedSettings read_recommended_settings(const std::string& model_path);

// The recommendation as JSON text ("" if none), for `lumen convert` to carry over.
std::string recommended_settings_text(const std::string& model_path);

}  // namespace lumen
