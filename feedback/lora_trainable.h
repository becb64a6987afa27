// LoRA adapters being trained: low-rank pairs (down, up) attached at run time
// to a model's Linear/Conv2d layers, saved in kohya's format so that
// `--lora`, A1111 and ComfyUI load them.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/model_loader.h"
#include "nn/layers.h"

namespace lumen::train {

struct LoraTargets {
  int64_t rank = 4;
  double alpha = 4;
  bool text_encoder = false;  // also the text encoder's attention and MLP
  bool conv = false;          // also the UNet ResNet blocks' 3x3 convolutions (LoCon)
  bool samplers_only = false; // instead: only the UNet's down/upsampler convolutions (a ResAdapter's LoRA half)
};

class TrainableLora {
 public:
  // Attaches zero-effect adapters (up = 0) to kohya's default targets: the
  // UNet transformer blocks' Linear layers (and projections), optionally more.
  TrainableLora(const LoadedModel& model, const LoraTargets& targets, uint64_t seed);
  std::vector<std::pair<std::string, torch::Tensor>> parameters() const;  // kohya key -> tensor
  // kohya keys: lora_unet_<module_with_underscores>.lora_down.weight / .lora_up.weight / .alpha
  void save(const std::string& path, const std::map<std::string, std::string>& metadata) const;
  // Continues from a LoRA this class saved (same targets, rank and alpha);
  // errors name the file and the first key that does not fit.
  void load(const std::string& path);
  size_t modules() const { return entries_.size(); }

 private:
  struct Entry {
    std::string key;  // kohya prefix
    torch::Tensor down, up;
    std::shared_ptr<nn::WeightDelta> delta;
  };
  std::vector<Entry> entries_;
  LoraTargets targets_;
};

}  // namespace lumen::train
