// Linear layers through oneDNN. LibTorch 1.13 sends f32 linear layers to
// OpenBLAS (~190 GFLOP/s on 2 AVX-512 cores) while oneDNN's convolutions reach
// ~400: an [N,C] x [O,C]ᵀ product is a 1x1 convolution of a channels-last
// [1,C,N,1] image, a view of the same memory, so inference runs it as one
// (1.7-2x faster in f32, ~1.2x in bf16, measured). Results agree to float
// rounding. Off while autograd records (training keeps ATen's linear).
#pragma once

namespace lumen::nn {

// On by default; `bench --no-onednn-linear` turns it off to measure it.
void set_onednn_linear(bool enabled);
bool onednn_linear_enabled();

}  // namespace lumen::nn
