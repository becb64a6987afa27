// Euler (Karras et al. 2022, Algorithm 2 without churn), as diffusers'
// EulerDiscreteScheduler: in σ-space, x' = x + (x − x0)/σ · (σ_next − σ).
#include <algorithm>
#include <cmath>
#include <string>

#include "error.h"
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
    // As diffusers: keep σ_max finite on a zero-SNR schedule (ᾱ_T = 2⁻²⁴, σ_max ≈ 4096).
    if (config_.zero_terminal_snr) alphas_cumprod_[-1] = std::ldexp(1.0, -24);
  }

  void set_timesteps(int64_t steps) override {
    const int64_t T = config_.num_train_timesteps;
    if (steps <= 0 || steps > T)
      throw Error("EulerDiscreteScheduler",
                  "steps must be in [1, " + std::to_string(T) + "], got " + std::to_string(steps));
    std::vector<double> ts;
    for (int64_t i = steps - 1; i >= 0; --i) {
      switch (config_.spacing) {
        case Spacing::Linspace:  // float32 linspace(0, T-1, N), not rounded
          ts.push_back(static_cast<float>(steps == 1 ? 0.0 : i * (double(T - 1) / (steps - 1))));
          break;
        case Spacing::Leading:
          ts.push_back(double(i * (T / steps) + config_.steps_offset));
          break;
        case Spacing::Trailing:
          ts.push_back(std::nearbyint(T - (steps - 1 - i) * (double(T) / steps)) - 1);
          break;
      }
    }
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
      sigmas = karras(sigmas.back(), sigmas.front(), steps);
      const auto log_grid = ((1 - alphas_cumprod_) / alphas_cumprod_).sqrt().log().to(torch::kDouble).contiguous();
      for (size_t k = 0; k < sigmas.size(); ++k) ts[k] = sigma_to_t(sigmas[k], log_grid.data_ptr<double>(), T);
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
    auto x0 = denoised(model_output, x, sigma, config_.prediction);
    auto derivative = (x - x0) / sigma;
    return {x + derivative * (sigma_next - sigma), x0, {}};
  }

  // x0 from the model output at noise level σ (k-diffusion's denoiser view).
  static torch::Tensor denoised(const torch::Tensor& out, const torch::Tensor& x, double sigma, Prediction p) {
    switch (p) {
      case Prediction::Epsilon:
        return x - sigma * out;
      case Prediction::V:
        return out * (-sigma / std::sqrt(sigma * sigma + 1)) + x / (sigma * sigma + 1);
      case Prediction::Sample:
        break;
    }
    return out;
  }

 private:
  double sigma_at(int64_t i) const {
    if (!sigmas_.defined()) throw Error("EulerDiscreteScheduler", "set_timesteps() must be called first");
    return sigmas_[i].item<double>();
  }

  // Karras et al. (2022) eq. 5 with ρ = 7, from σ_max down to σ_min.
  static std::vector<double> karras(double sigma_min, double sigma_max, int64_t steps) {
    const double rho = 7.0, lo = std::pow(sigma_min, 1 / rho), hi = std::pow(sigma_max, 1 / rho);
    std::vector<double> out;
    for (int64_t k = 0; k < steps; ++k) {
      const double ramp = steps == 1 ? 0.0 : k * (1.0 / (steps - 1));
      out.push_back(std::pow(hi + ramp * (lo - hi), rho));
    }
    return out;
  }

  // The fractional training timestep of σ: linear in log σ between grid points.
  static double sigma_to_t(double sigma, const double* log_sigmas, int64_t T) {
    const double log_sigma = std::log(std::max(sigma, 1e-10));
    int64_t low = 0;
    for (int64_t j = 0; j < T; ++j)
      if (log_sigma - log_sigmas[j] >= 0) low = j;
    low = std::min(low, T - 2);
    const double w = std::clamp((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[low + 1]), 0.0, 1.0);
    return (1 - w) * low + w * (low + 1);
  }
};

}  // namespace

std::unique_ptr<Scheduler> make_euler(const ScheduleConfig& config) { return std::make_unique<Euler>(config); }

}  // namespace lumen::samplers
