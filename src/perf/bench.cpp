#include "perf/bench.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "convert/arch_detect.h"
#include "error.h"
#include "model/device.h"
#include "model/model_loader.h"
#include "model/random_model.h"
#include "nn/fast_softmax.h"
#include "nn/fused_attention.h"
#include "nn/cpu_paths.h"
#include "nn/layers.h"
#include "nn/vae_tiling.h"
#include "perf/process_memory.h"
#include "perf/stopwatch.h"
#include "pipeline/conditioning.h"
#include "pipeline/memory_estimate.h"
#include "pipeline/pipeline.h"

namespace lumen {
namespace {

// Wall time of `work`, up to the end of the GPU work it queued.
double seconds_of(const std::function<void()>& work, torch::Device device) {
  synchronize(device);
  Stopwatch clock;
  work();
  synchronize(device);
  return clock.lap();
}

// One untimed warm-up call, then `repeats` timed ones.
PhaseTimes time_phase(const std::string& name, int64_t repeats, torch::Device device, const std::function<void()>& work) {
  work();
  PhaseTimes p{name, {}};
  for (int64_t i = 0; i < repeats; ++i) p.seconds.push_back(seconds_of(work, device));
  return p;
}

torch::Dtype dtype_named(const std::string& name) {
  if (name == "f32") return torch::kFloat;
  if (name == "bf16") return torch::kBFloat16;
  if (name == "f16") return torch::kHalf;
  throw Error("--dtype", "'" + name + "' is not one of f32, bf16, f16");
}

int64_t bytes_of(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel() * static_cast<int64_t>(p.element_size());
  return n;
}

std::shared_ptr<LoadedModel> load(const BenchOptions& o, torch::Device device, torch::Dtype dtype, double* seconds) {
  std::shared_ptr<LoadedModel> m;
  *seconds = seconds_of([&] {
    if (!o.preset.empty()) {
      // Random weights are drawn on the CPU: straight in bf16 for a CPU run
      // (the least host memory), else in f32, 4-5x faster, then converted.
      m = make_random_model(o.preset, 0, dtype == torch::kBFloat16 && device.is_cpu());
      move_to_device(*m, device, dtype);
    } else {
      LoadOptions load;
      load.dtype = dtype;
      load.device = device;
      m = std::make_shared<LoadedModel>(load_model(o.model_path, load));
    }
  }, device);
  return m;
}

std::string gflops_text(double flops, double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", seconds > 0 ? flops / seconds / 1e9 : 0.0);
  return buf;
}

// Peak signal-to-noise ratio of `test` against `reference`, in dB (inf when equal).
double psnr_db(const torch::Tensor& reference, const torch::Tensor& test, double peak) {
  const double mse = (reference.to(torch::kDouble) - test.to(torch::kDouble)).pow(2).mean().item<double>();
  return mse == 0 ? INFINITY : 10 * std::log10(peak * peak / mse);
}

}  // namespace

double PhaseTimes::min() const { return seconds.empty() ? 0 : *std::min_element(seconds.begin(), seconds.end()); }
double PhaseTimes::median() const {
  if (seconds.empty()) return 0;
  auto s = seconds;
  std::sort(s.begin(), s.end());
  const size_t n = s.size();
  return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

const PhaseTimes* BenchReport::phase(const std::string& name) const {
  for (const auto& p : phases)
    if (p.name == name) return &p;
  return nullptr;
}

const std::vector<std::string>& bench_phase_names() {
  static const std::vector<std::string> names{"text_encode", "unet_step", "vae_decode", "generation"};
  return names;
}

BenchReport run_bench(const BenchOptions& o) {
  if (o.preset.empty() == o.model_path.empty()) throw Error("bench", "give either a preset or a model");
  for (const auto& p : o.phases)
    if (std::find(bench_phase_names().begin(), bench_phase_names().end(), p) == bench_phase_names().end())
      throw Error("--phases", "unknown phase '" + p + "' (text_encode, unet_step, vae_decode, generation)");
  auto wanted = [&](const std::string& phase) {
    return o.phases.empty() || std::find(o.phases.begin(), o.phases.end(), phase) != o.phases.end();
  };
  if (o.repeats < 1 || o.repeats > 1000) throw Error("--repeats", "must be in 1..1000");
  if (o.steps < 1 || o.steps > 1000) throw Error("--steps", "must be in 1..1000");
  auto note = [&](const std::string& phase) {
    if (o.on_phase) o.on_phase(phase);
  };
  if (o.accuracy && o.dtype != "f32") throw Error("--accuracy", "compares bf16 against f32: run it with --dtype f32");
  const auto device = parse_device(o.device);
  const auto model_dtype = dtype_named(o.dtype);  // checked before anything is measured
  if (o.dtype == "f16" && device.is_cpu())
    throw Error("--dtype f16", "float16 is for GPUs; on a CPU use bf16 or f32");
  BenchReport r;
  r.dtype = o.dtype;
  r.device = device.str();
  r.threads = torch::get_num_threads();
  r.steps = o.steps;
  if (o.attention_chunk_bytes >= 0) nn::set_attention_chunk_bytes(o.attention_chunk_bytes);
  r.attention_chunk_bytes = nn::attention_chunk_bytes();
  nn::set_fast_softmax(o.fast_softmax);
  r.fast_softmax = nn::fast_softmax_enabled();
  nn::set_fused_attention(o.fused_attention);
  r.fused_attention = nn::fused_attention_enabled();
  nn::set_onednn_linear(o.onednn_linear);
  r.onednn_linear = nn::onednn_linear_enabled();
  nn::set_weight_as_image(o.weight_as_image);
  r.weight_as_image = nn::weight_as_image_enabled();
  r.conv_prepack = nn::conv_prepack_enabled();
  r.bf16_attention_scores = nn::bf16_attention_scores();
  if (o.measure_machine) {
    note("machine rates");
    r.machine = measure_machine_rates(1.0, o.device);
  }

  note("load");
  double load_seconds = 0;
  auto model = load(o, device, model_dtype, &load_seconds);
  r.phases.push_back({o.preset.empty() ? "load" : "build_random", {load_seconds}});
  const LoadedModel& m = *model;
  r.model = o.preset.empty() ? o.model_path : "random " + o.preset;
  r.family = family_name(m.plan.family);
  for (const auto& p : m.unet->parameters()) r.unet_parameters += p.numel();
  r.weights_bytes = bytes_of(*m.unet) + bytes_of(*m.vae) + (m.text_encoder ? bytes_of(*m.text_encoder) : 0) +
                    (m.text_encoder_2 ? bytes_of(*m.text_encoder_2) : 0);

  torch::InferenceMode inference;
  const int64_t factor = m.vae->config.downsampling_factor();
  const int64_t native = native_image_size(m);
  r.width = o.width > 0 ? o.width : native;
  r.height = o.height > 0 ? o.height : native;
  GenerationOptions gen;
  gen.prompt = o.prompt;
  gen.width = r.width;
  gen.height = r.height;
  gen.steps = o.steps;
  gen.cfg_scale = o.cfg_scale;
  gen.vae_tiling = r.vae_tiling = o.vae_tiling;
  gen.vae_tile_size = o.vae_tile_size;
  validate_options(gen);
  check_size_factor(gen, factor);
  const bool cfg = o.cfg_scale > 1.0;
  check_generation_fits(m, r.width, r.height, 1, cfg);  // before any phase allocates it
  r.unet_batch = cfg ? 2 : 1;
  const auto dtype = m.unet->conv_in->weight.scalar_type();

  note("text encoding");
  Conditioning cond;
  auto encode = [&] {
    cond = encode_prompts(m, {o.prompt}, {}, {});
    if (cfg) encode_prompts(m, {""}, {}, {});
  };
  if (wanted("text_encode"))
    r.phases.push_back(time_phase("text_encode", o.repeats, device, encode));
  else
    encode();  // the UNet step needs the conditioning

  if (wanted("unet_step")) note("UNet step");
  auto unet = m.unet;
  auto latents = torch::randn({r.unet_batch, m.vae->config.latent_channels, r.height / factor, r.width / factor}).to(device, dtype);
  auto context = cond.context.expand({r.unet_batch, -1, -1}).contiguous().to(dtype);
  nn::AddedConditions added;
  if (m.text_encoder_2) {
    added.text_embeds = cond.pooled.expand({r.unet_batch, -1}).contiguous().to(dtype);
    added.time_ids = torch::tensor({r.height, r.width, int64_t{0}, int64_t{0}, r.height, r.width}, torch::kFloat)
                         .unsqueeze(0)
                         .expand({r.unet_batch, 6});
  }
  const auto t = torch::tensor({500.0});
  auto step = [&] { unet->forward(latents, t, context, added); };
  // A GPU profile waits for the device around each layer call (op_profile.h).
  if (device.is_cuda()) r.unet_step_ops.synchronize = r.vae_decode_ops.synchronize = &synchronize_all_cuda;
  if (wanted("unet_step")) {
    r.phases.push_back(time_phase("unet_step", o.repeats, device, step));
    nn::ScopedOpProfile profile(r.unet_step_ops);
    r.unet_step_profiled_seconds = seconds_of(step, device);
  }

  if (wanted("vae_decode")) note("VAE decode");
  auto vae = m.vae;
  auto one_latent = latents.narrow(0, 0, 1).contiguous();
  auto decode = [&] { o.vae_tiling ? nn::decode_tiled(*vae, one_latent, {o.vae_tile_size}) : vae->decode(one_latent); };
  if (wanted("vae_decode")) {
    r.phases.push_back(time_phase("vae_decode", o.repeats, device, decode));
    nn::ScopedOpProfile profile(r.vae_decode_ops);
    r.vae_decode_profiled_seconds = seconds_of(decode, device);
  }

  if (wanted("generation")) note("generation");
  Pipeline pipeline(model);
  if (wanted("generation")) r.phases.push_back(time_phase("generation", o.repeats, device, [&] { pipeline.generate(gen); }));
  if (o.accuracy) {
    note("bf16 accuracy");
    GenerationOptions seeded = gen;
    seeded.seed = 1;
    const auto reference = pipeline.generate(seeded);
    move_to_device(*model, device, torch::kBFloat16);  // the model is not used in f32 after this
    const auto bf16 = pipeline.generate(seeded);
    const auto& ref_latents = reference.latents;
    r.bf16_latents_psnr_db = psnr_db(ref_latents, bf16.latents, (ref_latents.max() - ref_latents.min()).item<double>());
    r.bf16_image_psnr_db = psnr_db(reference.images, bf16.images, 1.0);
  }
  r.peak_rss_bytes = peak_resident_bytes();
  r.device_peak_bytes = device_peak_bytes(device);
  return r;
}

nlohmann::json bench_report_json(const BenchReport& r) {
  using nlohmann::json;
  json phases = json::object();
  for (const auto& p : r.phases)
    phases[p.name] = {{"seconds", p.seconds}, {"min_s", p.min()}, {"median_s", p.median()}};
  auto by_kind = [](const nn::OpTotals& o) {
    json kinds = json::object();
    for (int k = 0; k < nn::kOpKinds; ++k)
      kinds[nn::op_kind_name(static_cast<nn::OpKind>(k))] = {
          {"gflop", o.flops[k] / 1e9}, {"seconds", o.seconds[k]}, {"calls", o.calls[k]}};
    return kinds;
  };
  double flops = 0, decode_flops = 0;
  for (int k = 0; k < nn::kOpKinds; ++k) {
    flops += r.unet_step_ops.flops[k];
    decode_flops += r.vae_decode_ops.flops[k];
  }
  auto rate = [](const KernelRate& k) { return json{{"gflops", k.gflops}, {"shape", k.shape}}; };
  const PhaseTimes* step = r.phase("unet_step");
  const double step_s = step ? step->median() : 0;
  return {{"model", r.model},
          {"family", r.family},
          {"dtype", r.dtype},
          {"width", r.width},
          {"height", r.height},
          {"unet_batch", r.unet_batch},
          {"generation_steps", r.steps},
          {"vae_tiling", r.vae_tiling},
          {"attention_chunk_bytes", r.attention_chunk_bytes},
          {"fast_softmax", r.fast_softmax},
          {"fused_attention", r.fused_attention},
          {"onednn_linear", r.onednn_linear},
          {"weight_as_image", r.weight_as_image},
          {"conv_prepack", r.conv_prepack},
          {"bf16_attention_scores", r.bf16_attention_scores},
          {"bf16_accuracy", std::isnan(r.bf16_latents_psnr_db)
                                ? json(nullptr)
                                : json{{"latents_psnr_db", r.bf16_latents_psnr_db}, {"image_psnr_db", r.bf16_image_psnr_db}}},
          {"threads", r.threads},
          {"unet_parameters", r.unet_parameters},
          {"weights_bytes", r.weights_bytes},
          {"peak_rss_bytes", r.peak_rss_bytes},
          {"device", r.device},
          {"device_peak_bytes", r.device_peak_bytes},
          {"phases", phases},
          {"unet_step",
           {{"gflop", flops / 1e9},
            {"median_s", step_s},
            {"gflops", step_s > 0 ? flops / step_s / 1e9 : 0},
            {"profiled_s", r.unet_step_profiled_seconds},
            {"by_kind", by_kind(r.unet_step_ops)}}},
          {"vae_decode",
           {{"gflop", decode_flops / 1e9}, {"profiled_s", r.vae_decode_profiled_seconds},
            {"by_kind", by_kind(r.vae_decode_ops)}}},
          {"machine",
           {{"gemm_f32", rate(r.machine.gemm_f32)},
            {"gemm_bf16", rate(r.machine.gemm_bf16)},
            {"conv3x3_f32", rate(r.machine.conv3x3_f32)},
            {"conv3x3_bf16", rate(r.machine.conv3x3_bf16)}}}};
}

std::string bench_report_text(const BenchReport& r) {
  std::ostringstream out;
  char line[256];
  out << r.model << " (" << r.family << ", UNet " << r.unet_parameters / 1000000.0 << "M parameters), " << r.dtype
      << (r.device == "cpu" ? "" : " on " + r.device) << ", " << r.width << "x" << r.height << ", UNet batch "
      << r.unet_batch << ", " << r.threads << " threads"
      << (r.fused_attention ? ", fused attention" : "") << (r.fast_softmax ? "" : ", ATen softmax") << (r.onednn_linear ? "" : ", BLAS linear")
      << (r.weight_as_image ? "" : ", no weight-as-image")
      << (r.conv_prepack ? ", prepacked conv weights" : "")
      << (r.bf16_attention_scores ? "" : ", f32 attention scores") << "\n\n";
  out << "phase            min s   median s   calls\n";
  for (const auto& p : r.phases) {
    std::snprintf(line, sizeof line, "%-14s %7.3f   %8.3f   %5zu\n", p.name.c_str(), p.min(), p.median(),
                  p.seconds.size());
    out << line;
  }
  const bool bf16 = r.dtype == "bf16" || r.dtype == "f16";  // f16 runs on the same tensor cores as bf16
  const double gemm = bf16 ? r.machine.gemm_bf16.gflops : r.machine.gemm_f32.gflops;
  const double conv = bf16 ? r.machine.conv3x3_bf16.gflops : r.machine.conv3x3_f32.gflops;
  auto share = [](double achieved_flops_per_s, double peak_gflops) {
    char buf[16];
    if (peak_gflops <= 0) return std::string("-");
    std::snprintf(buf, sizeof buf, "%.0f%%", 100 * achieved_flops_per_s / 1e9 / peak_gflops);
    return std::string(buf);
  };
  // One table per profiled call: FLOPs, time and rate of each layer kind.
  auto kind_table = [&](const char* title, const nn::OpTotals& ops, double profiled_s) {
    out << "\n" << title << " by layer kind (one profiled call, " << profiled_s << " s)\n";
    out << "kind         GFLOP    seconds   GFLOP/s   share of machine\n";
    double total = 0, counted = 0;
    for (int k = 0; k < nn::kOpKinds; ++k) {
      const auto kind = static_cast<nn::OpKind>(k);
      const double f = ops.flops[k], s = ops.seconds[k];
      total += f;
      counted += s;
      const double peak = kind == nn::OpKind::Conv ? conv : gemm;
      std::snprintf(line, sizeof line, "%-10s %7.1f   %8.3f   %7s   %s\n", nn::op_kind_name(kind), f / 1e9, s,
                    f > 0 ? gflops_text(f, s).c_str() : "-",
                    f > 0 && peak > 0 ? (share(f / s, peak) + (kind == nn::OpKind::Conv ? " of conv" : " of GEMM")).c_str() : "");
      out << line;
    }
    std::snprintf(line, sizeof line, "%-10s %7s   %8.3f\n", "other", "", profiled_s - counted);
    out << line;
    return total;
  };
  if (const PhaseTimes* step = r.phase("unet_step")) {  // not timed: no table of zeros
    const double flops = kind_table("UNet step", r.unet_step_ops, r.unet_step_profiled_seconds);
    const double step_s = step->median();
    out << "whole step: " << flops / 1e9 << " GFLOP in " << step_s << " s (median) = " << gflops_text(flops, step_s)
        << " GFLOP/s: " << share(flops / step_s, conv) << " of the conv rate, " << share(flops / step_s, gemm)
        << " of the GEMM rate\n";
  }
  if (r.phase("vae_decode")) kind_table("VAE decode", r.vae_decode_ops, r.vae_decode_profiled_seconds);
  if (r.machine.gemm_f32.gflops > 0) {
    out << "\nmachine (same run, best call)\n";
    auto rate_line = [&](const char* name, const KernelRate& k) {
      std::snprintf(line, sizeof line, "%-13s %7.1f GFLOP/s  (%s)\n", name, k.gflops, k.shape.c_str());
      out << line;
    };
    rate_line("GEMM f32", r.machine.gemm_f32);
    rate_line("GEMM bf16", r.machine.gemm_bf16);
    rate_line("conv3x3 f32", r.machine.conv3x3_f32);
    rate_line("conv3x3 bf16", r.machine.conv3x3_bf16);
  }
  std::snprintf(line, sizeof line, "\nweights %.2f GB, peak RSS %.2f GB\n", r.weights_bytes / 1e9, r.peak_rss_bytes / 1e9);
  out << line;
  if (r.device_peak_bytes > 0) {
    std::snprintf(line, sizeof line, "peak %s memory (tensors) %.2f GB\n", r.device.c_str(), r.device_peak_bytes / 1e9);
    out << line;
  }
  if (!std::isnan(r.bf16_latents_psnr_db)) {
    std::snprintf(line, sizeof line, "bf16 against f32 (seed 1, %lld steps): latents PSNR %.1f dB, image PSNR %.1f dB\n",
                  static_cast<long long>(r.steps), r.bf16_latents_psnr_db, r.bf16_image_psnr_db);
    out << line;
  }
  return out.str();
}

}  // namespace lumen
