#include "golden_cases.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "adapters/lora_apply.h"
#include "adapters/resadapter.h"
#include "error.h"
#include "io/clip_preprocess.h"
#include "io/safetensors_torch.h"
#include "model/device.h"
#include "model/model_loader.h"
#include "nn/clip_vision.h"
#include "pipeline/pipeline.h"
#ifndef LUMEN_INFERENCE_ONLY
#include "reward_aesthetic.h"
#endif
#include "samplers/guidance.h"
#include "samplers/scheduler.h"
#include "tokenizer/clip_tokenizer.h"

namespace lumen::golden {
namespace {

using nlohmann::json;

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path, "cannot open");
  return json::parse(in);
}

std::string weights_path(const Case& c, const std::string& component = "") {
  const json& w = c.spec.at("weights");
  return c.path(w.is_string() ? w.get<std::string>() : w.at(component).get<std::string>());
}

const json& config_of(const Case& c, const std::string& component = "") {
  return component.empty() ? c.spec.at("config") : c.spec.at("config").at(component);
}

// ---- networks, shared by the per-network kinds and checkpoint_convert -------

torch::Tensor on_device(const torch::Tensor& t) { return t.to(test_device()); }

void check_text_encoder(nn::ClipTextModel& te, const Case& c, const std::string& ids_key, const std::string& prefix,
                        Result* r) {
  auto out = te->forward(on_device(c.io.at(ids_key)));
  auto cmp = [&](const std::string& name, const torch::Tensor& actual) {
    if (c.has(prefix + name)) r->compare(prefix + name, actual, c.io.at(prefix + name), c.atol, c.rtol);
  };
  cmp("last_hidden_state", out.last_hidden_state);
  cmp("penultimate_hidden_state", out.skipped(2));
  cmp("pooler_output", out.pooled);
  if (out.text_embeds.defined()) cmp("text_embeds", out.text_embeds);
  for (size_t i = 0; i < out.hidden_states.size(); ++i) cmp("hidden_states_" + std::to_string(i), out.hidden_states[i]);
}

void check_unet(nn::UNet2DCondition& unet, const Case& c, const std::string& expected_key, Result* r) {
  nn::AddedConditions added;
  if (c.has("input_text_embeds")) added = {on_device(c.io.at("input_text_embeds")), on_device(c.io.at("input_time_ids"))};
  auto out = unet->forward(on_device(c.input("sample")), c.input("timestep"), on_device(c.input("encoder_hidden_states")),
                           added);
  r->compare(expected_key, out, c.io.at(expected_key), c.atol, c.rtol);
}

void check_vae(nn::AutoencoderKL& vae, const Case& c, const std::string& decoded_key, Result* r) {
  if (c.has("input_image")) {
    auto moments = vae->encode_moments(on_device(c.input("image")));
    auto dist = nn::split_moments(moments);
    r->compare("output_moments", moments, c.io.at("output_moments"), c.atol, c.rtol);
    r->compare("output_mean", dist.mean, c.io.at("output_mean"), c.atol, c.rtol);
    r->compare("output_logvar", dist.logvar, c.io.at("output_logvar"), c.atol, c.rtol);
    r->compare("output_std", dist.std, c.io.at("output_std"), c.atol, c.rtol);
  }
  r->compare(decoded_key, vae->decode(on_device(c.input("latent"))), c.io.at(decoded_key), c.atol, c.rtol);
}

template <typename Build>
auto build_from_file(const Case& c, const std::string& component, Build build) {
  auto weights = open_component_weights({weights_path(c, component)});
  auto network = build(config_of(c, component), c.path("case.json"), *weights, torch::kFloat);
  network->to(test_device());
  return network;
}

// ---- kinds --------------------------------------------------------------------

