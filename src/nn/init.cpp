#include "nn/init.h"

#include <cmath>

namespace lumen::nn {

void init_random(torch::nn::Module& module, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& item : module.named_parameters(true)) {
    auto& p = item.value();
    const std::string& key = item.key();
    const bool is_bias = key.size() >= 4 && key.compare(key.size() - 4, 4, "bias") == 0;
    if (is_bias) {
      p.zero_();
    } else if (p.dim() == 1) {
      p.fill_(1.0);  // norm scales
    } else {
      const double fan_in = static_cast<double>(p[0].numel());
      p.copy_(torch::randn(p.sizes(), gen, p.options()) / std::sqrt(fan_in));
    }
  }
}

}  // namespace lumen::nn

namespace lumen::nn {

void init_for_training(torch::nn::Module& module, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& item : module.named_parameters(true)) {
    auto& p = item.value();
    const std::string& key = item.key();
    const bool is_bias = key.size() >= 4 && key.compare(key.size() - 4, 4, "bias") == 0;
    if (is_bias) {
      p.zero_();
    } else if (p.dim() == 1) {
      p.fill_(1.0);
    } else if (key.find("embedding") != std::string::npos) {
      p.copy_(torch::randn(p.sizes(), gen, p.options()) * 0.02);
    } else {
      const double bound = 1.0 / std::sqrt(static_cast<double>(p[0].numel()));
      p.copy_(torch::rand(p.sizes(), gen, p.options()) * (2 * bound) - bound);
    }
  }
}

}  // namespace lumen::nn
