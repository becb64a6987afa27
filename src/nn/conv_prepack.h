// Convolutions through weights kept in oneDNN's blocked layout. LibTorch 1.13
// re-lays out a dense weight on every call; at a UNet's deep levels (8x8 and
// 4x4 maps, 1280 channels) that costs as much as the convolution itself.
// Packing once and converting only the activations ran those layers 1.3-2.9x
// faster in bf16, with identical results (f32: see prepacked_conv2d). It costs
// a second copy of every convolution weight, so it is off unless asked for
// (set_conv_prepack in nn/cpu_paths.h).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <optional>

#include "nn/cpu_paths.h"

namespace lumen::nn {

// Whether autograd records a call on these tensors: the faster inference
// paths (packed convolutions, oneDNN linear layers, fused attention) keep out
// of its way.
template <typename... Tensors>
bool autograd_records(const Tensors&... inputs) {
  return torch::GradMode::is_enabled() && (inputs.requires_grad() || ...);
}

// A weight's packed copy and what it was packed from (rebuilt when the weight
// changes: new storage, an in-place update, another dtype).
struct PackedConvWeight {
  torch::Tensor packed;
  const void* from = nullptr;
  int64_t version = -1;
};

// conv2d(x, weight, bias) through `cache` when packing is on and fits (CPU,
// bf16, no autograd recording); std::nullopt otherwise.
std::optional<torch::Tensor> prepacked_conv2d(std::shared_ptr<PackedConvWeight>& cache, const torch::Tensor& x,
                                              const torch::Tensor& weight, const torch::Tensor& bias,
                                              int64_t stride, int64_t padding);

}  // namespace lumen::nn
