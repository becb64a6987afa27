#include "reward.h"

#include "error.h"

namespace lumen::train {

std::unique_ptr<ImageReward> make_reward(const RewardSpec& spec) {
  torch::Device device(torch::kCPU);
  try {
    device = torch::Device(spec.device);
  } catch (const c10::Error&) {
    throw Error("reward", "unknown device '" + spec.device + "'");
  }
  if (spec.model.empty()) throw Error("reward", "'" + spec.kind + "' needs a model path");
  if (spec.kind == "clip") return make_clip_reward(spec.model, device);
  if (spec.kind == "aesthetic") {
    if (spec.head.empty()) throw Error("reward", "'aesthetic' needs the MLP head file");
    return make_aesthetic_reward(spec.model, spec.head, device);
  }
  if (spec.kind == "torchscript") return make_torchscript_reward(spec.model, device);
  throw Error("reward", "unknown kind '" + spec.kind + "' (clip, aesthetic, torchscript)");
}

}  // namespace lumen::train
