// Reward models for feedback learning: each scores decoded images (and,
// where it uses them, their prompts) differentiably, so a loss can push the
// generator towards higher scores. One file per reward (reward_*.cpp).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace lumen::train {

class ImageReward {
 public:
  virtual ~ImageReward() = default;
  // images [B,3,H,W] in [-1,1], gradients kept; prompts: one per image, or one
  // for all (rewards that ignore prompts accept any). Returns [B] float32.
  // Non-finite scores are passed through: judging them is the caller's business.
  virtual torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>& prompts) = 0;
};

// What a recipe names. clip: `model` = transformers CLIPModel folder (PickScore-style).
// aesthetic: `model` = CLIPModel folder (image tower), `head` = LAION aesthetic MLP
// (.safetensors). torchscript: `model` = a TorchScript file (trusted files only).
struct RewardSpec {
  std::string kind;  // clip | aesthetic | torchscript
  std::string model, head;
  std::string device = "cpu";
};

std::unique_ptr<ImageReward> make_reward(const RewardSpec& spec);

std::unique_ptr<ImageReward> make_clip_reward(const std::string& clip_folder, const torch::Device& device);
std::unique_ptr<ImageReward> make_aesthetic_reward(const std::string& clip_folder, const std::string& head,
                                                   const torch::Device& device);
std::unique_ptr<ImageReward> make_torchscript_reward(const std::string& path, const torch::Device& device);

}  // namespace lumen::train
