// Tests for the LDM <-> diffusers key map and the architecture detection:
// data-driven against the golden checkpoint_convert cases, plus synthetic
// key lists with the real SD1.5 / SD2.1 / SDXL / SDXL-refiner shapes.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "convert/arch_detect.h"
#include "convert/ldm_keymap.h"
#include "error.h"

namespace lumen {
namespace {

using nlohmann::json;
using Shape = std::vector<int64_t>;

std::string golden_dir() {
  const char* env = std::getenv("LUMEN_GOLDEN_DIR");
  return env ? env : "../shared/golden";
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  return json::parse(in);
}

// Minimal safetensors header reader: u64 LE length, then the JSON header.
std::vector<TensorInfo> read_safetensors_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i) len = (len << 8) | len_bytes[i];
  std::string header(len, '\0');
  in.read(&header[0], static_cast<std::streamsize>(len));
  const json parsed = json::parse(header);
  std::vector<TensorInfo> tensors;
  for (const auto& [key, info] : parsed.items()) {
    if (key == "__metadata__") continue;
    tensors.push_back({key, info["shape"].get<Shape>(), info["dtype"].get<std::string>()});
  }
  return tensors;
}

// Golden case directories of kind checkpoint_convert; skips loudly if absent.
std::vector<std::string> checkpoint_cases() {
  const std::string manifest = golden_dir() + "/manifest.json";
  if (!std::ifstream(manifest)) return {};
  const json cases = read_json(manifest);
  std::vector<std::string> dirs;
  for (const auto& c : cases["cases"])
    if (c["kind"] == "checkpoint_convert") dirs.push_back(golden_dir() + "/" + c["dir"].get<std::string>());
  return dirs;
}

#define SKIP_IF_NO_GOLDEN(cases)                                  \
  if ((cases).empty())                                            \
  GTEST_SKIP() << "*** golden data not found at " << golden_dir() \
               << " (set LUMEN_GOLDEN_DIR); golden key-map tests NOT run ***"

std::map<std::string, const KeyMapping*> by_key(const KeyMapResult& r) {
  std::map<std::string, const KeyMapping*> out;
  for (const auto& m : r.mapped) out[m.ldm_key] = &m;
  return out;
}

TEST(KeyMapGolden, MatchesKeyMapJson) {
  const auto cases = checkpoint_cases();
  SKIP_IF_NO_GOLDEN(cases);
  for (const auto& dir : cases) {
    SCOPED_TRACE(dir);
    const json expected = read_json(dir + "/key_map.json");
    const KeyMapResult result = map_ldm_to_diffusers(read_safetensors_header(dir + "/model.safetensors"));
    const auto mapped = by_key(result);
    const auto& want = expected["ldm_key_to_diffusers"];
    EXPECT_EQ(mapped.size(), want.size());
    for (const auto& [ldm_key, w] : want.items()) {
      SCOPED_TRACE(ldm_key);
      auto it = mapped.find(ldm_key);
      ASSERT_NE(it, mapped.end()) << "not mapped";
      const KeyMapping& m = *it->second;
      EXPECT_EQ(m.component, w["component"].get<std::string>());
      const auto keys = w["key"].is_array() ? w["key"].get<std::vector<std::string>>()
                                            : std::vector<std::string>{w["key"].get<std::string>()};
      EXPECT_EQ(m.diffusers_keys, keys);
      EXPECT_EQ(transform_name(m.transform), w["transform"].get<std::string>());
    }
    const auto want_unmapped = expected["unmapped"].get<std::set<std::string>>();
    EXPECT_EQ(std::set<std::string>(result.unmapped.begin(), result.unmapped.end()), want_unmapped);
  }
}

// ---------------------------------------------------------------- config comparison

// transformer_layers_per_block per level; an int applies to every level.
std::vector<int> per_level(const json& v, size_t levels) {
  return v.is_array() ? v.get<std::vector<int>>() : std::vector<int>(levels, v.get<int>());
}

