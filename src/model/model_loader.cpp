#include "model/model_loader.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>

#include "error.h"
#include "io/text_file.h"
#include "io/safetensors.h"
#include "io/yaml_json.h"
#include "nn/init.h"
#include "runtime.h"

namespace lumen {
namespace {

using nlohmann::json;

const char* const kComponents[] = {"unet", "vae", "text_encoder", "text_encoder_2"};

bool exists(const std::string& p) { return std::filesystem::exists(p); }
bool is_dir(const std::string& p) { return std::filesystem::is_directory(p); }

json read_json(const std::string& path) { return read_json_file(path); }


// Parameter and dtype statistics from the headers; no tensor data is read.
void add_stats(ComponentPlan* plan) {
  auto source = plan->open_weights();
  for (const auto& k : source->keys()) {
    int64_t n = 1;
    for (auto d : source->shape(k)) n *= d;
    plan->parameters += n;
    plan->dtype_tensors[source->dtype(k)]++;
  }
}

ModelFamily family_from_name(const std::string& name, const std::string& where) {
  std::string n;
  for (char ch : name) n += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (n == "sd1" || n == "sd15" || n == "sd1.x") return ModelFamily::SD1;
  if (n == "sd2" || n == "sd2.x") return ModelFamily::SD2;
  if (n == "sdxl") return ModelFamily::SDXL;
  if (n == "sdxlrefiner" || n == "sdxl_refiner") return ModelFamily::SDXLRefiner;
  throw Error(where, "unknown family '" + name + "' (sd1, sd2, sdxl, sdxl_refiner)");
}

std::vector<std::string> component_weight_files(const std::string& dir) {
  for (const char* base : {"diffusion_pytorch_model", "model"}) {
    const std::string single = dir + "/" + base + ".safetensors";
    if (exists(single)) return {single};
    const std::string index = single + ".index.json";
    if (exists(index)) return {index};
  }
  for (const char* pickled : {"diffusion_pytorch_model.bin", "pytorch_model.bin"})
    if (exists(dir + "/" + pickled))
      throw Error(dir + "/" + pickled, "pickled weights are not loaded (they can run code); convert to safetensors");
  throw Error(dir, "no diffusion_pytorch_model.safetensors or model.safetensors");
}

std::string pad_token_of(const std::string& dir, const std::string& fallback) {
  for (const char* name : {"tokenizer_config.json", "special_tokens_map.json"}) {
    const std::string p = dir + "/" + name;
    if (!exists(p)) continue;
    json j = read_json(p);
    if (!j.contains("pad_token")) continue;
    const json& pad = j["pad_token"];
    if (pad.is_string()) return pad.get<std::string>();
    if (pad.is_object() && pad.contains("content") && pad["content"].is_string())
      return pad["content"].get<std::string>();
  }
  return fallback;
}

void plan_diffusers(const std::string& dir, ModelPlan* plan) {
  plan->format = "diffusers";
  json index = read_json(dir + "/model_index.json");
  if (!index.is_object()) throw Error(dir + "/model_index.json", "is not a JSON object");
  for (const char* name : kComponents) {
    const std::string sub = dir + "/" + name;
    if (!is_dir(sub)) continue;
    ComponentPlan c;
    c.config_source = sub + "/config.json";
    c.config = read_json(c.config_source);
    auto files = component_weight_files(sub);
    c.open_weights = [files] { return open_component_weights(files); };
    add_stats(&c);
    plan->components[name] = std::move(c);
  }
  for (const char* name : {"unet", "vae"})
    if (!plan->components.count(name)) throw Error(dir, std::string("diffusers folder has no ") + name + "/");
  for (auto [name, fallback] : {std::pair<const char*, const char*>{"tokenizer", "<|endoftext|>"},
                                {"tokenizer_2", "!"}}) {
    const std::string sub = dir + "/" + name;
    if (is_dir(sub)) plan->tokenizers[name] = {sub + "/vocab.json", sub + "/merges.txt", pad_token_of(sub, fallback)};
  }
  const std::string sched = dir + "/scheduler/scheduler_config.json";
  if (exists(sched)) {
    plan->scheduler_config = read_json(sched);
    const json& sc = plan->scheduler_config;
    if (!sc.is_object()) throw Error(sched, "is not a JSON object");
    if (sc.contains("prediction_type") && !sc["prediction_type"].is_string())
      throw Error(sched, "scheduler field 'prediction_type' must be a string");
    if (sc.contains("rescale_betas_zero_snr") && !sc["rescale_betas_zero_snr"].is_boolean())
      throw Error(sched, "scheduler field 'rescale_betas_zero_snr' must be true or false");
    plan->prediction_type = sc.value("prediction_type", "");
    plan->zero_terminal_snr = sc.value("rescale_betas_zero_snr", false);
  }
  plan->family = family_from_unet(plan->components["unet"].config);
}

// The configs `lumen convert` stores in a single file's metadata (lumen_config)
// replace the detected ones: shapes cannot tell group counts or heads.
void apply_stored_configs(const std::string& text, const std::string& path, ModelPlan* plan) {
  json stored;
  try {
    stored = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(path, "metadata lumen_config is not valid JSON: " + json_error_message(e));
  }
  if (!stored.is_object()) throw Error(path, "metadata lumen_config is not a JSON object");
  for (auto& [name, component] : plan->components) {
    if (!stored.contains(name)) continue;
    if (!stored[name].is_object()) throw Error(path, "metadata lumen_config: '" + name + "' is not an object");
    component.config = stored[name];
    component.config_source = "stored in " + path;
  }
  if (stored.contains("scheduler") && stored["scheduler"].is_object()) plan->scheduler_config = stored["scheduler"];
  plan->notes = {"configs from the file's lumen_config metadata (written by lumen convert), not guessed"};
}

void plan_single_file(const std::string& path, ModelPlan* plan) {
  plan->format = "single-file";
  auto file = SafetensorsFile::open(path);
  std::vector<TensorInfo> infos;
  for (const auto& e : file->entries()) infos.push_back({e.name, e.shape, dtype_name(e.dtype)});
  DetectedArch arch = detect_architecture(infos, path);
  auto map = std::make_shared<KeyMapResult>(map_ldm_to_diffusers(infos));
  plan->family = arch.family;
  plan->notes = arch.notes;
  const json configs[] = {arch.unet_config, arch.vae_config, arch.text_encoder_config, arch.text_encoder_2_config};
  for (size_t i = 0; i < 4; ++i) {
    const std::string name = kComponents[i];
    bool present = false;
    for (const auto& m : map->mapped) present = present || m.component == name;
    if (!present || configs[i].is_null()) continue;
    ComponentPlan c;
    c.config = configs[i];
    c.config_source = "detected from " + path;
    c.open_weights = [file, map, name] { return open_ldm_component(file, *map, name); };
    add_stats(&c);
    plan->components[name] = std::move(c);
  }
  const auto stored = file->metadata().find("lumen_config");
  if (stored != file->metadata().end()) apply_stored_configs(stored->second, path, plan);
  for (const auto& key : map->unmapped) {
    if (key == "v_pred") plan->prediction_type = "v_prediction";
    else if (key == "ztsnr") plan->zero_terminal_snr = true;
  }
  size_t ignored = map->unmapped.size();
  if (ignored) {
    std::string sample = map->unmapped.front();
    plan->notes.push_back(std::to_string(ignored) + " tensor(s) not used, e.g. '" + sample + "'");
  }
  // Single files carry no tokenizer: the real CLIP BPE files ship in assets/.
  const bool sd2_style = plan->family == ModelFamily::SD2 || plan->family == ModelFamily::SDXLRefiner;
  if (plan->components.count("text_encoder"))
    plan->tokenizers["tokenizer"] = embedded_tokenizer(sd2_style ? "!" : "<|endoftext|>");
  if (plan->components.count("text_encoder_2")) plan->tokenizers["tokenizer_2"] = embedded_tokenizer("!");
}

void apply_override(const json& o, const std::string& file, ModelPlan* plan) {
  if (!o.is_object()) throw Error(file, "must be a mapping of component names to config fields");
  for (auto it = o.begin(); it != o.end(); ++it) {
    if (it.key() == "family") {
      if (!it.value().is_string()) throw Error(file, "'family' must be a string");
      plan->family = family_from_name(it.value().get<std::string>(), file);
      continue;
    }
    if (it.key() == "prediction_type" && it.value().is_string()) {
      plan->prediction_type = it.value().get<std::string>();
      continue;
    }
    auto c = plan->components.find(it.key());
    if (c == plan->components.end())
      throw Error(file, "'" + it.key() + "' is not a component of " + plan->path);
    if (!it.value().is_object()) throw Error(file, "'" + it.key() + "' must be a mapping of config fields");
    c->second.config.merge_patch(it.value());
    c->second.config_source += " + " + file;
  }
}

template <typename Module>
Module finish(Module module, const WeightSource& weights, torch::Dtype dtype, LoadReport* report = nullptr) {
  // Every parameter is about to be loaded. The networks are built with fresh
  // float32 placeholders: a float32 load uses them (or the file's own pages,
  // model/weights.cpp) as they are; another dtype gets fresh storage in it.
  if (dtype != torch::kFloat) nn::reallocate_parameters(*module, dtype);
  module->to(dtype);                          // buffers
  LoadReport loaded = load_weights(*module, weights);
  if (report) *report = std::move(loaded);
  module->eval();
  return module;
}

// transformers' CLIP files carry this buffer, which the model recomputes.
bool expected_extra(const std::string& key) {
  return key.size() >= 12 && key.compare(key.size() - 12, 12, "position_ids") == 0;
}

}  // namespace

ModelFamily family_from_unet(const json& unet) {
  if (unet.value("addition_embed_type", json()).is_string()) return ModelFamily::SDXL;
  if (unet.value("use_linear_projection", false)) return ModelFamily::SD2;
  return ModelFamily::SD1;
}

std::shared_ptr<ClipTokenizer> load_tokenizer(const TokenizerPlan& plan, int64_t* pad_id) {
  auto tok = std::make_shared<ClipTokenizer>(ClipTokenizer::from_files(plan.vocab, plan.merges));
  auto id = tok->token_to_id(plan.pad_token);
  if (!id) throw Error(plan.vocab, "pad token '" + plan.pad_token + "' is not in the vocabulary");
  if (*id != tok->eos_id()) tok->add_special_token(plan.pad_token);
  *pad_id = *id;
  return tok;
}

TokenizerPlan embedded_tokenizer(const std::string& pad) {
  return {asset_path("tokenizer/vocab.json"), asset_path("tokenizer/merges.txt"), pad};
}

json read_yaml_or_json(const std::string& path) {
  const std::string text = read_text_file(path);
  try {
    return yaml_to_json(YAML::Load(text));
  } catch (const YAML::Exception& e) {
    throw Error(path, "line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
}

ModelPlan plan_model(const std::string& path, const LoadOptions& options) {
  ModelPlan plan;
  plan.path = path;
  if (!exists(path)) throw Error(path, "no such file or folder");
  if (is_dir(path)) {
    if (!exists(path + "/model_index.json"))
      throw Error(path, "folder has no model_index.json (not a diffusers model folder)");
    plan_diffusers(path, &plan);
  } else {
    if (path.size() >= 5 && (path.substr(path.size() - 5) == ".ckpt" || path.substr(path.size() - 3) == ".pt"))
      throw Error(path, "pickled checkpoints are not loaded (they can run code); convert to .safetensors");
    plan_single_file(path, &plan);
  }
  if (!options.config_override.empty())
    apply_override(read_yaml_or_json(options.config_override), options.config_override, &plan);
  if (!options.config_override_json.is_null()) apply_override(options.config_override_json, "config override", &plan);
  return plan;
}

nn::UNet2DCondition build_unet(const json& config, const std::string& where, const WeightSource& weights,
                               torch::Dtype dtype) {
  return finish(nn::UNet2DCondition(parse_unet_config(config, where)), weights, dtype);
}

nn::AutoencoderKL build_vae(const json& config, const std::string& where, const WeightSource& weights,
                            torch::Dtype dtype) {
  return finish(nn::AutoencoderKL(parse_vae_config(config, where)), weights, dtype);
}

nn::ClipTextModel build_text_encoder(const json& config, const std::string& where, const WeightSource& weights,
                                     torch::Dtype dtype) {
  return finish(nn::ClipTextModel(parse_clip_text_config(config, where)), weights, dtype);
}

LoadedModel load_model(const std::string& path, const LoadOptions& options) {
  return load_model(plan_model(path, options), options);
}

LoadedModel load_model(ModelPlan plan, const LoadOptions& options) {
  LoadedModel m;
  auto build = [&](const std::string& name, auto network) {
    const ComponentPlan& c = plan.components.at(name);
    auto weights = c.open_weights();
    LoadReport report;
    auto module = finish(built_from(c.config_source, [&] { return network(c.config, c.config_source); }), *weights,
                         options.dtype, &report);
    std::vector<std::string> unused;
    for (const auto& key : report.unused_keys)
      if (!expected_extra(key)) unused.push_back(key);
    if (!unused.empty())
      m.load_notes.push_back(name + ": " + std::to_string(unused.size()) + " tensor(s) of " + weights->where() +
                             " not used, e.g. '" + unused.front() + "'");
    if (!options.device.is_cpu()) module->to(options.device);  // one network at a time on the host
    return module;
  };
  m.unet = build("unet", [](const json& config, const std::string& where) {
    return nn::UNet2DCondition(parse_unet_config(config, where));
  });
  m.vae = build("vae", [](const json& config, const std::string& where) {
    return nn::AutoencoderKL(parse_vae_config(config, where));
  });
  const auto text_encoder = [](const json& config, const std::string& where) {
    return nn::ClipTextModel(parse_clip_text_config(config, where));
  };
  if (plan.components.count("text_encoder")) m.text_encoder = build("text_encoder", text_encoder);
  if (plan.components.count("text_encoder_2")) m.text_encoder_2 = build("text_encoder_2", text_encoder);
  if (plan.tokenizers.count("tokenizer")) m.tokenizer = load_tokenizer(plan.tokenizers["tokenizer"], &m.pad_id);
  if (plan.tokenizers.count("tokenizer_2"))
    m.tokenizer_2 = load_tokenizer(plan.tokenizers["tokenizer_2"], &m.pad_id_2);
  m.plan = std::move(plan);
  return m;
}

}  // namespace lumen
