#include "convert/arch_detect.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>

#include "error.h"

namespace lumen {
namespace {

using nlohmann::json;

const std::string kUnet = "model.diffusion_model.";
const std::string kVae = "first_stage_model.";
const std::string kSd1Clip = "cond_stage_model.transformer.text_model.";
const std::string kSd2OpenClip = "cond_stage_model.model.";
const std::string kSdxlClip = "conditioner.embedders.0.transformer.text_model.";
const std::string kSdxlOpenClip = "conditioner.embedders.1.model.";
const std::string kRefinerOpenClip = "conditioner.embedders.0.model.";

std::string str(int64_t v) { return std::to_string(v); }

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// Key -> shape lookup that names the file in every failure.
class Shapes {
 public:
  Shapes(const std::vector<TensorInfo>& tensors, std::string file) : file_(std::move(file)) {
    for (const auto& t : tensors) shapes_[t.key] = t.shape;
  }

  bool has(const std::string& key) const { return shapes_.count(key) != 0; }

  bool has_prefix(const std::string& prefix) const {
    auto it = shapes_.lower_bound(prefix);
    return it != shapes_.end() && starts_with(it->first, prefix);
  }

  const std::vector<int64_t>& shape(const std::string& key) const {
    auto it = shapes_.find(key);
    if (it == shapes_.end()) fail("expected tensor '" + key + "' is missing");
    return it->second;
  }

  int64_t dim(const std::string& key, size_t d) const {
    const auto& s = shape(key);
    if (d >= s.size())
      fail("tensor '" + key + "' has " + str(s.size()) + " dims, expected more than " + str(d));
    return s[d];
  }

  // Number of consecutive indices N (from 0) with keys "<prefix><N>.*".
  int count(const std::string& prefix) const {
    int n = 0;
    while (has_prefix(prefix + std::to_string(n) + ".")) ++n;
    return n;
  }

  [[noreturn]] void fail(const std::string& problem) const { throw Error(file_, problem); }

