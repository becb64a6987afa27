// UniFL feedback learning (Zhang et al. 2024; ReFL lineage), `lumen feedback`.
// Each step, for a step count K drawn from the recipe's list:
//  - perceptual (PeFL): a training image's latent is noised to a random step s
//    of the K-step schedule, denoised without gradients to a random m >= s,
//    then one guided step with gradients gives the x0 prediction; it is
//    decoded (gradients through the frozen VAE decoder) and the frozen
//    segmentation model's loss against the image's mask is the penalty (or,
//    `kind: style`, the Gram-matrix distance of its features);
//  - decoupled rewards: the same from pure noise for selected prompts, each
//    reward a hinge ReLU(alpha − r) with its weight;
//  - adversarial: a reward model as discriminator (real = renders of the same
//    prompts round-tripped through the VAE, fake = the decoded x0 predictions)
//    is updated, then the generator is penalised by −r_a;
//  - the ordinary denoising loss on the batch, as a regulariser.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "error.h"
#include "image_grid.h"
#include "datasets.h"
#include "distributed.h"
#include "io/atomic_file.h"
#include "io/text_file.h"
#include "model_folder.h"
#include "nn/vae.h"
#include "objective_diffusion.h"
#include "perception_model.h"
#include "pipeline/conditioning.h"
#include "prompt_selection.h"
#include "reward.h"
#include "samplers/guidance.h"
#include "shapes_reward_model.h"
#include "shapes_supervision.h"

namespace lumen::train {
namespace {
namespace F = torch::nn::functional;
using nlohmann::json;

std::string size_text(int64_t w, int64_t h) { return std::to_string(w) + "x" + std::to_string(h); }

// Gram matrices of feature maps [B,C,H,W] → [B,C,C], normalised by C·H·W.
torch::Tensor gram(const torch::Tensor& f) {
  const auto flat = f.flatten(2);
  return torch::bmm(flat, flat.transpose(1, 2)) / static_cast<double>(f.size(1) * f.size(2) * f.size(3));
}

// A ShapesWorld reward model's scores in units of its held-out pairs: the
// rejected mean maps to 0, the preferred mean to 1.
struct HeldOutUnits {
  double rejected = 0, gap = 1;
  torch::Tensor of(const torch::Tensor& raw) const { return (raw - rejected) / gap; }
};
HeldOutUnits held_out_units(const std::string& folder) {
  const auto config = read_model_config(folder, "shapes_reward");
  const std::string where = folder + "/config.json";
  const double preferred = config_field(config, "preferred_mean", 1.0, where);
  const double rejected = config_field(config, "rejected_mean", 0.0, where);
  // Finite each, but their gap may still overflow (1e308 and -1e308).
  if (!std::isfinite(preferred - rejected) || std::fabs(rejected) > 1e12 || std::fabs(preferred) > 1e12)
    throw Error(where, "preferred_mean and rejected_mean must be finite rewards within ±1e12");
  return {rejected, preferred - rejected > 1e-6 ? preferred - rejected : 1.0};
}

class FeedbackObjective : public DiffusionObjective {
 public:
  explicit FeedbackObjective(const Recipe& recipe) : DiffusionObjective(recipe), spec_(recipe.feedback) {
    schedule_config_ = samplers::parse_schedule_config(schedule_, recipe.file + ": schedule");
    for (int64_t k : spec_.steps) scheduler_for(k);  // refuse impossible step counts now, not mid-run
    if (!spec_.init_lora.empty()) {
      if (!lora_) throw Error(recipe.file, "feedback.init_lora needs a lora section (the LoRA it continues)");
      lora_->load(spec_.init_lora);
    }
    const int64_t w = recipe.dataset.width, h = recipe.dataset.height;
    if (!spec_.perceptual_model.empty()) {
      if (recipe.dataset.type != "shapes")
        throw Error(recipe.file, "feedback.perceptual needs ShapesWorld data (dataset.type: shapes): its masks are the annotation");
      perception_ = load_segmenter(spec_.perceptual_model);
      const int64_t classes = perception_->config.classes;
      if (classes != kLabelClasses && classes != kColourLabelClasses)
        throw Error(spec_.perceptual_model, "is not a ShapesWorld segmenter: " + std::to_string(classes) + " classes, not " +
                                                std::to_string(kLabelClasses) + " or " + std::to_string(kColourLabelClasses));
      const int64_t r = perception_->config.resolution;
      if (r != w || r != h)
        throw Error(spec_.perceptual_model, "the perception model reads " + size_text(r, r) +
                                                " images; this recipe trains at " + size_text(w, h));
    }
    for (const auto& term : spec_.rewards) rewards_.push_back(make_reward(term, w, h));
    if (!spec_.adversarial_init.empty()) {
      discriminator_ = load_reward(spec_.adversarial_init, true);
      // Its logits in units of its held-out pairs, as the rewards are read: a
      // Bradley–Terry model's raw scores sit anywhere (measured: around −40),
      // which saturates the discriminator's loss and swamps every other term.
      d_units_ = held_out_units(spec_.adversarial_init);
      check_resolution(discriminator_, spec_.adversarial_init, w, h);
      d_optimizer_ = std::make_unique<torch::optim::AdamW>(
          discriminator_->parameters(), torch::optim::AdamWOptions(spec_.discriminator_lr).betas({0.5, 0.999}));
    }
    const auto candidates = candidate_prompts();
    PromptSelectionSpec ps{spec_.prompt_selection == "active", spec_.prompt_pool, spec_.prompt_keep,
                           spec_.prompt_refresh, spec_.prompt_similarity};
    if (ps.active && rewards_.empty())
      throw Error(recipe.file, "feedback.prompts.selection: active selection ranks prompts by the rewards; list some");
    selector_ = std::make_unique<PromptSelector>(ps, candidates, prompt_features(candidates));
    if (discriminator_)
      for (const auto& p : candidates)
        if (!shapes::parse_caption(p))
          throw Error(spec_.prompt_file, "adversarial feedback renders its real images from ShapesWorld captions; '" + p +
                                             "' is not one");
  }

