// Loading models from diffusers folders and single files, and refusing bad ones.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "error.h"
#include "io/safetensors_torch.h"
#include "io/text_file.h"
#include "model/model_loader.h"
#include "model/random_model.h"
#include "model/weights.h"

namespace {

using lumen::Error;

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/lumen_load_XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf " + path).c_str()); }
  std::string path;
};

std::string golden() {
  const char* env = std::getenv("LUMEN_GOLDEN_DIR");
  return env && *env ? env : "../shared/golden";
}

// Runs `f` and expects a lumen::Error whose message contains every needle.
template <typename F>
void expect_error(F f, std::initializer_list<std::string> needles) {
  try {
    f();
    FAIL() << "no error";
  } catch (const Error& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(ModelLoading, RandomDiffusersFolderLoadsAndRuns) {
  TempDir dir;
  const std::string model = dir.path + "/tiny";
  lumen::write_random_model(model, "tiny", 7);
  auto plan = lumen::plan_model(model);
  EXPECT_EQ(plan.format, "diffusers");
  EXPECT_EQ(plan.family, lumen::ModelFamily::SD1);
  EXPECT_EQ(plan.prediction_type, "epsilon");
  EXPECT_GT(plan.components.at("unet").parameters, 0);
  auto m = lumen::load_model(model);
  torch::InferenceMode guard;
  auto ids = torch::tensor(m.tokenizer->encode_padded("a red circle", 77, m.pad_id)).unsqueeze(0);
  auto ctx = m.text_encoder->forward(ids).last_hidden_state;
  auto out = m.unet->forward(torch::randn({2, 4, 8, 12}), torch::tensor({10.f}), ctx.expand({2, 77, 32}));
  EXPECT_EQ(out.sizes(), torch::IntArrayRef({2, 4, 8, 12}));
  EXPECT_TRUE(out.isfinite().all().item<bool>());
  auto image = m.vae->decode(torch::randn({1, 4, 8, 8}));
  EXPECT_EQ(image.sizes(), torch::IntArrayRef({1, 3, 16, 16}));
}

TEST(ModelLoadingBadInput, MissingPath) {
  expect_error([] { lumen::plan_model("/nonexistent/model"); }, {"/nonexistent/model", "no such"});
}

TEST(ModelLoadingBadInput, PickleRefused) {
  TempDir dir;
  write(dir.path + "/m.ckpt", "not really");
  expect_error([&] { lumen::plan_model(dir.path + "/m.ckpt"); }, {"m.ckpt", "pickled"});
}

TEST(ModelLoadingBadInput, FolderWithoutModelIndex) {
  TempDir dir;
  expect_error([&] { lumen::plan_model(dir.path); }, {dir.path, "model_index.json"});
}

TEST(ModelLoadingBadInput, UnknownArchitecture) {
  TempDir dir;
  const std::string path = dir.path + "/foo.safetensors";
  lumen::save_safetensors(path, {{"foo", torch::ones({2})}, {"bar.weight", torch::ones({3, 3})}});
  expect_error([&] { lumen::plan_model(path); }, {path});
}

TEST(ModelLoadingBadInput, ShapeMismatchNamesKeyAndShapes) {
  TempDir dir;
  const std::string model = dir.path + "/tiny";
  lumen::write_random_model(model, "tiny", 1);
  const std::string cfg = model + "/unet/config.json";
  auto j = lumen::read_yaml_or_json(cfg);
  j["cross_attention_dim"] = 48;
  write(cfg, j.dump());
  expect_error([&] { lumen::load_model(model); }, {"unet/diffusion_pytorch_model.safetensors", "attn2.to_k.weight", "[32,48]"});
}

TEST(ModelLoadingBadInput, MissingTensorInDiffusersFolder) {
  TempDir dir;
  const std::string model = dir.path + "/tiny";
  lumen::write_random_model(model, "tiny", 1);
  const std::string weights = model + "/vae/diffusion_pytorch_model.safetensors";
  auto tensors = lumen::load_safetensors(weights);
  std::map<std::string, torch::Tensor> copy;
  for (auto& [k, v] : tensors) copy[k] = v.clone();
  tensors.clear();
  copy.erase("decoder.conv_out.weight");
  lumen::save_safetensors(weights, copy);
  expect_error([&] { lumen::load_model(model); }, {weights, "missing tensor 'decoder.conv_out.weight'"});
}

// Tensors the network has no place for are reported, not silently dropped
// (a single file notes them in its plan; a diffusers folder said nothing).
TEST(ModelLoadingBadInput, UnusedTensorsInDiffusersFolderAreNoted) {
  TempDir dir;
  const std::string model = dir.path + "/tiny";
  lumen::write_random_model(model, "tiny", 1);
  EXPECT_TRUE(lumen::load_model(model).load_notes.empty());
  const std::string weights = model + "/unet/diffusion_pytorch_model.safetensors";
  auto tensors = lumen::load_safetensors(weights);
  std::map<std::string, torch::Tensor> copy;
  for (auto& [k, v] : tensors) copy[k] = v.clone();
  tensors.clear();
  copy["down_blocks.0.stray.weight"] = torch::ones({3});
  lumen::save_safetensors(weights, copy);
  const auto notes = lumen::load_model(model).load_notes;
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("unet: 1 tensor(s) of " + weights + " not used, e.g. 'down_blocks.0.stray.weight'"),
            std::string::npos)
      << notes[0];
}

TEST(ModelLoadingBadInput, BadConfigField) {
  TempDir dir;
  const std::string model = dir.path + "/tiny";
  lumen::write_random_model(model, "tiny", 1);
  write(model + "/unet/config.json", R"({"block_out_channels": [32, 64], "down_block_types": ["Foo", "DownBlock2D"],
      "up_block_types": ["UpBlock2D", "UpBlock2D"]})");
  expect_error([&] { lumen::load_model(model); }, {"unet/config.json", "down_block_types", "Foo"});
  write(model + "/unet/config.json", "{ not json");
  expect_error([&] { lumen::plan_model(model); }, {"unet/config.json", "is not valid JSON: parse error at line 1, column 4"});
}

