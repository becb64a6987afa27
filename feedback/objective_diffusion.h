// The denoising-loss objective (tasks diffusion and lora), shared with
// feedback learning, which adds its rewards to this loss and keeps its model,
// LoRA, sampling, judging and final output (internal to feedback/).
#pragma once
#include <memory>
#include <nlohmann/json.hpp>

#include "lora_trainable.h"
#include "objective_parts.h"
#include "pipeline/pipeline.h"
#include "samplers/scheduler.h"
#include "shapes/shapes_world.h"

namespace lumen::train {

class DiffusionObjective : public Objective {
 public:
  explicit DiffusionObjective(const Recipe& recipe);
  NamedTensors trainable() override;
  torch::Tensor loss(const Batch& batch, at::Generator& gen, Metrics& metrics) override;
  void sample(const std::string& png, Metrics& metrics) override;
  void write_final(const std::string& folder) override;

 protected:
  // VAE latents (model space) of images in [-1,1], sampled from the posterior; no gradients.
  torch::Tensor latents_of(const torch::Tensor& images, at::Generator& gen);
  // One denoising example per latent: noised at a drawn step, captions dropped
  // at random, the UNet's prediction and what it should have predicted.
  struct Denoised {
    torch::Tensor noisy, timesteps, context, prediction, target;
  };
  Denoised denoise(const torch::Tensor& latents, const std::vector<std::string>& captions, at::Generator& gen);
  // ε/v loss of noised latents, with caption dropout.
  torch::Tensor denoising_loss(const torch::Tensor& latents, const std::vector<std::string>& captions, at::Generator& gen);
  torch::Tensor encode(const std::vector<std::string>& captions);
  // The recipe's sampling settings at the training resolution, or at another.
  GenerationOptions sample_options(uint64_t seed) const;
  GenerationOptions sample_options(uint64_t seed, const Resolution& size) const;
  static torch::Tensor pad_to_common_size(const std::vector<torch::Tensor>& batches);

  const Recipe& recipe_;
  nlohmann::json schedule_;
  std::shared_ptr<LoadedModel> model_;
  std::unique_ptr<TrainableLora> lora_;
  NamedTensors resnet_norms_;  // ResAdapter: the UNet's ResNet GroupNorm parameters being trained
  nn::UNet2DCondition base_unet_{nullptr};  // ResAdapter with preserve_base: the frozen model it must not change at its own size
  samplers::Prediction prediction_ = samplers::Prediction::Epsilon;
  torch::Tensor alphas_cumprod_;

 private:
  bool train_text_encoder() const;
  bool train_unet() const;
  torch::Tensor ids_of(const std::vector<std::string>& captions) const;
  void judge_split(const Pipeline& pipeline, shapes::Split split, const Resolution& size, const std::string& prefix,
                   Metrics& metrics) const;
};

}  // namespace lumen::train