Result run_tokenizer(const Case& c) {
  const json& files = config_of(c).at("files");
  auto tok = ClipTokenizer::from_files(c.path(files.at("vocab")), c.path(files.at("merges")));
  // tokenizer_2 (SD2 / SDXL) pads with "!", which transformers also matches as a special token.
  const std::string pad2 = config_of(c).at("tokenizer_2").at("pad_token").get<std::string>();
  auto tok2 = tok;
  const int64_t pad_eos = tok.token_to_id(config_of(c).at("tokenizer").at("pad_token").get<std::string>()).value();
  const int64_t pad_zero = tok.token_to_id(pad2).value();
  if (pad_zero != tok.eos_id()) tok2.add_special_token(pad2);
  const int max_len = c.spec.at("params").value("max_length", 77);
  json prompts = read_json(c.path(c.spec.at("data").get<std::string>())).at("prompts");
  auto rows = [&](const std::string& key) { return c.io.at(key); };
  Result r;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string prompt = prompts[i].at("prompt");
    auto ids_tensor = [](const std::vector<int64_t>& v) { return torch::tensor(v, torch::kLong); };
    const std::string label = "prompt " + std::to_string(i) + " " + json(prompt).dump();
    r.compare(label + " ids", ids_tensor(tok.encode(prompt)),
              ids_tensor(prompts[i].at("ids").get<std::vector<int64_t>>()), 0, 0);
    r.compare(label + " pad_eos", ids_tensor(tok.encode_padded(prompt, max_len, pad_eos)),
              rows("output_ids_max77_pad_eos")[i], 0, 0);
    r.compare(label + " pad_zero", ids_tensor(tok2.encode_padded(prompt, max_len, pad_zero)),
              rows("output_ids_max77_pad_zero")[i], 0, 0);
    if (c.has("output_ids_max77_pad_eos_noftfy"))
      r.compare(label + " noftfy", ids_tensor(tok.encode_padded(prompt, max_len, pad_eos, TextCleaning::Basic)),
                rows("output_ids_max77_pad_eos_noftfy")[i], 0, 0);
  }
  return r;
}

Result run_clip_text(const Case& c) {
  auto te = build_from_file(c, "", build_text_encoder);
  Result r;
  check_text_encoder(te, c, "input_input_ids", "output_", &r);
  return r;
}

Result run_unet(const Case& c) {
  auto unet = build_from_file(c, "", build_unet);
  Result r;
  check_unet(unet, c, "output_sample", &r);
  return r;
}

Result run_vae(const Case& c) {
  auto vae = build_from_file(c, "", build_vae);
  Result r;
  check_vae(vae, c, "output_decoded", &r);
  return r;
}

// The single file must reproduce its own io and every case that shares its weights.
Result run_checkpoint_convert(const Case& c) {
  LoadOptions options;
  options.device = test_device();
  options.config_override_json = json::object();
  for (const char* comp : {"unet", "vae", "text_encoder", "text_encoder_2"})
    if (config_of(c).contains(comp) && !config_of(c)[comp].is_null())
      options.config_override_json[comp] = config_of(c)[comp];
  LoadedModel m = load_model(c.path(c.spec.at("weights").get<std::string>()), options);
  Result r;
  check_unet(m.unet, c, "output_unet_sample", &r);
  check_vae(m.vae, c, "output_vae_decoded", &r);
  check_text_encoder(m.text_encoder, c, "input_input_ids", "output_te_", &r);
  if (m.text_encoder_2) check_text_encoder(m.text_encoder_2, c, "input_input_ids_2", "output_te2_", &r);

  const std::string root = golden_dir();
  json manifest = read_json(root + "/manifest.json");
  const json& same = c.spec.at("params").value("same_weights_as_cases", json::object());
  for (auto it = same.begin(); it != same.end(); ++it) {
    for (const auto& name : it.value()) {
      json entry;
      for (const auto& e : manifest.at("cases"))
        if (e.at("name") == name) entry = e;
      if (entry.is_null()) continue;  // a holdout set may not include it
      Case other = load_case(root, entry);
      Result sub;
      if (it.key() == "unet") check_unet(m.unet, other, "output_sample", &sub);
      else if (it.key() == "vae") check_vae(m.vae, other, "output_decoded", &sub);
      else if (it.key() == "text_encoder") check_text_encoder(m.text_encoder, other, "input_input_ids", "output_", &sub);
      else if (it.key() == "text_encoder_2")
        check_text_encoder(m.text_encoder_2, other, "input_input_ids", "output_", &sub);
      r.max_abs_err = std::max(r.max_abs_err, sub.max_abs_err);
      if (!sub.pass && r.pass) {
        r.pass = false;
        r.detail = other.name + ": " + sub.detail;
      }
    }
  }
  return r;
}

