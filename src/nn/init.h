// Random initialisation for networks built with empty parameters.
#pragma once
#include <torch/torch.h>

namespace lumen::nn {

// Synthetic test models: weights ~ N(0, 1/fan_in), norms 1/0.
void init_random(torch::nn::Module& module, uint64_t seed);

// Fresh training: PyTorch's defaults for linear and conv weights
// (U(±1/sqrt(fan_in))), zero biases, norms 1/0, embeddings N(0, 0.02) as CLIP.
void init_for_training(torch::nn::Module& module, uint64_t seed);

// Gives every floating parameter fresh, unfilled storage in `dtype`, for a
// network about to be filled or loaded. Module::to on a just-built network
// converts its float32 placeholders, and left a bf16 SDXL 1.5 GB larger than
// its weights.
// With `huge_pages`, the storage is advised for 2 MB pages (it is about to be
// written whole); without, storage that may be dropped unused is left alone
// (an allocator reusing an advised block for small objects would fault in
// 2 MB for each).
void reallocate_parameters(torch::nn::Module& module, torch::Dtype dtype, bool huge_pages = false);

// Asks the kernel for 2 MB pages for a fresh CPU block about to be written
// whole (Linux; elsewhere nothing). The block's contents are not touched.
void advise_huge_pages(void* data, size_t bytes);

}  // namespace lumen::nn
