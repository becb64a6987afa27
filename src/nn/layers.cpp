#include "nn/layers.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <torch/version.h>

#include "nn/conv_prepack.h"
#include "nn/fast_softmax.h"
#include "nn/fused_attention.h"
#include "nn/cpu_paths.h"
#include "nn/op_profile.h"
#include "nn/weight_as_image.h"

namespace lumen::nn {

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias) {
  weight = register_parameter("weight", torch::empty({out, in}));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}));
}
namespace {
torch::Tensor add_deltas(torch::Tensor y, const WeightDeltas& deltas, const torch::Tensor& x) {
  for (const auto& d : deltas) y = y + d->apply(x) * d->scale;
  return y;
}

std::atomic<bool> g_onednn_linear{true};
std::atomic<bool> g_bf16_scores{true};
// Below this many rows a linear layer is not run as a convolution of its
// activations: oneDNN's per-call re-layout of the weight outweighs its faster
// kernel. f32 then takes the weight as the image (nn/weight_as_image.h); bf16
// the GEMM (oneDNN matmul), which beat both below 256 rows (at 128 rows:
// 545-650 GFLOP/s against 300-480 and, mixed, 540-710).
constexpr int64_t kOnednnLinearMinRows = 256;

// x [..., C] times weight [O, C]ᵀ as a 1x1 convolution (oneDNN) of the
// activations, [1,C,N,1] channels-last, a view.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  const int64_t in = weight.size(1), out = weight.size(0), rows = x.numel() / in;
  const auto type = x.scalar_type();
  const bool fits = rows > 0 && x.is_cpu() && type == weight.scalar_type() &&
                    (type == torch::kFloat || type == torch::kBFloat16) && !autograd_records(x, weight);
  auto shape = x.sizes().vec();
  shape.back() = out;
  if (fits && g_onednn_linear && rows >= kOnednnLinearMinRows) {
    auto image = x.contiguous().view({1, rows, 1, in}).permute({0, 3, 1, 2});  // [1,C,N,1], channels-last
    auto y = torch::conv2d(image, weight.view({out, in, 1, 1}), bias).permute({0, 2, 3, 1});  // [1,N,1,O]
    return y.reshape(shape);
  }
  if (fits && type == torch::kFloat && weight_as_image_enabled())
    return rows_times_weight(x.reshape({rows, in}), weight, bias).view(shape);
  return torch::linear(x, weight, bias);
}
}  // namespace

void set_onednn_linear(bool enabled) { g_onednn_linear = enabled; }
bool onednn_linear_enabled() { return g_onednn_linear; }
void set_bf16_attention_scores(bool enabled) { g_bf16_scores = enabled; }
bool bf16_attention_scores() { return g_bf16_scores; }

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  OpTimer timer(OpKind::Linear, linear_flops(x.numel() / weight.size(1), weight.size(1), weight.size(0)));
  auto y = linear(x, weight, bias);
  return deltas.empty() ? y : add_deltas(std::move(y), deltas, x);
}

Conv2dImpl::Conv2dImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride_, int64_t padding_,
                       bool with_bias)
    : stride(stride_), padding(padding_) {
  weight = register_parameter("weight", torch::empty({out, in, kernel, kernel}));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}));
}
torch::Tensor Conv2dImpl::forward(const torch::Tensor& x) {
  const int64_t k = weight.size(2);
  auto out_len = [&](int64_t n) { return (n + 2 * padding - k) / stride + 1; };
  OpTimer timer(OpKind::Conv, conv2d_flops(x.size(0), weight.size(1), weight.size(0), k, out_len(x.size(2)), out_len(x.size(3))));
  auto fast_y = prepacked_conv2d(packed, x, weight, bias, stride, padding);
  if (!fast_y) fast_y = weight_as_image_conv2d(x, weight, bias, stride, padding);
  auto y = fast_y ? *fast_y : torch::conv2d(x, weight, bias, {stride, stride}, {padding, padding});
  return deltas.empty() ? y : add_deltas(std::move(y), deltas, x);
}

