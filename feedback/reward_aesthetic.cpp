#include "reward_aesthetic.h"

#include <set>

#include "clip_backbone.h"
#include "error.h"
#include "io/safetensors_torch.h"
#include "reward.h"

namespace lumen::train {
namespace {

const std::vector<int> kLinearLayers{0, 2, 4, 6, 7};
const std::vector<int> kReluLayers{0, 3, 6, 9, 11};

std::set<std::string> keys_of(const std::vector<int>& layers) {
  std::set<std::string> keys;
  for (int i : layers)
    for (const char* p : {".weight", ".bias"}) keys.insert("layers." + std::to_string(i) + p);
  return keys;
}

std::string join(const std::set<std::string>& keys) {
  std::string s;
  for (const auto& k : keys) s += (s.empty() ? "" : ", ") + k;
  return s;
}

std::string shape_str(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? "," : "") + std::to_string(t.size(i));
  return s + "]";
}

}  // namespace

AestheticMlp AestheticMlp::load(const std::string& path) {
  auto tensors = load_safetensors(path);
  std::set<std::string> keys;
  for (const auto& [k, _] : tensors) keys.insert(k);
  AestheticMlp mlp;
  const std::vector<int>* layers = nullptr;
  if (keys == keys_of(kLinearLayers)) layers = &kLinearLayers;
  else if (keys == keys_of(kReluLayers)) layers = &kReluLayers, mlp.relu = true;
  else
    throw Error(path, "not an aesthetic-predictor MLP: expected the keys " + join(keys_of(kLinearLayers)) +
                          " (no ReLU) or " + join(keys_of(kReluLayers)) + " (with ReLU); found " + join(keys));
  int64_t width = -1;
  for (int i : *layers) {
    const std::string name = "layers." + std::to_string(i);
    auto w = tensors.at(name + ".weight"), b = tensors.at(name + ".bias");
    const bool chained = width < 0 || (w.dim() == 2 && w.size(1) == width);
    if (w.dim() != 2 || b.dim() != 1 || b.size(0) != w.size(0) || !chained || !w.is_floating_point() ||
        !b.is_floating_point())
      throw Error(path, "'" + name + "' has weight " + shape_str(w) + " and bias " + shape_str(b) +
                            (width < 0 ? "" : ", the layer before gives " + std::to_string(width)));
    width = w.size(0);
    // Copies in float32: the views would keep the file mapped.
    mlp.weights.push_back(w.to(torch::kFloat, false, true));
    mlp.biases.push_back(b.to(torch::kFloat, false, true));
  }
  if (width != 1) throw Error(path, "the last layer must have one output, it has " + std::to_string(width));
  return mlp;
}

torch::Tensor AestheticMlp::forward(const torch::Tensor& x_in) const {
  auto x = x_in.to(weights[0].scalar_type());
  for (size_t i = 0; i < weights.size(); ++i) {
    x = torch::linear(x, weights[i], biases[i]);
    if (relu && i + 1 < weights.size()) x = torch::relu(x);  // every layer but the last
  }
  return x;
}

void AestheticMlp::to(const torch::Device& device) {
  for (auto& t : weights) t = t.to(device);
  for (auto& t : biases) t = t.to(device);
}

namespace {

class AestheticReward : public ImageReward {
 public:
  AestheticReward(const std::string& folder, const std::string& head, const torch::Device& device)
      : clip_(folder, device), mlp_(AestheticMlp::load(head)) {
    mlp_.to(device);
    if (mlp_.weights[0].size(1) != clip_.model->config.projection_dim)
      throw Error(head, "the MLP takes " + std::to_string(mlp_.weights[0].size(1)) + " inputs, " + folder +
                            " gives " + std::to_string(clip_.model->config.projection_dim) + "-wide embeddings");
  }
  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>&) override {
    return mlp_.forward(nn::l2_normalize(clip_.image_embeds(images))).squeeze(-1).to(torch::kFloat);
  }

 private:
  ClipBackbone clip_;
  AestheticMlp mlp_;
};

}  // namespace

std::unique_ptr<ImageReward> make_aesthetic_reward(const std::string& clip_folder, const std::string& head,
                                                   const torch::Device& device) {
  return std::make_unique<AestheticReward>(clip_folder, head, device);
}

}  // namespace lumen::train
