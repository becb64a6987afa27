// The C API as an app sees it: only lumen.h / lumen.hpp and liblumen.so (no
// internal header), on the embedded default model.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lumen/lumen.h"
#include "lumen/lumen.hpp"

namespace {

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/lumen-capi-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string path;
};

std::vector<uint8_t> bytes_of(const lumen_image& image) {
  return std::vector<uint8_t>(image.pixels, image.pixels + static_cast<size_t>(image.width) * image.height * 3);
}

// One context on the default model for the suite (loading takes a moment).
class CApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    lumen_context_params p = lumen_context_default_params();
    p.threads = 1;
    ASSERT_EQ(lumen_context_create(nullptr, &p, &ctx_), LUMEN_OK) << lumen_last_error();
  }
  static void TearDownTestSuite() { lumen_context_free(ctx_); }

  static lumen_generation_params params(const char* prompt, int steps = 4) {
    lumen_generation_params g = lumen_generation_default_params();
    g.prompt = prompt;
    g.steps = steps;
    g.seed = 1000;
    return g;
  }
  // Generates one image and returns its bytes.
  static std::vector<uint8_t> generate_bytes(lumen_context* ctx, const lumen_generation_params& g) {
    lumen_images* out = nullptr;
    EXPECT_EQ(lumen_generate(ctx, &g, &out), LUMEN_OK) << lumen_last_error();
    if (!out) return {};
    auto bytes = bytes_of(out->images[0]);
    lumen_images_free(out);
    return bytes;
  }
  static lumen_context* ctx_;
};
lumen_context* CApi::ctx_ = nullptr;

const char* kPrompt = "a large red circle at the right on a black background";

TEST(CApiBasics, VersionAndClearErrors) {
  EXPECT_EQ(lumen_api_version(), LUMEN_API_VERSION);
  EXPECT_GT(std::strlen(lumen_version()), 0u);
  lumen_context* ctx = reinterpret_cast<lumen_context*>(0x1);
  EXPECT_EQ(lumen_context_create("/nonexistent/model", nullptr, &ctx), LUMEN_ERR_FILE);
  EXPECT_EQ(ctx, nullptr);
  EXPECT_NE(std::string(lumen_last_error()).find("/nonexistent/model"), std::string::npos) << lumen_last_error();
  EXPECT_EQ(lumen_context_create(nullptr, nullptr, nullptr), LUMEN_ERR_INVALID_ARGUMENT);
  lumen_context_params p = lumen_context_default_params();
  p.dtype = LUMEN_DTYPE_F16;
  EXPECT_EQ(lumen_context_create(nullptr, &p, &ctx), LUMEN_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lumen_last_error()).find("f16"), std::string::npos);
  p = lumen_context_default_params();
  p.struct_size = 0;
  EXPECT_EQ(lumen_context_create(nullptr, &p, &ctx), LUMEN_ERR_INVALID_ARGUMENT);
  // The message is per thread: another thread's failure does not overwrite it.
  std::thread([] { lumen_context_create("/elsewhere", nullptr, nullptr); }).join();
  EXPECT_NE(std::string(lumen_last_error()).find("struct_size"), std::string::npos) << lumen_last_error();
  // The C++ layer throws with the status.
  try {
    lumen::Context bad("/nonexistent/model");
    FAIL() << "no exception";
  } catch (const lumen::Exception& e) {
    EXPECT_EQ(e.status(), LUMEN_ERR_FILE);
  }
}

