// Generation on a tiny random-weight model: zero-SNR behaviour, seeds,
// img2img/inpainting invariants, prompt syntax, and bad options.
#include <gtest/gtest.h>
#include <unistd.h>

#include "error.h"
#include "model/random_model.h"
#include "pipeline/pipeline.h"
#include "prompt/prompt_parser.h"

namespace {

using lumen::Error;
using lumen::GenerationOptions;

class PipelineTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/lumen_pipe_XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    lumen::write_random_model(dir_ + "/tiny", "tiny", 3);
    model_ = std::make_shared<lumen::LoadedModel>(lumen::load_model(dir_ + "/tiny"));
  }
  static void TearDownTestSuite() {
    model_.reset();
    std::system(("rm -rf " + dir_).c_str());
  }
  static nlohmann::json zero_snr_v_config(const std::string& cls = "DDIMScheduler") {
    return {{"_class_name", cls}, {"beta_schedule", "scaled_linear"}, {"beta_start", 0.00085}, {"beta_end", 0.012},
            {"prediction_type", "v_prediction"}, {"rescale_betas_zero_snr", true}, {"timestep_spacing", "trailing"},
            {"set_alpha_to_one", false}, {"steps_offset", 1}};
  }
  static GenerationOptions options() {
    GenerationOptions o;
    o.prompt = "a red circle";
    o.negative_prompt = "blurry";
    o.steps = 4;
    o.width = 32;
    o.height = 24;
    o.seed = 11;
    o.cfg_scale = 5;
    return o;
  }
  static inline std::string dir_;
  static inline std::shared_ptr<lumen::LoadedModel> model_;
};

TEST_F(PipelineTest, ZeroSnrSamplingStartsFromPureNoise) {
  lumen::Pipeline pipeline(model_, zero_snr_v_config());
  auto o = options();
  o.guidance_rescale = 0.7;
  auto txt = pipeline.generate(o);
  // Sampled from the last timestep, where ᾱ is exactly 0: SNR 0, nothing of the signal left.
  EXPECT_EQ(txt.timesteps[0].item<int64_t>(), 999);
  // img2img at strength 1 must then start from exactly the same input as txt2img: the image cannot leak in.
  o.init_image = torch::rand({1, 3, 24, 32}) * 2 - 1;
  o.strength = 1.0;
  auto img = pipeline.generate(o);
  EXPECT_TRUE(torch::equal(txt.latents, img.latents));
  EXPECT_TRUE(txt.images.isfinite().all().item<bool>());
}

TEST_F(PipelineTest, MarkedCheckpointsGetZeroSnrVPredictionTrailing) {
  auto marked = std::make_shared<lumen::LoadedModel>(*model_);
  marked->plan.prediction_type = "v_prediction";
  marked->plan.zero_terminal_snr = true;
  lumen::Pipeline pipeline(marked);
  EXPECT_EQ(pipeline.scheduler_config()["prediction_type"], "v_prediction");
  EXPECT_EQ(pipeline.scheduler_config()["rescale_betas_zero_snr"], true);
  EXPECT_EQ(pipeline.scheduler_config()["timestep_spacing"], "trailing");
  auto o = options();
  o.sampler = "euler";
  EXPECT_EQ(pipeline.generate(o).timesteps[0].item<double>(), 999.0);
}

TEST_F(PipelineTest, EpsilonWithZeroSnrIsRefused) {
  auto config = zero_snr_v_config();
  config["prediction_type"] = "epsilon";
  lumen::Pipeline pipeline(model_, config);
  try {
    pipeline.generate(options());
    FAIL() << "ε-prediction on a zero-SNR schedule sampled at t=T must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("v-prediction"), std::string::npos) << e.what();
  }
}