Result run_rng(const Case& c) {
  Result r;
  // Keys: output_randn_seed<seed>_<shape> or ..._two_draws_<shape> (two draws from one generator, stacked).
  for (const auto& [key, expected] : c.io) {
    const std::string prefix = "output_randn_seed";
    if (key.rfind(prefix, 0) != 0) continue;
    const std::string rest = key.substr(prefix.size());
    const uint64_t seed = std::stoull(rest.substr(0, rest.find('_')));
    const bool two = rest.find("_two_draws_") != std::string::npos;
    auto gen = at::detail::createCPUGenerator(seed);
    torch::Tensor actual;
    if (two) {
      auto shape = expected.sizes().slice(1).vec();
      auto first = torch::randn(shape, gen);
      actual = torch::stack({first, torch::randn(shape, gen)});
    } else {
      actual = torch::randn(expected.sizes(), gen);
    }
    r.compare(key, actual, expected, 0, 0);
  }
  return r;
}

Result run_cfg_rescale(const Case& c) {
  const json& p = c.spec.at("params");
  auto guided = samplers::classifier_free_guidance(c.input("noise_pred_uncond"), c.input("noise_pred_text"),
                                                   p.at("guidance_scale").get<double>());
  Result r;
  r.compare("output_noise_cfg", guided, c.io.at("output_noise_cfg"), c.atol, c.rtol);
  r.compare("output_rescaled",
            samplers::rescale_guidance(guided, c.input("noise_pred_text"), p.at("guidance_rescale").get<double>()),
            c.io.at("output_rescaled"), c.atol, c.rtol);
  return r;
}

// The reference loop with a fake model: model_output = A·x_in + (B·t + C).
Result run_scheduler(const Case& c) {
  const json& p = c.spec.at("params");
  const bool nonfinite = p.value("has_nonfinite", false);
  auto config = samplers::parse_schedule_config(config_of(c), c.path("case.json"));
  if (p.contains("eta")) config.eta = p.at("eta").get<double>();
  Result r;
  std::unique_ptr<samplers::Scheduler> scheduler;
  try {
    scheduler = samplers::make_scheduler(config_of(c).at("_class_name").get<std::string>(), config);
    scheduler->set_timesteps(p.at("num_inference_steps").get<int64_t>());
  } catch (const Error& e) {
    // Where the reference makes NaNs, refusing at set-up with a clear error is the right answer.
    if (nonfinite) return r;
    throw;
  }
  auto cmp = [&](const std::string& key, const torch::Tensor& actual) {
    if (c.has(key)) r.compare(key, actual, c.io.at(key), c.atol, c.rtol, nonfinite);
  };
  cmp("output_timesteps", scheduler->timesteps());
  if (scheduler->sigmas().defined()) cmp("output_sigmas", scheduler->sigmas());
  cmp("output_alphas_cumprod", scheduler->alphas_cumprod());

  const double a = p.at("model_fn").at("A"), b = p.at("model_fn").at("B"), cc = p.at("model_fn").at("C");
  at::Generator gen;
  if (p.contains("generator_seed")) gen = at::detail::createCPUGenerator(p.at("generator_seed").get<uint64_t>());
  auto sample = c.input("noise") * scheduler->init_noise_sigma();
  cmp("output_initial_sample", sample);
  std::vector<torch::Tensor> inputs, prevs, originals, denoised;
  const auto timesteps = scheduler->timesteps().to(torch::kDouble);
  for (int64_t i = 0; i < timesteps.size(0); ++i) {
    const double t = static_cast<float>(timesteps[i].item<double>());
    auto x_in = scheduler->scale_model_input(sample, i);
    auto model_output = a * x_in + (b * t + cc);
    auto out = scheduler->step(model_output, i, sample, gen.defined() ? &gen : nullptr);
    inputs.push_back(x_in);
    prevs.push_back(out.prev_sample);
    if (out.pred_original_sample.defined()) originals.push_back(out.pred_original_sample);
    if (out.denoised.defined()) denoised.push_back(out.denoised);
    sample = out.prev_sample;
  }
  cmp("output_model_inputs", torch::stack(inputs));
  cmp("output_prev_samples", torch::stack(prevs));
  if (c.has("output_pred_original_samples")) {
    if (originals.size() != inputs.size()) throw Error(c.name, "scheduler returned no pred_original_sample");
    cmp("output_pred_original_samples", torch::stack(originals));
  }
  if (c.has("output_denoised")) {
    if (denoised.size() != inputs.size()) throw Error(c.name, "scheduler returned no denoised sample");
    cmp("output_denoised", torch::stack(denoised));
  }
  cmp("output_final_sample", sample);
  return r;
}

