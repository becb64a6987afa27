// Where the steps fall: timestep spacings (Lin et al. 2023, table 2), Karras
// σs and σ → t, shared by every sampler (definitions in discretisation.cpp,
// with the multistep solvers' own spacing in multistep_common.h).
#pragma once
#include <torch/torch.h>

#include <vector>

#include "samplers/scheduler.h"

namespace lumen::samplers {

// ᾱ with the last entry 2⁻²⁴ instead of 0 under zero terminal SNR (σ_max ≈ 4096).
torch::Tensor alphas_cumprod_with_finite_end(const ScheduleConfig& config);

// The single-step samplers' timesteps (DDIM, Euler, PNDM), descending:
// linspace(0, T−1, N) unrounded, leading i·(T/N) + offset, trailing
// round(T − k·T/N) − 1. The caller checks `steps`.
std::vector<double> single_step_timesteps(const ScheduleConfig& config, int64_t steps);

// Karras et al. 2022 eq. 5 (ρ = 7), σ_max down to σ_min, ramp as np.linspace(0, 1, N).
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t steps);

// The fractional training timestep of σ: linear interpolation in log σ over
// the training grid's log σs (ascending, float32 as the reference).
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas);
std::vector<float> log_of(const torch::Tensor& sigmas);

}  // namespace lumen::samplers
