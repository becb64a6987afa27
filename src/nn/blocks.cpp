#include "nn/blocks.h"

#include "nn/conv_prepack.h"
#include "nn/upsample_conv.h"

namespace lumen::nn {

namespace {
// fresh + other, written into `fresh` (a convolution's new output) when
// autograd does not record and the sum has its shape and dtype: the same
// numbers, one activation-sized buffer less at the peak.
torch::Tensor add_into_fresh(torch::Tensor fresh, const torch::Tensor& other) {
  const bool in_place = !autograd_records(fresh, other) && fresh.scalar_type() == other.scalar_type() &&
                        fresh.sizes().equals(at::infer_size(fresh.sizes(), other.sizes()));
  return in_place ? fresh.add_(other) : fresh + other;
}
}  // namespace

ResnetBlock2DImpl::ResnetBlock2DImpl(int64_t in, int64_t out, int64_t temb_channels, int64_t groups,
                                     double eps, double scale)
    : output_scale_factor(scale) {
  norm1 = register_module("norm1", GroupNorm(groups, in, eps));
  conv1 = register_module("conv1", Conv2d(in, out, 3, 1, 1));
  if (temb_channels > 0) time_emb_proj = register_module("time_emb_proj", Linear(temb_channels, out));
  norm2 = register_module("norm2", GroupNorm(groups, out, eps));
  conv2 = register_module("conv2", Conv2d(out, out, 3, 1, 1));
  if (in != out) conv_shortcut = register_module("conv_shortcut", Conv2d(in, out, 1));
}

torch::Tensor ResnetBlock2DImpl::forward(const torch::Tensor& x, const torch::Tensor& temb) {
  auto h = conv1(norm1->forward_silu(x));
  if (temb.defined() && time_emb_proj)
    h = add_into_fresh(h, time_emb_proj(torch::silu(temb)).unsqueeze(-1).unsqueeze(-1));
  h = conv2(norm2->forward_silu(h));
  auto out = add_into_fresh(h, conv_shortcut ? conv_shortcut(x) : x);
  if (output_scale_factor == 1.0) return out;
  return autograd_records(out) ? out / output_scale_factor : out.div_(output_scale_factor);
}

Downsample2DImpl::Downsample2DImpl(int64_t channels, int64_t padding_) : padding(padding_) {
  conv = register_module("conv", Conv2d(channels, channels, 3, 2, padding));
}

torch::Tensor Downsample2DImpl::forward(const torch::Tensor& x) {
  // The VAE encoder pads asymmetrically (right and bottom only) instead.
  if (padding == 0) return conv(torch::constant_pad_nd(x, {0, 1, 0, 1}, 0));
  return conv(x);
}

Upsample2DImpl::Upsample2DImpl(int64_t channels) {
  conv = register_module("conv", Conv2d(channels, channels, 3, 1, 1));
}

torch::Tensor Upsample2DImpl::forward(const torch::Tensor& x, c10::optional<std::vector<int64_t>> size) {
  const std::vector<int64_t> out_size = size ? *size : std::vector<int64_t>{x.size(2) * 2, x.size(3) * 2};
  const bool doubled = out_size[0] == 2 * x.size(2) && out_size[1] == 2 * x.size(3);
  if (doubled && subpixel_upsample_applies(x) && conv->deltas.empty() && !autograd_records(x, conv->weight))
    return upsample2x_conv3x3(x, conv->weight, conv->bias);
  return conv(torch::upsample_nearest2d(x, out_size));
}

AttentionImpl::AttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads_, int64_t head_dim,
                             bool upcast_, bool qkv_bias)
    : heads(heads_), upcast(upcast_) {
  const int64_t inner = heads * head_dim;
  to_q = register_module("to_q", Linear(query_dim, inner, qkv_bias));
  to_k = register_module("to_k", Linear(context_dim, inner, qkv_bias));
  to_v = register_module("to_v", Linear(context_dim, inner, qkv_bias));
  to_out = register_module("to_out", torch::nn::ModuleList());
  to_out->push_back(Linear(inner, query_dim));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  const auto& ctx = context.defined() ? context : x;
  auto out = multi_head_attention(to_q(x), to_k(ctx), to_v(ctx), heads, upcast);
  return to_out[0]->as<Linear>()->forward(out);
}

