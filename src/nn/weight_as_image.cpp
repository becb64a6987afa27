#include "nn/weight_as_image.h"

#include <atomic>

#include "nn/conv_prepack.h"
#include "nn/cpu_paths.h"

namespace lumen::nn {

namespace {
std::atomic<bool> g_weight_as_image{true};

// yᵀ [O,N] = weight [O,K] x rowsᵀ, a view of the convolution's output.
torch::Tensor weight_times_rows_transposed(const torch::Tensor& rows, const torch::Tensor& weight) {
  const int64_t n = rows.size(0), k = rows.size(1), o = weight.size(0);
  auto image = weight.contiguous().view({1, o, 1, k}).permute({0, 3, 1, 2});  // [1,K,O,1], channels-last
  return torch::conv2d(image, rows.contiguous().view({n, k, 1, 1}))           // [1,N,O,1], channels-last
      .permute({0, 2, 3, 1})
      .reshape({o, n});
}

// out = src + bias (broadcast), or src, written in out's own layout.
void write_with_bias(torch::Tensor& out, const torch::Tensor& src, const torch::Tensor& bias) {
  if (bias.defined())
    torch::add_out(out, src, bias);
  else
    out.copy_(src);
}
}  // namespace

void set_weight_as_image(bool enabled) { g_weight_as_image = enabled; }
bool weight_as_image_enabled() { return g_weight_as_image; }

torch::Tensor rows_times_weight(const torch::Tensor& rows, const torch::Tensor& weight, const torch::Tensor& bias) {
  auto y_t = weight_times_rows_transposed(rows, weight);
  // In y_t's type, not rows': under autocast the convolution ran (and answers) in bf16.
  auto y = torch::empty({rows.size(0), weight.size(0)}, y_t.options());
  write_with_bias(y, y_t.t(), bias);
  return y;
}

std::optional<torch::Tensor> weight_as_image_conv2d(const torch::Tensor& x, const torch::Tensor& weight,
                                                    const torch::Tensor& bias, int64_t stride, int64_t padding) {
  const auto type = x.scalar_type();
  if (!g_weight_as_image || !x.is_cpu() || x.dim() != 4 || type != weight.scalar_type() ||
      (type != torch::kFloat && type != torch::kBFloat16) || autograd_records(x, weight))
    return std::nullopt;
  const int64_t batch = x.size(0), out = weight.size(0), kh = weight.size(2), kw = weight.size(3);
  const int64_t height = (x.size(2) + 2 * padding - kh) / stride + 1, width = (x.size(3) + 2 * padding - kw) / stride + 1;
  const int64_t pixels = height * width;
  if (height <= 0 || width <= 0 || batch * pixels > kWeightAsImageMaxConvPixels) return std::nullopt;
  // im2col's columns are ordered (channel, ky, kx), as an [O,C,kh,kw] weight's rows are.
  auto cols = torch::im2col(x.contiguous(), {kh, kw}, {1, 1}, {padding, padding}, {stride, stride});  // [B,CK,L]
  auto rows = cols.transpose(1, 2).reshape({batch * pixels, cols.size(1)});
  auto y_t = weight_times_rows_transposed(rows, weight.view({out, -1}));  // [O, B*L]
  auto y = torch::empty({batch, out, height, width}, y_t.options());
  auto y_view = y.view({batch, out, pixels});
  write_with_bias(y_view, y_t.view({out, batch, pixels}).permute({1, 0, 2}),
                  bias.defined() ? bias.view({1, out, 1}) : bias);
  return y;
}

}  // namespace lumen::nn
