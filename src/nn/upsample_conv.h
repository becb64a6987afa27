// A 3×3 convolution of a 2× nearest-neighbour upsampling, computed from the
// small map. Each output pixel of parity (a, b) sees only 2×2 distinct input
// pixels (the 3×3 taps fall on pairs of repeated ones), so the same result is
// four 2×2 convolutions of the padded input with summed kernels, interleaved:
// 16 instead of 36 multiply-adds per output channel and input pixel, and no
// 4×-sized upsampled copy. The sums change float rounding only. Inference
// only: the upsamplers of the UNet and the VAE decoder use it while autograd
// does not record and no adapter delta is attached.
#pragma once
#include <torch/torch.h>

namespace lumen::nn {

// Input maps smaller than this many pixels keep the plain path: the kernels
// are folded on every call (nothing cached, so no second copy of the weights
// and nothing to keep in step with them), which at a UNet's 8×8 and 16×16
// levels costs about what the saved multiply-adds do.
constexpr int64_t kSubpixelMinInputPixels = 32 * 32;

// Whether an upsampler doubling x takes this path: x large enough and the
// mode (nn/cpu_paths.h) asking for it at x's dtype.
bool subpixel_upsample_applies(const torch::Tensor& x);

// conv2d(upsample_nearest2d(x, 2× size), weight, bias, stride 1, padding 1)
// for a 3×3 weight.
torch::Tensor upsample2x_conv3x3(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);

// The four 2×2 kernels, [4, out, in, 2, 2] in parity order (0,0), (0,1),
// (1,0), (1,1), in the weight's dtype.
torch::Tensor subpixel_kernels(const torch::Tensor& weight);

}  // namespace lumen::nn
