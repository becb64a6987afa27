#include "shapes_supervision.h"

#include <algorithm>
#include <cmath>

#include "error.h"

namespace lumen::train {
namespace {

double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// Another value of an enum with `count` values than `current`, uniformly.
template <class Enum>
Enum other_than(Enum current, size_t count, std::mt19937_64& rng) {
  const auto shift = 1 + rng() % (count - 1);
  return static_cast<Enum>((static_cast<size_t>(current) + shift) % count);
}

// Moves every exact-background pixel (coverage 0) by `offset`, or by
// per-pixel noise: a background that is not the flat colour asked for.
void spoil_background(RgbImage& image, const shapes::Rgb bg, std::mt19937_64& rng) {
  const bool noisy = rng() % 2 == 0;
  const double magnitude = 15 + 45 * uniform01(rng);
  double offset[3];
  for (double& o : offset) o = (2 * uniform01(rng) - 1) * magnitude;
  const uint8_t bgc[3] = {bg.r, bg.g, bg.b};
  for (size_t p = 0; p + 2 < image.pixels.size(); p += 3) {
    if (image.pixels[p] != bgc[0] || image.pixels[p + 1] != bgc[1] || image.pixels[p + 2] != bgc[2]) continue;
    for (int c = 0; c < 3; ++c) {
      const double d = noisy ? (2 * uniform01(rng) - 1) * magnitude : offset[c];
      image.pixels[p + c] = static_cast<uint8_t>(std::clamp(std::lround(bgc[c] + d), 0L, 255L));
    }
  }
}

// One row per caption, each parsed as ShapesWorld's grammar; `why` says what
// a caption of another kind would have lacked.
template <class PerCaption>
torch::Tensor stack_per_caption(const std::vector<std::string>& captions, const char* why, PerCaption per_caption) {
  std::vector<torch::Tensor> rows;
  for (const auto& text : captions) {
    const auto c = shapes::parse_caption(text);
    if (!c) throw Error("caption '" + text + "'", std::string("is not a ShapesWorld caption (") + why + ")");
    rows.push_back(per_caption(*c));
  }
  return torch::stack(rows);
}

}  // namespace

torch::Tensor label_map(const shapes::Caption& drawn, int width, int height, shapes::Jitter jitter) {
  const std::vector<float> coverage = shapes::render_coverage(drawn, width, height, jitter);
  auto labels = torch::zeros({height, width}, torch::kLong);
  auto* out = labels.data_ptr<int64_t>();
  const int64_t cls = 1 + shapes::index_of(drawn.shape);
  for (size_t i = 0; i < coverage.size(); ++i)
    if (coverage[i] >= 0.5f) out[i] = cls;
  return labels;
}

std::vector<shapes::Caption> completions(const shapes::Caption& caption) {
  std::vector<shapes::Caption> out;
  for (size_t s = 0; s < shapes::kSizes.size(); ++s) {
    if (caption.size && shapes::index_of(*caption.size) != static_cast<int>(s)) continue;
    for (size_t p = 0; p < shapes::kPositions.size(); ++p) {
      if (caption.position && shapes::index_of(*caption.position) != static_cast<int>(p)) continue;
      shapes::Caption full = caption;
      full.size = static_cast<shapes::Size>(s);
      full.position = static_cast<shapes::Position>(p);
      out.push_back(full);
    }
  }
  return out;
}

torch::Tensor with_colours(const torch::Tensor& shape_labels, const std::vector<std::string>& captions) {
  std::vector<int64_t> colours;
  for (const auto& text : captions) {
    const auto c = shapes::parse_caption(text);
    if (!c) throw Error("caption '" + text + "'", "is not a ShapesWorld caption");
    colours.push_back(static_cast<int64_t>(shapes::index_of(c->colour)));
  }
  const auto colour = torch::tensor(colours, torch::kLong).view({-1, 1, 1});
  const auto n = static_cast<int64_t>(shapes::kColours.size());
  return torch::where(shape_labels > 0, 1 + (shape_labels - 1) * n + colour, torch::zeros_like(shape_labels));
}

torch::Tensor segmenter_labels(int64_t classes, const torch::Tensor& shape_labels, const std::vector<std::string>& captions) {
  return classes == kColourLabelClasses ? with_colours(shape_labels, captions) : shape_labels;
}

torch::Tensor caption_features(const shapes::Caption& c) {
  auto f = torch::zeros({kCaptionFeatures});
  auto* p = f.data_ptr<float>();
  p[shapes::index_of(c.colour)] = 1;
  p[6 + shapes::index_of(c.shape)] = 1;
  if (c.size) p[9 + shapes::index_of(*c.size)] = 1;
  if (c.position) p[11 + shapes::index_of(*c.position)] = 1;
  p[16 + shapes::index_of(c.background)] = 1;
  return f;
}

torch::Tensor caption_features(const std::vector<std::string>& captions) {
  return stack_per_caption(captions, "the ShapesWorld rewards read only those",
                           [](const shapes::Caption& c) { return caption_features(c); });
}

torch::Tensor background_colour(const shapes::Caption& caption) {
  const auto bg = shapes::kBackgrounds[shapes::index_of(caption.background)].rgb;
  return torch::tensor({bg.r / 127.5f - 1, bg.g / 127.5f - 1, bg.b / 127.5f - 1});
}

torch::Tensor background_colours(const std::vector<std::string>& captions) {
  return stack_per_caption(captions, "its background colour is unknown",
                           [](const shapes::Caption& c) { return background_colour(c); });
}

const char* dimension_name(RewardDimension d) {
  switch (d) {
    case RewardDimension::colour: return "colour";
    case RewardDimension::shape: return "shape";
    case RewardDimension::layout: return "layout";
    case RewardDimension::background: return "background";
    case RewardDimension::global: return "global";
  }
  return "?";
}

RewardDimension parse_dimension(const std::string& name, const std::string& where) {
  for (auto d : {RewardDimension::colour, RewardDimension::shape, RewardDimension::layout, RewardDimension::background,
                 RewardDimension::global})
    if (name == dimension_name(d)) return d;
  throw Error(where, "unknown reward dimension '" + name + "' (colour, shape, layout, background, global)");
}

PreferencePair preference_pair(const shapes::Caption& caption, RewardDimension dimension, int width, int height,
                               std::mt19937_64& rng) {
  using namespace shapes;
  PreferencePair pair;
  pair.caption = caption;
  const Jitter jitter = random_jitter(rng);
  pair.preferred = render(caption, width, height, jitter);
  if (dimension == RewardDimension::global)
    dimension = static_cast<RewardDimension>(rng() % 4);
  Caption wrong = caption;
  bool spoil = false;
  switch (dimension) {
    case RewardDimension::colour: wrong.colour = other_than(caption.colour, kColours.size(), rng); break;
    case RewardDimension::shape: wrong.shape = other_than(caption.shape, kShapes.size(), rng); break;
    case RewardDimension::layout: {
      const auto which = rng() % 3;  // position, size, or both
      if (which != 1) wrong.position = other_than(*caption.position, kPositions.size(), rng);
      if (which != 0) wrong.size = other_than(*caption.size, kSizes.size(), rng);
      break;
    }
    case RewardDimension::background:
      if (rng() % 3 == 0) wrong.background = other_than(caption.background, kBackgrounds.size(), rng);
      else spoil = true;
      break;
    case RewardDimension::global: break;
  }
  pair.rejected = render(wrong, width, height, jitter);
  if (spoil) spoil_background(pair.rejected, kBackgrounds[index_of(caption.background)].rgb, rng);
  return pair;
}

torch::Tensor corrupt(const torch::Tensor& images, double strength, at::Generator& gen) {
  if (strength <= 0) return images;
  const int64_t b = images.size(0);
  // Per image: Gaussian noise, a 3x3 box blur mixed in, and a contrast change.
  const auto noise_std = torch::rand({b, 1, 1, 1}, gen) * (0.15 * strength);
  const auto blur_mix = torch::rand({b, 1, 1, 1}, gen) * strength;
  const auto contrast = 1 + (torch::rand({b, 1, 1, 1}, gen) * 2 - 1) * (0.2 * strength);
  auto blurred = torch::avg_pool2d(torch::replication_pad2d(images, {1, 1, 1, 1}), 3, 1);
  auto x = images * (1 - blur_mix) + blurred * blur_mix;
  x = x * contrast + torch::randn(x.sizes(), gen) * noise_std;
  return x.clamp(-1, 1);
}

}  // namespace lumen::train
