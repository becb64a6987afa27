// The perception model of perceptual feedback (PeFL) on ShapesWorld: a small
// U-shaped segmentation network that labels every pixel background or one of
// the three shapes. Trained by a `task: segmenter` recipe on renders and their
// masks; frozen during feedback learning, where its segmentation loss on the
// decoded x0 prediction against the training image's mask is the reward.
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lumen::train {

enum class LossReduction { pixels, shape_area };

struct SegmenterConfig {
  int64_t resolution = 64;              // images must be this size (square)
  std::vector<int64_t> channels{16, 32, 64};
  int64_t classes = 4;
};

struct ConvBlockImpl : torch::nn::Module {
  ConvBlockImpl(int64_t in, int64_t out, int64_t stride = 1);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
};
TORCH_MODULE(ConvBlock);

struct SegmenterImpl : torch::nn::Module {
  explicit SegmenterImpl(SegmenterConfig config);
  // images [B,3,R,R] in [-1,1] → logits [B,classes,R,R].
  torch::Tensor forward(const torch::Tensor& images);
  // The down path's feature maps, coarsest last (the style loss's Gram matrices).
  std::vector<torch::Tensor> features(const torch::Tensor& images);
  // Cross-entropy against labels [B,R,R] (int64), the mean over pixels or each
  // image's sum over its shape's area; errors name the resolution.
  torch::Tensor loss(const torch::Tensor& images, const torch::Tensor& labels,
                     LossReduction reduction = LossReduction::pixels);
  // Per image [B], from logits [B,classes,R,R].
  torch::Tensor image_losses(const torch::Tensor& logits, const torch::Tensor& labels, LossReduction reduction) const;

  SegmenterConfig config;
  torch::nn::ModuleList down{nullptr}, up{nullptr};
  torch::nn::Conv2d head{nullptr};
};
TORCH_MODULE(Segmenter);

nlohmann::json to_json(const SegmenterConfig& c);
SegmenterConfig segmenter_config(const nlohmann::json& j, const std::string& where);

void save_segmenter(const std::string& folder, Segmenter& model, nlohmann::json extra = nlohmann::json::object());
// A trained segmenter, frozen (no gradients to its parameters).
Segmenter load_segmenter(const std::string& folder);

// ShapesWorld's own definition of foreground (SHAPES.md, judging step 1: RGB
// distance to the caption's background above 60), made differentiable: a soft
// mask sigmoid((distance − 60) / 5) of images [B,3,H,W] in [-1,1], and its
// binary cross-entropy against labels > 0 per image [B], reduced as the
// segmenter's loss. `backgrounds` [B,3] in [-1,1]. Unlike a learned
// perception model it cannot be fooled: what it calls foreground is what the
// judge will (a latent fitted to the learned segmenter alone was judged worse
// than the VAE's plain reconstruction; see docs/feedback.md).
torch::Tensor foreground_losses(const torch::Tensor& images, const torch::Tensor& backgrounds, const torch::Tensor& labels,
                                LossReduction reduction);

// ShapesWorld's background criterion (SHAPES.md, judging step 5) made
// differentiable: per image [B], the RGB distance (0-255 units) of the mean
// colour of the pixels outside the judge's foreground mask dilated by 2 px to
// the caption's background — the judge's `bg_error`. The mask is read from the
// image itself, as the judge reads it, and held fixed; the gradient moves the
// background pixels' colour. `backgrounds` [B,3] in [-1,1].
torch::Tensor background_losses(const torch::Tensor& images, const torch::Tensor& backgrounds);

// Mean intersection over union of predicted vs true foreground (any shape label).
double foreground_iou(const torch::Tensor& logits, const torch::Tensor& labels);

}  // namespace lumen::train