// Only levels with attention and the last level (it feeds the mid block) matter.
void expect_same_depths(const json& got, const json& want, const json& down_types) {
  const auto g = per_level(got, down_types.size()), w = per_level(want, down_types.size());
  ASSERT_EQ(g.size(), w.size());
  for (size_t i = 0; i < g.size(); ++i)
    if (down_types[i] == "CrossAttnDownBlock2D" || i + 1 == g.size()) {
      EXPECT_EQ(g[i], w[i]) << "level " << i;
    }
}

void expect_fields(const json& got, const json& want, const std::vector<std::string>& fields,
                   const std::string& what) {
  for (const auto& f : fields) EXPECT_EQ(got.value(f, json()), want.value(f, json())) << what << "." << f;
}

bool head_rule_applies(const json& unet, ModelFamily family) {
  if (family == ModelFamily::SD1) return true;
  for (const auto& ch : unet["block_out_channels"])
    if (ch.get<int64_t>() % 64 != 0) return false;
  return true;
}

void expect_unet_matches(const json& got, const json& want, ModelFamily family) {
  expect_fields(got, want,
                {"block_out_channels", "layers_per_block", "down_block_types", "up_block_types",
                 "use_linear_projection", "cross_attention_dim", "in_channels", "out_channels",
                 "addition_embed_type", "projection_class_embeddings_input_dim", "addition_time_embed_dim"},
                "unet");
  expect_same_depths(got["transformer_layers_per_block"], want["transformer_layers_per_block"],
                     want["down_block_types"]);
  if (head_rule_applies(got, family)) {
    EXPECT_EQ(got["attention_head_dim"], want["attention_head_dim"]);
  }
}

void expect_te_matches(const json& got, const json& want, const std::string& what) {
  ASSERT_FALSE(got.is_null()) << what;
  expect_fields(got, want,
                {"hidden_size", "num_hidden_layers", "intermediate_size", "projection_dim", "hidden_act",
                 "vocab_size", "max_position_embeddings"},
                what);
  if (got["hidden_size"].get<int64_t>() % 64 == 0) {
    EXPECT_EQ(got["num_attention_heads"], want["num_attention_heads"]) << what;
  }
}

const std::vector<std::string> kVaeFields = {"block_out_channels", "layers_per_block", "latent_channels",
                                             "in_channels",        "out_channels",     "down_block_types",
                                             "up_block_types"};

TEST(ArchDetectGolden, MatchesCaseConfigs) {
  const auto cases = checkpoint_cases();
  SKIP_IF_NO_GOLDEN(cases);
  for (const auto& dir : cases) {
    SCOPED_TRACE(dir);
    const json config = read_json(dir + "/case.json")["config"];
    const DetectedArch arch = detect_architecture(read_safetensors_header(dir + "/model.safetensors"), dir);
    const bool xl = config.contains("text_encoder_2");
    EXPECT_STREQ(family_name(arch.family), xl ? "SDXL" : "SD1");
    expect_unet_matches(arch.unet_config, config["unet"], arch.family);
    expect_fields(arch.vae_config, config["vae"], kVaeFields, "vae");
    expect_te_matches(arch.text_encoder_config, config["text_encoder"], "text_encoder");
    if (xl)
      expect_te_matches(arch.text_encoder_2_config, config["text_encoder_2"], "text_encoder_2");
    else
      EXPECT_TRUE(arch.text_encoder_2_config.is_null());
    EXPECT_FALSE(arch.notes.empty());  // head counts etc. are always rule-based
  }
}

// diffusers' SD1 export writes small SD2-style models (linear projections)
// with an HF-layout text encoder: the UNet decides the family then.
TEST(ArchDetectGolden, LinearProjectionUnetWithHfTextEncoderIsSd2) {
  const auto cases = checkpoint_cases();
  SKIP_IF_NO_GOLDEN(cases);
  auto tensors = read_safetensors_header(cases.front() + "/model.safetensors");
  for (auto& t : tensors)
    if (t.key.find(".proj_in.weight") != std::string::npos ||
        t.key.find(".proj_out.weight") != std::string::npos)
      if (t.key.rfind("model.diffusion_model.", 0) == 0) t.shape.resize(2);
  const DetectedArch a = detect_architecture(tensors, "sd2like.safetensors");
  EXPECT_EQ(a.family, ModelFamily::SD2);
  EXPECT_EQ(a.unet_config["use_linear_projection"], true);
  EXPECT_EQ(a.unet_config["upcast_attention"], true);
  EXPECT_EQ(a.text_encoder_config["hidden_act"], "quick_gelu");
}

