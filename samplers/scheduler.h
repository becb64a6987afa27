// Noise schedules and samplers, diffusers-compatible step by step (so they can
// be checked against the reference), usable k-diffusion style through
// `sample()`: the sampler never sees the UNet, only a denoise function.
// LibTorch only: no model code here.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lumen::samplers {

enum class Prediction { Epsilon, V, Sample };
enum class Spacing { Leading, Trailing, Linspace };
enum class BetaSchedule { Linear, ScaledLinear, SquaredCosCapV2 };

struct ScheduleConfig {
  int64_t num_train_timesteps = 1000;
  double beta_start = 0.00085, beta_end = 0.012;
  BetaSchedule beta_schedule = BetaSchedule::ScaledLinear;
  std::vector<double> trained_betas;  // replaces the schedule when non-empty
  Prediction prediction = Prediction::Epsilon;
  Spacing spacing = Spacing::Leading;
  int64_t steps_offset = 0;
  bool zero_terminal_snr = false;  // Lin et al. 2023: rescale betas to SNR 0 at t = T
  bool set_alpha_to_one = true;    // DDIM/LCM/PNDM: the ᾱ after the last step
  bool clip_sample = false;
  double clip_sample_range = 1.0;
  bool use_karras_sigmas = false;
  double eta = 0.0;  // DDIM stochasticity
  // Scheduler-specific fields kept as given (solver_order, lower_order_final,
  // original_inference_steps, timestep_scaling, skip_prk_steps, ...).
  nlohmann::json extra = nlohmann::json::object();
};

// From a diffusers scheduler config dict; `where` names its file for errors.
ScheduleConfig parse_schedule_config(const nlohmann::json& config, const std::string& where);

torch::Tensor make_betas(const ScheduleConfig& config);                // float32 [T]
torch::Tensor rescale_zero_terminal_snr(const torch::Tensor& betas);  // float32 [T]
torch::Tensor make_alphas_cumprod(const ScheduleConfig& config);       // float32 [T]

struct StepResult {
  torch::Tensor prev_sample;
  torch::Tensor pred_original_sample;  // undefined where the reference returns none
  torch::Tensor denoised;              // LCM only
};

class Scheduler {
 public:
  explicit Scheduler(ScheduleConfig config);
  virtual ~Scheduler() = default;

  // Prepares `steps` inference steps; throws lumen::Error on impossible
  // settings (e.g. ε-prediction reaching a zero-SNR timestep).
  virtual void set_timesteps(int64_t steps) = 0;
  // The model is called once per entry (PNDM repeats one). int64 or float32, as the reference.
  const torch::Tensor& timesteps() const { return timesteps_; }
  const torch::Tensor& sigmas() const { return sigmas_; }  // undefined when the sampler has none
  const torch::Tensor& alphas_cumprod() const { return alphas_cumprod_; }
  const ScheduleConfig& config() const { return config_; }
  virtual double init_noise_sigma() const { return 1.0; }
  virtual torch::Tensor scale_model_input(const torch::Tensor& sample, int64_t step_index) {
    (void)step_index;
    return sample;
  }
  // `generator` is used by stochastic samplers only (one randn per step, as the reference).
  virtual StepResult step(const torch::Tensor& model_output, int64_t step_index, const torch::Tensor& sample,
                          at::Generator* generator) = 0;

 protected:
  ScheduleConfig config_;
  torch::Tensor alphas_cumprod_, timesteps_, sigmas_;
};

// Makes a scheduler from a diffusers class name ("DDIMScheduler") or a name
// people know ("ddim", "euler", "euler_a", "dpm++_2m", "dpm++_2m_karras",
// "unipc", "lcm", "pndm", "plms"). Unknown names: lumen::Error listing the known ones.
std::unique_ptr<Scheduler> make_scheduler(const std::string& name, const ScheduleConfig& config);
std::vector<std::string> known_sampler_names();

// The one sampling loop (txt2img, img2img, inpainting, training samples):
// per timestep from `start`, x = step(denoise(scale_model_input(x), t), x).
// `x` must already be at step `start`'s noise level. `on_step` sees each
// result and may replace its prev_sample (inpainting keeps the unmasked area
// on the original image's trajectory). Returns the final sample.
using Denoiser = std::function<torch::Tensor(const torch::Tensor& model_input, const torch::Tensor& timestep)>;
using StepCallback = std::function<void(int64_t step_index, StepResult& result)>;
torch::Tensor run_steps(Scheduler& scheduler, const Denoiser& denoise, torch::Tensor x, int64_t start,
                        at::Generator* generator, const StepCallback& on_step = {});

// From pure noise: run_steps(noise · init_noise_sigma, from step 0).
torch::Tensor sample(Scheduler& scheduler, const Denoiser& denoise, const torch::Tensor& noise,
                     at::Generator* generator, const StepCallback& on_step = {});

}  // namespace lumen::samplers
