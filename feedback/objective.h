// What is being trained and its loss: the trainer's loop (optimiser, EMA,
// checkpoints, logs) is the same for every task, the objective is not.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "datasets.h"
#include "recipe.h"

namespace lumen::train {

class DataParallel;

using Metrics = std::map<std::string, double>;
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

class Objective {
 public:
  virtual ~Objective() = default;
  // The parameters the optimiser updates, with stable names (checkpoint keys).
  virtual NamedTensors trainable() = 0;
  // The loss of one batch; `gen` gives every random draw of the step. May add
  // components to `metrics`.
  virtual torch::Tensor loss(const Batch& batch, at::Generator& gen, Metrics& metrics) = 0;
  // A sample grid (and, where the recipe asks, ShapesWorld judging) with the
  // current weights; writes `png` and may add metrics.
  virtual void sample(const std::string& png, Metrics& metrics) = 0;
  // The finished model (or adapter) in Lumen's loadable formats, under `folder`.
  virtual void write_final(const std::string& folder) = 0;
  // State beyond the trainable parameters and their optimiser (a
  // discriminator, a prompt selection), written into and read from a
  // checkpoint folder so that a resumed run repeats an unbroken one.
  virtual void save_state(const std::string& folder) { (void)folder; }
  virtual void load_state(const std::string& folder) { (void)folder; }
  // A data-parallel run: parameters the objective updates itself (a
  // discriminator) have their gradients averaged through `parallel`.
  virtual void use_data_parallel(DataParallel* parallel) { (void)parallel; }
};

std::unique_ptr<Objective> make_objective(const Recipe& recipe, const Dataset& dataset);

}  // namespace lumen::train
