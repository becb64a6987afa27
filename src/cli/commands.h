// The `lumen` subcommands; each registers itself on the CLI11 app and runs
// when selected.
#pragma once
#include <CLI/CLI.hpp>
#include <cmath>
#include <functional>
#include <string>

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
        // CLI11 saturates what does not fit in 64 bits: check the digits ourselves.
        const std::string max = "18446744073709551615";
        const size_t digits = s.find_first_not_of('0') == std::string::npos ? 1 : s.size() - s.find_first_not_of('0');
        const bool whole = !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
        const bool fits = whole && (digits < max.size() || (digits == max.size() && s.substr(s.size() - digits) <= max));
        return fits ? std::string() : "a seed is a whole number from 0 to " + max + ", not " + s;
      },
      "SEED");
}

// A finite number ≥ 0 (CLI11's NonNegativeNumber names a 309-digit bound for "inf").
inline CLI::Validator finite_non_negative() {
  return CLI::Validator(
      [](std::string& s) {
        try {
          size_t used = 0;
          const double v = std::stod(s, &used);
          if (used == s.size() && std::isfinite(v) && v >= 0) return std::string();
        } catch (const std::exception&) {
        }
        return "must be a finite number >= 0, not " + s;
      },
      "NUMBER >= 0");
}

}  // namespace lumen::cli
