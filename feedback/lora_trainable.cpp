#include "lora_trainable.h"

#include <cmath>

#include "adapters/lora_apply.h"
#include "error.h"
#include "io/safetensors_torch.h"

namespace lumen::train {
namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

bool is_target(const std::string& component, const std::string& name, const LoraTargets& t) {
  if (component == "unet" && t.samplers_only)
    return (name.find(".downsamplers.") != std::string::npos || name.find(".upsamplers.") != std::string::npos) &&
           ends_with(name, ".conv");
  if (component == "unet") {
    if (name.find(".attentions.") != std::string::npos) return true;  // Transformer2D: attn, ff, proj_in/out
    return t.conv && name.find(".resnets.") != std::string::npos && (ends_with(name, ".conv1") || ends_with(name, ".conv2"));
  }
  if (component == "text_encoder" && t.text_encoder)
    return name.find(".self_attn.") != std::string::npos || name.find(".mlp.") != std::string::npos;
  return false;
}

}  // namespace

TrainableLora::TrainableLora(const LoadedModel& model, const LoraTargets& targets, uint64_t seed) : targets_(targets) {
  auto gen = at::detail::createCPUGenerator(seed);
  const auto components = adapters::adapter_components(model);
  const adapters::LayerIndex index(components);
  const double scale = targets.alpha / static_cast<double>(targets.rank);
  for (const auto& [component, root] : components) {
    for (const auto& name : index.names(component)) {
      if (!is_target(component, name, targets)) continue;
      adapters::ModuleDelta probe;
      probe.component = component;
      probe.module = name;
      probe.underscored = false;
      const adapters::AdaptableLayer* layer = index.find(probe);
      if (!layer) continue;
      Entry e;
      e.key = (component == "unet" ? "lora_unet_" : "lora_te_") + adapters::underscored(name);
      const auto& w = layer->weight();
      const int64_t r = targets.rank;
      // kohya's init: down ~ U(±1/sqrt(fan_in)), up = 0, so training starts at the base model.
      std::vector<int64_t> down_shape{r, w.size(1)};
      for (int64_t d = 2; d < w.dim(); ++d) down_shape.push_back(w.size(d));
      const double bound = 1.0 / std::sqrt(static_cast<double>(w[0].numel()));
      e.down = (torch::rand(down_shape, gen) * (2 * bound) - bound).requires_grad_(true);
      std::vector<int64_t> up_shape{w.size(0), r};
      for (int64_t d = 2; d < w.dim(); ++d) up_shape.push_back(1);
      e.up = torch::zeros(up_shape).requires_grad_(true);
      e.delta = std::make_shared<nn::WeightDelta>();
      const torch::Tensor down = e.down, up = e.up;
      if (layer->linear) {
        e.delta->apply = [down, up, scale](const torch::Tensor& x) {
          return torch::nn::functional::linear(torch::nn::functional::linear(x, down.to(x.scalar_type())),
                                               up.to(x.scalar_type())) * scale;
        };
      } else {
        const int64_t stride = layer->conv->stride, padding = layer->conv->padding;
        e.delta->apply = [down, up, scale, stride, padding](const torch::Tensor& x) {
          auto h = torch::conv2d(x, down.to(x.scalar_type()), {}, stride, padding);
          return torch::conv2d(h, up.to(x.scalar_type())) * scale;
        };
      }
      layer->deltas().push_back(e.delta);
      entries_.push_back(std::move(e));
    }
  }
  if (entries_.empty()) throw Error("lora", "the model has no layers LoRA targets");
}

std::vector<std::pair<std::string, torch::Tensor>> TrainableLora::parameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& e : entries_) {
    out.emplace_back(e.key + ".lora_down.weight", e.down);
    out.emplace_back(e.key + ".lora_up.weight", e.up);
  }
  return out;
}

void TrainableLora::load(const std::string& path) {
  const auto stored = load_safetensors(path);
  torch::NoGradGuard no_grad;
  for (auto& e : entries_) {
    for (auto [suffix, target] : {std::pair<const char*, torch::Tensor*>{".lora_down.weight", &e.down}, {".lora_up.weight", &e.up}}) {
      auto it = stored.find(e.key + suffix);
      if (it == stored.end()) throw Error(path, "has no tensor '" + e.key + suffix + "' (another base model or targets?)");
      if (it->second.sizes() != target->sizes())
        throw Error(path, "tensor '" + e.key + suffix + "' has shape " + c10::str(it->second.sizes()) + ", expected " +
                              c10::str(target->sizes()) + " (another rank?)");
      target->copy_(it->second);
    }
    auto alpha = stored.find(e.key + ".alpha");
    if (alpha != stored.end() && std::abs(alpha->second.item<double>() - targets_.alpha) > 1e-6 * targets_.alpha)
      throw Error(path, "alpha " + std::to_string(alpha->second.item<double>()) + " differs from the recipe's " +
                            std::to_string(targets_.alpha));
  }
}

void TrainableLora::save(const std::string& path, const std::map<std::string, std::string>& metadata) const {
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& e : entries_) {
    tensors[e.key + ".lora_down.weight"] = e.down.detach().contiguous();
    tensors[e.key + ".lora_up.weight"] = e.up.detach().contiguous();
    tensors[e.key + ".alpha"] = torch::tensor(static_cast<float>(targets_.alpha));
  }
  auto meta = metadata;
  meta["ss_network_module"] = "networks.lora";
  meta["ss_network_dim"] = std::to_string(targets_.rank);
  meta["ss_network_alpha"] = std::to_string(targets_.alpha);
  save_safetensors(path, tensors, meta);
}

}  // namespace lumen::train
