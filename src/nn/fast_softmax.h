// Softmax over the last dimension of attention scores, in place, with an
// AVX-512 exponential. LibTorch 1.13's CPU build dispatches its softmax to
// AVX2 kernels whose exp is most of a 512x512 UNet step's attention time
// (268M scores per self-attention layer); this one is ~3x faster. Math in
// float32 whatever the storage; results within an ulp or two of ATen's.
#pragma once
#include <cstdint>

namespace lumen::nn {

// True on CPUs with AVX-512 F, BW and VL (checked once). Without them the
// callers use ATen's softmax.
bool fast_softmax_supported();
// On by default where supported; off, attention uses ATen's softmax (`bench --no-fast-softmax`).
void set_fast_softmax(bool enabled);
bool fast_softmax_enabled();

// `rows` contiguous rows of `cols` values each; bf16 stored as its raw bits.
// Parallel over rows on LibTorch's intra-op threads. Requires fast_softmax_supported().
void softmax_rows_inplace(float* data, int64_t rows, int64_t cols);
void softmax_rows_inplace_bf16(uint16_t* data, int64_t rows, int64_t cols);

}  // namespace lumen::nn
