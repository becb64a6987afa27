// AutoencoderKL (the SD-family VAE), parameter names as diffusers'.
#pragma once
#include <torch/torch.h>

#include "model/configs.h"
#include "nn/blocks.h"

namespace lumen::nn {

struct AutoencoderKLImpl : torch::nn::Module {
  explicit AutoencoderKLImpl(const VaeConfig& config);
  // image in [-1,1] → moments [B, 2·latent, h, w] (mean, logvar).
  torch::Tensor encode_moments(const torch::Tensor& image);
  // Unscaled latents → image (roughly [-1,1]).
  torch::Tensor decode(const torch::Tensor& latents);
  // The diffusion model works on (z − shift)·scale; these convert both ways.
  torch::Tensor to_model_latents(const torch::Tensor& z) const;
  torch::Tensor from_model_latents(const torch::Tensor& latents) const;
  // Training through decode (feedback learning): recompute the decoder's mid
  // block and each ResNet and upsampler of its up blocks in backward instead of
  // keeping their activations (nn/checkpoint.h). Only when grad mode is on.
  void set_gradient_checkpointing(bool on) { gradient_checkpointing_ = on; }

  VaeConfig config;
  std::shared_ptr<torch::nn::Module> encoder, decoder;
  Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};

 private:
  torch::Tensor run_encoder(const torch::Tensor& x);
  torch::Tensor run_decoder(const torch::Tensor& z);
  struct Parts;
  std::shared_ptr<Parts> parts_;
  bool gradient_checkpointing_ = false;
};
TORCH_MODULE(AutoencoderKL);

// mean, logvar (clamped to [-30, 20]) and std of a moments tensor.
struct LatentDistribution {
  torch::Tensor mean, logvar, std;
};
LatentDistribution split_moments(const torch::Tensor& moments);

}  // namespace lumen::nn
