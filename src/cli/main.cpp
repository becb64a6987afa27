// `lumen`: a thin shell over the library. Errors are printed, never thrown out.
#include <iostream>

#include "cli/commands.h"
#include "error.h"
#include "runtime.h"

// The first word of the command line that is neither an option nor a known
// command, when no command was recognised ("" otherwise).
std::string unknown_command(CLI::App& app, int argc, char** argv) {
  if (!app.get_subcommands().empty()) return "";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--threads") ++i;  // its value
    if (arg.empty() || arg[0] == '-') continue;
    try {
      app.get_subcommand(arg);
    } catch (const CLI::OptionNotFound&) {
      return arg;
    }
    return "";
  }
  return "";
}

int main(int argc, char** argv) {
  CLI::App app{"Lumen: Stable-Diffusion-family image generation on LibTorch"};
  app.require_subcommand(1);
  // A repeated option takes its last value, as scripts that append overrides expect.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.set_version_flag("--version", "lumen 0.1.0");
  int threads = 0;
  app.add_option("--threads", threads, "intra-op threads (default: one per core)")->check(CLI::Range(0, 1024));
  std::vector<lumen::cli::Runner> runners = {
      lumen::cli::add_generate_commands(app),
      lumen::cli::add_info_command(app),
      lumen::cli::add_shapes_command(app),
      lumen::cli::add_make_random_command(app),
      lumen::cli::add_convert_command(app),
      lumen::cli::add_train_command(app),
      lumen::cli::add_feedback_command(app),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --help-all, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // A bad command line is a user error like any other: one line, exit code 1.
    const std::string word = unknown_command(app, argc, argv);
    if (!word.empty())
      std::cerr << "lumen: error: '" << word << "' is not a command (lumen --help lists them)\n";
    else
      std::cerr << "lumen: error: " << e.what() << " (see --help)\n";
    return 1;
  }
  try {
    lumen::set_threads(threads);
    if (lumen::blas_is_reference())
      std::cerr << "warning: LibTorch is using the reference BLAS (" << lumen::loaded_blas_library()
                << "); install libopenblas0-openmp for ~30x faster matrix products\n";
    for (auto& run : runners) {
      int rc = run();
      if (rc >= 0) return rc;
    }
  } catch (const std::exception& e) {
    std::cerr << "lumen: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
