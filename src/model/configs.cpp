#include "model/configs.h"

#include <cmath>
#include <sstream>

#include "error.h"

namespace lumen {
namespace {

using nlohmann::json;

// Upper bounds on what a config may ask for, far above any released SD-family
// model (SDXL: 1280 channels, 2 layers, 10 transformer layers, cross dim 2048).
constexpr int64_t kMaxChannels = 16384;
constexpr int64_t kMaxLayers = 64;
constexpr int64_t kMaxIoChannels = 256;  // image and latent channels (inpainting UNets: 9)
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxWidth = 65536;  // text/vision hidden and MLP sizes, cross-attention dim

std::string short_number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// Typed field access with errors that name the file and the field.
class Fields {
 public:
  Fields(const json& j, std::string where) : j_(j), where_(std::move(where)) {
    if (!j_.is_object()) throw Error(where_, "config is not a JSON object");
  }
  bool has(const char* k) const { return j_.contains(k) && !j_[k].is_null(); }
  const json& raw(const char* k) const { return j_[k]; }

  template <typename T>
  T get(const char* k, T fallback) const {
    if (!has(k)) return fallback;
    try {
      return j_[k].get<T>();
    } catch (const json::exception&) {
      throw bad(k, "has the wrong type");
    }
  }
  // A positive integer up to `max`: a stranger's config must not make Lumen
  // build modules of absurd size before any weight is read.
  int64_t positive(const char* k, int64_t fallback, int64_t max = int64_t{1} << 24) const {
    auto v = get<int64_t>(k, fallback);
    if (v <= 0 || v > max) throw bad(k, "must be a positive integer up to " + std::to_string(max));
    return v;
  }
  // A finite number in [min, max].
  double number(const char* k, double fallback, double min, double max) const {
    const double v = get<double>(k, fallback);
    if (!std::isfinite(v) || v < min || v > max)
      throw bad(k, "must be a number in [" + short_number(min) + ", " + short_number(max) + "]");
    return v;
  }
  // An int or a list of ints, each in [1, max], expanded to `n` entries.
  std::vector<int64_t> per_level(const char* k, size_t n, int64_t fallback, int64_t max) const {
    if (!has(k)) return std::vector<int64_t>(n, fallback);
    const json& v = j_[k];
    if (!v.is_number_integer() && (!v.is_array() || v.size() != n))
      throw bad(k, "must be an int or a list of " + std::to_string(n));
    std::vector<int64_t> out;
    for (const auto& e : v.is_array() ? v : json::array({v})) {
      if (!e.is_number_integer() || e.get<int64_t>() <= 0 || e.get<int64_t>() > max)
        throw bad(k, "must hold positive integers up to " + std::to_string(max));
      out.push_back(e.get<int64_t>());
    }
    return v.is_array() ? out : std::vector<int64_t>(n, out[0]);
  }
  std::vector<bool> per_level_bool(const char* k, size_t n) const {
    if (!has(k)) return std::vector<bool>(n, false);
    const json& v = j_[k];
    if (v.is_boolean()) return std::vector<bool>(n, v.get<bool>());
    if (!v.is_array() || v.size() != n) throw bad(k, "must be a bool or a list of " + std::to_string(n));
    std::vector<bool> out;
    for (const auto& e : v) out.push_back(e.is_boolean() && e.get<bool>());
    return out;
  }
  std::vector<std::string> strings(const char* k) const {
    if (!has(k) || !j_[k].is_array()) throw bad(k, "is missing or not a list");
    std::vector<std::string> out;
    for (const auto& e : j_[k]) {
      if (!e.is_string()) throw bad(k, "must hold strings");
      out.push_back(e.get<std::string>());
    }
    return out;
  }
  void require_absent_or(const char* k, const json& allowed) const {
    if (has(k) && j_[k] != allowed)
      throw bad(k, "= " + j_[k].dump() + " is not supported (expected " + allowed.dump() + ")");
  }
  Error bad(const char* k, const std::string& problem) const {
    return Error(where_, std::string("config field '") + k + "' " + problem);
  }