// "../../tokenizer (pad '!' = 0)" → the tokenizer folder and its pad token.
TokenizerPlan tokenizer_of(const Case& c, const std::string& description) {
  const std::string dir = c.path(description.substr(0, description.find(" (")));
  const bool bang = description.find("'!'") != std::string::npos;
  return {dir + "/vocab.json", dir + "/merges.txt", bang ? "!" : "<|endoftext|>"};
}

std::vector<std::string> strings_or_one(const json& v) {
  if (v.is_array()) return v.get<std::vector<std::string>>();
  return {v.get<std::string>()};
}

Result run_pipeline(const Case& c) {
  auto model = std::make_shared<LoadedModel>();
  model->unet = build_from_file(c, "unet", build_unet);
  model->vae = build_from_file(c, "vae", build_vae);
  model->text_encoder = build_from_file(c, "text_encoder", build_text_encoder);
  model->tokenizer = load_tokenizer(tokenizer_of(c, config_of(c, "tokenizer")), &model->pad_id);
  if (config_of(c).contains("text_encoder_2")) {
    model->text_encoder_2 = build_from_file(c, "text_encoder_2", build_text_encoder);
    model->tokenizer_2 = load_tokenizer(tokenizer_of(c, config_of(c, "tokenizer_2")), &model->pad_id_2);
  }
  const json& p = c.spec.at("params");
  Pipeline pipeline(model, config_of(c, "scheduler"));
  GenerationOptions o;
  o.prompts = strings_or_one(p.at("prompt"));
  if (p.contains("prompt_2")) o.prompt_2 = p.at("prompt_2");
  if (p.contains("negative_prompt") && !p.at("negative_prompt").is_null()) {
    o.negative_prompts = strings_or_one(p.at("negative_prompt"));
    if (o.negative_prompts.size() == 1) o.negative_prompts.resize(o.prompts.size(), o.negative_prompts[0]);
  } else {
    o.negative_prompts.assign(o.prompts.size(), "");
    o.negative_is_null = config_of(c).value("force_zeros_for_empty_prompt", false);
  }
  if (p.contains("negative_prompt_2")) o.negative_prompt_2 = p.at("negative_prompt_2");
  o.width = p.at("width");
  o.height = p.at("height");
  o.steps = p.at("num_inference_steps");
  o.cfg_scale = p.at("guidance_scale");
  o.guidance_rescale = p.value("guidance_rescale", 0.0);
  o.encoding.plain = true;  // the reference has no prompt-weighting syntax
  if (p.contains("clip_skip") && !p.at("clip_skip").is_null()) o.encoding.clip_skip = p.at("clip_skip").get<int>() + 1;
  for (auto [key, field] : {std::pair<const char*, std::array<int64_t, 2>*>{"original_size", &o.original_size},
                            {"target_size", &o.target_size},
                            {"crops_coords_top_left", &o.crop_top_left}})
    if (p.contains(key)) *field = p.at(key).get<std::array<int64_t, 2>>();
  o.initial_latents = c.input("latents");
  // Stochastic samplers draw their step noise from the reference's generator:
  // with the latents given, the pipeline's generator of `seed` serves only them.
  if (p.contains("generator_seed")) o.seed = p.at("generator_seed").get<uint64_t>();
  Result r;
  o.on_step = [&](int64_t step, int64_t, const torch::Tensor& latents) {
    char key[64];
    std::snprintf(key, sizeof key, "output_step%02lld_latents", static_cast<long long>(step));
    if (c.has(key)) r.compare(key, latents, c.io.at(key), c.atol, c.rtol);
  };
  auto out = pipeline.generate(o);
  auto cmp = [&](const std::string& key, const torch::Tensor& actual) {
    if (c.has(key)) r.compare(key, actual, c.io.at(key), c.atol, c.rtol);
  };
  cmp("output_prompt_embeds", out.cond.context);
  cmp("output_negative_prompt_embeds", out.uncond.context);
  if (out.cond.pooled.defined()) {
    cmp("output_pooled_prompt_embeds", out.cond.pooled);
    cmp("output_negative_pooled_prompt_embeds", out.uncond.pooled);
    cmp("output_add_time_ids", out.add_time_ids.slice(0, 0, 1));
  }
  cmp("output_timesteps", out.timesteps.to(torch::kFloat));
  cmp("output_final_latents", out.latents);
  cmp("output_image", out.images);
  return r;
}

