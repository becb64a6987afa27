#include "perception_model.h"

#include "error.h"
#include "runtime.h"
#include "shapes/judge.h"
#include "model_folder.h"

namespace lumen::train {
namespace F = torch::nn::functional;

ConvBlockImpl::ConvBlockImpl(int64_t in, int64_t out, int64_t stride) {
  conv1 = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1)));
  norm1 = register_module("norm1", torch::nn::GroupNorm(std::min<int64_t>(8, out), out));
  conv2 = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(out, out, 3).padding(1)));
  norm2 = register_module("norm2", torch::nn::GroupNorm(std::min<int64_t>(8, out), out));
}

torch::Tensor ConvBlockImpl::forward(const torch::Tensor& x) {
  auto h = F::silu(norm1(conv1(x)));
  return F::silu(norm2(conv2(h)));
}

SegmenterImpl::SegmenterImpl(SegmenterConfig c) : config(std::move(c)) {
  if (config.channels.empty()) throw Error("segmenter", "channels must not be empty");
  down = register_module("down", torch::nn::ModuleList());
  up = register_module("up", torch::nn::ModuleList());
  int64_t in = 3;
  for (size_t i = 0; i < config.channels.size(); ++i) {
    down->push_back(ConvBlock(in, config.channels[i], i == 0 ? 1 : 2));
    in = config.channels[i];
  }
  for (size_t i = config.channels.size() - 1; i > 0; --i)
    up->push_back(ConvBlock(config.channels[i] + config.channels[i - 1], config.channels[i - 1]));
  head = register_module("head", torch::nn::Conv2d(torch::nn::Conv2dOptions(config.channels[0], config.classes, 1)));
}

std::vector<torch::Tensor> SegmenterImpl::features(const torch::Tensor& images) {
  std::vector<torch::Tensor> out;
  auto h = images;
  for (const auto& block : *down) {
    h = block->as<ConvBlock>()->forward(h);
    out.push_back(h);
  }
  return out;
}

torch::Tensor SegmenterImpl::forward(const torch::Tensor& images) {
  auto skips = features(images);
  auto h = skips.back();
  skips.pop_back();
  for (const auto& block : *up) {
    const auto& skip = skips.back();
    h = F::interpolate(h, F::InterpolateFuncOptions().size(std::vector<int64_t>{skip.size(2), skip.size(3)}).mode(torch::kNearest));
    h = block->as<ConvBlock>()->forward(torch::cat({h, skip}, 1));
    skips.pop_back();
  }
  return head(h);
}

torch::Tensor SegmenterImpl::loss(const torch::Tensor& images, const torch::Tensor& labels, LossReduction reduction) {
  if (images.size(2) != config.resolution || images.size(3) != config.resolution)
    throw Error("segmenter", "was trained on " + std::to_string(config.resolution) + "x" +
                                 std::to_string(config.resolution) + " images, given " + std::to_string(images.size(3)) +
                                 "x" + std::to_string(images.size(2)));
  return image_losses(forward(images), labels, reduction).mean();
}

// Each image's per-pixel loss [B,H,W] reduced to [B]: the mean over pixels or
// the sum over its shape's area (a small shape's few wrong edge pixels weigh
// as much as a large one's, instead of vanishing in 4096).
static torch::Tensor reduce_image_losses(const torch::Tensor& per_pixel, const torch::Tensor& labels,
                                         LossReduction reduction) {
  if (reduction == LossReduction::pixels) return per_pixel.mean({1, 2});
  const auto area = (labels > 0).sum({1, 2}).clamp_min(1).to(torch::kFloat);
  return per_pixel.sum({1, 2}) / area;
}

torch::Tensor SegmenterImpl::image_losses(const torch::Tensor& logits, const torch::Tensor& labels,
                                          LossReduction reduction) const {
  const auto per_pixel =
      F::cross_entropy(logits.to(torch::kFloat), labels, F::CrossEntropyFuncOptions().reduction(torch::kNone));
  return reduce_image_losses(per_pixel, labels, reduction);
}

// Each pixel's RGB offset from its image's background [B,3,H,W], in the
// judge's 0-255 units, from images in [-1,1] and backgrounds [B,3].
static torch::Tensor offset_from_background(const torch::Tensor& images, const torch::Tensor& backgrounds) {
  return (images.to(torch::kFloat) - backgrounds.view({-1, 3, 1, 1})).mul(127.5);
}

