// Timestep spacings, Karras σs and σ → t for every sampler, as diffusers 0.27
// computes them (numpy float64, round half to even).
#include "samplers/discretisation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "error.h"
#include "samplers/multistep_common.h"

namespace lumen::samplers {

// ᾱ of the schedule; with zero terminal SNR the last one is 2^-24 instead of 0
// (diffusers' Euler/DPM-Solver convention), so σ_max = √((1-ᾱ)/ᾱ) ≈ 4096 stays finite.
torch::Tensor alphas_cumprod_with_finite_end(const ScheduleConfig& config) {
  auto alphas_cumprod = make_alphas_cumprod(config);
  if (config.zero_terminal_snr) alphas_cumprod[-1] = std::ldexp(1.0, -24);
  return alphas_cumprod;
}

std::vector<double> single_step_timesteps(const ScheduleConfig& config, int64_t steps) {
  const int64_t T = config.num_train_timesteps;
  std::vector<double> ts;
  for (int64_t i = steps - 1; i >= 0; --i) {
    switch (config.spacing) {
      case Spacing::Linspace:  // np.linspace(0, T-1, N), rounded or not by the caller
        ts.push_back(steps == 1 ? 0.0 : i * (double(T - 1) / (steps - 1)));
        break;
      case Spacing::Leading:
        ts.push_back(double(i * (T / steps) + config.steps_offset));
        break;
      case Spacing::Trailing:  // np.round(np.arange(T, 0, -T/N)) - 1
        ts.push_back(std::nearbyint(T - (steps - 1 - i) * (double(T) / steps)) - 1);
        break;
    }
  }
  return ts;
}

std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t steps) {
  const double rho = 7.0, min_inv_rho = std::pow(sigma_min, 1 / rho), max_inv_rho = std::pow(sigma_max, 1 / rho);
  std::vector<double> out;
  for (int64_t i = 0; i < steps; ++i) {
    // np.linspace(0, 1, steps): i · (1 / (steps - 1)), the last exactly 1; [0] for one step.
    double ramp = 0.0;
    if (steps > 1) ramp = i == steps - 1 ? 1.0 : static_cast<double>(i) * (1.0 / static_cast<double>(steps - 1));
    out.push_back(std::pow(max_inv_rho + ramp * (min_inv_rho - max_inv_rho), rho));
  }
  return out;
}

// The (fractional) training timestep of σ: linear interpolation in log σ.
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  const int64_t n = static_cast<int64_t>(log_sigmas.size());
  int64_t low = 0;  // the last index with log σ_i ≤ log σ (0 if none), at most n - 2
  for (int64_t i = 0; i < n; ++i)
    if (log_sigma - static_cast<double>(log_sigmas[i]) >= 0) low = i;
  low = std::min(low, n - 2);
  const double lo = log_sigmas[low], hi = log_sigmas[low + 1];
  const double w = std::clamp((lo - log_sigma) / (lo - hi), 0.0, 1.0);
  return (1 - w) * static_cast<double>(low) + w * static_cast<double>(low + 1);
}

std::vector<float> log_of(const torch::Tensor& sigmas) {
  std::vector<float> out(sigmas.size(0));
  auto a = sigmas.contiguous();
  const float* p = a.data_ptr<float>();
  for (size_t i = 0; i < out.size(); ++i) out[i] = std::log(p[i]);
  return out;
}

