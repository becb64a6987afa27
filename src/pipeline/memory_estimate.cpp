#include "pipeline/memory_estimate.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>

#include "error.h"
#include "model/configs.h"
#include "model/device.h"
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

// The first UNet level with attention: its index, or -1.
int attention_level(const UNetConfig& unet) {
  for (size_t level = 0; level < unet.down_block_types.size(); ++level)
    if (unet.down_block_types[level].find("CrossAttn") != std::string::npos) return static_cast<int>(level);
  return -1;
}

// A VAE resnet at full resolution holds its input, a normalised copy and its output.
uint64_t vae_full_resolution_bytes(const VaeConfig& vae, int64_t width, int64_t height, int64_t batch) {
  const uint64_t pixels = static_cast<uint64_t>(width) * static_cast<uint64_t>(height);
  return 3 * static_cast<uint64_t>(batch) * static_cast<uint64_t>(vae.block_out_channels.at(0)) * pixels * kFloatBytes;
}

}  // namespace

uint64_t estimate_training_bytes(const LoadedModel& model, int64_t width, int64_t height, int64_t batch,
                                 bool gradient_checkpointing) {
  const auto& unet = model.unet->config;
  const auto& vae = model.vae->config;
  uint64_t bytes = vae_full_resolution_bytes(vae, width, height, batch);
  const int level = attention_level(unet);
  if (level < 0) return bytes;
  const uint64_t factor = static_cast<uint64_t>(vae.downsampling_factor());
  const uint64_t tokens = ((static_cast<uint64_t>(height) / factor) >> level) *
                          ((static_cast<uint64_t>(width) / factor) >> level);
  const uint64_t heads = static_cast<uint64_t>(unet.attention_heads.at(level));
  const uint64_t per_block = attention_bytes(static_cast<uint64_t>(batch), heads, tokens) / 2;  // probabilities only
  // Down side: layers × transformer layers; the matching up level has one layer more.
  const uint64_t layers = static_cast<uint64_t>(unet.layers_per_block.at(level));
  const uint64_t depth = static_cast<uint64_t>(unet.transformer_layers_per_block.at(level));
  const uint64_t blocks = gradient_checkpointing ? 1 : (2 * layers + 1) * depth;
  return std::max(bytes, blocks * per_block);
}

uint64_t estimate_vae_training_bytes(const VaeConfig& vae, int64_t width, int64_t height, int64_t batch) {
  // Each ResNet keeps about six full-size tensors (two norms, activations and
  // convolution inputs); the encoder has layers_per_block of them at full
  // resolution, the decoder one more.
  const uint64_t resnets = 2 * static_cast<uint64_t>(vae.layers_per_block) + 1;
  uint64_t bytes = 2 * resnets * vae_full_resolution_bytes(vae, width, height, batch);
  if (vae.mid_block_add_attention) {
    const uint64_t factor = static_cast<uint64_t>(vae.downsampling_factor());
    const uint64_t tokens = (static_cast<uint64_t>(height) / factor) * (static_cast<uint64_t>(width) / factor);
    bytes += attention_bytes(static_cast<uint64_t>(batch), 1, tokens) / 2;
  }
  return bytes;
}

uint64_t estimate_generation_bytes(const LoadedModel& model, int64_t width, int64_t height, int64_t batch, bool cfg) {
  const auto& unet = model.unet->config;
  const auto& vae = model.vae->config;
  const uint64_t factor = static_cast<uint64_t>(vae.downsampling_factor());
  const uint64_t latent_h = static_cast<uint64_t>(height) / factor, latent_w = static_cast<uint64_t>(width) / factor;
  const uint64_t unet_batch = static_cast<uint64_t>(batch) * (cfg ? 2 : 1);
  uint64_t peak = 0;
  if (const int level = attention_level(unet); level >= 0) {  // deeper levels have 4× fewer tokens each
    const uint64_t tokens = (latent_h >> level) * (latent_w >> level);
    peak = attention_bytes(unet_batch, static_cast<uint64_t>(unet.attention_heads.at(level)), tokens);
  }
  if (vae.mid_block_add_attention)
    peak = std::max(peak, attention_bytes(static_cast<uint64_t>(batch), 1, latent_h * latent_w));
  return std::max(peak, vae_full_resolution_bytes(vae, width, height, batch));
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
  // The estimate is of host memory for CPU work (score matrices included); a
  // GPU's attention keeps no score matrix, and its allocator reports its own failures.
  if (!model_device(model).is_cpu()) return;
  const uint64_t needed = estimate_generation_bytes(model, width, height, batch, cfg);
  const uint64_t available = available_memory_bytes();
  if (available == 0 || needed <= available) return;
  throw Error(std::to_string(width) + "x" + std::to_string(height),
              "needs at least " + gib(needed) + " (attention over every pixel pair) but " + gib(available) +
                  " is available; generate smaller, or a smaller batch");
}

void check_training_fits(uint64_t needed, int64_t width, int64_t height, int64_t batch, const std::string& where) {
  const uint64_t available = available_memory_bytes();
  if (available == 0 || needed <= available) return;
  throw Error(where, std::to_string(width) + "x" + std::to_string(height) + ", batch " + std::to_string(batch) +
                         ": a training step needs at least " + gib(needed) +
                         " (attention over every pixel pair, kept for the backward pass) but " + gib(available) +
                         " is available; train smaller, with a smaller batch or with gradient_checkpointing");
}

}  // namespace lumen