BasicTransformerBlockImpl::BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim,
                                                     int64_t context_dim, bool only_cross, bool upcast)
    : only_cross_attention(only_cross) {
  norm1 = register_module("norm1", LayerNorm(dim, 1e-5));
  attn1 = register_module("attn1", Attention(dim, only_cross ? context_dim : dim, heads, head_dim, upcast));
  norm2 = register_module("norm2", LayerNorm(dim, 1e-5));
  attn2 = register_module("attn2", Attention(dim, context_dim, heads, head_dim, upcast));
  norm3 = register_module("norm3", LayerNorm(dim, 1e-5));
  const int64_t inner = dim * 4;
  auto ff = register_module("ff", std::make_shared<torch::nn::Module>());
  auto net = ff->register_module("net", torch::nn::ModuleList());
  auto geglu = std::make_shared<torch::nn::Module>();
  ff_in = geglu->register_module("proj", Linear(dim, inner * 2));
  net->push_back(geglu);
  net->push_back(std::make_shared<torch::nn::Module>());  // net.1: dropout, no weights
  ff_out = Linear(inner, dim);
  net->push_back(ff_out);
}

torch::Tensor BasicTransformerBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  auto h = x + attn1(norm1(x), only_cross_attention ? context : torch::Tensor());
  h = h + attn2(norm2(h), context);
  auto proj = ff_in(norm3(h)).chunk(2, -1);
  // GELU on the strided half runs scalar: contiguous, it is 2.5x (f32) to 4.6x (bf16) faster.
  return h + ff_out(proj[0] * torch::gelu(proj[1].contiguous()));
}

Transformer2DImpl::Transformer2DImpl(int64_t channels, int64_t heads, int64_t layers, int64_t context_dim,
                                     int64_t groups, bool linear, bool only_cross, bool upcast)
    : linear_projection(linear) {
  norm = register_module("norm", GroupNorm(groups, channels, 1e-6));
  if (linear) {
    proj_in = torch::nn::AnyModule(register_module("proj_in", Linear(channels, channels)));
  } else {
    proj_in = torch::nn::AnyModule(register_module("proj_in", Conv2d(channels, channels, 1)));
  }
  transformer_blocks = register_module("transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < layers; ++i)
    transformer_blocks->push_back(
        BasicTransformerBlock(channels, heads, channels / heads, context_dim, only_cross, upcast));
  if (linear) {
    proj_out = torch::nn::AnyModule(register_module("proj_out", Linear(channels, channels)));
  } else {
    proj_out = torch::nn::AnyModule(register_module("proj_out", Conv2d(channels, channels, 1)));
  }
}

torch::Tensor Transformer2DImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  const int64_t b = x.size(0), h = x.size(2), w = x.size(3);
  auto to_tokens = [&](const torch::Tensor& t) { return t.permute({0, 2, 3, 1}).reshape({b, h * w, -1}); };
  auto to_map = [&](const torch::Tensor& t) { return t.reshape({b, h, w, -1}).permute({0, 3, 1, 2}); };
  auto hidden = norm(x);
  hidden = linear_projection ? proj_in.forward(to_tokens(hidden)) : to_tokens(proj_in.forward(hidden));
  for (const auto& block : *transformer_blocks)
    hidden = block->as<BasicTransformerBlock>()->forward(hidden, context);
  // Back in x's layout: a free view when x is channels-last.
  hidden = linear_projection ? to_map(proj_out.forward(hidden))
                             : proj_out.forward(to_map(hidden).contiguous(x.suggest_memory_format()));
  return x + hidden;  // x first: the sum keeps x's layout
}

SpatialSelfAttentionImpl::SpatialSelfAttentionImpl(int64_t channels, int64_t groups, double eps) {
  group_norm = register_module("group_norm", GroupNorm(groups, channels, eps));
  to_q = register_module("to_q", Linear(channels, channels));
  to_k = register_module("to_k", Linear(channels, channels));
  to_v = register_module("to_v", Linear(channels, channels));
  to_out = register_module("to_out", torch::nn::ModuleList());
  to_out->push_back(Linear(channels, channels));
}

torch::Tensor SpatialSelfAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  // [B,HW,C] tokens: a free view of a channels-last map, one copy of an NCHW one.
  auto tokens = group_norm(x).permute({0, 2, 3, 1}).reshape({b, h * w, c});
  auto out = multi_head_attention(to_q(tokens), to_k(tokens), to_v(tokens), 1, /*upcast=*/true);
  out = to_out[0]->as<Linear>()->forward(out);
  return x + out.reshape({b, h, w, c}).permute({0, 3, 1, 2});  // x first: the sum keeps x's layout
}

}  // namespace lumen::nn
