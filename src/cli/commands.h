// The `lumen` subcommands; each registers itself on the CLI11 app and runs
// when selected.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

namespace lumen::cli {

using Runner = std::function<int()>;

Runner add_info_command(CLI::App& app);
Runner add_make_random_command(CLI::App& app);
Runner add_generate_commands(CLI::App& app);
Runner add_shapes_command(CLI::App& app);
Runner add_convert_command(CLI::App& app);
Runner add_train_command(CLI::App& app);
Runner add_feedback_command(CLI::App& app);
Runner add_bench_command(CLI::App& app);
Runner add_serve_command(CLI::App& app);

// A seed option's check: a whole number from 0 to 2^64 − 1 (CLI11 would wrap −1).
inline CLI::Validator seed_check() {
  return CLI::Validator(
      [](std::string& s) {
        return !s.empty() && s[0] == '-' ? "a seed is a whole number from 0 to 18446744073709551615, not " + s
                                         : std::string();
      },
      "SEED");
}

}  // namespace lumen::cli
