// UniFL feedback learning on CI-sized runs: the perception and reward models
// learn, the feedback loop trains a LoRA of the embedded default model with
// every reward kind, resumes exactly, and refuses bad input clearly.
#include <gtest/gtest.h>
#include <unistd.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <tuple>

#include "adapters/lora_apply.h"
#include "error.h"
#include "io/image_tensor.h"
#include "io/safetensors_torch.h"
#include "io/text_file.h"
#include "model/model_loader.h"
#include "perception_model.h"
#include "prompt_selection.h"
#include "recipe.h"
#include "runtime.h"
#include "shapes/judge.h"
#include "shapes_reward_model.h"
#include "shapes_supervision.h"
#include "trainer.h"

namespace fs = std::filesystem;
using namespace lumen;
using namespace lumen::train;

#include "test_helpers.h"

using namespace lumen::testing;

namespace {

const std::string kBase = "assets/default-model";

const char* kSegmenterRecipe = R"(task: segmenter
output: OUT
seed: 1
threads: 1
steps: STEPS
batch_size: 8
dataset: {type: shapes, width: 64, height: 64}
optimizer: {lr: 3.0e-3, warmup_steps: 5}
checkpoint_every: 1000
log_every: 10
model: {base: BASE}
perception: {channels: [8, 16, 16], corrupt: 0.3, vae_roundtrip: 0.5, colour: HUES}
)";

const char* kRewardRecipe = R"(task: reward
output: OUT
seed: 2
threads: 1
steps: STEPS
batch_size: 16
dataset: {type: shapes, width: 64, height: 64}
optimizer: {lr: 2.0e-3, warmup_steps: 5}
checkpoint_every: 1000
log_every: 10
model: {base: BASE}
reward: {dimension: DIM, channels: [8, 16, 16, 16], hidden: 32, eval_pairs: 128}
)";

const char* kFeedbackRecipe = R"(task: feedback
output: OUT
seed: 7
threads: 1
steps: STEPS
batch_size: 4
dataset: {type: shapes, width: 64, height: 64}
optimizer: {lr: 1.0e-3, grad_clip: 1.0}
checkpoint_every: 2
log_every: 1
model: {base: BASE}
lora: {rank: 2, alpha: 2}
feedback:
  steps: [1, 2]
  cfg_scale: 1.5
  guidance_rescale: 0.7
  perceptual: {model: SEG, reduction: shape_area, foreground_weight: 0.5, background_weight: 0.5}
  rewards:
    - {model: COLOUR, weight: 1.0, alpha: 1.0}
    - {model: LAYOUT, weight: 0.5, alpha: 1.0}
  adversarial: {init: LAYOUT, weight: 0.1, lr: 1.0e-4}
  prompts: {selection: active, pool: 16, keep: 6, refresh_every: 3}
)";

// Judges trained once for the suite (a few seconds each).
class FeedbackTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    set_threads(1);
    dir_ = new TempDir;
    TrainOptions o;
    o.progress = false;
    seg_ = new TrainResult(run_training(recipe("seg", kSegmenterRecipe, {{"STEPS", "60"}, {"HUES", "false"}}), o));
    // A colour-reading segmenter for the loop (its figures are not the point here).
    colour_seg_ = new TrainResult(run_training(recipe("colour-seg", kSegmenterRecipe, {{"STEPS", "5"}, {"HUES", "true"}}), o));
    colour_ = new TrainResult(run_training(recipe("colour", kRewardRecipe, {{"STEPS", "150"}, {"DIM", "colour"}}), o));
    layout_ = new TrainResult(run_training(recipe("layout", kRewardRecipe, {{"STEPS", "20"}, {"DIM", "layout"}}), o));
  }
  static void TearDownTestSuite() {
    delete seg_;
    delete colour_seg_;
    delete colour_;
    delete layout_;
    delete dir_;
  }
  static Recipe recipe(const std::string& name, const char* text, std::map<std::string, std::string> values) {
    values.emplace("OUT", dir_->path + "/" + name);
    values.emplace("BASE", kBase);
    if (colour_seg_) values.emplace("SEG", colour_seg_->final_folder);
    if (colour_) values.emplace("COLOUR", colour_->final_folder);
    if (layout_) values.emplace("LAYOUT", layout_->final_folder);
    return read_recipe(write(dir_->path + "/" + name + ".yaml", fill(text, values)));
  }
  static std::vector<std::string> metric_keys(const std::string& run) {
    std::ifstream in(dir_->path + "/" + run + "/metrics.jsonl");
    std::vector<std::string> keys;
    std::string line;
    while (std::getline(in, line)) {
      const auto record = nlohmann::json::parse(line);  // items() does not keep a temporary alive
      for (const auto& [k, v] : record.items()) keys.push_back(k);
    }
    return keys;
  }
  static TempDir* dir_;
  static TrainResult *seg_, *colour_seg_, *colour_, *layout_;
};
TempDir* FeedbackTest::dir_ = nullptr;
TrainResult* FeedbackTest::seg_ = nullptr;
TrainResult* FeedbackTest::colour_seg_ = nullptr;
TrainResult* FeedbackTest::colour_ = nullptr;
TrainResult* FeedbackTest::layout_ = nullptr;

