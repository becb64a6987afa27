// A ShapesWorld reward model: how well an image shows one aesthetic dimension
// (colour, shape, layout or background) of its caption, as a scalar. A small
// convolutional network whose last feature map is modulated by the caption's
// attributes (FiLM) and kept spatial (flattened, not pooled) so position and
// size stay visible. Trained with the Bradley–Terry loss on preference pairs
// (`task: reward`); frozen in decoupled feedback, trainable as the
// discriminator of adversarial feedback.
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lumen::train {

struct ShapesRewardConfig {
  std::string dimension = "global";
  int64_t resolution = 64;  // images must be this size (square, a multiple of 16)
  std::vector<int64_t> channels{16, 32, 64, 64};
  int64_t hidden = 128;
};

struct ShapesRewardImpl : torch::nn::Module {
  explicit ShapesRewardImpl(ShapesRewardConfig config);
  // images [B,3,R,R] in [-1,1], features [B,19] (caption_features) → [B].
  torch::Tensor forward(const torch::Tensor& images, const torch::Tensor& features);

  ShapesRewardConfig config;
  torch::nn::ModuleList convs{nullptr};
  torch::nn::Linear film{nullptr}, image_head{nullptr}, caption_head{nullptr}, out1{nullptr}, out2{nullptr};
};
TORCH_MODULE(ShapesReward);

// Bradley–Terry: −log σ(r(preferred) − r(rejected)), mean over pairs.
torch::Tensor bradley_terry_loss(const torch::Tensor& preferred, const torch::Tensor& rejected);

nlohmann::json to_json(const ShapesRewardConfig& c);
ShapesRewardConfig reward_config(const nlohmann::json& j, const std::string& where);
void save_reward(const std::string& folder, ShapesReward& model, nlohmann::json extra = nlohmann::json::object());
// A trained reward model; frozen unless `trainable`.
ShapesReward load_reward(const std::string& folder, bool trainable = false);

}  // namespace lumen::train
