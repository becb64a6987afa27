// `lumen make-random`: a random-weight model folder for tests and benchmarks.
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "error.h"
#include "model/random_model.h"

namespace lumen::cli {

Runner add_make_random_command(CLI::App& app) {
  struct Options {
    std::string out, preset = "tiny";
    uint64_t seed = 0;
    bool overwrite = false;
  };
  auto opt = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("make-random", "Write a random-weight model (diffusers layout) for tests and benchmarks");
  cmd->add_option("-o,--output", opt->out, "output folder")->required();
  cmd->add_option("--preset", opt->preset, "sd15, sd21, sdxl (full size), shapes (the default model's architecture) or tiny")->capture_default_str();
  cmd->add_option("-s,--seed", opt->seed, "random seed")->check(seed_check())->capture_default_str();
  cmd->add_flag("--overwrite", opt->overwrite, "replace an existing model folder");
  return [opt, cmd]() {
    if (!*cmd) return -1;
    if (std::filesystem::exists(opt->out) && !opt->overwrite)
      throw Error(opt->out, "already exists (use --overwrite to replace it)");
    write_random_model(opt->out, opt->preset, opt->seed);
    std::cout << "wrote random " << opt->preset << " model to " << opt->out << "\n";
    return 0;
  };
}

}  // namespace lumen::cli