TEST_F(PipelineTest, SameSeedSameImageAndBatchSeedsAreConsecutive) {
  lumen::Pipeline pipeline(model_);
  auto o = options();
  auto a = pipeline.generate(o);
  auto b = pipeline.generate(o);
  EXPECT_TRUE(torch::equal(a.images, b.images));
  o.batch_size = 2;
  auto batch = pipeline.generate(o);
  EXPECT_EQ(batch.seeds, (std::vector<uint64_t>{11, 12}));
  EXPECT_TRUE(torch::allclose(batch.images[0], a.images[0], 1e-5, 1e-5));
  o.batch_size = 1;
  o.seed = 12;
  auto second = pipeline.generate(o);
  EXPECT_TRUE(torch::allclose(batch.images[1], second.images[0], 1e-5, 1e-5));
  EXPECT_FALSE(torch::allclose(a.images, second.images));
}

TEST_F(PipelineTest, InpaintingWithEmptyMaskKeepsTheImage) {
  lumen::Pipeline pipeline(model_);
  auto o = options();
  o.init_image = torch::rand({1, 3, 24, 32}) * 2 - 1;
  o.mask = torch::zeros({1, 1, 24, 32});
  auto out = pipeline.generate(o);
  auto vae = model_->vae;
  auto clean = vae->to_model_latents(lumen::nn::split_moments(vae->encode_moments(o.init_image)).mean);
  EXPECT_TRUE(torch::allclose(out.latents, clean, 1e-5, 1e-5));
}

TEST_F(PipelineTest, RescaleSpacesAgreeForVModels) {
  lumen::Pipeline pipeline(model_, zero_snr_v_config("EulerDiscreteScheduler"));
  auto o = options();
  o.guidance_rescale = 0.7;
  auto raw = pipeline.generate(o);
  o.rescale_space = lumen::RescaleSpace::V;
  auto v = pipeline.generate(o);
  EXPECT_TRUE(torch::equal(raw.latents, v.latents));
}

TEST_F(PipelineTest, LongAndWeightedPromptsMakeMoreChunks) {
  lumen::Pipeline pipeline(model_);
  auto o = options();
  std::string long_prompt;
  for (int i = 0; i < 90; ++i) long_prompt += "cat ";
  o.prompt = long_prompt;
  auto out = pipeline.generate(o);
  EXPECT_EQ(out.cond.context.size(1), 154);
  EXPECT_EQ(out.uncond.context.size(1), 154);  // the negative is padded to match
  o.encoding.plain = true;                      // the reference truncates instead
  EXPECT_EQ(pipeline.generate(o).cond.context.size(1), 77);
}

