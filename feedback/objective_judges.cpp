// The two kinds of judge that feedback learning needs on ShapesWorld, trained
// like any other recipe: a segmentation (perception) model on renders and
// their masks (`task: segmenter`), and a reward model of one dimension on
// preference pairs with the Bradley–Terry loss (`task: reward`). Both see
// corrupted and VAE-round-tripped images, as decoded x0 predictions look.
#include <random>

#include "error.h"
#include "image_grid.h"
#include "model/model_loader.h"
#include "nn/vae.h"
#include "objective_parts.h"
#include "perception_model.h"
#include "shapes_reward_model.h"
#include "shapes_supervision.h"

namespace lumen::train {
namespace {

// Training images as the feedback loop will show them: a share of them
// encoded and decoded by the base model's VAE, then lightly corrupted.
class ImageRealism {
 public:
  explicit ImageRealism(const Recipe& recipe) : spec_(recipe.judge_model) {
    if (recipe.base_model.empty() || spec_.vae_roundtrip <= 0) return;
    LoadOptions lo;
    vae_ = load_model(recipe.base_model, lo).vae;
  }
  // `pick` [B] in [0,1): the images with pick < vae_roundtrip are round-tripped.
  torch::Tensor apply(const torch::Tensor& images, const torch::Tensor& pick, at::Generator& gen) const {
    auto x = images;
    const auto rows = (pick < spec_.vae_roundtrip).nonzero().flatten();
    if (vae_ && rows.numel() > 0) {
      torch::NoGradGuard no_grad;
      auto vae = vae_;  // a non-const handle on the shared module
      const auto chosen = images.index_select(0, rows);
      const auto round = vae->decode(nn::split_moments(vae->encode_moments(chosen)).mean).clamp(-1, 1);
      x = images.index_copy(0, rows, round);
    }
    return corrupt(x, spec_.corrupt, gen);
  }

 private:
  JudgeModelSpec spec_;
  nn::AutoencoderKL vae_{nullptr};
};

int64_t square_resolution(const Recipe& recipe) {
  if (recipe.dataset.width != recipe.dataset.height)
    throw Error(recipe.file, "dataset: the ShapesWorld judges are trained on square images");
  return recipe.dataset.width;
}

// Rendered images [B,3,H,W] and their labels for full captions of a split, seeded.
struct Rendered {
  torch::Tensor images, labels;
};
Rendered render_split(shapes::Split split, int64_t count, int64_t size, uint64_t seed, int64_t classes) {
  const auto captions = shapes::split_captions(split);
  std::mt19937_64 rng(seed);
  std::vector<torch::Tensor> images, labels;
  std::vector<std::string> texts;
  for (int64_t i = 0; i < count; ++i) {
    const auto& c = captions[rng() % captions.size()];
    const auto jitter = shapes::random_jitter(rng);
    images.push_back(image_tensor(shapes::render(c, static_cast<int>(size), static_cast<int>(size), jitter)));
    labels.push_back(label_map(c, static_cast<int>(size), static_cast<int>(size), jitter));
    texts.push_back(shapes::caption_text(c));
  }
  return {torch::stack(images), segmenter_labels(classes, torch::stack(labels), texts)};
}

class SegmenterObjective : public Objective {
 public:
  explicit SegmenterObjective(const Recipe& recipe) : recipe_(recipe), realism_(recipe) {
    SegmenterConfig c;
    c.resolution = square_resolution(recipe);
    if (!recipe.judge_model.channels.empty()) c.channels = recipe.judge_model.channels;
    c.classes = recipe.judge_model.colour ? kColourLabelClasses : kLabelClasses;
    torch::manual_seed(recipe.seed);
    model_ = Segmenter(c);
  }
  NamedTensors trainable() override { return named_parameters(*model_); }

  torch::Tensor loss(const Batch& batch, at::Generator& gen, Metrics& metrics) override {
    const auto pick = torch::rand({batch.images.size(0)}, gen);
    const auto images = realism_.apply(batch.images, pick, gen);
    const auto logits = model_->forward(images);
    const auto labels = segmenter_labels(model_->config.classes, batch.labels, batch.captions);
    metrics["fg_iou"] = foreground_iou(logits.detach(), labels);
    return torch::nn::functional::cross_entropy(logits, labels);
  }

