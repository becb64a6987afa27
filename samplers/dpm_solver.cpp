// DPM-Solver++ multistep (Lu et al. 2022), step for step as diffusers 0.27's
// DPMSolverMultistepScheduler with algorithm_type "dpmsolver++", orders 1 and 2.
//
// Also home of the discretisation shared with UniPC (namespace `multistep`,
// declared again in unipc.cpp): timestep spacings, Karras sigmas, σ → t.
//
// Scalars (α, σ, λ, h, ...) are float32 0-dim tensors combined in the
// reference's order of operations, so results agree with it to float32
// rounding even at σ = 4096 (zero terminal SNR).
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "error.h"
#include "samplers/multistep_common.h"
#include "samplers/sampler_factories.h"
#include "samplers/scheduler.h"

namespace lumen::samplers {

namespace multistep {

// ᾱ of the schedule; with zero terminal SNR the last one is 2^-24 instead of 0
// (diffusers' DPM-Solver/Euler convention), so σ_max = √((1-ᾱ)/ᾱ) ≈ 4096 stays finite.
torch::Tensor alphas_cumprod_for_multistep(const ScheduleConfig& config) {
  auto alphas_cumprod = make_alphas_cumprod(config);
  if (config.zero_terminal_snr) alphas_cumprod[-1] = std::ldexp(1.0, -24);
  return alphas_cumprod;
}

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

// Karras et al. 2022 (ρ = 7) between the schedule's smallest and largest σ, float64.
std::vector<double> karras_sigmas(const torch::Tensor& sigmas, int64_t steps) {
  const double sigma_min = sigmas[0].item<float>(), sigma_max = sigmas[-1].item<float>();
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

// Karras σs and their rounded timesteps; repeated timesteps are possible (several σ near σ_max
// round to T-1) and harmless here because the samplers are driven by the step index.
void karras_schedule(const torch::Tensor& sigmas, int64_t steps, std::vector<double>& out_sigmas,
                     std::vector<int64_t>& out_timesteps) {
  const auto log_sigmas = log_of(sigmas);
  out_sigmas = karras_sigmas(sigmas, steps);
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

namespace {

using multistep::NoiseLevel;

std::string extra_string(const ScheduleConfig& c, const char* key, const std::string& fallback) {
  if (!c.extra.contains(key) || c.extra[key].is_null()) return fallback;
  if (!c.extra[key].is_string())
    throw Error("DPMSolverMultistepScheduler", std::string("config field '") + key + "' must be a string");
  return c.extra[key].get<std::string>();
}

template <typename T>
T extra_value(const ScheduleConfig& c, const char* key, T fallback) {
  if (!c.extra.contains(key) || c.extra[key].is_null()) return fallback;
  try {
    return c.extra[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    throw Error("DPMSolverMultistepScheduler", std::string("config field '") + key + "' has the wrong type");
  }
}

class DpmSolverMultistep final : public Scheduler {
 public:
  explicit DpmSolverMultistep(ScheduleConfig config) : Scheduler(std::move(config)) {
    const auto& c = config_;
    const std::string who = "DPMSolverMultistepScheduler";
    order_ = extra_value<int64_t>(c, "solver_order", 2);
    if (order_ != 1 && order_ != 2)
      throw Error(who, "solver_order " + std::to_string(order_) + " is not supported (1 or 2)");
    const auto algorithm = extra_string(c, "algorithm_type", "dpmsolver++");
    if (algorithm != "dpmsolver++")
      throw Error(who, "algorithm_type '" + algorithm + "' is not supported (only 'dpmsolver++')");
    const auto solver_type = extra_string(c, "solver_type", "midpoint");
    if (solver_type == "heun") {
      heun_ = true;
    } else if (solver_type != "midpoint" && solver_type != "logrho" && solver_type != "bh1" && solver_type != "bh2") {
      throw Error(who, "solver_type '" + solver_type + "' is not one of: midpoint, heun");
    }  // diffusers maps logrho/bh1/bh2 to midpoint
    lower_order_final_ = extra_value<bool>(c, "lower_order_final", true);
    euler_at_final_ = extra_value<bool>(c, "euler_at_final", false);
    const auto final_sigmas = extra_string(c, "final_sigmas_type", "zero");
    if (final_sigmas != "zero" && final_sigmas != "sigma_min")
      throw Error(who, "final_sigmas_type '" + final_sigmas + "' is not one of: zero, sigma_min");
    final_sigma_zero_ = final_sigmas == "zero";
    if (extra_value<bool>(c, "thresholding", false)) throw Error(who, "thresholding is not supported");
    if (extra_value<bool>(c, "use_lu_lambdas", false)) throw Error(who, "use_lu_lambdas is not supported");
    const auto variance = extra_string(c, "variance_type", "");
    if (!variance.empty()) throw Error(who, "variance_type '" + variance + "' is not supported");
    lambda_min_clipped_ = -std::numeric_limits<double>::infinity();
    if (c.extra.contains("lambda_min_clipped") && !c.extra["lambda_min_clipped"].is_null()) {
      const auto& v = c.extra["lambda_min_clipped"];
      if (v.is_number()) {
        lambda_min_clipped_ = v.get<double>();
      } else if (v.is_string()) {
        try {
          lambda_min_clipped_ = std::stod(v.get<std::string>());
        } catch (const std::exception&) {
          throw Error(who, "lambda_min_clipped '" + v.get<std::string>() + "' is not a number");
        }
      } else {
        throw Error(who, "lambda_min_clipped must be a number");
      }
    }
    alphas_cumprod_ = multistep::alphas_cumprod_for_multistep(c);
  }

  void set_timesteps(int64_t steps) override {
    const std::string who = "DPMSolverMultistepScheduler";
    const int64_t T = config_.num_train_timesteps;
    const auto train_sigmas = multistep::train_sigmas(alphas_cumprod_);

    // λ_min clipping (for the cosine schedule): drop the trailing timesteps with λ_t < λ_min.
    const auto lambdas = torch::log(alphas_cumprod_.sqrt()) - torch::log((1 - alphas_cumprod_).sqrt());
    const int64_t clipped = (lambdas < lambda_min_clipped_).sum().item<int64_t>();
    const int64_t last_timestep = T - clipped;

    std::vector<int64_t> timesteps;
    std::vector<double> sigmas;
    multistep::step_schedule(config_, steps, last_timestep, train_sigmas, who, timesteps, sigmas);
    sigmas.push_back(final_sigma_zero_ ? 0.0 : train_sigmas[0].item<float>());

    timesteps_ = multistep::int64_tensor(timesteps);
    sigmas_ = multistep::float32_tensor(sigmas);
    reset();
  }

  StepResult step(const torch::Tensor& model_output, int64_t i, const torch::Tensor& sample,
                  at::Generator* /*generator: deterministic*/) override {
    multistep::check_step_index(timesteps_, i, "DPMSolverMultistepScheduler");
    const int64_t n = timesteps_.size(0);
    if (i != last_step_ + 1) reset();  // a new run (or a jump): no usable history
    last_step_ = i;

    // Improves stability for few steps; always first order into σ = 0 (a second-order step would divide by ∞).
    const bool lower_order_final =
        i == n - 1 && (euler_at_final_ || (lower_order_final_ && n < 15) || final_sigma_zero_);

    auto x0 = data_prediction(model_output, sample, i);
    torch::Tensor prev;
    if (order_ == 1 || !previous_x0_.defined() || lower_order_final) {
      prev = first_order_update(x0, sample.to(torch::kFloat), i);
    } else {
      prev = second_order_update(x0, previous_x0_, sample.to(torch::kFloat), i);
    }
    previous_x0_ = x0;

    StepResult result;
    result.prev_sample = prev.to(model_output.scalar_type());
    return result;
  }

 private:
  void reset() {
    previous_x0_ = torch::Tensor();
    last_step_ = -1;
  }

  // The model output turned into x₀ (DPM-Solver++ integrates the data prediction).
  torch::Tensor data_prediction(const torch::Tensor& model_output, const torch::Tensor& sample, int64_t i) const {
    const NoiseLevel s(sigmas_[i]);
    switch (config_.prediction) {
      case Prediction::Epsilon:
        return (sample - s.sigma * model_output) / s.alpha;
      case Prediction::V:
        return s.alpha * sample - s.sigma * model_output;
      case Prediction::Sample:
        return model_output;
    }
    return {};
  }

  // DDIM-equivalent step from σ_i to σ_{i+1}.
  torch::Tensor first_order_update(const torch::Tensor& x0, const torch::Tensor& sample, int64_t i) const {
    const NoiseLevel t(sigmas_[i + 1]), s(sigmas_[i]);
    const auto h = t.lambda - s.lambda;
    return (t.sigma / s.sigma) * sample - (t.alpha * (torch::exp(-h) - 1.0)) * x0;
  }

  // Multistep second order with the x₀ predictions at σ_i (x0) and σ_{i-1} (previous).
  torch::Tensor second_order_update(const torch::Tensor& x0, const torch::Tensor& previous, const torch::Tensor& sample,
                                    int64_t i) const {
    const NoiseLevel t(sigmas_[i + 1]), s0(sigmas_[i]), s1(sigmas_[i - 1]);
    const auto h = t.lambda - s0.lambda, h_0 = s0.lambda - s1.lambda;
    const auto r0 = h_0 / h;
    const auto& d0 = x0;
    const auto d1 = r0.reciprocal() * (x0 - previous);
    const auto phi = t.alpha * (torch::exp(-h) - 1.0);
    if (heun_)
      return (t.sigma / s0.sigma) * sample - phi * d0 + (t.alpha * ((torch::exp(-h) - 1.0) / h + 1.0)) * d1;
    return (t.sigma / s0.sigma) * sample - phi * d0 - 0.5 * phi * d1;
  }

  int64_t order_ = 2;
  bool heun_ = false, lower_order_final_ = true, euler_at_final_ = false, final_sigma_zero_ = true;
  double lambda_min_clipped_ = 0;
  torch::Tensor previous_x0_;  // the last step's x₀ prediction (order 2)
  int64_t last_step_ = -1;
};

}  // namespace

std::unique_ptr<Scheduler> make_dpm_solver_multistep(const ScheduleConfig& config) {
  return std::make_unique<DpmSolverMultistep>(config);
}

}  // namespace lumen::samplers
