// --lora FILE[:SCALE] and --resadapter PATH[:SCALE], shared by the commands
// that merge adapters into a loaded model.
#pragma once
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "model/model_loader.h"

namespace lumen::cli {

// "FILE:0.8" -> {"FILE", 0.8}; without a numeric tail the whole text is the path, at scale 1.
std::pair<std::string, double> split_adapter_scale(const std::string& spec, const std::string& option);

struct AdapterOptions {
  std::vector<std::string> loras;  // FILE[:SCALE]
  std::string resadapter;          // PATH[:SCALE]
  bool resadapter_blend = false;
};

// Merges the adapters into the model's weights (never unmerged); one summary line each on `log`.
void merge_adapters(const AdapterOptions& options, LoadedModel& model, std::ostream& log);

}  // namespace lumen::cli
