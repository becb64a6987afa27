#include "plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "io/atomic_file.h"

namespace lumen::train {
namespace {

const cv::Scalar kInk(40, 40, 40), kGrid(225, 225, 225), kLine(200, 90, 30);
constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;
constexpr double kTickScale = 0.36, kTitleScale = 0.45;

int text_width(const std::string& text, double scale) {
  int baseline = 0;
  return cv::getTextSize(text, kFont, scale, 1, &baseline).width;
}

void put(cv::Mat& canvas, const std::string& text, cv::Point at, double scale) {
  cv::putText(canvas, text, at, kFont, scale, kInk, 1, cv::LINE_AA);
}

// Ticks and the axis range they span (the range widened to whole ticks).
struct Axis {
  double lo, hi, step;
  std::vector<double> ticks;
};

Axis make_axis(double lo, double hi, int target, double min_step = 0) {
  if (!(hi > lo)) {  // flat data: a small range around it, so the ticks differ
    const double half = std::max(std::abs(lo) * 0.05, 1e-3);
    lo -= half;
    hi += half;
  }
  Axis a;
  a.step = std::max(nice_tick_step(lo, hi, target), min_step);
  a.lo = std::floor(lo / a.step + 1e-9) * a.step;
  a.hi = std::ceil(hi / a.step - 1e-9) * a.step;
  for (double v = a.lo; v <= a.hi + a.step * 1e-6; v += a.step) a.ticks.push_back(std::abs(v) < a.step * 1e-9 ? 0 : v);
  return a;
}

// Training steps: from 0, where training starts, in whole numbers (one point
// at step 2000 was drawn on an axis of 2000.0 … 2001.0).
Axis step_axis(double first, double last) { return make_axis(std::min(0.0, first), std::max(last, 1.0), 6, 1); }

void draw_panel(cv::Mat& canvas, cv::Rect box, const Series& s, bool log_y) {
  cv::rectangle(canvas, box, kInk, 1);
  // Title in its own band above the plot: it never covers a value.
  put(canvas, s.name + (log_y ? " (log scale)" : ""), {box.x + 8, box.y + 16}, kTitleScale);
  std::vector<double> ys;
  for (double y : s.y) ys.push_back(log_y ? std::log10(std::max(y, 1e-12)) : y);
  if (ys.empty()) return;
  const Axis ax = step_axis(s.x.front(), s.x.back());
  const Axis ay = make_axis(*std::min_element(ys.begin(), ys.end()), *std::max_element(ys.begin(), ys.end()), 4);
  std::vector<std::string> y_labels;
  int label_width = 0;
  for (double t : ay.ticks) {
    y_labels.push_back(log_y ? tick_label(std::pow(10, t), std::pow(10, t) / 10) : tick_label(t, ay.step));
    label_width = std::max(label_width, text_width(y_labels.back(), kTickScale));
  }
  const cv::Rect plot(box.x + label_width + 12, box.y + 26, box.width - label_width - 24, box.height - 26 - 34);
  auto px = [&](double x) { return static_cast<int>(plot.x + (x - ax.lo) / (ax.hi - ax.lo) * plot.width); };
  auto py = [&](double y) { return static_cast<int>(plot.y + plot.height - (y - ay.lo) / (ay.hi - ay.lo) * plot.height); };
  for (size_t i = 0; i < ay.ticks.size(); ++i) {
    const int y = py(ay.ticks[i]);
    cv::line(canvas, {plot.x, y}, {plot.x + plot.width, y}, kGrid);
    put(canvas, y_labels[i], {plot.x - 6 - text_width(y_labels[i], kTickScale), y + 4}, kTickScale);
  }
  for (double t : ax.ticks) {
    const int x = px(t);
    cv::line(canvas, {x, plot.y + plot.height}, {x, plot.y + plot.height + 4}, kInk);
    const std::string text = tick_label(t, ax.step);
    put(canvas, text, {x - text_width(text, kTickScale) / 2, plot.y + plot.height + 17}, kTickScale);
  }
  put(canvas, "step", {plot.x + plot.width - text_width("step", kTickScale), box.y + box.height - 4}, kTickScale);
  cv::line(canvas, {plot.x, plot.y + plot.height}, {plot.x + plot.width, plot.y + plot.height}, kInk);
  cv::line(canvas, {plot.x, plot.y}, {plot.x, plot.y + plot.height}, kInk);
  std::vector<cv::Point> points;
  for (size_t i = 0; i < ys.size(); ++i) points.emplace_back(px(s.x[i]), py(ys[i]));
  cv::polylines(canvas, points, false, kLine, 1, cv::LINE_AA);
  if (points.size() < 30)
    for (const auto& p : points) cv::circle(canvas, p, 2, kLine, cv::FILLED, cv::LINE_AA);
}

}  // namespace

std::vector<std::string> step_tick_labels(double first, double last) {
  const Axis a = step_axis(first, last);
  std::vector<std::string> labels;
  for (double t : a.ticks) labels.push_back(tick_label(t, a.step));
  return labels;
}

double nice_tick_step(double lo, double hi, int target) {
  const double raw = (hi - lo) / std::max(target, 1);
  const double magnitude = std::pow(10, std::floor(std::log10(raw)));
  const double norm = raw / magnitude;
  const double nice = norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10;
  return nice * magnitude;
}

std::string tick_label(double value, double step) {
  // As many decimals as the step needs, never an exponent: 3000, 0.25, 0.0005.
  const int decimals = std::clamp(static_cast<int>(std::ceil(-std::log10(step) - 1e-9)), 0, 12);
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

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
