#include "pipeline/memory_estimate.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>

#include "error.h"
#include "model/model_loader.h"

namespace lumen {
namespace {

constexpr uint64_t kFloatBytes = 4;  // scores are computed in f32 whatever the dtype

// Scores plus softmax probabilities of self-attention over `tokens` positions.
uint64_t attention_bytes(uint64_t batch, uint64_t heads, uint64_t tokens) {
  return 2 * batch * heads * tokens * tokens * kFloatBytes;
}

std::string gib(uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f GiB", static_cast<double>(bytes) / (1ull << 30));
  return text;
}

}  // namespace

uint64_t estimate_generation_bytes(const LoadedModel& model, int64_t width, int64_t height, int64_t batch, bool cfg) {
  const auto& unet = model.unet->config;
  const auto& vae = model.vae->config;
  const uint64_t factor = static_cast<uint64_t>(vae.downsampling_factor());
  const uint64_t latent_h = static_cast<uint64_t>(height) / factor, latent_w = static_cast<uint64_t>(width) / factor;
  const uint64_t unet_batch = static_cast<uint64_t>(batch) * (cfg ? 2 : 1);
  uint64_t peak = 0;
  for (size_t level = 0; level < unet.down_block_types.size(); ++level) {
    if (unet.down_block_types[level].find("CrossAttn") == std::string::npos) continue;
    const uint64_t tokens = (latent_h >> level) * (latent_w >> level);
    const uint64_t heads = static_cast<uint64_t>(unet.attention_heads.at(level));
    peak = std::max(peak, attention_bytes(unet_batch, heads, tokens));
    break;  // deeper levels have 4× fewer tokens each
  }
  if (vae.mid_block_add_attention)
    peak = std::max(peak, attention_bytes(static_cast<uint64_t>(batch), 1, latent_h * latent_w));
  // A decoder resnet at full resolution holds its input, a normalised copy and its output.
  const uint64_t pixels = static_cast<uint64_t>(width) * static_cast<uint64_t>(height);
  peak = std::max(peak, 3 * static_cast<uint64_t>(batch) * static_cast<uint64_t>(vae.block_out_channels.at(0)) *
                            pixels * kFloatBytes);
  return peak;
}

uint64_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return 0;
}

void check_generation_fits(const LoadedModel& model, int64_t width, int64_t height, int64_t batch, bool cfg) {
  const uint64_t needed = estimate_generation_bytes(model, width, height, batch, cfg);
  const uint64_t available = available_memory_bytes();
  if (available == 0 || needed <= available) return;
  throw Error(std::to_string(width) + "x" + std::to_string(height),
              "needs at least " + gib(needed) + " (attention over every pixel pair) but " + gib(available) +
                  " is available; generate smaller, or a smaller batch");
}

}  // namespace lumen