 private:
  std::map<std::string, std::vector<int64_t>> shapes_;
  std::string file_;
};

// ---------------------------------------------------------------- UNet

struct UnetFacts {
  json config;
  std::vector<int64_t> channels;
  int64_t cross_attention_dim = 0;
  int64_t addition_in_dim = 0;  // label_emb input width (SDXL text_time), 0 if absent
  bool linear_projection = false;
};

std::string input_block(int i) { return kUnet + "input_blocks." + std::to_string(i) + "."; }
std::string output_block(int i) { return kUnet + "output_blocks." + std::to_string(i) + "."; }

// transformer_layers_per_block from the per-level depths (0: no attention).
// diffusers also feeds the last level's value to the mid block, so that is
// the one value a level without attention must carry; the others are unused.
json transformer_depths(std::vector<int> depths, int mid_depth, std::vector<std::string>& notes) {
  const bool uniform =
      std::all_of(depths.begin(), depths.end(), [&](int d) { return d == 0 || d == mid_depth; });
  if (uniform) return mid_depth;
  if (depths.back() != 0 && depths.back() != mid_depth)
    notes.push_back("unet: mid-block transformer depth " + std::to_string(mid_depth) +
                    " differs from the last level's; diffusers uses the last level's");
  if (depths.back() == 0) depths.back() = mid_depth;
  for (int& d : depths) d = d == 0 ? 1 : d;
  return depths;
}

json unet_defaults() {
  return {{"_class_name", "UNet2DConditionModel"},
          {"act_fn", "silu"},
          {"center_input_sample", false},
          {"class_embed_type", nullptr},
          {"conv_in_kernel", 3},
          {"conv_out_kernel", 3},
          {"downsample_padding", 1},
          {"dual_cross_attention", false},
          {"flip_sin_to_cos", true},
          {"freq_shift", 0},
          {"mid_block_scale_factor", 1},
          {"mid_block_type", "UNetMidBlock2DCrossAttn"},
          {"norm_eps", 1e-5},
          {"norm_num_groups", 32},
          {"num_attention_heads", nullptr},
          {"num_class_embeds", nullptr},
          {"only_cross_attention", false},
          {"resnet_time_scale_shift", "default"},
          {"time_embedding_type", "positional"},
          {"addition_embed_type", nullptr},
          {"addition_time_embed_dim", nullptr},
          {"projection_class_embeddings_input_dim", nullptr}};
}

UnetFacts detect_unet(const Shapes& s, const std::vector<TensorInfo>& tensors,
                      std::vector<std::string>& notes) {
  if (!s.has_prefix(kUnet))
    s.fail("not a Stable Diffusion checkpoint: no UNet tensors (model.diffusion_model.*)");
  const auto layout = ldm_unet_layout(tensors);
  if (!layout) s.fail("UNet layout not recognised: no model.diffusion_model.input_blocks.N resnets");
  const int lpb = layout->layers_per_block, levels = layout->levels;

  UnetFacts f;
  std::vector<int> depths;
  json down_types = json::array(), up_types = json::array();
  std::string first_attention;
  for (int level = 0; level < levels; ++level) {
    const std::string block = input_block(1 + level * (lpb + 1));
    f.channels.push_back(s.dim(block + "0.out_layers.3.weight", 0));
    const bool attention = s.has(block + "1.proj_in.weight");
    if (attention && first_attention.empty()) first_attention = block + "1.";
    depths.push_back(attention ? std::max(1, s.count(block + "1.transformer_blocks.")) : 0);
    down_types.push_back(attention ? "CrossAttnDownBlock2D" : "DownBlock2D");
    const bool up_attention = s.has(output_block(level * (lpb + 1)) + "1.proj_in.weight");
    up_types.push_back(up_attention ? "CrossAttnUpBlock2D" : "UpBlock2D");
  }
  if (first_attention.empty()) s.fail("UNet has no cross-attention blocks: not a Stable Diffusion UNet");
  if (s.count(kUnet + "output_blocks.") != levels * (lpb + 1))
    notes.push_back("unet: output_blocks count does not match " + std::to_string(levels) + " levels x " +
                    std::to_string(lpb + 1) + " layers");
  if (s.dim(kUnet + "time_embed.0.weight", 0) != 4 * f.channels.front())
    notes.push_back(
        "unet: time embedding width is not 4 x block_out_channels[0]; not supported by the config");

  f.linear_projection = s.shape(first_attention + "proj_in.weight").size() == 2;
  f.cross_attention_dim = s.dim(first_attention + "transformer_blocks.0.attn2.to_k.weight", 1);
  if (s.has(kUnet + "label_emb.0.0.weight")) f.addition_in_dim = s.dim(kUnet + "label_emb.0.0.weight", 1);

  f.config = unet_defaults();
  f.config["in_channels"] = s.dim(kUnet + "input_blocks.0.0.weight", 1);
  f.config["out_channels"] = s.dim(kUnet + "out.2.weight", 0);
  f.config["block_out_channels"] = f.channels;
  f.config["layers_per_block"] = lpb;
  f.config["down_block_types"] = down_types;
  f.config["up_block_types"] = up_types;
  const int mid_depth = std::max(1, s.count(kUnet + "middle_block.1.transformer_blocks."));
  f.config["transformer_layers_per_block"] = transformer_depths(depths, mid_depth, notes);
  f.config["use_linear_projection"] = f.linear_projection;
  f.config["cross_attention_dim"] = f.cross_attention_dim;
  return f;
}

// ---------------------------------------------------------------- VAE

json detect_vae(const Shapes& s, std::vector<std::string>& notes) {
  if (!s.has(kVae + "encoder.conv_in.weight")) {
    notes.push_back("vae: no VAE (first_stage_model.*) in the file");
    return nullptr;
  }
  const int levels = s.count(kVae + "encoder.down.");
  const int lpb = s.count(kVae + "encoder.down.0.block.");
  std::vector<int64_t> channels;
  for (int i = 0; i < levels; ++i)
    channels.push_back(s.dim(kVae + "encoder.down." + std::to_string(i) + ".block.0.conv2.weight", 0));
  if (s.count(kVae + "decoder.up.") != levels || s.count(kVae + "decoder.up.0.block.") != lpb + 1)
    notes.push_back("vae: decoder layout does not mirror the encoder");
  return {{"_class_name", "AutoencoderKL"},
          {"act_fn", "silu"},
          {"block_out_channels", channels},
          {"down_block_types", std::vector<std::string>(levels, "DownEncoderBlock2D")},
          {"up_block_types", std::vector<std::string>(levels, "UpDecoderBlock2D")},
          {"in_channels", s.dim(kVae + "encoder.conv_in.weight", 1)},
          {"out_channels", s.dim(kVae + "decoder.conv_out.weight", 0)},
          {"latent_channels", s.dim(kVae + "decoder.conv_in.weight", 1)},
          {"layers_per_block", lpb},
          {"norm_num_groups", 32},
          {"force_upcast", true}};
}

// ---------------------------------------------------------------- text encoders

struct ClipShape {
  int64_t hidden, vocab, positions, intermediate, projection;
  int layers;
};

// Head count cannot be read from weights; CLIP text towers use 64-wide heads.
int64_t clip_heads(int64_t hidden, const std::string& name, std::vector<std::string>& notes) {
  if (hidden >= 64 && hidden % 64 == 0) {
    notes.push_back(name + ": num_attention_heads = hidden_size / 64 (rule, not stored in weights)");
    return hidden / 64;
  }
  notes.push_back(name + ": hidden_size " + str(hidden) +
                  " is not a multiple of 64; num_attention_heads unknown, assumed 1 (override it)");
  return 1;
}

json clip_config(const ClipShape& c, const char* act, const char* architecture, const std::string& name,
                 std::vector<std::string>& notes) {
  return {{"architectures", {architecture}},
          {"model_type", "clip_text_model"},
          {"vocab_size", c.vocab},
          {"hidden_size", c.hidden},
          {"intermediate_size", c.intermediate},
          {"projection_dim", c.projection},
          {"num_hidden_layers", c.layers},
          {"num_attention_heads", clip_heads(c.hidden, name, notes)},
          {"max_position_embeddings", c.positions},
          {"hidden_act", act},
          {"layer_norm_eps", 1e-5},
          {"bos_token_id", 0},
          {"eos_token_id", 2},
          {"pad_token_id", 1}};
}

// HF CLIPTextModel (OpenAI CLIP-L): stored in transformers layout already.
json detect_hf_clip(const Shapes& s, const std::string& p, const std::string& name,
                    std::vector<std::string>& notes) {
  const std::string tok = p + "embeddings.token_embedding.weight";
  ClipShape c{s.dim(tok, 1),
              s.dim(tok, 0),
              s.dim(p + "embeddings.position_embedding.weight", 0),
              s.dim(p + "encoder.layers.0.mlp.fc1.weight", 0),
              s.dim(tok, 1),
              s.count(p + "encoder.layers.")};
  return clip_config(c, "quick_gelu", "CLIPTextModel", name, notes);
}

// OpenCLIP text tower (SD2 ViT-H, SDXL bigG). `dropped_block`: the resblock
// the key map leaves out (SD2's unused last one, see ldm_keymap.cpp), or -1.
json detect_open_clip(const Shapes& s, const std::string& p, int dropped_block, const char* architecture,
                      const std::string& name, std::vector<std::string>& notes) {
  const int blocks = s.count(p + "transformer.resblocks.");
  const bool dropped = dropped_block >= 0 && dropped_block < blocks;
  if (dropped)
    notes.push_back(name + ": resblock " + std::to_string(dropped_block) +
                    " left out (SD2 uses the penultimate layer, as diffusers)");
  const std::string tok = p + "token_embedding.weight";
  const int64_t hidden = s.dim(tok, 1);
  const int64_t projection = s.has(p + "text_projection") ? s.dim(p + "text_projection", 1) : hidden;
  ClipShape c{hidden,
              s.dim(tok, 0),
              s.dim(p + "positional_embedding", 0),
              s.dim(p + "transformer.resblocks.0.mlp.c_fc.weight", 0),
              projection,
              blocks - (dropped ? 1 : 0)};
  return clip_config(c, "gelu", architecture, name, notes);
}

// ---------------------------------------------------------------- family rules

ModelFamily family_from_unet(const UnetFacts& u, std::vector<std::string>& notes) {
  notes.push_back("no text encoder in the file: family guessed from the UNet");
  if (u.addition_in_dim > 0)
    return u.cross_attention_dim == 1280 ? ModelFamily::SDXLRefiner : ModelFamily::SDXL;
  return u.linear_projection ? ModelFamily::SD2 : ModelFamily::SD1;
}

ModelFamily detect_family(const Shapes& s, const UnetFacts& u, std::vector<std::string>& notes) {
  if (s.has_prefix(kSdxlOpenClip)) return ModelFamily::SDXL;
  if (s.has_prefix(kRefinerOpenClip)) return ModelFamily::SDXLRefiner;
  if (s.has_prefix(kSd2OpenClip)) return ModelFamily::SD2;
  if (!s.has_prefix(kSd1Clip)) return family_from_unet(u, notes);
  // diffusers' SD1 export writes any text encoder that is not 23+ layers deep
  // in the HF layout, so small SD2-style models arrive like this.
  if (u.linear_projection) {
    notes.push_back("HF-layout text encoder with a linear-projection (SD2-style) UNet: treated as SD2");
    return ModelFamily::SD2;
  }
  return ModelFamily::SD1;
}

bool is_sdxl(ModelFamily f) { return f == ModelFamily::SDXL || f == ModelFamily::SDXLRefiner; }

// diffusers' "attention_head_dim" is really the head count per level.
json attention_heads(ModelFamily family, const std::vector<int64_t>& channels,
                     std::vector<std::string>& notes) {
  if (family == ModelFamily::SD1) {
    notes.push_back("unet: attention_head_dim = 8 heads (SD1.x rule, not stored in weights)");
    return 8;
  }
  json heads = json::array();
  bool exact = true;
  for (int64_t ch : channels) {
    exact = exact && ch >= 64 && ch % 64 == 0;
    heads.push_back(std::max<int64_t>(1, ch / 64));
  }
  notes.push_back(
      exact ? "unet: attention_head_dim = channels / 64 per level (SD2/SDXL rule: 64-wide heads)"
            : "unet: channels not multiples of 64; attention_head_dim guessed as max(1, channels/64)");
  return heads;
}

// SDXL's label_emb input = pooled text embedding + N Fourier-embedded time ids
// (6: original size, crop, target size; refiner 5: no target size, + aesthetic score).
void add_text_time(json& unet, const UnetFacts& u, ModelFamily family, const json& te2,
                   std::vector<std::string>& notes) {
  if (u.addition_in_dim == 0) {
    notes.push_back("unet: SDXL-family file without label_emb; no addition embedding configured");
    return;
  }
  const int ids = family == ModelFamily::SDXLRefiner ? 5 : 6;
  int64_t pooled = te2.is_null() ? 1280 : te2["projection_dim"].get<int64_t>();
  if (te2.is_null()) notes.push_back("unet: no text_encoder_2; pooled width assumed 1280 (bigG)");
  int64_t time_dim = (u.addition_in_dim - pooled) / ids;
  if (time_dim <= 0 || pooled + ids * time_dim != u.addition_in_dim) {
    notes.push_back("unet: label_emb width " + str(u.addition_in_dim) +
                    " does not split into pooled + time ids; addition_time_embed_dim assumed 256");
    time_dim = 256;
  }
  unet["addition_embed_type"] = "text_time";
  unet["projection_class_embeddings_input_dim"] = u.addition_in_dim;
  unet["addition_time_embed_dim"] = time_dim;
}

void apply_family_rules(DetectedArch& a, const UnetFacts& u) {
  json& unet = a.unet_config;
  unet["attention_head_dim"] = attention_heads(a.family, u.channels, a.notes);
  unet["upcast_attention"] = a.family == ModelFamily::SD2;
  if (a.family == ModelFamily::SD2)
    a.notes.push_back(
        "unet: upcast_attention = true (SD2.x rule: required by 2.x v-models, harmless otherwise)");
  if (is_sdxl(a.family))
    add_text_time(unet, u, a.family, a.text_encoder_2_config, a.notes);
  else if (u.addition_in_dim > 0)
    a.notes.push_back("unet: label_emb present in a non-SDXL file; ignored");
  const bool v768 = a.family == ModelFamily::SD2;
  unet["sample_size"] = is_sdxl(a.family) ? 128 : v768 ? 96 : 64;
  a.notes.push_back("unet: sample_size from the family's default resolution (rule)");
  if (!a.vae_config.is_null()) {
    a.vae_config["scaling_factor"] = is_sdxl(a.family) ? 0.13025 : 0.18215;
    a.vae_config["sample_size"] = is_sdxl(a.family) ? 1024 : v768 ? 768 : 512;
    a.notes.push_back("vae: scaling_factor and sample_size from the family (rule, not stored in weights)");
  }
}

// Each text encoder is recognised by its own prefix (the same ones the key map uses).
void detect_text_encoders(DetectedArch& a, const Shapes& s) {
  a.text_encoder_config = nullptr;
  a.text_encoder_2_config = nullptr;
  for (const std::string& p : {kSd1Clip, kSdxlClip})
    if (s.has_prefix(p)) a.text_encoder_config = detect_hf_clip(s, p, "text_encoder", a.notes);
  if (s.has_prefix(kSd2OpenClip))
    a.text_encoder_config =
        detect_open_clip(s, kSd2OpenClip, kSd2UnusedOpenClipBlock, "CLIPTextModel", "text_encoder", a.notes);
  for (const std::string& p : {kSdxlOpenClip, kRefinerOpenClip})
    if (s.has_prefix(p))
      a.text_encoder_2_config =
          detect_open_clip(s, p, -1, "CLIPTextModelWithProjection", "text_encoder_2", a.notes);
}

}  // namespace

const char* family_name(ModelFamily f) {
  switch (f) {
    case ModelFamily::SD1:
      return "SD1";
    case ModelFamily::SD2:
      return "SD2";
    case ModelFamily::SDXL:
      return "SDXL";
    case ModelFamily::SDXLRefiner:
      return "SDXLRefiner";
    case ModelFamily::Unknown:
      return "Unknown";
  }
  return "Unknown";
}

DetectedArch detect_architecture(const std::vector<TensorInfo>& tensors, const std::string& file_for_errors) {
  const Shapes shapes(tensors, file_for_errors);
  DetectedArch arch;
  const UnetFacts unet = detect_unet(shapes, tensors, arch.notes);
  arch.family = detect_family(shapes, unet, arch.notes);
  arch.unet_config = unet.config;
  arch.vae_config = detect_vae(shapes, arch.notes);
  detect_text_encoders(arch, shapes);
  apply_family_rules(arch, unet);
  return arch;
}

}  // namespace lumen