  torch::Tensor loss(const Batch& batch, at::Generator& gen, Metrics& metrics) override {
    const int64_t step = calls_++;
    const int64_t k = spec_.steps[static_cast<size_t>(torch::randint(static_cast<int64_t>(spec_.steps.size()), {1}, gen).item<int64_t>())];
    metrics["steps"] = static_cast<double>(k);
    const auto latents = latents_of(batch.images, gen);
    torch::Tensor total = torch::zeros({});
    if (spec_.denoising_weight > 0) {
      const auto d = denoising_loss(latents, batch.captions, gen);
      metrics["denoise"] = d.item<double>();
      total = total + spec_.denoising_weight * d;
    }
    if (perception_) {
      auto scheduler = scheduler_for(k);
      const int64_t start = torch::randint(k, {1}, gen).item<int64_t>();
      const int64_t grad_step = start + torch::randint(k - start, {1}, gen).item<int64_t>();
      const auto noisy = add_noise(*scheduler, latents, torch::randn(latents.sizes(), gen), start);
      const auto images = decode(x0_prediction(*scheduler, noisy, start, grad_step, batch.captions, gen));
      const auto pefl = spec_.perceptual_kind == "segmentation"
                            ? segmentation_loss(images, batch, pure_noise(*scheduler, start))
                            : style_loss(images, batch.images);
      check_finite(pefl, spec_.perceptual_model, step);
      metrics["pefl"] = pefl.item<double>();
      // The judge's background error of these x0 predictions, whether or not
      // it is weighted: what background_weight should move.
      metrics["x0_bg_error"] = background_losses(images.detach(), background_colours(batch.captions)).mean().item<double>();
      total = total + spec_.perceptual_weight * pefl;
    }
    if (!rewards_.empty() || discriminator_) {
      selector_->refresh(step, mix_seed(recipe_.seed, static_cast<uint64_t>(step), 0xac7), [&](const auto& prompts) {
        return deficit(prompts);
      });
      if (spec_.prompt_selection == "active") {
        metrics["prompt_pool_deficit"] = selector_->last_pool_deficit();
        metrics["prompt_kept_deficit"] = selector_->last_kept_deficit();
      }
      const int64_t n = spec_.prompt_batch > 0 ? spec_.prompt_batch : batch.images.size(0);
      const auto prompts = selector_->draw(n, gen);
      auto scheduler = scheduler_for(k);
      const int64_t grad_step = torch::randint(k, {1}, gen).item<int64_t>();
      const auto noise = torch::randn({n, latents.size(1), latents.size(2), latents.size(3)}, gen);
      const auto images = decode(x0_prediction(*scheduler, noise * scheduler->init_noise_sigma(), 0, grad_step, prompts, gen));
      for (auto& reward : rewards_) {
        const auto r = reward.score(images, prompts);
        check_finite(r, reward.term.model, step);
        const auto hinge = F::relu(reward.term.alpha - r).mean();
        metrics["reward_" + reward.name] = r.mean().item<double>();
        total = total + reward.term.weight * hinge;
      }
      if (discriminator_) total = total + spec_.adversarial_weight * adversarial(images, prompts, gen, metrics, step);
    }
    return total;
  }

