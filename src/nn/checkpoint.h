// Gradient checkpointing for training, as PyTorch's reentrant
// torch.utils.checkpoint (which LibTorch lacks): a block's activations are not
// kept for backward but recomputed then, trading compute for memory.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace lumen::nn {

using CheckpointedFn = std::function<torch::Tensor(const std::vector<torch::Tensor>& inputs)>;

// fn(inputs), with only `inputs` saved for backward: fn runs without grad, and
// backward runs it again with grad (under the autocast state seen here) and
// back-propagates through that. Rules for fn, as in PyTorch:
// - deterministic (no dropout, no RNG) and leaves its inputs unmodified;
// - a tensor it uses that was computed with grad outside fn must be passed as
//   an input, not captured; captured leaves (module parameters, LoRA tensors)
//   get their gradients accumulated straight into .grad during backward.
// Undefined inputs are allowed and passed through. When grad mode is on and no
// input requires grad, inputs[0] is treated as requiring it (its gradient is not
// computed): otherwise backward would never run, and parameters reached only
// through fn (e.g. LoRA on a frozen model fed with plain noise) would get none.
// With grad mode off this is simply fn(inputs).
torch::Tensor checkpoint(const CheckpointedFn& fn, const std::vector<torch::Tensor>& inputs);

}  // namespace lumen::nn