TEST_F(FeedbackTest, SegmenterLearnsTheMasks) {
  ASSERT_TRUE(seg_->finished);
  EXPECT_LT(mean(seg_->losses, 50, 60), 0.5 * mean(seg_->losses, 0, 10));
  auto model = load_segmenter(seg_->final_folder);
  const auto config = nlohmann::json::parse(std::ifstream(seg_->final_folder + "/config.json"));
  EXPECT_GT(config.at("held_out_iou").get<double>(), 0.5);
  // No gradients into a frozen judge; gradients reach the judged image.
  auto image = torch::zeros({1, 3, 64, 64}, torch::requires_grad());
  model->loss(image, torch::zeros({1, 64, 64}, torch::kLong)).backward();
  EXPECT_GT(image.grad().abs().sum().item<double>(), 0);
  for (const auto& p : model->parameters()) EXPECT_FALSE(p.grad().defined());
  // The wrong resolution is a clear error.
  const auto e = error_of([&] { model->loss(torch::zeros({1, 3, 32, 32}), torch::zeros({1, 32, 32}, torch::kLong)); });
  EXPECT_NE(e.find("64x64"), std::string::npos) << e;
}

TEST_F(FeedbackTest, RewardModelRanksHeldOutPairs) {
  ASSERT_TRUE(colour_->finished);
  EXPECT_LT(mean(colour_->losses, 130, 150), 0.7 * mean(colour_->losses, 0, 20));
  const auto config = nlohmann::json::parse(std::ifstream(colour_->final_folder + "/config.json"));
  EXPECT_EQ(config.at("dimension"), "colour");
  EXPECT_GT(config.at("held_out_pair_accuracy").get<double>(), 0.65);  // chance: 0.5
  // A segmenter is not a reward model.
  const auto e = error_of([&] { load_reward(seg_->final_folder); });
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  EXPECT_NE(e.find("not a shapes_reward"), std::string::npos) << e;
}

TEST_F(FeedbackTest, LoopTrainsALoraWithEveryFeedbackAndResumesExactly) {
  TrainOptions o;
  o.progress = false;
  const auto unbroken = run_training(recipe("fb", kFeedbackRecipe, {{"STEPS", "6"}}), o);
  ASSERT_TRUE(unbroken.finished);
  for (double l : unbroken.losses) EXPECT_TRUE(std::isfinite(l));
  const auto keys = metric_keys("fb");
  for (const char* k : {"pefl", "x0_bg_error", "denoise", "reward_colour", "reward_layout", "d_loss", "g_loss", "prompt_kept_deficit"})
    EXPECT_NE(std::find(keys.begin(), keys.end(), k), keys.end()) << k;

  // Stopped after 3 steps and resumed: the same losses and the same LoRA, bit for bit
  // (the discriminator, its optimiser and the prompt selection are in the checkpoint).
  const auto r = recipe("fb-broken", kFeedbackRecipe, {{"STEPS", "6"}});
  TrainOptions first = o;
  first.stop_after = 3;
  const auto part1 = run_training(r, first);
  TrainOptions again = o;
  again.resume = true;
  const auto part2 = run_training(r, again);
  ASSERT_TRUE(part2.finished);
  std::vector<double> joined = part1.losses;
  joined.insert(joined.end(), part2.losses.begin(), part2.losses.end());
  ASSERT_EQ(joined.size(), unbroken.losses.size());
  for (size_t i = 0; i < joined.size(); ++i) EXPECT_DOUBLE_EQ(joined[i], unbroken.losses[i]) << "step " << i + 1;
  const auto a = load_safetensors(unbroken.final_folder + "/lora.safetensors");
  const auto b = load_safetensors(part2.final_folder + "/lora.safetensors");
  ASSERT_EQ(a.size(), b.size());
  bool trained = false;
  for (const auto& [key, t] : a) {
    EXPECT_TRUE(torch::equal(t, b.at(key))) << key;
    if (key.find("lora_up") != std::string::npos && t.abs().max().item<double>() > 0) trained = true;
  }
  EXPECT_TRUE(trained);
  // The LoRA loads through Lumen's adapter loader, every module matched.
  auto model = std::make_shared<LoadedModel>(load_model(kBase));
  adapters::LoraStack stack(adapters::adapter_components(*model), adapters::ApplyMode::Merge);
  const auto file = unbroken.final_folder + "/lora.safetensors";
  const auto report = stack.add("unifl", std::make_shared<adapters::LoraFile>(adapters::read_lora_file(file)), 1.0);
  EXPECT_TRUE(report.unmatched_keys.empty());
}

