// Measuring: FLOP counting per layer kind, `lumen bench`'s report, the preset
// architectures, per-phase generation times and the model-hash cache.
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>
#include <tuple>

#include "io/text_file.h"
#include "model/configs.h"
#include "model/random_model.h"
#include "nn/clip_text.h"
#include "nn/conv_prepack.h"
#include "nn/cpu_paths.h"
#include "nn/fast_softmax.h"
#include "nn/fused_attention.h"
#include "nn/layers.h"
#include "nn/op_profile.h"
#include "nn/unet.h"
#include "nn/vae.h"
#include "nn/vae_tiling.h"
#include "nn/weight_as_image.h"
#include "perf/bench.h"
#include "perf/process_memory.h"
#include "pipeline/conditioning.h"
#include "pipeline/infotext.h"
#include "pipeline/model_hash_cache.h"
#include "pipeline/pipeline.h"
#include "runtime.h"

namespace {

using lumen::nn::OpKind;

int64_t count_parameters(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

template <typename M>
int64_t count_modules(torch::nn::Module& root) {
  int64_t n = 0;
  for (const auto& m : root.modules())
    if (dynamic_cast<M*>(m.get())) ++n;
  return n;
}

TEST(OpProfile, CountsConvLinearAndAttentionFlopsOnlyWhileActive) {
  torch::InferenceMode inference;
  lumen::nn::Conv2d conv(8, 16, 3, 2, 1);
  lumen::nn::Linear linear(32, 24);
  for (auto* p : {&conv->weight, &conv->bias, &linear->weight, &linear->bias}) p->normal_();
  auto x = torch::randn({2, 8, 10, 10});
  auto tokens = torch::randn({3, 5, 32});
  auto q = torch::randn({2, 7, 16}), kv = torch::randn({2, 9, 16});

  lumen::nn::OpTotals totals;
  conv(x);  // before: not recorded
  {
    lumen::nn::ScopedOpProfile profile(totals);
    EXPECT_EQ(conv(x).sizes(), (std::vector<int64_t>{2, 16, 5, 5}));
    linear(tokens);
    lumen::nn::multi_head_attention(q, kv, kv, 4, false);
  }
  linear(tokens);  // after: not recorded
  EXPECT_DOUBLE_EQ(totals.flops_of(OpKind::Conv), 2.0 * 2 * 16 * 5 * 5 * 8 * 9);
  EXPECT_DOUBLE_EQ(totals.flops_of(OpKind::Linear), 2.0 * 15 * 32 * 24);
  EXPECT_DOUBLE_EQ(totals.flops_of(OpKind::Attention), 2.0 * 2 * 2 * 4 * 7 * 9 * 4);
  for (int k : {0, 1, 2}) EXPECT_EQ(totals.calls[k], 1);
  EXPECT_GT(totals.seconds_of(OpKind::Conv), 0);
  EXPECT_EQ(lumen::nn::active_op_profile(), nullptr);
}

// Chunking the queries bounds the score matrix and changes nothing else.
TEST(Attention, ChunkedEqualsWhole) {
  torch::InferenceMode inference;
  torch::manual_seed(3);
  auto q = torch::randn({2, 37, 24}), k = torch::randn({2, 11, 24}), v = torch::randn({2, 11, 24});
  auto mask = torch::full({37, 11}, -std::numeric_limits<float>::infinity()).triu(1);
  const int64_t saved = lumen::nn::attention_chunk_bytes();
  lumen::nn::set_attention_chunk_bytes(0);
  auto whole = lumen::nn::multi_head_attention(q, k, v, 3, false);
  auto whole_masked = lumen::nn::multi_head_attention(q, k, v, 3, false, mask);
  // Reference formula, heads split by hand.
  auto split = [](const torch::Tensor& t) { return t.reshape({t.size(0), t.size(1), 3, 8}).transpose(1, 2); };
  auto ref = torch::matmul(torch::softmax(torch::matmul(split(q), split(k).transpose(-1, -2)) / std::sqrt(8.0), -1), split(v))
                 .transpose(1, 2)
                 .reshape({2, 37, 24});
  EXPECT_TRUE(torch::allclose(whole, ref, 1e-5, 1e-6));
  lumen::nn::set_attention_chunk_bytes(2 * 3 * 11 * 4 * 5);  // five query rows a chunk: 8 chunks, the last of 2
  EXPECT_LT((lumen::nn::multi_head_attention(q, k, v, 3, false) - whole).abs().max().item<float>(), 1e-5);
  EXPECT_LT((lumen::nn::multi_head_attention(q, k, v, 3, false, mask) - whole_masked).abs().max().item<float>(), 1e-5);
  lumen::nn::set_attention_chunk_bytes(saved);
}

// The AVX-512 softmax agrees with ATen's on rows of every tail length, with
// masked (-inf) entries and large logits, in f32 and bf16; attention with it
// agrees with attention without it. Skipped on CPUs without AVX-512.
TEST(Attention, FastSoftmaxMatchesATen) {
  if (!lumen::nn::fast_softmax_supported()) GTEST_SKIP() << "no AVX-512 on this CPU";
  torch::InferenceMode inference;
  torch::manual_seed(5);
  for (int64_t cols : {1, 7, 16, 17, 77, 1000}) {
    auto x = torch::randn({9, cols}) * 30;
    if (cols > 2) x.index_put_({torch::indexing::Slice(), 1}, -std::numeric_limits<float>::infinity());
    const auto expected = x.softmax(-1);
    auto f32 = x.clone();
    lumen::nn::softmax_rows_inplace(f32.data_ptr<float>(), 9, cols);
    EXPECT_LT((f32 - expected).abs().max().item<float>(), 1e-6) << cols;
    EXPECT_TRUE(torch::allclose(f32.sum(-1), torch::ones({9}), 1e-5, 1e-5)) << cols;
    auto bf16 = x.to(torch::kBFloat16);
    const auto expected_bf16 = bf16.softmax(-1);
    lumen::nn::softmax_rows_inplace_bf16(reinterpret_cast<uint16_t*>(bf16.data_ptr<at::BFloat16>()), 9, cols);
    // Both round an f32 result to bf16: at most one bf16 step (<= 2^-7 relative) apart.
    EXPECT_LE(((bf16.to(torch::kFloat) - expected_bf16.to(torch::kFloat)).abs() -
               expected_bf16.to(torch::kFloat).abs() * (1.0 / 128))
                  .max()
                  .item<float>(),
              1e-30)
        << cols;
  }
  auto q = torch::randn({2, 300, 64}), k = torch::randn({2, 300, 64}), v = torch::randn({2, 300, 64});
  lumen::nn::set_fused_attention(false);  // the unfused path is the one with a softmax
  lumen::nn::set_fast_softmax(false);
  const auto aten = lumen::nn::multi_head_attention(q, k, v, 2, false);
  const auto aten_bf16 = lumen::nn::multi_head_attention(q.to(torch::kBFloat16), k.to(torch::kBFloat16),
                                                         v.to(torch::kBFloat16), 2, false);
  lumen::nn::set_fast_softmax(true);
  ASSERT_TRUE(lumen::nn::fast_softmax_enabled());
  EXPECT_LT((lumen::nn::multi_head_attention(q, k, v, 2, false) - aten).abs().max().item<float>(), 1e-5);
  const auto fast_bf16 = lumen::nn::multi_head_attention(q.to(torch::kBFloat16), k.to(torch::kBFloat16),
                                                         v.to(torch::kBFloat16), 2, false);
  EXPECT_LT((fast_bf16.to(torch::kFloat) - aten_bf16.to(torch::kFloat)).abs().max().item<float>(), 0.02);
  // bf16 attention stays close to f32 attention (values of size ~0.3 here).
  EXPECT_LT((fast_bf16.to(torch::kFloat) - aten).abs().max().item<float>(), 0.03);
  lumen::nn::set_fused_attention(true);
}

// Fused attention (online softmax over key blocks) gives softmax(q kᵀ/√d) v
// computed in double, for the head dims of SD1.x (40, 80, 160), SD2/SDXL (64),
// the VAE (512, one head) and odd ones, query and key counts around the
// kernel's tiles (32 queries, 64 keys), and large logits; bf16 within bf16
// rounding of the same. Off, and with a mask or a recorded gradient, the
// batched-product path runs.
TEST(Attention, FusedMatchesTheFormula) {
  if (!lumen::nn::fused_attention_enabled()) GTEST_SKIP() << "no AVX-512 on this CPU";
  torch::InferenceMode inference;
  torch::manual_seed(11);
  struct Case {
    int64_t batch, heads, d, sq, sk;
    double logit_scale;
  };
  for (const Case c : {Case{2, 8, 40, 100, 77, 1}, Case{1, 5, 64, 64, 64, 1}, Case{2, 2, 80, 33, 129, 1},
                       Case{1, 1, 160, 1, 1, 1}, Case{1, 1, 512, 70, 70, 1}, Case{2, 3, 24, 31, 65, 1},
                       Case{1, 4, 40, 97, 300, 8}}) {
    const int64_t width = c.heads * c.d;
    const auto q = torch::randn({c.batch, c.sq, width}) * c.logit_scale, k = torch::randn({c.batch, c.sk, width}),
               v = torch::randn({c.batch, c.sk, width});
    auto split = [&](const torch::Tensor& t) {
      return t.to(torch::kDouble).reshape({c.batch, -1, c.heads, c.d}).permute({0, 2, 1, 3});
    };
    auto formula = [&](const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
      return torch::matmul((torch::matmul(split(q), split(k).transpose(-1, -2)) / std::sqrt(c.d)).softmax(-1), split(v))
          .permute({0, 2, 1, 3})
          .reshape({c.batch, c.sq, width});
    };
    const auto expected = formula(q, k, v);
    const std::string what = "d " + std::to_string(c.d) + ", " + std::to_string(c.sq) + "x" + std::to_string(c.sk);
    ASSERT_TRUE(lumen::nn::fused_attention_applies(q, k, v, c.heads)) << what;
    const auto fused = lumen::nn::fused_attention(q, k, v, c.heads);
    ASSERT_EQ(fused.sizes(), expected.sizes()) << what;
    EXPECT_LT((fused.to(torch::kDouble) - expected).abs().max().item<double>(), 2e-5) << what;
    const auto bf16 = lumen::nn::fused_attention(q.to(torch::kBFloat16), k.to(torch::kBFloat16), v.to(torch::kBFloat16), c.heads);
    ASSERT_EQ(bf16.scalar_type(), torch::kBFloat16);
    // The same inputs rounded to bf16, the queries rounded once more after
    // scaling by 1/√d (as both bf16 paths do); the result rounded once more
    // (values up to ~3 here).
    const double root = std::sqrt(c.d);
    const auto q_scaled = (q.to(torch::kBFloat16).to(torch::kFloat) / root).to(torch::kBFloat16).to(torch::kDouble) * root;
    const auto expected_bf16 = formula(q_scaled, k.to(torch::kBFloat16), v.to(torch::kBFloat16));
    EXPECT_LT((bf16.to(torch::kDouble) - expected_bf16).abs().max().item<double>(), 0.016) << what;
    EXPECT_LT((lumen::nn::multi_head_attention(q, k, v, c.heads, false).to(torch::kDouble) - expected).abs().max().item<double>(),
              2e-5)
        << what;
  }
  const auto t = torch::randn({1, 4, 8});
  EXPECT_FALSE(lumen::nn::fused_attention_applies(t.to(torch::kHalf), t, t, 1));
  {
    c10::InferenceMode off(false);
    torch::AutoGradMode grad(true);
    const auto needs_grad = torch::randn({1, 4, 8}).requires_grad_();
    EXPECT_FALSE(lumen::nn::fused_attention_applies(needs_grad, t, t, 1));
  }
  const auto bf16 = torch::randn({1, 4096, 320}).to(torch::kBFloat16);
  EXPECT_EQ(lumen::nn::fused_attention_applies(bf16, bf16, bf16, 8), __builtin_cpu_supports("avx512bf16") != 0);
  EXPECT_FALSE(lumen::nn::fused_attention_applies(bf16, bf16, bf16, 5));  // head dim 64: oneDNN's products
  lumen::nn::set_fused_attention(false);
  EXPECT_FALSE(lumen::nn::fused_attention_applies(t, t, t, 1));
  lumen::nn::set_fused_attention(true);
}

// Linear layers as oneDNN 1x1 convolutions and prepacked convolution weights
// give what the plain ATen calls give, in f32 and bf16; a packed weight is
// repacked when the weight changes in place or moves to another dtype.
TEST(CpuPaths, OnednnLinearAndPrepackedConvMatchATen) {
  torch::manual_seed(7);
  const auto tokens = torch::randn({2, 300, 48});  // 600 rows: the activations are the image
  const auto few_tokens = torch::randn({3, 40, 48});  // 120 rows: the weight is (f32)
  const auto image = torch::randn({2, 16, 9, 7});
  for (auto type : {torch::kFloat, torch::kBFloat16}) {
    lumen::nn::Linear linear(48, 40), unbiased(48, 40, false);
    lumen::nn::Conv2d conv(16, 24, 3, 1, 1);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : linear->parameters()) p.normal_(0, 0.1);
      for (auto& p : unbiased->parameters()) p.normal_(0, 0.1);
      for (auto& p : conv->parameters()) p.normal_(0, 0.1);
    }
    linear->to(type);  // outside inference mode, as models are loaded
    unbiased->to(type);
    conv->to(type);
    torch::InferenceMode inference;
    const auto x = tokens.to(type), y = image.to(type);
    const double tol = type == torch::kFloat ? 1e-5 : 0.05;
    lumen::nn::set_onednn_linear(false);
    const auto plain_linear = linear(x).to(torch::kFloat);
    lumen::nn::set_onednn_linear(true);
    const auto fast_linear = linear(x);
    EXPECT_EQ(fast_linear.sizes(), torch::IntArrayRef({2, 300, 40}));
    EXPECT_LT((fast_linear.to(torch::kFloat) - plain_linear).abs().max().item<float>(), tol);
    for (auto* layer : {&linear, &unbiased}) {
      const auto few = few_tokens.to(type);
      lumen::nn::set_weight_as_image(false);
      const auto plain = (*layer)(few).to(torch::kFloat);
      lumen::nn::set_weight_as_image(true);
      const auto fast = (*layer)(few);
      EXPECT_EQ(fast.sizes(), torch::IntArrayRef({3, 40, 40}));
      EXPECT_TRUE(fast.is_contiguous());
      EXPECT_LT((fast.to(torch::kFloat) - plain).abs().max().item<float>(), tol);
    }

    if (type == torch::kFloat) {
      // Under bf16 autocast the answer is bf16, as torch::linear's: a checkpointed
      // block's no-grad forward must match its recompute with grad.
      at::autocast::set_cpu_enabled(true);
      at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
      const auto autocast_fast = linear(few_tokens.to(type));
      lumen::nn::set_weight_as_image(false);
      const auto autocast_plain = linear(few_tokens.to(type));
      lumen::nn::set_weight_as_image(true);
      at::autocast::set_cpu_enabled(false);
      at::autocast::clear_cache();
      EXPECT_EQ(autocast_fast.scalar_type(), autocast_plain.scalar_type());
      EXPECT_EQ(autocast_fast.scalar_type(), torch::kBFloat16);
      EXPECT_LT((autocast_fast - autocast_plain).abs().max().item<float>(), 0.05);
    }

    const auto plain_conv = conv(y).to(torch::kFloat);
    lumen::nn::set_conv_prepack(true);
    EXPECT_LT((conv(y).to(torch::kFloat) - plain_conv).abs().max().item<float>(), tol);
    ASSERT_EQ(static_cast<bool>(conv->packed), type == torch::kBFloat16);  // bf16 only
    conv->weight.mul_(2);  // in place: the packed copy must follow
    lumen::nn::set_conv_prepack(false);
    const auto plain_doubled = conv(y).to(torch::kFloat);
    lumen::nn::set_conv_prepack(true);
    EXPECT_LT((conv(y).to(torch::kFloat) - plain_doubled).abs().max().item<float>(), 2 * tol);
    EXPECT_GT((plain_doubled - plain_conv).abs().max().item<float>(), 0.1);
    lumen::nn::set_conv_prepack(false);
  }
}

