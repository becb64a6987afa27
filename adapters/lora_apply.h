// Applying LoRA-family files to a model: matching their module names to the
// model's Linear/Conv2d layers, stacking several with their own scales, merged
// into the weights (unmerging restores them bit for bit) or attached at run
// time (scales change between generations without touching the weights).
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "adapters/lora_format.h"
#include "model/model_loader.h"
#include "nn/layers.h"

namespace lumen::adapters {

// kohya's module naming: the dotted path with '.' replaced by '_'.
std::string underscored(std::string dotted);

// The networks adapters may change, under the component names LoRA files use.
using Components = std::map<std::string, std::shared_ptr<torch::nn::Module>>;
Components adapter_components(const LoadedModel& model);

// A Linear or Conv2d layer of a component.
struct AdaptableLayer {
  std::string component, name;  // name: dotted module path ("down_blocks.0.resnets.0.conv1")
  std::shared_ptr<nn::LinearImpl> linear;
  std::shared_ptr<nn::Conv2dImpl> conv;
  torch::Tensor& weight() const { return linear ? linear->weight : conv->weight; }
  nn::WeightDeltas& deltas() const { return linear ? linear->deltas : conv->deltas; }
};

// Finds a component's layers by dotted path or by kohya's underscored form,
// for the UNet also by its original-layout (LDM/SGM) name.
class LayerIndex {
 public:
  explicit LayerIndex(const Components& components);
  const AdaptableLayer* find(const ModuleDelta& d) const;
  std::vector<std::string> names(const std::string& component) const;  // dotted, sorted

 private:
  std::map<std::string, std::map<std::string, AdaptableLayer>> layers_;   // component -> dotted -> layer
  std::map<std::string, std::map<std::string, std::string>> underscored_;  // component -> a_b_c -> a.b.c
};

struct MatchReport {
  std::string file;
  std::map<std::string, size_t> matched;  // component -> modules changed
  std::vector<std::string> unmatched_keys;  // file modules that name no layer of this model
  std::vector<std::string> ignored_keys;    // file keys that are not adapter weights
  // Linear/Conv2d layers of the components the file touches that it leaves alone.
  std::map<std::string, std::vector<std::string>> untouched_modules;
  std::string summary() const;  // one line
};

enum class ApplyMode { Merge, Runtime };

class LoraStack {
 public:
  LoraStack(Components components, ApplyMode mode);

  // Adds an adapter under `name` (unique in the stack). Throws lumen::Error,
  // leaving the model as it was, when a shape does not fit or nothing matches.
  MatchReport add(const std::string& name, std::shared_ptr<const LoraFile> lora, double scale);
  void set_scale(const std::string& name, double scale);
  void remove(const std::string& name);
  // Takes every adapter off: the model's weights are exactly the original ones again.
  void clear();
  ApplyMode mode() const { return mode_; }
  // Destroying the stack undoes nothing: merged weights and attached deltas stay.

 private:
  struct Bound {
    AdaptableLayer layer;
    const ModuleDelta* delta;
    std::shared_ptr<nn::WeightDelta> runtime;  // Runtime mode only
  };
  struct Applied {
    std::string name;
    std::shared_ptr<const LoraFile> lora;
    double scale;
    std::vector<Bound> bound;
    MatchReport report;
  };
  Applied& find(const std::string& name);
  void merge(const Applied& a);
  void restore_originals();

  Components components_;
  LayerIndex index_;
  ApplyMode mode_;
  std::vector<Applied> applied_;
  std::map<std::string, std::pair<AdaptableLayer, torch::Tensor>> originals_;  // Merge: "component/name" -> copy
};

}  // namespace lumen::adapters
