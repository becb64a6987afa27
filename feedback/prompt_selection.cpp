#include "prompt_selection.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "error.h"

namespace lumen::train {

PromptSelector::PromptSelector(PromptSelectionSpec spec, std::vector<std::string> candidates, torch::Tensor features)
    : spec_(spec), candidates_(std::move(candidates)) {
  if (candidates_.empty()) throw Error("prompt selection", "no candidate prompts");
  features_ = features / features.norm(2, 1, true).clamp_min(1e-12);
  if (!spec_.active) {
    selected_.resize(candidates_.size());
    std::iota(selected_.begin(), selected_.end(), 0);
  }
}

void PromptSelector::refresh(int64_t step, uint64_t seed, const Deficit& deficit) {
  if (!spec_.active) return;
  if (!selected_.empty() && (step % spec_.refresh_every != 0 || step == refreshed_at_)) return;
  refreshed_at_ = step;
  // A random pool, scored.
  std::vector<int64_t> pool(candidates_.size());
  std::iota(pool.begin(), pool.end(), 0);
  std::mt19937_64 rng(seed);
  for (size_t i = pool.size(); i > 1; --i) std::swap(pool[i - 1], pool[rng() % i]);
  pool.resize(std::min<size_t>(pool.size(), static_cast<size_t>(spec_.pool)));
  std::vector<std::string> prompts;
  for (auto i : pool) prompts.push_back(candidates_[static_cast<size_t>(i)]);
  const auto scores = deficit(prompts).to(torch::kDouble).contiguous();
  const double* d = scores.data_ptr<double>();
  std::vector<size_t> order(pool.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return d[a] > d[b]; });
  // Worst first, skipping near duplicates of what is already kept.
  selected_.clear();
  pool_deficit_ = scores.mean().item<double>();
  double kept_sum = 0;
  for (size_t k : order) {
    if (static_cast<int64_t>(selected_.size()) >= spec_.keep) break;
    const auto row = features_[pool[k]];
    bool duplicate = false;
    for (auto s : selected_)
      if ((features_[s] * row).sum().item<double>() >= spec_.similarity) {
        duplicate = true;
        break;
      }
    if (duplicate) continue;
    selected_.push_back(pool[k]);
    kept_sum += d[k];
  }
  kept_deficit_ = kept_sum / static_cast<double>(selected_.size());
}

std::vector<std::string> PromptSelector::draw(int64_t count, at::Generator& gen) const {
  if (selected_.empty()) throw Error("prompt selection", "refresh() must run before draw()");
  const auto picks = torch::randint(static_cast<int64_t>(selected_.size()), {count}, gen, torch::kLong);
  std::vector<std::string> out;
  for (int64_t i = 0; i < count; ++i)
    out.push_back(candidates_[static_cast<size_t>(selected_[static_cast<size_t>(picks[i].item<int64_t>())])]);
  return out;
}

nlohmann::json PromptSelector::state() const {
  return {{"selected", selected_}, {"refreshed_at", refreshed_at_}, {"pool_deficit", pool_deficit_},
          {"kept_deficit", kept_deficit_}};
}

void PromptSelector::restore(const nlohmann::json& state) {
  selected_ = state.at("selected").get<std::vector<int64_t>>();
  refreshed_at_ = state.value("refreshed_at", int64_t{-1});
  pool_deficit_ = state.value("pool_deficit", 0.0);
  kept_deficit_ = state.value("kept_deficit", 0.0);
  for (auto i : selected_)
    if (i < 0 || i >= static_cast<int64_t>(candidates_.size())) throw Error("prompt selection", "checkpoint state out of range");
}

}  // namespace lumen::train
