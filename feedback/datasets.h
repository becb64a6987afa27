// Training data: ShapesWorld drawn on the fly, or a folder of images with
// caption sidecars (kohya's convention: photo.png + photo.txt). A batch is a
// pure function of (seed, step), so a resumed run sees exactly the data an
// unbroken one would have.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "recipe.h"

namespace lumen::train {

struct Batch {
  torch::Tensor images;  // [B,3,H,W] float32 in [-1,1]
  std::vector<std::string> captions;
  torch::Tensor labels;  // ShapesWorld only: [B,H,W] int64 per-pixel labels (label_map)
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  // Not thread-safe: a dataset may cache per-epoch state.
  virtual Batch batch(uint64_t seed, int64_t step, int64_t size) const = 0;
};

// Throws lumen::Error naming the folder or file for an empty or unreadable
// folder, an image without a caption, or an unreadable image.
std::unique_ptr<Dataset> make_dataset(const DatasetSpec& spec);

// Images per batch at resolution `r` of a multi-resolution dataset: about as
// many pixels as batch_size images at the dataset's width × height, at least
// one image, at most four batches' worth.
int64_t images_at(const DatasetSpec& spec, const Resolution& r, int64_t batch_size);

// A 64-bit mix of a seed with counters (splitmix64), for per-step streams.
uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b = 0);

}  // namespace lumen::train
