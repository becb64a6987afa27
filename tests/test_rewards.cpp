// Reward models and the CLIP image tower: the aesthetic head's two layouts,
// the TorchScript reward, gradients through the CLIP reward, the float
// preprocessing against the exact 8-bit one, and bad CLIPModel folders.
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "error.h"
#include "io/clip_preprocess.h"
#include "io/clip_preprocess_torch.h"
#include "io/safetensors_torch.h"
#include "model/model_loader.h"
#include "nn/clip_vision.h"
#include "reward.h"
#include "reward_aesthetic.h"

namespace fs = std::filesystem;
using namespace lumen;

#include "test_helpers.h"

using namespace lumen::testing;

namespace {

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }


// A tiny random transformers CLIPModel folder; config.json holds only non-default values.
// `drop` removes one tensor from the file.
void write_random_clip(const std::string& dir, const std::string& drop = "") {
  fs::create_directories(dir);
  write_text(dir + "/config.json", R"({"architectures": ["CLIPModel"], "projection_dim": 8,
    "text_config": {"hidden_size": 8, "intermediate_size": 12, "num_attention_heads": 2, "num_hidden_layers": 2},
    "vision_config": {"hidden_size": 16, "intermediate_size": 20, "num_attention_heads": 2, "num_hidden_layers": 2,
                      "image_size": 32, "patch_size": 8}})");
  auto config = parse_clip_model_config(nlohmann::json::parse(std::ifstream(dir + "/config.json")), dir);
  nn::ClipModel model(config);
  torch::manual_seed(3);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& p : model->named_parameters()) {
    std::string key = p.key();
    for (const std::string prefix : {"vision.", "text."})
      if (key.rfind(prefix, 0) == 0) key = key.substr(prefix.size());
    auto t = torch::randn(p.value().sizes()) * 0.3;
    if (key.find("norm") != std::string::npos && key.find("weight") != std::string::npos) t = t + 1;
    if (key != drop) tensors[key] = t;
  }
  tensors["logit_scale"] = torch::tensor(2.0f);
  save_safetensors(dir + "/model.safetensors", tensors);
}

// A smooth 8-bit RGB test image.
RgbImage smooth_image(int width, int height) {
  RgbImage img{width, height, {}};
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c) {
        const double v = 0.5 + 0.4 * std::sin(0.11 * x + 0.7 * c) * std::cos(0.09 * y - 0.3 * c);
        img.pixels.push_back(static_cast<uint8_t>(std::lround(255 * v)));
      }
  return img;
}

}  // namespace

TEST(AestheticMlp, ReluVariantMatchesTheFormula) {
  TempDir dir;
  const std::vector<int64_t> widths{8, 12, 10, 6, 4, 1};
  const int layer_index[] = {0, 3, 6, 9, 11};
  torch::manual_seed(1);
  std::map<std::string, torch::Tensor> tensors;
  std::vector<torch::Tensor> w, b;
  for (int i = 0; i < 5; ++i) {
    w.push_back(torch::randn({widths[i + 1], widths[i]}) * 0.5);
    b.push_back(torch::randn({widths[i + 1]}) * 0.5);
    tensors["layers." + std::to_string(layer_index[i]) + ".weight"] = w.back();
    tensors["layers." + std::to_string(layer_index[i]) + ".bias"] = b.back();
  }
  const std::string path = dir.path + "/relu.safetensors";
  save_safetensors(path, tensors);
  auto mlp = train::AestheticMlp::load(path);
  EXPECT_TRUE(mlp.relu);

  auto x = nn::l2_normalize(torch::randn({5, 8}));
  auto h = x;
  for (int i = 0; i < 4; ++i) h = torch::relu(h.matmul(w[i].t()) + b[i]);
  auto expected = h.matmul(w[4].t()) + b[4];
  EXPECT_TRUE(torch::allclose(mlp.forward(x), expected, 1e-6, 1e-6));
}

TEST(AestheticMlp, ZeroRowStaysZeroWhenNormalised) {
  auto x = torch::zeros({2, 4});
  x[1] = torch::tensor({3.0f, 0.0f, 4.0f, 0.0f});
  auto n = nn::l2_normalize(x);
  EXPECT_TRUE(torch::equal(n[0], torch::zeros({4})));
  EXPECT_TRUE(torch::allclose(n[1], torch::tensor({0.6f, 0.0f, 0.8f, 0.0f})));
}

