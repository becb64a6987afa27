// The ShapesWorld judge ("Judging an image" in /work/shared/SHAPES.md): does an
// image show what its full caption asked for? Torch-free.
#pragma once
#include <array>
#include <vector>

#include "io/image_io.h"
#include "shapes/shapes_world.h"

namespace lumen::shapes {

// Thresholds of the contract.
inline constexpr double kForegroundDistance = 60;      // RGB distance to the background
inline constexpr double kMinObjectFraction = 0.005;    // of W·H
inline constexpr double kSquareFill = 0.89;            // fill ratio >= : square
inline constexpr double kCircleFill = 0.64;            // fill ratio >= (and < square): circle
inline constexpr double kBackgroundTolerance = 12;     // RGB distance
inline constexpr int kBackgroundDilation = 2;          // pixels

struct Judgement {
  Caption asked;
  int objects = 0;  // components of at least kMinObjectFraction·W·H
  bool single = false, colour = false, shape = false, position = false, size = false, background = false;
  bool correct = false;
  double bg_error = 0;  // RGB distance of the background's mean to the asked one (infinite if none is left)
  double luma = 0;      // mean of 0.299R + 0.587G + 0.114B over the image, 0-255
  // Structure beside the pass/fail criteria: IoU of the foreground mask (step 1)
  // with the foreground mask of the unjittered render at the same size (so a
  // perfect render scores 1); 0 for an empty image, 1 when both masks are empty.
  double mask_iou = 0;
  // What the largest object measured (zeros when there is none), for reports.
  Colour nearest_colour = Colour::red;
  double fill_ratio = 0;
  double centroid_x = 0, centroid_y = 0;  // fractions of W and H; pixel x's centre is x + 0.5
  double size_ratio = 0;                  // sqrt(bounding-box area) / min(W, H)
};

// Judges `image` against a full caption; throws lumen::Error for a partial one.
// Two choices the contract leaves open: the median of an even count is the mean
// of the two middle values, and the 2 px dilation is by a 5x5 square (Chebyshev
// distance, matching 8-connectivity).
Judgement judge(const RgbImage& image, const Caption& asked);

struct JudgeSummary {
  struct Rates {
    int images = 0;
    double single = 0, colour = 0, shape = 0, position = 0, size = 0, background = 0, correct = 0;
    double mask_iou = 0;  // mean over the images
  };
  struct PerBackground {
    int images = 0;
    double mean_bg_error = 0, mean_luma = 0;
  };
  Rates all;
  Rates eval, seen;  // over the images whose caption is in that split (the headline figures)
  std::array<PerBackground, kBackgrounds.size()> per_background;  // in table order, by the asked background
  double luma_mean = 0, luma_spread = 0;  // spread: population standard deviation over images
};

JudgeSummary summarize(const std::vector<Judgement>& judgements);

}  // namespace lumen::shapes
