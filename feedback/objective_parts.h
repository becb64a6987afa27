// Pieces shared by the objectives (internal to feedback/).
#pragma once
#include <memory>

#include "objective.h"

namespace lumen::train {

inline NamedTensors named_parameters(torch::nn::Module& module, const std::string& prefix = "") {
  NamedTensors out;
  for (auto& item : module.named_parameters(true)) out.emplace_back(prefix + item.key(), item.value());
  return out;
}

std::unique_ptr<Objective> make_vae_objective(const Recipe& recipe, const Dataset& dataset);
std::unique_ptr<Objective> make_diffusion_objective(const Recipe& recipe, const Dataset& dataset);
std::unique_ptr<Objective> make_segmenter_objective(const Recipe& recipe);
std::unique_ptr<Objective> make_reward_objective(const Recipe& recipe);
std::unique_ptr<Objective> make_feedback_objective(const Recipe& recipe);

}  // namespace lumen::train