// Few-pixel convolutions with the weight as oneDNN's image give what
// conv2d gives (3x3 and 1x1, strided, with and without bias, f32 and bf16),
// and larger outputs, autograd and the switch keep the plain path.
TEST(CpuPaths, WeightAsImageConvolutionMatchesConv2d) {
  torch::manual_seed(11);
  const auto x = torch::randn({2, 24, 8, 8});
  for (auto type : {torch::kFloat, torch::kBFloat16}) {
    const double tol = type == torch::kFloat ? 1e-5 : 0.05;
    for (auto [kernel, stride, padding, with_bias] :
         {std::tuple{3, 1, 1, true}, std::tuple{3, 2, 1, true}, std::tuple{1, 1, 0, false}, std::tuple{3, 1, 1, false}}) {
      const auto w = (torch::randn({40, 24, kernel, kernel}) * 0.1).to(type);
      const auto b = with_bias ? torch::randn({40}).to(type) : torch::Tensor();
      const auto input = x.to(type);
      torch::NoGradGuard no_grad;
      const auto fast = lumen::nn::weight_as_image_conv2d(input, w, b, stride, padding);
      ASSERT_TRUE(fast.has_value());  // 2 x 8x8 (or 4x4) = at most 128 output pixels
      const auto plain = torch::conv2d(input, w, b, stride, padding);
      EXPECT_EQ(fast->sizes(), plain.sizes());
      EXPECT_TRUE(fast->is_contiguous());
      EXPECT_LT((fast->to(torch::kFloat) - plain.to(torch::kFloat)).abs().max().item<float>(), tol)
          << kernel << " " << stride << " " << with_bias;
    }
  }
  const auto w = torch::randn({8, 24, 3, 3}, torch::requires_grad());
  EXPECT_FALSE(lumen::nn::weight_as_image_conv2d(x, w, {}, 1, 1).has_value());  // autograd records
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(lumen::nn::weight_as_image_conv2d(torch::randn({2, 24, 9, 8}), w, {}, 1, 1).has_value());  // 144 pixels
  lumen::nn::set_weight_as_image(false);
  EXPECT_FALSE(lumen::nn::weight_as_image_conv2d(x, w, {}, 1, 1).has_value());
  lumen::nn::set_weight_as_image(true);
}

