#include "convert/model_writer.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "convert/diffusers_to_ldm.h"
#include "error.h"
#include "io/atomic_file.h"
#include "io/safetensors_torch.h"
#include "pipeline/recommended_settings.h"

namespace lumen {
namespace {

using nlohmann::json;

torch::Tensor cast(const torch::Tensor& t, torch::Dtype dtype) {
  auto c = t.detach();
  if (c.is_floating_point()) c = c.to(dtype);
  return c.contiguous();
}

std::map<std::string, torch::Tensor> parameters(torch::nn::Module& module) {
  std::map<std::string, torch::Tensor> out;
  for (auto& item : module.named_parameters(true)) out[item.key()] = item.value();
  return out;
}

void make_dir(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) throw Error(path, "cannot create folder: " + ec.message());
}

void copy_file(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) throw Error(from, "cannot open");
  write_file_atomically(to, [&](std::ostream& out) { out << in.rdbuf(); });
}

const char* text_encoder_class(const std::string& name, const json& config) {
  if (config.contains("architectures") && config["architectures"].is_array() && !config["architectures"].empty() &&
      config["architectures"][0] == "CLIPTextModelWithProjection")
    return "CLIPTextModelWithProjection";
  return name == "text_encoder_2" ? "CLIPTextModelWithProjection" : "CLIPTextModel";
}

json scheduler_config(const ModelPlan& plan) {
  json s = plan.scheduler_config;
  if (s.is_null()) {
    const bool xl = plan.family == ModelFamily::SDXL || plan.family == ModelFamily::SDXLRefiner;
    s = {{"_class_name", xl ? "EulerDiscreteScheduler" : "PNDMScheduler"},
         {"beta_start", 0.00085},
         {"beta_end", 0.012},
         {"beta_schedule", "scaled_linear"},
         {"num_train_timesteps", 1000},
         {"steps_offset", 1},
         {"set_alpha_to_one", false},
         {"timestep_spacing", "leading"}};
    if (!xl) s["skip_prk_steps"] = true;
  }
  if (!plan.prediction_type.empty()) s["prediction_type"] = plan.prediction_type;
  if (!s.contains("prediction_type")) s["prediction_type"] = "epsilon";
  if (plan.zero_terminal_snr) s["rescale_betas_zero_snr"] = true;
  return s;
}

const char* pipeline_class(ModelFamily f) {
  if (f == ModelFamily::SDXL) return "StableDiffusionXLPipeline";
  if (f == ModelFamily::SDXLRefiner) return "StableDiffusionXLImg2ImgPipeline";
  return "StableDiffusionPipeline";
}

}  // namespace

torch::Dtype parse_write_dtype(const std::string& name) {
  if (name == "f32" || name == "fp32" || name == "float32") return torch::kFloat;
  if (name == "f16" || name == "fp16" || name == "float16") return torch::kHalf;
  if (name == "bf16" || name == "bfloat16") return torch::kBFloat16;
  throw Error("--dtype " + name, "unknown dtype (f32, f16, bf16)");
}

std::map<std::string, torch::nn::Module*> model_networks(const LoadedModel& model) {
  std::map<std::string, torch::nn::Module*> n;
  if (model.unet) n["unet"] = model.unet.ptr().get();
  if (model.vae) n["vae"] = model.vae.ptr().get();
  if (model.text_encoder) n["text_encoder"] = model.text_encoder.ptr().get();
  if (model.text_encoder_2) n["text_encoder_2"] = model.text_encoder_2.ptr().get();
  return n;
}

std::map<std::string, torch::Tensor> single_file_tensors(const LoadedModel& model, torch::Dtype dtype) {
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, module] : model_networks(model)) {
    const auto params = parameters(*module);
    std::vector<TensorInfo> infos;
    for (const auto& [key, t] : params) infos.push_back({key, t.sizes().vec(), ""});
    const auto c = model.plan.components.find(name);
    const json config = c == model.plan.components.end() ? json::object() : c->second.config;
    const LdmTargets targets = map_diffusers_to_ldm(name, infos, config, model.plan.family);
    if (!targets.unmapped.empty())
      throw Error(name, "parameter '" + targets.unmapped.front() + "' has no single-file name (" +
                            std::to_string(targets.unmapped.size()) + " in all)");
    for (const auto& t : targets.targets) {
      torch::Tensor v;
      switch (t.transform) {
        case Transform::Copy:
          v = params.at(t.diffusers_keys.front());
          break;
        case Transform::Squeeze1x1:
          v = params.at(t.diffusers_keys.front()).reshape(t.shape);
          break;
        case Transform::Transpose:
          v = params.at(t.diffusers_keys.front()).t();
          break;
        case Transform::CatDim0: {
          std::vector<torch::Tensor> parts;
          for (const auto& k : t.diffusers_keys) parts.push_back(params.at(k));
          v = torch::cat(parts, 0);
          break;
        }
      }
      if (v.sizes().vec() != t.shape) throw Error(t.ldm_key, "shape does not match its key map (internal error)");
      out[t.ldm_key] = cast(v, dtype);
    }
  }
  if (model.plan.prediction_type == "v_prediction") out["v_pred"] = torch::empty({0}, dtype);
  if (model.plan.zero_terminal_snr) out["ztsnr"] = torch::empty({0}, dtype);
  return out;
}

