// Curves as a PNG (loss, learning curves), drawn with OpenCV.
#pragma once
#include <string>
#include <vector>

namespace lumen::train {

struct Series {
  std::string name;
  std::vector<double> x, y;
};

// The axes' ticks: a step of 1, 2 or 5 × 10^k giving about `target` intervals
// over [lo, hi], and a tick's label in plain decimals (no exponent), with as
// many digits as the step needs, so neighbouring labels always differ.
double nice_tick_step(double lo, double hi, int target);
std::string tick_label(double value, double step);
// The x axis's labels for a curve over training steps first..last: from 0, whole numbers.
std::vector<std::string> step_tick_labels(double first, double last);

// One panel per series, stacked (two columns past four); `log_y` per panel. Written atomically.
void write_curves_png(const std::string& path, const std::vector<Series>& series, const std::vector<bool>& log_y);

}  // namespace lumen::train
