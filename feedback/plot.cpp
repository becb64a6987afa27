#include "plot.h"

#include <algorithm>
#include <cmath>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>

#include "io/atomic_file.h"

namespace lumen::train {
namespace {

std::string label(double v) {
  std::ostringstream s;
  s.precision(3);
  s << v;
  return s.str();
}

void draw_panel(cv::Mat& canvas, cv::Rect box, const Series& s, bool log_y) {
  const cv::Scalar ink(40, 40, 40), grid(220, 220, 220), line(200, 90, 30);
  cv::rectangle(canvas, box, ink, 1);
  cv::putText(canvas, s.name, {box.x + 6, box.y + 16}, cv::FONT_HERSHEY_SIMPLEX, 0.45, ink, 1, cv::LINE_AA);
  std::vector<double> ys;
  for (double y : s.y) ys.push_back(log_y ? std::log10(std::max(y, 1e-12)) : y);
  if (ys.empty()) return;
  double x0 = s.x.front(), x1 = s.x.back(), y0 = *std::min_element(ys.begin(), ys.end()),
         y1 = *std::max_element(ys.begin(), ys.end());
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y1 = y0 + 1e-6;
  const int pad = 24;
  auto px = [&](double x) { return box.x + pad + (x - x0) / (x1 - x0) * (box.width - 2 * pad); };
  auto py = [&](double y) { return box.y + box.height - pad - (y - y0) / (y1 - y0) * (box.height - 2 * pad); };
  for (int i = 0; i <= 4; ++i) {
    const double y = y0 + (y1 - y0) * i / 4;
    cv::line(canvas, {box.x + pad, static_cast<int>(py(y))}, {box.x + box.width - pad, static_cast<int>(py(y))}, grid);
    cv::putText(canvas, label(log_y ? std::pow(10, y) : y), {box.x + 2, static_cast<int>(py(y)) - 2},
                cv::FONT_HERSHEY_SIMPLEX, 0.3, ink, 1, cv::LINE_AA);
  }
  cv::putText(canvas, "step " + label(x0), {box.x + pad, box.y + box.height - 6}, cv::FONT_HERSHEY_SIMPLEX, 0.35,
              ink, 1, cv::LINE_AA);
  cv::putText(canvas, label(x1), {box.x + box.width - pad - 40, box.y + box.height - 6}, cv::FONT_HERSHEY_SIMPLEX,
              0.35, ink, 1, cv::LINE_AA);
  std::vector<cv::Point> points;
  for (size_t i = 0; i < ys.size(); ++i) points.emplace_back(static_cast<int>(px(s.x[i])), static_cast<int>(py(ys[i])));
  cv::polylines(canvas, points, false, line, 1, cv::LINE_AA);
  if (points.size() < 30)
    for (const auto& p : points) cv::circle(canvas, p, 2, line, cv::FILLED, cv::LINE_AA);
}

}  // namespace

void write_curves_png(const std::string& path, const std::vector<Series>& series, const std::vector<bool>& log_y) {
  const int width = 640, panel = 240;
  const int columns = series.size() > 4 ? 2 : 1;  // feedback runs log many curves
  const int rows = (static_cast<int>(std::max<size_t>(series.size(), 1)) + columns - 1) / columns;
  cv::Mat canvas(panel * rows, width * columns, CV_8UC3, cv::Scalar(255, 255, 255));
  for (size_t i = 0; i < series.size(); ++i) {
    const int row = static_cast<int>(i) / columns, column = static_cast<int>(i) % columns;
    draw_panel(canvas, cv::Rect(column * width + 4, row * panel + 4, width - 8, panel - 8), series[i],
               i < log_y.size() && log_y[i]);
  }
  std::vector<uchar> png;
  cv::imencode(".png", canvas, png);
  write_file_atomically(path, [&](std::ostream& out) { out.write(reinterpret_cast<const char*>(png.data()), png.size()); });
}

}  // namespace lumen::train
