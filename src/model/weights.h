// Where a component's weights come from, and copying them into a module.
// Sources hand out tensors by diffusers key; copying releases the file pages
// as it goes, so a load never holds two copies of the weights.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "convert/ldm_keymap.h"
#include "io/safetensors.h"

namespace lumen {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual std::vector<std::string> keys() const = 0;  // diffusers keys
  virtual bool has(const std::string& key) const = 0;
  virtual std::vector<int64_t> shape(const std::string& key) const = 0;
  virtual std::string dtype(const std::string& key) const = 0;  // as stored: "F16", ...
  virtual torch::Tensor get(const std::string& key) const = 0;  // may be a view of the file
  virtual void release(const std::string& key) const = 0;     // done with it
  virtual std::string where() const = 0;                       // file(s), for messages
};

// One or more safetensors files of a diffusers/transformers component folder
// (sharded files via their *.index.json), keys as stored.
std::unique_ptr<WeightSource> open_component_weights(const std::vector<std::string>& files);

// The tensors of one component of a single-file checkpoint, renamed and
// transformed to diffusers keys by the key map.
std::unique_ptr<WeightSource> open_ldm_component(std::shared_ptr<SafetensorsFile> file,
                                                 const KeyMapResult& map, const std::string& component);

struct LoadReport {
  std::vector<std::string> unused_keys;  // in the source, matched by no parameter
};

// Loads every parameter of `module` from `source`. A tensor stored in the
// parameter's dtype and layout becomes the parameter itself, over the file's
// pages (a private mapping: a write copies the page, never reaching the
// file); others are converted into the parameter. A missing or mis-shaped
// tensor is an error naming the source and key.
LoadReport load_weights(torch::nn::Module& module, const WeightSource& source);

// Process-wide: parameters over the file's pages (default) or always copied
// (`lumen --no-mmap`). Mapped, a 4 GB float32 SD1.5 file loaded in 0.3 s
// instead of 8-12 s here, and the page cache holds its only copy; copied, the
// process's own peak RSS was 0.2-0.6 GB lower at 256² (docs/performance.md).
void set_map_weights(bool on);
bool map_weights_enabled();

}  // namespace lumen
