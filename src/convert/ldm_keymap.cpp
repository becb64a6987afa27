#include "convert/ldm_keymap.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <utility>

#include "convert/key_path.h"

namespace lumen {
namespace {

const std::string kUnetPrefix = "model.diffusion_model.";
const std::string kVaePrefix = "first_stage_model.";
const std::string kSd2OpenClipPrefix = "cond_stage_model.model.";

using Parts = key_path::Parts;
using Renames = std::vector<std::pair<std::string, std::string>>;

using key_path::join_from;
using key_path::parse_index;
using key_path::split_dots;
using key_path::starts_with;

// Index following `prefix` in `key` ("a.b.<N>.rest"), or -1.
int index_after(const std::string& key, const std::string& prefix) {
  if (!starts_with(key, prefix)) return -1;
  const size_t dot = key.find('.', prefix.size());
  if (dot == std::string::npos) return -1;
  return parse_index(key.substr(prefix.size(), dot - prefix.size()));
}

bool is_param_leaf(const std::string& s) { return s == "weight" || s == "bias"; }

// Replaces the first matching "<from>." prefix of `tail` by "<to>." and
// requires a plain weight/bias after it.
std::optional<std::string> rename_param(const std::string& tail, const Renames& table) {
  for (const auto& [from, to] : table) {
    if (starts_with(tail, from + ".") && is_param_leaf(tail.substr(from.size() + 1)))
      return to + tail.substr(from.size());
  }
  return std::nullopt;
}

std::optional<std::string> prefixed(const std::string& prefix, std::optional<std::string> tail) {
  if (!tail) return std::nullopt;
  return prefix + *tail;
}

KeyMapping make(const std::string& ldm_key, const char* component, std::string key,
                Transform t = Transform::Copy) {
  return KeyMapping{ldm_key, component, {std::move(key)}, t};
}

// ---------------------------------------------------------------- UNet

std::optional<std::string> unet_resnet(const std::string& tail) {
  static const Renames kResnet = {{"in_layers.0", "norm1"},          {"in_layers.2", "conv1"},
                                  {"out_layers.0", "norm2"},         {"out_layers.3", "conv2"},
                                  {"emb_layers.1", "time_emb_proj"}, {"skip_connection", "conv_shortcut"}};
  return rename_param(tail, kResnet);
}

std::optional<std::string> unet_input_block(int i, int j, const std::string& tail, int lpb) {
  if (i < 1 || lpb < 1) return std::nullopt;
  const int level = (i - 1) / (lpb + 1), layer = (i - 1) % (lpb + 1);
  const std::string block = "down_blocks." + std::to_string(level) + ".";
  if (j == 0 && starts_with(tail, "op."))
    return prefixed(block + "downsamplers.0.", rename_param(tail, {{"op", "conv"}}));
  if (j == 0) return prefixed(block + "resnets." + std::to_string(layer) + ".", unet_resnet(tail));
  if (j == 1) return block + "attentions." + std::to_string(layer) + "." + tail;
  return std::nullopt;
}

std::optional<std::string> unet_output_block(int i, int j, const std::string& tail, int lpb) {
  if (lpb < 1) return std::nullopt;
  const int level = i / (lpb + 1), layer = i % (lpb + 1);
  const std::string block = "up_blocks." + std::to_string(level) + ".";
  if (j == 0) return prefixed(block + "resnets." + std::to_string(layer) + ".", unet_resnet(tail));
  // The upsampler follows the resnet (and the attention, if the level has one).
  if (starts_with(tail, "conv."))
    return prefixed(block + "upsamplers.0.", rename_param(tail, {{"conv", "conv"}}));
  if (j == 1) return block + "attentions." + std::to_string(layer) + "." + tail;
  return std::nullopt;
}

std::optional<std::string> unet_middle_block(int j, const std::string& tail) {
  if (j == 0) return prefixed("mid_block.resnets.0.", unet_resnet(tail));
  if (j == 1) return "mid_block.attentions.0." + tail;
  if (j == 2) return prefixed("mid_block.resnets.1.", unet_resnet(tail));
  return std::nullopt;
}

std::optional<std::string> unet_key(const std::string& rest, int lpb) {
  static const Renames kTop = {{"time_embed.0", "time_embedding.linear_1"},
                               {"time_embed.2", "time_embedding.linear_2"},
                               {"label_emb.0.0", "add_embedding.linear_1"},
                               {"label_emb.0.2", "add_embedding.linear_2"},
                               {"input_blocks.0.0", "conv_in"},
                               {"out.0", "conv_norm_out"},
                               {"out.2", "conv_out"}};
  if (auto top = rename_param(rest, kTop)) return top;
  const Parts p = split_dots(rest);
  if (p.size() < 3) return std::nullopt;
  const int i = parse_index(p[1]);
  if (p[0] == "middle_block" && i >= 0) return unet_middle_block(i, join_from(p, 2));
  const int j = p.size() < 4 ? -1 : parse_index(p[2]);
  if (i < 0 || j < 0) return std::nullopt;
  const std::string tail = join_from(p, 3);
  if (p[0] == "input_blocks") return unet_input_block(i, j, tail, lpb);
  if (p[0] == "output_blocks") return unet_output_block(i, j, tail, lpb);
  return std::nullopt;
}

// ---------------------------------------------------------------- VAE

std::optional<std::string> vae_resnet(const std::string& tail) {
  static const Renames kResnet = {{"norm1", "norm1"},
                                  {"conv1", "conv1"},
                                  {"norm2", "norm2"},
                                  {"conv2", "conv2"},
                                  {"nin_shortcut", "conv_shortcut"}};
  return rename_param(tail, kResnet);
}

// encoder.down.i / decoder.up.i level: resnets and the resampler. Decoder
// levels are numbered in reverse (LDM up.0 is the last, full-resolution one).
std::optional<std::string> vae_level(const Parts& p, int level_out) {
  if (p.size() < 5 || level_out < 0) return std::nullopt;
  const bool down = p[1] == "down";
  const std::string block = (down ? "down_blocks." : "up_blocks.") + std::to_string(level_out) + ".";
  if (p[3] == "block" && parse_index(p[4]) >= 0 && p.size() >= 6)
    return prefixed(block + "resnets." + p[4] + ".", vae_resnet(join_from(p, 5)));
  if (p[3] == (down ? "downsample" : "upsample"))
    return prefixed(block + (down ? "downsamplers.0." : "upsamplers.0."),
                    rename_param(join_from(p, 4), {{"conv", "conv"}}));
  return std::nullopt;
}

std::optional<KeyMapping> vae_mid_attention(const std::string& ldm_key, const std::string& coder,
                                            const std::string& tail, const std::vector<int64_t>& shape) {
  static const Renames kAttn = {
      {"norm", "group_norm"}, {"q", "to_q"}, {"k", "to_k"}, {"v", "to_v"}, {"proj_out", "to_out.0"}};
  const auto renamed = rename_param(tail, kAttn);
  if (!renamed) return std::nullopt;
  // LDM stores q/k/v/proj_out as 1x1 convs; diffusers uses linear layers.
  const bool conv1x1 = shape.size() == 4 && shape[2] == 1 && shape[3] == 1;
  return make(ldm_key, "vae", coder + ".mid_block.attentions.0." + *renamed,
              conv1x1 ? Transform::Squeeze1x1 : Transform::Copy);
}

std::optional<KeyMapping> vae_mapping(const TensorInfo& t, int decoder_levels) {
  const std::string rest = t.key.substr(kVaePrefix.size());
  if (auto conv = rename_param(rest, {{"quant_conv", "quant_conv"}, {"post_quant_conv", "post_quant_conv"}}))
    return make(t.key, "vae", *conv);
  const Parts p = split_dots(rest);
  if (p.size() < 3 || (p[0] != "encoder" && p[0] != "decoder")) return std::nullopt;
  const std::string& coder = p[0];
  const std::string tail = join_from(p, 1);
  std::optional<std::string> key;
  if (auto io = rename_param(
          tail, {{"conv_in", "conv_in"}, {"conv_out", "conv_out"}, {"norm_out", "conv_norm_out"}})) {
    key = io;
  } else if (p[1] == "mid" && p[2] == "attn_1") {
    return vae_mid_attention(t.key, coder, join_from(p, 3), t.shape);
  } else if (p[1] == "mid" && (p[2] == "block_1" || p[2] == "block_2")) {
    key = prefixed(p[2] == "block_1" ? "mid_block.resnets.0." : "mid_block.resnets.1.",
                   vae_resnet(join_from(p, 3)));
  } else if ((coder == "encoder" && p[1] == "down") || (coder == "decoder" && p[1] == "up")) {
    const int i = parse_index(p[2]);
    key = vae_level(p, coder == "encoder" || i < 0 ? i : decoder_levels - 1 - i);
  }
  if (!key) return std::nullopt;
  return make(t.key, "vae", coder + "." + *key);
}

// ---------------------------------------------------------------- text encoders

// HF CLIPTextModel stored as is under a prefix (SD1.x, SDXL embedders.0).
std::optional<KeyMapping> hf_clip_mapping(const std::string& ldm_key, const std::string& prefix) {
  const std::string rest = ldm_key.substr(prefix.size());
  // position_ids is a buffer that transformers recreates; not a weight.
  if (!starts_with(rest, "text_model.") || rest == "text_model.embeddings.position_ids") return std::nullopt;
  return make(ldm_key, "text_encoder", rest);
}

struct OpenClipSource {
  std::string prefix;
  const char* component;
  bool keeps_projection;  // CLIPTextModelWithProjection (SDXL) vs CLIPTextModel (SD2)
  int dropped_block;      // resblock diffusers ignores (SD2's last one), or -1
};

std::optional<KeyMapping> open_clip_block(const std::string& ldm_key, const OpenClipSource& src, int block,
                                          const std::string& tail) {
  const std::string layer = "text_model.encoder.layers." + std::to_string(block) + ".";
  if (tail == "attn.in_proj_weight" || tail == "attn.in_proj_bias") {
    const std::string leaf = tail == "attn.in_proj_weight" ? "weight" : "bias";
    std::vector<std::string> qkv;
    for (const char* proj : {"q_proj", "k_proj", "v_proj"})
      qkv.push_back(layer + "self_attn." + proj + "." + leaf);
    return KeyMapping{ldm_key, src.component, qkv, Transform::CatDim0};
  }
  static const Renames kBlock = {{"attn.out_proj", "self_attn.out_proj"},
                                 {"ln_1", "layer_norm1"},
                                 {"ln_2", "layer_norm2"},
                                 {"mlp.c_fc", "mlp.fc1"},
                                 {"mlp.c_proj", "mlp.fc2"}};
  const auto renamed = rename_param(tail, kBlock);
  if (!renamed) return std::nullopt;
  return make(ldm_key, src.component, layer + *renamed);
}

std::optional<KeyMapping> open_clip_mapping(const std::string& ldm_key, const OpenClipSource& src) {
  const std::string rest = ldm_key.substr(src.prefix.size());
  if (rest == "text_projection") {
    if (!src.keeps_projection) return std::nullopt;
    return make(ldm_key, src.component, "text_projection.weight", Transform::Transpose);
  }
  if (rest == "positional_embedding")
    return make(ldm_key, src.component, "text_model.embeddings.position_embedding.weight");
  static const Renames kTop = {{"token_embedding", "text_model.embeddings.token_embedding"},
                               {"ln_final", "text_model.final_layer_norm"}};
  if (auto top = rename_param(rest, kTop)) return make(ldm_key, src.component, *top);
  const std::string blocks = "transformer.resblocks.";
  const int block = index_after(rest, blocks);
  if (block < 0 || block == src.dropped_block) return std::nullopt;
  const std::string tail = rest.substr(rest.find('.', blocks.size()) + 1);
  return open_clip_block(ldm_key, src, block, tail);
}

// ---------------------------------------------------------------- dispatch

struct Context {
  int unet_layers_per_block = 0;  // 0: unknown, UNet block keys stay unmapped
  int vae_decoder_levels = 0;
  std::vector<OpenClipSource> open_clip;
};

int count_indices(const std::vector<TensorInfo>& tensors, const std::string& prefix) {
  int max_index = -1;
  for (const auto& t : tensors) max_index = std::max(max_index, index_after(t.key, prefix));
  return max_index + 1;
}

Context make_context(const std::vector<TensorInfo>& tensors) {
  Context ctx;
  if (auto layout = ldm_unet_layout(tensors)) ctx.unet_layers_per_block = layout->layers_per_block;
  ctx.vae_decoder_levels = count_indices(tensors, kVaePrefix + "decoder.up.");
  ctx.open_clip = {{kSd2OpenClipPrefix, "text_encoder", false, kSd2UnusedOpenClipBlock},
                   {"conditioner.embedders.1.model.", "text_encoder_2", true, -1},
                   // SDXL refiner: its only embedder is OpenCLIP-bigG.
                   {"conditioner.embedders.0.model.", "text_encoder_2", true, -1}};
  return ctx;
}

std::optional<KeyMapping> map_one(const TensorInfo& t, const Context& ctx) {
  const std::string& key = t.key;
  if (starts_with(key, kUnetPrefix)) {
    auto k = unet_key(key.substr(kUnetPrefix.size()), ctx.unet_layers_per_block);
    if (!k) return std::nullopt;
    return make(key, "unet", *k);
  }
  if (starts_with(key, kVaePrefix)) return vae_mapping(t, ctx.vae_decoder_levels);
  for (const char* prefix : {"cond_stage_model.transformer.", "conditioner.embedders.0.transformer."})
    if (starts_with(key, prefix)) return hf_clip_mapping(key, prefix);
  for (const auto& src : ctx.open_clip)
    if (starts_with(key, src.prefix)) return open_clip_mapping(key, src);
  return std::nullopt;
}

}  // namespace

std::optional<LdmUnetLayout> ldm_unet_layout(const std::vector<TensorInfo>& tensors) {
  const std::string blocks = kUnetPrefix + "input_blocks.";
  std::set<int> downsamplers;
  int max_block = -1;
  for (const auto& t : tensors) {
    const int i = index_after(t.key, blocks);
    if (i < 0) continue;
    max_block = std::max(max_block, i);
    if (starts_with(t.key, blocks + std::to_string(i) + ".0.op.")) downsamplers.insert(i);
  }
  LdmUnetLayout layout;
  layout.levels = static_cast<int>(downsamplers.size()) + 1;
  // Level k has layers_per_block resnets then a downsampler (not the last level).
  layout.layers_per_block = downsamplers.empty() ? max_block : *downsamplers.begin() - 1;
  if (layout.layers_per_block < 1) return std::nullopt;
  return layout;
}

KeyMapResult map_ldm_to_diffusers(const std::vector<TensorInfo>& tensors) {
  const Context ctx = make_context(tensors);
  KeyMapResult result;
  for (const auto& t : tensors) {
    if (auto m = map_one(t, ctx))
      result.mapped.push_back(std::move(*m));
    else
      result.unmapped.push_back(t.key);
  }
  return result;
}

const char* transform_name(Transform t) {
  switch (t) {
    case Transform::Copy:
      return "copy";
    case Transform::Squeeze1x1:
      return "squeeze_1x1";
    case Transform::Transpose:
      return "transpose";
    case Transform::CatDim0:
      return "cat_dim0";
  }
  return "?";
}

}  // namespace lumen
