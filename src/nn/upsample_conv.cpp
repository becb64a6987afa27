#include "nn/upsample_conv.h"

#include "nn/cpu_paths.h"
#include "nn/op_profile.h"

namespace lumen::nn {

namespace {
SubpixelUpsample g_mode = SubpixelUpsample::LowPrecision;

// Along one axis, output 2r + parity reads upsampled rows 2r + parity - 1,
// 2r + parity and 2r + parity + 1, i.e. input rows r - 1 + parity and r + parity,
// the 3 taps folded onto them: parity 0 → (w0, w1 + w2), parity 1 → (w0 + w1, w2).
torch::Tensor fold_taps(const torch::Tensor& w, int64_t dim, int64_t parity) {
  auto t0 = w.select(dim, 0), t1 = w.select(dim, 1), t2 = w.select(dim, 2);
  return parity == 0 ? torch::stack({t0, t1 + t2}, dim) : torch::stack({t0 + t1, t2}, dim);
}
}  // namespace

void set_subpixel_upsample(SubpixelUpsample mode) { g_mode = mode; }
SubpixelUpsample subpixel_upsample_mode() { return g_mode; }

bool subpixel_upsample_applies(const torch::Tensor& x) {
  const bool low_precision = x.scalar_type() == torch::kBFloat16 || x.scalar_type() == torch::kHalf;
  return x.dim() == 4 && x.size(2) * x.size(3) >= kSubpixelMinInputPixels &&
         (g_mode == SubpixelUpsample::Always || (g_mode == SubpixelUpsample::LowPrecision && low_precision));
}

torch::Tensor subpixel_kernels(const torch::Tensor& weight) {
  TORCH_CHECK(weight.dim() == 4 && weight.size(2) == 3 && weight.size(3) == 3, "subpixel_kernels: a 3x3 weight");
  const auto w = weight.to(torch::kFloat);  // summed in float32, then rounded once
  std::vector<torch::Tensor> kernels;
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t b = 0; b < 2; ++b) kernels.push_back(fold_taps(fold_taps(w, 2, a), 3, b));
  return torch::stack(kernels).to(weight.scalar_type());
}

torch::Tensor upsample2x_conv3x3(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3), out_ch = weight.size(0);
  OpTimer timer(OpKind::Conv, 4 * conv2d_flops(n, weight.size(1), out_ch, 2, h, w));  // one layer, as the bench counts
  const auto kernels = subpixel_kernels(weight);
  const auto format = x.suggest_memory_format();
  const auto padded = torch::constant_pad_nd(x, {1, 1, 1, 1}, 0);
  auto out = torch::empty({n, out_ch, 2 * h, 2 * w}, x.options().memory_format(format));
  // out[:, :, 2r + a, 2c + b] is a strided view per parity, in either layout.
  auto parities = out.view({n, out_ch, h, 2, w, 2});
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t b = 0; b < 2; ++b) {
      // Over the whole padded map (one row and column more than needed) rather
      // than a copied window of it: the copy cost more than the extra pixels.
      const auto y = torch::conv2d(padded, kernels[2 * a + b], bias);
      parities.select(5, b).select(3, a).copy_(y.slice(2, a, a + h).slice(3, b, b + w));
    }
  return out;
}

}  // namespace lumen::nn
