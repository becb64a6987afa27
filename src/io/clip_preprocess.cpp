#include "io/clip_preprocess.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include "error.h"
#include "io/text_file.h"

namespace lumen {
namespace {

// Pillow's bicubic filter (Keys, a = -0.5), evaluated in Pillow's order.
double bicubic(double x) {
  const double a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's PRECISION_BITS for 8-bit images

struct Taps {
  std::vector<int> first, count;  // per output pixel
  std::vector<int> k;             // fixed-point weights, `stride` per output pixel
  int stride = 0;
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for one axis.
Taps coefficients(int in, int out) {
  const double scale = static_cast<double>(in) / out;
  const double filterscale = std::max(scale, 1.0);
  const double support = 2.0 * filterscale;
  Taps t;
  t.stride = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(out);
  t.count.resize(out);
  t.k.assign(static_cast<size_t>(out) * t.stride, 0);
  std::vector<double> w(t.stride);
  for (int i = 0; i < out; ++i) {
    const double center = (i + 0.5) * scale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in) xmax = in;
    xmax -= xmin;
    double sum = 0;
    for (int j = 0; j < xmax; ++j) {
      w[j] = bicubic((j + xmin - center + 0.5) / filterscale);
      sum += w[j];
    }
    for (int j = 0; j < xmax; ++j) {
      const double v = sum != 0 ? w[j] / sum : w[j];
      const double f = v * (1 << kPrecisionBits);
      t.k[static_cast<size_t>(i) * t.stride + j] = static_cast<int>(v < 0 ? f - 0.5 : f + 0.5);
    }
    t.first[i] = xmin;
    t.count[i] = xmax;
  }
  return t;
}

uint8_t clip8(int v) { return static_cast<uint8_t>(std::clamp(v >> kPrecisionBits, 0, 255)); }

// One pass along x (`horizontal`) or y, into a new 8-bit image.
RgbImage resample(const RgbImage& in, int out_size, bool horizontal) {
  const Taps t = coefficients(horizontal ? in.width : in.height, out_size);
  RgbImage out;
  out.width = horizontal ? out_size : in.width;
  out.height = horizontal ? in.height : out_size;
  out.pixels.resize(static_cast<size_t>(out.width) * out.height * 3);
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x) {
      const int i = horizontal ? x : y;
      const int* k = &t.k[static_cast<size_t>(i) * t.stride];
      for (int c = 0; c < 3; ++c) {
        int ss = 1 << (kPrecisionBits - 1);
        for (int j = 0; j < t.count[i]; ++j) {
          const int sx = horizontal ? t.first[i] + j : x, sy = horizontal ? y : t.first[i] + j;
          ss += in.pixels[(static_cast<size_t>(sy) * in.width + sx) * 3 + c] * k[j];
        }
        out.pixels[(static_cast<size_t>(y) * out.width + x) * 3 + c] = clip8(ss);
      }
    }
  return out;
}

std::array<double, 3> triple(const nlohmann::json& v, const char* key, const std::string& where) {
  if (v.is_number()) return {v.get<double>(), v.get<double>(), v.get<double>()};
  if (!v.is_array() || v.size() != 3 || !v[0].is_number() || !v[1].is_number() || !v[2].is_number())
    throw Error(where, std::string("'") + key + "' must be a number or a list of 3 numbers");
  return {v[0].get<double>(), v[1].get<double>(), v[2].get<double>()};
}

int size_field(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.is_number_integer() || j.get<int64_t>() <= 0 || j.get<int64_t>() > 16384)
    throw Error(where, std::string("'") + key + "' must be a positive integer of sane size");
  return j.get<int>();
}

}  // namespace

