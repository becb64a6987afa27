#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "io/json_output.h"
#include "model/model_info.h"

namespace lumen::cli {
namespace {

// Peak resident set size of this process (VmHWM), in bytes.
int64_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return -1;
}

// Loads every weight and reports time and memory: a load must not hold two copies.
void report_load(const ModelPlan& plan, const LoadOptions& options) {
  int64_t weight_bytes = 0;
  for (const auto& [name, c] : plan.components) weight_bytes += c.parameters * 4;  // float32 in memory
  const auto start = std::chrono::steady_clock::now();
  LoadedModel model = load_model(plan, options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double gib = 1024.0 * 1024.0 * 1024.0;
  std::printf("loaded in %.1f s: weights %.2f GiB (float32), peak RSS %.2f GiB (ratio %.2f)\n", seconds,
              weight_bytes / gib, peak_rss_bytes() / gib, static_cast<double>(peak_rss_bytes()) / weight_bytes);
  for (const auto& note : model.load_notes) std::printf("note: %s\n", note.c_str());
}

}  // namespace

Runner add_info_command(CLI::App& app) {
  struct Options {
    std::string model, config;
    bool json = false, load = false;
  };
  auto opt = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("info", "Describe a model: architecture, parameters, dtypes, what was guessed");
  cmd->add_option("model", opt->model, "diffusers folder or single-file .safetensors checkpoint")->required();
  cmd->add_option("--config", opt->config, "YAML/JSON config overriding detected fields");
  cmd->add_flag("--json", opt->json, "print JSON");
  cmd->add_flag("--load", opt->load, "also load every weight and report load time and peak memory");
  return [opt, cmd]() {
    if (!*cmd) return -1;
    LoadOptions options;
    options.config_override = opt->config;
    ModelPlan plan = plan_model(opt->model, options);
    if (opt->json) std::cout << dump_for_output(plan_to_json(plan), 2) << "\n";
    else std::cout << plan_to_text(plan);
    if (opt->load) report_load(plan, options);
    return 0;
  };
}

}  // namespace lumen::cli
