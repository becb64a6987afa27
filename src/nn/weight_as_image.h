// Products whose weight is the larger operand, run with the weight as
// oneDNN's image. LibTorch 1.13 re-lays out a convolution's kernel on every
// call; when the activations are a few rows (a UNet's deep levels: 8x8 and 4x4
// maps, the 77 text tokens) that re-layout of a weight of up to 59 MB costs as
// much as the product. Convolving the weight ([1,K,O,1] channels-last, a view
// of [O,K]) by the rows of the activations as N 1x1 kernels gives the product
// transposed, and oneDNN then re-lays out only the small operand. Measured on
// 2 AVX-512 cores: f32 linear layers of 32-154 rows 300-360 GFLOP/s where
// OpenBLAS gave 140-180; 3x3 convolutions at 4x4 maps (CFG batch 2) 2x faster
// in f32 and 1.5x in bf16, at 8x8 1.1-1.2x. No second copy of any weight.
#pragma once
#include <torch/torch.h>

#include <optional>

namespace lumen::nn {

// Largest output (rows, or batch x pixels) a convolution goes this way at: at
// 16x16 maps (512 pixels at batch 2) oneDNN's own layout was faster again.
constexpr int64_t kWeightAsImageMaxConvPixels = 128;

// [N,K] x [O,K]ᵀ + bias as [N,O] (row-major), weight as the image.
torch::Tensor rows_times_weight(const torch::Tensor& rows, const torch::Tensor& weight, const torch::Tensor& bias);

// conv2d(x, weight, bias) as im2col and rows_times_weight, when it is on
// (nn/cpu_paths.h), autograd does not record, the tensors are CPU f32/bf16 and
// the output has at most kWeightAsImageMaxConvPixels pixels; std::nullopt
// otherwise. The result is NCHW-contiguous.
std::optional<torch::Tensor> weight_as_image_conv2d(const torch::Tensor& x, const torch::Tensor& weight,
                                                    const torch::Tensor& bias, int64_t stride, int64_t padding);

}  // namespace lumen::nn
