// Where the networks run: the CPU, or a CUDA GPU when LibTorch was built with
// CUDA. Models are loaded on the CPU and moved; samplers stay on the CPU.
#pragma once
#include <torch/torch.h>

#include <string>

namespace lumen {

struct LoadedModel;

// "cpu", "cuda" or "cuda:N". A CUDA device on a LibTorch without CUDA, or on a
// machine without a GPU, is an error naming what is missing.
torch::Device parse_device(const std::string& name);

// The device the model's UNet lives on.
torch::Device model_device(const LoadedModel& model);

// Moves every network of the model; with `dtype`, also converts its weights
// (a no-op for networks already there in that dtype).
void move_to_device(LoadedModel& model, torch::Device device, c10::optional<torch::Dtype> dtype = c10::nullopt);

// Waits for the device's queued work (GPU kernels run asynchronously): timings
// of GPU work end with it. Nothing to wait for on the CPU.
void synchronize(torch::Device device);
void synchronize_all_cuda();  // every CUDA device (a plain function, for nn::OpTotals)

// The most memory LibTorch's allocator has held for tensors on a GPU since the
// process began; 0 for the CPU (see perf/process_memory.h) or a build without CUDA.
int64_t device_peak_bytes(torch::Device device);

// For the sampler and the caller: float32 on the CPU.
inline torch::Tensor to_host_float(const torch::Tensor& t) { return t.to(torch::kCPU, torch::kFloat); }

}  // namespace lumen