TEST(CApiBasics, PngInMemoryRoundTripAndDecodeLimits) {
  std::vector<uint8_t> pixels(24 * 16 * 3);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 7);
  const lumen_image image{24, 16, pixels.data(), 0, "a prompt\nSteps: 3"};
  uint8_t* png = nullptr;
  size_t size = 0;
  ASSERT_EQ(lumen_image_encode_png(&image, &png, &size), LUMEN_OK) << lumen_last_error();
  const std::string bytes(reinterpret_cast<char*>(png), size);
  lumen_free(png);
  EXPECT_NE(bytes.find("a prompt\nSteps: 3"), std::string::npos);  // the parameters chunk
  lumen::Images back = lumen::Images::decode(bytes);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].width, 24u);
  EXPECT_EQ(std::memcmp(back[0].pixels, pixels.data(), pixels.size()), 0);
  EXPECT_EQ(back.png(0).substr(1, 3), "PNG");
  // Refused from the header, before decoding: more pixels than allowed, or not an image.
  lumen_images* out = nullptr;
  EXPECT_EQ(lumen_image_decode(bytes.data(), bytes.size(), 24 * 16 - 1, &out), LUMEN_ERR_FILE);
  EXPECT_NE(std::string(lumen_last_error()).find("over the limit"), std::string::npos) << lumen_last_error();
  EXPECT_EQ(lumen_image_decode(bytes.data(), 20, 0, &out), LUMEN_ERR_FILE);
  EXPECT_EQ(out, nullptr);
  EXPECT_EQ(lumen_image_decode(nullptr, 0, 0, &out), LUMEN_ERR_INVALID_ARGUMENT);
  // Found by probing: a size past any image leaked "basic_string::_M_create"; an
  // image claiming 2^31 × 1 pixels crashed encoding, 2^32-1 leaked a vector error.
  EXPECT_EQ(lumen_image_decode(bytes.data(), static_cast<size_t>(-1), 0, &out), LUMEN_ERR_INVALID_ARGUMENT);
  for (const uint32_t width : {uint32_t{1} << 31, uint32_t{0xFFFFFFFF}}) {
    const lumen_image huge{width, width == 0xFFFFFFFF ? width : 1u, pixels.data(), 0, nullptr};
    EXPECT_EQ(lumen_image_encode_png(&huge, &png, &size), LUMEN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(lumen_last_error()).find("1..16384"), std::string::npos) << lumen_last_error();
  }
}

TEST_F(CApi, GeneratesWithTheModelsRecommendedSettingsAndWritesItsPng) {
  std::vector<int> steps;
  lumen_generation_params g = params(kPrompt, 0);  // 0: the model's recommendation (25)
  g.batch_size = 2;
  g.progress = [](int step, int total, void* user) {
    static_cast<std::vector<int>*>(user)->push_back(step * 1000 + total);
    return 0;
  };
  g.user_data = &steps;
  lumen_images* out = nullptr;
  ASSERT_EQ(lumen_generate(ctx_, &g, &out), LUMEN_OK) << lumen_last_error();
  ASSERT_EQ(out->count, 2u);
  EXPECT_EQ(steps.size(), 25u);
  EXPECT_EQ(steps.back(), 25 * 1000 + 25);
  for (size_t i = 0; i < 2; ++i) {
    const lumen_image& image = out->images[i];
    EXPECT_EQ(image.width, 64u);
    EXPECT_EQ(image.height, 64u);
    EXPECT_EQ(image.seed, 1000 + i);
    const std::string params = image.parameters;
    EXPECT_NE(params.find("Steps: 25,"), std::string::npos) << params;
    EXPECT_NE(params.find("Seed: " + std::to_string(1000 + i)), std::string::npos) << params;
    EXPECT_NE(params.find("Size: 64x64"), std::string::npos) << params;
  }
  // Asked for a red circle on black: the right half holds red, the left is black.
  const auto px = bytes_of(out->images[0]);
  auto at = [&](int x, int y, int c) { return px[(static_cast<size_t>(y) * 64 + x) * 3 + c]; };
  int red = 0;
  for (int y = 0; y < 64; ++y)
    for (int x = 32; x < 64; ++x) red += at(x, y, 0) > 150 && at(x, y, 1) < 100;
  EXPECT_GT(red, 100);
  EXPECT_LT(at(4, 4, 0) + at(4, 4, 1) + at(4, 4, 2), 60);

  TempDir dir;
  const std::string png = dir.path + "/a.png";
  ASSERT_EQ(lumen_image_write_png(&out->images[0], png.c_str(), 0), LUMEN_OK) << lumen_last_error();
  EXPECT_EQ(lumen_image_write_png(&out->images[0], png.c_str(), 0), LUMEN_ERR_FILE);  // never overwritten unasked
  lumen_images* read = nullptr;
  ASSERT_EQ(lumen_image_read(png.c_str(), &read), LUMEN_OK) << lumen_last_error();
  EXPECT_EQ(bytes_of(read->images[0]), px);
  lumen_images_free(read);
  lumen_images_free(out);
}

