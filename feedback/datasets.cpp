#include "datasets.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <opencv2/imgproc.hpp>
#include <random>
#include <sstream>

#include "error.h"
#include "image_grid.h"
#include "io/image_io.h"
#include "prompt/prompt_parser.h"
#include "shapes/shapes_world.h"
#include "shapes_supervision.h"

namespace lumen::train {
namespace fs = std::filesystem;

uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b) {
  auto splitmix = [](uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  };
  return splitmix(splitmix(splitmix(seed) ^ a) ^ b);
}

int64_t images_at(const DatasetSpec& spec, const Resolution& r, int64_t batch_size) {
  const double scaled = static_cast<double>(batch_size) * static_cast<double>(spec.width * spec.height) /
                        static_cast<double>(r.width * r.height);
  return std::clamp<int64_t>(std::llround(scaled), 1, 4 * batch_size);
}

namespace {

// In [0, 1) from the raw 64-bit draw: the same on every standard library.
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }



class ShapesDataset : public Dataset {
 public:
  explicit ShapesDataset(const DatasetSpec& spec)
      : spec_(spec),
        captions_(spec.held_out_without_size ? shapes::all_captions()
                  : shapes::split_captions(spec.split == "eval"   ? shapes::Split::eval
                                           : spec.split == "seen" ? shapes::Split::seen
                                                                  : shapes::Split::train)) {}

  Batch batch(uint64_t seed, int64_t step, int64_t size) const override {
    std::mt19937_64 rng(mix_seed(seed, static_cast<uint64_t>(step), 0x5eed));
    Batch b;
    std::vector<torch::Tensor> images, labels;
    Resolution at{spec_.width, spec_.height};
    if (!spec_.resolutions.empty()) {  // one resolution per batch, drawn uniformly
      at = spec_.resolutions[rng() % spec_.resolutions.size()];
      size = images_at(spec_, at, size);
    }
    const int w = static_cast<int>(at.width), h = static_cast<int>(at.height);
    for (int64_t i = 0; i < size; ++i) {
      shapes::Caption c = captions_[rng() % captions_.size()];
      const bool held_out = spec_.held_out_without_size && !shapes::in_split(c, shapes::Split::train);
      if (uniform01(rng) < spec_.drop_size || held_out) c.size.reset();
      if (uniform01(rng) < spec_.drop_position) c.position.reset();
      const shapes::Caption drawn = shapes::fill_dropped(c, rng);
      const shapes::Jitter jitter = shapes::random_jitter(rng);
      images.push_back(image_tensor(shapes::render(drawn, w, h, jitter)));
      labels.push_back(label_map(drawn, w, h, jitter));
      b.captions.push_back(shapes::caption_text(c));
    }
    b.images = torch::stack(images);
    b.labels = torch::stack(labels);
    return b;
  }

 private:
  DatasetSpec spec_;
  std::vector<shapes::Caption> captions_;
};

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* e : {".png", ".jpg", ".jpeg", ".bmp", ".tga", ".gif", ".webp"})
    if (ext == e) return true;
  return false;
}

// A caption sidecar, checked when the dataset is built: one over the prompt
// limits (length, nesting, chunks) used to end a run when it was first drawn,
// maybe thousands of steps in, as "prompt: …" without the file.
std::string read_caption(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(file.string(), "cannot read the caption");
  std::string text(kMaxPromptBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxPromptBytes)
    throw Error(file.string(), "the caption is over " + std::to_string(kMaxPromptBytes) + " bytes");
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  size_t start = 0;
  while (start < text.size() && std::isspace(static_cast<unsigned char>(text[start]))) ++start;
  text = text.substr(start);
  try {
    parse_prompt_weights(text);
  } catch (const Error& e) {
    throw Error(file.string(), std::string("the caption: ") + e.what());
  }
  return text;
}

// Crops the centre to the target's aspect ratio, then scales it: no
// distortion. Cropping first bounds the work by the image itself (scaling
// first blew a 1×16,000,000 PNG up to a 196 GB allocation).
RgbImage fit_and_crop(const RgbImage& image, int width, int height) {
  cv::Mat src(image.height, image.width, CV_8UC3, const_cast<uint8_t*>(image.pixels.data()));
  const double target = static_cast<double>(width) / height;
  int cw = image.width, ch = image.height;
  if (static_cast<double>(image.width) / image.height > target)
    cw = std::clamp(static_cast<int>(std::lround(image.height * target)), 1, image.width);
  else
    ch = std::clamp(static_cast<int>(std::lround(image.width / target)), 1, image.height);
  const cv::Mat crop = src(cv::Rect((image.width - cw) / 2, (image.height - ch) / 2, cw, ch));
  cv::Mat resized;
  cv::resize(crop, resized, cv::Size(width, height), 0, 0, cw > width ? cv::INTER_AREA : cv::INTER_CUBIC);
  RgbImage out;
  out.width = width;
  out.height = height;
  out.pixels.assign(resized.data, resized.data + static_cast<size_t>(width) * height * 3);
  return out;
}