TEST(AestheticMlp, UnknownKeySetNamesFileAndExpectedKeys) {
  TempDir dir;
  const std::string path = dir.path + "/other.safetensors";
  save_safetensors(path, {{"layers.0.weight", torch::zeros({4, 8})}, {"layers.0.bias", torch::zeros({4})},
                          {"head.weight", torch::zeros({1, 4})}});
  const std::string msg = error_of([&] { train::AestheticMlp::load(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("layers.7.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("layers.11.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("head.weight"), std::string::npos) << msg;
}

TEST(TorchScriptReward, ScoresWithTheModule) {
  TempDir dir;
  const std::string path = dir.path + "/mean.pt";
  torch::jit::Module m("m");
  m.define("def forward(self, x):\n  return x.mean(dim=[1,2,3])\n");
  m.save(path);
  auto reward = train::make_reward({"torchscript", path, ""});
  auto images = torch::rand({3, 3, 8, 8}) * 2 - 1;
  auto s = reward->score(images, {});
  ASSERT_EQ(s.sizes(), torch::IntArrayRef({3}));
  EXPECT_TRUE(torch::allclose(s, images.mean({1, 2, 3})));

  const std::string missing = dir.path + "/missing.pt";
  EXPECT_NE(error_of([&] { train::make_reward({"torchscript", missing, ""}); }).find(missing), std::string::npos);
  const std::string corrupt = dir.path + "/corrupt.pt";
  write_text(corrupt, "this is not a zip archive");
  EXPECT_NE(error_of([&] { train::make_reward({"torchscript", corrupt, ""}); }).find(corrupt), std::string::npos);
  EXPECT_NE(error_of([&] { train::make_reward({"sharpness", path, ""}); }).find("unknown kind"), std::string::npos);

  // An archive whose pickle names a Python global (os.system) is refused by
  // the TorchScript loader with an error that is not a c10::Error; it leaked
  // as "\nUnknown type name 'os.system':…", naming no file.
  const std::string hostile = dir.path + "/hostile.pt";
  {
    caffe2::serialize::PyTorchStreamWriter writer(hostile);
    const std::string data = "\x80\x02" "cos\nsystem\n" "q\x00.", constants = "\x80\x02).", version = "3\n";
    writer.writeRecord("data.pkl", data.data(), data.size());
    writer.writeRecord("constants.pkl", constants.data(), constants.size());
    writer.writeRecord("version", version.data(), version.size());
    writer.writeEndOfFile();
  }
  const std::string message = error_of([&] { train::make_reward({"torchscript", hostile, ""}); });
  EXPECT_EQ(message.rfind(hostile + ": not a loadable TorchScript module: ", 0), 0u) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST(ClipReward, GradientReachesTheImage) {
  TempDir dir;
  write_random_clip(dir.path + "/clip");
  auto reward = train::make_reward({"clip", dir.path + "/clip", ""});
  torch::manual_seed(5);
  auto images = (torch::randn({2, 3, 40, 56}) * 0.5).tanh().requires_grad_(true);
  auto s = reward->score(images, {"a red circle", "a blue square"});
  ASSERT_EQ(s.sizes(), torch::IntArrayRef({2}));
  s.sum().backward();
  auto g = images.grad();
  ASSERT_TRUE(g.defined());
  EXPECT_TRUE(torch::isfinite(g).all().item<bool>());
  EXPECT_GT(g.abs().max().item<double>(), 0.0);

  // The score is the matching entry of CLIPModel's logits_per_image (one prompt for all: column 0).
  auto one = reward->score(images.detach(), {"a red circle"});
  auto model = nn::load_clip_model(dir.path + "/clip");
  ClipImageProcessorConfig pre;
  pre.shortest_edge = pre.crop_height = pre.crop_width = 32;
  torch::NoGradGuard no_grad;
  auto pixels = clip_pixel_values_differentiable(images.detach(), pre);
  int64_t pad = 0;
  auto ids = load_tokenizer(embedded_tokenizer("<|endoftext|>"), &pad)->encode_padded("a red circle", 77, pad);
  auto logits = model->forward(torch::tensor(ids).view({1, 77}), pixels).logits_per_image;
  EXPECT_TRUE(torch::allclose(one, logits.select(1, 0), 1e-5, 1e-5)) << one << logits;
}

TEST(AestheticReward, ScoresTheNormalisedImageEmbedding) {
  TempDir dir;
  write_random_clip(dir.path + "/clip");
  torch::manual_seed(2);
  std::map<std::string, torch::Tensor> head;
  const std::vector<int64_t> widths{8, 6, 5, 4, 3, 1};
  const int layer_index[] = {0, 2, 4, 6, 7};
  for (int i = 0; i < 5; ++i) {
    head["layers." + std::to_string(layer_index[i]) + ".weight"] = torch::randn({widths[i + 1], widths[i]});
    head["layers." + std::to_string(layer_index[i]) + ".bias"] = torch::randn({widths[i + 1]});
  }
  save_safetensors(dir.path + "/head.safetensors", head);
  auto reward = train::make_reward({"aesthetic", dir.path + "/clip", dir.path + "/head.safetensors"});
  auto images = torch::rand({2, 3, 48, 36}) * 2 - 1;
  auto s = reward->score(images, {});
  ASSERT_EQ(s.sizes(), torch::IntArrayRef({2}));

  auto model = nn::load_clip_model(dir.path + "/clip");
  ClipImageProcessorConfig pre;
  pre.shortest_edge = pre.crop_height = pre.crop_width = 32;
  torch::NoGradGuard no_grad;
  auto embeds = model->vision->forward(clip_pixel_values_differentiable(images, pre)).image_embeds;
  auto mlp = train::AestheticMlp::load(dir.path + "/head.safetensors");
  EXPECT_FALSE(mlp.relu);
  EXPECT_TRUE(torch::allclose(s, mlp.forward(nn::l2_normalize(embeds)).squeeze(1), 1e-5, 1e-5));

  head["layers.0.weight"] = torch::randn({6, 7});  // wrong input width for this CLIP
  save_safetensors(dir.path + "/head7.safetensors", head);
  EXPECT_NE(error_of([&] {
              train::make_reward({"aesthetic", dir.path + "/clip", dir.path + "/head7.safetensors"});
            }).find("head7.safetensors"),
            std::string::npos);
}

// The float path cannot be bit-exact (no uint8 rounding between Pillow's
// passes, float weights); on a smooth image it stays close.
TEST(ClipPreprocess, DifferentiablePathMatchesExactPathOnSmoothImages) {
  ClipImageProcessorConfig c;
  c.shortest_edge = c.crop_height = c.crop_width = 32;
  for (auto [w, h] : {std::pair<int, int>{47, 29}, {37, 60}, {200, 150}, {32, 32}}) {
    RgbImage img = smooth_image(w, h);
    auto exact = clip_preprocess(img, c);
    auto exact_t = torch::tensor(exact.values).view({1, 3, 32, 32});
    auto u8 = torch::tensor(std::vector<float>(img.pixels.begin(), img.pixels.end())).view({h, w, 3});
    auto images = (u8.permute({2, 0, 1}).unsqueeze(0) / 255.0) * 2 - 1;
    auto diff = (clip_pixel_values_differentiable(images, c) - exact_t).abs().max().item<double>();
    std::printf("differentiable vs exact preprocessing, %dx%d -> 32: max abs diff %.4g (normalised units)\n", w, h,
                diff);
    EXPECT_LT(diff, 0.03);  // measured ~0.015: about one 8-bit step (1/255/std)
  }
}

TEST(ClipModelLoading, MissingTensorNamesFileAndKey) {
  TempDir dir;
  const std::string key = "vision_model.post_layernorm.weight";
  write_random_clip(dir.path + "/clip", key);
  const std::string msg = error_of([&] { nn::load_clip_model(dir.path + "/clip"); });
  EXPECT_NE(msg.find(dir.path + "/clip/model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find(key), std::string::npos) << msg;

  write_random_clip(dir.path + "/ok");
  auto tensors = load_safetensors(dir.path + "/ok/model.safetensors");
  std::map<std::string, torch::Tensor> copy(tensors.begin(), tensors.end());
  copy["visual_projection.weight"] = torch::zeros({8, 15});
  save_safetensors(dir.path + "/ok/model.safetensors", copy);
  const std::string shape_msg = error_of([&] { nn::load_clip_model(dir.path + "/ok"); });
  EXPECT_NE(shape_msg.find("visual_projection.weight"), std::string::npos) << shape_msg;

  EXPECT_NE(error_of([&] { nn::load_clip_model(dir.path + "/nowhere"); }).find("config.json"), std::string::npos);
}
