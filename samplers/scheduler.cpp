// The scheduler base, the registry of sampler names and the sampling loop.
#include "samplers/scheduler.h"

#include <utility>

#include "error.h"
#include "samplers/sampler_factories.h"

namespace lumen::samplers {
namespace {

using Factory = std::unique_ptr<Scheduler> (*)(const ScheduleConfig&);

struct Entry {
  const char* name;
  Factory make;
  bool karras = false;  // the name asks for Karras sigmas
};

// diffusers class names first, then the names people know.
const std::vector<Entry>& registry() {
  static const std::vector<Entry> entries = {
      {"DDIMScheduler", make_ddim},
      {"EulerDiscreteScheduler", make_euler},
      {"EulerAncestralDiscreteScheduler", make_euler_ancestral},
      {"LCMScheduler", make_lcm},
      {"PNDMScheduler", make_pndm},
      {"DPMSolverMultistepScheduler", make_dpm_solver_multistep},
      {"UniPCMultistepScheduler", make_unipc},
      {"ddim", make_ddim},
      {"euler", make_euler},
      {"euler_a", make_euler_ancestral},
      {"dpm++_2m", make_dpm_solver_multistep},
      {"dpm++_2m_karras", make_dpm_solver_multistep, true},
      {"unipc", make_unipc},
      {"lcm", make_lcm},
      {"pndm", make_pndm},
      {"plms", make_pndm},
  };
  return entries;
}

}  // namespace

Scheduler::Scheduler(ScheduleConfig config)
    : config_(std::move(config)), alphas_cumprod_(make_alphas_cumprod(config_)) {}

std::vector<std::string> known_sampler_names() {
  std::vector<std::string> names;
  for (const auto& e : registry()) names.emplace_back(e.name);
  return names;
}

std::unique_ptr<Scheduler> make_scheduler(const std::string& name, const ScheduleConfig& config) {
  for (const auto& e : registry()) {
    if (name != e.name) continue;
    if (!e.karras) return e.make(config);
    ScheduleConfig karras = config;
    karras.use_karras_sigmas = true;
    return e.make(karras);
  }
  std::string known;
  for (const auto& n : known_sampler_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("sampler '" + name + "'", "unknown; known samplers: " + known);
}

torch::Tensor run_steps(Scheduler& scheduler, const Denoiser& denoise, torch::Tensor x, int64_t start,
                        at::Generator* generator, const StepCallback& on_step) {
  const auto& timesteps = scheduler.timesteps();
  if (!timesteps.defined() || timesteps.numel() == 0)
    throw Error("sampler", "set_timesteps() must be called before sampling");
  if (start < 0 || start >= timesteps.size(0))
    throw Error("sampler", "start step " + std::to_string(start) + " is outside the " +
                               std::to_string(timesteps.size(0)) + " steps");
  for (int64_t i = start; i < timesteps.size(0); ++i) {
    // The denoiser gets the timestep as a float32 scalar, as a UNet takes it.
    const auto t = timesteps[i].to(torch::kFloat);
    const auto model_output = denoise(scheduler.scale_model_input(x, i), t);
    auto result = scheduler.step(model_output, i, x, generator);
    if (on_step) on_step(i, result);
    x = std::move(result.prev_sample);
  }
  return x;
}

torch::Tensor sample(Scheduler& scheduler, const Denoiser& denoise, const torch::Tensor& noise,
                     at::Generator* generator, const StepCallback& on_step) {
  if (!scheduler.timesteps().defined()) throw Error("sampler", "set_timesteps() must be called before sample()");
  return run_steps(scheduler, denoise, noise * scheduler.init_noise_sigma(), 0, generator, on_step);
}

}  // namespace lumen::samplers