// ---------------------------------------------------------------- synthetic real-size checkpoints

struct UnetSpec {
  std::vector<int64_t> channels;
  std::vector<int> depth;  // transformer depth per level, 0 = no attention
  int mid_depth;
  int64_t context_dim;
  bool linear;
  int64_t label_emb_in;  // 0 = none
};

// The LDM UNet tensors detection looks at, with the real layout and shapes.
void add_ldm_unet(std::vector<TensorInfo>& t, const UnetSpec& u) {
  const std::string p = "model.diffusion_model.";
  const int lpb = 2, levels = static_cast<int>(u.channels.size());
  const int64_t ch0 = u.channels[0];
  auto attention = [&](const std::string& block, int64_t ch, int depth) {
    t.push_back({block + "1.proj_in.weight", u.linear ? Shape{ch, ch} : Shape{ch, ch, 1, 1}, "F16"});
    for (int d = 0; d < depth; ++d)
      t.push_back({block + "1.transformer_blocks." + std::to_string(d) + ".attn2.to_k.weight",
                   {ch, u.context_dim},
                   "F16"});
  };
  t.push_back({p + "input_blocks.0.0.weight", {ch0, 4, 3, 3}, "F16"});
  t.push_back({p + "time_embed.0.weight", {4 * ch0, ch0}, "F16"});
  t.push_back({p + "out.2.weight", {4, ch0, 3, 3}, "F16"});
  if (u.label_emb_in) t.push_back({p + "label_emb.0.0.weight", {4 * ch0, u.label_emb_in}, "F16"});
  int in = 1, out = 0;
  for (int level = 0; level < levels; ++level) {
    const int64_t ch = u.channels[level];
    for (int l = 0; l < lpb; ++l, ++in) {
      const std::string block = p + "input_blocks." + std::to_string(in) + ".";
      t.push_back({block + "0.out_layers.3.weight", {ch, ch, 3, 3}, "F16"});
      if (u.depth[level]) attention(block, ch, u.depth[level]);
    }
    if (level + 1 < levels)
      t.push_back({p + "input_blocks." + std::to_string(in++) + ".0.op.weight", {ch, ch, 3, 3}, "F16"});
  }
  attention(p + "middle_block.", u.channels.back(), u.mid_depth);
  for (int level = levels - 1; level >= 0; --level)
    for (int l = 0; l <= lpb; ++l, ++out) {
      const std::string block = p + "output_blocks." + std::to_string(out) + ".";
      t.push_back({block + "0.out_layers.3.weight", {u.channels[level], u.channels[level], 3, 3}, "F16"});
      if (u.depth[level]) attention(block, u.channels[level], u.depth[level]);
    }
}

void add_ldm_vae(std::vector<TensorInfo>& t) {
  const std::string p = "first_stage_model.";
  const std::vector<int64_t> ch = {128, 256, 512, 512};
  t.push_back({p + "encoder.conv_in.weight", {128, 3, 3, 3}, "F16"});
  t.push_back({p + "decoder.conv_in.weight", {512, 4, 3, 3}, "F16"});
  t.push_back({p + "decoder.conv_out.weight", {3, 128, 3, 3}, "F16"});
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 2; ++j)
      t.push_back({p + "encoder.down." + std::to_string(i) + ".block." + std::to_string(j) + ".conv2.weight",
                   {ch[i], ch[i], 3, 3},
                   "F16"});
    for (int j = 0; j < 3; ++j)
      t.push_back({p + "decoder.up." + std::to_string(i) + ".block." + std::to_string(j) + ".conv2.weight",
                   {ch[i], ch[i], 3, 3},
                   "F16"});
  }
}

