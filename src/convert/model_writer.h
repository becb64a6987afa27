// Writing a loaded model back out: one single-file (LDM / SGM layout)
// safetensors checkpoint, or a diffusers folder (component folders with
// configs, model_index.json, tokenizers, scheduler config). Whatever was
// merged into the networks (LoRA, ResAdapter) is written with them.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "model/model_loader.h"

namespace lumen {

struct WriteOptions {
  torch::Dtype dtype = torch::kFloat;            // floating-point tensors are written in this dtype
  std::map<std::string, std::string> metadata;  // extra safetensors metadata (single file, and each component file)
  std::string recommended_settings;  // the source's lumen_generation JSON, carried over ("" if none)
};

// name -> network: unet, vae, text_encoder, text_encoder_2 (those present).
std::map<std::string, torch::nn::Module*> model_networks(const LoadedModel& model);

// The tensors of the single file (LDM names), in `dtype`. Adds the A1111
// markers `v_pred` / `ztsnr` when the plan says v-prediction / zero terminal SNR.
std::map<std::string, torch::Tensor> single_file_tensors(const LoadedModel& model, torch::Dtype dtype);

// One safetensors file, written atomically.
void write_single_file(const LoadedModel& model, const std::string& path, const WriteOptions& options = {});

// A diffusers folder (created if needed; each file is written atomically).
void write_diffusers_folder(const LoadedModel& model, const std::string& folder, const WriteOptions& options = {});

// "f32" | "f16" | "bf16" -> dtype; throws lumen::Error otherwise.
torch::Dtype parse_write_dtype(const std::string& name);

}  // namespace lumen
