// Classifier-free guidance and its rescale (Lin et al. 2023, §3.4).
#pragma once
#include <torch/torch.h>

namespace lumen::samplers {

// uncond + scale · (cond − uncond)
torch::Tensor classifier_free_guidance(const torch::Tensor& uncond, const torch::Tensor& cond, double scale);

// φ · guided·(std(cond)/std(guided)) + (1 − φ) · guided, stds per batch item over
// all other dims (unbiased), as diffusers' rescale_noise_cfg.
torch::Tensor rescale_guidance(const torch::Tensor& guided, const torch::Tensor& cond, double phi);

}  // namespace lumen::samplers