// The VAE's channels-last inference gives what NCHW gives, and hands back
// NCHW-contiguous tensors as before.
TEST(CpuPaths, VaeChannelsLastMatchesNchw) {
  torch::InferenceMode inference;
  auto model = lumen::make_random_model("tiny", 4, false);
  auto& vae = *model->vae;
  torch::manual_seed(3);
  const auto latents = torch::randn({2, 4, 12, 10});
  const auto image = torch::rand({1, 3, 24, 20}) * 2 - 1;
  ASSERT_TRUE(lumen::nn::vae_channels_last_enabled());  // the default
  const auto decoded = vae.decode(latents), moments = vae.encode_moments(image);
  lumen::nn::set_vae_channels_last(false);
  const auto decoded_nchw = vae.decode(latents), moments_nchw = vae.encode_moments(image);
  lumen::nn::set_vae_channels_last(true);
  EXPECT_TRUE(decoded.is_contiguous());
  EXPECT_TRUE(moments.is_contiguous());
  EXPECT_LT((decoded - decoded_nchw).abs().max().item<float>(), 1e-5);
  EXPECT_LT((moments - moments_nchw).abs().max().item<float>(), 1e-5);
}

// An upsampler's 3×3 convolution of the 2× map equals the four 2×2
// convolutions of the small map, in both layouts and in bf16; small maps,
// odd target sizes and training keep the plain path.
TEST(CpuPaths, SubpixelUpsampleMatchesConvolvingTheUpsampledMap) {
  torch::manual_seed(11);
  lumen::nn::Upsample2D up(8);
  {
    torch::NoGradGuard no_grad;
    up->conv->weight.normal_(0, 0.2);
    up->conv->bias.normal_(0, 0.2);
  }
  auto plain = [&](const torch::Tensor& in) {
    return torch::conv2d(torch::upsample_nearest2d(in, {2 * in.size(2), 2 * in.size(3)}),
                         up->conv->weight.to(in.scalar_type()), up->conv->bias.to(in.scalar_type()), 1, 1);
  };
  // Which path a call took, told by the FLOPs it counts (2×2 taps four times, or 3×3 once).
  auto conv_flops = [&](const torch::Tensor& in, c10::optional<std::vector<int64_t>> size = c10::nullopt) {
    lumen::nn::OpTotals totals;
    lumen::nn::ScopedOpProfile profile(totals);
    up->forward(in, size);
    return totals.flops_of(OpKind::Conv);
  };
  const auto x = torch::randn({2, 8, 33, 32});  // 1,056 pixels: above the threshold
  const double folded = 4 * lumen::nn::conv2d_flops(2, 8, 8, 2, 33, 32);
  const double unfolded = lumen::nn::conv2d_flops(2, 8, 8, 3, 66, 64);
  using lumen::nn::SubpixelUpsample;
  ASSERT_EQ(lumen::nn::subpixel_upsample_mode(), SubpixelUpsample::LowPrecision);  // the default
  EXPECT_DOUBLE_EQ(conv_flops(x), unfolded);  // f32 keeps the plain path by default
  lumen::nn::set_subpixel_upsample(SubpixelUpsample::Always);
  {
    torch::NoGradGuard no_grad;
    for (auto layout : {at::MemoryFormat::Contiguous, at::MemoryFormat::ChannelsLast}) {
      const auto in = x.contiguous(layout);
      const auto y = up->forward(in);
      EXPECT_EQ(y.sizes(), torch::IntArrayRef({2, 8, 66, 64}));
      EXPECT_TRUE(y.is_contiguous(layout));
      EXPECT_LT((y - plain(in)).abs().max().item<float>(), 1e-5);
      EXPECT_DOUBLE_EQ(conv_flops(in), folded);
    }
    EXPECT_DOUBLE_EQ(conv_flops(x.slice(2, 0, 31)), lumen::nn::conv2d_flops(2, 8, 8, 3, 62, 64));  // 992 pixels
    EXPECT_DOUBLE_EQ(conv_flops(x, std::vector<int64_t>{65, 64}), lumen::nn::conv2d_flops(2, 8, 8, 3, 65, 64));
    lumen::nn::set_subpixel_upsample(SubpixelUpsample::Off);
    EXPECT_DOUBLE_EQ(conv_flops(x), unfolded);
    lumen::nn::set_subpixel_upsample(SubpixelUpsample::LowPrecision);

    const auto xb = x.to(torch::kBFloat16);
    up->to(torch::kBFloat16);
    const auto yb = up->forward(xb);
    EXPECT_DOUBLE_EQ(conv_flops(xb), folded);  // bf16 takes it by default
    up->to(torch::kFloat);
    EXPECT_EQ(yb.scalar_type(), torch::kBFloat16);
    EXPECT_TRUE(torch::allclose(yb.to(torch::kFloat), plain(x), 0.05, 0.05));
  }
  // Training: the plain path, and gradients reach the weight.
  lumen::nn::set_subpixel_upsample(SubpixelUpsample::Always);
  up->conv->weight.set_requires_grad(true);
  EXPECT_DOUBLE_EQ(conv_flops(x), unfolded);
  up->forward(x).sum().backward();
  ASSERT_TRUE(up->conv->weight.grad().defined());
  EXPECT_GT(up->conv->weight.grad().abs().sum().item<float>(), 0);
  lumen::nn::set_subpixel_upsample(SubpixelUpsample::LowPrecision);
}