// `lumen feedback` as two processes (torchrun's variables): the LoRA's
// gradients go through the bucketed all-reduce, the discriminator's are
// averaged by the objective, and rank 0 writes the run.
TEST_F(FeedbackTest, RunsAsTwoProcesses) {
  recipe("fb-ddp", kFeedbackRecipe, {{"STEPS", "2"}});  // writes fb-ddp.yaml
  const std::string port = std::to_string(29800 + ::getpid() % 1000);
  auto rank = [&](int r) {
    return "WORLD_SIZE=2 RANK=" + std::to_string(r) + " MASTER_ADDR=127.0.0.1 MASTER_PORT=" + port + " " +
           LUMEN_BINARY + " --threads 1 feedback " + dir_->path + "/fb-ddp.yaml > " + dir_->path + "/ddp" +
           std::to_string(r) + ".log 2>&1";
  };
  const std::string both = "(" + rank(1) + ") & pid=$!; " + rank(0) + "; r0=$?; wait $pid; r1=$?; exit $((r0 + r1))";
  ASSERT_EQ(std::system(("bash -c '" + both + "'").c_str()), 0) << read_text_file(dir_->path + "/ddp0.log")
                                                                << read_text_file(dir_->path + "/ddp1.log");
  EXPECT_TRUE(fs::exists(dir_->path + "/fb-ddp/final/lora.safetensors"));
  const auto keys = metric_keys("fb-ddp");
  EXPECT_NE(std::find(keys.begin(), keys.end(), "d_loss"), keys.end());
}

TEST_F(FeedbackTest, BadJudgesAreClearErrors) {
  // A missing reward model names the folder.
  TrainOptions o;
  o.progress = false;
  auto e = error_of([&] { run_training(recipe("bad1", kFeedbackRecipe, {{"STEPS", "2"}, {"COLOUR", dir_->path + "/nowhere"}}), o); });
  EXPECT_NE(e.find(dir_->path + "/nowhere"), std::string::npos) << e;
  // A perception model in the reward's place is mismatched.
  e = error_of([&] { run_training(recipe("bad2", kFeedbackRecipe, {{"STEPS", "2"}, {"COLOUR", seg_->final_folder}}), o); });
  EXPECT_NE(e.find(seg_->final_folder), std::string::npos) << e;
  EXPECT_NE(e.find("not a shapes_reward"), std::string::npos) << e;
  // A perception model for another resolution.
  auto text = fill(kFeedbackRecipe, {{"width: 64, height: 64", "width: 32, height: 32"}});
  e = error_of([&] { run_training(recipe("bad3", text.c_str(), {{"STEPS", "2"}}), o); });
  EXPECT_NE(e.find(colour_seg_->final_folder), std::string::npos) << e;
  EXPECT_NE(e.find("64x64"), std::string::npos) << e;
  // Found by a fourth round of probing: a wrong-typed field leaked
  // "[json.exception.type_error.302]", a fraction was truncated silently, and
  // a config asked for a 16,000 GiB network before its resolution was checked.
  const std::vector<std::tuple<std::string, nlohmann::json, std::string>> configs = {
      {"typed", {{"preferred_mean", "high"}}, "config field 'preferred_mean' must be a finite number"},
      {"huge_means", {{"preferred_mean", 1e308}, {"rejected_mean", -1e308}}, "preferred_mean and rejected_mean"},
      {"fraction", {{"channels", {8.9, 8.2}}}, "config field 'channels' must be a list of whole numbers"},
      {"huge", {{"resolution", 1024}, {"channels", {4096}}, {"hidden", 4096}}, "asks for a network of"},
      {"odd", {{"resolution", 63}}, "must be a multiple of 2^"},
  };
  for (const auto& [name, change, needle] : configs) {
    const std::string folder = dir_->path + "/hostile-judge-" + name;
    std::filesystem::copy(colour_->final_folder, folder, std::filesystem::copy_options::recursive);
    auto config = nlohmann::json::parse(read_text_file(folder + "/config.json"));
    config.update(change);
    std::ofstream(folder + "/config.json") << config.dump();
    e = error_of([&] { run_training(recipe("judge-" + name, kFeedbackRecipe, {{"STEPS", "2"}, {"COLOUR", folder}}), o); });
    EXPECT_NE(e.find(folder + "/config.json"), std::string::npos) << e;
    EXPECT_NE(e.find(needle), std::string::npos) << e;
  }
}

