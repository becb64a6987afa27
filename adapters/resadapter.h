// ResAdapter (Cheng et al. 2024, bytedance/res-adapter): a kohya-named LoRA on
// the UNet's down/upsampler convolutions plus replacement GroupNorm weights for
// every ResNet block (norm1/norm2), so a model generates well at resolutions
// it was not trained for.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>

#include "adapters/lora_apply.h"

namespace lumen::adapters {

struct ResAdapterFiles {
  std::string lora, norms;
};
// PATH is a folder with the released files (pytorch_lora_weights.safetensors,
// diffusion_pytorch_model.safetensors) or "LORA_FILE,NORMS_FILE".
ResAdapterFiles resadapter_files(const std::string& path);

struct ResAdapterWeights {
  std::shared_ptr<const LoraFile> lora;
  std::string norms_path;
  std::map<std::string, torch::Tensor> norms;  // "down_blocks.0.resnets.0.norm1.weight" -> float32
};
// Throws lumen::Error naming the file and key when a norm key is not a ResNet GroupNorm parameter.
ResAdapterWeights read_resadapter(const ResAdapterFiles& files);

enum class NormMode {
  Replace,  // the reference: adapter norms whatever the scale; only the LoRA half is scaled
  Blend,    // norms (1 - s)·base + s·adapter, LoRA at s
};

// A ResAdapter applied to one UNet; remove() restores its weights exactly.
class AppliedResAdapter {
 public:
  // Throws lumen::Error naming the file and key when the adapter does not fit
  // this UNet; the UNet is then unchanged.
  AppliedResAdapter(std::shared_ptr<torch::nn::Module> unet, ResAdapterWeights weights, double scale,
                    NormMode norm_mode = NormMode::Replace, ApplyMode lora_mode = ApplyMode::Merge);
  void set_scale(double scale);
  void remove();
  const MatchReport& report() const { return report_; }

 private:
  void set_norms();

  ResAdapterWeights weights_;
  double scale_;
  NormMode norm_mode_;
  LoraStack lora_;
  MatchReport report_;
  std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> norms_;  // key -> (the UNet's parameter, base copy)
  bool removed_ = false;
};

}  // namespace lumen::adapters