TEST_F(CApi, CancelsFromTheCallbackAndStaysUsable) {
  lumen_generation_params g = params(kPrompt, 10);
  int calls = 0;
  g.progress = [](int step, int, void* user) {
    ++*static_cast<int*>(user);
    return step >= 3 ? 1 : 0;
  };
  g.user_data = &calls;
  lumen_images* out = nullptr;
  EXPECT_EQ(lumen_generate(ctx_, &g, &out), LUMEN_ERR_CANCELLED);
  EXPECT_EQ(out, nullptr);
  EXPECT_EQ(calls, 3);
  g.progress = nullptr;
  EXPECT_FALSE(generate_bytes(ctx_, g).empty());
}

TEST_F(CApi, BadOptionsAreRefusedWithTheirName) {
  lumen_generation_params g = params(kPrompt);
  g.steps = 100000;
  lumen_images* out = nullptr;
  EXPECT_EQ(lumen_generate(ctx_, &g, &out), LUMEN_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lumen_last_error()).find("steps"), std::string::npos) << lumen_last_error();
  g = params(nullptr);
  EXPECT_EQ(lumen_generate(ctx_, &g, &out), LUMEN_ERR_INVALID_ARGUMENT);
  g = params(kPrompt);
  g.sampler = "no_such_sampler";
  EXPECT_EQ(lumen_generate(ctx_, &g, &out), LUMEN_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lumen_last_error()).find("no_such_sampler"), std::string::npos) << lumen_last_error();
}

// An older caller's smaller struct: the fields it lacks take their defaults.
TEST_F(CApi, AnOlderCallersSmallerStructWorks) {
  lumen_generation_params full = params(kPrompt);
  lumen_generation_params old = full;
  old.struct_size = offsetof(lumen_generation_params, init_image);
  old.strength = 0.0f;  // beyond its size: ignored
  EXPECT_EQ(generate_bytes(ctx_, old), generate_bytes(ctx_, full));
}

// *_params_init writes no further than the caller's struct, and fills its struct_size.
TEST(CApiBasics, ParamsInitWritesOnlyTheCallersSize) {
  std::vector<unsigned char> buffer(sizeof(lumen_generation_params) + 16, 0xAB);
  const size_t old_size = offsetof(lumen_generation_params, clip_skip);  // API 1's struct
  lumen_generation_params_init(reinterpret_cast<lumen_generation_params*>(buffer.data()), old_size);
  lumen_generation_params seen;
  std::memcpy(&seen, buffer.data(), old_size);
  EXPECT_EQ(seen.struct_size, old_size);
  EXPECT_EQ(seen.batch_size, 1);
  EXPECT_FLOAT_EQ(seen.strength, 0.75f);
  for (size_t i = old_size; i < buffer.size(); ++i) ASSERT_EQ(buffer[i], 0xAB) << "byte " << i << " written";
  const lumen_generation_params full = lumen_generation_default_params();
  EXPECT_EQ(full.struct_size, sizeof full);
  EXPECT_EQ(full.zero_terminal_snr, -1);
}

