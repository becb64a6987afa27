#include "model_folder.h"

#include <filesystem>
#include <fstream>

#include "error.h"
#include "io/atomic_file.h"
#include "io/safetensors_torch.h"
#include "io/text_file.h"

namespace lumen::train {
namespace fs = std::filesystem;

void save_model_folder(const std::string& folder, torch::nn::Module& module, const nlohmann::json& config) {
  fs::create_directories(folder);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& p : module.named_parameters(true)) tensors[p.key()] = p.value().detach().contiguous();
  for (const auto& b : module.named_buffers(true)) tensors[b.key()] = b.value().detach().contiguous();
  save_safetensors(folder + "/model.safetensors", tensors);
  write_text_atomically(folder + "/config.json", config.dump(2));
}

nlohmann::json read_model_config(const std::string& folder, const std::string& kind) {
  const std::string file = folder + "/config.json";
  if (!fs::is_regular_file(file))
    throw Error(folder, "is not a " + kind + " folder (no config.json; train one with a `task: " + kind + "` recipe)");
  const nlohmann::json config = read_json_file(file);
  if (!config.is_object()) throw Error(file, "is not a JSON object (a " + kind + " config)");
  const std::string found = config_field<std::string>(config, "kind", "?", file);
  if (found != kind) throw Error(file, "is a '" + found + "' model, not a " + kind);
  return config;
}

template <class T>
T config_field(const nlohmann::json& config, const char* key, T fallback, const std::string& where) {
  if (!config.contains(key)) return fallback;
  try {
    return config.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw Error(where, std::string("config field '") + key + "' has the wrong type");
  }
}
template std::string config_field(const nlohmann::json&, const char*, std::string, const std::string&);
template int64_t config_field(const nlohmann::json&, const char*, int64_t, const std::string&);
template std::vector<int64_t> config_field(const nlohmann::json&, const char*, std::vector<int64_t>, const std::string&);

void load_optimizer_state(torch::optim::Optimizer& optimizer, const std::string& file) {
  if (!fs::is_regular_file(file)) throw Error(file, "missing (the optimizer's state of this checkpoint)");
  try {
    torch::load(optimizer, file);
  } catch (const c10::Error& e) {
    throw Error(file, "cannot be read as an optimizer state (a damaged checkpoint?): " +
                          std::string(e.what_without_backtrace()).substr(0, 120));
  }
}

void load_model_weights(const std::string& folder, torch::nn::Module& module) {
  const std::string file = folder + "/model.safetensors";
  if (!fs::is_regular_file(file)) throw Error(file, "missing (the model's weights)");
  const auto stored = load_safetensors(file);
  torch::NoGradGuard no_grad;
  auto copy = [&](const std::string& name, torch::Tensor& t) {
    auto it = stored.find(name);
    if (it == stored.end()) throw Error(file, "has no tensor '" + name + "' (does config.json match the weights?)");
    if (it->second.sizes() != t.sizes())
      throw Error(file, "tensor '" + name + "' has shape " + c10::str(it->second.sizes()) + ", the model needs " +
                            c10::str(t.sizes()));
    if (!it->second.is_floating_point() || !torch::isfinite(it->second).all().item<bool>())
      throw Error(file, "tensor '" + name + "' holds non-finite or non-float values");
    t.copy_(it->second);
  };
  for (auto& p : module.named_parameters(true)) copy(p.key(), p.value());
  for (auto& b : module.named_buffers(true)) copy(b.key(), b.value());
}

}  // namespace lumen::train
