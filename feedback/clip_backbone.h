// A CLIPModel folder ready for scoring: frozen weights, its preprocessing,
// and the image path from [-1,1] images to embeddings. Shared by the CLIP
// and aesthetic rewards.
#pragma once
#include <torch/torch.h>

#include <string>

#include "io/clip_preprocess.h"
#include "nn/clip_vision.h"

namespace lumen::train {

struct ClipBackbone {
  // preprocessor_config.json is used when the folder has one, else CLIP's
  // defaults at the tower's image_size.
  ClipBackbone(const std::string& folder, const torch::Device& device);
  // images [B,3,H,W] in [-1,1] -> image_embeds [B,D] (not normalised), differentiable.
  torch::Tensor image_embeds(const torch::Tensor& images);

  std::string folder;
  nn::ClipModel model{nullptr};
  ClipImageProcessorConfig processor;
  torch::Device device;
};

}  // namespace lumen::train
