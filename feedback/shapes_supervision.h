// What ShapesWorld knows about an image beyond its pixels, as tensors for the
// perception and reward models: per-pixel labels (which shape covers it) and
// a caption's attributes as one-hot groups. Also the preference pairs the
// decoupled reward models learn from: the right render against one that is
// wrong in a single dimension.
#pragma once
#include <torch/torch.h>

#include <random>
#include <string>
#include <vector>

#include "shapes/shapes_world.h"

namespace lumen::train {

// Label classes of the segmentation (perception) model.
inline constexpr int64_t kLabelClasses = 1 + static_cast<int64_t>(shapes::kShapes.size());  // background + shapes

// [H,W] int64: 0 where the shape covers less than half a pixel, else 1 + its shape index.
torch::Tensor label_map(const shapes::Caption& drawn, int width, int height, shapes::Jitter jitter);

// Every full caption a caption stands for: itself if full, else one per value
// of its dropped size and/or position.
std::vector<shapes::Caption> completions(const shapes::Caption& caption);

// Label classes of a colour-reading segmenter: background + every shape in
// every colour (1 + shape·6 + colour), so its loss judges colour as well.
inline constexpr int64_t kColourLabelClasses = 1 + static_cast<int64_t>(shapes::kShapes.size() * shapes::kColours.size());
// Shape labels [B,H,W] → colour-shape labels, each image's colour from its caption.
torch::Tensor with_colours(const torch::Tensor& shape_labels, const std::vector<std::string>& captions);
// The labels a segmenter with `classes` classes is judged against: the shape
// labels as they are (kLabelClasses) or with colours (kColourLabelClasses).
torch::Tensor segmenter_labels(int64_t classes, const torch::Tensor& shape_labels, const std::vector<std::string>& captions);

// One-hot attribute groups (colour 6, shape 3, size 2, position 5, background 3);
// a dropped size or position leaves its group at zero.
inline constexpr int64_t kCaptionFeatures = 19;
torch::Tensor caption_features(const shapes::Caption& caption);  // [19] float32
// [B,19]; throws lumen::Error for a caption that is not a ShapesWorld caption.
torch::Tensor caption_features(const std::vector<std::string>& captions);

// A caption's background colour [3] in [-1,1], as image tensors hold colours.
torch::Tensor background_colour(const shapes::Caption& caption);
// [B,3]; throws lumen::Error for a caption that is not a ShapesWorld caption.
torch::Tensor background_colours(const std::vector<std::string>& captions);

// The aesthetic dimensions of ShapesWorld, each judged by its own reward model;
// `global` is the ablation's single reward for all of them.
enum class RewardDimension { colour, shape, layout, background, global };
const char* dimension_name(RewardDimension d);
RewardDimension parse_dimension(const std::string& name, const std::string& where);

struct PreferencePair {
  shapes::Caption caption;  // full caption, the preferred image's
  RgbImage preferred, rejected;
};
// The preferred image renders `caption` (jittered); the rejected one differs in
// `dimension` alone (global: one dimension drawn at random). Background
// rejects are another background colour or the right one off by a tint.
PreferencePair preference_pair(const shapes::Caption& caption, RewardDimension dimension, int width, int height,
                               std::mt19937_64& rng);

// Light corruptions (noise, blur, contrast) so that perception and reward
// models trained on clean renders also read a generator's imperfect images.
// images [B,3,H,W] in [-1,1]; `strength` in [0,1].
torch::Tensor corrupt(const torch::Tensor& images, double strength, at::Generator& gen);

}  // namespace lumen::train