  void use_data_parallel(DataParallel* parallel) override { parallel_ = parallel; }

  void save_state(const std::string& folder) override {
    json state{{"calls", calls_}, {"prompts", selector_->state()}};
    if (discriminator_) save_discriminator(folder);
    write_text_atomically(folder + "/feedback_state.json", state.dump());
  }

  void load_state(const std::string& folder) override {
    const std::string file = folder + "/feedback_state.json";
    if (!std::filesystem::is_regular_file(file))
      throw Error(folder, "checkpoint has no feedback_state.json (was it written by lumen feedback?)");
    const json state = read_json_file(file);
    if (!state.is_object() || !state.contains("calls") || !state["calls"].is_number_integer() || !state.contains("prompts"))
      throw Error(file, "has no integer 'calls' and 'prompts' (a damaged checkpoint?)");
    calls_ = state["calls"].get<int64_t>();
    try {
      selector_->restore(state["prompts"]);
    } catch (const json::exception&) {
      throw Error(file, "its 'prompts' state is damaged");
    }
    if (discriminator_) {
      load_model_weights(folder + "/discriminator", *discriminator_);
      load_optimizer_state(*d_optimizer_, folder + "/discriminator/optimizer.pt");
    }
  }

 private:
  struct Reward {
    std::string name;
    RewardTerm term;
    std::function<torch::Tensor(const torch::Tensor& images, const std::vector<std::string>& prompts)> score;
  };

  template <class Model>
  static void check_resolution(Model& model, const std::string& folder, int64_t w, int64_t h) {
    const int64_t r = model->config.resolution;
    if (r != w || r != h)
      throw Error(folder, "the reward model reads " + size_text(r, r) + " images; this recipe trains at " + size_text(w, h));
  }

  Reward make_reward(const RewardTerm& term, int64_t w, int64_t h) {
    const std::string where = recipe_.file + ":" + std::to_string(term.line);
    for (const auto& other : rewards_)
      if (other.term.kind == term.kind && term.kind != "shapes") throw Error(where, "two rewards of kind '" + term.kind + "'");
    if (term.kind != "shapes") {
      // Rewards for real models: CLIP preference, LAION aesthetic, TorchScript.
      RewardSpec spec{term.kind, term.kind == "aesthetic" ? term.clip : term.model, term.kind == "aesthetic" ? term.model : ""};
      std::shared_ptr<ImageReward> reward = train::make_reward(spec);
      return {term.kind, term, [reward](const torch::Tensor& images, const std::vector<std::string>& prompts) {
                return reward->score(images, prompts);
              }};
    }
    auto model = load_reward(term.model);
    check_resolution(model, term.model, w, h);
    for (const auto& other : rewards_)
      if (other.name == model->config.dimension)
        throw Error(where, "two rewards of dimension '" + other.name + "'");
    Reward r{model->config.dimension, term, {}};
    // Bradley–Terry fixes a reward only up to shift and scale, and each model
    // lands on its own: scores are mapped so that the held-out rejected mean is
    // 0 and the preferred mean 1, making weights and thresholds comparable
    // across dimensions. alpha (default 1: the preferred mean) is in these units.
    const auto units = held_out_units(term.model);
    if (std::isnan(r.term.alpha)) r.term.alpha = 1.0;
    r.score = [model, units](const torch::Tensor& images, const std::vector<std::string>& prompts) mutable {
      return units.of(model->forward(images, caption_features(prompts)));
    };
    return r;
  }

