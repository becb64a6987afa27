// Whether a generation can fit in memory, judged before any work: attention's
// score matrices grow with the square of the pixel count, so a size a user
// can type (16384²) may need terabytes.
#pragma once
#include <cstdint>
#include <string>

namespace lumen {

struct LoadedModel;
struct VaeConfig;

// Bytes the largest intermediate tensors of one generation take at once: the
// attention scores and probabilities of the UNet's highest-resolution
// attention level and of the VAE decoder's mid block, and the decoder's
// full-resolution activations. A lower bound on the peak, not its sum.
uint64_t estimate_generation_bytes(const LoadedModel& model, int64_t width, int64_t height, int64_t batch, bool cfg);

// The same for one training step of the UNet at this size: every
// transformer block of the highest-resolution attention level keeps its
// attention probabilities for the backward pass (one block at a time with
// gradient checkpointing), besides the VAE encoding the batch. A lower bound.
uint64_t estimate_training_bytes(const LoadedModel& model, int64_t width, int64_t height, int64_t batch,
                                 bool gradient_checkpointing);

// MemAvailable from /proc/meminfo (0 where unknown).
uint64_t available_memory_bytes();

// Throws lumen::Error naming the size when the estimate exceeds what is available.
void check_generation_fits(const LoadedModel& model, int64_t width, int64_t height, int64_t batch, bool cfg);

// The same for one training step of a VAE (task vae): the activations of
// its full-resolution ResNets kept for the backward pass, and its mid-block
// attention probabilities. A lower bound.
uint64_t estimate_vae_training_bytes(const VaeConfig& vae, int64_t width, int64_t height, int64_t batch);

// Throws lumen::Error naming `where` (a recipe) and the size when a training
// step's estimate (`needed`, from the functions above) exceeds what is available.
void check_training_fits(uint64_t needed, int64_t width, int64_t height, int64_t batch, const std::string& where);

}  // namespace lumen
