// Loading a Stable-Diffusion-family model from a diffusers folder or a
// single-file checkpoint (original layout). Planning reads only headers and
// configs (what `lumen info` shows); loading builds the networks from a plan.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "convert/arch_detect.h"
#include "model/weights.h"
#include "nn/clip_text.h"
#include "nn/unet.h"
#include "nn/vae.h"
#include "tokenizer/clip_tokenizer.h"

namespace lumen {

struct LoadOptions {
  // YAML or JSON: {family: sd1|sd2|sdxl, unet: {...}, vae: {...}, text_encoder: {...},
  // text_encoder_2: {...}}; its fields replace the detected or stored ones.
  std::string config_override;
  nlohmann::json config_override_json;  // the same, in memory; applied after the file
  torch::Dtype dtype = torch::kFloat;
  torch::Device device = torch::kCPU;  // where the networks run (model/device.h)
};

struct ComponentPlan {
  nlohmann::json config;
  std::string config_source;  // file the config came from, or "detected from <file>"
  std::function<std::unique_ptr<WeightSource>()> open_weights;
  int64_t parameters = 0;
  std::map<std::string, int64_t> dtype_tensors;  // dtype name -> tensor count
};

struct TokenizerPlan {
  std::string vocab, merges;
  std::string pad_token;  // "<|endoftext|>" (SD1.x, SDXL) or "!" (SD2.x, SDXL's second)
};

struct ModelPlan {
  std::string path;
  std::string format;  // "diffusers" or "single-file"
  ModelFamily family = ModelFamily::Unknown;
  std::map<std::string, ComponentPlan> components;  // unet, vae, text_encoder, text_encoder_2
  std::map<std::string, TokenizerPlan> tokenizers;  // tokenizer, tokenizer_2
  nlohmann::json scheduler_config;                  // null when the files carry none
  std::string prediction_type;                      // "" when the files do not say
  bool zero_terminal_snr = false;                   // `ztsnr` marker tensor
  std::vector<std::string> notes;                   // guesses and things not understood
};

ModelPlan plan_model(const std::string& path, const LoadOptions& options = {});

struct LoadedModel {
  ModelPlan plan;
  nn::UNet2DCondition unet{nullptr};
  nn::AutoencoderKL vae{nullptr};
  nn::ClipTextModel text_encoder{nullptr}, text_encoder_2{nullptr};
  std::shared_ptr<ClipTokenizer> tokenizer, tokenizer_2;
  int64_t pad_id = 49407, pad_id_2 = 0;
  // Found while loading: tensors of a component's files the network has no
  // place for ("unet: 3 tensor(s) of FILE not used, e.g. 'x'"). Loading goes
  // on, as diffusers does; the CLI shows them.
  std::vector<std::string> load_notes;
};

LoadedModel load_model(const std::string& path, const LoadOptions& options = {});
LoadedModel load_model(ModelPlan plan, const LoadOptions& options = {});

// Builds one network from a config dict and loads its weights (used by the loader and tests).
nn::UNet2DCondition build_unet(const nlohmann::json& config, const std::string& where, const WeightSource& weights,
                               torch::Dtype dtype = torch::kFloat);
nn::AutoencoderKL build_vae(const nlohmann::json& config, const std::string& where, const WeightSource& weights,
                            torch::Dtype dtype = torch::kFloat);
nn::ClipTextModel build_text_encoder(const nlohmann::json& config, const std::string& where,
                                     const WeightSource& weights, torch::Dtype dtype = torch::kFloat);

// Loads a tokenizer and returns its pad id. transformers matches a pad token
// other than EOS (SD2's "!") as a special token in the raw text; so do we.
std::shared_ptr<ClipTokenizer> load_tokenizer(const TokenizerPlan& plan, int64_t* pad_id);

// The CLIP tokenizer files in assets/, with the given pad token.
TokenizerPlan embedded_tokenizer(const std::string& pad);

// SD1, SD2 or SDXL, from a diffusers UNet config (text-time embedding: SDXL;
// linear projections: SD2).
ModelFamily family_from_unet(const nlohmann::json& unet_config);

// Reads a YAML or JSON file into JSON (YAML is a superset).
nlohmann::json read_yaml_or_json(const std::string& path);

}  // namespace lumen