  // The prompts the reward terms train on: the recipe's file, else ShapesWorld's training captions.
  std::vector<std::string> candidate_prompts() const {
    std::vector<std::string> out;
    if (spec_.prompt_file.empty()) {
      for (const auto& c : shapes::split_captions(shapes::Split::train)) out.push_back(shapes::caption_text(c));
      return out;
    }
    std::ifstream in(spec_.prompt_file);
    if (!in) throw Error(spec_.prompt_file, "cannot read the prompt file");
    for (std::string line; std::getline(in, line);) {
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
      if (!line.empty()) out.push_back(line);
    }
    if (out.empty()) throw Error(spec_.prompt_file, "holds no prompts (one per line)");
    return out;
  }

  // What near-duplicate prompts share: ShapesWorld's attribute groups where
  // every prompt is a caption, else the text encoder's mean token embedding.
  torch::Tensor prompt_features(const std::vector<std::string>& prompts) const {
    bool shapes_only = true;
    for (const auto& p : prompts) shapes_only = shapes_only && shapes::parse_caption(p).has_value();
    if (shapes_only) return caption_features(prompts);
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> rows;
    for (size_t i = 0; i < prompts.size(); i += 64) {
      const std::vector<std::string> part(prompts.begin() + static_cast<long>(i),
                                          prompts.begin() + static_cast<long>(std::min(prompts.size(), i + 64)));
      rows.push_back(encode_prompts(*model_, part, {}, {}).context.mean(1));
    }
    return torch::cat(rows);
  }

  static void check_finite(const torch::Tensor& t, const std::string& source, int64_t step) {
    if (!torch::isfinite(t.detach()).all().item<bool>())
      throw Error(source, "gave a non-finite value (NaN or inf) at step " + std::to_string(step + 1) +
                              "; stopped, the last checkpoint is kept");
  }

  // Under a zero-terminal-SNR schedule the first step's latent is pure noise:
  // nothing of the training image's jitter survives, so the only annotation the
  // x0 prediction can be held to is its caption's ideal (unjittered) render.
  bool pure_noise(samplers::Scheduler& s, int64_t i) const {
    const auto t = s.timesteps()[i].item<int64_t>();
    return alphas_cumprod_[t].item<double>() < 1e-6;
  }

  // The segmentation model's loss on decoded x0 predictions. From a noised
  // training latent the annotation is that image's mask; from pure noise it is
  // the caption's ideal (unjittered) render, and where the caption leaves size
  // or position open, the nearest of its completions: the model may choose
  // either size, not a blur of both.
  torch::Tensor segmentation_loss(const torch::Tensor& images, const Batch& batch, bool from_pure_noise) {
    const auto logits = perception_->forward(images);
    if (!from_pure_noise) return perception_losses(images, logits, batch.labels, batch.captions).mean();
    std::vector<torch::Tensor> best;
    for (size_t i = 0; i < batch.captions.size(); ++i) {
      std::vector<torch::Tensor> masks;
      for (const auto& full : completions(*shapes::parse_caption(batch.captions[i])))
        masks.push_back(label_map(full, static_cast<int>(recipe_.dataset.width), static_cast<int>(recipe_.dataset.height),
                                  shapes::Jitter{}));
      const auto n = static_cast<int64_t>(masks.size());
      const auto expand = [&](const torch::Tensor& t) { return t.narrow(0, static_cast<int64_t>(i), 1).expand({n, -1, -1, -1}); };
      best.push_back(perception_losses(expand(images), expand(logits), torch::stack(masks),
                                       std::vector<std::string>(masks.size(), batch.captions[i]))
                         .min());
    }
    return torch::stack(best).mean();
  }

  // Per image: the segmenter's loss against the shape labels [B,H,W], plus
  // ShapesWorld's foreground rule (the judge's own mask) and its background
  // criterion where they are weighted.
  torch::Tensor perception_losses(const torch::Tensor& images, const torch::Tensor& logits, const torch::Tensor& shape_labels,
                                  const std::vector<std::string>& captions) {
    const auto reduction =
        spec_.perceptual_reduction == "pixels" ? LossReduction::pixels : LossReduction::shape_area;
    auto losses = perception_->image_losses(logits, segmenter_labels(perception_->config.classes, shape_labels, captions),
                                            reduction);
    if (spec_.perceptual_foreground_weight > 0 || spec_.perceptual_background_weight > 0) {
      const auto backgrounds = background_colours(captions);
      if (spec_.perceptual_foreground_weight > 0)
        losses = losses + spec_.perceptual_foreground_weight * foreground_losses(images, backgrounds, shape_labels, reduction);
      if (spec_.perceptual_background_weight > 0)
        losses = losses + spec_.perceptual_background_weight * background_losses(images, backgrounds);
    }
    return losses;
  }

