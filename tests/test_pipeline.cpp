// Generation on a tiny random-weight model: zero-SNR behaviour, seeds,
// img2img/inpainting invariants, prompt syntax, and bad options.
#include <gtest/gtest.h>
#include <unistd.h>

#include "error.h"
#include "model/device.h"
#include "model/random_model.h"
#include "pipeline/pipeline.h"
#include "prompt/prompt_parser.h"
#include "test_helpers.h"

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

// Inpainting honours the strength as img2img does (it was ignored: every
// masked generation started from pure noise): with the whole image masked it
// is img2img.
TEST_F(PipelineTest, InpaintingWithAFullMaskIsImg2imgAtTheSameStrength) {
  lumen::Pipeline pipeline(model_);
  auto o = options();
  o.steps = 4;
  o.init_image = torch::rand({1, 3, 24, 32}) * 2 - 1;
  o.strength = 0.5;
  const auto img2img = pipeline.generate(o).latents;
  o.mask = torch::ones({1, 1, 24, 32});
  const auto inpainted = pipeline.generate(o).latents;
  EXPECT_TRUE(torch::allclose(inpainted, img2img, 1e-5, 1e-5));
  o.strength = 1.0;
  EXPECT_FALSE(torch::allclose(pipeline.generate(o).latents, inpainted, 1e-3, 1e-3));
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

}  // namespace

// Devices: the CPU always; a GPU only where LibTorch has CUDA and a GPU is
// present, else a clear error (scripts/gpu_check.sh runs the GPU side).
TEST(Device, NamesAreCheckedAndAMissingGpuIsAClearError) {
  EXPECT_TRUE(lumen::parse_device("cpu").is_cpu());
  const std::string bad = lumen::testing::error_of([] { lumen::parse_device("tpu:0"); });
  EXPECT_NE(bad.find("device 'tpu:0'"), std::string::npos) << bad;
  if (!torch::cuda::is_available()) {
    const std::string no_gpu = lumen::testing::error_of([] { lumen::parse_device("cuda"); });
    EXPECT_NE(no_gpu.find("no CUDA GPU is usable"), std::string::npos) << no_gpu;
  }
}

// Moving a model keeps its outputs: here CPU to CPU through move_to_device, and
// the same generation from a model loaded with LoadOptions::device.
TEST_F(PipelineTest, ModelLoadedForTheCpuDeviceGeneratesTheSameImage) {
  lumen::LoadOptions options;
  options.device = lumen::parse_device("cpu");
  auto moved = std::make_shared<lumen::LoadedModel>(lumen::load_model(dir_ + "/tiny", options));
  lumen::move_to_device(*moved, torch::kCPU);
  EXPECT_TRUE(lumen::model_device(*moved).is_cpu());
  GenerationOptions o;
  o.prompt = "a red circle";
  o.steps = 2;
  o.seed = 5;
  const auto a = lumen::Pipeline(model_).generate(o), b = lumen::Pipeline(moved).generate(o);
  EXPECT_TRUE(torch::equal(a.images, b.images));
  EXPECT_TRUE(a.images.is_cpu() && a.latents.is_cpu());
}
