// PLMS: PNDM (Liu et al. 2022) with skip_prk_steps, as diffusers'
// PNDMScheduler. A linear multistep method on the model outputs (Adams–
// Bashforth, orders 1..4), each combined output taken one DDIM step. As the
// reference, the 2nd timestep is repeated: the 2nd call redoes the first step
// with the mean of the two outputs (N steps make N + 1 model calls).
#include <cmath>
#include <string>

#include "error.h"
#include "samplers/discretisation.h"
#include "samplers/parameterization.h"
#include "samplers/sampler_factories.h"

namespace lumen::samplers {
namespace {

class PLMS : public Scheduler {
 public:
  explicit PLMS(const ScheduleConfig& config) : Scheduler(config) {
    if (config_.extra.value("skip_prk_steps", nlohmann::json(true)) == false)
      throw Error("PNDMScheduler", "the Runge-Kutta warm-up (skip_prk_steps false) is not supported; PLMS only");
    if (config_.prediction == Prediction::Sample)
      throw Error("PNDMScheduler", "prediction_type 'sample' is not supported (epsilon or v_prediction)");
    final_alpha_ = config_.set_alpha_to_one ? 1.0 : alpha(0);
  }

  void set_timesteps(int64_t steps) override {
    const int64_t T = config_.num_train_timesteps;
    if (steps <= 0 || steps > T)
      throw Error("PNDMScheduler", "steps must be in [1, " + std::to_string(T) + "], got " + std::to_string(steps));
    // Descending, with the second timestep repeated.
    std::vector<int64_t> ts;
    for (double t : single_step_timesteps(config_, steps)) ts.push_back(static_cast<int64_t>(std::nearbyint(t)));
    if (steps > 1) ts.insert(ts.begin() + 1, ts[1]);
    stride_ = T / steps;
    std::vector<int64_t> stepped_from;
    for (size_t i = 0; i < ts.size(); ++i) {
      stepped_from.push_back(current_timestep(ts, i));
      if (stepped_from.back() < 0 || stepped_from.back() >= T)
        throw Error("PNDMScheduler", "timestep " + std::to_string(stepped_from.back()) + " is out of range");
    }
    refuse_epsilon_at_zero_snr(config_, alphas_cumprod_, stepped_from, "PNDMScheduler");
    timesteps_ = torch::tensor(ts, torch::kLong);
    outputs_.clear();
    calls_ = 0;
  }

  StepResult step(const torch::Tensor& model_output, int64_t i, const torch::Tensor& x, at::Generator*) override {
    if (!timesteps_.defined()) throw Error("PNDMScheduler", "set_timesteps() must be called before step()");
    const std::vector<int64_t> ts(timesteps_.data_ptr<int64_t>(), timesteps_.data_ptr<int64_t>() + timesteps_.numel());
    if (i < 0 || i >= static_cast<int64_t>(ts.size())) throw Error("PNDMScheduler", "step index out of range");
    // The reference counts its calls, not the index: img2img starts at index
    // `start` and that call is the method's first. (Keyed on the index, a
    // start at 1 took the "repeated step" branch with no step before it and
    // read an empty history: a segfault, from the CLI and from one HTTP request.)
    const int64_t call = calls_++;
    const bool repeat = call == 1 && ts.size() > 1;
    const int64_t t = repeat ? ts[i] + stride_ : ts[i];
    const int64_t prev = repeat ? ts[i] : t - stride_;

    torch::Tensor out, sample = x;
    if (repeat) {
      // The repeated timestep: redo step 0 from its start with the mean output.
      out = (model_output + outputs_.back()) / 2;
      sample = first_sample_;
    } else {
      if (outputs_.size() == 4) outputs_.erase(outputs_.begin());
      outputs_.push_back(model_output);
      const auto& e = outputs_;
      const size_t n = e.size();
      if (n == 1) {
        out = model_output;
        first_sample_ = x;
      } else if (n == 2) {
        out = (3 * e[1] - e[0]) / 2;
      } else if (n == 3) {
        out = (23 * e[2] - 16 * e[1] + 5 * e[0]) / 12;
      } else {
        out = (1.0 / 24) * (55 * e[3] - 59 * e[2] + 37 * e[1] - 9 * e[0]);
      }
    }
    return {ddim_step(out, sample, t, prev), {}, {}};
  }

 private:
  double alpha(int64_t t) const { return alphas_cumprod_[t].item<double>(); }

  // The step from t when sampling starts at index 0: the 2nd call (i = 1) steps
  // from the 1st timestep again.
  int64_t current_timestep(const std::vector<int64_t>& ts, size_t i) const { return i == 1 ? ts[1] + stride_ : ts[i]; }

  // x_prev = √ᾱ_prev·x0 + √(1 − ᾱ_prev)·ε: the reference's formula (PNDM eq. 9)
  // rearranged so that v-prediction stays finite where ᾱ_t = 0 (zero SNR).
  torch::Tensor ddim_step(const torch::Tensor& out, const torch::Tensor& x, int64_t t, int64_t prev) const {
    const double a_t = alpha(t), a_prev = prev >= 0 ? alpha(prev) : final_alpha_;
    const auto x0 = predicted_x0(config_.prediction, out, x, std::sqrt(a_t), std::sqrt(1 - a_t));
    const auto eps = predicted_epsilon(config_.prediction, out, x, std::sqrt(a_t), std::sqrt(1 - a_t));
    return std::sqrt(a_prev) * x0 + std::sqrt(1 - a_prev) * eps;
  }

  double final_alpha_ = 1.0;
  int64_t stride_ = 1;
  int64_t calls_ = 0;                   // step() calls since set_timesteps
  std::vector<torch::Tensor> outputs_;  // model outputs of the last (up to 4) steps
  torch::Tensor first_sample_;
};

}  // namespace

std::unique_ptr<Scheduler> make_pndm(const ScheduleConfig& config) { return std::make_unique<PLMS>(config); }

}  // namespace lumen::samplers