void add_hf_clip(std::vector<TensorInfo>& t, const std::string& prefix) {
  const std::string p = prefix + "text_model.";
  t.push_back({p + "embeddings.token_embedding.weight", {49408, 768}, "F16"});
  t.push_back({p + "embeddings.position_embedding.weight", {77, 768}, "F16"});
  t.push_back({p + "embeddings.position_ids", {1, 77}, "I64"});
  for (int i = 0; i < 12; ++i)
    t.push_back({p + "encoder.layers." + std::to_string(i) + ".mlp.fc1.weight", {3072, 768}, "F16"});
}

void add_open_clip(std::vector<TensorInfo>& t, const std::string& p, int64_t width, int blocks) {
  t.push_back({p + "token_embedding.weight", {49408, width}, "F16"});
  t.push_back({p + "positional_embedding", {77, width}, "F16"});
  t.push_back({p + "text_projection", {width, width}, "F16"});
  t.push_back({p + "logit_scale", {}, "F16"});
  for (int i = 0; i < blocks; ++i) {
    const std::string b = p + "transformer.resblocks." + std::to_string(i) + ".";
    t.push_back({b + "mlp.c_fc.weight", {4 * width, width}, "F16"});
    t.push_back({b + "attn.in_proj_weight", {3 * width, width}, "F16"});
  }
}

const UnetSpec kSd15Unet = {{320, 640, 1280, 1280}, {1, 1, 1, 0}, 1, 768, false, 0};

std::vector<TensorInfo> real_sd15() {
  std::vector<TensorInfo> t;
  add_ldm_unet(t, kSd15Unet);
  add_ldm_vae(t);
  add_hf_clip(t, "cond_stage_model.transformer.");
  return t;
}

std::vector<TensorInfo> real_sd21() {
  std::vector<TensorInfo> t;
  add_ldm_unet(t, {{320, 640, 1280, 1280}, {1, 1, 1, 0}, 1, 1024, true, 0});
  add_ldm_vae(t);
  add_open_clip(t, "cond_stage_model.model.", 1024, 24);
  return t;
}

std::vector<TensorInfo> real_sdxl() {
  std::vector<TensorInfo> t;
  add_ldm_unet(t, {{320, 640, 1280}, {0, 2, 10}, 10, 2048, true, 2816});
  add_ldm_vae(t);
  add_hf_clip(t, "conditioner.embedders.0.transformer.");
  add_open_clip(t, "conditioner.embedders.1.model.", 1280, 32);
  return t;
}

std::vector<TensorInfo> real_sdxl_refiner() {
  std::vector<TensorInfo> t;
  add_ldm_unet(t, {{384, 768, 1536, 1536}, {0, 4, 4, 0}, 4, 1280, true, 2560});
  add_ldm_vae(t);
  add_open_clip(t, "conditioner.embedders.0.model.", 1280, 32);
  return t;
}

TEST(ArchDetectSynthetic, RealSd15) {
  const DetectedArch a = detect_architecture(real_sd15(), "sd15.safetensors");
  EXPECT_EQ(a.family, ModelFamily::SD1);
  expect_unet_matches(a.unet_config, json::parse(R"({
    "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "transformer_layers_per_block": 1, "use_linear_projection": false, "cross_attention_dim": 768,
    "in_channels": 4, "out_channels": 4, "addition_embed_type": null,
    "projection_class_embeddings_input_dim": null, "addition_time_embed_dim": null, "attention_head_dim": 8})"),
                      a.family);
  EXPECT_EQ(a.unet_config["upcast_attention"], false);
  expect_fields(a.vae_config,
                json::parse(R"({"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2,
    "latent_channels": 4, "in_channels": 3, "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]})"),
                kVaeFields, "vae");
  EXPECT_DOUBLE_EQ(a.vae_config["scaling_factor"].get<double>(), 0.18215);
  expect_te_matches(a.text_encoder_config, json::parse(R"({"hidden_size": 768, "num_hidden_layers": 12,
    "intermediate_size": 3072, "projection_dim": 768, "hidden_act": "quick_gelu", "num_attention_heads": 12,
    "vocab_size": 49408, "max_position_embeddings": 77})"),
                    "text_encoder");
  EXPECT_TRUE(a.text_encoder_2_config.is_null());
}

