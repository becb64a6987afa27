#include "nn/vae.h"

#include <atomic>

#include "error.h"
#include "nn/checkpoint.h"
#include "nn/cpu_paths.h"

namespace lumen::nn {

namespace {
constexpr double kEps = 1e-6;  // diffusers' VAE uses 1e-6 in every norm

struct MidBlock {
  ResnetBlock2D first{nullptr}, second{nullptr};
  SpatialSelfAttention attention{nullptr};
};

MidBlock make_mid_block(torch::nn::Module& parent, int64_t channels, int64_t groups, bool with_attention) {
  auto mid = parent.register_module("mid_block", std::make_shared<torch::nn::Module>());
  auto resnets = mid->register_module("resnets", torch::nn::ModuleList());
  MidBlock m;
  m.first = ResnetBlock2D(channels, channels, 0, groups, kEps);
  m.second = ResnetBlock2D(channels, channels, 0, groups, kEps);
  resnets->push_back(m.first);
  resnets->push_back(m.second);
  if (with_attention) {
    m.attention = SpatialSelfAttention(channels, groups, kEps);
    mid->register_module("attentions", torch::nn::ModuleList())->push_back(m.attention);
  }
  return m;
}

torch::Tensor run_mid(MidBlock& m, torch::Tensor h) {
  h = m.first->forward(h);
  if (m.attention) h = m.attention->forward(h);
  return m.second->forward(h);
}

struct Level {
  std::vector<ResnetBlock2D> resnets;
  Downsample2D down{nullptr};
  Upsample2D up{nullptr};
};

std::atomic<bool> g_channels_last{true};

// Inference on the CPU runs channels-last: oneDNN then convolves the maps as
// they are, where an NCHW map is copied into its blocked layout and the result
// back on every call. At full resolution those copies are what set the peak
// (a 512² SD decode: 1.3 GB above the weights NCHW, 0.9 GB channels-last, at
// the same speed). Training keeps NCHW, the layout its kernels were tested in.
torch::Tensor in_working_layout(const torch::Tensor& x) {
  const bool channels_last = g_channels_last && x.is_cpu() && !torch::GradMode::is_enabled();
  return channels_last ? x.contiguous(at::MemoryFormat::ChannelsLast) : x;
}

}  // namespace

void set_vae_channels_last(bool enabled) { g_channels_last = enabled; }
bool vae_channels_last_enabled() { return g_channels_last; }

struct AutoencoderKLImpl::Parts {
  Conv2d enc_conv_in{nullptr}, enc_conv_out{nullptr}, dec_conv_in{nullptr}, dec_conv_out{nullptr};
  GroupNorm enc_norm_out{nullptr}, dec_norm_out{nullptr};
  std::vector<Level> enc_levels, dec_levels;
  MidBlock enc_mid, dec_mid;
};

AutoencoderKLImpl::AutoencoderKLImpl(const VaeConfig& c) : config(c), parts_(std::make_shared<Parts>()) {
  const auto& ch = c.block_out_channels;
  const int64_t n = static_cast<int64_t>(ch.size());
  const int64_t g = c.norm_num_groups;
  auto& p = *parts_;

  encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
  p.enc_conv_in = encoder->register_module("conv_in", Conv2d(c.in_channels, ch[0], 3, 1, 1));
  auto down_blocks = encoder->register_module("down_blocks", torch::nn::ModuleList());
  int64_t out_ch = ch[0];
  for (int64_t i = 0; i < n; ++i) {
    const int64_t in_ch = out_ch;
    out_ch = ch[i];
    auto block = std::make_shared<torch::nn::Module>();
    auto resnets = block->register_module("resnets", torch::nn::ModuleList());
    Level level;
    for (int64_t j = 0; j < c.layers_per_block; ++j) {
      level.resnets.push_back(ResnetBlock2D(j == 0 ? in_ch : out_ch, out_ch, 0, g, kEps));
      resnets->push_back(level.resnets.back());
    }
    if (i < n - 1) {
      level.down = Downsample2D(out_ch, 0);
      block->register_module("downsamplers", torch::nn::ModuleList())->push_back(level.down);
    }
    down_blocks->push_back(block);
    p.enc_levels.push_back(level);
  }
  p.enc_mid = make_mid_block(*encoder, ch[n - 1], g, c.mid_block_add_attention);
  p.enc_norm_out = encoder->register_module("conv_norm_out", GroupNorm(g, ch[n - 1], kEps));
  p.enc_conv_out = encoder->register_module("conv_out", Conv2d(ch[n - 1], 2 * c.latent_channels, 3, 1, 1));

  decoder = register_module("decoder", std::make_shared<torch::nn::Module>());
  p.dec_conv_in = decoder->register_module("conv_in", Conv2d(c.latent_channels, ch[n - 1], 3, 1, 1));
  p.dec_mid = make_mid_block(*decoder, ch[n - 1], g, c.mid_block_add_attention);
  auto up_blocks = decoder->register_module("up_blocks", torch::nn::ModuleList());
  out_ch = ch[n - 1];
  for (int64_t i = 0; i < n; ++i) {
    const int64_t in_ch = out_ch;
    out_ch = ch[n - 1 - i];
    auto block = std::make_shared<torch::nn::Module>();
    auto resnets = block->register_module("resnets", torch::nn::ModuleList());
    Level level;
    for (int64_t j = 0; j < c.layers_per_block + 1; ++j) {
      level.resnets.push_back(ResnetBlock2D(j == 0 ? in_ch : out_ch, out_ch, 0, g, kEps));
      resnets->push_back(level.resnets.back());
    }
    if (i < n - 1) {
      level.up = Upsample2D(out_ch);
      block->register_module("upsamplers", torch::nn::ModuleList())->push_back(level.up);
    }
    up_blocks->push_back(block);
    p.dec_levels.push_back(level);
  }
  p.dec_norm_out = decoder->register_module("conv_norm_out", GroupNorm(g, ch[0], kEps));
  p.dec_conv_out = decoder->register_module("conv_out", Conv2d(ch[0], c.out_channels, 3, 1, 1));

  if (c.use_quant_conv)
    quant_conv = register_module("quant_conv", Conv2d(2 * c.latent_channels, 2 * c.latent_channels, 1));
  if (c.use_post_quant_conv)
    post_quant_conv = register_module("post_quant_conv", Conv2d(c.latent_channels, c.latent_channels, 1));
}

torch::Tensor AutoencoderKLImpl::run_encoder(const torch::Tensor& x) {
  auto& p = *parts_;
  auto h = p.enc_conv_in(x);
  for (auto& level : p.enc_levels) {
    for (auto& r : level.resnets) h = r->forward(h);
    if (level.down) h = level.down->forward(h);
  }
  h = run_mid(p.enc_mid, h);
  return p.enc_conv_out(p.enc_norm_out->forward_silu(h));
}

torch::Tensor AutoencoderKLImpl::run_decoder(const torch::Tensor& z) {
  auto& p = *parts_;
  const bool checkpointing = gradient_checkpointing_ && torch::GradMode::is_enabled();
  // The closures hold the module handles (shared), as the autograd graph may outlive this call.
  auto run = [checkpointing](const CheckpointedFn& fn, const torch::Tensor& h) {
    return checkpointing ? checkpoint(fn, {h}) : fn({h});
  };
  MidBlock mid = p.dec_mid;  // a copy of the handles, for the closure
  auto h = run([mid](const std::vector<torch::Tensor>& in) mutable { return run_mid(mid, in[0]); }, p.dec_conv_in(z));
  for (auto& level : p.dec_levels) {
    for (auto& r : level.resnets)
      h = run([r = r.ptr()](const std::vector<torch::Tensor>& in) { return r->forward(in[0]); }, h);
    if (level.up)
      h = run([up = level.up.ptr()](const std::vector<torch::Tensor>& in) { return up->forward(in[0]); }, h);
  }
  return p.dec_conv_out(p.dec_norm_out->forward_silu(h));
}

torch::Tensor AutoencoderKLImpl::encode_moments(const torch::Tensor& image) {
  if (image.dim() != 4 || image.size(1) != config.in_channels)
    throw Error("vae", "image must be [B," + std::to_string(config.in_channels) + ",H,W]");
  auto h = run_encoder(in_working_layout(image)).contiguous();
  return quant_conv ? quant_conv(h) : h;
}

torch::Tensor AutoencoderKLImpl::decode(const torch::Tensor& latents) {
  if (latents.dim() != 4 || latents.size(1) != config.latent_channels)
    throw Error("vae", "latents must be [B," + std::to_string(config.latent_channels) + ",h,w]");
  const auto z = post_quant_conv ? post_quant_conv(latents) : latents;
  return run_decoder(in_working_layout(z)).contiguous();
}

torch::Tensor AutoencoderKLImpl::to_model_latents(const torch::Tensor& z) const {
  return (z - config.shift_factor) * config.scaling_factor;
}

torch::Tensor AutoencoderKLImpl::from_model_latents(const torch::Tensor& latents) const {
  return latents / config.scaling_factor + config.shift_factor;
}

LatentDistribution split_moments(const torch::Tensor& moments) {
  auto parts = moments.chunk(2, 1);
  LatentDistribution d;
  d.mean = parts[0];
  d.logvar = parts[1].clamp(-30.0, 20.0);
  d.std = (0.5 * d.logvar).exp();
  return d;
}

}  // namespace lumen::nn
