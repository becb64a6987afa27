#include "model/device.h"

#include "error.h"
#ifdef LUMEN_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif
#include "model/model_loader.h"

namespace lumen {

torch::Device parse_device(const std::string& name) {
  torch::Device device(torch::kCPU);
  try {
    device = torch::Device(name);
  } catch (const std::exception&) {
    throw Error("device '" + name + "'", "not a device: use cpu, cuda or cuda:N");
  }
  if (device.is_cpu()) return device;
  if (!device.is_cuda()) throw Error("device '" + name + "'", "only cpu and cuda are supported");
  if (!torch::cuda::is_available())
    throw Error("device '" + name + "'",
                "no CUDA GPU is usable: this Lumen is built against a LibTorch without CUDA, or no GPU and driver "
                "are present (scripts/gpu_check.sh builds against a CUDA LibTorch)");
  const auto count = static_cast<int64_t>(torch::cuda::device_count());
  if (device.has_index() && device.index() >= count)
    throw Error("device '" + name + "'", "this machine has " + std::to_string(count) + " CUDA device(s)");
  return device;
}

torch::Device model_device(const LoadedModel& m) { return m.unet->conv_in->weight.device(); }

void move_to_device(LoadedModel& m, torch::Device device, c10::optional<torch::Dtype> dtype) {
  auto move = [&](auto& net) {
    if (!net) return;
    if (dtype)
      net->to(device, *dtype);
    else
      net->to(device);
  };
  move(m.unet);
  move(m.vae);
  move(m.text_encoder);
  move(m.text_encoder_2);
}

void synchronize(torch::Device device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

int64_t device_peak_bytes(torch::Device device) {
#ifdef LUMEN_CUDA
  if (device.is_cuda()) {
    const auto index = device.has_index() ? device.index() : c10::DeviceIndex{0};
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    return stats.allocated_bytes[0].peak;  // [0]: StatType::AGGREGATE, in every LibTorch 2.x
  }
#endif
  (void)device;
  return 0;
}

void synchronize_all_cuda() {
  for (int64_t i = 0; i < static_cast<int64_t>(torch::cuda::device_count()); ++i) torch::cuda::synchronize(i);
}

}  // namespace lumen
