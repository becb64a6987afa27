// `lumen`: a thin shell over the library. Errors are printed, never thrown out.
#include <iostream>

#include "cli/commands.h"
#include "error.h"
#include "runtime.h"

int main(int argc, char** argv) {
  CLI::App app{"Lumen: Stable-Diffusion-family image generation on LibTorch"};
  app.require_subcommand(1);
  // A repeated option takes its last value, as scripts that append overrides expect.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.set_version_flag("--version", "lumen 0.1.0");
  int threads = 0;
  app.add_option("--threads", threads, "intra-op threads (default: one per core)");
  std::vector<lumen::cli::Runner> runners = {
      lumen::cli::add_generate_commands(app),
      lumen::cli::add_info_command(app),
      lumen::cli::add_shapes_command(app),
      lumen::cli::add_make_random_command(app),
      lumen::cli::add_convert_command(app),
      lumen::cli::add_train_command(app),
      lumen::cli::add_feedback_command(app),
  };
  CLI11_PARSE(app, argc, argv);
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