// bf16 group norms at inference go through float32 a few groups at a time;
// they give what one whole float32 norm gives, in either layout.
TEST(CpuPaths, ChunkedLowPrecisionGroupNormMatchesWholeFloat) {
  lumen::nn::GroupNorm norm(32, 64, 1e-6);
  {
    torch::NoGradGuard no_grad;
    norm->weight.normal_(1, 0.2);
    norm->bias.normal_(0, 0.2);
  }
  norm->to(torch::kBFloat16);
  torch::InferenceMode inference;
  torch::manual_seed(5);
  // 147,456 pixels × 2 channels per group: 14 groups per float chunk, 3 chunks per sample.
  const auto x = (torch::randn({2, 64, 384, 384}) * 3 + 1).to(torch::kBFloat16);
  const auto w = norm->weight.to(torch::kFloat), b = norm->bias.to(torch::kFloat);
  const auto whole = torch::group_norm(x.to(torch::kFloat), 32, w, b, 1e-6);
  for (auto layout : {at::MemoryFormat::Contiguous, at::MemoryFormat::ChannelsLast}) {
    const auto input = x.contiguous(layout);
    const auto plain = norm->forward(input), with_silu = norm->forward_silu(input);
    EXPECT_TRUE(plain.is_contiguous(layout));
    EXPECT_EQ(plain.scalar_type(), torch::kBFloat16);
    EXPECT_TRUE(torch::allclose(plain.to(torch::kFloat), whole, 1.0 / 128, 1e-2));
    EXPECT_TRUE(torch::allclose(with_silu.to(torch::kFloat), torch::silu(whole), 1.0 / 128, 1e-2));
  }
}

