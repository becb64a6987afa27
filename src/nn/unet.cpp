#include "nn/unet.h"

#include "error.h"
#include "nn/checkpoint.h"

namespace lumen::nn {
namespace {

// linear_1 → SiLU → linear_2, registered under `name` as diffusers' TimestepEmbedding.
void make_timestep_embedding(torch::nn::Module& parent, const char* name, int64_t in, int64_t dim,
                             Linear* l1, Linear* l2) {
  auto m = parent.register_module(name, std::make_shared<torch::nn::Module>());
  *l1 = m->register_module("linear_1", Linear(in, dim));
  *l2 = m->register_module("linear_2", Linear(dim, dim));
}

bool has_attention(const std::string& block_type) { return block_type.rfind("CrossAttn", 0) == 0; }

}  // namespace

UNet2DConditionImpl::UNet2DConditionImpl(const UNetConfig& c) : config(c) {
  const auto& ch = c.block_out_channels;
  const int64_t n = static_cast<int64_t>(ch.size());
  const int64_t temb = c.time_embed_dim();
  const double eps = c.norm_eps;
  const int64_t groups = c.norm_num_groups;

  conv_in = register_module("conv_in", Conv2d(c.in_channels, ch[0], c.conv_in_kernel, 1, c.conv_in_kernel / 2));
  make_timestep_embedding(*this, "time_embedding", ch[0], temb, &time_linear_1, &time_linear_2);
  if (c.addition_embed_type == "text_time")
    make_timestep_embedding(*this, "add_embedding", c.projection_class_embeddings_input_dim, temb,
                            &add_linear_1, &add_linear_2);

  auto transformer = [&](int64_t channels, int64_t level, int64_t layers) {
    return Transformer2D(channels, c.attention_heads[level], layers, c.cross_attention_dim[level], groups,
                         c.use_linear_projection, c.only_cross_attention[level], c.upcast_attention);
  };

  down_blocks = register_module("down_blocks", torch::nn::ModuleList());
  int64_t out_ch = ch[0];
  for (int64_t i = 0; i < n; ++i) {
    const int64_t in_ch = out_ch;
    out_ch = ch[i];
    auto level = UNetLevel();
    level->resnets = level->register_module("resnets", torch::nn::ModuleList());
    const bool attn = has_attention(c.down_block_types[i]);
    if (attn) level->attentions = level->register_module("attentions", torch::nn::ModuleList());
    for (int64_t j = 0; j < c.layers_per_block[i]; ++j) {
      level->resnets->push_back(ResnetBlock2D(j == 0 ? in_ch : out_ch, out_ch, temb, groups, eps));
      if (attn) level->attentions->push_back(transformer(out_ch, i, c.transformer_layers_per_block[i]));
    }
    if (i < n - 1) {
      level->samplers = level->register_module("downsamplers", torch::nn::ModuleList());
      level->samplers->push_back(Downsample2D(out_ch, c.downsample_padding));
    }
    down_blocks->push_back(level);
  }

  if (c.has_mid_block) {
    mid_block = register_module("mid_block", UNetLevel());
    mid_block->resnets = mid_block->register_module("resnets", torch::nn::ModuleList());
    mid_block->attentions = mid_block->register_module("attentions", torch::nn::ModuleList());
    mid_block->resnets->push_back(ResnetBlock2D(ch[n - 1], ch[n - 1], temb, groups, eps, c.mid_block_scale_factor));
    mid_block->attentions->push_back(transformer(ch[n - 1], n - 1, c.mid_transformer_layers));
    mid_block->resnets->push_back(ResnetBlock2D(ch[n - 1], ch[n - 1], temb, groups, eps, c.mid_block_scale_factor));
  }

  up_blocks = register_module("up_blocks", torch::nn::ModuleList());
  out_ch = ch[n - 1];
  for (int64_t i = 0; i < n; ++i) {
    const int64_t level_index = n - 1 - i;  // the down level this up level mirrors
    const int64_t prev_out = out_ch;
    out_ch = ch[level_index];
    const int64_t skip_in = ch[std::max<int64_t>(level_index - 1, 0)];
    auto level = UNetLevel();
    level->resnets = level->register_module("resnets", torch::nn::ModuleList());
    const bool attn = has_attention(c.up_block_types[i]);
    if (attn) level->attentions = level->register_module("attentions", torch::nn::ModuleList());
    const int64_t layers = c.layers_per_block[level_index] + 1;
    for (int64_t j = 0; j < layers; ++j) {
      const int64_t skip = j == layers - 1 ? skip_in : out_ch;
      const int64_t in = j == 0 ? prev_out : out_ch;
      level->resnets->push_back(ResnetBlock2D(in + skip, out_ch, temb, groups, eps));
      if (attn) level->attentions->push_back(transformer(out_ch, level_index, c.reverse_transformer_layers[i]));
    }
    if (i < n - 1) {
      level->samplers = level->register_module("upsamplers", torch::nn::ModuleList());
      level->samplers->push_back(Upsample2D(out_ch));
    }
    up_blocks->push_back(level);
  }

  conv_norm_out = register_module("conv_norm_out", GroupNorm(groups, ch[0], eps));
  conv_out = register_module("conv_out", Conv2d(ch[0], c.out_channels, c.conv_out_kernel, 1, c.conv_out_kernel / 2));
}

torch::Tensor UNet2DConditionImpl::embed_time(const torch::Tensor& sample, const torch::Tensor& timesteps,
                                              const AddedConditions& added) {
  const int64_t batch = sample.size(0);
  auto t = timesteps.reshape({-1}).to(sample.device());  // a sampler's timestep lives on the CPU
  if (t.numel() == 1) t = t.expand({batch});
  if (t.numel() != batch) throw Error("unet", "expected one timestep or one per batch item");
  auto t_emb = timestep_embedding(t, config.block_out_channels[0], config.flip_sin_to_cos, config.freq_shift)
                   .to(sample.scalar_type());
  auto emb = time_linear_2(torch::silu(time_linear_1(t_emb)));
  if (config.addition_embed_type == "text_time") {
    if (!added.text_embeds.defined() || !added.time_ids.defined())
      throw Error("unet", "this SDXL-type UNet needs text_embeds and time_ids");
    auto ids = timestep_embedding(added.time_ids.reshape({-1}).to(sample.device()), config.addition_time_embed_dim,
                                  config.flip_sin_to_cos, config.freq_shift)
                   .reshape({batch, -1});
    auto add = torch::cat({added.text_embeds.to(sample.device()), ids.to(added.text_embeds.scalar_type())}, -1)
                   .to(emb.scalar_type());
    if (add.size(1) != config.projection_class_embeddings_input_dim)
      throw Error("unet", "added conditions have " + std::to_string(add.size(1)) + " features, the model expects " +
                              std::to_string(config.projection_class_embeddings_input_dim));
    emb = emb + add_linear_2(torch::silu(add_linear_1(add)));
  }
  return emb;
}

torch::Tensor UNet2DConditionImpl::forward(const torch::Tensor& sample_in, const torch::Tensor& timesteps,
                                           const torch::Tensor& context, const AddedConditions& added) {
  if (sample_in.dim() != 4 || sample_in.size(1) != config.in_channels)
    throw Error("unet", "sample must be [B," + std::to_string(config.in_channels) + ",H,W]");
  auto sample = config.center_input_sample ? sample_in * 2.0 - 1.0 : sample_in;
  auto emb = embed_time(sample, timesteps, added);

  const bool checkpointing = gradient_checkpointing_ && torch::GradMode::is_enabled();
  // Runs fn on {h, skip, emb, context}, checkpointed when training asks for it.
  auto run = [&](const CheckpointedFn& fn, const torch::Tensor& h, const torch::Tensor& skip) {
    const std::vector<torch::Tensor> inputs{h, skip, emb, context};
    return checkpointing ? checkpoint(fn, inputs) : fn(inputs);
  };

  // Layer j of a level: the skip (on the way up) concatenated, the ResNet, its attention.
  // The closure owns the modules, as the autograd graph may outlive this call.
  auto run_level = [&](UNetLevelImpl& level, torch::Tensor h, std::vector<torch::Tensor>* skips,
                       std::vector<torch::Tensor>* outputs) {
    for (size_t j = 0; j < level.resnets->size(); ++j) {
      torch::Tensor skip;
      if (skips) {
        skip = skips->back();
        skips->pop_back();
      }
      auto resnet = level.resnets->ptr<ResnetBlock2DImpl>(j);
      auto attention = level.attentions ? level.attentions->ptr<Transformer2DImpl>(j) : nullptr;
      auto layer = [resnet, attention](const std::vector<torch::Tensor>& in) {
        auto x = in[1].defined() ? torch::cat({in[0], in[1]}, 1) : in[0];
        x = resnet->forward(x, in[2]);
        return attention ? attention->forward(x, in[3]) : x;
      };
      h = run(layer, h, skip);
      if (outputs) outputs->push_back(h);
    }
    return h;
  };

  auto h = conv_in(sample);
  std::vector<torch::Tensor> skips{h};
  for (const auto& m : *down_blocks) {
    auto& level = *m->as<UNetLevel>();
    h = run_level(level, h, nullptr, &skips);
    if (level.samplers) {
      h = level.samplers[0]->as<Downsample2D>()->forward(h);
      skips.push_back(h);
    }
  }
  if (mid_block) {
    auto first = mid_block->resnets->ptr<ResnetBlock2DImpl>(0), second = mid_block->resnets->ptr<ResnetBlock2DImpl>(1);
    auto attention = mid_block->attentions->ptr<Transformer2DImpl>(0);
    auto mid = [first, second, attention](const std::vector<torch::Tensor>& in) {
      auto x = first->forward(in[0], in[2]);
      x = attention->forward(x, in[3]);
      return second->forward(x, in[2]);
    };
    h = run(mid, h, {});
  }
  for (const auto& m : *up_blocks) {
    auto& level = *m->as<UNetLevel>();
    h = run_level(level, h, &skips, nullptr);
    if (level.samplers) {
      // Upsample to the next skip's size, so sizes not divisible by the factor work.
      auto size = skips.back().sizes().slice(2).vec();
      h = level.samplers[0]->as<Upsample2D>()->forward(h, size);
    }
  }
  return conv_out(conv_norm_out->forward_silu(h));
}

}  // namespace lumen::nn
