// The folder format of Lumen's own small trained networks (perception and
// reward models): config.json (with a "kind") + model.safetensors. Loading
// checks the kind, every tensor's presence and shape, and names the file.
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>

namespace lumen::train {

// Lumen's judges are small (the shipped ones hold about 10⁵–10⁶ parameters);
// a config asking for more than this is refused before anything is built.
constexpr double kMaxJudgeParameters = 1 << 27;
std::string too_many_parameters(double parameters);

void save_model_folder(const std::string& folder, torch::nn::Module& module, const nlohmann::json& config);
// config.json of a folder, checked to be of `kind` (a clear error otherwise).
nlohmann::json read_model_config(const std::string& folder, const std::string& kind);
// A config field read as T, `fallback` when absent; a wrong type is an error
// naming `where` and the field.
template <class T>
T config_field(const nlohmann::json& config, const char* key, T fallback, const std::string& where);

// Saves an optimizer's state through write_file_atomically: torch::save to a
// path aborted the process when the disk filled (its stream writer's
// destructor throws), with a LibTorch backtrace instead of "disk full".
void save_optimizer_state(torch::optim::Optimizer& optimizer, const std::string& file);

// An optimizer's state saved by torch::save; a missing or damaged file is an
// error naming it (LibTorch's own "PytorchStreamReader failed …" names none).
void load_optimizer_state(torch::optim::Optimizer& optimizer, const std::string& file);

// Copies every parameter and buffer of `module` from the folder's weights.
void load_model_weights(const std::string& folder, torch::nn::Module& module);

}  // namespace lumen::train