TEST_F(FeedbackTest, NonFiniteRewardStopsAndKeepsTheLastCheckpoint) {
  // A copy of the colour reward, trained for two steps, then its weights blown up.
  const std::string bad = dir_->path + "/exploding";
  fs::copy(colour_->final_folder, bad, fs::copy_options::recursive);
  TrainOptions o;
  o.progress = false;
  const auto r = recipe("nan", kFeedbackRecipe, {{"STEPS", "6"}, {"COLOUR", bad}});
  TrainOptions first = o;
  first.stop_after = 2;
  run_training(r, first);
  auto tensors = load_safetensors(bad + "/model.safetensors");
  std::map<std::string, torch::Tensor> blown;
  for (const auto& [k, t] : tensors) blown[k] = t.clone() * (k.rfind("out", 0) == 0 ? 1e30 : 1.0);
  save_safetensors(bad + "/model.safetensors", blown);
  TrainOptions again = o;
  again.resume = true;
  const auto e = error_of([&] { run_training(r, again); });
  EXPECT_NE(e.find("non-finite"), std::string::npos) << e;
  EXPECT_NE(e.find(bad), std::string::npos) << e;
  EXPECT_TRUE(fs::exists(dir_->path + "/nan/checkpoints/step-00000002/state.json"));
  // A damaged feedback state is an error naming its file (it was a bare json.exception).
  const std::string state = dir_->path + "/nan/checkpoints/step-00000002/feedback_state.json";
  std::ofstream(state) << R"({"calls": "x", "prompts": {}})";
  const auto damaged = error_of([&] { run_training(r, again); });
  EXPECT_NE(damaged.find(state + ": has no integer 'calls'"), std::string::npos) << damaged;
}

