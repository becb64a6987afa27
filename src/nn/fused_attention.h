// softmax(q kᵀ / √d) v in one pass over key blocks (online softmax, as
// FlashAttention), never writing the score matrix: the two products, the
// exponential and the normalisation run on one tile of queries while it is in
// cache. LibTorch 1.13 has no fused attention on the CPU; its batched products
// with a head dim of 40-160 run at a quarter of the machine's GEMM rate, and
// the score matrix (268M scores per 512² self-attention layer) makes
// attention a third of a bf16 UNet step. Math in float32 whatever the storage.
#pragma once
#include <torch/torch.h>

namespace lumen::nn {

// [B,S,H·D] → [B·H,S,D]: the heads as a batch (both attention paths).
torch::Tensor split_heads(const torch::Tensor& t, int64_t heads);

// On by default where the CPU has AVX-512; `bench --no-fused-attention` turns it off.
void set_fused_attention(bool enabled);
bool fused_attention_enabled();

// True when the kernel takes these inputs and is the faster path: CPU,
// AVX-512, enabled, no gradient recorded; float32, or bfloat16 (with
// AVX512-BF16) at the shapes where it beats oneDNN's batched products.
bool fused_attention_applies(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t heads);

// q [B,Sq,H·D], k and v [B,Sk,H·D] → [B,Sq,H·D] in q's dtype. No mask.
// Requires AVX-512 (fused_attention_enabled); bf16 without AVX512-BF16 runs
// the float32 kernel on converted inputs.
torch::Tensor fused_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              int64_t heads);

}  // namespace lumen::nn
