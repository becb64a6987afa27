#include "pipeline/pipeline.h"

#include <cmath>
#include <filesystem>
#include <limits>

#include "error.h"
#include "model/device.h"
#include "nn/vae_tiling.h"
#include "perf/stopwatch.h"
#include "pipeline/memory_estimate.h"
#include "prompt/prompt_parser.h"
#include "samplers/guidance.h"

namespace lumen {
namespace {

using nlohmann::json;

std::vector<std::string> per_item(const std::vector<std::string>& list, const std::string& one, int64_t batch) {
  if (!list.empty()) return list;
  return std::vector<std::string>(static_cast<size_t>(batch), one);
}

// √ᾱ and √(1−ᾱ) at timestep t, for converting ε to v.
std::pair<double, double> signal_noise(const samplers::Scheduler& s, const torch::Tensor& timestep) {
  const int64_t t = std::llround(timestep.item<double>());
  const double a = s.alphas_cumprod()[std::clamp<int64_t>(t, 0, s.alphas_cumprod().size(0) - 1)].item<double>();
  return {std::sqrt(a), std::sqrt(1 - a)};
}

torch::Tensor guide(const samplers::Scheduler& s, const torch::Tensor& timestep, const torch::Tensor& uncond,
                    const torch::Tensor& cond, const torch::Tensor& x_in, const GenerationOptions& o) {
  auto guided = samplers::classifier_free_guidance(uncond, cond, o.cfg_scale);
  if (o.guidance_rescale <= 0) return guided;
  const auto prediction = s.config().prediction;
  if (o.rescale_space == RescaleSpace::ModelOutput || prediction == samplers::Prediction::V)
    return samplers::rescale_guidance(guided, cond, o.guidance_rescale);
  if (prediction != samplers::Prediction::Epsilon)
    throw Error("guidance rescale", "v-space rescale needs an ε- or v-prediction model");
  // ε → v = (ε − √(1−ᾱ)·x)/√ᾱ, rescale, and back: ε = √ᾱ·v + √(1−ᾱ)·x.
  auto [sa, sn] = signal_noise(s, timestep);
  auto to_v = [&](const torch::Tensor& eps) { return (eps - sn * x_in) / sa; };
  auto v = samplers::rescale_guidance(to_v(guided), to_v(cond), o.guidance_rescale);
  return sa * v + sn * x_in;
}

}  // namespace

void check_size_factor(const GenerationOptions& o, int64_t factor) {
  for (auto [name, v] : {std::pair<const char*, int64_t>{"width", o.width}, {"height", o.height}}) {
    if (v % factor != 0) {
      // The nearest valid sizes; 0 means "the model's size", so it is no suggestion.
      const int64_t below = v / factor * factor, above = below + factor;
      throw Error(name, std::to_string(v) + " is not a multiple of " + std::to_string(factor) +
                            " (the model's down-sampling factor); try " +
                            (below > 0 ? std::to_string(below) + " or " : std::string()) + std::to_string(above));
    }
  }
}

void validate_options(const GenerationOptions& o) {
  if (o.steps <= 0 || o.steps > kMaxSteps)
    throw Error("steps", std::to_string(o.steps) + " must be in 1.." + std::to_string(kMaxSteps));
  // Far beyond any useful guidance; larger scales overflow the latents to NaN (a black image).
  if (!std::isfinite(o.cfg_scale) || o.cfg_scale < 0 || o.cfg_scale > kMaxCfgScale)
    throw Error("cfg scale", "must be a number in [0, " + std::to_string(static_cast<int>(kMaxCfgScale)) + "]");
  if (!std::isfinite(o.eta) || o.eta < 0 || o.eta > 1) throw Error("eta", "must be a number in [0, 1]");
  if (!std::isfinite(o.guidance_rescale) || o.guidance_rescale < 0 || o.guidance_rescale > 1)
    throw Error("guidance rescale", "must be a number in [0, 1]");
  if (!std::isfinite(o.strength) || o.strength <= 0 || o.strength > 1)
    throw Error("strength", "must be in (0, 1]");
  for (auto [name, v] : {std::pair<const char*, int64_t>{"width", o.width}, {"height", o.height}})
    if (v < 0 || v > 16384) throw Error(name, std::to_string(v) + " must be in 1..16384 (0: the model's size)");
  const int64_t batch = o.prompts.empty() ? o.batch_size : static_cast<int64_t>(o.prompts.size());
  if (batch <= 0 || batch > 64) throw Error("batch size", "must be in 1..64");
  // Image i uses seed + i: past 2^64 - 1 the seeds would wrap to 0, 1, …
  if (o.seed > std::numeric_limits<uint64_t>::max() - static_cast<uint64_t>(batch - 1))
    throw Error("seed", "seed + batch size - 1 must not pass 18446744073709551615 (the seeds would wrap to 0)");
  if (!o.encoding.plain) {
    for (const auto* list : {&o.prompts, &o.negative_prompts})
      for (const auto& p : *list) parse_prompt_weights(p);
    for (const auto* p : {&o.prompt, &o.negative_prompt, &o.prompt_2, &o.negative_prompt_2}) parse_prompt_weights(*p);
  }
}

// A NaN or inf anywhere in a generation ends as a black image: say which stage
// broke instead (a stranger's weights, an adapter, or extreme settings).
void require_finite(const torch::Tensor& t, const char* stage) {
  if (!torch::isfinite(t).all().item<bool>())
    throw Error(stage, "gives non-finite values (NaN or inf): a weight or config value of the model or of an "
                       "applied adapter is broken, or a setting is extreme");
}

// Noise added to clean latents for a start at `index` (img2img, inpainting).
torch::Tensor add_noise(const samplers::Scheduler& s, const torch::Tensor& x, const torch::Tensor& noise, int64_t index) {
  if (s.sigmas().defined()) return x + noise * s.sigmas()[index].item<double>();
  const int64_t t = static_cast<int64_t>(s.timesteps()[index].item<double>());
  const double a = s.alphas_cumprod()[t].item<double>();
  return std::sqrt(a) * x + std::sqrt(1 - a) * noise;
}

json default_scheduler_config() {
  return {{"_class_name", "EulerDiscreteScheduler"}, {"num_train_timesteps", 1000}, {"beta_start", 0.00085},
            {"beta_end", 0.012}, {"beta_schedule", "scaled_linear"}, {"steps_offset", 1},
            {"set_alpha_to_one", false}, {"clip_sample", false}, {"timestep_spacing", "leading"},
            {"prediction_type", "epsilon"}};
}

Pipeline::Pipeline(std::shared_ptr<LoadedModel> model, json scheduler_config)
    : model_(std::move(model)), scheduler_config_(std::move(scheduler_config)) {
  if (scheduler_config_.is_null()) {
    const auto& plan = model_->plan;
    scheduler_config_ = plan.scheduler_config.is_object() ? plan.scheduler_config : default_scheduler_config();
    if (!plan.prediction_type.empty()) scheduler_config_["prediction_type"] = plan.prediction_type;
    if (plan.zero_terminal_snr) {
      // The `ztsnr` marker: trained with zero terminal SNR, to be sampled from the last timestep.
      scheduler_config_["rescale_betas_zero_snr"] = true;
      scheduler_config_["timestep_spacing"] = "trailing";
    }
  }
  // Checked now, naming the model, rather than at the first generation.
  samplers::parse_schedule_config(scheduler_config_, scheduler_where());
}

std::string Pipeline::scheduler_where() const {
  const std::string& path = model_->plan.path;
  if (path.empty()) return "scheduler config";
  return std::filesystem::is_directory(path) ? path + "/scheduler/scheduler_config.json"
                                             : path + ": its stored scheduler config";
}

std::unique_ptr<samplers::Scheduler> Pipeline::make_scheduler(const GenerationOptions& o) const {
  json c = scheduler_config_;
  if (o.prediction_type) c["prediction_type"] = *o.prediction_type;
  if (o.timestep_spacing) c["timestep_spacing"] = *o.timestep_spacing;
  if (o.zero_terminal_snr) c["rescale_betas_zero_snr"] = *o.zero_terminal_snr;
  if (o.karras_sigmas) c["use_karras_sigmas"] = *o.karras_sigmas;
  auto config = samplers::parse_schedule_config(c, scheduler_where());
  config.eta = o.eta;
  const std::string name = !o.sampler.empty() ? o.sampler : c.value("_class_name", std::string("euler"));
  auto s = samplers::make_scheduler(name, config);
  s->set_timesteps(o.steps);
  return s;
}

int64_t native_image_size(const LoadedModel& m) {
  return m.unet->config.sample_size * m.vae->config.downsampling_factor();
}

double estimated_unet_step_flops(const LoadedModel& m, const GenerationOptions& o) {
  const int64_t factor = m.vae->config.downsampling_factor();
  const int64_t native = native_image_size(m);
  const double pixels = static_cast<double>((o.width > 0 ? o.width : native) / factor) *
                        static_cast<double>((o.height > 0 ? o.height : native) / factor);
  const double batch = static_cast<double>(o.prompts.empty() ? o.batch_size : static_cast<int64_t>(o.prompts.size())) *
                       (o.cfg_scale > 1.0 ? 2 : 1);
  double parameters = 0;
  for (const auto& p : m.unet->parameters()) parameters += static_cast<double>(p.numel());
  return 2.0 * parameters * pixels * batch;
}

GenerationResult Pipeline::generate(const GenerationOptions& options) const {
  torch::InferenceMode inference;
  const LoadedModel& m = *model_;
  auto unet = m.unet;  // holders: non-const handles on the shared modules
  auto vae = m.vae;
  GenerationOptions o = options;
  const int64_t factor = m.vae->config.downsampling_factor();
  const int64_t native = native_image_size(m);
  if (o.width == 0) o.width = o.init_image.defined() ? o.init_image.size(3) : native;
  if (o.height == 0) o.height = o.init_image.defined() ? o.init_image.size(2) : native;
  validate_options(o);
  check_size_factor(o, factor);
  const int64_t batch = o.prompts.empty() ? o.batch_size : static_cast<int64_t>(o.prompts.size());
  const bool sdxl = static_cast<bool>(m.text_encoder_2);
  const bool cfg = o.cfg_scale > 1.0;
  check_generation_fits(m, o.width, o.height, batch, cfg);
  const auto dtype = m.unet->conv_in->weight.scalar_type();
  // The networks run on their device; the sampler's latents (kilobytes) and
  // its seeded noise stay float32 on the CPU, as the reference's CPU generator.
  const auto device = model_device(m);

  GenerationResult r;
  Stopwatch clock;
  const auto prompts = per_item(o.prompts, o.prompt, batch);
  const auto negatives = per_item(o.negative_prompts, o.negative_prompt, batch);
  std::vector<std::string> prompts_2, negatives_2;
  if (!o.prompt_2.empty()) prompts_2.assign(static_cast<size_t>(batch), o.prompt_2);
  if (!o.negative_prompt_2.empty()) negatives_2.assign(static_cast<size_t>(batch), o.negative_prompt_2);
  r.cond = encode_prompts(m, prompts, prompts_2, o.encoding);
  if (cfg) {
    if (sdxl && o.negative_is_null) {
      // The reference's force_zeros_for_empty_prompt.
      r.uncond = {torch::zeros_like(r.cond.context), torch::zeros_like(r.cond.pooled)};
    } else {
      r.uncond = encode_prompts(m, negatives, negatives_2, o.encoding);
      match_chunk_counts(m, r.uncond, r.cond, o.encoding);
    }
  }
  nn::AddedConditions added;
  if (sdxl) {
    auto size_or = [&](const std::array<int64_t, 2>& v) {
      return v[0] > 0 ? v : std::array<int64_t, 2>{o.height, o.width};
    };
    const auto orig = size_or(o.original_size), target = size_or(o.target_size);
    r.add_time_ids = torch::tensor({orig[0], orig[1], o.crop_top_left[0], o.crop_top_left[1], target[0], target[1]},
                                   torch::kFloat)
                         .unsqueeze(0)
                         .expand({batch, 6});
    added.text_embeds = cfg ? torch::cat({r.uncond.pooled, r.cond.pooled}) : r.cond.pooled;
    added.time_ids = cfg ? torch::cat({r.add_time_ids, r.add_time_ids}) : r.add_time_ids;
    added.text_embeds = added.text_embeds.to(dtype);
  }
  auto context = (cfg ? torch::cat({r.uncond.context, r.cond.context}) : r.cond.context).to(dtype);
  require_finite(context, "the text encoder");
  r.times.encode = clock.lap();

  auto scheduler = make_scheduler(o);
  r.timesteps = scheduler->timesteps();
  const int64_t total = r.timesteps.size(0);

  // Image i starts from the noise of seed + i; ancestral step noise comes from `seed`'s generator.
  const std::vector<int64_t> shape{1, m.vae->config.latent_channels, o.height / factor, o.width / factor};
  at::Generator gen = at::detail::createCPUGenerator(o.seed);
  torch::Tensor noise;
  if (o.initial_latents.defined()) {
    noise = o.initial_latents.to(torch::kFloat);
  } else {
    std::vector<torch::Tensor> items{torch::randn(shape, gen)};
    for (int64_t i = 1; i < batch; ++i) items.push_back(torch::randn(shape, at::detail::createCPUGenerator(o.seed + i)));
    noise = torch::cat(items);
  }
  for (int64_t i = 0; i < batch; ++i) r.seeds.push_back(o.seed + static_cast<uint64_t>(i));

  torch::Tensor latents, clean, mask;
  int64_t start = 0;
  if (o.init_image.defined()) {
    auto image = o.init_image.to(torch::kFloat);
    if (image.size(2) != o.height || image.size(3) != o.width)
      image = torch::upsample_bilinear2d(image, std::vector<int64_t>{o.height, o.width}, false);
    clean = to_host_float(vae->to_model_latents(nn::split_moments(vae->encode_moments(image.to(device, dtype))).mean));
    require_finite(clean, "the VAE encoder");
    if (clean.size(0) != batch) clean = clean.expand({batch, -1, -1, -1});
    const int64_t init_steps = std::min<int64_t>(static_cast<int64_t>(o.steps * o.strength), o.steps);
    start = std::max<int64_t>(o.steps - init_steps, 0);
    if (o.mask.defined())
      mask = torch::upsample_nearest2d(o.mask.to(torch::kFloat), std::vector<int64_t>{shape[2], shape[3]});
    if (start >= total) throw Error("strength", "leaves no denoising steps");
    // Inpainting honours the strength as the reference's (legacy) inpainting
    // and A1111's do; at full strength it starts from pure noise, as they do.
    // (It always did, whatever --strength said, and wrote the strength into
    // the image's parameters all the same.)
    latents = mask.defined() && start == 0 ? noise * scheduler->init_noise_sigma()
                                           : add_noise(*scheduler, clean, noise, start);
  } else {
    latents = noise * scheduler->init_noise_sigma();
  }
  r.times.encode += clock.lap();  // img2img: the image's encoding

  // Classifier-free guidance in one batched UNet call.
  auto denoise = [&](const torch::Tensor& x_in, const torch::Tensor& t) {
    auto out = to_host_float(unet->forward((cfg ? torch::cat({x_in, x_in}) : x_in).to(device, dtype), t, context, added));
    if (!cfg) return out;
    auto parts = out.chunk(2);
    return guide(*scheduler, t, parts[0], parts[1], x_in, o);
  };
  auto after_step = [&](int64_t i, samplers::StepResult& step) {
    if (mask.defined()) {
      // Keep the unmasked area on the original image's noise trajectory.
      auto known = i + 1 < total ? add_noise(*scheduler, clean, noise, i + 1) : clean;
      step.prev_sample = (1 - mask) * known + mask * step.prev_sample;
    }
    if (o.on_step) o.on_step(i, total, step.prev_sample);
  };
  latents = samplers::run_steps(*scheduler, denoise, latents, start, &gen, after_step);
  require_finite(latents, "the UNet's denoising");
  r.latents = latents;
  r.times.denoise = clock.lap();
  r.times.steps = total - start;
  auto z = vae->from_model_latents(latents.to(device)).to(dtype);
  auto decoded = to_host_float(o.vae_tiling ? nn::decode_tiled(*vae, z, {o.vae_tile_size}) : vae->decode(z));
  require_finite(decoded, "the VAE decoder");
  r.images = (decoded / 2 + 0.5).clamp(0, 1).permute({0, 2, 3, 1}).contiguous();
  r.times.decode = clock.lap();
  return r;
}

}  // namespace lumen
