// Latent Consistency Models (Luo et al. 2023), as diffusers' LCMScheduler:
// denoised = c_out·x0 + c_skip·x (consistency boundary condition), then the
// sample is re-noised to the next timestep (on all but the last step).
#include <cmath>
#include <string>

#include "error.h"
#include "samplers/parameterization.h"
#include "samplers/sampler_factories.h"

namespace lumen::samplers {
namespace {

class LCM : public Scheduler {
 public:
  explicit LCM(const ScheduleConfig& config) : Scheduler(config) {
    if (config_.extra.value("thresholding", nlohmann::json(false)) == true)
      throw Error("LCMScheduler", "dynamic thresholding is not supported");
    const auto& extra = config_.extra;
    try {
      if (extra.contains("original_inference_steps") && !extra["original_inference_steps"].is_null())
        original_steps_ = extra["original_inference_steps"].get<int64_t>();
      if (extra.contains("timestep_scaling") && !extra["timestep_scaling"].is_null())
        timestep_scaling_ = extra["timestep_scaling"].get<double>();
    } catch (const nlohmann::json::exception&) {
      throw Error("LCMScheduler", "original_inference_steps / timestep_scaling must be numbers");
    }
    if (original_steps_ < 1 || original_steps_ > config_.num_train_timesteps)
      throw Error("LCMScheduler", "original_inference_steps must be in [1, num_train_timesteps]");
  }

  // As diffusers 0.27: timestep_spacing is ignored. The distillation grid is
  // t_k = k·(T / original_steps) − 1, k = 1..original_steps; N of them are
  // picked evenly from the top.
  void set_timesteps(int64_t steps) override {
    if (steps <= 0 || steps > original_steps_)
      throw Error("LCMScheduler", "steps must be in [1, original_inference_steps = " + std::to_string(original_steps_) +
                                      "], got " + std::to_string(steps));
    const int64_t k = config_.num_train_timesteps / original_steps_;
    std::vector<int64_t> ts;
    for (int64_t i = 0; i < steps; ++i) {
      const auto index = static_cast<int64_t>(std::floor(i * (double(original_steps_) / steps)));
      ts.push_back((original_steps_ - index) * k - 1);
    }
    refuse_epsilon_at_zero_snr(config_, alphas_cumprod_, ts, "LCMScheduler");
    timesteps_ = torch::tensor(ts, torch::kLong);
  }

  StepResult step(const torch::Tensor& model_output, int64_t i, const torch::Tensor& x,
                  at::Generator* generator) override {
    if (!timesteps_.defined()) throw Error("LCMScheduler", "set_timesteps() must be called before step()");
    const int64_t steps = timesteps_.size(0);
    const int64_t t = timesteps_[i].item<int64_t>();
    const int64_t prev = i + 1 < steps ? timesteps_[i + 1].item<int64_t>() : t;
    const double a_t = alpha(t), a_prev = alpha(prev), b_t = 1 - a_t;

    const double sigma_data = 0.5, scaled = t * timestep_scaling_;
    const double c_skip = sigma_data * sigma_data / (scaled * scaled + sigma_data * sigma_data);
    const double c_out = scaled / std::sqrt(scaled * scaled + sigma_data * sigma_data);

    auto x0 = predicted_x0(config_.prediction, model_output, x, std::sqrt(a_t), std::sqrt(b_t));
    if (config_.clip_sample) x0 = x0.clamp(-config_.clip_sample_range, config_.clip_sample_range);
    auto denoised = c_out * x0 + c_skip * x;
    if (i == steps - 1) return {denoised, {}, denoised};
    auto noise = generator ? torch::randn(model_output.sizes(), *generator, torch::kFloat)
                           : torch::randn(model_output.sizes(), torch::kFloat);
    return {std::sqrt(a_prev) * denoised + std::sqrt(1 - a_prev) * noise, {}, denoised};
  }

 private:
  double alpha(int64_t t) const { return alphas_cumprod_[t].item<double>(); }

  int64_t original_steps_ = 50;
  double timestep_scaling_ = 10.0;
};

}  // namespace

std::unique_ptr<Scheduler> make_lcm(const ScheduleConfig& config) { return std::make_unique<LCM>(config); }

}  // namespace lumen::samplers
