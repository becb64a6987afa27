#include "adapters/resadapter.h"

#include <filesystem>
#include <sstream>

#include "convert/key_path.h"
#include "error.h"
#include "io/safetensors_torch.h"

namespace lumen::adapters {
namespace {

const char* kLoraName = "res_adapter";

std::string shape_str(at::IntArrayRef shape) {
  std::ostringstream s;
  s << shape;
  return s.str();
}

// "(down_blocks.N|mid_block|up_blocks.N).resnets.N.norm(1|2).(weight|bias)"; a
// scan, not std::regex, which recurses per character of a stranger's key.
bool is_resnet_norm_key(const std::string& key) {
  using key_path::parse_index;
  const auto p = key_path::split_dots(key);
  size_t i = 0;
  if (p.size() == 5 && p[0] == "mid_block") i = 1;
  else if (p.size() == 6 && (p[0] == "down_blocks" || p[0] == "up_blocks") && parse_index(p[1]) >= 0) i = 2;
  else return false;
  return p[i] == "resnets" && parse_index(p[i + 1]) >= 0 && (p[i + 2] == "norm1" || p[i + 2] == "norm2") &&
         (p[i + 3] == "weight" || p[i + 3] == "bias");
}

}  // namespace

ResAdapterFiles resadapter_files(const std::string& path) {
  const auto comma = path.find(',');
  if (comma != std::string::npos) {
    ResAdapterFiles files{path.substr(0, comma), path.substr(comma + 1)};
    if (files.lora.empty() || files.norms.empty())
      throw Error(path, "names an empty file; give the folder or LORA_FILE,NORMS_FILE");
    return files;
  }
  if (!std::filesystem::is_directory(path))
    throw Error(path, "is not a ResAdapter folder; give the folder or LORA_FILE,NORMS_FILE");
  ResAdapterFiles files{path + "/pytorch_lora_weights.safetensors", path + "/diffusion_pytorch_model.safetensors"};
  for (const auto& f : {files.lora, files.norms})
    if (!std::filesystem::exists(f)) throw Error(f, "missing: a ResAdapter folder holds this file");
  return files;
}

ResAdapterWeights read_resadapter(const ResAdapterFiles& files) {
  ResAdapterWeights w;
  w.lora = std::make_shared<LoraFile>(read_lora_file(files.lora));
  w.norms_path = files.norms;
  for (const auto& [key, tensor] : load_safetensors(files.norms)) {
    if (!is_resnet_norm_key(key))
      throw Error(files.norms, key + ": not a ResNet GroupNorm parameter (expected e.g. down_blocks.0.resnets.0.norm1.weight)");
    if (!tensor.is_floating_point() || tensor.dim() != 1)
      throw Error(files.norms, key + ": must be a 1-D floating-point tensor; it is " +
                                   std::string(c10::toString(tensor.scalar_type())) + " of shape " + shape_str(tensor.sizes()));
    w.norms[key] = tensor.to(torch::TensorOptions().dtype(torch::kFloat), false, /*copy=*/true);
    if (!torch::isfinite(w.norms[key]).all().item<bool>())
      throw Error(files.norms, key + ": holds non-finite values (NaN or inf)");
  }
  if (w.norms.empty()) throw Error(files.norms, "holds no GroupNorm parameters; is it a ResAdapter norm file?");
  return w;
}

AppliedResAdapter::AppliedResAdapter(std::shared_ptr<torch::nn::Module> unet, ResAdapterWeights weights, double scale,
                                     NormMode norm_mode, ApplyMode lora_mode)
    : weights_(std::move(weights)), scale_(scale), norm_mode_(norm_mode), lora_({{"unet", unet}}, lora_mode) {
  auto params = unet->named_parameters();
  for (const auto& [key, value] : weights_.norms) {
    const torch::Tensor* p = params.find(key);
    if (!p) throw Error(weights_.norms_path, key + ": this UNet has no such parameter (an adapter for another base model?)");
    if (p->sizes() != value.sizes())
      throw Error(weights_.norms_path, key + ": shape " + shape_str(value.sizes()) + " but the UNet's is " +
                                           shape_str(p->sizes()) + " (an adapter for another base model?)");
    norms_.emplace(key, std::make_pair(*p, p->detach().clone()));
  }
  report_ = lora_.add(kLoraName, weights_.lora, scale);  // throws before changing anything
  set_norms();
}

void AppliedResAdapter::set_norms() {
  torch::NoGradGuard no_grad;
  for (auto& [key, slot] : norms_) {
    auto adapter = weights_.norms.at(key).to(slot.first.options());
    // lerp is exact at both ends: s = 1 gives the adapter's values, s = 0 the base's.
    slot.first.copy_(norm_mode_ == NormMode::Replace ? adapter : torch::lerp(slot.second, adapter, scale_));
  }
}

void AppliedResAdapter::set_scale(double scale) {
  if (removed_) throw Error(weights_.norms_path, "ResAdapter was removed; apply it again");
  scale_ = scale;
  lora_.set_scale(kLoraName, scale);
  set_norms();
}

void AppliedResAdapter::remove() {
  if (removed_) return;
  lora_.clear();
  torch::NoGradGuard no_grad;
  for (auto& [key, slot] : norms_) slot.first.copy_(slot.second);
  removed_ = true;
}

}  // namespace lumen::adapters
