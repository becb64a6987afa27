// Curves as a PNG (loss, learning curves), drawn with OpenCV.
#pragma once
#include <string>
#include <vector>

namespace lumen::train {

struct Series {
  std::string name;
  std::vector<double> x, y;
};

// One panel per series, stacked (two columns past four); `log_y` per panel. Written atomically.
void write_curves_png(const std::string& path, const std::vector<Series>& series, const std::vector<bool>& log_y);

}  // namespace lumen::train
