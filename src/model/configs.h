// Network configurations, read from diffusers / transformers config dicts.
// Every field is validated; an unsupported value is an error naming the field.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lumen {

struct UNetConfig {
  int64_t in_channels = 4, out_channels = 4;
  std::vector<int64_t> block_out_channels;
  std::vector<std::string> down_block_types, up_block_types;
  bool has_mid_block = true;
  std::vector<int64_t> layers_per_block;              // per level (down side)
  std::vector<int64_t> transformer_layers_per_block;  // per level (down side)
  std::vector<int64_t> reverse_transformer_layers;    // per level of the up side
  int64_t mid_transformer_layers = 1;
  std::vector<int64_t> attention_heads;               // per level
  std::vector<int64_t> cross_attention_dim;           // per level
  std::vector<bool> only_cross_attention;             // per level
  bool use_linear_projection = false;
  bool upcast_attention = false;
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  bool flip_sin_to_cos = true;
  double freq_shift = 0;
  int64_t downsample_padding = 1;
  double mid_block_scale_factor = 1;
  int64_t conv_in_kernel = 3, conv_out_kernel = 3;
  bool center_input_sample = false;
  std::string addition_embed_type;  // "" or "text_time"
  int64_t addition_time_embed_dim = 0;
  int64_t projection_class_embeddings_input_dim = 0;
  int64_t sample_size = 64;

  int64_t time_embed_dim() const { return block_out_channels.at(0) * 4; }
  // Each level but the last halves the resolution.
  int64_t downsampling_factor() const { return int64_t{1} << (block_out_channels.size() - 1); }
};

struct VaeConfig {
  int64_t in_channels = 3, out_channels = 3, latent_channels = 4;
  std::vector<int64_t> block_out_channels;
  int64_t layers_per_block = 2;
  int64_t norm_num_groups = 32;
  double scaling_factor = 0.18215;
  double shift_factor = 0;  // SD3/Flux-style VAEs; 0 for the SD family
  bool use_quant_conv = true, use_post_quant_conv = true;
  bool mid_block_add_attention = true;
  int64_t sample_size = 512;
  int64_t downsampling_factor() const { return int64_t{1} << (block_out_channels.size() - 1); }
};

struct ClipTextConfig {
  int64_t vocab_size = 49408, hidden_size = 768, intermediate_size = 3072;
  int64_t num_hidden_layers = 12, num_attention_heads = 12, max_position_embeddings = 77;
  int64_t projection_dim = 768;
  bool with_projection = false;  // CLIPTextModelWithProjection
  std::string hidden_act = "quick_gelu";
  double layer_norm_eps = 1e-5;
  int64_t eos_token_id = 49407;  // CLIPTextConfig's default; the SD encoders' legacy configs say 2
};

// transformers' CLIPVisionConfig; defaults as there (ViT-B/32).
struct ClipVisionConfig {
  int64_t hidden_size = 768, intermediate_size = 3072, projection_dim = 512;
  int64_t num_hidden_layers = 12, num_attention_heads = 12;
  int64_t num_channels = 3, image_size = 224, patch_size = 32;
  std::string hidden_act = "quick_gelu";
  double layer_norm_eps = 1e-5;
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
};

// transformers' CLIPConfig (CLIPModel): both towers and the shared projection width.
struct ClipModelConfig {
  ClipTextConfig text;  // with_projection set, projection_dim = the top-level one
  ClipVisionConfig vision;
  int64_t projection_dim = 512;
};

// `where` names the file the dict came from, for error messages.
UNetConfig parse_unet_config(const nlohmann::json& j, const std::string& where);
VaeConfig parse_vae_config(const nlohmann::json& j, const std::string& where);
ClipTextConfig parse_clip_text_config(const nlohmann::json& j, const std::string& where);
ClipVisionConfig parse_clip_vision_config(const nlohmann::json& j, const std::string& where);
// A CLIPModel config.json: only non-default values are stored, absent ones take the defaults.
ClipModelConfig parse_clip_model_config(const nlohmann::json& j, const std::string& where);

}  // namespace lumen