// What needs no model is refused before one is loaded, with the option's name.
TEST(CApiBasics, ValidateRefusesBadOptionsWithoutAModel) {
  lumen_generation_params g = lumen_generation_default_params();
  g.prompt = "x";
  EXPECT_EQ(lumen_generation_validate(&g), LUMEN_OK) << lumen_last_error();
  auto refused = [&](const char* needle) {
    EXPECT_EQ(lumen_generation_validate(&g), LUMEN_ERR_INVALID_ARGUMENT) << needle;
    EXPECT_NE(std::string(lumen_last_error()).find(needle), std::string::npos) << lumen_last_error();
    g = lumen_generation_default_params();
    g.prompt = "x";
  };
  g.width = 31;
  g.height = 32;
  refused("not a multiple");
  g.sampler = "nope";
  refused("known samplers");
  g.cfg_scale = std::nanf("");
  refused("cfg");
  g.steps = -3;
  refused("steps");
  g.original_size[0] = -1;
  refused("original_size");
  const std::string long_prompt(40000, 'a');
  g.prompt = long_prompt.c_str();
  refused("prompt");
  g.prompt = nullptr;
  EXPECT_EQ(lumen_generation_validate(&g), LUMEN_ERR_INVALID_ARGUMENT);
  // Found by probing: what generate refused, or did not check, validate let through.
  g = lumen_generation_default_params();
  g.prompt = "x";
  g.clip_skip = 1 << 30;
  refused("clip_skip");
  g.zero_terminal_snr = 5;
  refused("zero_terminal_snr");
  g.karras_sigmas = -7;
  refused("karras_sigmas");
  g.vae_tile_size = -1;
  refused("vae_tile_size");
  g.seed = UINT64_MAX;
  g.batch_size = 3;
  refused("seeds would wrap");
  // A struct_size that ends inside a pointer field copied half of `prompt` and crashed.
  for (uint32_t size = 9; size <= 15; ++size) {
    g.struct_size = size;
    EXPECT_EQ(lumen_generation_validate(&g), LUMEN_ERR_INVALID_ARGUMENT) << size;
    EXPECT_NE(std::string(lumen_last_error()).find("struct_size"), std::string::npos) << lumen_last_error();
  }
  lumen_recipe_info info{};
  info.struct_size = 0;
  EXPECT_EQ(lumen_recipe_read_info("configs/shapes-default.yaml", &info), LUMEN_ERR_INVALID_ARGUMENT);
}

// The finer controls reach the pipeline: each changes the image, stats are filled.
TEST_F(CApi, FinerControlsChangeTheImageAndStatsAreFilled) {
  lumen_generation_params g = params(kPrompt);
  g.sampler = "euler";
  const auto base = generate_bytes(ctx_, g);
  lumen_generation_params k = g;
  k.karras_sigmas = 1;
  EXPECT_NE(generate_bytes(ctx_, k), base);
  lumen_generation_params skip = g;
  skip.clip_skip = 2;
  EXPECT_NE(generate_bytes(ctx_, skip), base);
  lumen_generation_params spacing = g;
  spacing.timestep_spacing = "leading";  // the model's is trailing
  EXPECT_NE(generate_bytes(ctx_, spacing), base);
  lumen_generation_stats stats{};
  stats.struct_size = sizeof stats;
  g.stats = &stats;
  EXPECT_EQ(generate_bytes(ctx_, g), base);
  EXPECT_EQ(stats.steps, 4);
  EXPECT_GT(stats.denoise_seconds, 0.0);
  EXPECT_GT(stats.decode_seconds, 0.0);
}

