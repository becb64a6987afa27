// 8-bit RGB images and tensors, both ways: the conversions the commands,
// the C API and training share.
#pragma once
#include <torch/torch.h>

#include "io/image_io.h"

namespace lumen {

// image [H,W,3] float in [0,1] (a pipeline's output) → 8-bit RGB, rounded.
RgbImage rgb_from_tensor(const torch::Tensor& image);

// 8-bit RGB → [3,H,W] float in [-1,1] (a training image, a VAE input).
torch::Tensor image_tensor(const RgbImage& image);

// img2img's inputs: an image → [1,3,H,W] in [-1,1]; a mask → [1,1,H,W], 1
// where it is light (channel mean > 0.5: white = repaint).
torch::Tensor init_image_tensor(const RgbImage& image);
torch::Tensor mask_tensor(const RgbImage& image);

}  // namespace lumen
