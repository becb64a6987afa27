// Adapters on a toy network named like a real one: merge/unmerge exactness,
// run-time vs merged, stacking, LoHa/LoKr against explicit formulas, bad
// input, ResAdapter norm modes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "adapters/lora_apply.h"
#include "adapters/resadapter.h"
#include "error.h"
#include "io/safetensors_torch.h"
#include "model/random_model.h"

namespace {

using namespace lumen;
using namespace lumen::adapters;
using TensorMap = std::map<std::string, torch::Tensor>;

// attn1.to_q (Linear 8->6), conv1 (3x3, 4->6), a resnet norm and a downsampler conv.
struct ToyUNetImpl : torch::nn::Module {
  ToyUNetImpl() {
    auto attn = register_module("attn1", std::make_shared<torch::nn::Module>());
    to_q = attn->register_module("to_q", nn::Linear(8, 6));
    conv1 = register_module("conv1", nn::Conv2d(4, 6, 3, 1, 1));
    auto resnet = register_module("down_blocks", std::make_shared<torch::nn::Module>())
                      ->register_module("0", std::make_shared<torch::nn::Module>());
    norm1 = resnet->register_module("resnets", std::make_shared<torch::nn::Module>())
                ->register_module("0", std::make_shared<torch::nn::Module>())
                ->register_module("norm1", nn::GroupNorm(2, 4, 1e-5));
    down = resnet->register_module("downsamplers", std::make_shared<torch::nn::Module>())
               ->register_module("0", std::make_shared<torch::nn::Module>())
               ->register_module("conv", nn::Conv2d(4, 4, 3, 2, 1));
    torch::NoGradGuard no_grad;
    for (auto& p : parameters()) p.normal_();
  }
  nn::Linear to_q{nullptr};
  nn::Conv2d conv1{nullptr}, down{nullptr};
  nn::GroupNorm norm1{nullptr};
};
TORCH_MODULE(ToyUNet);

class Adapters : public testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(7);
    char tmpl[] = "/tmp/lumen_adapters_XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    net_ = ToyUNet();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const TensorMap& tensors) {
    const std::string path = dir_ + "/" + name;
    save_safetensors(path, tensors);
    return path;
  }
  Components components() { return {{"unet", net_.ptr()}}; }
  TensorMap copies() {
    TensorMap out;
    for (const auto& p : net_->named_parameters()) out[p.key()] = p.value().clone();
    return out;
  }
  // Both layers' outputs on fixed inputs.
  std::pair<torch::Tensor, torch::Tensor> outputs() {
    torch::NoGradGuard no_grad;
    torch::manual_seed(1);
    auto x = torch::randn({3, 8});
    auto img = torch::randn({2, 4, 5, 5});
    return {net_->to_q->forward(x), net_->conv1->forward(img)};
  }
  void expect_restored(const TensorMap& before) {
    for (const auto& p : net_->named_parameters()) EXPECT_TRUE(torch::equal(p.value(), before.at(p.key()))) << p.key();
  }
  // A kohya LoRA on to_q (linear) and conv1 (LoCon: 3x3 down, 1x1 up).
  TensorMap kohya_lora(int64_t rank, double alpha) {
    return {{"lora_unet_attn1_to_q.lora_down.weight", torch::randn({rank, 8})},
            {"lora_unet_attn1_to_q.lora_up.weight", torch::randn({6, rank})},
            {"lora_unet_attn1_to_q.alpha", torch::tensor(alpha)},
            {"lora_unet_conv1.lora_down.weight", torch::randn({rank, 4, 3, 3})},
            {"lora_unet_conv1.lora_up.weight", torch::randn({6, rank, 1, 1})},
            {"lora_unet_conv1.alpha", torch::tensor(alpha)}};
  }
  std::shared_ptr<LoraFile> read(const std::string& path) { return std::make_shared<LoraFile>(read_lora_file(path)); }
  void expect_error(const std::function<void()>& f, const std::string& file, const std::string& key) {
    try {
      f();
      ADD_FAILURE() << "no error for " << file << " " << key;
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(file), std::string::npos) << what;
      EXPECT_NE(what.find(key), std::string::npos) << what;
    }
  }

  std::string dir_;
  ToyUNet net_{nullptr};
};

