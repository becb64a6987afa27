#include "shapes/judge.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "error.h"

namespace lumen::shapes {
namespace {

struct Mean3 {
  double r = 0, g = 0, b = 0;
};

double distance(const Mean3& a, Rgb b) { return std::hypot(a.r - b.r, a.g - b.g, a.b - b.b); }

Mean3 pixel_at(const RgbImage& image, int index) {
  const uint8_t* p = &image.pixels[static_cast<size_t>(index) * 3];
  return {static_cast<double>(p[0]), static_cast<double>(p[1]), static_cast<double>(p[2])};
}

// Mean colour of the pixels whose indices are listed.
Mean3 mean_rgb(const RgbImage& image, const std::vector<int>& indices) {
  Mean3 sum;
  for (int i : indices) {
    const Mean3 p = pixel_at(image, i);
    sum.r += p.r, sum.g += p.g, sum.b += p.b;
  }
  const double n = static_cast<double>(indices.size());
  return {sum.r / n, sum.g / n, sum.b / n};
}

// The 8-connected components of `mask`, each as its pixel indices.
std::vector<std::vector<int>> components(const std::vector<bool>& mask, int width, int height) {
  std::vector<std::vector<int>> out;
  std::vector<bool> seen(mask.size(), false);
  for (int start = 0; start < static_cast<int>(mask.size()); ++start) {
    if (!mask[start] || seen[start]) continue;
    std::vector<int> pixels{start};
    seen[start] = true;
    for (size_t next = 0; next < pixels.size(); ++next) {
      const int x = pixels[next] % width, y = pixels[next] / width;
      for (int ny = std::max(y - 1, 0); ny <= std::min(y + 1, height - 1); ++ny)
        for (int nx = std::max(x - 1, 0); nx <= std::min(x + 1, width - 1); ++nx) {
          const int n = ny * width + nx;
          if (mask[n] && !seen[n]) seen[n] = true, pixels.push_back(n);
        }
    }
    out.push_back(std::move(pixels));
  }
  return out;
}

// `mask` grown by `radius` pixels in every direction (a square structuring element).
std::vector<bool> dilate(const std::vector<bool>& mask, int width, int height, int radius) {
  std::vector<bool> rows(mask.size(), false), out(mask.size(), false);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      if (mask[y * width + x])
        for (int nx = std::max(x - radius, 0); nx <= std::min(x + radius, width - 1); ++nx) rows[y * width + nx] = true;
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      if (rows[y * width + x])
        for (int ny = std::max(y - radius, 0); ny <= std::min(y + radius, height - 1); ++ny) out[ny * width + x] = true;
  return out;
}

// The median, taking the mean of the two middle values for an even count.
double median(std::vector<double> values) {
  const size_t mid = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + mid, values.end());
  const double upper = values[mid];
  if (values.size() % 2 == 1) return upper;
  return (upper + *std::max_element(values.begin(), values.begin() + mid)) / 2;
}

Colour nearest_colour(const Mean3& rgb) {
  int best = 0;
  for (int c = 1; c < static_cast<int>(kColours.size()); ++c)
    if (distance(rgb, kColours[c].rgb) < distance(rgb, kColours[best].rgb)) best = c;
  return static_cast<Colour>(best);
}

Shape shape_of_fill(double fill_ratio) {
  if (fill_ratio >= kSquareFill) return Shape::square;
  if (fill_ratio >= kCircleFill) return Shape::circle;
  return Shape::triangle;
}

bool in_region(Position position, double cx, double cy) {
  const auto central = [](double v) { return v >= 0.40 && v <= 0.60; };
  switch (position) {
    case Position::left: return cx < 0.40;
    case Position::right: return cx > 0.60;
    case Position::top: return cy < 0.40;
    case Position::bottom: return cy > 0.60;
    case Position::center: return central(cx) && central(cy);
  }
  return false;
}

// Colour, shape, position and size of one object, measured and compared with the asked caption.
void judge_object(const RgbImage& image, const std::vector<int>& pixels, const std::vector<double>& bg_distance,
                  Judgement& j) {
  std::vector<double> distances;
  int min_x = image.width, max_x = -1, min_y = image.height, max_y = -1;
  double sum_x = 0, sum_y = 0;
  for (int i : pixels) {
    const int x = i % image.width, y = i / image.width;
    distances.push_back(bg_distance[i]);
    min_x = std::min(min_x, x), max_x = std::max(max_x, x), min_y = std::min(min_y, y), max_y = std::max(max_y, y);
    sum_x += x, sum_y += y;
  }
  // The core: anti-aliased edge pixels are blends with the background, so leave them out.
  const double core_threshold = median(distances);
  std::vector<int> core;
  for (int i : pixels)
    if (bg_distance[i] >= core_threshold) core.push_back(i);
  j.nearest_colour = nearest_colour(mean_rgb(image, core));
  j.colour = j.nearest_colour == j.asked.colour;

  const double area = static_cast<double>(pixels.size());
  const double box_area = static_cast<double>(max_x - min_x + 1) * (max_y - min_y + 1);
  j.fill_ratio = area / box_area;
  j.shape = shape_of_fill(j.fill_ratio) == j.asked.shape;

  j.centroid_x = (sum_x / area + 0.5) / image.width;
  j.centroid_y = (sum_y / area + 0.5) / image.height;
  j.position = in_region(*j.asked.position, j.centroid_x, j.centroid_y);

  j.size_ratio = std::sqrt(box_area) / std::min(image.width, image.height);
  const double asked = kSizes[index_of(*j.asked.size)].fraction;
  const double other = kSizes[1 - index_of(*j.asked.size)].fraction;
  j.size = std::abs(j.size_ratio - asked) < std::abs(j.size_ratio - other);
}

// The contract's foreground mask (step 1): distance to the background above kForegroundDistance.
std::vector<bool> foreground(const RgbImage& image, Rgb bg) {
  std::vector<bool> mask(static_cast<size_t>(image.width) * image.height);
  for (size_t i = 0; i < mask.size(); ++i)
    mask[i] = distance(pixel_at(image, static_cast<int>(i)), bg) > kForegroundDistance;
  return mask;
}

// Intersection over union of `mask` and the foreground of the unjittered render.
// The ideal goes through the same distance rule rather than coverage >= 0.5, so
// a perfect render scores exactly 1: the rule's edge cut-off is coverage > 60/|fg - bg|
// (0.26 for red on black, 0.44 for blue on gray), not 0.5.
double mask_iou(const std::vector<bool>& mask, const Caption& asked, int width, int height) {
  const Rgb bg = kBackgrounds[index_of(asked.background)].rgb;
  const std::vector<bool> ideal = foreground(render(asked, width, height), bg);
  size_t both = 0, either = 0;
  for (size_t i = 0; i < ideal.size(); ++i) {
    both += mask[i] && ideal[i];
    either += mask[i] || ideal[i];
  }
  return either == 0 ? 1.0 : static_cast<double>(both) / static_cast<double>(either);
}

double mean_luma(const RgbImage& image) {
  double sum = 0;
  for (size_t i = 0; i + 2 < image.pixels.size(); i += 3)
    sum += 0.299 * image.pixels[i] + 0.587 * image.pixels[i + 1] + 0.114 * image.pixels[i + 2];
  return sum / (static_cast<double>(image.width) * image.height);
}

void add_to_rates(JudgeSummary::Rates& rates, const Judgement& j) {
  ++rates.images;
  rates.single += j.single, rates.colour += j.colour, rates.shape += j.shape, rates.position += j.position;
  rates.size += j.size, rates.background += j.background, rates.correct += j.correct;
  rates.mask_iou += j.mask_iou;
}

void counts_to_rates(JudgeSummary::Rates& rates) {
  if (rates.images == 0) return;
  const double n = rates.images;
  for (double* v : {&rates.single, &rates.colour, &rates.shape, &rates.position, &rates.size, &rates.background,
                    &rates.correct, &rates.mask_iou})
    *v /= n;
}

}  // namespace

