#include "io/image_tensor.h"

namespace lumen {

RgbImage rgb_from_tensor(const torch::Tensor& image) {
  auto bytes = (image * 255).round().clamp(0, 255).to(torch::kUInt8).contiguous();
  RgbImage out;
  out.height = static_cast<int>(image.size(0));
  out.width = static_cast<int>(image.size(1));
  out.pixels.assign(bytes.data_ptr<uint8_t>(), bytes.data_ptr<uint8_t>() + bytes.numel());
  return out;
}

torch::Tensor image_tensor(const RgbImage& image) {
  auto t = torch::from_blob(const_cast<uint8_t*>(image.pixels.data()), {image.height, image.width, 3}, torch::kUInt8);
  return t.permute({2, 0, 1}).to(torch::kFloat).div(127.5).sub(1.0);
}

namespace {
// [1,3,H,W] in [0,1]
torch::Tensor unit_batch(const RgbImage& image) {
  auto t = torch::from_blob(const_cast<uint8_t*>(image.pixels.data()), {image.height, image.width, 3}, torch::kUInt8);
  return t.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat) / 255.0;
}
}  // namespace

torch::Tensor init_image_tensor(const RgbImage& image) { return unit_batch(image) * 2 - 1; }

torch::Tensor mask_tensor(const RgbImage& image) { return (unit_batch(image).mean(1, true) > 0.5).to(torch::kFloat); }

}  // namespace lumen