  void sample(const std::string& png, Metrics& metrics) override {
    torch::NoGradGuard no_grad;
    const auto held_out = evaluate();
    metrics["held_out_iou"] = held_out.first;
    metrics["held_out_pixel_accuracy"] = held_out.second;
    // Renders and what the model sees in them: predicted labels coloured by shape.
    const auto r = render_split(shapes::Split::eval, 8, model_->config.resolution, recipe_.seed + 7, model_->config.classes);
    auto predicted = model_->forward(r.images).argmax(1);
    if (model_->config.classes == kColourLabelClasses) predicted = torch::where(predicted > 0, 1 + (predicted - 1).div(static_cast<int64_t>(shapes::kColours.size()), "floor"), predicted);
    const auto palette = torch::tensor({-1.f, -1.f, -1.f, 1.f, -1.f, -1.f, -1.f, 1.f, -1.f, -1.f, -1.f, 1.f}).view({4, 3});
    const auto painted = palette.index_select(0, predicted.flatten()).view({8, predicted.size(1), predicted.size(2), 3});
    write_png(png, make_grid(torch::cat({r.images, painted.permute({0, 3, 1, 2})}), 8), {}, true);
  }

  void write_final(const std::string& folder) override {
    torch::NoGradGuard no_grad;
    const auto held_out = evaluate();
    save_segmenter(folder, model_, {{"held_out_iou", held_out.first}, {"held_out_pixel_accuracy", held_out.second}});
    std::fprintf(stderr, "segmenter: held-out foreground IoU %.4f, pixel accuracy %.4f\n", held_out.first, held_out.second);
  }

 private:
  // Foreground IoU and pixel accuracy on evaluation-split renders, processed as in training.
  std::pair<double, double> evaluate() {
    const auto r = render_split(shapes::Split::eval, 256, model_->config.resolution, recipe_.seed + 11, model_->config.classes);
    auto gen = at::detail::createCPUGenerator(recipe_.seed + 12);
    const auto images = realism_.apply(r.images, torch::rand({r.images.size(0)}, gen), gen);
    const auto logits = model_->forward(images);
    const double accuracy = (logits.argmax(1) == r.labels).to(torch::kDouble).mean().item<double>();
    return {foreground_iou(logits, r.labels), accuracy};
  }

  const Recipe& recipe_;
  ImageRealism realism_;
  Segmenter model_{nullptr};
};

class RewardObjective : public Objective {
 public:
  explicit RewardObjective(const Recipe& recipe)
      : recipe_(recipe), realism_(recipe), dimension_(parse_dimension(recipe.judge_model.dimension, recipe.file)) {
    ShapesRewardConfig c;
    c.dimension = recipe.judge_model.dimension;
    c.resolution = square_resolution(recipe);
    if (!recipe.judge_model.channels.empty()) c.channels = recipe.judge_model.channels;
    c.hidden = recipe.judge_model.hidden;
    torch::manual_seed(recipe.seed);
    model_ = ShapesReward(c);
  }
  NamedTensors trainable() override { return named_parameters(*model_); }

  torch::Tensor loss(const Batch& batch, at::Generator& gen, Metrics& metrics) override {
    const auto seed = static_cast<uint64_t>(torch::randint(1LL << 62, {1}, gen).item<int64_t>());
    const auto pairs = make_pairs(false, batch.images.size(0), seed, gen);
    const auto preferred = model_->forward(pairs.preferred, pairs.features);
    const auto rejected = model_->forward(pairs.rejected, pairs.features);
    metrics["pair_accuracy"] = (preferred > rejected).to(torch::kDouble).mean().item<double>();
    return bradley_terry_loss(preferred, rejected);
  }

  void sample(const std::string& png, Metrics& metrics) override {
    (void)png;
    metrics["held_out_pair_accuracy"] = held_out().accuracy;
  }

