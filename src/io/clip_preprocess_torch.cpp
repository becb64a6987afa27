#include "io/clip_preprocess_torch.h"

#include "error.h"

namespace lumen {

torch::Tensor clip_pixel_values_differentiable(const torch::Tensor& images, const ClipImageProcessorConfig& c) {
  if (images.dim() != 4 || images.size(1) != 3 || images.size(2) <= 0 || images.size(3) <= 0)
    throw Error("CLIP preprocessing", "images must be a [batch, 3, height, width] tensor");
  auto x = (images.to(torch::kFloat) + 1) * 0.5;  // [-1,1] -> [0,1], the 8-bit path's u8/255
  if (c.do_resize) {
    auto [h, w] = clip_resize_size(static_cast<int>(x.size(2)), static_cast<int>(x.size(3)), c.shortest_edge);
    if (h != x.size(2) || w != x.size(3)) {
      namespace F = torch::nn::functional;
      x = F::interpolate(x, F::InterpolateFuncOptions()
                                .size(std::vector<int64_t>{h, w})
                                .mode(torch::kBicubic)
                                .align_corners(false)
                                .antialias(true));
      x = x.clamp(0, 1);
    }
  }
  if (c.do_center_crop) {
    const int64_t h = x.size(2), w = x.size(3);
    if (c.crop_height > h || c.crop_width > w)
      throw Error("CLIP preprocessing", "crop size is larger than the resized image");
    const int64_t top = (h - c.crop_height) / 2, left = (w - c.crop_width) / 2;
    x = x.slice(2, top, top + c.crop_height).slice(3, left, left + c.crop_width);
  }
  if (c.do_normalize) {
    auto mean = torch::tensor({c.image_mean[0], c.image_mean[1], c.image_mean[2]}, torch::kFloat).view({1, 3, 1, 1});
    auto std = torch::tensor({c.image_std[0], c.image_std[1], c.image_std[2]}, torch::kFloat).view({1, 3, 1, 1});
    x = (x - mean.to(x.device())) / std.to(x.device());
  }
  return x;
}

}  // namespace lumen
