// DPM-Solver++ multistep (Lu et al. 2022), step for step as diffusers 0.27's
// DPMSolverMultistepScheduler with algorithm_type "dpmsolver++", orders 1 and 2.
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
#include "samplers/parameterization.h"
#include "samplers/sampler_factories.h"
#include "samplers/scheduler.h"

namespace lumen::samplers {

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
    alphas_cumprod_ = alphas_cumprod_with_finite_end(c);
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
    return predicted_x0(config_.prediction, model_output, sample, s.alpha, s.sigma);
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