TEST(ArchDetectSynthetic, RealSd21) {
  const DetectedArch a = detect_architecture(real_sd21(), "sd21.safetensors");
  EXPECT_EQ(a.family, ModelFamily::SD2);
  EXPECT_EQ(a.unet_config["use_linear_projection"], true);
  EXPECT_EQ(a.unet_config["cross_attention_dim"], 1024);
  EXPECT_EQ(a.unet_config["attention_head_dim"], json::parse("[5, 10, 20, 20]"));
  EXPECT_EQ(a.unet_config["upcast_attention"], true);
  expect_te_matches(a.text_encoder_config, json::parse(R"({"hidden_size": 1024, "num_hidden_layers": 23,
    "intermediate_size": 4096, "projection_dim": 1024, "hidden_act": "gelu", "num_attention_heads": 16,
    "vocab_size": 49408, "max_position_embeddings": 77})"),
                    "text_encoder");
  EXPECT_EQ(a.text_encoder_config["architectures"], json::parse(R"(["CLIPTextModel"])"));
}

TEST(ArchDetectSynthetic, RealSdxl) {
  const DetectedArch a = detect_architecture(real_sdxl(), "sdxl.safetensors");
  EXPECT_EQ(a.family, ModelFamily::SDXL);
  expect_unet_matches(a.unet_config, json::parse(R"({
    "block_out_channels": [320, 640, 1280], "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "transformer_layers_per_block": [1, 2, 10], "use_linear_projection": true, "cross_attention_dim": 2048,
    "in_channels": 4, "out_channels": 4, "addition_embed_type": "text_time",
    "projection_class_embeddings_input_dim": 2816, "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20]})"),
                      a.family);
  EXPECT_EQ(a.unet_config["transformer_layers_per_block"], json::parse("[1, 2, 10]"));
  EXPECT_DOUBLE_EQ(a.vae_config["scaling_factor"].get<double>(), 0.13025);
  expect_te_matches(a.text_encoder_2_config, json::parse(R"({"hidden_size": 1280, "num_hidden_layers": 32,
    "intermediate_size": 5120, "projection_dim": 1280, "hidden_act": "gelu", "num_attention_heads": 20,
    "vocab_size": 49408, "max_position_embeddings": 77})"),
                    "text_encoder_2");
  EXPECT_EQ(a.text_encoder_config["hidden_act"], "quick_gelu");
}

TEST(ArchDetectSynthetic, RealSdxlRefiner) {
  const DetectedArch a = detect_architecture(real_sdxl_refiner(), "refiner.safetensors");
  EXPECT_EQ(a.family, ModelFamily::SDXLRefiner);
  EXPECT_EQ(a.unet_config["transformer_layers_per_block"], 4);
  EXPECT_EQ(a.unet_config["attention_head_dim"], json::parse("[6, 12, 24, 24]"));
  EXPECT_EQ(a.unet_config["addition_time_embed_dim"], 256);
  EXPECT_EQ(a.unet_config["cross_attention_dim"], 1280);
  EXPECT_TRUE(a.text_encoder_config.is_null());
  ASSERT_FALSE(a.text_encoder_2_config.is_null());
  EXPECT_EQ(a.text_encoder_2_config["num_hidden_layers"], 32);
}

TEST(ArchDetectSynthetic, UnetOnlyFileGuessesFamilyAndNotesIt) {
  std::vector<TensorInfo> t;
  add_ldm_unet(t, kSd15Unet);
  const DetectedArch a = detect_architecture(t, "unet_only.safetensors");
  EXPECT_EQ(a.family, ModelFamily::SD1);
  EXPECT_TRUE(a.vae_config.is_null());
  EXPECT_TRUE(a.text_encoder_config.is_null());
  EXPECT_GE(a.notes.size(), 2u);
}

