#include "nn/init.h"

#include <cmath>
#include <cstdint>
#include <functional>
#ifdef __linux__
#include <sys/mman.h>
#endif

namespace lumen::nn {
namespace {

// Biases 0, norm scales (1-D) 1; every other tensor filled in place by
// `init_weight`, in parameter order from one seeded generator. In place: a
// temporary per tensor left SDXL's heap ~1.5 GB larger than its weights.
void init_parameters(torch::nn::Module& module, uint64_t seed,
                     const std::function<void(const std::string& key, torch::Tensor& p, at::Generator& gen)>&
                         init_weight) {
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
      init_weight(key, p, gen);
    }
  }
}

double fan_in(const torch::Tensor& p) { return static_cast<double>(p[0].numel()); }

}  // namespace

// The same numbers as the out-of-place forms (randn is normal_(0, 1), rand is
// uniform_(0, 1), then the same arithmetic in the tensor's dtype).
void init_random(torch::nn::Module& module, uint64_t seed) {
  init_parameters(module, seed, [](const std::string&, torch::Tensor& p, at::Generator& gen) {
    p.normal_(0, 1, gen).div_(std::sqrt(fan_in(p)));
  });
}

void init_for_training(torch::nn::Module& module, uint64_t seed) {
  init_parameters(module, seed, [](const std::string& key, torch::Tensor& p, at::Generator& gen) {
    if (key.find("embedding") != std::string::npos) {
      p.normal_(0, 1, gen).mul_(0.02);
      return;
    }
    const double bound = 1.0 / std::sqrt(fan_in(p));
    p.uniform_(0, 1, gen).mul_(2 * bound).sub_(bound);
  });
}

void reallocate_parameters(torch::nn::Module& module, torch::Dtype dtype, bool huge_pages) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) {
    if (!p.is_floating_point()) continue;
    p.set_data(torch::empty(p.sizes(), p.options().dtype(dtype)));
    if (huge_pages && p.is_cpu()) advise_huge_pages(p.data_ptr(), p.nbytes());
  }
}

void advise_huge_pages(void* data, size_t bytes) {
#ifdef __linux__
  // Weights are written once, right after this: with 4 KB pages that is a
  // fault per page (~10 µs each in a VM: a 4 GB model's load took 8 s, most
  // of it in faults); with 2 MB pages, 512 times fewer. Only whole 2 MB
  // pages inside the block; the kernel may still hand out small ones.
  constexpr uintptr_t huge = uintptr_t{2} << 20;
  const auto start = reinterpret_cast<uintptr_t>(data);
  const uintptr_t begin = (start + huge - 1) / huge * huge, end = (start + bytes) / huge * huge;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data, (void)bytes;
#endif
}

}  // namespace lumen::nn
