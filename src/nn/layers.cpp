#include "nn/layers.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "nn/op_profile.h"

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
}  // namespace

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  OpTimer timer(OpKind::Linear, linear_flops(x.numel() / weight.size(1), weight.size(1), weight.size(0)));
  auto y = torch::linear(x, weight, bias);
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
  auto y = torch::conv2d(x, weight, bias, {stride, stride}, {padding, padding});
  return deltas.empty() ? y : add_deltas(std::move(y), deltas, x);
}

GroupNormImpl::GroupNormImpl(int64_t groups_, int64_t channels, double eps_)
    : groups(groups_), eps(eps_) {
  weight = register_parameter("weight", torch::empty({channels}));
  bias = register_parameter("bias", torch::empty({channels}));
}
torch::Tensor GroupNormImpl::forward(const torch::Tensor& x) {
  OpTimer timer(OpKind::Norm, 0);
  // Under CPU autocast (bf16 training) activations arrive in bf16 while the
  // weights stay float32; LibTorch 1.13's group_norm needs them to agree, and
  // normalising in float32 is the precise choice anyway.
  if (x.scalar_type() != weight.scalar_type()) return torch::group_norm(x.to(weight.scalar_type()), groups, weight, bias, eps);
  return torch::group_norm(x, groups, weight, bias, eps);
}

LayerNormImpl::LayerNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::empty({dim}));
  bias = register_parameter("bias", torch::empty({dim}));
}
torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
  OpTimer timer(OpKind::Norm, 0);
  // As GroupNorm: under CPU autocast, 1.13's layer_norm refuses bf16 input with float32 weights.
  if (x.scalar_type() != weight.scalar_type())
    return torch::layer_norm(x.to(weight.scalar_type()), {weight.size(0)}, weight, bias, eps);
  return torch::layer_norm(x, {weight.size(0)}, weight, bias, eps);
}

EmbeddingImpl::EmbeddingImpl(int64_t count, int64_t dim) {
  weight = register_parameter("weight", torch::empty({count, dim}));
}
torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) { return torch::embedding(weight, ids); }

namespace {
std::atomic<int64_t> g_attention_chunk_bytes{int64_t{32} << 20};

// [B,S,H*D] → [B*H,S,D]
torch::Tensor split_heads(const torch::Tensor& t, int64_t heads) {
  const int64_t b = t.size(0), s = t.size(1), d = t.size(2) / heads;
  return t.reshape({b, s, heads, d}).permute({0, 2, 1, 3}).reshape({b * heads, s, d});
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
  const bool in_float = upcast || q.scalar_type() != torch::kFloat;
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
    return torch::bmm(scores.softmax(-1).to(vh.scalar_type()), vh);
  };
  const int64_t row_bytes = b * heads * sk * static_cast<int64_t>(sizeof(float));
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
                  torch::arange(0, half, torch::TensorOptions().dtype(torch::kFloat)) /
                  (static_cast<double>(half) - freq_shift);
  auto emb = timesteps.to(torch::kFloat).unsqueeze(1) * exponent.exp().unsqueeze(0);
  emb = flip_sin_to_cos ? torch::cat({emb.cos(), emb.sin()}, -1) : torch::cat({emb.sin(), emb.cos()}, -1);
  if (dim % 2 == 1) emb = torch::constant_pad_nd(emb, {0, 1});
  return emb;
}

}  // namespace lumen::nn