// A stranger's config: each absurd value is refused with the file and field
// named, before any module is built (found by probing: attention_head_dim 0
// divided by zero, layers_per_block 1e6 built modules until memory ran out).
TEST(ModelLoadingBadInput, AbsurdConfigValuesAreRefusedByName) {
  TempDir dir;
  const std::string model = dir.path + "/tiny";
  lumen::write_random_model(model, "tiny", 1);
  const std::string unet = model + "/unet/config.json", vae = model + "/vae/config.json",
                    te = model + "/text_encoder/config.json", sched = model + "/scheduler/scheduler_config.json";
  struct Case {
    std::string file, key, value, needle;
  };
  const std::vector<Case> cases = {
      {unet, "attention_head_dim", "0", "'attention_head_dim' must hold positive integers"},
      {unet, "attention_head_dim", "-4", "'attention_head_dim' must hold positive integers"},
      {unet, "layers_per_block", "1000000", "'layers_per_block' must hold positive integers up to 64"},
      {unet, "layers_per_block", "-1", "'layers_per_block' must hold positive integers"},
      {unet, "transformer_layers_per_block", "0", "'transformer_layers_per_block' must hold positive integers"},
      {unet, "cross_attention_dim", "1000000000", "'cross_attention_dim' must hold positive integers up to"},
      {unet, "cross_attention_dim", "-1", "'cross_attention_dim'"},
      {unet, "sample_size", "0", "'sample_size' must be a positive integer"},
      {unet, "norm_eps", "-1", "'norm_eps' must be a number in"},
      {vae, "layers_per_block", "1000000", "'layers_per_block' must be a positive integer up to 64"},
      {vae, "scaling_factor", "0", "'scaling_factor' must be a number in"},
      {vae, "shift_factor", "1e308", "'shift_factor' must be a number in"},
      {te, "num_hidden_layers", "1000000", "'num_hidden_layers' must be a positive integer up to 128"},
      {te, "layer_norm_eps", "-1", "'layer_norm_eps' must be a number in"},
      {sched, "prediction_type", "5", "'prediction_type' must be a string"},
      {sched, "rescale_betas_zero_snr", "\"yes\"", "'rescale_betas_zero_snr' must be true or false"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.file + " " + c.key + " = " + c.value);
    const std::string original = lumen::read_text_file(c.file);
    auto j = nlohmann::json::parse(original);
    j[c.key] = nlohmann::json::parse(c.value);
    write(c.file, j.dump());
    expect_error([&] { lumen::load_model(model); }, {c.file, c.needle});
    write(c.file, original);
  }
}

