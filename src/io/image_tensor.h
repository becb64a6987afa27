// Generated images as 8-bit RGB: the one conversion the commands share.
#pragma once
#include <torch/torch.h>

#include "io/image_io.h"

namespace lumen {

// image [H,W,3] float in [0,1] (a pipeline's output) → 8-bit RGB, rounded.
RgbImage rgb_from_tensor(const torch::Tensor& image);

}  // namespace lumen
