#include "pipeline/recommended_settings.h"

#include <filesystem>

#include "error.h"
#include "model/model_loader.h"

namespace lumen {

RecommendedSettings read_recommended_settings(const std::string& model_path) {
  RecommendedSettings r;
  const std::string file = model_path + "/lumen_generation.json";
  if (!std::filesystem::is_regular_file(file)) return r;
  const auto j = read_yaml_or_json(file);
  if (!j.is_object()) throw Error(file, "must be a JSON object");
  try {
    if (j.contains("steps")) r.steps = j.at("steps").get<int64_t>();
    if (j.contains("cfg_scale")) r.cfg_scale = j.at("cfg_scale").get<double>();
    if (j.contains("guidance_rescale")) r.guidance_rescale = j.at("guidance_rescale").get<double>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(file, std::string("bad field: ") + e.what());
  }
  return r;
}

}  // namespace lumen
