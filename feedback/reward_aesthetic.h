// The LAION "improved aesthetic predictor" head (christophschuhmann/
// improved-aesthetic-predictor): an MLP on L2-normalised CLIP image embeddings.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace lumen::train {

// Two layouts, told apart by their keys (nn.Sequential "layers"):
//  linear (linearMSE checkpoints, ReLUs commented out): Linear at 0,2,4,6,7;
//  relu (reluMSE): Linear,ReLU,Dropout x3, Linear,ReLU, Linear at 0,3,6,9,11.
// Widths come from the weight shapes; Dropout is identity (eval).
struct AestheticMlp {
  static AestheticMlp load(const std::string& safetensors_path);
  // normalized_embeds [N,D] -> scores [N,1]
  torch::Tensor forward(const torch::Tensor& normalized_embeds) const;
  void to(const torch::Device& device);

  std::vector<torch::Tensor> weights, biases;
  bool relu = false;
};

}  // namespace lumen::train