// ---- adapters -----------------------------------------------------------------

std::map<std::string, torch::Tensor> parameter_copies(const adapters::Components& components) {
  std::map<std::string, torch::Tensor> copies;
  for (const auto& [component, module] : components)
    for (const auto& p : module->named_parameters()) copies[component + "." + p.key()] = p.value().clone();
  return copies;
}

void expect(bool ok, const std::string& problem, Result* r) {
  if (ok) return;
  if (r->pass) r->detail = problem;
  r->pass = false;
}

// Removing adapters must give the original weights back bit for bit.
void expect_restored(const adapters::Components& components, const std::map<std::string, torch::Tensor>& original,
                     const std::string& what, Result* r) {
  for (const auto& [key, now] : parameter_copies(components))
    expect(torch::equal(now, original.at(key)), what + ": " + key + " not restored exactly", r);
}

// The kohya and PEFT files, merged (the reference's fuse_lora) and at run time
// (its unfused path), must all give the reference outputs.
Result run_lora(const Case& c) {
  const json& p = c.spec.at("params");
  LoadedModel m;
  m.unet = build_from_file(c, "unet", build_unet);
  m.text_encoder = build_from_file(c, "text_encoder", build_text_encoder);
  const auto components = adapters::adapter_components(m);
  const auto original = parameter_copies(components);
  Result r;
  check_unet(m.unet, c, "output_base_sample", &r);
  check_text_encoder(m.text_encoder, c, "input_input_ids", "output_base_", &r);
  for (const auto& [format, file] : p.at("lora_files").items()) {
    auto lora = std::make_shared<adapters::LoraFile>(adapters::read_lora_file(c.path(file)));
    for (auto mode : {adapters::ApplyMode::Merge, adapters::ApplyMode::Runtime}) {
      const std::string what = format + (mode == adapters::ApplyMode::Merge ? " merged" : " at run time");
      adapters::LoraStack stack(components, mode);
      auto report = stack.add(format, lora, p.at("lora_scale").get<double>());
      expect(report.matched["unet"] == p.at("num_unet_modules").get<size_t>() &&
                 report.matched["text_encoder"] == p.at("num_te_modules").get<size_t>() &&
                 report.unmatched_keys.empty(),
             what + ": " + report.summary(), &r);
      Result sub;
      check_unet(m.unet, c, "output_sample", &sub);
      check_text_encoder(m.text_encoder, c, "input_input_ids", "output_", &sub);
      r.max_abs_err = std::max(r.max_abs_err, sub.max_abs_err);
      expect(sub.pass, what + ": " + sub.detail, &r);
      stack.clear();
      expect_restored(components, original, what, &r);
    }
  }
  return r;
}