class FolderDataset : public Dataset {
 public:
  explicit FolderDataset(const DatasetSpec& spec) : spec_(spec) {
    const fs::path dir(spec.path);
    std::error_code ec;
    if (!fs::exists(dir, ec)) throw Error(spec.path, "no such dataset folder");
    if (!fs::is_directory(dir, ec)) throw Error(spec.path, "the dataset is not a folder");
    fs::directory_iterator it(dir, ec);
    if (ec) throw Error(spec.path, "cannot read the dataset folder: " + ec.message());
    std::vector<std::string> uncaptioned;
    for (const auto& entry : it) {
      if (!entry.is_regular_file(ec) || !is_image_file(entry.path())) continue;
      fs::path caption = entry.path();
      caption.replace_extension(spec.caption_extension);
      if (!fs::is_regular_file(caption, ec)) {
        uncaptioned.push_back(entry.path().filename().string());
        continue;
      }
      items_.push_back({entry.path().string(), read_caption(caption)});
    }
    if (!uncaptioned.empty()) {
      std::sort(uncaptioned.begin(), uncaptioned.end());
      std::string list;
      for (size_t i = 0; i < std::min<size_t>(uncaptioned.size(), 5); ++i) list += (i ? ", " : "") + uncaptioned[i];
      if (uncaptioned.size() > 5) list += ", ...";
      throw Error(spec.path, std::to_string(uncaptioned.size()) + " image(s) without a " + spec.caption_extension +
                                 " caption: " + list);
    }
    if (items_.empty()) throw Error(spec.path, "the dataset folder has no images (.png, .jpg, .bmp, ...)");
    std::sort(items_.begin(), items_.end(), [](const Item& a, const Item& b) { return a.image < b.image; });
    if (!spec.resolutions.empty()) assign_buckets();
  }

  Batch batch(uint64_t seed, int64_t step, int64_t size) const override {
    Batch b;
    std::vector<torch::Tensor> images;
    if (buckets_.empty()) {  // one resolution: epochs in a shuffled order
      for (int64_t i = 0; i < size; ++i) {
        const auto global = static_cast<uint64_t>(step * size + i);
        const Item& item = items_[order(seed, global / items_.size())[global % items_.size()]];
        images.push_back(image_tensor(fit_and_crop(read_item(item), static_cast<int>(spec_.width), static_cast<int>(spec_.height))));
        b.captions.push_back(item.caption);
      }
    } else {  // buckets: one per batch, in proportion to its images; images drawn from it at random
      std::mt19937_64 rng(mix_seed(seed, static_cast<uint64_t>(step), 0xb0c7));
      uint64_t pick = rng() % items_.size();
      size_t k = 0;
      while (pick >= buckets_[k].items.size()) pick -= buckets_[k++].items.size();
      const Bucket& bucket = buckets_[k];
      const int64_t n = images_at(spec_, bucket.resolution, size);
      for (int64_t i = 0; i < n; ++i) {
        const Item& item = items_[bucket.items[rng() % bucket.items.size()]];
        images.push_back(image_tensor(fit_and_crop(read_item(item), static_cast<int>(bucket.resolution.width),
                                                   static_cast<int>(bucket.resolution.height))));
        b.captions.push_back(item.caption);
      }
    }
    b.images = torch::stack(images);
    return b;
  }

 private:
  struct Item {
    std::string image, caption;
  };
  struct Bucket {
    Resolution resolution;
    std::vector<size_t> items;
  };

  static RgbImage read_item(const Item& item) {
    try {
      return read_image(item.image);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error(item.image, std::string("cannot read the image: ") + e.what());
    }
  }

  // kohya's bucketing: each image goes to the resolution whose aspect ratio is
  // nearest its own (log ratio); among equal ratios, the largest that the
  // image covers without upscaling, else the smallest. Reads image headers only.
  void assign_buckets() {
    for (const Resolution& r : spec_.resolutions) buckets_.push_back({r, {}});
    for (size_t i = 0; i < items_.size(); ++i) {
      const auto [w, h] = image_dimensions(items_[i].image);
      const double aspect = std::log(static_cast<double>(w) / h);
      size_t best = 0;
      auto better = [&](const Resolution& a, const Resolution& b) {  // is a a better bucket than b?
        const double da = std::abs(std::log(static_cast<double>(a.width) / a.height) - aspect);
        const double db = std::abs(std::log(static_cast<double>(b.width) / b.height) - aspect);
        if (std::abs(da - db) > 1e-9) return da < db;
        const bool a_fits = a.width <= w && a.height <= h, b_fits = b.width <= w && b.height <= h;
        if (a_fits != b_fits) return a_fits;
        return a_fits ? a.width * a.height > b.width * b.height : a.width * a.height < b.width * b.height;
      };
      for (size_t k = 1; k < buckets_.size(); ++k)
        if (better(buckets_[k].resolution, buckets_[best].resolution)) best = k;
      buckets_[best].items.push_back(i);
    }
    buckets_.erase(std::remove_if(buckets_.begin(), buckets_.end(), [](const Bucket& b) { return b.items.empty(); }),
                   buckets_.end());
  }

  // The shuffled order of one epoch (Fisher-Yates on a seeded stream),
  // cached for the epoch being read.
  const std::vector<size_t>& order(uint64_t seed, uint64_t epoch) const {
    if (cached_epoch_ != epoch || cached_order_.empty()) {
      cached_order_.resize(items_.size());
      for (size_t i = 0; i < items_.size(); ++i) cached_order_[i] = i;
      std::mt19937_64 rng(mix_seed(seed, epoch, 0xe90c));
      for (size_t i = items_.size(); i > 1; --i) std::swap(cached_order_[i - 1], cached_order_[rng() % i]);
      cached_epoch_ = epoch;
    }
    return cached_order_;
  }
  DatasetSpec spec_;
  std::vector<Item> items_;
  std::vector<Bucket> buckets_;
  mutable uint64_t cached_epoch_ = ~uint64_t{0};
  mutable std::vector<size_t> cached_order_;
};

}  // namespace

std::unique_ptr<Dataset> make_dataset(const DatasetSpec& spec) {
  if (spec.type == "shapes") return std::make_unique<ShapesDataset>(spec);
  if (spec.type == "folder") return std::make_unique<FolderDataset>(spec);
  throw Error("dataset", "unknown type '" + spec.type + "' (shapes, folder)");
}

}  // namespace lumen::train
