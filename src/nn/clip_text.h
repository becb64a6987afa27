// CLIP text encoder (transformers' CLIPTextModel / CLIPTextModelWithProjection),
// parameter names as transformers'.
#pragma once
#include <torch/torch.h>

#include "model/configs.h"
#include "nn/layers.h"

namespace lumen::nn {

struct ClipTextOutput {
  torch::Tensor last_hidden_state;           // after final_layer_norm
  std::vector<torch::Tensor> hidden_states;  // [0] = embeddings, [L] = last layer (not normed)
  torch::Tensor pooled;                      // final-normed state at the EOS position
  torch::Tensor text_embeds;                 // pooled @ text_projection^T (with projection only)
  // hidden_states[-skip]: skip 1 = last layer, 2 = penultimate (A1111 "clip skip").
  const torch::Tensor& skipped(int64_t skip) const { return hidden_states.at(hidden_states.size() - skip); }
};

// One pre-LN transformer block, shared by the text and the image tower.
struct ClipEncoderLayerImpl : torch::nn::Module {
  ClipEncoderLayerImpl(int64_t hidden, int64_t intermediate, int64_t heads, const std::string& hidden_act,
                       double layer_norm_eps);
  // `mask`: additive attention mask (the text tower's causal one); undefined = none (image tower).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask = {});
  LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr}, fc1{nullptr}, fc2{nullptr};
  int64_t heads;
  bool quick_gelu;
};
TORCH_MODULE(ClipEncoderLayer);

struct ClipTextModelImpl : torch::nn::Module {
  explicit ClipTextModelImpl(const ClipTextConfig& config);
  // input_ids [B, S] (int64), S ≤ max_position_embeddings.
  ClipTextOutput forward(const torch::Tensor& input_ids);

  ClipTextConfig config;
  Embedding token_embedding{nullptr}, position_embedding{nullptr};
  std::vector<ClipEncoderLayer> layers;
  LayerNorm final_layer_norm{nullptr};
  Linear text_projection{nullptr};
};
TORCH_MODULE(ClipTextModel);

}  // namespace lumen::nn
