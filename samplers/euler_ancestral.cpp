// Euler ancestral, as diffusers' EulerAncestralDiscreteScheduler (k-diffusion's
// sample_euler_ancestral with η = 1): an Euler step down to σ_down, then fresh
// noise of size σ_up, σ_down² + σ_up² = σ_next². One randn per step, the last too.
#include <algorithm>
#include <cmath>

#include "error.h"
#include "samplers/parameterization.h"
#include "samplers/sampler_factories.h"

namespace lumen::samplers {
namespace {

class EulerAncestral : public Scheduler {
 public:
  // The timesteps, σ schedule, input scaling and initial σ are Euler's.
  explicit EulerAncestral(const ScheduleConfig& config) : Scheduler(config), euler_(make_euler(config)) {
    alphas_cumprod_ = euler_->alphas_cumprod();
  }

  void set_timesteps(int64_t steps) override {
    euler_->set_timesteps(steps);
    timesteps_ = euler_->timesteps();
    sigmas_ = euler_->sigmas();
  }
  double init_noise_sigma() const override { return euler_->init_noise_sigma(); }
  torch::Tensor scale_model_input(const torch::Tensor& x, int64_t i) override {
    return euler_->scale_model_input(x, i);
  }

  StepResult step(const torch::Tensor& model_output, int64_t i, const torch::Tensor& x,
                  at::Generator* generator) override {
    if (!sigmas_.defined()) throw Error("EulerAncestralDiscreteScheduler", "set_timesteps() must be called first");
    const double sigma = sigmas_[i].item<double>(), sigma_next = sigmas_[i + 1].item<double>();
    const auto x0 = denoised_at_sigma(config_.prediction, model_output, x, sigma);
    const double sigma_up =
        std::sqrt(sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) / (sigma * sigma));
    const double sigma_down = std::sqrt(std::max(0.0, sigma_next * sigma_next - sigma_up * sigma_up));
    auto prev = x + (x - x0) / sigma * (sigma_down - sigma);
    auto noise = generator ? torch::randn(model_output.sizes(), *generator, torch::kFloat)
                           : torch::randn(model_output.sizes(), torch::kFloat);
    return {prev + noise * sigma_up, x0, {}};
  }

 private:
  std::unique_ptr<Scheduler> euler_;
};

}  // namespace

std::unique_ptr<Scheduler> make_euler_ancestral(const ScheduleConfig& config) {
  return std::make_unique<EulerAncestral>(config);
}

}  // namespace lumen::samplers