// The presets are the public architectures: their UNet and text-encoder sizes
// are the published parameter counts (built with empty tensors: nothing is filled).
TEST(RandomPresets, HaveThePublicArchitecturesParameterCounts) {
  const std::map<std::string, int64_t> unet_parameters{
      {"sd15", 859520964}, {"sd21", 865910724}, {"sdxl", 2567463684}};
  for (const auto& [name, expected] : unet_parameters) {
    const auto configs = lumen::random_preset_configs(name);
    lumen::nn::UNet2DCondition unet(lumen::parse_unet_config(configs["unet"], name));
    EXPECT_EQ(count_parameters(*unet), expected) << name;
  }
  lumen::nn::ClipTextModel clip_l(lumen::parse_clip_text_config(lumen::random_preset_configs("sd15")["text_encoder"], "sd15"));
  EXPECT_EQ(count_parameters(*clip_l), 123060480);
  EXPECT_TRUE(lumen::random_preset_configs("sdxl").contains("text_encoder_2"));
  EXPECT_THROW(lumen::random_preset_configs("sd3"), std::exception);
}

TEST(Bench, ReportsEveryPhaseAndCountsEachLayerOncePerUNetStep) {
  lumen::BenchOptions o;
  o.preset = "tiny";
  o.repeats = 2;
  o.steps = 2;
  o.measure_machine = false;
  const lumen::BenchReport r = lumen::run_bench(o);
  for (const char* name : {"build_random", "text_encode", "unet_step", "vae_decode", "generation"}) {
    const auto* p = r.phase(name);
    ASSERT_NE(p, nullptr) << name;
    EXPECT_EQ(p->seconds.size(), std::string(name) == "build_random" ? 1u : 2u) << name;
    EXPECT_GT(p->min(), 0) << name;
    EXPECT_LE(p->min(), p->median()) << name;
  }
  EXPECT_EQ(r.unet_batch, 2);
  EXPECT_EQ(r.width, 16);  // the tiny preset's native size: sample_size 8 x its VAE's factor 2
  // One step calls every conv and linear layer of the UNet once, and attention
  // twice per transformer block (self and cross).
  auto model = lumen::make_random_model("tiny", 0, false);
  EXPECT_EQ(r.unet_step_ops.calls[0], count_modules<lumen::nn::Conv2dImpl>(*model->unet));
  EXPECT_EQ(r.unet_step_ops.calls[1], count_modules<lumen::nn::LinearImpl>(*model->unet));
  EXPECT_GT(r.unet_step_ops.calls[2], 0);
  EXPECT_EQ(r.unet_step_ops.calls[2] % 2, 0);
  EXPECT_GT(r.unet_step_ops.flops[0], 0);
  EXPECT_EQ(r.unet_parameters, count_parameters(*model->unet));
  EXPECT_GE(r.peak_rss_bytes, r.weights_bytes);

  const auto j = lumen::bench_report_json(r);
  EXPECT_EQ(j["phases"]["unet_step"]["seconds"].size(), 2u);
  EXPECT_NEAR(j["unet_step"]["gflop"].get<double>(),
              (r.unet_step_ops.flops[0] + r.unet_step_ops.flops[1] + r.unet_step_ops.flops[2]) / 1e9, 1e-12);
  const std::string text = lumen::bench_report_text(r);
  for (const char* word : {"unet_step", "conv", "attention", "peak RSS"}) EXPECT_NE(text.find(word), std::string::npos) << word;
}