  void write_final(const std::string& folder) override {
    const auto h = held_out();
    save_reward(folder, model_,
                {{"held_out_pair_accuracy", h.accuracy}, {"held_out_pairs", recipe_.judge_model.eval_pairs},
                 {"preferred_mean", h.preferred_mean}, {"rejected_mean", h.rejected_mean}});
    std::fprintf(stderr, "reward model (%s): held-out pairwise accuracy %.4f over %lld pairs; mean reward %.3f preferred, %.3f rejected\n",
                 dimension_name(dimension_), h.accuracy, static_cast<long long>(recipe_.judge_model.eval_pairs),
                 h.preferred_mean, h.rejected_mean);
  }

 private:
  struct Pairs {
    torch::Tensor preferred, rejected, features;
  };
  // A reward model is a judge, not the generator: it may read every caption
  // word, so it trains on all captions but the triples SHAPES.md's v2 rule
  // holds out ((colour + shape + position) % 5 == 0: unseen combinations of
  // seen words), on which its held-out accuracy is measured.
  static std::vector<shapes::Caption> judge_captions(bool held_out) {
    std::vector<shapes::Caption> out;
    for (const auto& c : shapes::all_captions()) {
      const int sum = shapes::index_of(c.colour) + shapes::index_of(c.shape) + shapes::index_of(*c.position);
      if ((sum % 5 == 0) == held_out) out.push_back(c);
    }
    return out;
  }

  Pairs make_pairs(bool held_out, int64_t count, uint64_t seed, at::Generator& gen) const {
    const auto captions = judge_captions(held_out);
    std::mt19937_64 rng(seed);
    std::vector<torch::Tensor> good, bad, features;
    const int size = static_cast<int>(model_->config.resolution);
    for (int64_t i = 0; i < count; ++i) {
      const auto pair = preference_pair(captions[rng() % captions.size()], dimension_, size, size, rng);
      good.push_back(image_tensor(pair.preferred));
      bad.push_back(image_tensor(pair.rejected));
      features.push_back(caption_features(pair.caption));
    }
    // One round-trip decision per pair, so a pair differs only in its dimension.
    const auto pick = torch::rand({count}, gen);
    return {realism_.apply(torch::stack(good), pick, gen), realism_.apply(torch::stack(bad), pick, gen),
            torch::stack(features)};
  }

  // Pairs of held-out captions (never trained on), with a fixed seed:
  // how often the preferred image wins, and the mean rewards of both sides
  // (feedback's hinge threshold defaults to the preferred mean).
  struct HeldOut {
    double accuracy = 0, preferred_mean = 0, rejected_mean = 0;
  };
  HeldOut held_out() const {
    torch::NoGradGuard no_grad;
    const int64_t n = recipe_.judge_model.eval_pairs;
    HeldOut h;
    if (n == 0) return h;
    auto gen = at::detail::createCPUGenerator(recipe_.seed + 21);
    for (int64_t start = 0; start < n; start += 128) {
      const auto pairs = make_pairs(true, std::min<int64_t>(128, n - start), recipe_.seed + 22 + start, gen);
      auto model = model_;  // a non-const handle on the shared module
      const auto good = model->forward(pairs.preferred, pairs.features), bad = model->forward(pairs.rejected, pairs.features);
      h.accuracy += (good > bad).sum().item<double>();
      h.preferred_mean += good.sum().item<double>();
      h.rejected_mean += bad.sum().item<double>();
    }
    h.accuracy /= static_cast<double>(n);
    h.preferred_mean /= static_cast<double>(n);
    h.rejected_mean /= static_cast<double>(n);
    return h;
  }

  const Recipe& recipe_;
  ImageRealism realism_;
  RewardDimension dimension_;
  ShapesReward model_{nullptr};
};

}  // namespace

std::unique_ptr<Objective> make_segmenter_objective(const Recipe& recipe) {
  return std::make_unique<SegmenterObjective>(recipe);
}
std::unique_ptr<Objective> make_reward_objective(const Recipe& recipe) {
  return std::make_unique<RewardObjective>(recipe);
}

}  // namespace lumen::train
