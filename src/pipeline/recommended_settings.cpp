#include "pipeline/recommended_settings.h"

#include <cmath>
#include <filesystem>
#include <sstream>

#include "error.h"
#include "io/safetensors.h"
#include "model/model_loader.h"
#include "pipeline/pipeline.h"

namespace lumen {

namespace {

// Checked here, against the same limits as the command line, so a bad value
// is blamed on its file rather than on an option the user never gave.
RecommendedSettings parse_settings(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) throw Error(where, "must be a JSON object");
  auto number = [&](const char* key, double min, double max) -> std::optional<double> {
    if (!j.contains(key)) return std::nullopt;
    const auto& v = j.at(key);
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < min || v.get<double>() > max) {
      std::ostringstream range;
      range << "[" << min << ", " << max << "]";
      throw Error(where, std::string("'") + key + "' must be a number in " + range.str());
    }
    return v.get<double>();
  };
  RecommendedSettings r;
  if (j.contains("steps") && !j.at("steps").is_number_integer())
    throw Error(where, "'steps' must be an integer in [1, " + std::to_string(kMaxSteps) + "]");
  if (auto steps = number("steps", 1, kMaxSteps)) r.steps = static_cast<int64_t>(*steps);
  r.cfg_scale = number("cfg_scale", 0, kMaxCfgScale);
  r.guidance_rescale = number("guidance_rescale", 0, 1);
  return r;
}

// A folder's lumen_generation.json: its path, "" when it has none.
std::string settings_file(const std::string& folder) {
  const std::string file = folder + "/lumen_generation.json";
  return std::filesystem::is_regular_file(file) ? file : std::string();
}

}  // namespace

std::string recommended_settings_text(const std::string& model_path) {
  if (std::filesystem::is_directory(model_path)) {
    const std::string file = settings_file(model_path);
    return file.empty() ? std::string() : read_yaml_or_json(file).dump();
  }
  if (!std::filesystem::is_regular_file(model_path)) return {};
  const auto file = SafetensorsFile::open(model_path);
  const auto it = file->metadata().find(kRecommendedSettingsKey);
  return it == file->metadata().end() ? std::string() : it->second;
}

RecommendedSettings read_recommended_settings(const std::string& model_path) {
  if (std::filesystem::is_directory(model_path)) {
    const std::string file = settings_file(model_path);
    return file.empty() ? RecommendedSettings{} : parse_settings(read_yaml_or_json(file), file);
  }
  const std::string text = recommended_settings_text(model_path);
  if (text.empty()) return {};
  const std::string where = model_path + ": metadata " + kRecommendedSettingsKey;
  try {
    return parse_settings(nlohmann::json::parse(text), where);
  } catch (const nlohmann::json::exception&) {
    throw Error(where, "is not valid JSON");
  }
}

}  // namespace lumen