TEST(ModelLoadingBadInput, BadOverrideYamlNamesLine) {
  TempDir dir;
  const std::string model = dir.path + "/tiny";
  lumen::write_random_model(model, "tiny", 1);
  const std::string yaml = dir.path + "/override.yaml";
  write(yaml, "unet:\n  cross_attention_dim: [1, 2\n");
  lumen::LoadOptions options;
  options.config_override = yaml;
  expect_error([&] { lumen::plan_model(model, options); }, {yaml, "line"});
  write(yaml, "transformer: {a: 1}\n");
  expect_error([&] { lumen::plan_model(model, options); }, {yaml, "'transformer' is not a component"});
}

TEST(ModelLoadingBadInput, SingleFileMissingTensor) {
  const std::string src = golden() + "/checkpoint_convert/sd15_single_file/model.safetensors";
  if (::access(src.c_str(), R_OK) != 0) GTEST_SKIP() << "golden data missing: " << src;
  TempDir dir;
  const std::string path = dir.path + "/broken.safetensors";
  auto tensors = lumen::load_safetensors(src);
  tensors.erase("model.diffusion_model.out.2.weight");
  lumen::save_safetensors(path, tensors);
  expect_error([&] { lumen::load_model(path); }, {path});
}

// SDXL v-prediction fine-tunes mark themselves with `v_pred` and `ztsnr` tensors.
TEST(ModelLoading, MarkerTensorsSetPredictionAndZeroSnr) {
  const std::string src = golden() + "/checkpoint_convert/sd15_single_file/model.safetensors";
  if (::access(src.c_str(), R_OK) != 0) GTEST_SKIP() << "golden data missing: " << src;
  TempDir dir;
  const std::string path = dir.path + "/vpred.safetensors";
  auto tensors = lumen::load_safetensors(src);
  EXPECT_EQ(lumen::plan_model(src).prediction_type, "");
  tensors["v_pred"] = torch::empty({0});
  tensors["ztsnr"] = torch::empty({0});
  lumen::save_safetensors(path, tensors);
  auto plan = lumen::plan_model(path);
  EXPECT_EQ(plan.prediction_type, "v_prediction");
  EXPECT_TRUE(plan.zero_terminal_snr);
}

TEST(ModelLoadingBadInput, TruncatedSingleFile) {
  const std::string src = golden() + "/checkpoint_convert/sd15_single_file/model.safetensors";
  if (::access(src.c_str(), R_OK) != 0) GTEST_SKIP() << "golden data missing: " << src;
  TempDir dir;
  const std::string path = dir.path + "/truncated.safetensors";
  std::system(("head -c 100000 " + src + " > " + path).c_str());
  expect_error([&] { lumen::plan_model(path); }, {path, "past the end"});
}

}  // namespace

// Float32 weights stored as float32 are used over the file's pages; copied
// (--no-mmap) they are the same numbers. A write to a mapped parameter (a
// merged LoRA, training) stays in the process: the file is unchanged.
TEST(ModelLoading, MappedWeightsMatchCopiesAndWritesNeverReachTheFile) {
  TempDir dir;
  const std::string model = dir.path + "/tiny";
  lumen::write_random_model(model, "tiny", 11);
  const std::string unet_file = model + "/unet/diffusion_pytorch_model.safetensors";
  std::map<std::string, torch::Tensor> stored;
  for (const auto& [k, v] : lumen::load_safetensors(unet_file)) stored[k] = v.clone();

  ASSERT_TRUE(lumen::map_weights_enabled());
  auto mapped = lumen::load_model(model);
  lumen::set_map_weights(false);
  auto copied = lumen::load_model(model);
  lumen::set_map_weights(true);
  size_t compared = 0;
  for (const auto& p : mapped.unet->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), copied.unet->named_parameters()[p.key()])) << p.key();
    ++compared;
  }
  EXPECT_GT(compared, 10u);

  torch::NoGradGuard no_grad;
  for (auto& p : mapped.unet->parameters()) p.add_(1.0);  // every page written
  for (const auto& [k, v] : lumen::load_safetensors(unet_file))
    EXPECT_TRUE(torch::equal(v, stored.at(k))) << k << " changed in the file";
  auto again = lumen::load_model(model);
  for (const auto& p : again.unet->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), copied.unet->named_parameters()[p.key()])) << p.key();
}
