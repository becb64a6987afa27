// Random-weight models in the diffusers layout, full-size (SD1.5-shaped) or
// tiny, for memory and speed measurements and tests.
#include "model/random_model.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "error.h"
#include "io/atomic_file.h"
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
  json unet, vae, text_encoder;
};

Preset preset(const std::string& name) {
  Preset p;
  if (name == "sd15") {
    p.unet = {{"block_out_channels", {320, 640, 1280, 1280}},
              {"down_block_types", {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}},
              {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}},
              {"layers_per_block", 2}, {"attention_head_dim", 8}, {"cross_attention_dim", 768}, {"sample_size", 64}};
    p.vae = {{"block_out_channels", {128, 256, 512, 512}}, {"layers_per_block", 2}, {"sample_size", 512}};
    p.text_encoder = {{"hidden_size", 768}, {"intermediate_size", 3072}, {"num_hidden_layers", 12},
                      {"num_attention_heads", 12}, {"projection_dim", 768}};
  } else if (name == "tiny") {
    p.unet = {{"block_out_channels", {32, 64}}, {"down_block_types", {"CrossAttnDownBlock2D", "DownBlock2D"}},
              {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D"}}, {"layers_per_block", 1},
              {"attention_head_dim", 4}, {"cross_attention_dim", 32}, {"sample_size", 8}};
    p.vae = {{"block_out_channels", {32, 32}}, {"layers_per_block", 1}, {"sample_size", 16}};
    p.text_encoder = {{"hidden_size", 32}, {"intermediate_size", 37}, {"num_hidden_layers", 2},
                      {"num_attention_heads", 4}, {"projection_dim", 32}};
  } else {
    throw Error("make-random", "unknown preset '" + name + "' (sd15, tiny)");
  }
  p.unet["_class_name"] = "UNet2DConditionModel";
  p.vae["_class_name"] = "AutoencoderKL";
  p.vae["latent_channels"] = 4;
  p.vae["scaling_factor"] = 0.18215;
  p.vae["down_block_types"] = json::array();
  p.vae["up_block_types"] = json::array();
  for (size_t i = 0; i < p.vae["block_out_channels"].size(); ++i) {
    p.vae["down_block_types"].push_back("DownEncoderBlock2D");
    p.vae["up_block_types"].push_back("UpDecoderBlock2D");
  }
  p.text_encoder["architectures"] = {"CLIPTextModel"};
  p.text_encoder["hidden_act"] = "quick_gelu";
  p.text_encoder["vocab_size"] = 49408;
  p.text_encoder["max_position_embeddings"] = 77;
  p.text_encoder["eos_token_id"] = 2;
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
  {
    nn::ClipTextModel te(parse_clip_text_config(p.text_encoder, "preset"));
    nn::init_random(*te, seed + 2);
    save_component(out + "/text_encoder", p.text_encoder, *te, "model.safetensors");
  }
  make_dir(out + "/tokenizer");
  copy_file(asset_path("tokenizer/vocab.json"), out + "/tokenizer/vocab.json");
  copy_file(asset_path("tokenizer/merges.txt"), out + "/tokenizer/merges.txt");
  write_text_atomically(out + "/tokenizer/tokenizer_config.json", json{{"pad_token", "<|endoftext|>"}}.dump(2));
  make_dir(out + "/scheduler");
  write_text_atomically(out + "/scheduler/scheduler_config.json",
             json{{"_class_name", "PNDMScheduler"}, {"beta_start", 0.00085}, {"beta_end", 0.012},
                  {"beta_schedule", "scaled_linear"}, {"num_train_timesteps", 1000},
                  {"prediction_type", "epsilon"}, {"steps_offset", 1}, {"skip_prk_steps", true}}
                 .dump(2));
  write_text_atomically(out + "/model_index.json",
             json{{"_class_name", "StableDiffusionPipeline"}, {"unet", {"diffusers", "UNet2DConditionModel"}},
                  {"vae", {"diffusers", "AutoencoderKL"}}, {"text_encoder", {"transformers", "CLIPTextModel"}},
                  {"tokenizer", {"transformers", "CLIPTokenizer"}}, {"scheduler", {"diffusers", "PNDMScheduler"}}}
                 .dump(2));
}

}  // namespace lumen
