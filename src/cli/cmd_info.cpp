#include <iostream>

#include "cli/commands.h"
#include "model/model_info.h"

namespace lumen::cli {

Runner add_info_command(CLI::App& app) {
  struct Options {
    std::string model, config;
    bool json = false;
  };
  auto opt = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("info", "Describe a model: architecture, parameters, dtypes, what was guessed");
  cmd->add_option("model", opt->model, "diffusers folder or single-file .safetensors checkpoint")->required();
  cmd->add_option("--config", opt->config, "YAML/JSON config overriding detected fields");
  cmd->add_flag("--json", opt->json, "print JSON");
  return [opt, cmd]() {
    if (!*cmd) return -1;
    LoadOptions options;
    options.config_override = opt->config;
    ModelPlan plan = plan_model(opt->model, options);
    if (opt->json) std::cout << plan_to_json(plan).dump(2) << "\n";
    else std::cout << plan_to_text(plan);
    return 0;
  };
}

}  // namespace lumen::cli
