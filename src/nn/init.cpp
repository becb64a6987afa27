#include "nn/init.h"

#include <cmath>
#include <functional>

namespace lumen::nn {
namespace {

// Biases 0, norm scales (1-D) 1; every other tensor from `init_weight`, in
// parameter order from one seeded generator.
void init_parameters(torch::nn::Module& module, uint64_t seed,
                     const std::function<torch::Tensor(const std::string& key, const torch::Tensor& p,
                                                       at::Generator& gen)>& init_weight) {
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
    } else {
      p.copy_(init_weight(key, p, gen));
    }
  }
}

double fan_in(const torch::Tensor& p) { return static_cast<double>(p[0].numel()); }

}  // namespace

void init_random(torch::nn::Module& module, uint64_t seed) {
  init_parameters(module, seed, [](const std::string&, const torch::Tensor& p, at::Generator& gen) {
    return torch::randn(p.sizes(), gen, p.options()) / std::sqrt(fan_in(p));
  });
}

void init_for_training(torch::nn::Module& module, uint64_t seed) {
  init_parameters(module, seed, [](const std::string& key, const torch::Tensor& p, at::Generator& gen) {
    if (key.find("embedding") != std::string::npos) return torch::randn(p.sizes(), gen, p.options()) * 0.02;
    const double bound = 1.0 / std::sqrt(fan_in(p));
    return torch::rand(p.sizes(), gen, p.options()) * (2 * bound) - bound;
  });
}

}  // namespace lumen::nn
