// Random-weight models in the real architectures (SD1.5, SD2.1, SDXL, the
// embedded ShapesWorld model) or tiny, for measurements and tests.
#include "model/random_model.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "error.h"
#include "io/atomic_file.h"
#include "io/text_file.h"
#include "model/model_loader.h"
#include "io/safetensors_torch.h"
#include "model/configs.h"
#include "nn/clip_text.h"
#include "nn/init.h"
#include "nn/unet.h"
#include "nn/vae.h"
#include "runtime.h"

namespace lumen {
namespace {

using nlohmann::json;

struct Preset {
  json unet, vae, text_encoder, text_encoder_2;  // text_encoder_2 null unless SDXL
  std::string pad_token = "<|endoftext|>", pad_token_2 = "!";
  json scheduler;
};

json clip_text(int64_t hidden, int64_t intermediate, int64_t layers, int64_t heads, int64_t projection,
               const char* act, const char* architecture = "CLIPTextModel") {
  return {{"hidden_size", hidden}, {"intermediate_size", intermediate}, {"num_hidden_layers", layers},
          {"num_attention_heads", heads}, {"projection_dim", projection}, {"hidden_act", act},
          {"architectures", {architecture}}, {"vocab_size", 49408}, {"max_position_embeddings", 77},
          {"eos_token_id", 2}};
}

json sd_vae(int64_t sample_size, double scaling_factor) {
  return {{"block_out_channels", {128, 256, 512, 512}}, {"layers_per_block", 2}, {"sample_size", sample_size},
          {"scaling_factor", scaling_factor}};
}

json training_schedule(const char* prediction_type) {
  return {{"_class_name", "EulerDiscreteScheduler"}, {"beta_start", 0.00085}, {"beta_end", 0.012},
          {"beta_schedule", "scaled_linear"}, {"num_train_timesteps", 1000}, {"prediction_type", prediction_type},
          {"steps_offset", 1}, {"timestep_spacing", "leading"}};
}

json read_asset_json(const std::string& relative) { return read_json_file(asset_path(relative)); }

// Architectures as the public checkpoints configure them (diffusers' config.json).
Preset preset(const std::string& name) {
  Preset p;
  p.scheduler = training_schedule("epsilon");
  if (name == "sd15") {
    p.unet = {{"block_out_channels", {320, 640, 1280, 1280}},
              {"down_block_types", {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}},
              {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}},
              {"layers_per_block", 2}, {"attention_head_dim", 8}, {"cross_attention_dim", 768}, {"sample_size", 64}};
    p.vae = sd_vae(512, 0.18215);
    p.text_encoder = clip_text(768, 3072, 12, 12, 768, "quick_gelu");
  } else if (name == "sd21") {
    p.unet = {{"block_out_channels", {320, 640, 1280, 1280}},
              {"down_block_types", {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}},
              {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}},
              {"layers_per_block", 2}, {"attention_head_dim", {5, 10, 20, 20}}, {"cross_attention_dim", 1024},
              {"use_linear_projection", true}, {"sample_size", 96}};
    p.vae = sd_vae(768, 0.18215);
    p.text_encoder = clip_text(1024, 4096, 23, 16, 512, "gelu");
    p.pad_token = "!";
    p.scheduler = training_schedule("v_prediction");
  } else if (name == "sdxl") {
    p.unet = {{"block_out_channels", {320, 640, 1280}},
              {"down_block_types", {"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"}},
              {"up_block_types", {"CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"}},
              {"layers_per_block", 2}, {"attention_head_dim", {5, 10, 20}}, {"transformer_layers_per_block", {1, 2, 10}},
              {"cross_attention_dim", 2048}, {"use_linear_projection", true}, {"addition_embed_type", "text_time"},
              {"addition_time_embed_dim", 256}, {"projection_class_embeddings_input_dim", 2816}, {"sample_size", 128}};
    p.vae = sd_vae(1024, 0.13025);
    p.text_encoder = clip_text(768, 3072, 12, 12, 768, "quick_gelu");
    p.text_encoder_2 = clip_text(1280, 5120, 32, 20, 1280, "gelu", "CLIPTextModelWithProjection");
    p.scheduler["timestep_spacing"] = "leading";
  } else if (name == "shapes") {  // the embedded default model's architecture
    p.unet = read_asset_json("default-model/unet/config.json");
    p.vae = read_asset_json("default-model/vae/config.json");
    p.text_encoder = read_asset_json("default-model/text_encoder/config.json");
    p.scheduler = read_asset_json("default-model/scheduler/scheduler_config.json");
    return p;
  } else if (name == "tiny") {
    p.unet = {{"block_out_channels", {32, 64}}, {"down_block_types", {"CrossAttnDownBlock2D", "DownBlock2D"}},
              {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D"}}, {"layers_per_block", 1},
              {"attention_head_dim", 4}, {"cross_attention_dim", 32}, {"sample_size", 8}};
    p.vae = {{"block_out_channels", {32, 32}}, {"layers_per_block", 1}, {"sample_size", 16}, {"scaling_factor", 0.18215}};
    p.text_encoder = clip_text(32, 37, 2, 4, 32, "quick_gelu");
  } else {
    throw Error("preset '" + name + "'", "unknown (sd15, sd21, sdxl, shapes, tiny)");
  }
  p.unet["_class_name"] = "UNet2DConditionModel";
  p.vae["_class_name"] = "AutoencoderKL";
  p.vae["latent_channels"] = 4;
  p.vae["down_block_types"] = json::array();
  p.vae["up_block_types"] = json::array();
  for (size_t i = 0; i < p.vae["block_out_channels"].size(); ++i) {
    p.vae["down_block_types"].push_back("DownEncoderBlock2D");
    p.vae["up_block_types"].push_back("UpDecoderBlock2D");
  }
  return p;
}

void copy_file(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) throw Error(from, "cannot open");
  write_file_atomically(to, [&](std::ostream& out) { out << in.rdbuf(); });
}