GroupNormImpl::GroupNormImpl(int64_t groups_, int64_t channels, double eps_)
    : groups(groups_), eps(eps_) {
  weight = register_parameter("weight", torch::empty({channels}));
  bias = register_parameter("bias", torch::empty({channels}));
}
namespace {
// bf16/f16 activations are normalised in float32 and returned in their own
// dtype. LibTorch 1.13's bf16 norm kernels are scalar (7-9x slower than
// converting, normalising in f32 and converting back) and round the
// statistics; under CPU autocast the weights stay float32 while activations
// arrive in bf16, and 1.13's norms need the two to agree.
// On a GPU the native bf16/f16 kernels accumulate in f32 already: no round trip.
bool low_precision(const torch::Tensor& x) {
  return x.is_cpu() && (x.scalar_type() == torch::kBFloat16 || x.scalar_type() == torch::kHalf);
}
torch::Tensor as_float(const torch::Tensor& t) { return t.scalar_type() == torch::kFloat ? t : t.to(torch::kFloat); }
// SiLU over a norm's fresh output, in place when autograd does not record it:
// at the VAE decoder's full resolution that saves an activation-sized buffer
// (268 MB per 256-channel map at 512², f32) at the moment memory peaks.
torch::Tensor silu_of_fresh(torch::Tensor y) { return autograd_records(y) ? torch::silu(y) : torch::silu_(y); }

// Float32 elements normalised per call when inference goes a few groups at a time.
constexpr int64_t kFloatChunkElements = int64_t{4} << 20;

// group_norm (then SiLU) of x in float32, returned in x's dtype. At inference
// it goes a few groups of one sample at a time: the float copies stay under
// 16 MB where whole ones were twice the activation (at a bf16 512² decode
// they, and the allocator's cache of their ever larger sizes, were most of
// the 1.6 GB peak). Each group's statistics are its own either way.
torch::Tensor group_norm_in_float(const GroupNormImpl& norm, const torch::Tensor& x, bool with_silu) {
  const auto weight = as_float(norm.weight), bias = as_float(norm.bias);
  const int64_t groups = norm.groups;
  if (autograd_records(x, norm.weight, norm.bias) || x.dim() < 2 || x.size(0) == 0 || x.size(1) % groups != 0) {
    auto y = torch::group_norm(as_float(x), groups, weight, bias, norm.eps);
    return (with_silu ? silu_of_fresh(y) : y).to(x.scalar_type());
  }
  const int64_t channels_per_group = x.size(1) / groups;
  const int64_t group_elements = std::max<int64_t>(x.numel() / x.size(0) / groups, 1);
  const int64_t step = std::clamp<int64_t>(kFloatChunkElements / group_elements, 1, groups);
  auto out = torch::empty_like(x);
  for (int64_t sample = 0; sample < x.size(0); ++sample)
    for (int64_t first = 0; first < groups; first += step) {
      const int64_t count = std::min(step, groups - first);
      const int64_t c0 = first * channels_per_group, cn = count * channels_per_group;
      auto slice = [&](const torch::Tensor& t) { return t.narrow(0, sample, 1).narrow(1, c0, cn); };
      auto y = torch::group_norm(slice(x).to(torch::kFloat), count, weight.narrow(0, c0, cn), bias.narrow(0, c0, cn),
                                 norm.eps);
      if (with_silu) torch::silu_(y);
      slice(out).copy_(y);
    }
  return out;
}
}  // namespace

torch::Tensor GroupNormImpl::forward(const torch::Tensor& x) {
  OpTimer timer(OpKind::Norm, 0);
  if (!low_precision(x) && x.scalar_type() == weight.scalar_type()) return torch::group_norm(x, groups, weight, bias, eps);
  return group_norm_in_float(*this, x, /*with_silu=*/false);
}

torch::Tensor GroupNormImpl::forward_silu(const torch::Tensor& x) {
  if (!low_precision(x)) return silu_of_fresh(forward(x));
  OpTimer timer(OpKind::Norm, 0);
  return group_norm_in_float(*this, x, /*with_silu=*/true);
}
LayerNormImpl::LayerNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::empty({dim}));
  bias = register_parameter("bias", torch::empty({dim}));
}
torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
  OpTimer timer(OpKind::Norm, 0);
  if (!low_precision(x) && x.scalar_type() == weight.scalar_type())
    return torch::layer_norm(x, {weight.size(0)}, weight, bias, eps);
  return torch::layer_norm(as_float(x), {weight.size(0)}, as_float(weight), as_float(bias), eps).to(x.scalar_type());
}

EmbeddingImpl::EmbeddingImpl(int64_t count, int64_t dim) {
  weight = register_parameter("weight", torch::empty({count, dim}));
}
torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) { return torch::embedding(weight, ids); }

namespace {
std::atomic<int64_t> g_attention_chunk_bytes{int64_t{32} << 20};

// In place with the AVX-512 kernel when nothing needs the scores' gradient.
torch::Tensor softmax_last_dim(torch::Tensor scores) {
  const bool kernel_fits = scores.is_cpu() && scores.is_contiguous() && !scores.requires_grad() &&
                           (scores.scalar_type() == torch::kFloat || scores.scalar_type() == torch::kBFloat16);
  if (!kernel_fits || !fast_softmax_enabled()) return scores.softmax(-1);
  const int64_t cols = scores.size(-1), rows = scores.numel() / std::max<int64_t>(cols, 1);
  if (scores.scalar_type() == torch::kFloat)
    softmax_rows_inplace(scores.data_ptr<float>(), rows, cols);
  else
    softmax_rows_inplace_bf16(reinterpret_cast<uint16_t*>(scores.data_ptr<at::BFloat16>()), rows, cols);
  return scores;
}
}  // namespace