 private:
  const json& j_;
  std::string where_;
};

std::vector<int64_t> channels(const Fields& f) {
  auto ch = f.get<std::vector<int64_t>>("block_out_channels", {});
  if (ch.empty() || ch.size() > 8) throw f.bad("block_out_channels", "must list 1 to 8 levels");
  for (auto c : ch)
    if (c <= 0 || c > kMaxChannels) throw f.bad("block_out_channels", "must hold channel counts in 1.." + std::to_string(kMaxChannels));
  return ch;
}

void check_groups(const Fields& f, const std::vector<int64_t>& ch, int64_t groups) {
  for (auto c : ch)
    if (c % groups != 0)
      throw f.bad("norm_num_groups", "= " + std::to_string(groups) + " does not divide " + std::to_string(c));
}

}  // namespace

UNetConfig parse_unet_config(const json& j, const std::string& where) {
  Fields f(j, where);
  UNetConfig c;
  c.in_channels = f.positive("in_channels", 4, kMaxIoChannels);
  c.out_channels = f.positive("out_channels", 4, kMaxIoChannels);
  c.block_out_channels = channels(f);
  const size_t n = c.block_out_channels.size();
  c.down_block_types = f.strings("down_block_types");
  c.up_block_types = f.strings("up_block_types");
  if (c.down_block_types.size() != n || c.up_block_types.size() != n)
    throw f.bad("down_block_types", "and up_block_types must have one entry per block_out_channels level");
  for (const auto& t : c.down_block_types)
    if (t != "CrossAttnDownBlock2D" && t != "DownBlock2D") throw f.bad("down_block_types", "has unsupported " + t);
  for (const auto& t : c.up_block_types)
    if (t != "CrossAttnUpBlock2D" && t != "UpBlock2D") throw f.bad("up_block_types", "has unsupported " + t);
  std::string mid = f.get<std::string>("mid_block_type", "UNetMidBlock2DCrossAttn");
  if (mid != "UNetMidBlock2DCrossAttn") throw f.bad("mid_block_type", "has unsupported " + mid);
  c.has_mid_block = f.has("mid_block_type") || !j.contains("mid_block_type");
  c.layers_per_block = f.per_level("layers_per_block", n, 2, kMaxLayers);
  c.transformer_layers_per_block = f.per_level("transformer_layers_per_block", n, 1, kMaxLayers);
  c.reverse_transformer_layers.assign(c.transformer_layers_per_block.rbegin(),
                                      c.transformer_layers_per_block.rend());
  if (f.has("reverse_transformer_layers_per_block")) {
    // diffusers allows a list per up level (itself a list per layer); only uniform layers are supported.
    const json& r = f.raw("reverse_transformer_layers_per_block");
    if (!r.is_array() || r.size() != n) throw f.bad("reverse_transformer_layers_per_block", "must list every level");
    for (size_t i = 0; i < n; ++i) {
      const json& e = r[i];
      if (e.is_number_integer() && e.get<int64_t>() > 0 && e.get<int64_t>() <= kMaxLayers)
        c.reverse_transformer_layers[i] = e.get<int64_t>();
      else if (e.is_number_integer())
        throw f.bad("reverse_transformer_layers_per_block", "must hold positive integers up to " + std::to_string(kMaxLayers));
      else throw f.bad("reverse_transformer_layers_per_block", "with per-layer lists is not supported");
    }
  }
  c.mid_transformer_layers = c.transformer_layers_per_block.back();
  // diffusers' naming quirk: without num_attention_heads, attention_head_dim is the head count.
  c.attention_heads = f.has("num_attention_heads") ? f.per_level("num_attention_heads", n, 8, kMaxHeads)
                                                   : f.per_level("attention_head_dim", n, 8, kMaxHeads);
  for (size_t i = 0; i < n; ++i)
    if (c.block_out_channels[i] % c.attention_heads[i] != 0)
      throw f.bad("attention_head_dim", "head count does not divide the channels of level " + std::to_string(i));
  c.cross_attention_dim = f.per_level("cross_attention_dim", n, 1280, kMaxWidth);
  c.only_cross_attention = f.per_level_bool("only_cross_attention", n);
  c.use_linear_projection = f.get<bool>("use_linear_projection", false);
  c.upcast_attention = f.get<bool>("upcast_attention", false);
  c.norm_num_groups = f.positive("norm_num_groups", 32);
  check_groups(f, c.block_out_channels, c.norm_num_groups);
  c.norm_eps = f.number("norm_eps", 1e-5, 1e-12, 1);
  c.flip_sin_to_cos = f.get<bool>("flip_sin_to_cos", true);
  c.freq_shift = f.number("freq_shift", 0, -1e6, 1e6);
  c.downsample_padding = f.get<int64_t>("downsample_padding", 1);
  if (c.downsample_padding < 0 || c.downsample_padding > 1) throw f.bad("downsample_padding", "must be 0 or 1");
  c.mid_block_scale_factor = f.number("mid_block_scale_factor", 1, -1e6, 1e6);
  c.conv_in_kernel = f.positive("conv_in_kernel", 3, 15);
  c.conv_out_kernel = f.positive("conv_out_kernel", 3, 15);
  if (c.conv_in_kernel % 2 == 0 || c.conv_out_kernel % 2 == 0) throw f.bad("conv_in_kernel", "must be odd");
  c.center_input_sample = f.get<bool>("center_input_sample", false);
  c.sample_size = f.positive("sample_size", 64, 2048);  // latent pixels: the native size / 8
  c.addition_embed_type = f.get<std::string>("addition_embed_type", "");
  if (!c.addition_embed_type.empty() && c.addition_embed_type != "text_time")
    throw f.bad("addition_embed_type", "= " + c.addition_embed_type + " is not supported");
  if (c.addition_embed_type == "text_time") {
    c.addition_time_embed_dim = f.positive("addition_time_embed_dim", 256, kMaxWidth);
    c.projection_class_embeddings_input_dim = f.positive("projection_class_embeddings_input_dim", 2816, kMaxWidth);
  }
  f.require_absent_or("act_fn", "silu");
  f.require_absent_or("resnet_time_scale_shift", "default");
  f.require_absent_or("time_embedding_type", "positional");
  f.require_absent_or("dual_cross_attention", false);
  f.require_absent_or("resnet_out_scale_factor", 1.0);
  f.require_absent_or("resnet_skip_time_act", false);
  f.require_absent_or("attention_type", "default");
  for (const char* k : {"class_embed_type", "encoder_hid_dim", "encoder_hid_dim_type", "time_cond_proj_dim",
                        "num_class_embeds", "time_embedding_act_fn", "timestep_post_act", "cross_attention_norm"})
    if (f.has(k)) throw f.bad(k, "is set; this UNet feature is not supported yet");
  return c;
}

VaeConfig parse_vae_config(const json& j, const std::string& where) {
  Fields f(j, where);
  VaeConfig c;
  c.in_channels = f.positive("in_channels", 3, kMaxIoChannels);
  c.out_channels = f.positive("out_channels", 3, kMaxIoChannels);
  c.latent_channels = f.positive("latent_channels", 4, kMaxIoChannels);
  c.block_out_channels = channels(f);
  c.layers_per_block = f.positive("layers_per_block", 2, kMaxLayers);
  c.norm_num_groups = f.positive("norm_num_groups", 32);
  check_groups(f, c.block_out_channels, c.norm_num_groups);
  c.scaling_factor = f.number("scaling_factor", 0.18215, 1e-6, 1e6);
  c.shift_factor = f.number("shift_factor", 0.0, -1e6, 1e6);
  c.use_quant_conv = f.get<bool>("use_quant_conv", true);
  c.use_post_quant_conv = f.get<bool>("use_post_quant_conv", true);
  c.mid_block_add_attention = f.get<bool>("mid_block_add_attention", true);
  c.sample_size = f.positive("sample_size", 512, 16384);
  f.require_absent_or("act_fn", "silu");
  for (const auto& t : f.get<std::vector<std::string>>("down_block_types", {}))
    if (t != "DownEncoderBlock2D") throw f.bad("down_block_types", "has unsupported " + t);
  for (const auto& t : f.get<std::vector<std::string>>("up_block_types", {}))
    if (t != "UpDecoderBlock2D") throw f.bad("up_block_types", "has unsupported " + t);
  return c;
}

ClipTextConfig parse_clip_text_config(const json& j, const std::string& where) {
  Fields f(j, where);
  ClipTextConfig c;
  c.vocab_size = f.positive("vocab_size", 49408, int64_t{1} << 20);
  c.hidden_size = f.positive("hidden_size", 512, kMaxWidth);
  c.intermediate_size = f.positive("intermediate_size", 2048, kMaxWidth);
  c.num_hidden_layers = f.positive("num_hidden_layers", 12, kMaxLayers * 2);
  c.num_attention_heads = f.positive("num_attention_heads", 8, kMaxHeads);
  if (c.hidden_size % c.num_attention_heads != 0)
    throw f.bad("num_attention_heads", "does not divide hidden_size");
  c.max_position_embeddings = f.positive("max_position_embeddings", 77, 4096);
  c.projection_dim = f.positive("projection_dim", 512, kMaxWidth);
  c.hidden_act = f.get<std::string>("hidden_act", "quick_gelu");
  if (c.hidden_act != "quick_gelu" && c.hidden_act != "gelu")
    throw f.bad("hidden_act", "= " + c.hidden_act + " is not supported (quick_gelu, gelu)");
  c.layer_norm_eps = f.number("layer_norm_eps", 1e-5, 1e-12, 1);
  c.eos_token_id = f.positive("eos_token_id", 49407, c.vocab_size - 1);  // a token id: 1e300 was accepted
  auto arch = f.get<std::vector<std::string>>("architectures", {});
  c.with_projection = !arch.empty() && arch[0] == "CLIPTextModelWithProjection";
  return c;
}

ClipVisionConfig parse_clip_vision_config(const json& j, const std::string& where) {
  Fields f(j, where);
  ClipVisionConfig c;
  c.hidden_size = f.positive("hidden_size", 768, kMaxWidth);
  c.intermediate_size = f.positive("intermediate_size", 3072, kMaxWidth);
  c.projection_dim = f.positive("projection_dim", 512, kMaxWidth);
  c.num_hidden_layers = f.positive("num_hidden_layers", 12, kMaxLayers * 2);
  c.num_attention_heads = f.positive("num_attention_heads", 12, kMaxHeads);
  if (c.hidden_size % c.num_attention_heads != 0)
    throw f.bad("num_attention_heads", "does not divide hidden_size");
  c.num_channels = f.positive("num_channels", 3, 16);
  c.image_size = f.positive("image_size", 224, 4096);
  c.patch_size = f.positive("patch_size", 32, 4096);
  if (c.patch_size > c.image_size) throw f.bad("patch_size", "is larger than image_size");
  c.hidden_act = f.get<std::string>("hidden_act", "quick_gelu");
  if (c.hidden_act != "quick_gelu" && c.hidden_act != "gelu")
    throw f.bad("hidden_act", "= " + c.hidden_act + " is not supported (quick_gelu, gelu)");
  c.layer_norm_eps = f.number("layer_norm_eps", 1e-5, 1e-12, 1);
  return c;
}

ClipModelConfig parse_clip_model_config(const json& j, const std::string& where) {
  Fields f(j, where);
  ClipModelConfig c;
  c.projection_dim = f.positive("projection_dim", 512, kMaxWidth);
  const json empty = json::object();
  c.text = parse_clip_text_config(f.has("text_config") ? f.raw("text_config") : empty, where + " text_config");
  c.vision = parse_clip_vision_config(f.has("vision_config") ? f.raw("vision_config") : empty,
                                      where + " vision_config");
  // CLIPModel projects both towers to the top-level projection_dim.
  c.text.with_projection = true;
  c.text.projection_dim = c.vision.projection_dim = c.projection_dim;
  return c;
}

}  // namespace lumen
