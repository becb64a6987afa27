// transformers' CLIPImageProcessor on 8-bit RGB, bit-exact: Pillow 9.4's
// BICUBIC resize (fixed point, separable, uint8 between the passes), floor
// centre crop, rescale and normalise. Torch-free.
#pragma once
#include <array>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/image_io.h"

namespace lumen {

struct ClipImageProcessorConfig {
  bool do_resize = true, do_center_crop = true, do_rescale = true, do_normalize = true;
  int shortest_edge = 224, crop_height = 224, crop_width = 224;
  double rescale_factor = 1.0 / 255.0;
  std::array<double, 3> image_mean{0.48145466, 0.4578275, 0.40821073};  // OpenAI CLIP
  std::array<double, 3> image_std{0.26862954, 0.26130258, 0.27577711};
};

// preprocessor_config.json; absent fields keep the defaults above, an
// unsupported one (resample other than BICUBIC) is an error naming the file.
ClipImageProcessorConfig parse_clip_processor_config(const nlohmann::json& j, const std::string& where);
ClipImageProcessorConfig read_clip_processor_config(const std::string& path);

// Short side -> `shortest`, long side -> floor(shortest * long / short). Returns {height, width}.
std::array<int, 2> clip_resize_size(int height, int width, int shortest);
// Pillow 9.4 Image.resize((width, height), BICUBIC).
RgbImage resize_bicubic_pillow(const RgbImage& in, int width, int height);
// top = (h - crop_h) / 2, left = (w - crop_w) / 2 (floor). Crop larger than the image: error.
RgbImage center_crop(const RgbImage& in, int crop_height, int crop_width);

struct PixelValues {
  int channels = 3, height = 0, width = 0;
  std::vector<float> values;  // CHW
};
// The whole recipe; `resized` (optional) receives the image after resizing, before the crop.
PixelValues clip_preprocess(const RgbImage& in, const ClipImageProcessorConfig& c, RgbImage* resized = nullptr);

}  // namespace lumen