TEST_F(Adapters, KohyaMergeIsTheDenseFormulaAndUnmergeIsExact) {
  auto t = kohya_lora(2, 1.5);
  const auto before = copies();
  LoraStack stack(components(), ApplyMode::Merge);
  auto report = stack.add("a", read(write("a.safetensors", t)), 0.7);
  EXPECT_EQ(report.matched["unet"], 2u);
  EXPECT_EQ(report.untouched_modules["unet"], (std::vector<std::string>{"down_blocks.0.downsamplers.0.conv"}));
  const double s = 0.7 * 1.5 / 2;
  auto q = before.at("attn1.to_q.weight") + s * t["lora_unet_attn1_to_q.lora_up.weight"].mm(t["lora_unet_attn1_to_q.lora_down.weight"]);
  auto c = before.at("conv1.weight") + s * t["lora_unet_conv1.lora_up.weight"].flatten(1).mm(t["lora_unet_conv1.lora_down.weight"].flatten(1)).view({6, 4, 3, 3});
  EXPECT_TRUE(torch::allclose(net_->to_q->weight, q, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(net_->conv1->weight, c, 1e-5, 1e-5));
  stack.set_scale("a", -2.0);
  stack.clear();
  expect_restored(before);
}

TEST_F(Adapters, RuntimeEqualsMergedAndFollowsScaleChanges) {
  auto file = read(write("a.safetensors", kohya_lora(3, 2.0)));
  const auto before = copies();
  LoraStack runtime(components(), ApplyMode::Runtime);
  runtime.add("a", file, 0.8);
  expect_restored(before);  // run time leaves the weights alone
  auto [rq, rc] = outputs();
  runtime.set_scale("a", -0.3);
  auto [rq2, rc2] = outputs();
  runtime.clear();
  EXPECT_TRUE(net_->to_q->deltas.empty() && net_->conv1->deltas.empty());

  LoraStack merged(components(), ApplyMode::Merge);
  merged.add("a", file, 0.8);
  auto [mq, mc] = outputs();
  merged.set_scale("a", -0.3);
  auto [mq2, mc2] = outputs();
  merged.clear();
  for (auto [a, b] : {std::pair{rq, mq}, {rc, mc}, {rq2, mq2}, {rc2, mc2}}) EXPECT_TRUE(torch::allclose(a, b, 1e-4, 1e-4));
  expect_restored(before);
}

TEST_F(Adapters, TwoAdaptersStackWithTheirOwnScales) {
  auto fa = read(write("a.safetensors", kohya_lora(2, 2.0)));
  auto tb = kohya_lora(4, 1.0);
  auto fb = read(write("b.safetensors", tb));
  const auto before = copies();
  auto dense = [&](const std::shared_ptr<LoraFile>& f, const std::string& key) {
    for (const auto& m : f->modules)
      if (m.key == key) return dense_delta(m, {6, 8}, f->path);
    throw std::runtime_error(key);
  };
  const auto expected = before.at("attn1.to_q.weight") + 0.5 * dense(fa, "lora_unet_attn1_to_q") - 1.2 * dense(fb, "lora_unet_attn1_to_q");
  for (auto mode : {ApplyMode::Merge, ApplyMode::Runtime}) {
    LoraStack stack(components(), mode);
    stack.add("a", fa, 0.5);
    stack.add("b", fb, -1.2);
    torch::NoGradGuard no_grad;
    auto x = torch::eye(8);  // rows of the effective weight
    EXPECT_TRUE(torch::allclose(net_->to_q->forward(x) - before.at("attn1.to_q.bias"), expected.t(), 1e-4, 1e-4));
    stack.remove("a");
    auto only_b = before.at("attn1.to_q.weight") - 1.2 * dense(fb, "lora_unet_attn1_to_q");
    EXPECT_TRUE(torch::allclose(net_->to_q->forward(x) - before.at("attn1.to_q.bias"), only_b.t(), 1e-4, 1e-4));
    stack.clear();
    expect_restored(before);
  }
}

TEST_F(Adapters, PeftMatchesKohyaAndAlphaDefaultsToRank) {
  auto t = kohya_lora(2, 2.0);  // alpha == rank
  TensorMap peft = {{"unet.attn1.to_q.lora_A.weight", t["lora_unet_attn1_to_q.lora_down.weight"]},
                    {"unet.attn1.to_q.lora_B.weight", t["lora_unet_attn1_to_q.lora_up.weight"]},
                    {"unet.conv1.lora_A.weight", t["lora_unet_conv1.lora_down.weight"]},
                    {"unet.conv1.lora_B.weight", t["lora_unet_conv1.lora_up.weight"]}};
  auto merged_weights = [&](const std::shared_ptr<LoraFile>& f) {
    LoraStack stack(components(), ApplyMode::Merge);
    stack.add("x", f, 0.9);
    auto merged = copies();
    stack.clear();
    return merged;
  };
  auto from_kohya = merged_weights(read(write("k.safetensors", t)));
  auto from_peft = merged_weights(read(write("p.safetensors", peft)));
  for (const auto& [key, value] : from_kohya) EXPECT_TRUE(torch::equal(value, from_peft.at(key))) << key;
  EXPECT_FALSE(torch::equal(from_kohya.at("conv1.weight"), net_->conv1->weight));
}

// sum_ij t[i,j,k,l] a[i,p] b[j,r], by loops.
torch::Tensor tucker_by_loops(const torch::Tensor& t, const torch::Tensor& a, const torch::Tensor& b) {
  auto out = torch::zeros({a.size(1), b.size(1), t.size(2), t.size(3)}, torch::kDouble);
  for (int64_t p = 0; p < a.size(1); ++p)
    for (int64_t r = 0; r < b.size(1); ++r)
      for (int64_t i = 0; i < t.size(0); ++i)
        for (int64_t j = 0; j < t.size(1); ++j)
          out[p][r] += t[i][j].to(torch::kDouble) * (a[i][p] * b[j][r]).item<double>();
  return out;
}

TEST_F(Adapters, LoHaMatchesTheDenseFormula) {
  TensorMap linear = {{"lora_unet_attn1_to_q.hada_w1_a", torch::randn({6, 3})},
                      {"lora_unet_attn1_to_q.hada_w1_b", torch::randn({3, 8})},
                      {"lora_unet_attn1_to_q.hada_w2_a", torch::randn({6, 3})},
                      {"lora_unet_attn1_to_q.hada_w2_b", torch::randn({3, 8})},
                      {"lora_unet_attn1_to_q.alpha", torch::tensor(1.5)}};
  TensorMap cp = {{"lora_unet_conv1.hada_w1_a", torch::randn({2, 6})}, {"lora_unet_conv1.hada_w1_b", torch::randn({2, 4})},
                  {"lora_unet_conv1.hada_w2_a", torch::randn({2, 6})}, {"lora_unet_conv1.hada_w2_b", torch::randn({2, 4})},
                  {"lora_unet_conv1.hada_t1", torch::randn({2, 2, 3, 3})}, {"lora_unet_conv1.hada_t2", torch::randn({2, 2, 3, 3})}};
  TensorMap all = linear;
  all.insert(cp.begin(), cp.end());
  auto f = read(write("loha.safetensors", all));
  ASSERT_EQ(f->modules.size(), 2u);
  const auto& conv = f->modules[0].key == "lora_unet_conv1" ? f->modules[0] : f->modules[1];
  const auto& lin = f->modules[0].key == "lora_unet_conv1" ? f->modules[1] : f->modules[0];
  auto expected_lin = (linear["lora_unet_attn1_to_q.hada_w1_a"].mm(linear["lora_unet_attn1_to_q.hada_w1_b"]) *
                       linear["lora_unet_attn1_to_q.hada_w2_a"].mm(linear["lora_unet_attn1_to_q.hada_w2_b"])) * (1.5 / 3);
  EXPECT_TRUE(torch::allclose(dense_delta(lin, {6, 8}, "x"), expected_lin, 1e-5, 1e-5));
  auto expected_conv = tucker_by_loops(cp["lora_unet_conv1.hada_t1"], cp["lora_unet_conv1.hada_w1_a"], cp["lora_unet_conv1.hada_w1_b"]) *
                       tucker_by_loops(cp["lora_unet_conv1.hada_t2"], cp["lora_unet_conv1.hada_w2_a"], cp["lora_unet_conv1.hada_w2_b"]);
  EXPECT_TRUE(torch::allclose(dense_delta(conv, {6, 4, 3, 3}, "x").to(torch::kDouble), expected_conv, 1e-4, 1e-4));

  // The run-time path (dense for LoHa) equals the merged one.
  LoraStack runtime(components(), ApplyMode::Runtime);
  runtime.add("h", f, 0.6);
  auto [rq, rc] = outputs();
  runtime.clear();
  LoraStack merged(components(), ApplyMode::Merge);
  merged.add("h", f, 0.6);
  auto [mq, mc] = outputs();
  EXPECT_TRUE(torch::allclose(rq, mq, 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(rc, mc, 1e-4, 1e-4));
}

// kron by loops: out[a*O2+b][c*I2+d] = w1[a][c] * w2[b][d].
torch::Tensor kron_by_loops(const torch::Tensor& w1, const torch::Tensor& w2) {
  auto out = torch::zeros({w1.size(0) * w2.size(0), w1.size(1) * w2.size(1)});
  for (int64_t a = 0; a < w1.size(0); ++a)
    for (int64_t b = 0; b < w2.size(0); ++b)
      for (int64_t c = 0; c < w1.size(1); ++c)
        for (int64_t d = 0; d < w2.size(1); ++d) out[a * w2.size(0) + b][c * w2.size(1) + d] = w1[a][c] * w2[b][d];
  return out;
}

TEST_F(Adapters, LoKrMatchesTheKroneckerFormula) {
  auto w1 = torch::randn({2, 2}), w2a = torch::randn({3, 1}), w2b = torch::randn({1, 4});
  auto factored = read(write("lokr.safetensors", {{"lora_unet_attn1_to_q.lokr_w1", w1},
                                                  {"lora_unet_attn1_to_q.lokr_w2_a", w2a},
                                                  {"lora_unet_attn1_to_q.lokr_w2_b", w2b},
                                                  {"lora_unet_attn1_to_q.alpha", torch::tensor(4.0)}}));
  EXPECT_TRUE(torch::allclose(dense_delta(factored->modules[0], {6, 8}, "x"), kron_by_loops(w1, w2a.mm(w2b)) * 4.0, 1e-5, 1e-5));
  auto w2 = torch::randn({3, 4});  // both halves full: scale 1 whatever alpha says
  auto full = read(write("lokr_full.safetensors", {{"lora_unet_attn1_to_q.lokr_w1", w1},
                                                   {"lora_unet_attn1_to_q.lokr_w2", w2},
                                                   {"lora_unet_attn1_to_q.alpha", torch::tensor(4.0)}}));
  EXPECT_TRUE(torch::allclose(dense_delta(full->modules[0], {6, 8}, "x"), kron_by_loops(w1, w2), 1e-5, 1e-5));
  // Conv: w1 [2,2] (x) w2 [3,2,3,3] = [6,4,3,3].
  auto c1 = torch::randn({2, 2}), c2 = torch::randn({3, 2, 3, 3});
  auto conv = read(write("lokr_conv.safetensors", {{"lora_unet_conv1.lokr_w1", c1}, {"lora_unet_conv1.lokr_w2", c2}}));
  auto expected = kron_by_loops(c1, c2.flatten(1)).view({6, 2, 2, 9});  // [o, in_m, in_n, kk] before the channel merge
  auto got = dense_delta(conv->modules[0], {6, 4, 3, 3}, "x");
  EXPECT_TRUE(torch::allclose(got.view({6, 2, 2, 9}), expected, 1e-5, 1e-5));
}

TEST_F(Adapters, BadInputNamesTheFileAndKey) {
  const auto before = copies();
  auto t = kohya_lora(2, 1.0);
  auto wrong_shape = t;
  wrong_shape["lora_unet_conv1.lora_up.weight"] = torch::randn({5, 2, 1, 1});
  const std::string shape_file = write("shape.safetensors", wrong_shape);
  expect_error([&] { LoraStack(components(), ApplyMode::Merge).add("s", read(shape_file), 1.0); }, shape_file, "lora_unet_conv1");
  expect_restored(before);  // nothing merged before the error

  auto ranks = t;
  ranks["lora_unet_attn1_to_q.lora_up.weight"] = torch::randn({6, 3});
  const std::string rank_file = write("rank.safetensors", ranks);
  expect_error([&] { read(rank_file); }, rank_file, "lora_unet_attn1_to_q");

  auto zero = t;
  zero["lora_unet_conv1.alpha"] = torch::tensor(0.0);
  const std::string zero_file = write("zero.safetensors", zero);
  expect_error([&] { read(zero_file); }, zero_file, "lora_unet_conv1");

  auto half = t;
  half.erase("lora_unet_conv1.lora_up.weight");
  const std::string half_file = write("half.safetensors", half);
  expect_error([&] { read(half_file); }, half_file, "lora_up");

  const std::string not_lora = write("model.safetensors", {{"conv_in.weight", torch::randn({2, 2})}});
  expect_error([&] { read(not_lora); }, not_lora, "not a LoRA");

  const std::string elsewhere = write("other.safetensors", {{"lora_unet_mid_block_attn_to_k.lora_down.weight", torch::randn({2, 8})},
                                                            {"lora_unet_mid_block_attn_to_k.lora_up.weight", torch::randn({6, 2})}});
  expect_error([&] { LoraStack(components(), ApplyMode::Merge).add("o", read(elsewhere), 1.0); }, elsewhere,
               "lora_unet_mid_block_attn_to_k");
}

TEST_F(Adapters, HostileFactorsAreRefusedBeforeTheyAreMultiplied) {
  // A LoKr whose Kronecker product would be [1e6, 1e6] (4 TB) for a [6, 8] layer:
  // refused from the factors' shapes, before any product is formed.
  const std::string huge = write("lokr_huge.safetensors", {{"lora_unet_attn1_to_q.lokr_w1", torch::zeros({1000, 1000})},
                                                           {"lora_unet_attn1_to_q.lokr_w2", torch::zeros({1000, 1000})}});
  expect_error([&] { LoraStack(components(), ApplyMode::Merge).add("h", read(huge), 1.0); }, huge,
               "the change has shape [1000000, 1000000]");
  // The same for a LoRA's up x down.
  const std::string wide = write("lora_wide.safetensors", {{"lora_unet_attn1_to_q.lora_down.weight", torch::zeros({2, 20000})},
                                                           {"lora_unet_attn1_to_q.lora_up.weight", torch::zeros({20000, 2})}});
  expect_error([&] { LoraStack(components(), ApplyMode::Runtime).add("w", read(wide), 1.0); }, wide, "[20000, 20000]");
  // LoHa halves that cannot be multiplied element by element.
  const std::string loha = write("loha.safetensors", {{"lora_unet_attn1_to_q.hada_w1_a", torch::randn({6, 2})},
                                                      {"lora_unet_attn1_to_q.hada_w1_b", torch::randn({2, 8})},
                                                      {"lora_unet_attn1_to_q.hada_w2_a", torch::randn({3, 2})},
                                                      {"lora_unet_attn1_to_q.hada_w2_b", torch::randn({2, 8})}});
  expect_error([&] { LoraStack(components(), ApplyMode::Merge).add("l", read(loha), 1.0); }, loha, "two LoHa halves");
}

TEST_F(Adapters, NonFiniteOrNonFloatWeightsAreRefused) {
  auto nan_up = kohya_lora(2, 1.0);
  nan_up["lora_unet_conv1.lora_up.weight"][0][0][0][0] = std::nan("");
  const std::string nan_file = write("nan.safetensors", nan_up);
  expect_error([&] { read(nan_file); }, nan_file, "lora_unet_conv1.lora_up.weight: holds non-finite values");
  auto inf_down = kohya_lora(2, 1.0);
  inf_down["lora_unet_attn1_to_q.lora_down.weight"].fill_(INFINITY);
  const std::string inf_file = write("inf.safetensors", inf_down);
  expect_error([&] { read(inf_file); }, inf_file, "non-finite");
  auto ints = kohya_lora(2, 1.0);
  ints["lora_unet_conv1.lora_up.weight"] = torch::ones({6, 2, 1, 1}, torch::kInt8);
  const std::string int_file = write("int8.safetensors", ints);
  expect_error([&] { read(int_file); }, int_file, "lora_unet_conv1.lora_up.weight: has dtype Char");
  // An integer alpha is read as the number it is.
  auto int_alpha = kohya_lora(2, 1.0);
  int_alpha["lora_unet_conv1.alpha"] = torch::tensor(int64_t{4});
  const auto file = read(write("int_alpha.safetensors", int_alpha));
  for (const auto& m : file->modules)
    if (m.key == "lora_unet_conv1") EXPECT_DOUBLE_EQ(m.alpha_scale(), 2.0);

  const std::string norms = write("norms.safetensors", {{"down_blocks.0.resnets.0.norm1.weight", torch::full({4}, NAN)}});
  const std::string lora = write("res_lora.safetensors", kohya_lora(2, 1.0));
  expect_error([&] { read_resadapter({lora, norms}); }, norms, "down_blocks.0.resnets.0.norm1.weight: holds non-finite");
  // A stranger's key of 200,000 digits: refused without recursing per character.
  const std::string long_key = "down_blocks." + std::string(200000, '1') + ".resnets.0.norm1.weight";
  const std::string long_file = write("long.safetensors", {{long_key, torch::ones({4})}});
  expect_error([&] { read_resadapter({lora, long_file}); }, long_file, "not a ResNet GroupNorm parameter");
  expect_error([&] { resadapter_files(lora + ","); }, lora + ",", "names an empty file");
}

TEST_F(Adapters, UnmatchedKeysAreReported) {
  auto t = kohya_lora(2, 1.0);
  t["lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"] = torch::randn({2, 8});
  t["lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight"] = torch::randn({6, 2});
  t["something_else"] = torch::randn({1});
  LoraStack stack(components(), ApplyMode::Runtime);
  auto report = stack.add("a", read(write("a.safetensors", t)), 1.0);
  EXPECT_EQ(report.unmatched_keys, (std::vector<std::string>{"lora_te_text_model_encoder_layers_0_mlp_fc1"}));
  EXPECT_EQ(report.ignored_keys, (std::vector<std::string>{"something_else"}));
}

TEST_F(Adapters, ResAdapterBlendEndsMatchReplaceAndBaseAndRemovalIsExact) {
  const std::string lora = write("pytorch_lora_weights.safetensors",
                                 {{"lora_unet_down_blocks_0_downsamplers_0_conv.lora_down.weight", torch::randn({2, 4, 3, 3}).to(torch::kHalf)},
                                  {"lora_unet_down_blocks_0_downsamplers_0_conv.lora_up.weight", torch::randn({4, 2, 1, 1}).to(torch::kHalf)},
                                  {"lora_unet_down_blocks_0_downsamplers_0_conv.alpha", torch::tensor(1.0).to(torch::kHalf)}});
  write("diffusion_pytorch_model.safetensors", {{"down_blocks.0.resnets.0.norm1.weight", torch::randn({4})},
                                                {"down_blocks.0.resnets.0.norm1.bias", torch::randn({4})}});
  const auto weights = read_resadapter(resadapter_files(dir_));
  const auto before = copies();
  auto state = [&] { return std::make_pair(net_->norm1->weight.clone(), net_->down->weight.clone()); };

  AppliedResAdapter replace(net_.ptr(), weights, 1.0, NormMode::Replace);
  EXPECT_TRUE(torch::equal(net_->norm1->weight, weights.norms.at("down_blocks.0.resnets.0.norm1.weight")));
  const auto replaced = state();
  replace.set_scale(0.0);  // only the LoRA half follows the scale
  EXPECT_TRUE(torch::equal(net_->norm1->weight, replaced.first));
  EXPECT_TRUE(torch::allclose(net_->down->weight, before.at("down_blocks.0.downsamplers.0.conv.weight")));
  replace.remove();
  expect_restored(before);

  AppliedResAdapter blend(net_.ptr(), weights, 1.0, NormMode::Blend);
  EXPECT_TRUE(torch::equal(state().first, replaced.first));
  EXPECT_TRUE(torch::allclose(state().second, replaced.second));
  blend.set_scale(0.0);
  EXPECT_TRUE(torch::equal(net_->norm1->weight, before.at("down_blocks.0.resnets.0.norm1.weight")));
  EXPECT_TRUE(torch::allclose(net_->down->weight, before.at("down_blocks.0.downsamplers.0.conv.weight")));
  blend.set_scale(0.5);
  auto halfway = (before.at("down_blocks.0.resnets.0.norm1.weight") + weights.norms.at("down_blocks.0.resnets.0.norm1.weight")) / 2;
  EXPECT_TRUE(torch::allclose(net_->norm1->weight, halfway));
  blend.remove();
  expect_restored(before);
}

TEST_F(Adapters, ResAdapterForAnotherModelIsRefused) {
  const std::string lora = write("l.safetensors", {{"lora_unet_down_blocks_0_downsamplers_0_conv.lora_down.weight", torch::randn({2, 4, 3, 3})},
                                                   {"lora_unet_down_blocks_0_downsamplers_0_conv.lora_up.weight", torch::randn({4, 2, 1, 1})}});
  const std::string norms = write("n.safetensors", {{"down_blocks.0.resnets.0.norm1.weight", torch::randn({320})}});
  const auto before = copies();
  expect_error([&] { AppliedResAdapter(net_.ptr(), read_resadapter({lora, norms}), 1.0); }, norms,
               "down_blocks.0.resnets.0.norm1.weight");
  const std::string attention = write("a.safetensors", {{"down_blocks.0.attentions.0.norm.weight", torch::randn({4})}});
  expect_error([&] { read_resadapter({lora, attention}); }, attention, "down_blocks.0.attentions.0.norm.weight");
  expect_restored(before);
}

// kohya's SDXL LoRAs name UNet layers in the original layout; both namings must change the same layer.
TEST(AdapterNames, OriginalLayoutNamesReachTheSameLayers) {
  char tmpl[] = "/tmp/lumen_ldm_lora_XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  write_random_model(dir + "/tiny", "tiny", 2);
  auto model = load_model(dir + "/tiny");
  torch::manual_seed(3);
  auto down = torch::randn({2, 32, 1, 1}), up = torch::randn({32, 2, 1, 1});
  auto lora = [&](const std::string& name) {
    const std::string path = dir + "/" + name + ".safetensors";
    save_safetensors(path, {{name + ".lora_down.weight", down}, {name + ".lora_up.weight", up},
                            {name + ".alpha", torch::tensor(2.0)}});
    return std::make_shared<LoraFile>(read_lora_file(path));
  };
  auto weight = model.unet->named_parameters()["down_blocks.0.attentions.0.proj_in.weight"];
  const auto before = weight.clone();
  LoraStack diffusers_named(adapter_components(model), ApplyMode::Merge);
  diffusers_named.add("d", lora("lora_unet_down_blocks_0_attentions_0_proj_in"), 1.0);
  const auto by_diffusers_name = weight.clone();
  diffusers_named.clear();
  LoraStack ldm_named(adapter_components(model), ApplyMode::Merge);
  EXPECT_EQ(ldm_named.add("l", lora("lora_unet_input_blocks_1_1_proj_in"), 1.0).matched["unet"], 1u);
  EXPECT_FALSE(torch::equal(weight, before));
  EXPECT_TRUE(torch::equal(weight, by_diffusers_name));
  ldm_named.clear();
  std::filesystem::remove_all(dir);
}

}  // namespace