  // Distance of the Gram matrices of the perception model's features to the training images'.
  torch::Tensor style_loss(const torch::Tensor& images, const torch::Tensor& originals) {
    const auto ours = perception_->features(images);
    std::vector<torch::Tensor> theirs;
    {
      torch::NoGradGuard no_grad;
      theirs = perception_->features(originals);
    }
    auto loss = torch::zeros({});
    for (size_t i = 0; i < ours.size(); ++i) loss = loss + (gram(ours[i]) - gram(theirs[i])).pow(2).sum({1, 2}).mean();
    return loss;
  }

  std::unique_ptr<samplers::Scheduler> scheduler_for(int64_t steps) const {
    auto s = samplers::make_scheduler(spec_.sampler, schedule_config_);
    s->set_timesteps(steps);
    return s;
  }

  // The model's output at step i, guided as at inference (one batched UNet call).
  torch::Tensor guided_output(samplers::Scheduler& s, int64_t i, const torch::Tensor& x, const torch::Tensor& cond,
                              const torch::Tensor& uncond) {
    const auto x_in = s.scale_model_input(x, i);
    const auto t = s.timesteps()[i].to(torch::kFloat);
    if (spec_.cfg_scale <= 1.0) return model_->unet->forward(x_in, t, cond).to(torch::kFloat);
    const auto out = model_->unet->forward(torch::cat({x_in, x_in}), t, torch::cat({uncond, cond})).to(torch::kFloat);
    const auto parts = out.chunk(2);
    auto guided = samplers::classifier_free_guidance(parts[0], parts[1], spec_.cfg_scale);
    if (spec_.guidance_rescale > 0) guided = samplers::rescale_guidance(guided, parts[1], spec_.guidance_rescale);
    return guided;
  }

  // Samples from step `start` to `grad_step` without gradients, then one step
  // with them; returns that step's x0 prediction (model latent space).
  torch::Tensor x0_prediction(samplers::Scheduler& s, torch::Tensor x, int64_t start, int64_t grad_step,
                              const std::vector<std::string>& prompts, at::Generator& gen) {
    const auto [cond, uncond] = conditioning(prompts);
    {
      torch::NoGradGuard no_grad;
      for (int64_t i = start; i < grad_step; ++i) x = s.step(guided_output(s, i, x, cond, uncond), i, x, &gen).prev_sample;
    }
    const auto result = s.step(guided_output(s, grad_step, x.detach(), cond, uncond), grad_step, x.detach(), &gen);
    if (!result.pred_original_sample.defined())
      throw Error(recipe_.file, "feedback.sampler '" + spec_.sampler + "' gives no x0 prediction; use ddim or euler");
    return result.pred_original_sample;
  }

  // The prompts' text conditioning and, under guidance, the empty prompt's
  // (encoded once: the text encoder is frozen), both without gradients.
  std::pair<torch::Tensor, torch::Tensor> conditioning(const std::vector<std::string>& prompts) {
    torch::NoGradGuard no_grad;
    const auto cond = encode_prompts(*model_, prompts, {}, {}).context;
    if (spec_.cfg_scale <= 1.0) return {cond, {}};
    if (!empty_prompt_.defined()) empty_prompt_ = encode_prompts(*model_, {""}, {}, {}).context;
    return {cond, empty_prompt_.expand({cond.size(0), -1, -1})};
  }

  torch::Tensor decode(const torch::Tensor& x0) { return model_->vae->decode(model_->vae->from_model_latents(x0)); }