TEST_F(PipelineTest, BadOptionsAreClearErrors) {
  lumen::Pipeline pipeline(model_);
  auto expect = [&](GenerationOptions o, const std::string& needle) {
    try {
      pipeline.generate(o);
      FAIL() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto o = options();
  o.steps = 0;
  expect(o, "steps");
  o = options();
  o.width = 33;
  expect(o, "not a multiple of 2");
  o = options();
  o.cfg_scale = std::nan("");
  expect(o, "cfg scale");
  o = options();
  o.guidance_rescale = 1.5;
  expect(o, "guidance rescale");
  o = options();
  o.sampler = "euler_b";
  expect(o, "known samplers");
  o = options();
  o.encoding.clip_skip = 7;
  expect(o, "clip skip");
  o = options();
  o.prompt.clear();
  for (size_t i = 0; i <= lumen::kMaxPromptChunks; ++i) o.prompt += "cat BREAK ";
  expect(o, "chunks of 75 tokens");
  o = options();
  o.width = o.height = 16384;  // the attention scores alone would take terabytes
  expect(o, "needs at least");
  o = options();
  o.batch_size = 65;
  expect(o, "batch size");
}

// A1111's own examples (parse_prompt_attention's docstring).
TEST(PromptSyntax, A1111DocstringExamples) {
  auto parse = [](const std::string& prompt) {
    std::vector<std::pair<std::string, double>> got;
    for (const auto& p : lumen::parse_prompt_weights(prompt)) got.push_back({p.text, p.is_break ? -1 : p.weight});
    return got;
  };
  using Parts = std::vector<std::pair<std::string, double>>;
  auto expect = [&](const std::string& prompt, const Parts& want) {
    const Parts got = parse(prompt);
    ASSERT_EQ(got.size(), want.size()) << prompt;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(got[i].first, want[i].first) << prompt << " part " << i;
      EXPECT_NEAR(got[i].second, want[i].second, 1e-9) << prompt << " part " << i;
    }
  };
  expect("normal text", {{"normal text", 1.0}});
  expect("an (important) word", {{"an ", 1.0}, {"important", 1.1}, {" word", 1.0}});
  expect("(unbalanced", {{"unbalanced", 1.1}});
  expect("\\(literal\\]", {{"(literal]", 1.0}});
  expect("(unnecessary)(parens)", {{"unnecessaryparens", 1.1}});
  expect("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
         {{"a ", 1.0}, {"house", 1.573}, {" ", 1.1}, {"on", 1.0}, {" a ", 1.1}, {"hill", 0.55}, {", sun, ", 1.1},
          {"sky", 1.4641}, {".", 1.1}});
  // As Python's re.split: every BREAK separates two parts, empty ones too.
  expect("BREAK BREAK", {{"", 1.0}, {"BREAK", -1}, {"", 1.0}, {"BREAK", -1}, {"", 1.0}});
  expect("xBREAK BREAKy", {{"xBREAK BREAKy", 1.0}});
  expect("a (b:1.2) :", {{"a ", 1.0}, {"b", 1.2}, {" :", 1.0}});
}

// A prompt cannot exhaust the stack, time or numbers: the limits are clear errors
// and weights are clamped. (The regex parser recursed once per character:
// 30,000 characters overflowed the stack.)
TEST(PromptSyntax, LimitsAreClearErrorsAndWeightsAreClamped) {
  auto error_of = [](const std::string& prompt) -> std::string {
    try {
      lumen::parse_prompt_weights(prompt);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  std::string long_prompt;
  while (long_prompt.size() <= lumen::kMaxPromptBytes) long_prompt += "a red circle, ";
  EXPECT_NE(error_of(long_prompt).find("bytes long; at most 16384"), std::string::npos);
  EXPECT_NE(error_of(std::string(5000, '(') + "x").find("nest deeper than 32"), std::string::npos);
  EXPECT_EQ(error_of(std::string(32, '(') + "x"), "");
  // 32 levels of ×1.1 around a huge explicit weight: clamped, never inf.
  auto parts = lumen::parse_prompt_weights(std::string(31, '(') + "x:1" + std::string(400, '0') + ")");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].weight, lumen::kMaxPromptWeight);
  parts = lumen::parse_prompt_weights("(x:-99999)");
  EXPECT_EQ(parts[0].weight, -lumen::kMaxPromptWeight);
}

TEST(PromptSyntax, A1111Weights) {
  auto parts = lumen::parse_prompt_weights("a (red:1.5) [blue] ((big)) \\(x\\) BREAK dog");
  std::vector<std::pair<std::string, double>> got;
  for (const auto& p : parts) got.push_back({p.text, p.is_break ? -1 : p.weight});
  ASSERT_EQ(got.size(), 9u);
  EXPECT_EQ(got[0].first, "a ");
  EXPECT_DOUBLE_EQ(got[1].second, 1.5);
  EXPECT_EQ(got[1].first, "red");
  EXPECT_NEAR(got[3].second, 1 / 1.1, 1e-12);
  EXPECT_NEAR(got[5].second, 1.21, 1e-12);
  EXPECT_EQ(got[6].first, " (x)");
  EXPECT_EQ(got[7].second, -1);
  EXPECT_EQ(got[8].first, "dog");
}

}  // namespace