TEST(ArchDetectSynthetic, NonSdFileThrowsWithFileName) {
  const std::vector<TensorInfo> t = {{"foo", {3}, "F32"}, {"bar", {2, 2}, "F32"}};
  try {
    detect_architecture(t, "/models/not_sd.safetensors");
    FAIL() << "expected lumen::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/models/not_sd.safetensors"), std::string::npos) << e.what();
  }
  const KeyMapResult r = map_ldm_to_diffusers(t);
  EXPECT_TRUE(r.mapped.empty());
  EXPECT_EQ(r.unmapped.size(), 2u);
}

TEST(ArchDetectSynthetic, UnetWithoutAttentionThrows) {
  const std::vector<TensorInfo> t = {
      {"model.diffusion_model.input_blocks.0.0.weight", {32, 4, 3, 3}, "F16"},
      {"model.diffusion_model.input_blocks.1.0.out_layers.3.weight", {32, 32, 3, 3}, "F16"}};
  EXPECT_THROW(detect_architecture(t, "x.safetensors"), Error);
}

// ---------------------------------------------------------------- synthetic key mapping

struct Expect {
  std::string ldm, component;
  std::vector<std::string> keys;
  Transform transform;
};

void expect_mapping(const KeyMapResult& r, const std::vector<Expect>& expected) {
  const auto mapped = by_key(r);
  for (const auto& e : expected) {
    SCOPED_TRACE(e.ldm);
    auto it = mapped.find(e.ldm);
    ASSERT_NE(it, mapped.end()) << "not mapped";
    EXPECT_EQ(it->second->component, e.component);
    EXPECT_EQ(it->second->diffusers_keys, e.keys);
    EXPECT_EQ(it->second->transform, e.transform);
  }
}

void expect_unmapped(const KeyMapResult& r, const std::vector<std::string>& keys) {
  const std::set<std::string> unmapped(r.unmapped.begin(), r.unmapped.end());
  for (const auto& k : keys) EXPECT_TRUE(unmapped.count(k)) << k;
}

