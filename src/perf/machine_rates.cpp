#include "perf/machine_rates.h"

#include <torch/torch.h>

#include <chrono>
#include <functional>

#include "model/device.h"
#include "nn/op_profile.h"

namespace lumen {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The best rate of repeated calls of `kernel` (doing `flops` each) over about `budget` seconds.
double best_gflops(const std::function<torch::Tensor()>& kernel, double flops, double budget, torch::Device device) {
  kernel();  // warm-up: first-call allocation, oneDNN primitive creation
  synchronize(device);
  double best = 0;
  const auto begin = std::chrono::steady_clock::now();
  int calls = 0;
  // At least one timed call, however slow (bf16 without hardware support is ~20x slower).
  while (calls < 1 || seconds_since(begin) < budget) {
    const auto start = std::chrono::steady_clock::now();
    auto out = kernel();
    synchronize(device);  // a GPU kernel has only been queued
    const double s = seconds_since(start);
    best = std::max(best, flops / s / 1e9);
    ++calls;
  }
  return best;
}

KernelRate gemm_rate(torch::Dtype dtype, double budget, torch::Device device) {
  const int64_t n = device.is_cpu() ? 1024 : 8192;  // a GPU needs far more work per call to be busy
  auto a = torch::randn({n, n}).to(device, dtype), b = torch::randn({n, n}).to(device, dtype);
  return {best_gflops([&] { return torch::matmul(a, b); }, nn::linear_flops(n, n, n), budget, device),
          std::to_string(n) + "x" + std::to_string(n) + " @ " + std::to_string(n) + "x" + std::to_string(n)};
}

// SD1.5's first UNet level at 256² (320 channels, 32×32 latent, CFG batch 2);
// on a GPU at 1024² (128×128 latent), enough work per call to fill it.
KernelRate conv_rate(torch::Dtype dtype, double budget, torch::Device device) {
  const int64_t batch = 2, channels = 320, side = device.is_cpu() ? 32 : 128;
  auto x = torch::randn({batch, channels, side, side}).to(device, dtype);
  auto w = (torch::randn({channels, channels, 3, 3}) * 0.02).to(device, dtype);
  auto bias = torch::zeros({channels}).to(device, dtype);
  const double flops = nn::conv2d_flops(batch, channels, channels, 3, side, side);
  auto conv = [&](const torch::Tensor& in, const torch::Tensor& weight) {
    return [&, in, weight] { return torch::conv2d(in, weight, bias, {1, 1}, {1, 1}); };
  };
  const double nchw = best_gflops(conv(x, w), flops, budget / 2, device);
  const double channels_last = best_gflops(conv(x.contiguous(at::MemoryFormat::ChannelsLast),
                                                w.contiguous(at::MemoryFormat::ChannelsLast)),
                                           flops, budget / 2, device);
  const std::string shape = "3x3 " + std::to_string(channels) + "->" + std::to_string(channels) + " on " +
                            std::to_string(batch) + "x" + std::to_string(side) + "x" + std::to_string(side);
  return channels_last > nchw ? KernelRate{channels_last, shape + " channels-last"} : KernelRate{nchw, shape + " NCHW"};
}

}  // namespace

MachineRates measure_machine_rates(double seconds_each, const std::string& device_name) {
  torch::InferenceMode inference;
  const auto device = parse_device(device_name);
  MachineRates r;
  r.gemm_f32 = gemm_rate(torch::kFloat, seconds_each, device);
  r.gemm_bf16 = gemm_rate(torch::kBFloat16, seconds_each, device);
  r.conv3x3_f32 = conv_rate(torch::kFloat, seconds_each, device);
  r.conv3x3_bf16 = conv_rate(torch::kBFloat16, seconds_each, device);
  return r;
}

}  // namespace lumen
