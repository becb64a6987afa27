#include "image_grid.h"

#include <cmath>

namespace lumen::train {

RgbImage to_rgb(const torch::Tensor& image) {
  auto bytes = image.detach().to(torch::kFloat).add(1).mul(127.5).round().clamp(0, 255).to(torch::kUInt8);
  bytes = bytes.permute({1, 2, 0}).contiguous();
  RgbImage out;
  out.height = static_cast<int>(bytes.size(0));
  out.width = static_cast<int>(bytes.size(1));
  out.pixels.assign(bytes.data_ptr<uint8_t>(), bytes.data_ptr<uint8_t>() + bytes.numel());
  return out;
}

RgbImage make_grid(const torch::Tensor& images, int64_t columns) {
  const int64_t n = images.size(0), h = images.size(2), w = images.size(3), gap = 2;
  const int64_t rows = (n + columns - 1) / columns;
  auto grid = torch::zeros({3, rows * (h + gap) + gap, columns * (w + gap) + gap});
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = gap + (i / columns) * (h + gap), x = gap + (i % columns) * (w + gap);
    grid.index_put_({torch::indexing::Slice(), torch::indexing::Slice(y, y + h), torch::indexing::Slice(x, x + w)},
                    images[i].detach().to(torch::kFloat));
  }
  return to_rgb(grid);
}

double psnr(const torch::Tensor& a, const torch::Tensor& b) {
  const double mse = (a.detach() - b.detach()).div(2).pow(2).mean().item<double>();  // on a [0,1] scale
  return mse <= 0 ? 99.0 : 10.0 * std::log10(1.0 / mse);
}

}  // namespace lumen::train