namespace multistep {

// σ_t = √((1-ᾱ_t)/ᾱ_t), float32 [T].
torch::Tensor train_sigmas(const torch::Tensor& alphas_cumprod) {
  return ((1 - alphas_cumprod) / alphas_cumprod).pow(0.5);
}

void check_steps(const ScheduleConfig& config, int64_t steps, const std::string& who) {
  const int64_t T = config.num_train_timesteps;
  if (steps < 1 || steps > T)
    throw Error(who, "number of steps " + std::to_string(steps) + " must be in [1, " + std::to_string(T) + "]");
}

// The "linspace" / "leading" / "trailing" timesteps (Lin et al. 2023, table 2),
// descending, as diffusers computes them (numpy float64, round half to even).
// `last_timestep` is T unless λ_min clipping shortens the schedule.
std::vector<int64_t> spaced_timesteps(const ScheduleConfig& config, int64_t steps, int64_t last_timestep,
                                      const std::string& who) {
  check_steps(config, steps, who);
  std::vector<int64_t> timesteps;
  switch (config.spacing) {
    case Spacing::Linspace: {  // np.linspace(0, last - 1, steps + 1).round()[::-1][:-1]
      const double stop = static_cast<double>(last_timestep - 1), delta = stop / static_cast<double>(steps);
      for (int64_t k = steps; k >= 1; --k)
        timesteps.push_back(static_cast<int64_t>(std::nearbyint(k == steps ? stop : static_cast<double>(k) * delta)));
      break;
    }
    case Spacing::Leading: {  // arange(0, steps + 1) * (last // (steps + 1)), reversed, without the 0; + offset
      const int64_t ratio = last_timestep / (steps + 1);
      if (ratio == 0) throw Error(who, "too many steps for 'leading' spacing: " + std::to_string(steps));
      for (int64_t k = steps; k >= 1; --k) timesteps.push_back(k * ratio + config.steps_offset);
      break;
    }
    case Spacing::Trailing: {  // np.arange(last, 0, -T / steps).round() - 1
      const double start = static_cast<double>(last_timestep);
      const double ratio = static_cast<double>(config.num_train_timesteps) / static_cast<double>(steps);
      const double delta = (start - ratio) - start;  // numpy's arange fills start + i·(x₁ - x₀)
      for (int64_t i = 0; i < steps; ++i) {
        const double t = i == 1 ? start - ratio : start + static_cast<double>(i) * delta;
        timesteps.push_back(static_cast<int64_t>(std::nearbyint(t)) - 1);
      }
      break;
    }
  }
  return timesteps;
}

// Karras σs and their rounded timesteps; repeated timesteps are possible (several σ near σ_max
// round to T-1) and harmless here because the samplers are driven by the step index.
void karras_schedule(const torch::Tensor& sigmas, int64_t steps, std::vector<double>& out_sigmas,
                     std::vector<int64_t>& out_timesteps) {
  const auto log_sigmas = log_of(sigmas);
  out_sigmas = karras_sigmas(sigmas[0].item<float>(), sigmas[-1].item<float>(), steps);
  out_timesteps.clear();
  for (double s : out_sigmas) out_timesteps.push_back(static_cast<int64_t>(std::nearbyint(sigma_to_t(s, log_sigmas))));
}

void step_schedule(const ScheduleConfig& config, int64_t steps, int64_t last_timestep,
                   const torch::Tensor& train_sigmas, const std::string& who, std::vector<int64_t>& timesteps,
                   std::vector<double>& sigmas) {
  if (config.use_karras_sigmas) {
    check_steps(config, steps, who);
    karras_schedule(train_sigmas, steps, sigmas, timesteps);
    return;
  }
  timesteps = spaced_timesteps(config, steps, last_timestep, who);
  sigmas.clear();
  for (int64_t t : timesteps) {
    if (t < 0 || t >= config.num_train_timesteps)
      throw Error(who, "timestep " + std::to_string(t) + " is outside the schedule");
    sigmas.push_back(train_sigmas[t].item<float>());
  }
}

void check_step_index(const torch::Tensor& timesteps, int64_t i, const std::string& who) {
  const int64_t n = timesteps.defined() ? timesteps.size(0) : 0;
  if (i < 0 || i >= n)
    throw Error(who, "step index " + std::to_string(i) + " outside [0, " + std::to_string(n) +
                         "); call set_timesteps first");
}

torch::Tensor int64_tensor(const std::vector<int64_t>& values) {
  return torch::tensor(values, torch::TensorOptions().dtype(torch::kLong));
}

// float64 values stored as float32, like numpy's astype(np.float32).
torch::Tensor float32_tensor(const std::vector<double>& values) {
  return torch::tensor(values, torch::TensorOptions().dtype(torch::kDouble)).to(torch::kFloat);
}

}  // namespace multistep

}  // namespace lumen::samplers
