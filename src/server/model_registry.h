// The models and LoRAs the server may load: the embedded default model plus
// what lies in the configured folders. Requests name an entry of these lists,
// never a path, so nothing outside the folders can be reached.
#pragma once
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace lumen::server {

struct ModelEntry {
  std::string title;       // A1111's title: the path relative to --models-dir ("sub/model.safetensors")
  std::string model_name;  // the title without its extension
  std::string path;        // "" for the embedded default model
};

struct LoraEntry {
  std::string name;  // the file name without extension, as <lora:NAME:W> names it
  std::string path;
};

class ModelRegistry {
 public:
  static constexpr const char* kDefaultTitle = "lumen-default";

  ModelRegistry(std::string models_dir, std::string lora_dir);  // "" for none; scans both
  void refresh_models();
  void refresh_loras();

  std::vector<ModelEntry> models() const;
  std::vector<LoraEntry> loras() const;
  // By title, model_name or title with A1111's " [hash]" suffix.
  std::optional<ModelEntry> find_model(const std::string& name) const;
  std::optional<LoraEntry> find_lora(const std::string& name) const;

 private:
  const std::string models_dir_, lora_dir_;
  mutable std::mutex mutex_;
  std::vector<ModelEntry> models_;
  std::vector<LoraEntry> loras_;
};

}  // namespace lumen::server
