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

}  // namespace lumen