TEST_F(CApi, LoraAppliesAndRemovesExactly) {
  const lumen_generation_params g = params(kPrompt);
  const auto before = generate_bytes(ctx_, g);
  int id = 0;
  ASSERT_EQ(lumen_adapter_apply(ctx_, LUMEN_ADAPTER_LORA, "assets/unifl-lora/unifl-shapes.safetensors", 1.0f, &id),
            LUMEN_OK)
      << lumen_last_error();
  ASSERT_EQ(lumen_adapter_count(ctx_), 1);
  lumen_adapter_info info{};
  ASSERT_EQ(lumen_adapter_get(ctx_, 0, &info), LUMEN_OK);
  EXPECT_EQ(info.id, id);
  EXPECT_EQ(info.kind, LUMEN_ADAPTER_LORA);
  EXPECT_EQ(info.scale, 1.0f);
  EXPECT_NE(std::string(lumen_adapter_summary(ctx_, id)).find("modules changed"), std::string::npos) << lumen_adapter_summary(ctx_, id);
  EXPECT_EQ(lumen_adapter_summary(ctx_, id + 100), nullptr);
  const auto with = generate_bytes(ctx_, g);
  EXPECT_NE(with, before);
  ASSERT_EQ(lumen_adapter_set_scale(ctx_, id, 0.0f), LUMEN_OK) << lumen_last_error();
  EXPECT_EQ(generate_bytes(ctx_, g), before);
  ASSERT_EQ(lumen_adapter_remove(ctx_, id), LUMEN_OK) << lumen_last_error();
  EXPECT_EQ(lumen_adapter_count(ctx_), 0);
  EXPECT_EQ(generate_bytes(ctx_, g), before);
  EXPECT_EQ(lumen_adapter_remove(ctx_, id), LUMEN_ERR_INVALID_ARGUMENT);
  // A file that is not a LoRA is named, and the model stays as it was.
  TempDir dir;
  const std::string junk = dir.path + "/junk.safetensors";
  std::ofstream(junk) << "not a safetensors file";
  EXPECT_EQ(lumen_adapter_apply(ctx_, LUMEN_ADAPTER_LORA, junk.c_str(), 1.0f, nullptr), LUMEN_ERR_FILE);
  EXPECT_NE(std::string(lumen_last_error()).find(junk), std::string::npos) << lumen_last_error();
  EXPECT_EQ(generate_bytes(ctx_, g), before);
}

// An adapter's info.path stays valid, and its own, until that adapter is
// removed, as the header says. Held in a vector, short paths (kept inside the
// string object) moved: after removing an earlier adapter and applying
// another, b's path read "c.safetensors" (found by probing; valgrind saw a
// use after free on the first reallocation).
TEST_F(CApi, AdapterPathsStayValidUntilTheirAdapterIsRemoved) {
  TempDir dir;
  const auto lora = std::filesystem::absolute("assets/unifl-lora/unifl-shapes.safetensors");
  for (const char* name : {"a", "b", "c", "d"})
    std::filesystem::create_symlink(lora, dir.path + "/" + name + ".safetensors");
  const auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir.path);  // short relative paths
  int a = 0, id = 0;
  ASSERT_EQ(lumen_adapter_apply(ctx_, LUMEN_ADAPTER_LORA, "a.safetensors", 0.1f, &a), LUMEN_OK) << lumen_last_error();
  ASSERT_EQ(lumen_adapter_apply(ctx_, LUMEN_ADAPTER_LORA, "b.safetensors", 0.1f, &id), LUMEN_OK) << lumen_last_error();
  lumen_adapter_info b{};
  ASSERT_EQ(lumen_adapter_get(ctx_, 1, &b), LUMEN_OK);
  ASSERT_EQ(lumen_adapter_remove(ctx_, a), LUMEN_OK);
  for (const char* name : {"c.safetensors", "d.safetensors"})
    ASSERT_EQ(lumen_adapter_apply(ctx_, LUMEN_ADAPTER_LORA, name, 0.1f, nullptr), LUMEN_OK) << lumen_last_error();
  std::filesystem::current_path(cwd);
  EXPECT_STREQ(b.path, "b.safetensors");
  while (lumen_adapter_count(ctx_) > 0) {
    lumen_adapter_info info{};
    ASSERT_EQ(lumen_adapter_get(ctx_, 0, &info), LUMEN_OK);
    ASSERT_EQ(lumen_adapter_remove(ctx_, info.id), LUMEN_OK);
  }
}

TEST_F(CApi, ResAdapterAtAnotherSizeAndRemoved) {
  lumen_generation_params g = params(kPrompt);
  g.width = 128;
  g.height = 64;
  const auto before = generate_bytes(ctx_, g);
  EXPECT_EQ(before.size(), 128u * 64 * 3);
  int id = 0;
  ASSERT_EQ(lumen_adapter_apply(ctx_, LUMEN_ADAPTER_RESADAPTER, "assets/resadapter", 1.0f, &id), LUMEN_OK)
      << lumen_last_error();
  EXPECT_EQ(lumen_adapter_apply(ctx_, LUMEN_ADAPTER_RESADAPTER, "assets/resadapter", 1.0f, nullptr), LUMEN_ERR_FILE);
  EXPECT_NE(generate_bytes(ctx_, g), before);
  ASSERT_EQ(lumen_adapter_remove(ctx_, id), LUMEN_OK) << lumen_last_error();
  EXPECT_EQ(generate_bytes(ctx_, g), before);
}

