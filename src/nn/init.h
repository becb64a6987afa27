// Random initialisation for networks built with empty parameters (fresh
// training, synthetic test models): weights ~ N(0, 1/fan_in), norms 1/0.
#pragma once
#include <torch/torch.h>

namespace lumen::nn {

void init_random(torch::nn::Module& module, uint64_t seed);

}  // namespace lumen::nn
