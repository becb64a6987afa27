// UniPC (Zhao et al. 2023): a multistep predictor (UniP) and corrector (UniC)
// with the B(h) variants bh1/bh2, step for step as diffusers 0.27's
// UniPCMultistepScheduler (solver_p unsupported).
//
// Beyond the reference: `rescale_betas_zero_snr` is accepted (diffusers 0.27's
// UniPC has no such option) with DPM-Solver's convention, ᾱ_T = 2^-24, i.e.
// σ_max ≈ 4096, so ε- and v-prediction stay finite at t = T.
//
// Scalars are float32 0-dim tensors combined in the reference's order of
// operations (see dpm_solver.cpp).
#include <algorithm>
#include <cmath>
#include <deque>
#include <set>
#include <string>
#include <vector>

#include "error.h"
#include "samplers/multistep_common.h"
#include "samplers/parameterization.h"
#include "samplers/sampler_factories.h"
#include "samplers/scheduler.h"

namespace lumen::samplers {

// Shared with DPM-Solver; defined in dpm_solver.cpp.

namespace {

using multistep::NoiseLevel;
const char* const kWho = "UniPCMultistepScheduler";

template <typename T>
T extra_value(const ScheduleConfig& c, const char* key, T fallback) {
  if (!c.extra.contains(key) || c.extra[key].is_null()) return fallback;
  try {
    return c.extra[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    throw Error(kWho, std::string("config field '") + key + "' has the wrong type");
  }
}

class UniPCMultistep final : public Scheduler {
 public:
  explicit UniPCMultistep(ScheduleConfig config) : Scheduler(std::move(config)) {
    const auto& c = config_;
    order_ = extra_value<int64_t>(c, "solver_order", 2);
    if (order_ < 1 || order_ > 3) throw Error(kWho, "solver_order " + std::to_string(order_) + " is not in [1, 3]");
    predict_x0_ = extra_value<bool>(c, "predict_x0", true);
    const auto solver_type = extra_value<std::string>(c, "solver_type", "bh2");
    if (solver_type == "bh1") {
      bh1_ = true;
    } else if (solver_type != "bh2" && solver_type != "midpoint" && solver_type != "heun" &&
               solver_type != "logrho") {
      throw Error(kWho, "solver_type '" + solver_type + "' is not one of: bh1, bh2");
    }  // diffusers maps midpoint/heun/logrho to bh2
    lower_order_final_ = extra_value<bool>(c, "lower_order_final", true);
    for (int64_t i : extra_value<std::vector<int64_t>>(c, "disable_corrector", {})) disable_corrector_.insert(i);
    if (c.extra.contains("solver_p") && !c.extra["solver_p"].is_null())
      throw Error(kWho, "solver_p (an external predictor) is not supported");
    if (extra_value<bool>(c, "thresholding", false)) throw Error(kWho, "thresholding is not supported");
    // 0.27 has no final_sigmas_type and ends at the schedule's σ_min; newer configs may ask for 0.
    const auto final_sigmas = extra_value<std::string>(c, "final_sigmas_type", "sigma_min");
    if (final_sigmas != "zero" && final_sigmas != "sigma_min")
      throw Error(kWho, "final_sigmas_type '" + final_sigmas + "' is not one of: zero, sigma_min");
    final_sigma_zero_ = final_sigmas == "zero";
    alphas_cumprod_ = alphas_cumprod_with_finite_end(c);
  }

  void set_timesteps(int64_t steps) override {
    const int64_t T = config_.num_train_timesteps;
    const auto train_sigmas = multistep::train_sigmas(alphas_cumprod_);
    std::vector<int64_t> timesteps;
    std::vector<double> sigmas;
    multistep::step_schedule(config_, steps, T, train_sigmas, kWho, timesteps, sigmas);
    // 0.27 ends Karras schedules at their own last σ, others at the training σ_min.
    const double sigma_last = config_.use_karras_sigmas ? sigmas.back() : train_sigmas[0].item<float>();
    sigmas.push_back(final_sigma_zero_ ? 0.0 : sigma_last);
    timesteps_ = multistep::int64_tensor(timesteps);
    sigmas_ = multistep::float32_tensor(sigmas);
    reset();
  }

  StepResult step(const torch::Tensor& model_output, int64_t i, const torch::Tensor& sample,
                  at::Generator* /*generator: deterministic*/) override {
    multistep::check_step_index(timesteps_, i, kWho);
    const int64_t n = timesteps_.size(0);
    if (i != last_step_ + 1) reset();  // a new run (or a jump): no usable history
    last_step_ = i;

    const auto converted = convert_model_output(model_output, sample, i);
    // Correct the previous step's prediction (now at σ_i) with the model output there.
    auto x = sample;
    if (i > 0 && last_sample_.defined() && !disable_corrector_.count(i - 1))
      x = corrector_update(converted, last_sample_, sample, this_order_, i);

    outputs_.push_back(converted);
    if (static_cast<int64_t>(outputs_.size()) > order_) outputs_.pop_front();

    int64_t order = lower_order_final_ ? std::min(order_, n - i) : order_;
    this_order_ = std::min(order, static_cast<int64_t>(outputs_.size()));  // warm-up: as many outputs as we have
    last_sample_ = x;

    StepResult result;
    result.prev_sample = predictor_update(x, this_order_, i);
    return result;
  }

 private:
  void reset() {
    outputs_.clear();
    last_sample_ = torch::Tensor();
    this_order_ = 1;
    last_step_ = -1;
  }

  // x₀ (predict_x0, "data prediction") or ε ("noise prediction") from the model output at σ_i.
  torch::Tensor convert_model_output(const torch::Tensor& model_output, const torch::Tensor& sample,
                                     int64_t i) const {
    const NoiseLevel s(sigmas_[i]);
    return predict_x0_ ? predicted_x0(config_.prediction, model_output, sample, s.alpha, s.sigma)
                       : predicted_epsilon(config_.prediction, model_output, sample, s.alpha, s.sigma);
  }

  // The B(h)-dependent coefficients shared by UniP and UniC: with hh = ∓h,
  // h·φ₁ = e^hh - 1, B(h) = hh (bh1) or e^hh - 1 (bh2), and the right-hand side
  // b_k = h·φ_{k+1}·k! / B(h) of the order conditions.
  struct Coefficients {
    torch::Tensor h_phi_1, b_h, rhs;  // rhs: float32 [order]
  };
  Coefficients coefficients(const torch::Tensor& h, int64_t order) const {
    const auto hh = predict_x0_ ? -h : h;
    Coefficients c;
    c.h_phi_1 = torch::expm1(hh);
    c.b_h = bh1_ ? hh : torch::expm1(hh);
    auto h_phi_k = c.h_phi_1 / hh - 1;
    int64_t factorial = 1;
    std::vector<torch::Tensor> rhs;
    for (int64_t k = 1; k <= order; ++k) {
      rhs.push_back(h_phi_k * factorial / c.b_h);
      factorial *= k + 1;
      h_phi_k = h_phi_k / hh - 1.0 / static_cast<double>(factorial);
    }
    c.rhs = torch::stack(rhs);
    return c;
  }

  // rks = (λ_{s_k} - λ_{s0}) / h for the older outputs, then 1; R = [rks^0; rks^1; ...].
  static torch::Tensor vandermonde(const std::vector<torch::Tensor>& rks_in, int64_t order) {
    auto rks_list = rks_in;
    rks_list.push_back(torch::ones({}, torch::kFloat));
    const auto rks = torch::stack(rks_list);
    std::vector<torch::Tensor> rows;
    for (int64_t k = 1; k <= order; ++k) rows.push_back(torch::pow(rks, k - 1));
    return torch::stack(rows);
  }

  // Σ_k ρ_k · D1_k over the stacked differences (the reference's einsum).
  static torch::Tensor weighted(const torch::Tensor& rhos, const std::vector<torch::Tensor>& d1s) {
    return torch::einsum("k,bkc...->bc...", {rhos, torch::stack(d1s, 1)});
  }

  // UniP: from x at σ_i to σ_{i+1} using the last `order` converted outputs.
  torch::Tensor predictor_update(const torch::Tensor& x, int64_t order, int64_t i) const {
    const NoiseLevel t(sigmas_[i + 1]), s0(sigmas_[i]);
    const auto h = t.lambda - s0.lambda;
    const auto& m0 = outputs_.back();
    std::vector<torch::Tensor> rks, d1s;
    for (int64_t k = 1; k < order; ++k) {
      const NoiseLevel sk(sigmas_[i - k]);
      const auto rk = (sk.lambda - s0.lambda) / h;
      rks.push_back(rk);
      d1s.push_back((outputs_[outputs_.size() - 1 - k] - m0) / rk);
    }
    const auto c = coefficients(h, order);
    torch::Tensor pred_res;
    if (!d1s.empty()) {
      torch::Tensor rhos;
      if (order == 2) {
        rhos = torch::full({1}, 0.5, x.options());
      } else {
        const auto R = vandermonde(rks, order);
        rhos = at::linalg_solve(R.slice(0, 0, -1).slice(1, 0, -1), c.rhs.slice(0, 0, -1), true).to(x.dtype());
      }
      pred_res = weighted(rhos, d1s);
    }
    const auto& scale = predict_x0_ ? t.alpha : t.sigma;
    const auto x_t_ = predict_x0_ ? (t.sigma / s0.sigma) * x - t.alpha * c.h_phi_1 * m0
                                  : (t.alpha / s0.alpha) * x - t.sigma * c.h_phi_1 * m0;
    if (!pred_res.defined()) return x_t_;  // the reference subtracts scale·B(h)·0
    return (x_t_ - scale * c.b_h * pred_res).to(x.dtype());
  }

  // UniC: re-does the last predictor step (from last_sample at σ_{i-1} to σ_i) with the new
  // model output at σ_i as an extra point, giving a corrected sample at σ_i.
  torch::Tensor corrector_update(const torch::Tensor& model_t, const torch::Tensor& last_sample,
                                 const torch::Tensor& this_sample, int64_t order, int64_t i) const {
    const NoiseLevel t(sigmas_[i]), s0(sigmas_[i - 1]);
    const auto h = t.lambda - s0.lambda;
    const auto& m0 = outputs_.back();
    std::vector<torch::Tensor> rks, d1s;
    for (int64_t k = 1; k < order; ++k) {
      const NoiseLevel sk(sigmas_[i - (k + 1)]);
      const auto rk = (sk.lambda - s0.lambda) / h;
      rks.push_back(rk);
      d1s.push_back((outputs_[outputs_.size() - 1 - k] - m0) / rk);
    }
    const auto c = coefficients(h, order);
    torch::Tensor rhos;
    if (order == 1) {
      rhos = torch::full({1}, 0.5, this_sample.options());
    } else {
      rhos = at::linalg_solve(vandermonde(rks, order), c.rhs, true).to(this_sample.dtype());
    }
    const auto& x = last_sample;
    const auto& scale = predict_x0_ ? t.alpha : t.sigma;
    const auto x_t_ = predict_x0_ ? (t.sigma / s0.sigma) * x - t.alpha * c.h_phi_1 * m0
                                  : (t.alpha / s0.alpha) * x - t.sigma * c.h_phi_1 * m0;
    const auto d1_t = model_t - m0;
    auto correction = rhos[-1] * d1_t;
    if (!d1s.empty()) correction = weighted(rhos.slice(0, 0, -1), d1s) + correction;
    return (x_t_ - scale * c.b_h * correction).to(x.dtype());
  }

  int64_t order_ = 2;
  bool predict_x0_ = true, bh1_ = false, lower_order_final_ = true, final_sigma_zero_ = false;
  std::set<int64_t> disable_corrector_;
  std::deque<torch::Tensor> outputs_;  // converted model outputs, oldest first (at most order_)
  torch::Tensor last_sample_;          // the sample the last predictor step started from
  int64_t this_order_ = 1;             // the order of the last predictor step
  int64_t last_step_ = -1;
};

}  // namespace

std::unique_ptr<Scheduler> make_unipc(const ScheduleConfig& config) {
  return std::make_unique<UniPCMultistep>(config);
}

}  // namespace lumen::samplers
