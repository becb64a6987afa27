// Prompt → text-encoder conditioning for SD 1.x/2.x (one encoder) and SDXL
// (two encoders, pooled embedding). Long prompts are encoded in 77-token
// chunks and concatenated; A1111 weights scale the embeddings.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "model/model_loader.h"

namespace lumen {

struct Conditioning {
  torch::Tensor context;  // [B, 77·chunks, D]
  torch::Tensor pooled;   // [B, P] (SDXL), else undefined
};

struct PromptEncoding {
  int clip_skip = 1;   // A1111 numbering: 1 = last layer, 2 = penultimate, ...
  bool plain = false;  // no weighting syntax, truncate at 77 (the diffusers reference)
};

// One prompt per batch item; for SDXL `prompts_2` feed the second encoder
// (empty: the same prompts).
Conditioning encode_prompts(const LoadedModel& model, const std::vector<std::string>& prompts,
                            const std::vector<std::string>& prompts_2, const PromptEncoding& options);

// Pads the shorter conditioning with chunks of the empty prompt so both can be
// batched together (A1111 does the same for long prompts).
void match_chunk_counts(const LoadedModel& model, Conditioning& a, Conditioning& b, const PromptEncoding& options);

}  // namespace lumen