TEST(KeyMapSynthetic, RealSd15RepresentativeKeys) {
  const std::string u = "model.diffusion_model.", v = "first_stage_model.",
                    c = "cond_stage_model.transformer.";
  const std::vector<TensorInfo> t = {
      {u + "input_blocks.0.0.weight", {320, 4, 3, 3}, "F16"},
      {u + "input_blocks.3.0.op.weight", {320, 320, 3, 3}, "F16"},
      {u + "input_blocks.4.0.skip_connection.weight", {640, 320, 1, 1}, "F16"},
      {u + "input_blocks.4.1.proj_in.weight", {640, 640, 1, 1}, "F16"},
      {u + "input_blocks.6.0.op.weight", {640, 640, 3, 3}, "F16"},
      {u + "input_blocks.9.0.op.weight", {1280, 1280, 3, 3}, "F16"},
      {u + "input_blocks.11.0.emb_layers.1.weight", {1280, 1280}, "F16"},
      {u + "middle_block.1.transformer_blocks.0.attn2.to_k.weight", {1280, 768}, "F16"},
      {u + "middle_block.2.out_layers.3.bias", {1280}, "F16"},
      {u + "output_blocks.2.1.conv.weight", {1280, 1280, 3, 3}, "F16"},
      {u + "output_blocks.5.2.conv.bias", {1280}, "F16"},
      {u + "output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight", {2560, 320}, "F16"},
      {u + "time_embed.2.weight", {1280, 1280}, "F16"},
      {u + "out.0.weight", {320}, "F16"},
      {v + "encoder.down.1.block.0.nin_shortcut.weight", {256, 128, 1, 1}, "F16"},
      {v + "encoder.down.0.downsample.conv.weight", {128, 128, 3, 3}, "F16"},
      {v + "encoder.mid.attn_1.q.weight", {512, 512, 1, 1}, "F16"},
      {v + "decoder.up.0.block.2.norm1.weight", {128}, "F16"},
      {v + "decoder.up.3.upsample.conv.weight", {512, 512, 3, 3}, "F16"},
      {v + "decoder.mid.attn_1.proj_out.weight", {512, 512, 1, 1}, "F16"},
      {v + "post_quant_conv.weight", {4, 4, 1, 1}, "F16"},
      {c + "text_model.encoder.layers.11.mlp.fc2.weight", {768, 3072}, "F16"},
      {c + "text_model.embeddings.position_ids", {1, 77}, "I64"},
      {"model_ema.decay", {}, "F32"},
      {"alphas_cumprod", {1000}, "F32"},
      {"v_pred", {}, "F32"},
      {v + "loss.logvar", {}, "F32"},
  };
  const KeyMapResult r = map_ldm_to_diffusers(t);
  const Transform copy = Transform::Copy;
  expect_mapping(
      r, {
             {u + "input_blocks.0.0.weight", "unet", {"conv_in.weight"}, copy},
             {u + "input_blocks.3.0.op.weight", "unet", {"down_blocks.0.downsamplers.0.conv.weight"}, copy},
             {u + "input_blocks.4.0.skip_connection.weight",
              "unet",
              {"down_blocks.1.resnets.0.conv_shortcut.weight"},
              copy},
             {u + "input_blocks.4.1.proj_in.weight",
              "unet",
              {"down_blocks.1.attentions.0.proj_in.weight"},
              copy},
             {u + "input_blocks.11.0.emb_layers.1.weight",
              "unet",
              {"down_blocks.3.resnets.1.time_emb_proj.weight"},
              copy},
             {u + "middle_block.1.transformer_blocks.0.attn2.to_k.weight",
              "unet",
              {"mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"},
              copy},
             {u + "middle_block.2.out_layers.3.bias", "unet", {"mid_block.resnets.1.conv2.bias"}, copy},
             {u + "output_blocks.2.1.conv.weight", "unet", {"up_blocks.0.upsamplers.0.conv.weight"}, copy},
             {u + "output_blocks.5.2.conv.bias", "unet", {"up_blocks.1.upsamplers.0.conv.bias"}, copy},
             {u + "output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight",
              "unet",
              {"up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj.weight"},
              copy},
             {u + "time_embed.2.weight", "unet", {"time_embedding.linear_2.weight"}, copy},
             {u + "out.0.weight", "unet", {"conv_norm_out.weight"}, copy},
             {v + "encoder.down.1.block.0.nin_shortcut.weight",
              "vae",
              {"encoder.down_blocks.1.resnets.0.conv_shortcut.weight"},
              copy},
             {v + "encoder.down.0.downsample.conv.weight",
              "vae",
              {"encoder.down_blocks.0.downsamplers.0.conv.weight"},
              copy},
             {v + "encoder.mid.attn_1.q.weight",
              "vae",
              {"encoder.mid_block.attentions.0.to_q.weight"},
              Transform::Squeeze1x1},
             {v + "decoder.up.0.block.2.norm1.weight",
              "vae",
              {"decoder.up_blocks.3.resnets.2.norm1.weight"},
              copy},
             {v + "decoder.up.3.upsample.conv.weight",
              "vae",
              {"decoder.up_blocks.0.upsamplers.0.conv.weight"},
              copy},
             {v + "decoder.mid.attn_1.proj_out.weight",
              "vae",
              {"decoder.mid_block.attentions.0.to_out.0.weight"},
              Transform::Squeeze1x1},
             {v + "post_quant_conv.weight", "vae", {"post_quant_conv.weight"}, copy},
             {c + "text_model.encoder.layers.11.mlp.fc2.weight",
              "text_encoder",
              {"text_model.encoder.layers.11.mlp.fc2.weight"},
              copy},
         });
  expect_unmapped(r, {c + "text_model.embeddings.position_ids", "model_ema.decay", "alphas_cumprod", "v_pred",
                      v + "loss.logvar"});
  EXPECT_EQ(r.mapped.size() + r.unmapped.size(), t.size());
}

