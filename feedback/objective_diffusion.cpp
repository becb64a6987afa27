// The denoising loss: a UNet (and optionally the text encoder) learns to
// predict ε or v of noised VAE latents under the recipe's noise schedule, with
// caption dropout so that classifier-free guidance works.
#include <filesystem>

#include "convert/model_writer.h"
#include "error.h"
#include "image_grid.h"
#include "io/atomic_file.h"
#include "io/safetensors_torch.h"
#include "model/configs.h"
#include "model/model_loader.h"
#include "nn/init.h"
#include "lora_trainable.h"
#include "objective_diffusion.h"

#include "pipeline/memory_estimate.h"
#include "pipeline/pipeline.h"
#include "prompt/prompt_parser.h"
#include "runtime.h"
#include "samplers/scheduler.h"
#include "shapes/judge.h"
#include "shapes/shapes_world.h"

namespace lumen::train {
namespace {
using json = nlohmann::json;

// The schedule the model is trained (and later sampled) with; the recipe's
// fields replace these defaults (SD's scaled-linear schedule).
json schedule_config(const Recipe& recipe) {
  json s = {{"_class_name", "DDIMScheduler"}, {"num_train_timesteps", 1000}, {"beta_start", 0.00085},
            {"beta_end", 0.012}, {"beta_schedule", "scaled_linear"}, {"prediction_type", "epsilon"},
            {"timestep_spacing", "leading"}, {"steps_offset", 1}, {"clip_sample", false},
            {"set_alpha_to_one", false}, {"rescale_betas_zero_snr", false}};
  if (recipe.schedule.is_object())
    for (const auto& [k, v] : recipe.schedule.items()) s[k] = v;
  return s;
}

json with_class(json config, const char* key, const char* value) {
  config[key] = value;
  return config;
}

// A model built from the recipe's configs: new text encoder and UNet, the
// trained VAE, the CLIP tokenizer from assets.
std::shared_ptr<LoadedModel> new_model(const Recipe& recipe, const json& schedule) {
  auto m = std::make_shared<LoadedModel>();
  ModelPlan& plan = m->plan;
  plan.path = recipe.output;
  plan.format = "diffusers";
  plan.family = ModelFamily::SD1;
  plan.scheduler_config = schedule;
  plan.prediction_type = schedule.value("prediction_type", "epsilon");
  plan.zero_terminal_snr = schedule.value("rescale_betas_zero_snr", false);

  const std::string vae_config_file = recipe.vae + "/config.json";
  const std::string vae_weights = recipe.vae + "/diffusion_pytorch_model.safetensors";
  if (!std::filesystem::exists(vae_config_file) || !std::filesystem::exists(vae_weights))
    throw Error(recipe.vae, "model.vae must be a VAE folder with config.json and diffusion_pytorch_model.safetensors "
                            "(the final/vae of a `task: vae` run)");
  const json vae_config = read_yaml_or_json(vae_config_file);
  m->vae = build_vae(vae_config, vae_config_file, *open_component_weights({vae_weights}));
  plan.components["vae"].config = vae_config;

  json te = recipe.text_encoder_config;
  if (!te.contains("architectures")) te["architectures"] = {"CLIPTextModel"};
  m->text_encoder = nn::ClipTextModel(parse_clip_text_config(te, recipe.file + ": model.text_encoder"));
  nn::init_for_training(*m->text_encoder, recipe.seed + 1);
  plan.components["text_encoder"].config = te;

  json unet = with_class(recipe.unet_config, "_class_name", "UNet2DConditionModel");
  m->unet = nn::UNet2DCondition(parse_unet_config(unet, recipe.file + ": model.unet"));
  nn::init_for_training(*m->unet, recipe.seed + 2);
  plan.components["unet"].config = unet;
  if (m->unet->config.cross_attention_dim.at(0) != m->text_encoder->config.hidden_size)
    throw Error(recipe.file, "model.unet.cross_attention_dim must equal model.text_encoder.hidden_size");

  const TokenizerPlan tok = embedded_tokenizer("<|endoftext|>");
  plan.tokenizers["tokenizer"] = tok;
  m->tokenizer = load_tokenizer(tok, &m->pad_id);
  return m;
}

// An untouched copy of a UNet, made before any adapter is attached (a
// ResAdapter's norms are trained in place): the target of preserve_base,
// copied in memory rather than loaded from disk a second time.
nn::UNet2DCondition frozen_copy(const nn::UNet2DCondition& unet) {
  nn::UNet2DCondition copy(unet->config);
  torch::NoGradGuard no_grad;
  const auto parameters = unet->named_parameters(), buffers = unet->named_buffers();
  for (auto& p : copy->named_parameters()) p.value().copy_(parameters[p.key()]);
  for (auto& b : copy->named_buffers()) b.value().copy_(buffers[b.key()]);
  for (auto& p : copy->parameters()) p.set_requires_grad(false);
  copy->eval();
  return copy;
}

}  // namespace

DiffusionObjective::DiffusionObjective(const Recipe& recipe) : recipe_(recipe) {
  schedule_ = schedule_config(recipe);
  if (!recipe.base_model.empty()) {
    LoadOptions lo;
    model_ = std::make_shared<LoadedModel>(load_model(recipe.base_model, lo));
    if (model_->text_encoder_2) throw Error(recipe.base_model, "training SDXL models is not supported yet");
    // Without a schedule in the recipe, the base model's own (with its v/zero-SNR markers).
    if (!recipe.schedule.is_object()) schedule_ = Pipeline(model_).scheduler_config();
    model_->plan.scheduler_config = schedule_;
    model_->plan.prediction_type = schedule_.value("prediction_type", "epsilon");
    model_->plan.zero_terminal_snr = schedule_.value("rescale_betas_zero_snr", false);
  } else {
    model_ = new_model(recipe, schedule_);
  }
  const auto config = samplers::parse_schedule_config(schedule_, recipe.file + ": schedule");
  prediction_ = config.prediction;
  if (prediction_ == samplers::Prediction::Sample) throw Error(recipe.file, "schedule.prediction_type: use epsilon or v_prediction");
  if (config.zero_terminal_snr && prediction_ == samplers::Prediction::Epsilon)
    throw Error(recipe.file, "schedule: zero terminal SNR needs prediction_type v_prediction (ε cannot be learnt at SNR 0)");
  alphas_cumprod_ = samplers::make_alphas_cumprod(config).to(torch::kDouble);
  if (recipe.gradient_checkpointing) {  // activations recomputed in backward: less memory, ~1/3 more compute
    model_->unet->set_gradient_checkpointing(true);
    model_->vae->set_gradient_checkpointing(true);
  }
  // Before any step: a size whose attention alone cannot fit is refused now,
  // not by the kernel's OOM killer minutes later (a 4096² LoRA recipe grew
  // to 24 GB in 90 s and was killed).
  std::vector<Resolution> sizes = recipe.dataset.resolutions;
  if (sizes.empty()) sizes.push_back({recipe.dataset.width, recipe.dataset.height});
  for (const Resolution& r : sizes) {
    const int64_t batch = images_at(recipe.dataset, r, recipe.batch_size);
    check_training_fits(estimate_training_bytes(*model_, r.width, r.height, batch, recipe.gradient_checkpointing),
                        r.width, r.height, batch, recipe.file);
  }
  for (auto& p : model_->vae->parameters()) p.set_requires_grad(false);
  if (!train_text_encoder())
    for (auto& p : model_->text_encoder->parameters()) p.set_requires_grad(false);
  if (!train_unet())
    for (auto& p : model_->unet->parameters()) p.set_requires_grad(false);
  if (recipe.task == Task::Lora || (recipe.task == Task::Feedback && recipe.use_lora))
    lora_ = std::make_unique<TrainableLora>(
        *model_, LoraTargets{recipe.lora_rank, recipe.lora_alpha, recipe.lora_text_encoder, recipe.lora_conv},
        recipe.seed + 3);
  if (recipe.task == Task::ResAdapter) {
    if (recipe.resadapter_preserve_base > 0) base_unet_ = frozen_copy(model_->unet);
    LoraTargets targets{recipe.lora_rank, recipe.lora_alpha, false, false};
    targets.samplers_only = true;
    lora_ = std::make_unique<TrainableLora>(*model_, targets, recipe.seed + 3);
    // The other half: every ResNet block's GroupNorm scale and shift, trained whole.
    for (auto& [name, p] : named_parameters(*model_->unet))
      if (name.find(".resnets.") != std::string::npos &&
          (name.find(".norm1.") != std::string::npos || name.find(".norm2.") != std::string::npos))
        resnet_norms_.emplace_back(name, p);
  }
}

NamedTensors DiffusionObjective::trainable() {
  if (lora_) {  // a ResAdapter's norms beside its LoRA half
    NamedTensors out = lora_->parameters();
    for (const auto& [name, p] : resnet_norms_) out.emplace_back("norm." + name, p);
    return out;
  }
  NamedTensors out = named_parameters(*model_->unet, "unet.");
  if (train_text_encoder())
    for (auto& t : named_parameters(*model_->text_encoder, "text_encoder.")) out.push_back(t);
  return out;
}

torch::Tensor DiffusionObjective::latents_of(const torch::Tensor& images, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  const auto dist = nn::split_moments(model_->vae->encode_moments(images));
  return model_->vae->to_model_latents(dist.mean + dist.std * torch::randn(dist.mean.sizes(), gen));
}

torch::Tensor DiffusionObjective::loss(const Batch& batch, at::Generator& gen, Metrics& metrics) {
  const auto latents = latents_of(batch.images, gen);
  const bool at_model_size =
      batch.images.size(3) == recipe_.dataset.width && batch.images.size(2) == recipe_.dataset.height;
  if (!base_unet_ || !at_model_size) return denoising_loss(latents, batch.captions, gen);
  // A ResAdapter is for other sizes: at the model's own it should change
  // nothing. The base UNet's prediction on the same input says exactly what
  // "nothing" is, with none of the data loss's noise (v1 and v2, trained on
  // the data loss alone, cost 0.06-0.34 of the judged rate at 64x64).
  const Denoised d = denoise(latents, batch.captions, gen);
  torch::Tensor base;
  {
    torch::NoGradGuard no_grad;
    base = base_unet_->forward(d.noisy, d.timesteps, d.context).to(torch::kFloat);
  }
  const auto prediction = d.prediction.to(torch::kFloat);
  const auto data = (prediction - d.target).pow(2).mean();
  const auto preserve = (prediction - base).pow(2).mean();
  metrics["denoise_model_size"] = data.item<double>();
  metrics["preserve_base"] = preserve.item<double>();
  return data + recipe_.resadapter_preserve_base * preserve;
}

torch::Tensor DiffusionObjective::denoising_loss(const torch::Tensor& latents, const std::vector<std::string>& captions,
                                                 at::Generator& gen) {
  const Denoised d = denoise(latents, captions, gen);
  return (d.prediction.to(torch::kFloat) - d.target).pow(2).mean();
}

DiffusionObjective::Denoised DiffusionObjective::denoise(const torch::Tensor& latents,
                                                         const std::vector<std::string>& batch_captions,
                                                         at::Generator& gen) {
  const int64_t b = latents.size(0);
  // Caption dropout: the empty prompt, as at sampling time for the unconditional half of CFG.
  const auto drop = torch::rand({b}, gen);
  std::vector<std::string> captions = batch_captions;
  for (int64_t i = 0; i < b; ++i)
    if (drop[i].item<double>() < recipe_.caption_dropout) captions[i] = "";
  const auto context = encode(captions);  // LoRA on the text encoder: gradients flow through its deltas

  const int64_t T = alphas_cumprod_.size(0);
  const auto u = torch::rand({b}, gen, torch::kDouble);
  const auto t = (u.pow(1.0 / recipe_.timesteps.exponent) * T).floor().clamp(0, T - 1).to(torch::kLong);
  const auto noise = torch::randn(latents.sizes(), gen);
  const auto abar = alphas_cumprod_.index_select(0, t).to(torch::kFloat).view({b, 1, 1, 1});
  const auto sa = abar.sqrt(), sn = (1 - abar).sqrt();
  const auto noisy = sa * latents + sn * noise;
  const auto target = prediction_ == samplers::Prediction::V ? sa * noise - sn * latents : noise;
  return {noisy, t, context, model_->unet->forward(noisy, t, context), target};
}

void DiffusionObjective::sample(const std::string& png, Metrics& metrics) {
  Pipeline pipeline(model_);
  const auto& s = recipe_.sample;
  std::vector<std::string> prompts = s.prompts;
  if (prompts.empty()) {
    const auto eval = shapes::split_captions(shapes::Split::eval);
    for (size_t i = 0; i < 8; ++i) prompts.push_back(shapes::caption_text(eval[(i * 37) % eval.size()]));
  }
  // A row of the prompts at the training resolution, then one at each extra size.
  std::vector<Resolution> sizes{{recipe_.dataset.width, recipe_.dataset.height}};
  sizes.insert(sizes.end(), s.sizes.begin(), s.sizes.end());
  std::vector<torch::Tensor> rows;
  for (const Resolution& size : sizes) {
    GenerationOptions o = sample_options(1, size);
    o.prompts = prompts;
    rows.push_back(pipeline.generate(o).images.permute({0, 3, 1, 2}).mul(2).sub(1));
  }
  const int64_t columns = rows.size() == 1 ? 8 : static_cast<int64_t>(prompts.size());
  write_png(png, make_grid(pad_to_common_size(rows), columns), {}, true);
  if (s.judge_captions > 0) {
    for (size_t k = 0; k < sizes.size(); ++k) {
      const std::string tag = k == 0 ? "" : std::to_string(sizes[k].width) + "x" + std::to_string(sizes[k].height) + "_";
      judge_split(pipeline, shapes::Split::seen, sizes[k], tag, metrics);
      judge_split(pipeline, shapes::Split::eval, sizes[k], tag + "unseen_", metrics);
    }
  }
}

// Images of several sizes ([N,3,H,W] each, in [-1,1]) on canvases of the
// largest, top-left aligned; the margin is a slate blue that no ShapesWorld
// background has, so an image's edge stays visible.
torch::Tensor DiffusionObjective::pad_to_common_size(const std::vector<torch::Tensor>& batches) {
  int64_t h = 0, w = 0;
  for (const auto& b : batches) {
    h = std::max(h, b.size(2));
    w = std::max(w, b.size(3));
  }
  std::vector<torch::Tensor> padded;
  for (const auto& b : batches) {
    auto canvas = torch::tensor({40.f, 60.f, 80.f}, b.options()).div(127.5).sub(1).view({1, 3, 1, 1}).repeat({b.size(0), 1, h, w});
    canvas.slice(2, 0, b.size(2)).slice(3, 0, b.size(3)).copy_(b);
    padded.push_back(canvas);
  }
  return torch::cat(padded);
}

void DiffusionObjective::write_final(const std::string& folder) {
  if (!resnet_norms_.empty()) {  // a ResAdapter, in the layout of the released ones (adapters/resadapter.h)
    const std::string dir = folder + "/resadapter";
    std::filesystem::create_directories(dir);
    lora_->save(dir + "/pytorch_lora_weights.safetensors",
                {{"ss_base_model", recipe_.base_model}, {"lumen_recipe", recipe_.file}, {"lumen_adapter", "resadapter"}});
    std::map<std::string, torch::Tensor> norms;
    for (const auto& [name, p] : resnet_norms_) norms[name] = p.detach().contiguous();
    save_safetensors(dir + "/diffusion_pytorch_model.safetensors", norms,
                     {{"lumen_base_model", recipe_.base_model}, {"lumen_recipe", recipe_.file}});
    return;
  }
  if (lora_) {
    lora_->save(folder + "/lora.safetensors", {{"ss_base_model", recipe_.base_model}, {"lumen_recipe", recipe_.file}});
    return;
  }
  write_diffusers_folder(*model_, folder);
}

bool DiffusionObjective::train_text_encoder() const { return recipe_.train_text_encoder && recipe_.task == Task::Diffusion; }
bool DiffusionObjective::train_unet() const { return recipe_.task == Task::Diffusion || (recipe_.task == Task::Feedback && !recipe_.use_lora); }

// First 77-token chunk of each caption, tokenised as at generation time.
torch::Tensor DiffusionObjective::ids_of(const std::vector<std::string>& captions) const {
  std::vector<torch::Tensor> rows;
  for (const auto& c : captions) {
    const auto chunks = chunk_prompt(*model_->tokenizer, c, model_->pad_id, false);
    rows.push_back(torch::tensor(chunks.at(0).ids, torch::kLong));
  }
  return torch::stack(rows);
}

torch::Tensor DiffusionObjective::encode(const std::vector<std::string>& captions) {
  const auto ids = ids_of(captions);
  if (train_text_encoder() || (lora_ && recipe_.lora_text_encoder))
    return model_->text_encoder->forward(ids).last_hidden_state;
  torch::NoGradGuard no_grad;
  return model_->text_encoder->forward(ids).last_hidden_state;
}

GenerationOptions DiffusionObjective::sample_options(uint64_t seed) const {
  return sample_options(seed, {recipe_.dataset.width, recipe_.dataset.height});
}

GenerationOptions DiffusionObjective::sample_options(uint64_t seed, const Resolution& size) const {
  const auto& s = recipe_.sample;
  GenerationOptions o;
  o.sampler = s.sampler;
  o.steps = s.steps;
  o.cfg_scale = s.cfg_scale;
  o.guidance_rescale = s.guidance_rescale;
  o.width = size.width;
  o.height = size.height;
  o.seed = seed;
  return o;
}

// Judges images of evenly spread captions of a split (one seed each); the
// metrics' names carry the prefix.
void DiffusionObjective::judge_split(const Pipeline& pipeline, shapes::Split split, const Resolution& size,
                                     const std::string& prefix, Metrics& metrics) const {
  const auto& s = recipe_.sample;
  const auto captions = shapes::split_captions(split);
  std::vector<shapes::Caption> asked;
  for (int64_t i = 0; i < s.judge_captions; ++i)
    asked.push_back(captions[static_cast<size_t>(i * static_cast<int64_t>(captions.size()) / s.judge_captions)]);
  std::vector<shapes::Judgement> judgements;
  const size_t chunk = 32;
  for (size_t start = 0; start < asked.size(); start += chunk) {
    GenerationOptions o = sample_options(1000 + start, size);
    for (size_t i = start; i < std::min(asked.size(), start + chunk); ++i) o.prompts.push_back(shapes::caption_text(asked[i]));
    const auto images = pipeline.generate(o).images.permute({0, 3, 1, 2}).mul(2).sub(1);
    for (int64_t i = 0; i < images.size(0); ++i)
      judgements.push_back(shapes::judge(to_rgb(images[i]), asked[start + static_cast<size_t>(i)]));
  }
  const auto summary = shapes::summarize(judgements);
  metrics[prefix + "correct"] = summary.all.correct;
  metrics[prefix + "colour"] = summary.all.colour;
  metrics[prefix + "shape"] = summary.all.shape;
  metrics[prefix + "position"] = summary.all.position;
  metrics[prefix + "background"] = summary.all.background;
  metrics[prefix + "mask_iou"] = summary.all.mask_iou;
  double bg = 0;
  for (const auto& j : judgements) bg += std::isfinite(j.bg_error) ? j.bg_error : 255;
  metrics[prefix + "bg_error"] = bg / static_cast<double>(judgements.size());
}

std::unique_ptr<Objective> make_diffusion_objective(const Recipe& recipe, const Dataset& dataset) {
  (void)dataset;
  return std::make_unique<DiffusionObjective>(recipe);
}

std::unique_ptr<Objective> make_objective(const Recipe& recipe, const Dataset& dataset) {
  switch (recipe.task) {
    case Task::Vae: return make_vae_objective(recipe, dataset);
    case Task::Segmenter: return make_segmenter_objective(recipe);
    case Task::Reward: return make_reward_objective(recipe);
    case Task::Feedback: return make_feedback_objective(recipe);
    default: break;
  }
  return make_diffusion_objective(recipe, dataset);
}

}  // namespace lumen::train
