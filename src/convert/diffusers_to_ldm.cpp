#include "convert/diffusers_to_ldm.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "convert/key_path.h"
#include "error.h"

namespace lumen {
namespace {

using Parts = key_path::Parts;
using Renames = std::vector<std::pair<std::string, std::string>>;
using Shape = std::vector<int64_t>;

using key_path::join_from;
using key_path::parse_index;
using key_path::split_dots;
using key_path::starts_with;

bool is_param_leaf(const std::string& s) { return s == "weight" || s == "bias"; }

// "<from>.weight|bias" -> "<to>.weight|bias".
std::optional<std::string> rename_param(const std::string& tail, const Renames& table) {
  for (const auto& [from, to] : table)
    if (starts_with(tail, from + ".") && is_param_leaf(tail.substr(from.size() + 1))) return to + tail.substr(from.size());
  return std::nullopt;
}

std::optional<std::string> prefixed(const std::string& prefix, const std::optional<std::string>& tail) {
  if (!tail) return std::nullopt;
  return prefix + *tail;
}

std::string str(int i) { return std::to_string(i); }

// ---------------------------------------------------------------- UNet

std::optional<std::string> unet_resnet(const std::string& tail) {
  static const Renames kResnet = {{"norm1", "in_layers.0"},          {"conv1", "in_layers.2"},
                                  {"norm2", "out_layers.0"},         {"conv2", "out_layers.3"},
                                  {"time_emb_proj", "emb_layers.1"}, {"conv_shortcut", "skip_connection"}};
  return rename_param(tail, kResnet);
}

struct UnetLayout {
  int layers_per_block = 0;
  std::set<int> up_levels_with_attention;
};

std::optional<std::string> unet_key(const std::string& key, const UnetLayout& u) {
  static const Renames kTop = {{"time_embedding.linear_1", "time_embed.0"},
                               {"time_embedding.linear_2", "time_embed.2"},
                               {"add_embedding.linear_1", "label_emb.0.0"},
                               {"add_embedding.linear_2", "label_emb.0.2"},
                               {"conv_in", "input_blocks.0.0"},
                               {"conv_norm_out", "out.0"},
                               {"conv_out", "out.2"}};
  if (auto top = rename_param(key, kTop)) return top;
  const Parts p = split_dots(key);
  const int lpb = u.layers_per_block;
  if (p[0] == "mid_block" && p.size() >= 4) {
    const int j = parse_index(p[2]);
    const std::string tail = join_from(p, 3);
    if (p[1] == "resnets" && (j == 0 || j == 1)) return prefixed("middle_block." + str(2 * j) + ".", unet_resnet(tail));
    if (p[1] == "attentions" && j == 0) return "middle_block.1." + tail;
    return std::nullopt;
  }
  if (p.size() < 5 || (p[0] != "down_blocks" && p[0] != "up_blocks")) return std::nullopt;
  const int level = parse_index(p[1]), j = parse_index(p[3]);
  if (level < 0 || j < 0) return std::nullopt;
  const std::string& kind = p[2];
  const std::string tail = join_from(p, 4);
  if (p[0] == "down_blocks") {
    const int base = 1 + level * (lpb + 1);
    if (kind == "resnets") return prefixed("input_blocks." + str(base + j) + ".0.", unet_resnet(tail));
    if (kind == "attentions") return "input_blocks." + str(base + j) + ".1." + tail;
    if (kind == "downsamplers" && j == 0)
      return prefixed("input_blocks." + str(base + lpb) + ".0.", rename_param(tail, {{"conv", "op"}}));
    return std::nullopt;
  }
  const int base = level * (lpb + 1);
  if (kind == "resnets") return prefixed("output_blocks." + str(base + j) + ".0.", unet_resnet(tail));
  if (kind == "attentions") return "output_blocks." + str(base + j) + ".1." + tail;
  if (kind == "upsamplers" && j == 0) {
    const int slot = u.up_levels_with_attention.count(level) ? 2 : 1;
    return prefixed("output_blocks." + str(base + lpb) + "." + str(slot) + ".", rename_param(tail, {{"conv", "conv"}}));
  }
  return std::nullopt;
}

UnetLayout unet_layout(const std::vector<TensorInfo>& tensors, const nlohmann::json& config) {
  UnetLayout u;
  const auto lpb = config.find("layers_per_block");
  if (lpb != config.end() && lpb->is_number_integer()) {
    u.layers_per_block = lpb->get<int>();
  } else if (lpb != config.end() && lpb->is_array() && !lpb->empty()) {
    // The LDM layout has one count for every level.
    for (const auto& v : *lpb)
      if (v != lpb->front()) throw Error("unet config", "per-level layers_per_block has no single-file layout");
    u.layers_per_block = lpb->front().get<int>();
  } else {
    int max_resnet = -1;  // fall back to the keys: down_blocks.0.resnets.<N>
    for (const auto& t : tensors) {
      const Parts p = split_dots(t.key);
      if (p.size() > 3 && p[0] == "down_blocks" && p[1] == "0" && p[2] == "resnets")
        max_resnet = std::max(max_resnet, parse_index(p[3]));
    }
    u.layers_per_block = max_resnet + 1;
  }
  if (u.layers_per_block < 1) throw Error("unet config", "no usable layers_per_block");
  for (const auto& t : tensors) {
    const Parts p = split_dots(t.key);
    if (p.size() > 3 && p[0] == "up_blocks" && p[2] == "attentions") u.up_levels_with_attention.insert(parse_index(p[1]));
  }
  return u;
}

// ---------------------------------------------------------------- VAE

std::optional<std::string> vae_resnet(const std::string& tail) {
  static const Renames kResnet = {
      {"norm1", "norm1"}, {"conv1", "conv1"}, {"norm2", "norm2"}, {"conv2", "conv2"}, {"conv_shortcut", "nin_shortcut"}};
  return rename_param(tail, kResnet);
}

// LDM name and transform of a VAE key; `up_levels`: decoder levels (LDM numbers them in reverse).
std::optional<std::pair<std::string, Transform>> vae_key(const std::string& key, const Shape& shape, int up_levels) {
  auto copy = [](std::optional<std::string> k) -> std::optional<std::pair<std::string, Transform>> {
    if (!k) return std::nullopt;
    return std::make_pair(*k, Transform::Copy);
  };
  if (auto conv = rename_param(key, {{"quant_conv", "quant_conv"}, {"post_quant_conv", "post_quant_conv"}}))
    return copy(conv);
  const Parts p = split_dots(key);
  if (p.size() < 3 || (p[0] != "encoder" && p[0] != "decoder")) return std::nullopt;
  const std::string& coder = p[0];
  const std::string tail = join_from(p, 1);
  if (auto io = rename_param(tail, {{"conv_in", "conv_in"}, {"conv_out", "conv_out"}, {"conv_norm_out", "norm_out"}}))
    return copy(coder + "." + *io);
  if (p[1] == "mid_block" && p.size() >= 5) {
    const int j = parse_index(p[3]);
    const std::string rest = join_from(p, 4);
    if (p[2] == "resnets" && (j == 0 || j == 1))
      return copy(prefixed(coder + ".mid.block_" + str(j + 1) + ".", vae_resnet(rest)));
    if (p[2] == "attentions" && j == 0) {
      static const Renames kAttn = {
          {"group_norm", "norm"}, {"to_q", "q"}, {"to_k", "k"}, {"to_v", "v"}, {"to_out.0", "proj_out"}};
      const auto renamed = rename_param(rest, kAttn);
      if (!renamed) return std::nullopt;
      // diffusers' reshape_weight_for_sd: linear q/k/v/proj_out weights become 1x1 convs.
      const bool linear_weight = shape.size() == 2 && rest != "group_norm.weight";
      return std::make_pair(coder + ".mid.attn_1." + *renamed, linear_weight ? Transform::Squeeze1x1 : Transform::Copy);
    }
    return std::nullopt;
  }
  const bool down = coder == "encoder";
  if (p.size() < 5 || p[1] != (down ? "down_blocks" : "up_blocks")) return std::nullopt;
  const int level = parse_index(p[2]), j = parse_index(p[4]);
  if (level < 0 || j < 0) return std::nullopt;
  const int ldm_level = down ? level : up_levels - 1 - level;
  const std::string block = coder + (down ? ".down." : ".up.") + str(ldm_level) + ".";
  const std::string rest = join_from(p, 5);
  if (p[3] == "resnets") return copy(prefixed(block + "block." + str(j) + ".", vae_resnet(rest)));
  if (p[3] == (down ? "downsamplers" : "upsamplers") && j == 0)
    return copy(prefixed(block + (down ? "downsample." : "upsample."), rename_param(rest, {{"conv", "conv"}})));
  return std::nullopt;
}

// ---------------------------------------------------------------- text encoders

std::optional<LdmTarget> open_clip_key(const std::string& key, const std::map<std::string, Shape>& shapes) {
  const Shape& shape = shapes.at(key);
  if (key == "text_projection.weight") return LdmTarget{"text_projection", {key}, Transform::Transpose, {shape[1], shape[0]}};
  if (key == "text_model.embeddings.position_embedding.weight")
    return LdmTarget{"positional_embedding", {key}, Transform::Copy, shape};
  static const Renames kTop = {{"text_model.embeddings.token_embedding", "token_embedding"},
                               {"text_model.final_layer_norm", "ln_final"}};
  if (auto top = rename_param(key, kTop)) return LdmTarget{*top, {key}, Transform::Copy, shape};
  const std::string layers = "text_model.encoder.layers.";
  if (!starts_with(key, layers)) return std::nullopt;
  const Parts p = split_dots(key.substr(layers.size()));
  const int n = parse_index(p[0]);
  if (n < 0 || p.size() < 3) return std::nullopt;
  const std::string block = "transformer.resblocks." + str(n) + ".";
  const std::string tail = join_from(p, 1);
  for (const char* proj : {"q_proj", "k_proj", "v_proj"}) {
    const std::string head = std::string("self_attn.") + proj + ".";
    if (!starts_with(tail, head) || !is_param_leaf(tail.substr(head.size()))) continue;
    const std::string leaf = tail.substr(head.size());
    if (std::string(proj) != "q_proj") return LdmTarget{};  // emitted with q_proj
    LdmTarget t{block + "attn.in_proj_" + leaf, {}, Transform::CatDim0, shape};
    for (const char* part : {"q_proj", "k_proj", "v_proj"}) {
      const std::string k = layers + str(n) + ".self_attn." + part + "." + leaf;
      if (!shapes.count(k)) throw Error(key, std::string("has no matching ") + part + " for the OpenCLIP in_proj");
      t.diffusers_keys.push_back(k);
    }
    t.shape[0] *= 3;
    return t;
  }
  static const Renames kBlock = {{"self_attn.out_proj", "attn.out_proj"},
                                 {"layer_norm1", "ln_1"},
                                 {"layer_norm2", "ln_2"},
                                 {"mlp.fc1", "mlp.c_fc"},
                                 {"mlp.fc2", "mlp.c_proj"}};
  if (auto renamed = rename_param(tail, kBlock)) return LdmTarget{block + *renamed, {key}, Transform::Copy, shape};
  return std::nullopt;
}

bool is_open_clip(const std::string& component, ModelFamily family) {
  return component == "text_encoder_2" || (component == "text_encoder" && family == ModelFamily::SD2);
}

}  // namespace

std::string ldm_prefix(const std::string& component, ModelFamily family) {
  if (component == "unet") return "model.diffusion_model.";
  if (component == "vae") return "first_stage_model.";
  if (component == "text_encoder") {
    switch (family) {
      case ModelFamily::SD1:
        return "cond_stage_model.transformer.";
      case ModelFamily::SD2:
        return "cond_stage_model.model.";
      case ModelFamily::SDXL:
        return "conditioner.embedders.0.transformer.";
      default:
        break;
    }
  }
  if (component == "text_encoder_2") {
    if (family == ModelFamily::SDXL) return "conditioner.embedders.1.model.";
    if (family == ModelFamily::SDXLRefiner) return "conditioner.embedders.0.model.";
  }
  throw Error(component, std::string("has no single-file layout for family ") + family_name(family));
}

LdmTargets map_diffusers_to_ldm(const std::string& component, const std::vector<TensorInfo>& tensors,
                                const nlohmann::json& config, ModelFamily family) {
  const std::string prefix = ldm_prefix(component, family);
  std::map<std::string, Shape> shapes;
  for (const auto& t : tensors) shapes[t.key] = t.shape;
  LdmTargets out;
  auto add = [&](std::optional<LdmTarget> t, const std::string& key) {
    if (!t) {
      out.unmapped.push_back(key);
    } else if (!t->ldm_key.empty()) {
      t->ldm_key = prefix + t->ldm_key;
      out.targets.push_back(std::move(*t));
    }
  };
  if (component == "unet") {
    const UnetLayout layout = unet_layout(tensors, config);
    for (const auto& t : tensors) {
      auto k = unet_key(t.key, layout);
      add(k ? std::optional<LdmTarget>(LdmTarget{*k, {t.key}, Transform::Copy, t.shape}) : std::nullopt, t.key);
    }
  } else if (component == "vae") {
    int up_levels = 0;
    for (const auto& t : tensors) {
      const Parts p = split_dots(t.key);
      if (p.size() > 2 && p[0] == "decoder" && p[1] == "up_blocks") up_levels = std::max(up_levels, parse_index(p[2]) + 1);
    }
    for (const auto& t : tensors) {
      auto k = vae_key(t.key, t.shape, up_levels);
      if (!k) {
        add(std::nullopt, t.key);
        continue;
      }
      Shape shape = t.shape;
      if (k->second == Transform::Squeeze1x1) shape.insert(shape.end(), {1, 1});
      add(LdmTarget{k->first, {t.key}, k->second, shape}, t.key);
    }
  } else if (is_open_clip(component, family)) {
    for (const auto& t : tensors) add(open_clip_key(t.key, shapes), t.key);
  } else {
    for (const auto& t : tensors)
      add(starts_with(t.key, "text_model.") ? std::optional<LdmTarget>(LdmTarget{t.key, {t.key}, Transform::Copy, t.shape})
                                            : std::nullopt,
          t.key);
  }
  std::sort(out.targets.begin(), out.targets.end(),
            [](const LdmTarget& a, const LdmTarget& b) { return a.ldm_key < b.ldm_key; });

  // Round trip: the loader's map must send every name back where it came from.
  std::vector<TensorInfo> ldm;
  for (const auto& t : out.targets) ldm.push_back({t.ldm_key, t.shape, "F32"});
  const KeyMapResult back = map_ldm_to_diffusers(ldm);
  std::map<std::string, const KeyMapping*> by_ldm;
  for (const auto& m : back.mapped) by_ldm[m.ldm_key] = &m;
  for (const auto& t : out.targets) {
    auto it = by_ldm.find(t.ldm_key);
    if (it == by_ldm.end()) {
      // diffusers' script also writes SD2's last OpenCLIP block, which its loader (and ours) skips.
      const std::string dropped = "cond_stage_model.model.transformer.resblocks." + str(kSd2UnusedOpenClipBlock) + ".";
      if (starts_with(t.ldm_key, dropped)) continue;
      throw Error(t.ldm_key, "is not read back by the single-file loader (key-map inconsistency)");
    }
    const KeyMapping& m = *it->second;
    if (m.component != component || m.diffusers_keys != t.diffusers_keys || m.transform != t.transform)
      throw Error(t.ldm_key, "reads back as " + m.component + "/" + m.diffusers_keys.front() + " (" +
                                 transform_name(m.transform) + "), not " + component + "/" + t.diffusers_keys.front() +
                                 " (key-map inconsistency)");
  }
  return out;
}

}  // namespace lumen