TEST(KeyMapSynthetic, Sd2OpenClipDropsLastBlockAndProjection) {
  const std::string p = "cond_stage_model.model.";
  const KeyMapResult r = map_ldm_to_diffusers(real_sd21());
  const std::string l0 = "text_model.encoder.layers.0.self_attn.";
  expect_mapping(r, {
                        {p + "transformer.resblocks.0.attn.in_proj_weight",
                         "text_encoder",
                         {l0 + "q_proj.weight", l0 + "k_proj.weight", l0 + "v_proj.weight"},
                         Transform::CatDim0},
                        {p + "transformer.resblocks.22.mlp.c_fc.weight",
                         "text_encoder",
                         {"text_model.encoder.layers.22.mlp.fc1.weight"},
                         Transform::Copy},
                        {p + "positional_embedding",
                         "text_encoder",
                         {"text_model.embeddings.position_embedding.weight"},
                         Transform::Copy},
                        {p + "token_embedding.weight",
                         "text_encoder",
                         {"text_model.embeddings.token_embedding.weight"},
                         Transform::Copy},
                    });
  expect_unmapped(
      r, {p + "transformer.resblocks.23.mlp.c_fc.weight", p + "transformer.resblocks.23.attn.in_proj_weight",
          p + "text_projection", p + "logit_scale"});
}

TEST(KeyMapSynthetic, SmallSd2OpenClipKeepsEveryBlock) {
  std::vector<TensorInfo> t;
  add_ldm_unet(t, {{32, 64}, {1, 0}, 1, 32, true, 0});
  add_open_clip(t, "cond_stage_model.model.", 32, 5);
  const KeyMapResult r = map_ldm_to_diffusers(t);
  expect_mapping(r, {{"cond_stage_model.model.transformer.resblocks.4.mlp.c_fc.weight",
                      "text_encoder",
                      {"text_model.encoder.layers.4.mlp.fc1.weight"},
                      Transform::Copy}});
  const DetectedArch a = detect_architecture(t, "tiny_sd2.safetensors");
  EXPECT_EQ(a.family, ModelFamily::SD2);
  EXPECT_EQ(a.text_encoder_config["num_hidden_layers"], 5);
}

TEST(KeyMapSynthetic, SdxlAndRefinerOpenClipGoToTextEncoder2) {
  const KeyMapResult xl = map_ldm_to_diffusers(real_sdxl());
  expect_mapping(xl, {
                         {"conditioner.embedders.1.model.text_projection",
                          "text_encoder_2",
                          {"text_projection.weight"},
                          Transform::Transpose},
                         {"conditioner.embedders.1.model.transformer.resblocks.31.mlp.c_fc.weight",
                          "text_encoder_2",
                          {"text_model.encoder.layers.31.mlp.fc1.weight"},
                          Transform::Copy},
                         {"conditioner.embedders.0.transformer.text_model.encoder.layers.0.mlp.fc1.weight",
                          "text_encoder",
                          {"text_model.encoder.layers.0.mlp.fc1.weight"},
                          Transform::Copy},
                         {"model.diffusion_model.label_emb.0.0.weight",
                          "unet",
                          {"add_embedding.linear_1.weight"},
                          Transform::Copy},
                     });
  const KeyMapResult refiner = map_ldm_to_diffusers(real_sdxl_refiner());
  expect_mapping(refiner, {
                              {"conditioner.embedders.0.model.transformer.resblocks.31.attn.in_proj_weight",
                               "text_encoder_2",
                               {"text_model.encoder.layers.31.self_attn.q_proj.weight",
                                "text_model.encoder.layers.31.self_attn.k_proj.weight",
                                "text_model.encoder.layers.31.self_attn.v_proj.weight"},
                               Transform::CatDim0},
                          });
}

}  // namespace
}  // namespace lumen
