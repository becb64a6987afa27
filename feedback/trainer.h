// `lumen train`: the denoising-loss (and VAE) trainer's loop. AdamW with
// warm-up and an optional cosine decay, gradient clipping, EMA, bf16
// autocast, checkpoints with exact resume, a JSONL metrics log, a loss-curve
// PNG and periodic sample grids. Every random draw of step k comes from
// (seed, k), so a resumed run repeats an unbroken run's trajectory.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "recipe.h"

namespace lumen::train {

struct TrainOptions {
  bool resume = false;     // continue the run in the recipe's output folder from its last checkpoint
  int64_t stop_after = 0;  // stop (with a checkpoint) after this many steps of this invocation; 0: run to the end
  bool progress = true;    // progress bar on stderr when it is a terminal
  std::function<void(int64_t step, const std::map<std::string, double>& metrics)> on_step;
  // Asked after each step: true stops the run there, with a checkpoint, as
  // stop_after does (resume continues it). One process only: ranks of a
  // data-parallel run must stop together.
  std::function<bool()> stop_requested;
};

struct TrainResult {
  int64_t first_step = 0;           // the step this invocation started from (0, or the checkpoint's)
  int64_t last_step = 0;            // steps done when it stopped
  std::vector<double> losses;       // one per step of this invocation
  double seconds = 0;               // this invocation's training time
  double total_seconds = 0;         // the run's, over all invocations
  bool finished = false;            // reached the recipe's step count and wrote final/
  std::string final_folder;
};

TrainResult run_training(const Recipe& recipe, const TrainOptions& options);

}  // namespace lumen::train
