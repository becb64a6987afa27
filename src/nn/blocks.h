// The building blocks shared by the UNet and the VAE, named as diffusers names
// them so that state-dict keys match its checkpoints.
#pragma once
#include <torch/torch.h>

#include "nn/layers.h"

namespace lumen::nn {

// GroupNorm → SiLU → conv, twice, with an optional time embedding added in between.
struct ResnetBlock2DImpl : torch::nn::Module {
  ResnetBlock2DImpl(int64_t in, int64_t out, int64_t temb_channels, int64_t groups, double eps,
                    double output_scale_factor = 1.0);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb = {});
  GroupNorm norm1{nullptr}, norm2{nullptr};
  Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
  Linear time_emb_proj{nullptr};
  double output_scale_factor;
};
TORCH_MODULE(ResnetBlock2D);

struct Downsample2DImpl : torch::nn::Module {
  Downsample2DImpl(int64_t channels, int64_t padding);
  torch::Tensor forward(const torch::Tensor& x);
  Conv2d conv{nullptr};
  int64_t padding;
};
TORCH_MODULE(Downsample2D);

// Nearest-neighbour upsampling to `size` (2× when undefined), then a 3×3 conv;
// at inference an exact 2× of a large enough map goes through nn/upsample_conv.h.
struct Upsample2DImpl : torch::nn::Module {
  explicit Upsample2DImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x, c10::optional<std::vector<int64_t>> size = c10::nullopt);
  Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample2D);

// diffusers' Attention as used in transformer blocks (no bias on q/k/v).
struct AttentionImpl : torch::nn::Module {
  AttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads, int64_t head_dim, bool upcast,
                bool qkv_bias = false);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context = {});
  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  torch::nn::ModuleList to_out;
  int64_t heads;
  bool upcast;
};
TORCH_MODULE(Attention);

// LayerNorm'd self-attention, cross-attention and a GEGLU feed-forward.
struct BasicTransformerBlockImpl : torch::nn::Module {
  BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim, int64_t context_dim,
                            bool only_cross_attention, bool upcast);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);
  LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  Attention attn1{nullptr}, attn2{nullptr};
  Linear ff_in{nullptr}, ff_out{nullptr};  // ff.net.0.proj, ff.net.2
  bool only_cross_attention;
};
TORCH_MODULE(BasicTransformerBlock);

struct Transformer2DImpl : torch::nn::Module {
  Transformer2DImpl(int64_t channels, int64_t heads, int64_t layers, int64_t context_dim, int64_t groups,
                    bool linear_projection, bool only_cross_attention, bool upcast);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);
  GroupNorm norm{nullptr};
  torch::nn::AnyModule proj_in, proj_out;  // Linear or 1×1 Conv2d
  torch::nn::ModuleList transformer_blocks;
  bool linear_projection;
};
TORCH_MODULE(Transformer2D);

// The VAE's single-head spatial self-attention with its own GroupNorm and residual.
struct SpatialSelfAttentionImpl : torch::nn::Module {
  SpatialSelfAttentionImpl(int64_t channels, int64_t groups, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  GroupNorm group_norm{nullptr};
  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  torch::nn::ModuleList to_out;
};
TORCH_MODULE(SpatialSelfAttention);

}  // namespace lumen::nn
