// CLIP image tower (transformers' CLIPVisionModel + visual_projection) and the
// two-tower CLIPModel used by reward models; parameter names as transformers'.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "model/configs.h"
#include "nn/clip_text.h"
#include "nn/layers.h"

namespace lumen::nn {

struct ClipVisionOutput {
  torch::Tensor embeddings;                  // [B,T,H]: CLS + patches, + positions
  std::vector<torch::Tensor> hidden_states;  // [0] = pre_layrnorm(embeddings), [i] = after layer i
  torch::Tensor last_hidden_state;           // hidden_states[L], no post-LN
  torch::Tensor pooled;                      // post_layernorm(last[:, 0])
  torch::Tensor image_embeds;                // visual_projection(pooled), not normalised
};

// Keys vision_model.* and visual_projection.weight (CLIPVisionModelWithProjection).
struct ClipVisionModelImpl : torch::nn::Module {
  explicit ClipVisionModelImpl(const ClipVisionConfig& config);
  // pixel_values [B,C,S,S], already normalised, S = image_size.
  ClipVisionOutput forward(const torch::Tensor& pixel_values);

  ClipVisionConfig config;
  torch::Tensor class_embedding;
  Conv2d patch_embedding{nullptr};
  Embedding position_embedding{nullptr};
  LayerNorm pre_layrnorm{nullptr}, post_layernorm{nullptr};  // "pre_layrnorm": transformers' spelling
  std::vector<ClipEncoderLayer> layers;
  Linear visual_projection{nullptr};
};
TORCH_MODULE(ClipVisionModel);

struct ClipModelOutput {
  ClipVisionOutput vision;
  ClipTextOutput text;
  torch::Tensor image_embeds_normalized, text_embeds_normalized;  // x / ||x||2
  torch::Tensor logits_per_image;                                 // [B_img, N_text]
};

// transformers' CLIPModel. The towers are registered as "vision" and "text"
// for parameters()/to()/eval(); their own keys match the file (see load_clip_model).
struct ClipModelImpl : torch::nn::Module {
  explicit ClipModelImpl(const ClipModelConfig& config);
  ClipModelOutput forward(const torch::Tensor& input_ids, const torch::Tensor& pixel_values);
  // exp(logit_scale) * img_n @ txt_n^T.
  torch::Tensor logits(const torch::Tensor& image_embeds, const torch::Tensor& text_embeds) const;

  ClipModelConfig config;
  ClipVisionModel vision{nullptr};
  ClipTextModel text{nullptr};
  torch::Tensor logit_scale;
};
TORCH_MODULE(ClipModel);

// x / ||x||2 over the last dim; a zero row stays zero (numpy `normalized()`).
torch::Tensor l2_normalize(const torch::Tensor& x);

// A transformers CLIPModel folder (config.json + model.safetensors). A missing
// or mis-shaped tensor is a lumen::Error naming the file and key.
ClipModel load_clip_model(const std::string& folder, torch::Dtype dtype = torch::kFloat);

}  // namespace lumen::nn
