// Euler (Karras et al. 2022, Algorithm 2 without churn), as diffusers'
// EulerDiscreteScheduler: in σ-space, x' = x + (x − x0)/σ · (σ_next − σ).
#include <algorithm>
#include <cmath>
#include <string>

#include "error.h"
#include "samplers/discretisation.h"
#include "samplers/parameterization.h"
#include "samplers/sampler_factories.h"

namespace lumen::samplers {
namespace {

class Euler : public Scheduler {
 public:
  explicit Euler(const ScheduleConfig& config) : Scheduler(config) {
    const auto interpolation = config_.extra.value("interpolation_type", nlohmann::json("linear"));
    if (!interpolation.is_null() && interpolation != "linear")
      throw Error("EulerDiscreteScheduler",
                  "interpolation_type " + interpolation.dump() + " is not supported (linear only)");
    // As diffusers: keep σ_max finite on a zero-SNR schedule.
    alphas_cumprod_ = alphas_cumprod_with_finite_end(config_);
  }

  void set_timesteps(int64_t steps) override {
    const int64_t T = config_.num_train_timesteps;
    if (steps <= 0 || steps > T)
      throw Error("EulerDiscreteScheduler",
                  "steps must be in [1, " + std::to_string(T) + "], got " + std::to_string(steps));
    std::vector<double> ts = single_step_timesteps(config_, steps);
    if (config_.spacing == Spacing::Linspace)  // float32, not rounded
      for (double& t : ts) t = static_cast<float>(t);
    for (double t : ts)
      if (t < 0 || t > T - 1)
        throw Error("EulerDiscreteScheduler", "timestep " + std::to_string(t) + " is out of range");

    // σ(t) = √((1 − ᾱ)/ᾱ) on the training grid (float32, as the reference), interpolated linearly.
    const auto grid = ((1 - alphas_cumprod_) / alphas_cumprod_).sqrt().to(torch::kDouble).contiguous();
    const double* s = grid.data_ptr<double>();
    std::vector<double> sigmas;
    for (double t : ts) {
      const auto j = std::min<int64_t>(static_cast<int64_t>(t), T - 2);
      sigmas.push_back(s[j] + (s[j + 1] - s[j]) * (t - j));
    }
    if (config_.use_karras_sigmas) {
      sigmas = karras_sigmas(sigmas.back(), sigmas.front(), steps);
      const auto log_sigmas = log_of(((1 - alphas_cumprod_) / alphas_cumprod_).sqrt());
      for (size_t k = 0; k < sigmas.size(); ++k) ts[k] = sigma_to_t(sigmas[k], log_sigmas);
    }
    sigmas.push_back(0.0);
    timesteps_ = torch::tensor(ts, torch::kDouble).to(torch::kFloat);
    sigmas_ = torch::tensor(sigmas, torch::kDouble).to(torch::kFloat);
  }

  double init_noise_sigma() const override {
    if (!sigmas_.defined()) return 1.0;
    const double max = sigmas_.max().item<double>();
    return config_.spacing == Spacing::Leading ? std::sqrt(max * max + 1) : max;
  }

  torch::Tensor scale_model_input(const torch::Tensor& x, int64_t i) override {
    const double sigma = sigma_at(i);
    return x / std::sqrt(sigma * sigma + 1);
  }

  StepResult step(const torch::Tensor& model_output, int64_t i, const torch::Tensor& x, at::Generator*) override {
    const double sigma = sigma_at(i), sigma_next = sigma_at(i + 1);
    auto x0 = denoised_at_sigma(config_.prediction, model_output, x, sigma);
    auto derivative = (x - x0) / sigma;
    return {x + derivative * (sigma_next - sigma), x0, {}};
  }

 private:
  double sigma_at(int64_t i) const {
    if (!sigmas_.defined()) throw Error("EulerDiscreteScheduler", "set_timesteps() must be called first");
    return sigmas_[i].item<double>();
  }
};

}  // namespace

std::unique_ptr<Scheduler> make_euler(const ScheduleConfig& config) { return std::make_unique<Euler>(config); }

}  // namespace lumen::samplers
