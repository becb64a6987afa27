// Sample grids: a batch of images laid out in rows, as one PNG.
#pragma once
#include <torch/torch.h>

#include "io/image_io.h"
#include "io/image_tensor.h"

namespace lumen::train {

// image [3,H,W] in [-1,1] → 8-bit RGB (and back: lumen::image_tensor, io/image_tensor.h).
RgbImage to_rgb(const torch::Tensor& image);
// images [B,3,H,W] in [-1,1], `columns` per row, 2 px gaps of mid gray.
RgbImage make_grid(const torch::Tensor& images, int64_t columns);
// The PSNR (dB) of `a` against `b`, both in [-1,1].
double psnr(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace lumen::train
