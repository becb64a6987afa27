// Properties of the samplers that the golden cases do not pin down: zero-SNR
// set-up, refusals, the registry, and that the sampling loop recovers the data
// point when the denoiser is exact.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "error.h"
#include "samplers/scheduler.h"

namespace lumen::samplers {
namespace {

ScheduleConfig sd_config(Prediction prediction, Spacing spacing, bool zero_snr) {
  ScheduleConfig c;  // SD 1.x/2.x: scaled_linear 0.00085..0.012, T = 1000
  c.prediction = prediction;
  c.spacing = spacing;
  c.zero_terminal_snr = zero_snr;
  c.steps_offset = 1;
  return c;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Samplers, ZeroSnrTrailingStartsFromPureNoise) {
  for (const std::string name : {"ddim", "pndm"}) {
    for (int64_t steps : {4, 25}) {
      auto s = make_scheduler(name, sd_config(Prediction::V, Spacing::Trailing, true));
      s->set_timesteps(steps);
      ASSERT_EQ(s->timesteps()[0].item<int64_t>(), 999) << name;
      EXPECT_EQ(s->alphas_cumprod()[999].item<float>(), 0.0f) << name << ": SNR at t = 999 must be 0";
      EXPECT_GT(s->alphas_cumprod()[998].item<float>(), 0.0f) << name;
      // The first step, from pure noise, is finite: x0 = −v there.
      auto x = torch::randn({1, 4, 8, 8}), v = torch::randn({1, 4, 8, 8});
      auto out = s->step(v, 0, x, nullptr);
      EXPECT_TRUE(torch::isfinite(out.prev_sample).all().item<bool>()) << name;
      if (out.pred_original_sample.defined()) EXPECT_TRUE(torch::allclose(out.pred_original_sample, -v)) << name;
    }
  }
}

TEST(Samplers, EpsilonOnZeroSnrIsRefused) {
  for (const std::string name : {"ddim", "lcm", "pndm"}) {
    auto s = make_scheduler(name, sd_config(Prediction::Epsilon, Spacing::Trailing, true));
    const auto message = error_of([&] { s->set_timesteps(4); });
    EXPECT_NE(message.find("v-prediction"), std::string::npos) << name << ": " << message;
  }
  // Leading spacing never reaches t = 999 for DDIM: allowed.
  auto ddim = make_scheduler("ddim", sd_config(Prediction::Epsilon, Spacing::Leading, true));
  EXPECT_NO_THROW(ddim->set_timesteps(25));
}

TEST(Samplers, DdimEtaOnZeroSnrStaysFinite) {
  // The reference makes NaN here (√ of a rounding-negative 1 − ᾱ_prev − σ², exactly 0 in theory).
  auto config = sd_config(Prediction::V, Spacing::Trailing, true);
  config.eta = 1.0;
  auto s = make_scheduler("ddim", config);
  s->set_timesteps(25);
  auto gen = at::detail::createCPUGenerator(7);
  auto x = sample(
      *s, [](const torch::Tensor& x, const torch::Tensor&) { return 0.3 * x - 0.1; }, torch::randn({1, 4, 4, 6}), &gen);
  EXPECT_TRUE(torch::isfinite(x).all().item<bool>());
}

// img2img starts PLMS part-way down its timesteps. diffusers' PNDMScheduler
// counts its calls: the first is an order-1 step whatever the index (DDIM's
// from that timestep), the second redoes a step with the mean output. Keyed
// on the index, a start at index 1 read an empty history and crashed.
TEST(Samplers, PlmsStartedPartWayFollowsTheReferencesCallCount) {
  const auto config = sd_config(Prediction::Epsilon, Spacing::Leading, false);
  auto plms = make_scheduler("plms", config);
  auto ddim = make_scheduler("ddim", config);
  plms->set_timesteps(4);
  ddim->set_timesteps(4);
  const auto x = torch::randn({1, 4, 8, 8}), e = torch::randn({1, 4, 8, 8});
  // PLMS's timesteps repeat their second entry: index 1 of PLMS is index 1 of DDIM.
  ASSERT_EQ(plms->timesteps()[1].item<int64_t>(), ddim->timesteps()[1].item<int64_t>());
  const auto first = plms->step(e, 1, x, nullptr).prev_sample;
  EXPECT_TRUE(torch::allclose(first, ddim->step(e, 1, x, nullptr).prev_sample, 1e-5, 1e-6));
  const auto e2 = torch::randn({1, 4, 8, 8});
  // The reference's redo: from x again with the mean output, read as one
  // stride above the passed timestep (DDIM's index 0 here, 751 → 501).
  const auto second = plms->step(e2, 2, first, nullptr).prev_sample;
  EXPECT_TRUE(torch::allclose(second, ddim->step((e + e2) / 2, 0, x, nullptr).prev_sample, 1e-5, 1e-6));
  for (int64_t i = 3; i < plms->timesteps().size(0); ++i)
    EXPECT_TRUE(plms->step(torch::randn({1, 4, 8, 8}), i, x, nullptr).prev_sample.isfinite().all().item<bool>());
}

TEST(Samplers, UnknownNameListsKnownNames) {
  const auto message = error_of([] { make_scheduler("heun++", ScheduleConfig{}); });
  ASSERT_FALSE(message.empty());
  EXPECT_NE(message.find("heun++"), std::string::npos) << message;
  for (const auto& name : known_sampler_names()) EXPECT_NE(message.find(name), std::string::npos) << name;
  EXPECT_NE(message.find("euler_a"), std::string::npos);
  EXPECT_NE(message.find("DDIMScheduler"), std::string::npos);
}

// Schedules whose ᾱ would leave (0, 1] sample NaN: refused from the config.
TEST(Samplers, ScheduleConfigsThatWouldGiveNanAreRefused) {
  const nlohmann::json good = {{"beta_start", 0.00085}, {"beta_end", 0.012}, {"beta_schedule", "scaled_linear"},
                               {"steps_offset", 1}};
  EXPECT_NO_THROW(parse_schedule_config(good, "s.json"));
  for (const auto& [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"beta_start", -0.1}, {"beta_start", 0.5}, {"beta_end", 1.0}, {"beta_end", 1.5},
           {"steps_offset", 100000}, {"steps_offset", -1}, {"clip_sample_range", 0}}) {
    auto bad = good;
    bad[key] = value;
    const auto message = error_of([&] { parse_schedule_config(bad, "s.json"); });
    EXPECT_NE(message.find("s.json: scheduler field"), std::string::npos) << key << " " << value << ": " << message;
    EXPECT_NE(message.find(key), std::string::npos) << message;
  }
}

TEST(Samplers, NonPositiveStepsAreRefused) {
  for (const std::string name : {"ddim", "euler", "euler_a", "lcm", "pndm"}) {
    auto s = make_scheduler(name, ScheduleConfig{});
    EXPECT_THROW(s->set_timesteps(0), Error) << name;
    EXPECT_THROW(s->set_timesteps(-3), Error) << name;
  }
}

TEST(Samplers, SampleNeedsTimesteps) {
  auto s = make_scheduler("ddim", ScheduleConfig{});
  EXPECT_THROW(
      sample(
          *s, [](const torch::Tensor& x, const torch::Tensor&) { return x; }, torch::randn({1, 4, 2, 2}), nullptr),
      Error);
}

TEST(Samplers, ScheduleShapes) {
  auto pndm = make_scheduler("plms", sd_config(Prediction::Epsilon, Spacing::Leading, false));
  pndm->set_timesteps(4);
  ASSERT_EQ(pndm->timesteps().size(0), 5);  // the 2nd timestep is repeated
  EXPECT_EQ(pndm->timesteps()[1].item<int64_t>(), pndm->timesteps()[2].item<int64_t>());
  EXPECT_FALSE(pndm->sigmas().defined());

  auto euler = make_scheduler("euler", sd_config(Prediction::Epsilon, Spacing::Leading, false));
  euler->set_timesteps(10);
  EXPECT_EQ(euler->timesteps().scalar_type(), torch::kFloat);
  ASSERT_EQ(euler->sigmas().size(0), 11);
  EXPECT_EQ(euler->sigmas()[-1].item<float>(), 0.0f);
  EXPECT_NEAR(euler->init_noise_sigma(), std::sqrt(std::pow(euler->sigmas()[0].item<double>(), 2) + 1),
              1e-5);  // leading: √(σ_max² + 1)

  auto zsnr = make_scheduler("euler", sd_config(Prediction::V, Spacing::Trailing, true));
  zsnr->set_timesteps(10);
  EXPECT_NEAR(zsnr->init_noise_sigma(), 4096.0, 0.01);  // ᾱ_T = 2⁻²⁴

  auto karras = make_scheduler("dpm++_2m_karras", ScheduleConfig{});
  EXPECT_TRUE(karras->config().use_karras_sigmas);
}

// An exact denoiser for a data set of one point x0: from the VP-scaled model
// input x_t = √ᾱ·x0 + √(1 − ᾱ)·ε it returns the true ε (or v). Every
// sampler must then land on x0.
torch::Tensor exact_output(const Scheduler& s, const torch::Tensor& x0, const torch::Tensor& x_in,
                           const torch::Tensor& t) {
  const double a = s.alphas_cumprod()[std::lround(t.item<double>())].item<double>();
  if (s.config().prediction == Prediction::V) {
    // v = √ᾱ·ε − √(1 − ᾱ)·x0, with ε = (x_t − √ᾱ·x0)/√(1 − ᾱ); at ᾱ = 0 that is v = −x0.
    if (a == 0) return -x0;
    const auto eps = (x_in - std::sqrt(a) * x0) / std::sqrt(1 - a);
    return std::sqrt(a) * eps - std::sqrt(1 - a) * x0;
  }
  return (x_in - std::sqrt(a) * x0) / std::sqrt(1 - a);
}

TEST(Samplers, ExactDenoiserRecoversTheDataPoint) {
  torch::manual_seed(0);
  const auto x0 = torch::rand({1, 4, 8, 8}) * 2 - 1;
  const auto noise = torch::randn({1, 4, 8, 8});
  struct Case {
    const char* name;
    Prediction prediction;
    Spacing spacing;
    bool zero_snr;
  };
  // Leading spacing keeps Euler's timesteps integer, so ᾱ at t is a table look-up.
  const Case cases[] = {
      {"ddim", Prediction::Epsilon, Spacing::Leading, false},
      {"ddim", Prediction::V, Spacing::Trailing, true},
      {"euler", Prediction::Epsilon, Spacing::Leading, false},
      {"euler", Prediction::V, Spacing::Leading, false},
      {"euler", Prediction::V, Spacing::Trailing, true},
      {"euler_a", Prediction::Epsilon, Spacing::Leading, false},
      {"pndm", Prediction::Epsilon, Spacing::Leading, false},
      {"pndm", Prediction::V, Spacing::Trailing, true},
      {"lcm", Prediction::Epsilon, Spacing::Leading, false},
      {"lcm", Prediction::V, Spacing::Leading, true},
  };
  for (const auto& c : cases) {
    auto config = sd_config(c.prediction, c.spacing, c.zero_snr);
    config.set_alpha_to_one = true;  // the last step lands on ᾱ = 1, i.e. on x0 itself
    auto s = make_scheduler(c.name, config);
    s->set_timesteps(c.zero_snr ? 25 : 8);
    auto gen = at::detail::createCPUGenerator(1);
    int64_t calls = 0;
    auto x = sample(
        *s,
        [&](const torch::Tensor& x_in, const torch::Tensor& t) {
          ++calls;
          return exact_output(*s, x0, x_in, t);
        },
        noise, &gen);
    EXPECT_EQ(calls, s->timesteps().size(0)) << c.name;
    // PLMS extrapolates the model outputs; the exact ε is the same at every step
    // (one data point, one noise), the exact v is not, so PLMS on v is only close.
    const bool multistep_on_v = std::string(c.name) == "pndm" && c.prediction == Prediction::V;
    const double err = (x - x0).abs().max().item<double>();
    EXPECT_LT(err, multistep_on_v ? 0.05 : 5e-4)
        << c.name << " prediction " << int(c.prediction) << " zero-SNR " << c.zero_snr;
  }
}

}  // namespace
}  // namespace lumen::samplers
