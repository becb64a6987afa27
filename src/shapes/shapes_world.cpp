#include "shapes/shapes_world.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "error.h"

namespace lumen::shapes {
namespace {

// Every caption, full and dropped forms (3 sizes-or-none x 6 x 3 x 6 positions-or-none x 3).
std::vector<Caption> every_caption_form() {
  std::vector<Caption> out;
  for (int size = -1; size < static_cast<int>(kSizes.size()); ++size)
    for (int colour = 0; colour < static_cast<int>(kColours.size()); ++colour)
      for (int shape = 0; shape < static_cast<int>(kShapes.size()); ++shape)
        for (int position = -1; position < static_cast<int>(kPositions.size()); ++position)
          for (int background = 0; background < static_cast<int>(kBackgrounds.size()); ++background) {
            Caption c;
            if (size >= 0) c.size = static_cast<Size>(size);
            c.colour = static_cast<Colour>(colour);
            c.shape = static_cast<Shape>(shape);
            if (position >= 0) c.position = static_cast<Position>(position);
            c.background = static_cast<Background>(background);
            out.push_back(c);
          }
  return out;
}

// Uniform in [0, 1) from the top 53 bits of one draw.
double unit_interval(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// Whether the continuous point (px, py) lies inside the shape of side/diameter s centred on (cx, cy).
bool inside(Shape shape, double px, double py, double cx, double cy, double s) {
  const double half = s / 2, dx = px - cx, dy = py - cy;
  switch (shape) {
    case Shape::circle: return dx * dx + dy * dy <= half * half;
    case Shape::square: return std::abs(dx) <= half && std::abs(dy) <= half;
    case Shape::triangle: {
      // Apex at the top of the bounding box; the half-width grows to s/2 at the base.
      const double depth = dy + half;
      return depth >= 0 && depth <= s && std::abs(dx) <= depth / 2;
    }
  }
  return false;
}

uint8_t blend(uint8_t background, uint8_t foreground, double coverage) {
  return static_cast<uint8_t>(std::lround(background + (foreground - background) * coverage));
}

}  // namespace

std::string caption_text(const Caption& c) {
  std::string text = "a ";
  if (c.size) text += std::string(kSizes[index_of(*c.size)].name) + " ";
  text += std::string(kColours[index_of(c.colour)].name) + " " + std::string(kShapes[index_of(c.shape)]);
  if (c.position) text += " " + std::string(kPositions[index_of(*c.position)].phrase);
  return text + " on a " + std::string(kBackgrounds[index_of(c.background)].name) + " background";
}

std::optional<Caption> parse_caption(const std::string& text) {
  // The grammar is finite (972 forms), so the exact inverse is a lookup.
  static const std::map<std::string, Caption> by_text = [] {
    std::map<std::string, Caption> m;
    for (const Caption& c : every_caption_form()) m.emplace(caption_text(c), c);
    return m;
  }();
  const auto it = by_text.find(text);
  if (it == by_text.end()) return std::nullopt;
  return it->second;
}

int triple_index(const Caption& c) {
  if (!c.position) throw Error(caption_text(c), "has no position, so no triple index");
  return (index_of(c.colour) * static_cast<int>(kShapes.size()) + index_of(c.shape)) *
             static_cast<int>(kPositions.size()) +
         index_of(*c.position);
}

const std::vector<Caption>& all_captions() {
  static const std::vector<Caption> captions = [] {
    std::vector<Caption> full;
    for (const Caption& c : every_caption_form())
      if (c.is_full()) full.push_back(c);
    std::stable_sort(full.begin(), full.end(), [](const Caption& a, const Caption& b) {
      if (triple_index(a) != triple_index(b)) return triple_index(a) < triple_index(b);
      if (*a.size != *b.size) return *a.size < *b.size;
      return a.background < b.background;
    });
    return full;
  }();
  return captions;
}

bool in_split(const Caption& full_caption, Split split) {
  const int remainder = triple_index(full_caption) % 5;
  switch (split) {
    case Split::eval: return remainder == 0;
    case Split::seen: return remainder == 1;
    case Split::train: return remainder != 0;
  }
  return false;
}

std::vector<Caption> split_captions(Split split) {
  std::vector<Caption> out;
  for (const Caption& c : all_captions())
    if (in_split(c, split)) out.push_back(c);
  return out;
}

Jitter random_jitter(std::mt19937_64& rng) {
  const double dx = (2 * unit_interval(rng) - 1) * kMaxJitter;
  const double dy = (2 * unit_interval(rng) - 1) * kMaxJitter;
  return {dx, dy};
}

Caption fill_dropped(const Caption& caption, std::mt19937_64& rng) {
  Caption full = caption;
  if (!full.size) full.size = static_cast<Size>(rng() % kSizes.size());
  if (!full.position) full.position = static_cast<Position>(rng() % kPositions.size());
  return full;
}

std::vector<float> render_coverage(const Caption& caption, int width, int height, Jitter jitter) {
  if (!caption.is_full()) throw Error(caption_text(caption), "only a full caption can be rendered");
  if (width <= 0 || height <= 0)
    throw Error("render", "size " + std::to_string(width) + "x" + std::to_string(height) + " is not positive");
  const PositionSpec& where = kPositions[index_of(*caption.position)];
  const double s = kSizes[index_of(*caption.size)].fraction * std::min(width, height);
  const double cx = (where.cx + jitter.dx) * width, cy = (where.cy + jitter.dy) * height;

  constexpr int kSamples = 4;  // per axis
  std::vector<float> coverage(static_cast<size_t>(width) * height);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      int hits = 0;
      for (int j = 0; j < kSamples; ++j)
        for (int i = 0; i < kSamples; ++i)
          hits += inside(caption.shape, x + (i + 0.5) / kSamples, y + (j + 0.5) / kSamples, cx, cy, s);
      // hits/16 is exact in float, so render blends exactly as with a double.
      coverage[static_cast<size_t>(y) * width + x] = static_cast<float>(hits) / (kSamples * kSamples);
    }
  return coverage;
}

RgbImage render(const Caption& caption, int width, int height, Jitter jitter) {
  const std::vector<float> coverage = render_coverage(caption, width, height, jitter);
  const Rgb bg = kBackgrounds[index_of(caption.background)].rgb;
  const Rgb fg = kColours[index_of(caption.colour)].rgb;
  RgbImage image{width, height, std::vector<uint8_t>(coverage.size() * 3)};
  for (size_t i = 0; i < coverage.size(); ++i) {
    uint8_t* p = &image.pixels[i * 3];
    p[0] = blend(bg.r, fg.r, coverage[i]);
    p[1] = blend(bg.g, fg.g, coverage[i]);
    p[2] = blend(bg.b, fg.b, coverage[i]);
  }
  return image;
}

}  // namespace lumen::shapes
