// Whether a generation can fit in memory, judged before any work: attention's
// score matrices grow with the square of the pixel count, so a size a user
// can type (16384²) may need terabytes.
#pragma once
#include <cstdint>

namespace lumen {

struct LoadedModel;

// Bytes the largest intermediate tensors of one generation take at once: the
// attention scores and probabilities of the UNet's highest-resolution
// attention level and of the VAE decoder's mid block, and the decoder's
// full-resolution activations. A lower bound on the peak, not its sum.
uint64_t estimate_generation_bytes(const LoadedModel& model, int64_t width, int64_t height, int64_t batch, bool cfg);

// MemAvailable from /proc/meminfo (0 where unknown).
uint64_t available_memory_bytes();

// Throws lumen::Error naming the size when the estimate exceeds what is available.
void check_generation_fits(const LoadedModel& model, int64_t width, int64_t height, int64_t batch, bool cfg);

}  // namespace lumen
