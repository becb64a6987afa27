// `lumen bench`: per-phase times, FLOPs by layer kind and the machine's own
// rates, for a preset architecture with random weights or a real model.
#include <iostream>

#include "cli/commands.h"
#include "error.h"
#include "io/json_output.h"
#include "perf/bench.h"
#include "runtime.h"

namespace lumen::cli {

Runner add_bench_command(CLI::App& app) {
  struct Args {
    BenchOptions options;
    std::string dtype = "f32";
    int64_t size = 0;
    double attention_chunk_mb = -1;
    bool json = false, no_machine = false, no_fast_softmax = false, no_fused_attention = false, no_onednn_linear = false, no_weight_as_image = false,
         accuracy = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("bench", "Time a model's phases and count a UNet step's FLOPs against this machine's rates");
  auto* preset = cmd->add_option("--preset", a->options.preset, "random weights in an architecture: sd15, sd21, sdxl, shapes, tiny")
                     ->check(CLI::IsMember({"sd15", "sd21", "sdxl", "shapes", "tiny"}));
  cmd->add_option("-m,--model", a->options.model_path, "a model folder or .safetensors file instead of a preset")
      ->excludes(preset);
  cmd->add_option("--dtype", a->dtype, "f32, bf16, or f16 (GPU)")->check(CLI::IsMember({"f32", "bf16", "f16"}))->capture_default_str();
  cmd->add_option("--device", a->options.device, "cpu, cuda or cuda:N (a LibTorch built with CUDA)")->capture_default_str();
  cmd->add_option("--size", a->size, "width and height in pixels (default: the model's)");
  cmd->add_option("-W,--width", a->options.width, "width in pixels (default: the model's)");
  cmd->add_option("-H,--height", a->options.height, "height in pixels (default: the model's)");
  cmd->add_option("--steps", a->options.steps, "sampling steps of each whole generation")->capture_default_str();
  cmd->add_option("--repeats", a->options.repeats, "timed calls of each phase, after one warm-up")->capture_default_str();
  cmd->add_option("--cfg-scale", a->options.cfg_scale, "guidance scale (> 1: the UNet runs a CFG batch of 2)")
      ->capture_default_str();
  cmd->add_option("--phases", a->options.phases, "only these phases: text_encode, unet_step, vae_decode, generation")
      ->delimiter(',');
  cmd->add_flag("--vae-tiling", a->options.vae_tiling, "decode in overlapping tiles (as txt2img --vae-tiling)");
  cmd->add_option("--attention-chunk-mb", a->attention_chunk_mb, "score budget of one attention chunk in MiB (0: unchunked; default: the library's)");
  cmd->add_option("--vae-tile-size", a->options.vae_tile_size, "with --vae-tiling: tile side in pixels")
      ->check(CLI::Range(int64_t{64}, int64_t{4096}));
  cmd->add_flag("--no-fused-attention", a->no_fused_attention,
                "attention as batched products and a softmax (score matrices in memory) instead of Lumen's fused AVX-512 kernel");
  cmd->add_flag("--no-fast-softmax", a->no_fast_softmax, "attention softmax by LibTorch instead of Lumen's AVX-512 kernel");
  cmd->add_flag("--no-onednn-linear", a->no_onednn_linear, "linear layers by LibTorch's BLAS instead of oneDNN 1x1 convolutions");
  cmd->add_flag("--no-weight-as-image", a->no_weight_as_image,
                "few-row f32 linear layers and few-pixel convolutions without the weight as oneDNN's image");
  cmd->add_flag("--accuracy", a->accuracy, "after the phases: one seeded generation in f32, then in bf16; PSNR of latents and image");
  cmd->add_flag("--no-machine", a->no_machine, "skip measuring the machine's GEMM and convolution rates");
  cmd->add_flag("--json", a->json, "print the report as JSON");
  return [a, cmd]() {
    if (!*cmd) return -1;
    BenchOptions o = a->options;
    if (o.preset.empty() && o.model_path.empty()) o.preset = "sd15";
    if (a->size < 0 || o.width < 0 || o.height < 0) throw Error("--size", "sizes must be positive (0: the model's)");
    if (!(a->attention_chunk_mb >= 0) && a->attention_chunk_mb != -1)
      throw Error("--attention-chunk-mb", "must be a number of MiB ≥ 0");
    if (a->size > 0) o.width = o.height = a->size;
    o.dtype = a->dtype;
    if (o.dtype == "bf16" && o.device == "cpu" && !cpu_runs_bf16_fast())
      std::cerr << "warning: this CPU has no AVX-512: bf16 runs emulated (compare the machine's bf16 and f32 rates)\n";
    o.measure_machine = !a->no_machine;
    o.fast_softmax = !a->no_fast_softmax;
    o.fused_attention = !a->no_fused_attention;
    o.accuracy = a->accuracy;
    o.onednn_linear = !a->no_onednn_linear;
    o.weight_as_image = !a->no_weight_as_image;
    if (a->attention_chunk_mb >= 0) o.attention_chunk_bytes = static_cast<int64_t>(a->attention_chunk_mb * (1 << 20));
    o.on_phase = [](const std::string& phase) { std::cerr << "bench: " << phase << "...\n"; };
    const BenchReport report = run_bench(o);
    if (a->json)
      std::cout << dump_for_output(bench_report_json(report), 2) << "\n";
    else
      std::cout << bench_report_text(report);
    return 0;
  };
}

}  // namespace lumen::cli