TEST_F(CApi, Img2imgAndInpaintKeepTheSize) {
  lumen_images* first = nullptr;
  lumen_generation_params g = params(kPrompt);
  ASSERT_EQ(lumen_generate(ctx_, &g, &first), LUMEN_OK) << lumen_last_error();
  std::vector<uint8_t> white(64 * 64 * 3, 255);
  lumen_image mask{64, 64, white.data(), 0, nullptr};
  g = params("a small blue square at the top on a white background");
  g.init_image = &first->images[0];
  g.strength = 0.6f;
  auto repainted = generate_bytes(ctx_, g);
  EXPECT_EQ(repainted.size(), 64u * 64 * 3);
  g.mask = &mask;
  EXPECT_EQ(generate_bytes(ctx_, g).size(), 64u * 64 * 3);
  lumen_images_free(first);
}

// One context per thread runs in parallel; the same seed gives the same bytes.
TEST(CApiThreads, OneContextPerThread) {
  std::vector<std::vector<uint8_t>> results(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([t, &results] {
      lumen::Context ctx;
      lumen::GenerationParams p;
      p.prompt = kPrompt;
      p.steps = 4;
      p.seed = 1000;
      const lumen::Images images = ctx.generate(p);
      results[static_cast<size_t>(t)] = bytes_of(images[0]);
    });
  for (auto& t : threads) t.join();
  ASSERT_FALSE(results[0].empty());
  EXPECT_EQ(results[0], results[1]);
}

// A second job on a busy context is refused at once, not queued or raced.
TEST_F(CApi, ABusyContextRefusesASecondJob) {
  struct Gate {
    std::mutex m;
    std::condition_variable cv;
    bool started = false, release = false;
  } gate;
  lumen_generation_params g = params(kPrompt);
  g.progress = [](int, int, void* user) {
    auto* gate = static_cast<Gate*>(user);
    std::unique_lock<std::mutex> lock(gate->m);
    gate->started = true;
    gate->cv.notify_all();
    gate->cv.wait(lock, [&] { return gate->release; });
    return 0;
  };
  g.user_data = &gate;
  lumen_status first = LUMEN_ERR_INTERNAL;
  std::thread worker([&] {
    lumen_images* out = nullptr;
    first = lumen_generate(ctx_, &g, &out);
    lumen_images_free(out);
  });
  {
    std::unique_lock<std::mutex> lock(gate.m);
    gate.cv.wait(lock, [&] { return gate.started; });
  }
  lumen_generation_params other = params(kPrompt);
  lumen_images* out = nullptr;
  EXPECT_EQ(lumen_generate(ctx_, &other, &out), LUMEN_ERR_BUSY);
  EXPECT_EQ(lumen_adapter_apply(ctx_, LUMEN_ADAPTER_LORA, "assets/unifl-lora/unifl-shapes.safetensors", 1, nullptr),
            LUMEN_ERR_BUSY);
  {
    std::lock_guard<std::mutex> lock(gate.m);
    gate.release = true;
  }
  gate.cv.notify_all();
  worker.join();
  EXPECT_EQ(first, LUMEN_OK) << lumen_last_error();
}

// A training recipe through the C API: stopped by the callback with a
// checkpoint, then resumed to the end.
// A tiny VAE recipe of `steps` steps in `dir`, its run folder dir/run.
std::string write_vae_recipe(const std::string& dir, int steps) {
  const std::string recipe = dir + "/vae.yaml";
  std::ofstream(recipe) << "task: vae\noutput: " << dir << "/run\nseed: 1\nthreads: 1\nsteps: " << steps
                        << "\nbatch_size: 2\ndataset: {type: shapes, width: 16, height: 16}\ncheckpoint_every: 100\n"
                        << "vae:\n  config:\n    block_out_channels: [8]\n    down_block_types: [DownEncoderBlock2D]\n"
                        << "    up_block_types: [UpDecoderBlock2D]\n    layers_per_block: 1\n    norm_num_groups: 4\n"
                        << "    latent_channels: 4\n";
  return recipe;
}

TEST(CApiTrain, StopsFromTheCallbackAndResumes) {
  TempDir dir;
  const std::string recipe = write_vae_recipe(dir.path, 6);
  std::vector<double> losses;
  auto stop_at_2 = [](int64_t step, int64_t total, double loss, void* user) {
    EXPECT_EQ(total, 6);
    static_cast<std::vector<double>*>(user)->push_back(loss);
    return step >= 2 ? 1 : 0;
  };
  EXPECT_EQ(lumen_train(recipe.c_str(), 0, stop_at_2, &losses), LUMEN_ERR_CANCELLED);
  EXPECT_EQ(losses.size(), 2u);
  EXPECT_TRUE(std::filesystem::exists(dir.path + "/run/checkpoints/step-00000002/state.json"));
  EXPECT_EQ(lumen_train(recipe.c_str(), 1, nullptr, nullptr), LUMEN_OK) << lumen_last_error();
  EXPECT_TRUE(std::filesystem::exists(dir.path + "/run/final/vae/config.json"));
  EXPECT_EQ(lumen_train((dir.path + "/missing.yaml").c_str(), 0, nullptr, nullptr), LUMEN_ERR_FILE);
  EXPECT_NE(std::string(lumen_last_error()).find("missing.yaml"), std::string::npos);
}

// lumen_train_run (what `lumen train` calls): recipe info, stop_after, threads, the result.
TEST(CApiTrain, RunWithParamsReportsItsResult) {
  TempDir dir;
  const std::string recipe = write_vae_recipe(dir.path, 4);
  lumen_recipe_info info{};
  info.struct_size = sizeof info;
  ASSERT_EQ(lumen_recipe_read_info(recipe.c_str(), &info), LUMEN_OK) << lumen_last_error();
  EXPECT_STREQ(info.task, "vae");
  EXPECT_EQ(info.feedback, 0);
  EXPECT_EQ(info.steps, 4);
  EXPECT_EQ(info.batch_size, 2);
  EXPECT_EQ(std::string(info.output), dir.path + "/run");

  lumen_train_result result{};
  result.struct_size = sizeof result;
  lumen_train_params p = lumen_train_default_params();
  p.stop_after = 3;
  p.threads = 1;
  p.result = &result;
  ASSERT_EQ(lumen_train_run(recipe.c_str(), &p), LUMEN_OK) << lumen_last_error();
  EXPECT_EQ(result.first_step, 0);
  EXPECT_EQ(result.last_step, 3);
  EXPECT_EQ(result.finished, 0);
  p.resume = 1;
  p.stop_after = 0;
  ASSERT_EQ(lumen_train_run(recipe.c_str(), &p), LUMEN_OK) << lumen_last_error();
  EXPECT_EQ(result.first_step, 3);
  EXPECT_EQ(result.last_step, 4);
  EXPECT_EQ(result.finished, 1);
  EXPECT_GE(result.total_seconds, result.seconds);
  EXPECT_EQ(std::string(result.final_folder).rfind(dir.path + "/run/final", 0), 0u) << result.final_folder;

  p.stop_after = -1;
  EXPECT_EQ(lumen_train_run(recipe.c_str(), &p), LUMEN_ERR_INVALID_ARGUMENT);
  std::ofstream(dir.path + "/bad.yaml") << "task: painting\n";
  EXPECT_EQ(lumen_recipe_read_info((dir.path + "/bad.yaml").c_str(), &info), LUMEN_ERR_FILE);
  EXPECT_NE(std::string(lumen_last_error()).find("bad.yaml"), std::string::npos) << lumen_last_error();
}

}  // namespace