TEST(Bench, MachineRatesArePositiveForEveryKernel) {
  const auto rates = lumen::measure_machine_rates(0.05);
  for (const auto* k : {&rates.gemm_f32, &rates.gemm_bf16, &rates.conv3x3_f32, &rates.conv3x3_bf16}) {
    EXPECT_GT(k->gflops, 0);
    EXPECT_FALSE(k->shape.empty());
  }
}

TEST(ProcessMemory, PeakIsAtLeastTheCurrentResidentSize) {
  std::vector<char> block(64 << 20, 1);  // touched: resident
  EXPECT_GE(lumen::peak_resident_bytes(), lumen::resident_bytes());
  EXPECT_GE(lumen::resident_bytes(), int64_t{64} << 20);
  EXPECT_EQ(block[12345], 1);
}

// Small work runs on one thread unless the user chose the count.
TEST(Threads, SmallUNetStepsUseOneThreadUnlessChosen) {
  auto model = lumen::make_random_model("tiny", 0, false);
  lumen::GenerationOptions o;
  o.cfg_scale = 7;
  const double flops = lumen::estimated_unet_step_flops(*model, o);
  EXPECT_DOUBLE_EQ(flops, 2.0 * count_parameters(*model->unet) * 8 * 8 * 2);  // 16x16 image, VAE factor 2, CFG batch 2
  EXPECT_LT(flops, lumen::kSmallUNetStepFlops);

  lumen::set_threads(2);  // as --threads 2: kept
  EXPECT_FALSE(lumen::fit_threads_to_work(flops));
  EXPECT_EQ(torch::get_num_threads(), 2);
  lumen::set_threads(0);  // automatic
  const int cores = torch::get_num_threads();
  EXPECT_FALSE(lumen::fit_threads_to_work(lumen::kSmallUNetStepFlops * 2));
  EXPECT_EQ(torch::get_num_threads(), cores);
  EXPECT_EQ(lumen::fit_threads_to_work(flops), cores > 1);
  EXPECT_EQ(torch::get_num_threads(), 1);
}

class HashCacheTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lumen_hash_XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(HashCacheTest, RemembersAHashUntilTheFileChanges) {
  const std::string file = dir_ + "/model.safetensors", cache = dir_ + "/cache/hashes.json";
  std::ofstream(file) << "first version";
  const std::string first = lumen::cached_short_file_hash(file, cache);
  EXPECT_EQ(first, lumen::short_file_hash(file));
  ASSERT_TRUE(std::filesystem::exists(cache));

  // The cache is what answers while size and mtime match: a doctored entry shows it.
  auto doctored = lumen::read_json_file(cache);
  const std::string key = doctored.begin().key();
  doctored[key]["short_hash"] = "from-cache";
  std::ofstream(cache) << doctored.dump();
  EXPECT_EQ(lumen::cached_short_file_hash(file, cache), "from-cache");

  // A new version of the file (other size and mtime) is hashed again.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::ofstream(file) << "second, longer version";
  EXPECT_EQ(lumen::cached_short_file_hash(file, cache), lumen::short_file_hash(file));
  EXPECT_NE(lumen::short_file_hash(file), first);

  // A corrupt cache is rebuilt, not an error.
  std::ofstream(cache) << "{not json";
  EXPECT_EQ(lumen::cached_short_file_hash(file, cache), lumen::short_file_hash(file));
  EXPECT_NO_THROW(lumen::read_json_file(cache));

  // Entries of files that are gone are dropped: the cache stays small (a
  // 188 MB one, never pruned, made each generation 13 s slower).
  auto stale = lumen::read_json_file(cache);
  for (int i = 0; i < 5000; ++i) stale[dir_ + "/gone-" + std::to_string(i)] = stale[key];
  std::ofstream(cache) << stale.dump();
  std::ofstream(dir_ + "/other.safetensors") << "another model";
  lumen::cached_short_file_hash(dir_ + "/other.safetensors", cache);
  EXPECT_EQ(lumen::read_json_file(cache).size(), 2u);
}

}  // namespace

