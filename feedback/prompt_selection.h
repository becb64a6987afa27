// Which prompts the reward terms of feedback learning train on. Random: any
// training caption. Active (UniFL): every `refresh_every` steps score a random
// pool by how far the current model falls short of the rewards' thresholds,
// keep the worst ones that are not near duplicates of an already kept one
// (caption-feature cosine at or above the similarity threshold).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lumen::train {

struct PromptSelectionSpec {
  bool active = false;
  int64_t pool = 128, keep = 48, refresh_every = 50;
  double similarity = 0.8;
};

class PromptSelector {
 public:
  // `candidates`: ShapesWorld captions; `features`: [N,F] one row per candidate.
  PromptSelector(PromptSelectionSpec spec, std::vector<std::string> candidates, torch::Tensor features);

  // Deficit of each prompt under the current model: higher = further from the thresholds.
  using Deficit = std::function<torch::Tensor(const std::vector<std::string>& prompts)>;
  // Active selection: rescores when `step` is a refresh step or nothing is selected yet.
  void refresh(int64_t step, uint64_t seed, const Deficit& deficit);
  std::vector<std::string> draw(int64_t count, at::Generator& gen) const;

  const std::vector<int64_t>& selected() const { return selected_; }
  double last_pool_deficit() const { return pool_deficit_; }
  double last_kept_deficit() const { return kept_deficit_; }
  nlohmann::json state() const;
  void restore(const nlohmann::json& state);

 private:
  PromptSelectionSpec spec_;
  std::vector<std::string> candidates_;
  torch::Tensor features_;          // rows L2-normalised
  std::vector<int64_t> selected_;   // indices into candidates_
  int64_t refreshed_at_ = -1;
  double pool_deficit_ = 0, kept_deficit_ = 0;
};

}  // namespace lumen::train