Judgement judge(const RgbImage& image, const Caption& asked) {
  if (!asked.is_full()) throw Error(caption_text(asked), "only a full caption can be judged");
  if (image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != static_cast<size_t>(image.width) * image.height * 3)
    throw Error("judge", "image buffer does not match its size");
  Judgement j;
  j.asked = asked;
  const Rgb bg = kBackgrounds[index_of(asked.background)].rgb;
  const int pixel_count = image.width * image.height;

  std::vector<double> bg_distance(pixel_count);
  std::vector<bool> mask(pixel_count);
  for (int i = 0; i < pixel_count; ++i) {
    bg_distance[i] = distance(pixel_at(image, i), bg);
    mask[i] = bg_distance[i] > kForegroundDistance;
  }

  std::vector<std::vector<int>> objects;
  for (auto& c : components(mask, image.width, image.height))
    if (c.size() >= kMinObjectFraction * pixel_count) objects.push_back(std::move(c));
  j.objects = static_cast<int>(objects.size());
  j.single = j.objects == 1;
  if (!objects.empty()) {
    const auto largest = std::max_element(objects.begin(), objects.end(),
                                          [](const auto& a, const auto& b) { return a.size() < b.size(); });
    judge_object(image, *largest, bg_distance, j);
  }

  const std::vector<bool> near_foreground = dilate(mask, image.width, image.height, kBackgroundDilation);
  std::vector<int> outside;
  for (int i = 0; i < pixel_count; ++i)
    if (!near_foreground[i]) outside.push_back(i);
  j.bg_error = outside.empty() ? std::numeric_limits<double>::infinity() : distance(mean_rgb(image, outside), bg);
  j.background = j.bg_error <= kBackgroundTolerance;

  j.mask_iou = mask_iou(mask, asked, image.width, image.height);
  j.luma = mean_luma(image);
  j.correct = j.single && j.colour && j.shape && j.position && j.size && j.background;
  return j;
}

JudgeSummary summarize(const std::vector<Judgement>& judgements) {
  JudgeSummary s;
  double luma_sum = 0, luma_squares = 0;
  for (const Judgement& j : judgements) {
    add_to_rates(s.all, j);
    if (in_split(j.asked, Split::eval)) add_to_rates(s.eval, j);
    if (in_split(j.asked, Split::seen)) add_to_rates(s.seen, j);
    auto& per = s.per_background[index_of(j.asked.background)];
    ++per.images;
    per.mean_bg_error += j.bg_error;
    per.mean_luma += j.luma;
    luma_sum += j.luma;
    luma_squares += j.luma * j.luma;
  }
  for (auto* rates : {&s.all, &s.eval, &s.seen}) counts_to_rates(*rates);
  for (auto& per : s.per_background)
    if (per.images > 0) per.mean_bg_error /= per.images, per.mean_luma /= per.images;
  if (!judgements.empty()) {
    const double n = static_cast<double>(judgements.size());
    s.luma_mean = luma_sum / n;
    s.luma_spread = std::sqrt(std::max(0.0, luma_squares / n - s.luma_mean * s.luma_mean));
  }
  return s;
}

}  // namespace lumen::shapes