namespace {

// Tiled decoding: one tile is plain decoding; larger latents keep tile (0,0)'s
// own pixels up to the blend, and a seam starts with the upper tile's pixels.
TEST(VaeTiling, MatchesPlainDecodeInOneTileAndBlendsAtTheSeams) {
  torch::InferenceMode inference;
  auto model = lumen::make_random_model("tiny", 4, false);  // VAE factor 2, sample size 16: tiles of 8 latent pixels
  auto& vae = *model->vae;
  const lumen::nn::VaeTiling tiling;
  ASSERT_EQ(lumen::nn::tile_latent_size(vae, tiling), 8);
  torch::manual_seed(0);
  auto small = torch::randn({1, 4, 8, 6});
  EXPECT_TRUE(torch::equal(lumen::nn::decode_tiled(vae, small, tiling), vae.decode(small)));

  auto z = torch::randn({1, 4, 20, 13});
  auto out = lumen::nn::decode_tiled(vae, z, tiling);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{1, 3, 40, 26}));
  const int64_t tile_px = 16, blend_px = 4, keep_px = 12;
  auto first = vae.decode(z.narrow(2, 0, 8).narrow(3, 0, 8));
  EXPECT_TRUE(torch::allclose(out.narrow(2, 0, keep_px).narrow(3, 0, keep_px),
                              first.narrow(2, 0, keep_px).narrow(3, 0, keep_px)));
  // Row keep_px is the first of tile (1,0): weight 0 on it, so tile (0,0)'s row tile_px − blend_px.
  EXPECT_TRUE(torch::allclose(out.select(2, keep_px).narrow(2, 0, keep_px),
                              first.select(2, tile_px - blend_px).narrow(2, 0, keep_px)));
  // Inside a seam both tiles count: differs from either alone.
  auto below = vae.decode(z.narrow(2, 6, 8).narrow(3, 0, 8));
  EXPECT_FALSE(torch::allclose(out.select(2, keep_px + 2).narrow(2, 0, keep_px), below.select(2, 2).narrow(2, 0, keep_px)));
}

}  // namespace

namespace {

// A batch of one prompt runs the text encoder once: as many linear-layer calls
// as a single prompt, and the same conditioning for every item.
TEST(TextEncoding, EachDistinctPromptIsEncodedOnce) {
  torch::InferenceMode inference;
  auto model = lumen::make_random_model("tiny", 1, false);
  auto linear_calls = [&](const std::vector<std::string>& prompts) {
    lumen::nn::OpTotals totals;
    lumen::nn::ScopedOpProfile profile(totals);
    auto c = lumen::encode_prompts(*model, prompts, {}, {});
    EXPECT_EQ(c.context.size(0), static_cast<int64_t>(prompts.size()));
    return totals.calls[static_cast<int>(OpKind::Linear)];
  };
  const int64_t one = linear_calls({"a red circle"});
  EXPECT_GT(one, 0);
  EXPECT_EQ(linear_calls({"a red circle", "a red circle", "a red circle"}), one);
  EXPECT_EQ(linear_calls({"a red circle", "a blue square", "a red circle"}), 2 * one);
  auto batch = lumen::encode_prompts(*model, {"a red circle", "a blue square", "a red circle"}, {}, {});
  auto single = lumen::encode_prompts(*model, {"a blue square"}, {}, {});
  EXPECT_TRUE(torch::equal(batch.context[0], batch.context[2]));
  EXPECT_TRUE(torch::equal(batch.context[1], single.context[0]));
}

}  // namespace

namespace {

// A generation with --vae-tiling decodes its final latents in tiles of the asked size.
TEST(VaeTiling, GenerationDecodesInTilesOfTheAskedSize) {
  auto model = lumen::make_random_model("tiny", 6, false);
  lumen::Pipeline pipeline(model);
  lumen::GenerationOptions o;
  o.prompt = "a red circle";
  o.steps = 2;
  o.width = 40;
  o.height = 24;  // latents 20x12: tiles of 8 latent pixels (16 px)
  o.vae_tiling = true;
  o.vae_tile_size = 16;
  const auto r = pipeline.generate(o);
  torch::InferenceMode inference;
  auto z = model->vae->from_model_latents(r.latents);
  auto expected = (lumen::nn::decode_tiled(*model->vae, z, {16}) / 2 + 0.5).clamp(0, 1).permute({0, 2, 3, 1});
  EXPECT_TRUE(torch::allclose(r.images, expected));
  auto whole = (model->vae->decode(z) / 2 + 0.5).clamp(0, 1).permute({0, 2, 3, 1});
  EXPECT_FALSE(torch::allclose(r.images, whole));
}

}  // namespace
