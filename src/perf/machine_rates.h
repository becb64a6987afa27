// What this machine's CPU does at its best on the kernels a diffusion model
// spends its time in, measured in the same process as the model so a bench
// can state achieved rates as shares of them.
#pragma once
#include <string>

namespace lumen {

struct KernelRate {
  double gflops = 0;   // best of the timed calls
  std::string shape;   // what was timed
};

struct MachineRates {
  KernelRate gemm_f32, gemm_bf16;        // square matrix product
  KernelRate conv3x3_f32, conv3x3_bf16;  // 3×3 convolution, the better of NCHW and channels-last
};

// Times each kernel for about `seconds_each` (after one warm-up call) with
// LibTorch's current thread count, on `device` ("cpu", "cuda", "cuda:N").
MachineRates measure_machine_rates(double seconds_each = 1.0, const std::string& device = "cpu");

}  // namespace lumen
