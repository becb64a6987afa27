#include "cli/adapter_options.h"

#include <cmath>
#include <filesystem>
#include <memory>

#include "adapters/lora_apply.h"
#include "adapters/resadapter.h"
#include "error.h"

namespace lumen::cli {

std::pair<std::string, double> split_adapter_scale(const std::string& spec, const std::string& option) {
  const auto colon = spec.rfind(':');
  // A path that exists is taken whole, even with a colon in its name.
  if (colon == std::string::npos || std::filesystem::exists(spec)) return {spec, 1.0};
  const std::string tail = spec.substr(colon + 1);
  size_t used = 0;
  double scale = 0;
  try {
    scale = std::stod(tail, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != tail.size())
    throw Error(option + " " + spec, "'" + tail + "' is not a scale (write PATH:SCALE, e.g. style.safetensors:0.8)");
  if (!std::isfinite(scale)) throw Error(option + " " + spec, "the scale must be a finite number");
  return {spec.substr(0, colon), scale};
}

void merge_adapters(const AdapterOptions& options, LoadedModel& model, std::ostream& log) {
  adapters::LoraStack loras(adapters::adapter_components(model), adapters::ApplyMode::Merge);
  for (const auto& spec : options.loras) {
    const auto [file, scale] = split_adapter_scale(spec, "--lora");
    auto lora = std::make_shared<adapters::LoraFile>(adapters::read_lora_file(file));
    const std::string summary = loras.add(file, lora, scale).summary();  // may throw: print nothing before
    log << "lora " << summary << "\n";
  }
  if (!options.resadapter.empty()) {
    const auto [path, scale] = split_adapter_scale(options.resadapter, "--resadapter");
    const auto mode = options.resadapter_blend ? adapters::NormMode::Blend : adapters::NormMode::Replace;
    adapters::AppliedResAdapter res(model.unet.ptr(), adapters::read_resadapter(adapters::resadapter_files(path)), scale,
                                    mode);
    log << "resadapter " << res.report().summary() << "\n";
  }
}

}  // namespace lumen::cli
