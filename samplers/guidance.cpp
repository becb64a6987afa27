#include "samplers/guidance.h"

namespace lumen::samplers {

torch::Tensor classifier_free_guidance(const torch::Tensor& uncond, const torch::Tensor& cond, double scale) {
  return uncond + scale * (cond - uncond);
}

torch::Tensor rescale_guidance(const torch::Tensor& guided, const torch::Tensor& cond, double phi) {
  std::vector<int64_t> dims;
  for (int64_t d = 1; d < guided.dim(); ++d) dims.push_back(d);
  auto std_cond = cond.std(dims, /*unbiased=*/true, /*keepdim=*/true);
  auto std_guided = guided.std(dims, /*unbiased=*/true, /*keepdim=*/true);
  auto rescaled = guided * (std_cond / std_guided);
  return phi * rescaled + (1.0 - phi) * guided;
}

}  // namespace lumen::samplers