// Norms replaced, LoRA half at the adapter weight; merged and at run time.
Result run_resadapter(const Case& c) {
  const json& p = c.spec.at("params");
  auto unet = build_from_file(c, "", build_unet);
  const adapters::Components components{{"unet", unet.ptr()}};
  const auto original = parameter_copies(components);
  Result r;
  check_unet(unet, c, "output_base_sample", &r);
  const auto weights = adapters::read_resadapter(
      {c.path(p.at("files").at("lora").get<std::string>()), c.path(p.at("files").at("norm").get<std::string>())});
  for (auto mode : {adapters::ApplyMode::Merge, adapters::ApplyMode::Runtime}) {
    const std::string what = mode == adapters::ApplyMode::Merge ? "merged" : "at run time";
    adapters::AppliedResAdapter applied(unet.ptr(), weights, p.at("adapter_weight").get<double>(),
                                        adapters::NormMode::Replace, mode);
    Result sub;
    check_unet(unet, c, "output_sample", &sub);
    r.max_abs_err = std::max(r.max_abs_err, sub.max_abs_err);
    expect(sub.pass, what + ": " + sub.detail, &r);
    applied.remove();
    expect_restored(components, original, what, &r);
  }
  return r;
}

// ---- clip_vision: CLIPModel, CLIPImageProcessor, the aesthetic head ------------

Result run_clip_model(const Case& c) {
  const std::string weights = weights_path(c);
  auto model = nn::load_clip_model(weights.substr(0, weights.find_last_of('/')));
  auto out = model->forward(c.input("input_ids"), c.input("pixel_values"));
  Result r;
  auto cmp = [&](const std::string& name, const torch::Tensor& actual) {
    r.compare("output_" + name, actual, c.io.at("output_" + name), c.atol, c.rtol);
  };
  cmp("vision_embeddings", out.vision.embeddings);
  cmp("vision_hidden_states", torch::stack(out.vision.hidden_states));
  cmp("vision_last_hidden_state", out.vision.last_hidden_state);
  cmp("vision_pooled", out.vision.pooled);
  cmp("image_embeds", out.vision.image_embeds);
  cmp("image_embeds_normalized", out.image_embeds_normalized);
  cmp("text_pooled", out.text.pooled);
  cmp("text_embeds", out.text.text_embeds);
  cmp("text_embeds_normalized", out.text_embeds_normalized);
  cmp("logits_per_image", out.logits_per_image);
  return r;
}

Result run_clip_preprocess(const Case& c) {
  const json& p = c.spec.at("params");
  auto config = p.contains("preprocessor_config")
                    ? read_clip_processor_config(c.path(p.at("preprocessor_config").get<std::string>()))
                    : parse_clip_processor_config(config_of(c), c.path("case.json"));
  auto u8 = c.input("image_uint8").to(torch::kUInt8).contiguous();  // int64 holding 0..255 in the file
  RgbImage image{static_cast<int>(u8.size(1)), static_cast<int>(u8.size(0)), {}};
  image.pixels.assign(u8.data_ptr<uint8_t>(), u8.data_ptr<uint8_t>() + u8.numel());
  RgbImage resized;
  auto pixels = clip_preprocess(image, config, &resized);
  Result r;
  auto resized_t = torch::tensor(std::vector<int64_t>(resized.pixels.begin(), resized.pixels.end()), torch::kLong)
                       .view({resized.height, resized.width, 3});
  r.compare("output_resized_uint8", resized_t, c.io.at("output_resized_uint8"), 0, 0);
  auto values = torch::tensor(pixels.values, torch::kFloat).view({1, 3, pixels.height, pixels.width});
  r.compare("output_pixel_values", values, c.io.at("output_pixel_values"), c.atol, c.rtol);
  return r;
}

Result run_clip_aesthetic(const Case& c) {
#ifdef LUMEN_INFERENCE_ONLY
  (void)c;
  throw SkipCase("the aesthetic head is a reward model: not in an inference-only build");
#else
  auto mlp = train::AestheticMlp::load(weights_path(c));
  auto normalized = nn::l2_normalize(c.input("image_embeds"));
  Result r;
  r.compare("output_normalized_embeds", normalized, c.io.at("output_normalized_embeds"), c.atol, c.rtol);
  r.compare("output_score", mlp.forward(normalized), c.io.at("output_score"), c.atol, c.rtol);
  return r;
#endif
}

Result run_clip_vision(const Case& c) {
  const std::string stage = c.spec.at("params").at("stage");
  if (stage == "model") return run_clip_model(c);
  if (stage == "preprocess") return run_clip_preprocess(c);
  if (stage == "aesthetic") return run_clip_aesthetic(c);
  throw Error(c.path("case.json"), "unknown clip_vision stage '" + stage + "'");
}

}  // namespace