ClipImageProcessorConfig parse_clip_processor_config(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) throw Error(where, "is not a JSON object");
  ClipImageProcessorConfig c;
  try {
    c.do_resize = j.value("do_resize", true);
    c.do_center_crop = j.value("do_center_crop", true);
    c.do_rescale = j.value("do_rescale", true);
    c.do_normalize = j.value("do_normalize", true);
    c.rescale_factor = j.value("rescale_factor", c.rescale_factor);
    const int resample = j.value("resample", 3);
    if (resample != 3) throw Error(where, "'resample' = " + std::to_string(resample) + " is not supported (3 = BICUBIC)");
  } catch (const nlohmann::json::exception& e) {
    throw Error(where, std::string("a field has the wrong type: ") + e.what());
  }
  if (j.contains("size")) {
    const auto& s = j["size"];
    if (s.is_object() && s.contains("shortest_edge")) c.shortest_edge = size_field(s["shortest_edge"], "size", where);
    else if (s.is_number_integer()) c.shortest_edge = size_field(s, "size", where);  // older processors
    else throw Error(where, "'size' must be {\"shortest_edge\": N} (other resize modes are not supported)");
  }
  if (j.contains("crop_size")) {
    const auto& s = j["crop_size"];
    if (s.is_object() && s.contains("height") && s.contains("width")) {
      c.crop_height = size_field(s["height"], "crop_size", where);
      c.crop_width = size_field(s["width"], "crop_size", where);
    } else if (s.is_number_integer()) {
      c.crop_height = c.crop_width = size_field(s, "crop_size", where);
    } else {
      throw Error(where, "'crop_size' must be {\"height\": H, \"width\": W}");
    }
  } else {
    c.crop_height = c.crop_width = c.shortest_edge;
  }
  if (j.contains("image_mean")) c.image_mean = triple(j["image_mean"], "image_mean", where);
  if (j.contains("image_std")) c.image_std = triple(j["image_std"], "image_std", where);
  for (double s : c.image_std)
    if (!(s > 0)) throw Error(where, "'image_std' must be positive");
  return c;
}

ClipImageProcessorConfig read_clip_processor_config(const std::string& path) {
  return parse_clip_processor_config(read_json_file(path), path);
}

std::array<int, 2> clip_resize_size(int height, int width, int shortest) {
  const bool portrait = height > width;
  const int s = portrait ? width : height, l = portrait ? height : width;
  // Python's int(S * long / short): float division, then truncation.
  const int long_side = static_cast<int>(static_cast<double>(shortest) * l / s);
  return portrait ? std::array<int, 2>{long_side, shortest} : std::array<int, 2>{shortest, long_side};
}

RgbImage resize_bicubic_pillow(const RgbImage& in, int width, int height) {
  if (in.width <= 0 || in.height <= 0 || width <= 0 || height <= 0)
    throw Error("image resize", "empty image or size");
  if (in.pixels.size() != static_cast<size_t>(in.width) * in.height * 3)
    throw Error("image resize", "pixel buffer does not match the image size");
  // Pillow resamples horizontally first (uint8 result), then vertically; an axis that keeps its size is skipped.
  RgbImage out = width != in.width ? resample(in, width, true) : in;
  return height != in.height ? resample(out, height, false) : out;
}

RgbImage center_crop(const RgbImage& in, int crop_height, int crop_width) {
  if (crop_height > in.height || crop_width > in.width)
    throw Error("center crop", std::to_string(crop_width) + "x" + std::to_string(crop_height) +
                                   " is larger than the " + std::to_string(in.width) + "x" +
                                   std::to_string(in.height) + " image");
  const int top = (in.height - crop_height) / 2, left = (in.width - crop_width) / 2;
  RgbImage out{crop_width, crop_height, {}};
  out.pixels.reserve(static_cast<size_t>(crop_width) * crop_height * 3);
  for (int y = 0; y < crop_height; ++y) {
    auto row = in.pixels.begin() + (static_cast<size_t>(top + y) * in.width + left) * 3;
    out.pixels.insert(out.pixels.end(), row, row + static_cast<size_t>(crop_width) * 3);
  }
  return out;
}

PixelValues clip_preprocess(const RgbImage& in, const ClipImageProcessorConfig& c, RgbImage* resized) {
  RgbImage img = in;
  if (c.do_resize) {
    auto [h, w] = clip_resize_size(in.height, in.width, c.shortest_edge);
    img = resize_bicubic_pillow(in, w, h);
  }
  if (resized) *resized = img;
  if (c.do_center_crop) img = center_crop(img, c.crop_height, c.crop_width);
  PixelValues out{3, img.height, img.width, {}};
  const size_t plane = static_cast<size_t>(img.width) * img.height;
  out.values.resize(plane * 3);
  for (int ch = 0; ch < 3; ++ch) {
    // As transformers: float32(u8 * factor) (the product in double), then normalised in float32.
    const float mean = static_cast<float>(c.image_mean[ch]), std = static_cast<float>(c.image_std[ch]);
    for (size_t p = 0; p < plane; ++p) {
      const uint8_t u = img.pixels[p * 3 + ch];
      float v = c.do_rescale ? static_cast<float>(u * c.rescale_factor) : static_cast<float>(u);
      if (c.do_normalize) v = (v - mean) / std;
      out.values[ch * plane + p] = v;
    }
  }
  return out;
}

}  // namespace lumen
