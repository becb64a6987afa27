// `lumen bench`: where a model's time goes. Times loading, text encoding, one
// UNet step (the CFG batch), VAE decoding and whole generations; counts a UNet
// step's FLOPs and time per layer kind; states the achieved rates as shares of
// the machine's own GEMM and convolution rates measured in the same run.
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nn/op_profile.h"
#include "perf/machine_rates.h"

namespace lumen {

struct BenchOptions {
  std::string preset;      // random weights in this architecture (sd15, sd21, sdxl, shapes, tiny), or
  std::string model_path;  // a model folder or single file
  std::string dtype = "f32";   // f32, bf16 or f16 (f16 on a GPU)
  std::string device = "cpu";  // cpu, cuda or cuda:N (model/device.h)
  int64_t width = 0, height = 0;  // 0: the model's native size
  int64_t steps = 4;              // of each whole generation
  int64_t repeats = 3;            // timed calls of each phase (after one warm-up)
  double cfg_scale = 7.0;
  std::string prompt = "a photograph of an astronaut riding a horse";
  bool vae_tiling = false;  // decode in tiles (vae_decode and generation)
  int64_t vae_tile_size = 0;  // tile side in pixels (0: the VAE's sample size)
  int64_t attention_chunk_bytes = -1;  // score budget of an attention chunk (-1: the default, 0: unchunked)
  bool fast_softmax = true;            // the AVX-512 attention softmax where the CPU has it
  bool fused_attention = true;         // attention in one pass without score matrices (nn/fused_attention.h)
  bool onednn_linear = true;           // linear layers as oneDNN 1x1 convolutions (nn/cpu_paths.h)
  bool weight_as_image = true;         // few-row products with the weight as oneDNN's image (nn/cpu_paths.h)
  bool accuracy = false;  // f32 model only: one seeded generation in f32, then again with the model in bf16
  bool measure_machine = true;
  std::vector<std::string> phases;  // of text_encode, unet_step, vae_decode, generation; empty: all
  std::function<void(const std::string& phase)> on_phase;  // progress, for the CLI
};

struct PhaseTimes {
  std::string name;
  std::vector<double> seconds;
  double min() const;
  double median() const;
};

struct BenchReport {
  std::string model, family, dtype, device;
  int64_t width = 0, height = 0, unet_batch = 0, steps = 0, threads = 0;
  bool vae_tiling = false;
  int64_t attention_chunk_bytes = 0;
  bool fast_softmax = false;  // in use (asked for and supported)
  bool fused_attention = false;
  bool onednn_linear = false;
  bool weight_as_image = false;
  bool conv_prepack = false;  // set by the caller (`lumen --prepack-conv`), reported here
  bool bf16_attention_scores = true;  // `lumen --f32-attention-scores` turns it off
  // --accuracy: bf16 against f32, same seed and steps; PSNR of the final
  // latents (peak: the f32 latents' range) and of the images (peak 1). NaN: not run.
  double bf16_latents_psnr_db = NAN, bf16_image_psnr_db = NAN;
  int64_t unet_parameters = 0;
  std::vector<PhaseTimes> phases;  // load, text_encode, unet_step, vae_decode, generation
  nn::OpTotals unet_step_ops;      // one profiled UNet step
  double unet_step_profiled_seconds = 0;
  nn::OpTotals vae_decode_ops;  // one profiled decode
  double vae_decode_profiled_seconds = 0;
  MachineRates machine;  // zero when not measured
  int64_t weights_bytes = 0, peak_rss_bytes = 0;
  int64_t device_peak_bytes = 0;  // GPU: the most its allocator held for tensors
  const PhaseTimes* phase(const std::string& name) const;
};

BenchReport run_bench(const BenchOptions& options);

// The phases a bench can time, in order (besides loading, always timed).
const std::vector<std::string>& bench_phase_names();

nlohmann::json bench_report_json(const BenchReport& report);
// The human-readable report: phases, the UNet step by layer kind, the machine.
std::string bench_report_text(const BenchReport& report);

}  // namespace lumen