void write_single_file(const LoadedModel& model, const std::string& path, const WriteOptions& options) {
  std::map<std::string, std::string> metadata = options.metadata;
  metadata.emplace("format", "pt");
  metadata.emplace("lumen_family", family_name(model.plan.family));
  // The configs ride along, so a file Lumen writes loads back exactly even
  // where detection from tensor shapes would guess (group counts, heads).
  json configs = json::object();
  for (const auto& [name, component] : model.plan.components) configs[name] = component.config;
  if (model.plan.scheduler_config.is_object()) configs["scheduler"] = model.plan.scheduler_config;
  metadata.emplace("lumen_config", configs.dump());
  if (!options.recommended_settings.empty()) metadata.emplace(kRecommendedSettingsKey, options.recommended_settings);
  save_safetensors(path, single_file_tensors(model, options.dtype), metadata);
}

void write_diffusers_folder(const LoadedModel& model, const std::string& folder, const WriteOptions& options) {
  torch::NoGradGuard no_grad;
  const ModelPlan& plan = model.plan;
  make_dir(folder);
  std::map<std::string, std::string> metadata = options.metadata;
  metadata.emplace("format", "pt");
  json index = {{"_class_name", pipeline_class(plan.family)}, {"_diffusers_version", "0.27.2"}};
  for (const auto& [name, module] : model_networks(model)) {
    const std::string dir = folder + "/" + name;
    make_dir(dir);
    json config = plan.components.count(name) ? plan.components.at(name).config : json::object();
    const bool text = name == "text_encoder" || name == "text_encoder_2";
    std::string cls;
    if (text) {
      cls = text_encoder_class(name, config);
      if (!config.contains("architectures")) config["architectures"] = {cls};
      if (!config.contains("model_type")) config["model_type"] = "clip_text_model";
    } else {
      cls = name == "unet" ? "UNet2DConditionModel" : "AutoencoderKL";
      config["_class_name"] = cls;
    }
    std::map<std::string, torch::Tensor> tensors;
    for (const auto& [key, t] : parameters(*module)) tensors[key] = cast(t, options.dtype);
    save_safetensors(dir + (text ? "/model.safetensors" : "/diffusion_pytorch_model.safetensors"), tensors, metadata);
    write_text_atomically(dir + "/config.json", config.dump(2));
    index[name] = {text ? "transformers" : "diffusers", cls};
  }
  for (const auto& [name, tok] : plan.tokenizers) {
    const std::string dir = folder + "/" + name;
    make_dir(dir);
    copy_file(tok.vocab, dir + "/vocab.json");
    copy_file(tok.merges, dir + "/merges.txt");
    write_text_atomically(dir + "/tokenizer_config.json",
                          json{{"tokenizer_class", "CLIPTokenizer"},
                               {"model_max_length", 77},
                               {"do_lower_case", true},
                               {"bos_token", "<|startoftext|>"},
                               {"eos_token", "<|endoftext|>"},
                               {"unk_token", "<|endoftext|>"},
                               {"pad_token", tok.pad_token}}
                              .dump(2));
    index[name] = {"transformers", "CLIPTokenizer"};
  }
  const json sched = scheduler_config(plan);
  make_dir(folder + "/scheduler");
  write_text_atomically(folder + "/scheduler/scheduler_config.json", sched.dump(2));
  index["scheduler"] = {"diffusers", sched.value("_class_name", "PNDMScheduler")};
  if (plan.family == ModelFamily::SD1 || plan.family == ModelFamily::SD2) {
    index["safety_checker"] = {nullptr, nullptr};
    index["feature_extractor"] = {nullptr, nullptr};
    index["requires_safety_checker"] = false;
  }
  if (!options.recommended_settings.empty())
    write_text_atomically(folder + "/lumen_generation.json", json::parse(options.recommended_settings).dump(2) + "\n");
  write_text_atomically(folder + "/model_index.json", index.dump(2));
}

}  // namespace lumen
