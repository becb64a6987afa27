// Beta schedules, the zero-terminal-SNR rescale and config parsing, computed
// in float32 exactly as the reference does (its results are compared bitwise
// closely, so the order of operations matters).
#include <cmath>

#include "error.h"
#include "samplers/scheduler.h"

namespace lumen::samplers {
namespace {

using nlohmann::json;

template <typename T>
T field(const json& j, const char* key, T fallback, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  try {
    return j[key].get<T>();
  } catch (const json::exception&) {
    throw Error(where, std::string("scheduler field '") + key + "' has the wrong type");
  }
}

// One of `names`, mapped to the enum value at the same position.
template <typename E>
E choice(const json& j, const char* key, const std::vector<std::pair<std::string, E>>& names, E fallback,
         const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const std::string value = field<std::string>(j, key, "", where);
  std::string known;
  for (const auto& [name, e] : names) {
    if (name == value) return e;
    known += (known.empty() ? "" : ", ") + name;
  }
  throw Error(where, std::string("scheduler field '") + key + "' = '" + value + "' is not one of: " + known);
}

// diffusers' betas_for_alpha_bar with the cosine alpha_bar, in double precision.
torch::Tensor cosine_betas(int64_t steps) {
  auto alpha_bar = [](double t) { return std::pow(std::cos((t + 0.008) / 1.008 * M_PI / 2), 2); };
  std::vector<float> betas;
  for (int64_t i = 0; i < steps; ++i) {
    const double t1 = static_cast<double>(i) / steps, t2 = static_cast<double>(i + 1) / steps;
    betas.push_back(static_cast<float>(std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999)));
  }
  return torch::tensor(betas, torch::kFloat);
}

}  // namespace

ScheduleConfig parse_schedule_config(const json& j, const std::string& where) {
  if (!j.is_object()) throw Error(where, "scheduler config is not a JSON object");
  ScheduleConfig c;
  c.num_train_timesteps = field<int64_t>(j, "num_train_timesteps", 1000, where);
  if (c.num_train_timesteps < 2 || c.num_train_timesteps > 100000)
    throw Error(where, "scheduler field 'num_train_timesteps' must be in [2, 100000]");
  c.beta_start = field<double>(j, "beta_start", 0.0001, where);
  c.beta_end = field<double>(j, "beta_end", 0.02, where);
  // Outside 0 < start ≤ end < 1 the schedule's ᾱ leaves (0, 1] and sampling gives NaN.
  if (!(c.beta_start > 0 && c.beta_start <= c.beta_end && c.beta_end < 1))
    throw Error(where, "scheduler fields 'beta_start' and 'beta_end' must satisfy 0 < beta_start <= beta_end < 1");
  c.beta_schedule = choice<BetaSchedule>(j, "beta_schedule",
                                         {{"linear", BetaSchedule::Linear},
                                          {"scaled_linear", BetaSchedule::ScaledLinear},
                                          {"squaredcos_cap_v2", BetaSchedule::SquaredCosCapV2}},
                                         BetaSchedule::Linear, where);
  c.trained_betas = field<std::vector<double>>(j, "trained_betas", {}, where);
  if (!c.trained_betas.empty() && static_cast<int64_t>(c.trained_betas.size()) != c.num_train_timesteps)
    throw Error(where, "scheduler field 'trained_betas' must have num_train_timesteps entries");
  for (double b : c.trained_betas)
    if (!(b > 0 && b < 1)) throw Error(where, "scheduler field 'trained_betas' must hold values in (0, 1)");
  c.prediction = choice<Prediction>(j, "prediction_type",
                                    {{"epsilon", Prediction::Epsilon},
                                     {"v_prediction", Prediction::V},
                                     {"sample", Prediction::Sample}},
                                    Prediction::Epsilon, where);
  c.spacing = choice<Spacing>(j, "timestep_spacing",
                              {{"leading", Spacing::Leading},
                               {"trailing", Spacing::Trailing},
                               {"linspace", Spacing::Linspace}},
                              Spacing::Leading, where);
  c.steps_offset = field<int64_t>(j, "steps_offset", 0, where);
  if (c.steps_offset < 0 || c.steps_offset >= c.num_train_timesteps)
    throw Error(where, "scheduler field 'steps_offset' must be in [0, num_train_timesteps)");
  c.zero_terminal_snr = field<bool>(j, "rescale_betas_zero_snr", false, where);
  c.set_alpha_to_one = field<bool>(j, "set_alpha_to_one", true, where);
  c.clip_sample = field<bool>(j, "clip_sample", false, where);
  c.clip_sample_range = field<double>(j, "clip_sample_range", 1.0, where);
  if (!(c.clip_sample_range > 0 && std::isfinite(c.clip_sample_range)))
    throw Error(where, "scheduler field 'clip_sample_range' must be a positive number");
  c.use_karras_sigmas = field<bool>(j, "use_karras_sigmas", false, where);
  c.eta = field<double>(j, "eta", 0.0, where);
  if (!std::isfinite(c.eta) || c.eta < 0) throw Error(where, "scheduler field 'eta' must be ≥ 0");
  c.extra = j;
  return c;
}

torch::Tensor make_betas(const ScheduleConfig& c) {
  if (!c.trained_betas.empty()) return torch::tensor(c.trained_betas, torch::kDouble).to(torch::kFloat);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat);
  switch (c.beta_schedule) {
    case BetaSchedule::Linear:
      return torch::linspace(c.beta_start, c.beta_end, c.num_train_timesteps, f32);
    case BetaSchedule::ScaledLinear:
      return torch::linspace(std::sqrt(c.beta_start), std::sqrt(c.beta_end), c.num_train_timesteps, f32).pow(2);
    case BetaSchedule::SquaredCosCapV2:
      return cosine_betas(c.num_train_timesteps);
  }
  return {};
}

torch::Tensor rescale_zero_terminal_snr(const torch::Tensor& betas) {
  auto alphas_bar_sqrt = (1.0 - betas).cumprod(0).sqrt();
  auto first = alphas_bar_sqrt[0].clone(), last = alphas_bar_sqrt[-1].clone();
  // Shift so the last √ᾱ is 0, then scale so the first is unchanged.
  alphas_bar_sqrt = (alphas_bar_sqrt - last) * (first / (first - last));
  auto alphas_bar = alphas_bar_sqrt.pow(2);
  auto alphas = torch::cat({alphas_bar.slice(0, 0, 1), alphas_bar.slice(0, 1) / alphas_bar.slice(0, 0, -1)});
  return 1.0 - alphas;
}

torch::Tensor make_alphas_cumprod(const ScheduleConfig& c) {
  auto betas = make_betas(c);
  if (c.zero_terminal_snr) betas = rescale_zero_terminal_snr(betas);
  return (1.0 - betas).cumprod(0);
}

}  // namespace lumen::samplers