void make_dir(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) throw Error(path, "cannot create folder: " + ec.message());
}

// Each component is built, randomised, saved and freed before the next one.
void save_component(const std::string& dir, const json& config, torch::nn::Module& module, const char* file) {
  make_dir(dir);
  std::map<std::string, torch::Tensor> tensors;
  for (auto& item : module.named_parameters(true)) tensors[item.key()] = item.value();
  save_safetensors(dir + "/" + file, tensors);
  write_text_atomically(dir + "/config.json", config.dump(2));
}

}  // namespace

json random_preset_configs(const std::string& name) {
  const Preset p = preset(name);
  json j{{"unet", p.unet}, {"vae", p.vae}, {"text_encoder", p.text_encoder}, {"scheduler", p.scheduler}};
  if (!p.text_encoder_2.is_null()) j["text_encoder_2"] = p.text_encoder_2;
  return j;
}

void write_random_model(const std::string& out, const std::string& preset_name, uint64_t seed) {
  Preset p = preset(preset_name);
  torch::NoGradGuard no_grad;
  make_dir(out);
  {
    nn::UNet2DCondition unet(parse_unet_config(p.unet, "preset"));
    nn::init_random(*unet, seed);
    save_component(out + "/unet", p.unet, *unet, "diffusion_pytorch_model.safetensors");
  }
  {
    nn::AutoencoderKL vae(parse_vae_config(p.vae, "preset"));
    nn::init_random(*vae, seed + 1);
    save_component(out + "/vae", p.vae, *vae, "diffusion_pytorch_model.safetensors");
  }
  auto write_text_encoder = [&](const json& config, const std::string& name, uint64_t component_seed) {
    nn::ClipTextModel te(parse_clip_text_config(config, "preset"));
    nn::init_random(*te, component_seed);
    save_component(out + "/" + name, config, *te, "model.safetensors");
  };
  auto write_tokenizer = [&](const std::string& name, const std::string& pad) {
    make_dir(out + "/" + name);
    copy_file(asset_path("tokenizer/vocab.json"), out + "/" + name + "/vocab.json");
    copy_file(asset_path("tokenizer/merges.txt"), out + "/" + name + "/merges.txt");
    write_text_atomically(out + "/" + name + "/tokenizer_config.json", json{{"pad_token", pad}}.dump(2));
  };
  const bool sdxl = !p.text_encoder_2.is_null();
  write_text_encoder(p.text_encoder, "text_encoder", seed + 2);
  write_tokenizer("tokenizer", p.pad_token);
  json index{{"_class_name", sdxl ? "StableDiffusionXLPipeline" : "StableDiffusionPipeline"},
             {"unet", {"diffusers", "UNet2DConditionModel"}}, {"vae", {"diffusers", "AutoencoderKL"}},
             {"text_encoder", {"transformers", "CLIPTextModel"}}, {"tokenizer", {"transformers", "CLIPTokenizer"}},
             {"scheduler", {"diffusers", p.scheduler.value("_class_name", "EulerDiscreteScheduler")}}};
  if (sdxl) {
    write_text_encoder(p.text_encoder_2, "text_encoder_2", seed + 3);
    write_tokenizer("tokenizer_2", p.pad_token_2);
    index["text_encoder_2"] = {"transformers", "CLIPTextModelWithProjection"};
    index["tokenizer_2"] = {"transformers", "CLIPTokenizer"};
  }
  make_dir(out + "/scheduler");
  write_text_atomically(out + "/scheduler/scheduler_config.json", p.scheduler.dump(2));
  write_text_atomically(out + "/model_index.json", index.dump(2));
}

std::shared_ptr<LoadedModel> make_random_model(const std::string& preset_name, uint64_t seed, bool bf16) {
  const Preset p = preset(preset_name);
  const torch::Dtype dtype = bf16 ? torch::kBFloat16 : torch::kFloat;
  torch::NoGradGuard no_grad;
  // Storage in `dtype` before filling, so a large model never holds a float32 copy.
  auto randomised = [&](auto module, uint64_t component_seed) {
    nn::reallocate_parameters(*module, dtype, /*huge_pages=*/true);  // filled whole next
    module->to(dtype);  // buffers
    nn::init_random(*module, component_seed);
    module->eval();
    return module;
  };
  auto m = std::make_shared<LoadedModel>();
  m->plan.path = "random " + preset_name;
  m->plan.format = "random";
  m->plan.family = family_from_unet(p.unet);
  m->plan.scheduler_config = p.scheduler;
  m->unet = randomised(nn::UNet2DCondition(parse_unet_config(p.unet, "preset")), seed);
  m->vae = randomised(nn::AutoencoderKL(parse_vae_config(p.vae, "preset")), seed + 1);
  m->text_encoder = randomised(nn::ClipTextModel(parse_clip_text_config(p.text_encoder, "preset")), seed + 2);
  m->tokenizer = load_tokenizer(embedded_tokenizer(p.pad_token), &m->pad_id);
  if (!p.text_encoder_2.is_null()) {
    m->text_encoder_2 = randomised(nn::ClipTextModel(parse_clip_text_config(p.text_encoder_2, "preset")), seed + 3);
    m->tokenizer_2 = load_tokenizer(embedded_tokenizer(p.pad_token_2), &m->pad_id_2);
  }
  return m;
}

}  // namespace lumen
