// The one place that turns a model's output (ε, v or x₀, as the config says)
// into the x₀ and ε a sampler steps with. Two forms of the same relation:
// - variance preserving, x_t = α·x₀ + σ·ε with α = √ᾱ, σ = √(1 − ᾱ)
//   (DDIM, LCM, PNDM; the multistep solvers with their float32 α_t, σ_t);
// - k-diffusion's, x = x₀ + σ·ε on inputs scaled by 1/√(σ² + 1) (Euler).
#pragma once
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "samplers/scheduler.h"

namespace lumen::samplers {

// `Level` is a double or a 0-dim float32 tensor; expressions keep the
// reference's order of operations, so results match it to float32 rounding.
template <typename Level>
torch::Tensor predicted_x0(Prediction prediction, const torch::Tensor& output, const torch::Tensor& x,
                           const Level& alpha, const Level& sigma) {
  switch (prediction) {
    case Prediction::Epsilon:
      return (x - sigma * output) / alpha;
    case Prediction::V:
      return alpha * x - sigma * output;
    case Prediction::Sample:
      break;
  }
  return output;
}

template <typename Level>
torch::Tensor predicted_epsilon(Prediction prediction, const torch::Tensor& output, const torch::Tensor& x,
                                const Level& alpha, const Level& sigma) {
  switch (prediction) {
    case Prediction::Epsilon:
      break;
    case Prediction::V:
      return alpha * output + sigma * x;
    case Prediction::Sample:
      return (x - alpha * output) / sigma;
  }
  return output;
}

// x₀ in k-diffusion's form at noise level σ (x = x₀ + σ·ε).
inline torch::Tensor denoised_at_sigma(Prediction prediction, const torch::Tensor& output, const torch::Tensor& x,
                                       double sigma) {
  switch (prediction) {
    case Prediction::Epsilon:
      return x - sigma * output;
    case Prediction::V:
      return output * (-sigma / std::sqrt(sigma * sigma + 1)) + x / (sigma * sigma + 1);
    case Prediction::Sample:
      break;
  }
  return output;
}

// ε-prediction cannot give x₀ where ᾱ = 0 (the last step of a zero-terminal-SNR
// schedule): refused when the steps are set, naming the sampler `who`.
void refuse_epsilon_at_zero_snr(const ScheduleConfig& config, const torch::Tensor& alphas_cumprod,
                                const std::vector<int64_t>& timesteps, const std::string& who);

}  // namespace lumen::samplers
