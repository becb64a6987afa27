#include "model_folder.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

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

std::string too_many_parameters(double parameters) {
  char text[160];
  std::snprintf(text, sizeof text, "asks for a network of %.3g parameters (at most %.3g: these judges are small)",
                parameters, kMaxJudgeParameters);
  return text;
}

namespace {

// A whole number: an integer, or a float with no fraction (64.0). A fraction
// was once truncated silently (channels [8.9, 8.2] read as [8, 8]).
bool whole_number(const nlohmann::json& v) {
  if (v.is_number_integer()) return true;
  if (!v.is_number_float()) return false;
  const double d = v.get<double>();
  return std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9.0e15;
}

}  // namespace

template <class T>
T config_field(const nlohmann::json& config, const char* key, T fallback, const std::string& where) {
  if (!config.contains(key)) return fallback;
  const auto& value = config.at(key);
  const auto wrong = [&](const char* what) {
    return Error(where, std::string("config field '") + key + "' " + what);
  };
  if constexpr (std::is_same_v<T, int64_t>) {
    if (!whole_number(value)) throw wrong("must be a whole number");
    return static_cast<int64_t>(value.get<double>());
  } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
    if (!value.is_array()) throw wrong("must be a list of whole numbers");
    T out;
    for (const auto& item : value) {
      if (!whole_number(item)) throw wrong("must be a list of whole numbers");
      out.push_back(static_cast<int64_t>(item.get<double>()));
    }
    return out;
  } else if constexpr (std::is_same_v<T, double>) {
    if (!value.is_number() || !std::isfinite(value.get<double>())) throw wrong("must be a finite number");
    return value.get<double>();
  } else {
    if (!value.is_string()) throw wrong("must be a string");
    return value.get<std::string>();
  }
}
template std::string config_field(const nlohmann::json&, const char*, std::string, const std::string&);
template int64_t config_field(const nlohmann::json&, const char*, int64_t, const std::string&);
template double config_field(const nlohmann::json&, const char*, double, const std::string&);
template std::vector<int64_t> config_field(const nlohmann::json&, const char*, std::vector<int64_t>, const std::string&);

void save_optimizer_state(torch::optim::Optimizer& optimizer, const std::string& file) {
  std::ostringstream bytes;
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  archive.save_to(bytes);  // in memory: cannot fail for want of disk
  const std::string data = bytes.str();
  write_file_atomically(file, [&](std::ostream& out) { out.write(data.data(), static_cast<std::streamsize>(data.size())); });
}

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