torch::Device test_device() {
  static const torch::Device device = [] {
    const char* name = std::getenv("LUMEN_TEST_DEVICE");
    return parse_device(name && *name ? name : "cpu");
  }();
  return device;
}

std::string golden_dir() {
  const char* env = std::getenv("LUMEN_GOLDEN_DIR");
  return env && *env ? env : "../shared/golden";
}

torch::Tensor Case::input(const std::string& n) const {
  auto it = io.find("input_" + n);
  if (it == io.end()) throw Error(dir + "/io.safetensors", "missing input_" + n);
  return it->second;
}

void Result::compare(const std::string& what, const torch::Tensor& actual_in, const torch::Tensor& expected_in,
                     double atol, double rtol, bool nan_equal) {
  if (actual_in.sizes() != expected_in.sizes()) {
    pass = false;
    if (detail.empty()) {
      std::ostringstream s;
      s << what << ": shape " << actual_in.sizes() << " != expected " << expected_in.sizes();
      detail = s.str();
    }
    return;
  }
  auto actual = actual_in.detach().to(torch::kCPU, torch::kDouble);
  auto expected = expected_in.detach().to(torch::kDouble);
  auto nan_a = actual.isnan(), nan_e = expected.isnan();
  auto diff = (actual - expected).abs();
  auto ok = diff <= atol + rtol * expected.abs();
  // Where the reference made NaN (a division by zero or a float32 rounding at
  // SNR 0), NaN matches it and a finite value is an improvement, not an error.
  if (nan_equal) ok = ok | nan_e;
  auto finite_diff = torch::where(nan_a | nan_e, torch::zeros_like(diff), diff);
  max_abs_err = std::max(max_abs_err, diff.numel() ? finite_diff.max().item<double>() : 0.0);
  if (!ok.all().item<bool>()) {
    pass = false;
    if (detail.empty()) {
      const int64_t first = (~ok).flatten().nonzero()[0].item<int64_t>();
      std::ostringstream s;
      s << what << ": " << (~ok).sum().item<int64_t>() << " of " << ok.numel() << " elements off; first at flat index "
        << first << ": actual " << actual.flatten()[first].item<double>() << " expected "
        << expected.flatten()[first].item<double>();
      detail = s.str();
    }
  }
}

Case load_case(const std::string& root, const json& entry) {
  Case c;
  c.name = entry.at("name");
  c.kind = entry.at("kind");
  c.dir = root + "/" + entry.at("dir").get<std::string>();
  c.spec = read_json(c.path("case.json"));
  c.atol = c.spec.value("atol", 0.0);
  c.rtol = c.spec.value("rtol", 0.0);
  if (c.spec.contains("io")) c.io = load_safetensors(c.path(c.spec.at("io").get<std::string>()));
  return c;
}

bool kind_supported(const std::string& kind) {
  return kind == "tokenizer" || kind == "clip_text" || kind == "unet" || kind == "vae" ||
         kind == "checkpoint_convert" || kind == "rng" || kind == "cfg_rescale" || kind == "scheduler" ||
         kind == "pipeline" || kind == "lora" || kind == "resadapter" || kind == "clip_vision";
}

Result run_case(const Case& c) {
  torch::InferenceMode inference;
  if (c.kind == "tokenizer") return run_tokenizer(c);
  if (c.kind == "clip_text") return run_clip_text(c);
  if (c.kind == "unet") return run_unet(c);
  if (c.kind == "vae") return run_vae(c);
  if (c.kind == "checkpoint_convert") return run_checkpoint_convert(c);
  if (c.kind == "rng") return run_rng(c);
  if (c.kind == "cfg_rescale") return run_cfg_rescale(c);
  if (c.kind == "scheduler") return run_scheduler(c);
  if (c.kind == "pipeline") return run_pipeline(c);
  if (c.kind == "lora") return run_lora(c);
  if (c.kind == "resadapter") return run_resadapter(c);
  if (c.kind == "clip_vision") return run_clip_vision(c);
  throw Error(c.name, "kind '" + c.kind + "' is not supported");
}

}  // namespace lumen::golden
