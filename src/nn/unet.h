// UNet2DConditionModel (SD 1.x, SD 2.x, SDXL), parameter names as diffusers'.
#pragma once
#include <torch/torch.h>

#include "model/configs.h"
#include "nn/blocks.h"

namespace lumen::nn {

// SDXL's extra conditioning: pooled text embedding and the six size/crop ids.
struct AddedConditions {
  torch::Tensor text_embeds;  // [B, pooled_dim]
  torch::Tensor time_ids;     // [B, 6]
};

struct UNetLevelImpl : torch::nn::Module {
  torch::nn::ModuleList resnets{nullptr}, attentions{nullptr};  // attentions null for plain blocks
  torch::nn::ModuleList samplers{nullptr};  // "downsamplers" / "upsamplers", when present
};
TORCH_MODULE(UNetLevel);

struct UNet2DConditionImpl : torch::nn::Module {
  explicit UNet2DConditionImpl(const UNetConfig& config);
  // sample [B,C,H,W]; timesteps: one value or one per batch item; context [B,S,D].
  torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timesteps,
                        const torch::Tensor& context, const AddedConditions& added = {});
  // Training: recompute each ResNet(+attention) layer and the mid block in
  // backward instead of keeping their activations (nn/checkpoint.h). Takes
  // effect only when grad mode is on; inference is unchanged.
  void set_gradient_checkpointing(bool on) { gradient_checkpointing_ = on; }

  UNetConfig config;
  Conv2d conv_in{nullptr}, conv_out{nullptr};
  Linear time_linear_1{nullptr}, time_linear_2{nullptr}, add_linear_1{nullptr}, add_linear_2{nullptr};
  torch::nn::ModuleList down_blocks, up_blocks;
  UNetLevel mid_block{nullptr};
  GroupNorm conv_norm_out{nullptr};

 private:
  torch::Tensor embed_time(const torch::Tensor& sample, const torch::Tensor& timesteps,
                           const AddedConditions& added);
  bool gradient_checkpointing_ = false;
};
TORCH_MODULE(UNet2DCondition);

}  // namespace lumen::nn
