// DDIM (Song et al. 2020), as diffusers' DDIMScheduler: x0 and ε from the
// model output, then x_prev = √ᾱ_prev·x0 + √(1 − ᾱ_prev − σ²)·ε + σ·z with
// σ = η·√((1 − ᾱ_prev)/(1 − ᾱ_t)·(1 − ᾱ_t/ᾱ_prev)).
#include <algorithm>
#include <cmath>
#include <string>

#include "error.h"
#include "samplers/discretisation.h"
#include "samplers/parameterization.h"
#include "samplers/sampler_factories.h"

namespace lumen::samplers {
namespace {

class DDIM : public Scheduler {
 public:
  explicit DDIM(const ScheduleConfig& config) : Scheduler(config) {
    if (config_.extra.value("thresholding", nlohmann::json(false)) == true)
      throw Error("DDIMScheduler", "dynamic thresholding is not supported");
    final_alpha_ = config_.set_alpha_to_one ? 1.0 : alpha(0);
  }

  void set_timesteps(int64_t steps) override {
    const int64_t T = config_.num_train_timesteps;
    if (steps <= 0 || steps > T)
      throw Error("DDIMScheduler", "steps must be in [1, " + std::to_string(T) + "], got " + std::to_string(steps));
    std::vector<int64_t> ts;
    for (double t : single_step_timesteps(config_, steps)) ts.push_back(static_cast<int64_t>(std::nearbyint(t)));
    for (int64_t t : ts)
      if (t < 0 || t >= T) throw Error("DDIMScheduler", "timestep " + std::to_string(t) + " is out of range");
    refuse_epsilon_at_zero_snr(config_, alphas_cumprod_, ts, "DDIMScheduler");
    steps_ = steps;
    timesteps_ = torch::tensor(ts, torch::kLong);
  }

  StepResult step(const torch::Tensor& model_output, int64_t i, const torch::Tensor& x,
                  at::Generator* generator) override {
    if (steps_ == 0) throw Error("DDIMScheduler", "set_timesteps() must be called before step()");
    const int64_t t = timesteps_[i].item<int64_t>();
    const int64_t prev = t - config_.num_train_timesteps / steps_;
    const double a_t = alpha(t), a_prev = prev >= 0 ? alpha(prev) : final_alpha_;
    const double b_t = 1 - a_t;

    auto x0 = predicted_x0(config_.prediction, model_output, x, std::sqrt(a_t), std::sqrt(b_t));
    const auto eps = predicted_epsilon(config_.prediction, model_output, x, std::sqrt(a_t), std::sqrt(b_t));
    if (config_.clip_sample) x0 = x0.clamp(-config_.clip_sample_range, config_.clip_sample_range);

    // σ and the direction coefficient in float32, in the reference's order: with η = 1
    // and ᾱ_t = 0 (zero terminal SNR) 1 − ᾱ_prev − σ² is 0 up to rounding, which
    // the reference keeps when positive and turns into NaN when negative; we take 0.
    const float at = static_cast<float>(a_t), ap = static_cast<float>(a_prev);
    const float variance = ((1.0f - ap) / (1.0f - at)) * (1.0f - at / ap);
    const float std_dev = static_cast<float>(config_.eta) * std::sqrt(variance);
    const float direction = std::sqrt(std::max(0.0f, (1.0f - ap) - std_dev * std_dev));
    auto prev_sample = std::sqrt(a_prev) * x0 + direction * eps;
    if (config_.eta > 0) {
      auto noise = generator ? torch::randn(model_output.sizes(), *generator, torch::kFloat)
                             : torch::randn(model_output.sizes(), torch::kFloat);
      prev_sample = prev_sample + std_dev * noise;
    }
    return {prev_sample, x0, {}};
  }

 private:
  double alpha(int64_t t) const { return alphas_cumprod_[t].item<double>(); }

  double final_alpha_ = 1.0;
  int64_t steps_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> make_ddim(const ScheduleConfig& config) { return std::make_unique<DDIM>(config); }

}  // namespace lumen::samplers
