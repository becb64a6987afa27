// ShapesWorld v1 (docs: /work/shared/SHAPES.md): the captioned, procedurally
// rendered image world of the default model. Tables, caption grammar, splits
// and the renderer. Torch-free.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "io/image_io.h"

namespace lumen::shapes {

struct Rgb {
  uint8_t r, g, b;
};

// Every enum's values are in table order: the value is the table index.
enum class Background { black, white, gray };
enum class Colour { red, green, blue, yellow, purple, orange };
enum class Shape { circle, square, triangle };
enum class Size { small, large };
enum class Position { left, right, top, bottom, center };

struct NamedRgb {
  std::string_view name;
  Rgb rgb;
};
struct SizeSpec {
  std::string_view name;
  double fraction;  // of min(W, H)
};
struct PositionSpec {
  std::string_view phrase;
  double cx, cy;  // centre, as fractions of W and H
};

inline constexpr std::array<NamedRgb, 3> kBackgrounds{{
    {"black", {0, 0, 0}},
    {"white", {255, 255, 255}},
    {"gray", {128, 128, 128}},
}};
inline constexpr std::array<NamedRgb, 6> kColours{{
    {"red", {220, 40, 40}},
    {"green", {40, 180, 60}},
    {"blue", {40, 80, 220}},
    {"yellow", {240, 210, 40}},
    {"purple", {150, 60, 200}},
    {"orange", {245, 140, 30}},
}};
inline constexpr std::array<std::string_view, 3> kShapes{"circle", "square", "triangle"};
inline constexpr std::array<SizeSpec, 2> kSizes{{{"small", 0.25}, {"large", 0.45}}};
inline constexpr std::array<PositionSpec, 5> kPositions{{
    {"at the left", 0.28, 0.50},
    {"at the right", 0.72, 0.50},
    {"at the top", 0.50, 0.28},
    {"at the bottom", 0.50, 0.72},
    {"in the center", 0.50, 0.50},
}};

// Training-data jitter bound on the centre, as a fraction of W (x) and H (y).
inline constexpr double kMaxJitter = 0.04;

template <class Enum>
constexpr int index_of(Enum value) {
  return static_cast<int>(value);
}

// A caption; size and position may be dropped (training captions only).
struct Caption {
  std::optional<Size> size;
  Colour colour = Colour::red;
  Shape shape = Shape::circle;
  std::optional<Position> position;
  Background background = Background::black;

  bool is_full() const { return size && position; }
  bool operator==(const Caption& o) const {
    return size == o.size && colour == o.colour && shape == o.shape && position == o.position &&
           background == o.background;
  }
  bool operator!=(const Caption& o) const { return !(*this == o); }
};

// "a {size} {colour} {shape} {position phrase} on a {background} background";
// a dropped size or position leaves out its word or phrase.
std::string caption_text(const Caption& caption);
// The inverse of caption_text, for full and dropped forms; nullopt if not a caption.
std::optional<Caption> parse_caption(const std::string& text);

// Index of the (colour, shape, position) triple, colour-major, then shape, then
// position, in [0, 90). Throws lumen::Error if the position was dropped.
int triple_index(const Caption& caption);

// The 540 full captions, ordered by triple index, then size, then background,
// so that all_captions()[k] has triple index k / 6.
const std::vector<Caption>& all_captions();

// eval: i % 5 == 0 (the `unseen` split, never shown in training as full captions);
// seen: i % 5 == 1 (108 training captions); train: i % 5 != 0 (all 432 training
// captions, seen included).
enum class Split { eval, seen, train };
bool in_split(const Caption& full_caption, Split split);
std::vector<Caption> split_captions(Split split);  // in all_captions() order

// Offset of the shape's centre, as fractions of W and H.
struct Jitter {
  double dx = 0, dy = 0;
};
// Uniform in [-kMaxJitter, kMaxJitter) on each axis. Computed from the raw
// 64-bit draws (not std::uniform_real_distribution, whose output differs
// between standard libraries), so a seed gives the same images everywhere.
Jitter random_jitter(std::mt19937_64& rng);
// A dropped size or position replaced by a uniformly random one, as a training
// image for a partial caption is drawn.
Caption fill_dropped(const Caption& caption, std::mt19937_64& rng);

// The flat background with one flat shape, anti-aliased by 4x4 supersampling.
// Pixel (x, y) covers [x, x+1) x [y, y+1); the shape's centre is at
// ((cx + jitter.dx)·W, (cy + jitter.dy)·H). Throws lumen::Error for a caption
// that is not full or a non-positive size.
RgbImage render(const Caption& caption, int width, int height, Jitter jitter = {});
// The shape's coverage of each pixel, row-major H×W in [0, 1]: the same 4x4
// supersampling `render` blends with (render is built on it). Same errors.
std::vector<float> render_coverage(const Caption& caption, int width, int height, Jitter jitter = {});

}  // namespace lumen::shapes
