// The differentiable counterpart of clip_preprocess, for reward losses on
// decoded images: same geometry, float throughout, gradients flow.
#pragma once
#include <torch/torch.h>

#include "io/clip_preprocess.h"

namespace lumen {

// images [B,3,H,W] in [-1,1] -> pixel_values [B,3,crop_h,crop_w], normalised.
// Resize (short side -> shortest_edge, floor for the long side) with torch's
// antialiased bicubic (torch::_upsample_bicubic2d_aa via interpolate, a = -0.5,
// kernel widened when downsampling: Pillow's filter, without its uint8
// rounding between the passes), clamp to [0,1] as Pillow's 8-bit output is,
// floor centre crop, normalise. Not bit-exact with the uint8 path (see tests).
torch::Tensor clip_pixel_values_differentiable(const torch::Tensor& images, const ClipImageProcessorConfig& c);

}  // namespace lumen