// UniFL on a Stable Diffusion 1.x model (the golden set's tiny random one) with
// the rewards people have: a CLIPModel folder (PickScore-style preference) and
// the LAION aesthetic head on its image embeddings, prompts from a file.
TEST(FeedbackRealModels, Sd15LoraLearnsFromClipAndAestheticRewards) {
  const char* env = std::getenv("LUMEN_GOLDEN_DIR");
  const std::string golden = env && *env ? env : "../shared/golden";
  if (!fs::exists(golden + "/models/sd15/model_index.json") || !fs::exists(golden + "/models/clip/vit_tiny"))
    GTEST_SKIP() << "SKIPPED (not passed): no golden models under " << golden;
  set_threads(1);
  TempDir dir;
  // The golden folder keeps its vocabulary in golden/tokenizer/ (see its model_index.json): a loadable copy.
  const std::string base = dir.path + "/sd15";
  fs::copy(golden + "/models/sd15", base, fs::copy_options::recursive);
  for (const char* f : {"vocab.json", "merges.txt"}) fs::copy_file(golden + "/tokenizer/" + f, base + "/tokenizer/" + f);
  write(dir.path + "/prompts.txt", "a watercolor fox in the snow\na red bicycle\n\na bowl of fruit, oil painting\na lighthouse at night\n");
  const auto recipe = read_recipe(write(dir.path + "/sd15.yaml", fill(R"(task: feedback
output: OUT
seed: 3
threads: 1
steps: 4
batch_size: 2
dataset: {type: shapes, width: 64, height: 64}
optimizer: {lr: 1.0e-2}
log_every: 1
model: {base: BASE}
lora: {rank: 2, alpha: 2}
feedback:
  steps: [2]
  cfg_scale: 3.0
  denoising_weight: 0.5
  rewards:
    - {kind: clip, model: GOLDEN/models/clip/vit_tiny, alpha: 2.0}
    - {kind: aesthetic, model: GOLDEN/models/clip/vit_tiny_aesthetic_mlp.safetensors, clip: GOLDEN/models/clip/vit_tiny, alpha: 5.0}
  prompts: {file: PROMPTS, selection: active, pool: 4, keep: 2, refresh_every: 2, similarity: 0.99}
)", {{"OUT", dir.path + "/run"}, {"GOLDEN", golden}, {"BASE", base}, {"PROMPTS", dir.path + "/prompts.txt"}})));
  TrainOptions o;
  o.progress = false;
  const auto r = run_training(recipe, o);
  ASSERT_TRUE(r.finished);
  for (double l : r.losses) EXPECT_TRUE(std::isfinite(l));
  std::ifstream log(dir.path + "/run/metrics.jsonl");
  std::string line, all;
  while (std::getline(log, line)) all += line;
  EXPECT_NE(all.find("\"reward_clip\""), std::string::npos);
  EXPECT_NE(all.find("\"reward_aesthetic\""), std::string::npos);
  const auto lora = load_safetensors(r.final_folder + "/lora.safetensors");
  bool trained = false;
  for (const auto& [key, t] : lora)
    if (key.find("lora_up") != std::string::npos && t.abs().max().item<double>() > 0) trained = true;
  EXPECT_TRUE(trained);
}

TEST(FeedbackParts, PreferencePairsDifferInTheirDimensionOnly) {
  std::mt19937_64 rng(3);
  const auto captions = shapes::split_captions(shapes::Split::train);
  for (auto dim : {RewardDimension::colour, RewardDimension::shape, RewardDimension::layout}) {
    int judged = 0, flagged = 0;
    for (int i = 0; i < 40; ++i) {
      const auto pair = preference_pair(captions[rng() % captions.size()], dim, 64, 64, rng);
      const auto good = shapes::judge(pair.preferred, pair.caption), bad = shapes::judge(pair.rejected, pair.caption);
      // Jitter can move a large triangle out of its region (SHAPES.md): such pairs say nothing here.
      if (!good.correct) continue;
      ++judged;
      EXPECT_TRUE(bad.background && bad.single);
      if (dim != RewardDimension::colour) EXPECT_TRUE(bad.colour);
      if (dim == RewardDimension::colour) flagged += !bad.colour;
      if (dim == RewardDimension::shape) flagged += !bad.shape;
      if (dim == RewardDimension::layout) flagged += !(bad.position && bad.size);
    }
    EXPECT_GE(judged, 30) << dimension_name(dim);
    EXPECT_GE(flagged, judged * 9 / 10) << dimension_name(dim);
  }
}

TEST(FeedbackParts, ColourLabelsAndShapeAreaLoss) {
  // A blue (colour 2) triangle (shape 2) is class 1 + 2·6 + 2 wherever it covers.
  const std::string text = "a small blue triangle at the top on a gray background";
  const auto shape_labels = label_map(*shapes::parse_caption(text), 64, 64, shapes::Jitter{}).unsqueeze(0);
  const auto labels = with_colours(shape_labels, {text});
  EXPECT_EQ(kColourLabelClasses, 19);
  EXPECT_TRUE(torch::equal(labels > 0, shape_labels > 0));
  EXPECT_EQ(labels.max().item<int64_t>(), 15);
  EXPECT_EQ(labels.masked_select(labels > 0).min().item<int64_t>(), 15);
  EXPECT_THROW(with_colours(shape_labels, {"a cat"}), Error);
  // A caption's completions: itself when full, else each dropped word filled in.
  EXPECT_EQ(completions(*shapes::parse_caption(text)), std::vector<shapes::Caption>{*shapes::parse_caption(text)});
  EXPECT_EQ(completions(*shapes::parse_caption("a blue triangle on a gray background")).size(), 10u);
  const auto sized = completions(*shapes::parse_caption("a blue triangle at the top on a gray background"));
  ASSERT_EQ(sized.size(), 2u);
  EXPECT_EQ(shapes::caption_text(sized[1]), "a large blue triangle at the top on a gray background");

  // shape_area: each image's summed cross-entropy over its shape's area.
  SegmenterConfig config;
  config.channels = {4, 8};
  config.classes = kColourLabelClasses;
  torch::manual_seed(5);
  Segmenter model(config);
  const auto images = torch::rand({1, 3, 64, 64}) * 2 - 1;
  const auto per_pixel = torch::nn::functional::cross_entropy(
      model->forward(images), labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  const double area = (labels > 0).sum().item<double>();
  EXPECT_GT(area, 100);
  EXPECT_NEAR(model->loss(images, labels, LossReduction::shape_area).item<double>(), per_pixel.sum().item<double>() / area,
              1e-4);
  EXPECT_NEAR(model->loss(images, labels).item<double>(), per_pixel.mean().item<double>(), 1e-6);
}

TEST(FeedbackParts, ForegroundLossReadsTheJudgesMask) {
  const auto caption = *shapes::parse_caption("a small blue triangle at the top on a gray background");
  const auto labels = label_map(caption, 64, 64, shapes::Jitter{}).unsqueeze(0);
  const auto gray = torch::full({1, 3}, 128 / 127.5 - 1);
  const auto render = image_tensor(shapes::render(caption, 64, 64)).unsqueeze(0);
  const auto blurred = torch::avg_pool2d(render, 5, 1, 2, false, false);
  const auto empty = gray.view({1, 3, 1, 1}).expand({1, 3, 64, 64});
  const auto loss = [&](const torch::Tensor& image, LossReduction r = LossReduction::shape_area) {
    return foreground_losses(image, gray, labels, r).item<double>();
  };
  // The render is what the judge calls right; blur moves edge pixels under
  // the judge's threshold, and an empty image misses the whole shape.
  EXPECT_LT(loss(render), 0.5 * loss(blurred));
  EXPECT_LT(loss(blurred), loss(empty));
  EXPECT_GT(loss(empty), 5);  // every shape pixel ~12 nats: sigmoid(−60/5)
  // shape_area is the pixel mean scaled by pixels / shape area.
  const double area = (labels > 0).sum().item<double>();
  EXPECT_NEAR(loss(blurred), loss(blurred, LossReduction::pixels) * 4096 / area, 1e-3 * loss(blurred));
  // Against the wrong background colour the gray shape's surroundings read as foreground.
  EXPECT_GT(foreground_losses(render, torch::full({1, 3}, 1.0), labels, LossReduction::shape_area).item<double>(),
            loss(empty));
  // Its gradient sharpens: it pushes the blurred shape's pixels away from the background.
  auto x = blurred.clone().requires_grad_(true);
  foreground_losses(x, gray, labels, LossReduction::shape_area).sum().backward();
  EXPECT_GT(x.grad().abs().sum().item<double>(), 0);
}

TEST(FeedbackParts, BackgroundLossIsTheJudgesBgError) {
  for (const std::string text : {"a small blue triangle at the top on a gray background",
                                 "a large red circle in the center on a white background"}) {
    const auto caption = *shapes::parse_caption(text);
    const auto render = image_tensor(shapes::render(caption, 64, 64)).unsqueeze(0);
    const auto background = background_colours({text});
    // The background tinted unevenly (a left-to-right ramp), the shape kept.
    const auto ramp = torch::linspace(0, 1, 64).view({1, 1, 1, 64}) * torch::tensor({-9.0, -4.0, -2.0}).view({1, 3, 1, 1});
    const auto is_background = ((render - background.view({-1, 3, 1, 1})).abs().sum(1, true) < 1e-3).to(torch::kFloat);
    const auto tinted = (render + is_background * ramp / 127.5).clamp(-1, 1);
    // Read on the 8-bit image the judge reads.
    const auto rgb = rgb_from_tensor(tinted[0].permute({1, 2, 0}).add(1).div(2));
    const auto quantised = image_tensor(rgb).unsqueeze(0);
    const double judged = shapes::judge(rgb, caption).bg_error;
    EXPECT_GT(judged, 2) << text;
    EXPECT_NEAR(background_losses(quantised, background).item<double>(), judged, 1e-3 * judged + 1e-3) << text;
    EXPECT_LT(background_losses(render, background).item<double>(), 0.01) << text;
    // The gradient reaches the background's pixels only, never the shape or its 2 px rim.
    auto x = quantised.clone().requires_grad_(true);
    background_losses(x, background).sum().backward();
    const auto reached = (x.grad().abs().sum(1) > 0)[0];
    const auto shape = label_map(caption, 64, 64, shapes::Jitter{}) > 0;
    EXPECT_FALSE((reached & shape).any().item<bool>()) << text;
    EXPECT_GT(reached.sum().item<int64_t>(), 2000) << text;
  }
}

TEST(FeedbackParts, ActiveSelectionKeepsTheWorstDistinctPrompts) {
  std::vector<std::string> prompts;
  for (const auto& c : shapes::split_captions(shapes::Split::train)) prompts.push_back(shapes::caption_text(c));
  const auto features = caption_features(prompts);
  PromptSelector selector({true, 200, 20, 10, 0.8}, prompts, features);
  // Deficit: the index in the candidate list, so the worst are the last ones.
  std::map<std::string, double> rank;
  for (size_t i = 0; i < prompts.size(); ++i) rank[prompts[i]] = static_cast<double>(i);
  std::vector<std::string> scored;
  selector.refresh(0, 5, [&](const std::vector<std::string>& pool) {
    scored = pool;
    auto d = torch::zeros({static_cast<int64_t>(pool.size())});
    for (size_t i = 0; i < pool.size(); ++i) d[static_cast<int64_t>(i)] = rank[pool[i]];
    return d;
  });
  ASSERT_EQ(scored.size(), 200u);
  const auto& kept = selector.selected();
  ASSERT_EQ(kept.size(), 20u);
  EXPECT_GT(selector.last_kept_deficit(), selector.last_pool_deficit());
  const auto unit = features / features.norm(2, 1, true);
  for (size_t i = 0; i < kept.size(); ++i)
    for (size_t j = i + 1; j < kept.size(); ++j)
      EXPECT_LT((unit[kept[i]] * unit[kept[j]]).sum().item<double>(), 0.8);
  // Not refreshed again before its interval.
  bool called = false;
  selector.refresh(5, 6, [&](const std::vector<std::string>& pool) {
    called = true;
    return torch::zeros({static_cast<int64_t>(pool.size())});
  });
  EXPECT_FALSE(called);
  auto gen = at::detail::createCPUGenerator(1);
  for (const auto& p : selector.draw(50, gen)) {
    bool found = false;
    for (auto k : kept) found = found || prompts[static_cast<size_t>(k)] == p;
    EXPECT_TRUE(found) << p;
  }
}

TEST(FeedbackParts, FeedbackRecipeErrorsNameTheField) {
  TempDir dir;
  auto error_for = [&](const std::string& text) {
    return error_of([&] { read_recipe(write(dir.path + "/r.yaml", text)); });
  };
  const std::string head = "task: feedback\noutput: x\nsteps: 10\ndataset: {type: shapes}\nmodel: {base: b}\n";
  EXPECT_NE(error_for(head).find("feedback: is required"), std::string::npos);
  auto e = error_for(head + "feedback: {steps: [1, 2]}\n");
  EXPECT_NE(e.find("needs at least one of perceptual, rewards or adversarial"), std::string::npos) << e;
  e = error_for(head + "feedback:\n  rewards:\n    - {model: m, kind: magic}\n");
  EXPECT_NE(e.find("r.yaml:8"), std::string::npos) << e;
  EXPECT_NE(e.find("feedback.rewards[0].kind"), std::string::npos) << e;
  e = error_for(head + "feedback:\n  steps: [0]\n  rewards: [{model: m}]\n");
  EXPECT_NE(e.find("feedback.steps"), std::string::npos) << e;
  e = error_for("task: reward\noutput: x\nsteps: 10\ndataset: {type: shapes}\nreward: {dimension: smell}\n");
  EXPECT_NE(e.find("reward.dimension"), std::string::npos) << e;
}

}  // namespace
