// `lumen`: a thin shell over the library. Errors are printed, never thrown out.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <new>

#include "cli/commands.h"
#include "error.h"
#include "model/weights.h"
#include "nn/cpu_paths.h"
#include "runtime.h"

// The first word of the command line that should name a (sub)command but names
// none, with the command it was given to ("lumen shapes"); {"", ""} if none.
std::pair<std::string, std::string> unknown_command(CLI::App& app, int argc, char** argv) {
  CLI::App* current = &app;
  std::string path = "lumen";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.empty()) continue;
    if (arg[0] == '-') {
      const CLI::Option* opt = current->get_option_no_throw(arg.substr(0, arg.find('=')));
      if (opt && arg.find('=') == std::string::npos && opt->get_items_expected_min() > 0) ++i;  // its value
      continue;
    }
    if (current->get_subcommands(std::function<bool(CLI::App*)>{}).empty()) return {"", ""};  // a positional argument
    CLI::App* next = nullptr;
    try {
      next = current->get_subcommand(arg);
    } catch (const CLI::OptionNotFound&) {
      return {arg, path};
    }
    current = next;
    path += " " + arg;
  }
  return {"", ""};
}

// What went to standard output must have arrived: `lumen info --json M > f`
// on a full disk exited 0 having written nothing.
int stdout_written() {
  std::cout.flush();
  if (std::cout.good() && std::fflush(stdout) == 0 && !std::ferror(stdout)) return 0;
  std::cerr << "lumen: error: standard output: cannot write (" << std::strerror(errno) << ")\n";
  return 1;
}

int main(int argc, char** argv) {
  CLI::App app{"Lumen: Stable-Diffusion-family image generation on LibTorch"};
  app.require_subcommand(1);
  // A repeated option takes its last value, as scripts that append overrides expect.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.set_version_flag("--version", "lumen 0.1.0");
  int threads = 0;
  app.add_option("--threads", threads, "intra-op threads (default: one per core)")->check(CLI::Range(0, 1024));
  bool prepack_conv = false, f32_attention_scores = false, no_mmap = false, vae_nchw = false;
  std::string subpixel_upsample = "auto";
  app.add_flag("--no-mmap", no_mmap,
               "copy weights into the process instead of using the model file's pages (slower loads, a little less peak RSS)");
  app.add_flag("--f32-attention-scores", f32_attention_scores,
               "bf16: attention scores in f32 (slower, closer to an f32 run)");
  app.add_flag("--prepack-conv", prepack_conv,
               "bf16: keep convolution weights laid out for oneDNN (faster small feature maps, a second copy of the conv weights in memory)");
  app.add_option("--subpixel-upsample", subpixel_upsample,
                 "upsamplers as four 2x2 convolutions of the small map (2.25x less work) instead of one of the 2x map: "
                 "auto (bf16/f16 only: in f32 it peaked higher), on, off")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  app.add_flag("--vae-nchw", vae_nchw,
               "run the VAE on the CPU in NCHW layout instead of channels-last (more peak memory at large sizes)");
#ifdef LUMEN_INFERENCE_ONLY  // CMake's LUMEN_INFERENCE_ONLY: no C API, training or server in this build
  std::vector<lumen::cli::Runner> runners = {
      lumen::cli::add_info_command(app),
      lumen::cli::add_make_random_command(app),
      lumen::cli::add_convert_command(app),
      lumen::cli::add_bench_command(app),
  };
#else
  std::vector<lumen::cli::Runner> runners = {
      lumen::cli::add_generate_commands(app),
      lumen::cli::add_info_command(app),
      lumen::cli::add_shapes_command(app),
      lumen::cli::add_make_random_command(app),
      lumen::cli::add_convert_command(app),
      lumen::cli::add_train_command(app),
      lumen::cli::add_feedback_command(app),
      lumen::cli::add_bench_command(app),
      lumen::cli::add_serve_command(app),
  };
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --help-all, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // A bad command line is a user error like any other: one line, exit code 1.
    const auto [word, command] = unknown_command(app, argc, argv);
    if (!word.empty())
      std::cerr << "lumen: error: '" << word << "' is not a command of " << command << " (" << command
                << " --help lists them)\n";
    else
      std::cerr << "lumen: error: " << e.what() << " (see --help)\n";
    return 1;
  }
  try {
    lumen::set_threads(threads);
    lumen::nn::set_conv_prepack(prepack_conv);
    lumen::nn::set_vae_channels_last(!vae_nchw);
    using lumen::nn::SubpixelUpsample;
    lumen::nn::set_subpixel_upsample(subpixel_upsample == "on"    ? SubpixelUpsample::Always
                                     : subpixel_upsample == "off" ? SubpixelUpsample::Off
                                                                  : SubpixelUpsample::LowPrecision);
    lumen::set_map_weights(!no_mmap);
    lumen::nn::set_bf16_attention_scores(!f32_attention_scores);
    if (lumen::blas_is_reference())
      std::cerr << "warning: LibTorch is using the reference BLAS (" << lumen::loaded_blas_library()
                << "); install libopenblas0-openmp for ~30x faster matrix products\n";
    for (auto& run : runners) {
      int rc = run();
      if (rc >= 0) return rc == 0 ? stdout_written() : rc;
    }
  } catch (const std::bad_alloc&) {
    std::cerr << "lumen: error: out of memory (ask for smaller images, a smaller batch or fewer threads)\n";
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    // "<path>: <reason>" rather than the library's "filesystem error: ..." text.
    std::cerr << "lumen: error: " << e.path1().string() << ": " << e.code().message() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "lumen: error: " << lumen::describe_error(e) << "\n";
    return 1;
  }
  return 0;
}