  // Σ weight·ReLU(alpha − r) per prompt, for one-step samples from pure noise.
  torch::Tensor deficit(const std::vector<std::string>& prompts) {
    torch::NoGradGuard no_grad;
    auto gen = at::detail::createCPUGenerator(mix_seed(recipe_.seed, static_cast<uint64_t>(calls_), 0xdef));
    const int64_t k = *std::min_element(spec_.steps.begin(), spec_.steps.end());
    std::vector<torch::Tensor> out;
    const int64_t chunk = 64, c = model_->vae->config.latent_channels;
    const int64_t factor = model_->vae->config.downsampling_factor();
    for (size_t start = 0; start < prompts.size(); start += chunk) {
      const std::vector<std::string> part(prompts.begin() + static_cast<long>(start),
                                          prompts.begin() + static_cast<long>(std::min(prompts.size(), start + chunk)));
      auto s = scheduler_for(k);
      const auto noise = torch::randn({static_cast<int64_t>(part.size()), c, recipe_.dataset.height / factor,
                                       recipe_.dataset.width / factor}, gen);
      auto x = noise * s->init_noise_sigma();
      const auto [cond, uncond] = conditioning(part);
      for (int64_t i = 0; i < k; ++i) x = s->step(guided_output(*s, i, x, cond, uncond), i, x, &gen).prev_sample;
      const auto images = decode(x);
      auto d = torch::zeros({static_cast<int64_t>(part.size())});
      for (auto& reward : rewards_) d = d + reward.term.weight * F::relu(reward.term.alpha - reward.score(images, part));
      out.push_back(d);
    }
    return torch::cat(out);
  }

  // One discriminator update, then the generator's adversarial loss.
  torch::Tensor adversarial(const torch::Tensor& fake, const std::vector<std::string>& prompts, at::Generator& gen,
                            Metrics& metrics, int64_t step) {
    const auto features = caption_features(prompts);
    torch::Tensor real;
    {
      torch::NoGradGuard no_grad;
      std::mt19937_64 rng(static_cast<uint64_t>(torch::randint(1LL << 62, {1}, gen).item<int64_t>()));
      std::vector<torch::Tensor> renders;
      for (const auto& p : prompts) {
        const auto c = *shapes::parse_caption(p);
        renders.push_back(image_tensor(shapes::render(c, static_cast<int>(recipe_.dataset.width),
                                                      static_cast<int>(recipe_.dataset.height), shapes::random_jitter(rng))));
      }
      // Through the VAE, so the discriminator judges content rather than the codec.
      real = model_->vae->decode(nn::split_moments(model_->vae->encode_moments(torch::stack(renders))).mean);
    }
    d_optimizer_->zero_grad();
    const auto d_real = discriminate(real, features);
    const auto d_fake = discriminate(fake.detach(), features);
    const auto d_loss = (F::softplus(-d_real) + F::softplus(d_fake)).mean();
    check_finite(d_loss, spec_.adversarial_init, step);
    d_loss.backward();
    // Every rank's discriminator takes the same step, as the generator's LoRA does.
    if (parallel_) parallel_->average_gradients(discriminator_->parameters());
    d_optimizer_->step();
    metrics["d_loss"] = d_loss.item<double>();
    metrics["d_real"] = d_real.mean().item<double>();
    metrics["d_fake"] = d_fake.mean().item<double>();
    const auto r_a = discriminate(fake, features);
    check_finite(r_a, spec_.adversarial_init, step);
    const auto g_loss = -r_a.mean();
    metrics["g_loss"] = g_loss.item<double>();
    return g_loss;
  }

  torch::Tensor discriminate(const torch::Tensor& images, const torch::Tensor& features) {
    return d_units_.of(discriminator_->forward(images, features));
  }

  void save_discriminator(const std::string& folder) {
    save_reward(folder + "/discriminator", discriminator_);
    save_optimizer_state(*d_optimizer_, folder + "/discriminator/optimizer.pt");
  }

  FeedbackSpec spec_;
  samplers::ScheduleConfig schedule_config_;
  Segmenter perception_{nullptr};
  std::vector<Reward> rewards_;
  ShapesReward discriminator_{nullptr};
  DataParallel* parallel_ = nullptr;
  std::unique_ptr<torch::optim::AdamW> d_optimizer_;
  HeldOutUnits d_units_;  // the discriminator's logits, in its initial reward model's units
  std::unique_ptr<PromptSelector> selector_;
  int64_t calls_ = 0;
  torch::Tensor empty_prompt_;  // the unconditional context, [1,77,D]
};

}  // namespace

std::unique_ptr<Objective> make_feedback_objective(const Recipe& recipe) {
  return std::make_unique<FeedbackObjective>(recipe);
}

}  // namespace lumen::train