void set_attention_chunk_bytes(int64_t bytes) { g_attention_chunk_bytes = std::max<int64_t>(bytes, 0); }
int64_t attention_chunk_bytes() { return g_attention_chunk_bytes; }

torch::Tensor multi_head_attention(const torch::Tensor& q, const torch::Tensor& k,
                                   const torch::Tensor& v, int64_t heads, bool upcast,
                                   const torch::Tensor& additive_mask) {
  const int64_t b = q.size(0), sq = q.size(1), sk = k.size(1);
  const int64_t d = q.size(2) / heads;
  OpTimer timer(OpKind::Attention, attention_flops(b, heads, sq, sk, d));
  if (!additive_mask.defined() && fused_attention_applies(q, k, v, heads)) return fused_attention(q, k, v, heads);
#if TORCH_VERSION_MAJOR >= 2
  // On a GPU: LibTorch's scaled-dot-product attention (flash or memory-efficient
  // kernels, f32 accumulation and softmax; no score matrix in memory).
  if (!q.is_cpu()) {
    auto heads_first = [&](const torch::Tensor& t) { return t.reshape({b, t.size(1), heads, d}).transpose(1, 2); };
    c10::optional<torch::Tensor> mask;
    if (additive_mask.defined()) mask = additive_mask.to(q.scalar_type()).expand({b, heads, sq, sk});
    auto out = at::scaled_dot_product_attention(heads_first(q), heads_first(k), heads_first(v), mask);
    return out.transpose(1, 2).reshape({b, sq, heads * d});
  }
#endif
  // bf16 scores stay bf16 unless the model asks for upcast attention: oneDNN
  // accumulates the products in f32 and the softmax kernel works in f32, and
  // f32 scores (two conversions, twice the bytes) made attention 1.7x slower.
  // CPU f16 matrix products are slow or missing in LibTorch 1.13: f16 runs in f32.
  const bool in_float = upcast || q.scalar_type() == torch::kHalf || (q.scalar_type() == torch::kBFloat16 && !g_bf16_scores);
  // Scaling the queries (Sq×D) is cheaper than scaling the scores (Sq×Sk).
  auto qh = split_heads(in_float ? q.to(torch::kFloat) : q, heads) * (1.0 / std::sqrt(static_cast<double>(d)));  // [B*H,Sq,D]
  auto kt = split_heads(in_float ? k.to(torch::kFloat) : k, heads).transpose(1, 2);  // [B*H,D,Sk]
  auto vh = split_heads(v, heads);
  torch::Tensor mask;
  if (additive_mask.defined())
    mask = additive_mask.to(qh.scalar_type()).expand({b, heads, sq, sk}).reshape({b * heads, sq, sk});
  // softmax(q kᵀ) v for queries [from, from+n): each query row is independent,
  // so chunking the queries bounds the score matrix without changing the result.
  auto rows = [&](int64_t from, int64_t n) {
    auto qc = qh.narrow(1, from, n);
    auto scores = mask.defined() ? torch::baddbmm(mask.narrow(1, from, n), qc, kt) : torch::bmm(qc, kt);
    return torch::bmm(softmax_last_dim(std::move(scores)).to(vh.scalar_type()), vh);
  };
  const int64_t row_bytes = b * heads * sk * static_cast<int64_t>(qh.element_size());
  const int64_t limit = g_attention_chunk_bytes;
  const int64_t chunk = limit > 0 ? std::max<int64_t>(1, limit / row_bytes) : sq;
  torch::Tensor out;
  if (chunk >= sq) {
    out = rows(0, sq);
  } else {
    std::vector<torch::Tensor> parts;
    for (int64_t from = 0; from < sq; from += chunk) parts.push_back(rows(from, std::min(chunk, sq - from)));
    out = torch::cat(parts, 1);
  }
  return out.reshape({b, heads, sq, d}).permute({0, 2, 1, 3}).reshape({b, sq, heads * d});
}

torch::Tensor timestep_embedding(const torch::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos,
                                 double freq_shift) {
  const int64_t half = dim / 2;
  auto exponent = -std::log(10000.0) *
                  torch::arange(0, half, timesteps.options().dtype(torch::kFloat)) /
                  (static_cast<double>(half) - freq_shift);
  auto emb = timesteps.to(torch::kFloat).unsqueeze(1) * exponent.exp().unsqueeze(0);
  emb = flip_sin_to_cos ? torch::cat({emb.cos(), emb.sin()}, -1) : torch::cat({emb.sin(), emb.cos()}, -1);
  if (dim % 2 == 1) emb = torch::constant_pad_nd(emb, {0, 1});
  return emb;
}

}  // namespace lumen::nn