torch::Tensor foreground_losses(const torch::Tensor& images, const torch::Tensor& backgrounds, const torch::Tensor& labels,
                                LossReduction reduction) {
  constexpr double kSoftness = 5;  // 0-255 RGB units
  const auto distance = offset_from_background(images, backgrounds).pow(2).sum(1).add(1e-6).sqrt();
  const auto soft_mask = torch::sigmoid((distance - shapes::kForegroundDistance) / kSoftness);
  const auto per_pixel = F::binary_cross_entropy(soft_mask, (labels > 0).to(torch::kFloat),
                                                 F::BinaryCrossEntropyFuncOptions().reduction(torch::kNone));
  return reduce_image_losses(per_pixel, labels, reduction);
}

torch::Tensor background_losses(const torch::Tensor& images, const torch::Tensor& backgrounds) {
  const auto offset = offset_from_background(images, backgrounds);
  torch::Tensor kept;
  {
    torch::NoGradGuard no_grad;
    const auto foreground = (offset.pow(2).sum(1, true).sqrt() > shapes::kForegroundDistance).to(torch::kFloat);
    const int64_t r = shapes::kBackgroundDilation;  // a (2r+1)² square, as the judge dilates
    kept = 1 - F::max_pool2d(foreground, F::MaxPool2dFuncOptions(2 * r + 1).stride(1).padding(r));
  }
  const auto mean_offset = (offset * kept).sum({2, 3}) / kept.sum({2, 3}).clamp_min(1);
  return mean_offset.pow(2).sum(1).add(1e-6).sqrt();
}

nlohmann::json to_json(const SegmenterConfig& c) {
  return {{"kind", "segmenter"}, {"resolution", c.resolution}, {"channels", c.channels}, {"classes", c.classes}};
}

SegmenterConfig segmenter_config(const nlohmann::json& j, const std::string& where) {
  SegmenterConfig c;
  c.resolution = config_field(j, "resolution", c.resolution, where);
  c.channels = config_field(j, "channels", c.channels, where);
  c.classes = config_field(j, "classes", c.classes, where);
  if (c.resolution < 8 || c.resolution > 4096 || c.classes < 2 || c.classes > 1024 || c.channels.empty() ||
      c.channels.size() > 6)
    throw Error(where, "bad segmenter config (resolution 8..4096, classes 2..1024, 1..6 channel levels)");
  for (auto ch : c.channels)
    if (ch < 1 || ch > 4096) throw Error(where, "segmenter channels must be in 1..4096");
  // Checked before anything is allocated: two 3×3 convolutions per block, down and up.
  double parameters = 0;
  int64_t in = 3;
  for (int64_t ch : c.channels) parameters += 9.0 * static_cast<double>(in * ch + ch * ch), in = ch;
  for (size_t i = c.channels.size() - 1; i > 0; --i) {
    const double a = static_cast<double>(c.channels[i] + c.channels[i - 1]), b = static_cast<double>(c.channels[i - 1]);
    parameters += 9.0 * (a * b + b * b);
  }
  if (parameters > kMaxJudgeParameters) throw Error(where, too_many_parameters(parameters));
  return c;
}

void save_segmenter(const std::string& folder, Segmenter& model, nlohmann::json extra) {
  auto config = to_json(model->config);
  config.update(extra);
  save_model_folder(folder, *model, config);
}

Segmenter load_segmenter(const std::string& folder) {
  const auto config = read_model_config(folder, "segmenter");
  const std::string where = folder + "/config.json";
  Segmenter model = built_from(where, [&] { return Segmenter(segmenter_config(config, where)); });
  load_model_weights(folder, *model);
  model->eval();
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  return model;
}

double foreground_iou(const torch::Tensor& logits, const torch::Tensor& labels) {
  const auto predicted = logits.argmax(1) > 0, truth = labels > 0;
  const double inter = (predicted & truth).sum().item<double>(), uni = (predicted | truth).sum().item<double>();
  return uni > 0 ? inter / uni : 1.0;
}

}  // namespace lumen::train
