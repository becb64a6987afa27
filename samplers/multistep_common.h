// Schedule helpers shared by the multistep solvers (DPM-Solver++, UniPC):
// their timestep spacing, Karras sigmas and per-step noise levels, computed
// as diffusers computes them. Defined in discretisation.cpp.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "samplers/discretisation.h"
#include "samplers/scheduler.h"

namespace lumen::samplers::multistep {

torch::Tensor train_sigmas(const torch::Tensor& alphas_cumprod);  // √((1-ᾱ)/ᾱ)
void check_steps(const ScheduleConfig& config, int64_t steps, const std::string& who);
std::vector<int64_t> spaced_timesteps(const ScheduleConfig& config, int64_t steps, int64_t last_timestep,
                                      const std::string& who);
void karras_schedule(const torch::Tensor& sigmas, int64_t steps, std::vector<double>& out_sigmas,
                     std::vector<int64_t>& out_timesteps);
// The timesteps and their σs (without the final σ): Karras or spaced.
void step_schedule(const ScheduleConfig& config, int64_t steps, int64_t last_timestep,
                   const torch::Tensor& train_sigmas, const std::string& who, std::vector<int64_t>& timesteps,
                   std::vector<double>& sigmas);
// Throws unless 0 <= i < the number of timesteps (set_timesteps must come first).
void check_step_index(const torch::Tensor& timesteps, int64_t i, const std::string& who);
torch::Tensor int64_tensor(const std::vector<int64_t>& values);
torch::Tensor float32_tensor(const std::vector<double>& values);  // float64 values stored as float32

// α_t = 1/√(σ²+1), σ_t = σ·α_t and λ_t = log α_t − log σ_t of one σ (float32 0-dim tensors).
struct NoiseLevel {
  torch::Tensor alpha, sigma, lambda;
  explicit NoiseLevel(const torch::Tensor& s)
      : alpha((s.pow(2) + 1).pow(0.5).reciprocal()), sigma(s * alpha), lambda(torch::log(alpha) - torch::log(sigma)) {}
};

}  // namespace lumen::samplers::multistep
