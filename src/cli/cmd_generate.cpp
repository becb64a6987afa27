// `lumen txt2img` and `lumen img2img`: options → the C API's generation
// params → PNGs with A1111-style parameters. The CLI generates through the
// same public API an app links (include/lumen/lumen.hpp).
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <iostream>
#include <optional>

#include "cli/adapter_options.h"
#include "cli/commands.h"
#include "cli/progress.h"
#include "error.h"
#include "io/atomic_file.h"
#include "lumen/lumen.hpp"
#include "perf/process_memory.h"
#include "perf/stopwatch.h"
#include "runtime.h"

namespace lumen::cli {
namespace {

struct GenerateArgs {
  std::string model, config, output = "lumen.png", dtype = "f32", device = "cpu";
  std::string prompt, negative_prompt, sampler, rescale_space = "model";
  std::string prediction_type, spacing, init_image, mask;
  AdapterOptions adapters;
  std::string original_size, target_size, crop_top_left;  // SDXL micro-conditioning, "W,H" / "X,Y"
  int64_t steps = 0, width = 0, height = 0, batch_count = 1, batch_size = 1;  // steps 0: the model's
  int clip_skip = 1;
  int64_t vae_tile_size = 0;
  double cfg_scale = -1, guidance_rescale = -1, eta = 0.0, strength = 0.75;  // < 0: the model's
  uint64_t seed = 0;
  bool verbose = false, vae_tiling = false;
  bool overwrite = false, zero_snr = false, no_zero_snr = false, karras = false, plain_prompt = false;
};

void add_generation_options(CLI::App* cmd, GenerateArgs& a) {
  cmd->add_option("-m,--model", a.model, "diffusers folder or .safetensors checkpoint (default: the embedded model)");
  cmd->add_option("--config", a.config, "YAML/JSON overriding detected model config fields");
  cmd->add_option("-p,--prompt", a.prompt, "prompt (A1111 syntax: (word:1.2), [word], BREAK)");
  cmd->add_option("-n,--negative-prompt", a.negative_prompt, "negative prompt");
  cmd->add_option("--sampler", a.sampler, "sampler (default: the model's scheduler)");
  cmd->add_option("--steps", a.steps, "sampling steps (default: the model's, else 20)")->check(CLI::Range(1, 100000));
  cmd->add_option("--cfg-scale", a.cfg_scale, "classifier-free guidance scale (default: the model's, else 7)")
      ->check(finite_non_negative());
  cmd->add_option("--guidance-rescale", a.guidance_rescale, "CFG rescale phi (Lin et al. 2023), 0..1 (default: the model's, else 0)")
      ->check(finite_non_negative());
  cmd->add_option("--rescale-space", a.rescale_space, "apply the rescale to the raw model output (model) or in v-space (v)")
      ->check(CLI::IsMember({"model", "v"}))
      ->capture_default_str();
  cmd->add_option("-W,--width", a.width, "width in pixels (default: the model's)")->check(CLI::Range(0, 65536));
  cmd->add_option("-H,--height", a.height, "height in pixels (default: the model's)")->check(CLI::Range(0, 65536));
  cmd->add_option("-s,--seed", a.seed, "seed; image i of a batch uses seed+i")
      ->check(seed_check())
      ->capture_default_str();
  cmd->add_option("-b,--batch-count", a.batch_count, "number of batches")->capture_default_str();
  cmd->add_option("--batch-size", a.batch_size, "images per batch")->check(CLI::Range(1, 4096))->capture_default_str();
  cmd->add_option("-o,--output", a.output, "PNG file, or a folder for several images")->capture_default_str();
  cmd->add_option("--clip-skip", a.clip_skip, "A1111 numbering: 2 = penultimate layer")->check(CLI::Range(1, 1000))->capture_default_str();
  cmd->add_option("--prediction-type", a.prediction_type, "override: epsilon, v_prediction, sample");
  cmd->add_option("--spacing", a.spacing, "override timestep spacing: leading, trailing, linspace");
  cmd->add_flag("--zero-snr", a.zero_snr, "rescale the schedule to zero terminal SNR");
  cmd->add_flag("--no-zero-snr", a.no_zero_snr, "do not rescale to zero terminal SNR");
  cmd->add_flag("--karras", a.karras, "Karras sigmas (Euler, DPM++)");
  cmd->add_option("--eta", a.eta, "DDIM eta")->capture_default_str();
  cmd->add_flag("--plain-prompt", a.plain_prompt, "no weighting syntax; truncate at 77 tokens (as diffusers)");
  cmd->add_option("--lora", a.adapters.loras, "LoRA/LoCon/LoHa/LoKr file (kohya or diffusers), optionally FILE:SCALE; repeatable")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_option("--resadapter", a.adapters.resadapter,
                  "ResAdapter folder (or LORA_FILE,NORMS_FILE), optionally PATH:SCALE, for sizes the model was not trained at");
  cmd->add_flag("--resadapter-blend", a.adapters.resadapter_blend,
                "blend ResAdapter norms as (1-SCALE)*base + SCALE*adapter instead of replacing them");
  cmd->add_option("--original-size", a.original_size, "SDXL size conditioning WxH (default: the output size)");
  cmd->add_option("--target-size", a.target_size, "SDXL target size conditioning WxH (default: the output size)");
  cmd->add_option("--crop-top-left", a.crop_top_left, "SDXL crop conditioning TOP,LEFT (default: 0,0)");
  cmd->add_option("--dtype", a.dtype, "f32, bf16 or f16")->check(CLI::IsMember({"f32", "bf16", "f16"}))->capture_default_str();
  cmd->add_option("--device", a.device, "cpu, cuda or cuda:N (a LibTorch built with CUDA)")->capture_default_str();
  cmd->add_flag("--overwrite", a.overwrite, "replace existing output files");
  cmd->add_flag("--vae-tiling", a.vae_tiling, "decode in overlapping tiles: bounded memory for large images (not exact)");
  cmd->add_option("--vae-tile-size", a.vae_tile_size, "with --vae-tiling: tile side in pixels (default: the VAE's sample size; smaller: less memory, more seams)")
      ->check(CLI::Range(int64_t{64}, int64_t{4096}));
  cmd->add_flag("-v,--verbose", a.verbose, "print where the time went: load, hash, text encoding, each step, decoding, writing");
}

// The C API's dtype for --dtype/--device; bf16 without AVX-512 warns.
lumen_dtype parse_dtype(const GenerateArgs& a) {
  if (a.dtype == "bf16") {
    if (a.device == "cpu" && !cpu_runs_bf16_fast())
      std::cerr << "warning: this CPU has no AVX-512: bf16 runs emulated, many times slower than f32 "
                   "(lumen bench shows the machine's rates)\n";
    return LUMEN_DTYPE_BF16;
  }
  if (a.dtype == "f16") {
    if (a.device == "cpu") throw Error("--dtype f16", "float16 is for GPUs; on a CPU use bf16 or f32");
    return LUMEN_DTYPE_F16;
  }
  return LUMEN_DTYPE_F32;
}

// "1024x768" → {1024, 768} (width, height); "32,16" → {32, 16} (top, left).
void parse_pair(const std::string& text, char separator, const std::string& option, int out[2]) {
  const auto at = text.find(separator);
  try {
    size_t used_a = 0, used_b = 0;
    const std::string first = text.substr(0, at), second = at == std::string::npos ? "" : text.substr(at + 1);
    const long long x = std::stoll(first, &used_a), y = std::stoll(second, &used_b);
    if (used_a == first.size() && used_b == second.size() && x >= 0 && y >= 0 && x <= 65536 && y <= 65536) {
      out[0] = static_cast<int>(x);
      out[1] = static_cast<int>(y);
      return;
    }
  } catch (const std::exception&) {
  }
  throw Error(option + " " + text, std::string("expected two non-negative integers separated by '") + separator + "'");
}

std::string model_path(const GenerateArgs& a) {
  if (!a.model.empty()) return a.model;
  const std::string embedded = asset_path("default-model");
  if (!std::filesystem::exists(embedded)) {
    const char* override_dir = std::getenv("LUMEN_ASSET_DIR");
    throw Error(embedded, override_dir && *override_dir
                              ? "no embedded default model there: LUMEN_ASSET_DIR=" + std::string(override_dir) +
                                    " names the assets folder; unset it or pass --model"
                              : "the embedded default model is not in this build; pass --model");
  }
  return embedded;
}

// Whether -o names one PNG file (any case of .png) rather than a folder. Any
// other extension is refused: "x.jpg" must not silently become a folder.
bool output_is_png_file(const std::string& output) {
  std::string ext = std::filesystem::path(output).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext == ".png") return true;
  if (!ext.empty() && !std::filesystem::is_directory(output))
    throw Error(output, "Lumen writes PNG images: give a .png file name or a folder");
  return false;
}

// The file to write image `index` of `total` to.
std::string output_path(const GenerateArgs& a, int64_t index, int64_t total, uint64_t seed) {
  if (output_is_png_file(a.output)) {
    if (total > 1) throw Error(a.output, "is one file but " + std::to_string(total) + " images were asked for; give a folder");
    const auto folder = std::filesystem::path(a.output).parent_path();
    std::error_code ec;
    if (!folder.empty() && !std::filesystem::is_directory(folder, ec))
      throw Error(a.output, std::filesystem::exists(folder, ec) ? folder.string() + " is a file, not a folder"
                                                                 : "its folder " + folder.string() + " does not exist");
    return a.output;
  }
  create_output_folder(a.output);
  char name[64];
  std::snprintf(name, sizeof name, "%05lld-%llu.png", static_cast<long long>(index), static_cast<unsigned long long>(seed));
  return a.output + "/" + name;
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f s", s);
  return buf;
}

// The command line as the C API's generation params; options not given stay
// the model's (its lumen_generation.json).
lumen::GenerationParams generation_params(const GenerateArgs& a) {
  lumen::GenerationParams p;
  p.prompt = a.prompt;
  p.negative_prompt = a.negative_prompt;
  p.sampler = a.sampler;
  p.steps = static_cast<int>(a.steps);
  p.cfg_scale = static_cast<float>(a.cfg_scale);
  p.guidance_rescale = static_cast<float>(a.guidance_rescale);
  p.rescale_in_v_space = a.rescale_space == "v";
  p.width = static_cast<int>(a.width);
  p.height = static_cast<int>(a.height);
  p.batch_size = static_cast<int>(a.batch_size);
  p.clip_skip = a.clip_skip;
  p.plain_prompt = a.plain_prompt;
  p.eta = static_cast<float>(a.eta);
  p.strength = static_cast<float>(a.strength);
  p.vae_tiling = a.vae_tiling;
  p.vae_tile_size = static_cast<int>(a.vae_tile_size);
  p.prediction_type = a.prediction_type;
  p.timestep_spacing = a.spacing;
  if (a.zero_snr) p.zero_terminal_snr = 1;
  if (a.no_zero_snr) p.zero_terminal_snr = 0;
  if (a.karras) p.karras_sigmas = 1;
  if (!a.original_size.empty()) parse_pair(a.original_size, 'x', "--original-size", p.original_size);
  if (!a.target_size.empty()) parse_pair(a.target_size, 'x', "--target-size", p.target_size);
  if (!a.crop_top_left.empty()) parse_pair(a.crop_top_left, ',', "--crop-top-left", p.crop_top_left);
  return p;
}

// Applies --lora and --resadapter to the context, a line each on stderr.
void apply_adapters(const AdapterOptions& options, lumen::Context& ctx) {
  for (const auto& spec : options.loras) {
    const auto [file, scale] = split_adapter_scale(spec, "--lora");
    const int id = ctx.apply_lora(file, static_cast<float>(scale));  // may throw: print nothing before
    std::cerr << "lora " << ctx.adapter_summary(id) << "\n";
  }
  if (!options.resadapter.empty()) {
    const auto [path, scale] = split_adapter_scale(options.resadapter, "--resadapter");
    const int id = ctx.apply_resadapter(path, static_cast<float>(scale), options.resadapter_blend);
    std::cerr << "resadapter " << ctx.adapter_summary(id) << "\n";
  }
}

// A client of the C API (include/lumen/lumen.hpp), as any app.
int run_generate(GenerateArgs& a, bool img2img) {
  if (a.batch_count <= 0 || a.batch_count > 10000) throw Error("--batch-count", "must be in 1..10000");
  if (a.zero_snr && a.no_zero_snr) throw Error("--zero-snr", "conflicts with --no-zero-snr");
  lumen_context_params context = lumen_context_default_params();
  context.dtype = parse_dtype(a);
  context.device = a.device.c_str();
  context.config_override = a.config.empty() ? nullptr : a.config.c_str();
  const std::string path = model_path(a);

  lumen::GenerationParams p = generation_params(a);
  std::optional<lumen::Images> init, mask;
  if (img2img) {
    init = lumen::Images::read(a.init_image);
    p.init_image = &(*init)[0];
    if (!a.mask.empty()) {
      mask = lumen::Images::read(a.mask);
      p.mask = &(*mask)[0];
    }
  }
  p.validate();  // before the slow load

  const int64_t total = a.batch_count * a.batch_size;
  if (a.seed > std::numeric_limits<uint64_t>::max() - static_cast<uint64_t>(total - 1))
    throw Error("--seed", "seed + images - 1 must not pass 18446744073709551615 (the seeds would wrap to 0)");
  // Fail on existing outputs before spending minutes on loading and generation.
  for (int64_t i = 0; i < total; ++i) {
    const std::string file = output_path(a, i, total, a.seed + static_cast<uint64_t>(i));
    if (!a.overwrite && std::filesystem::exists(file)) throw Error(file, "already exists (use --overwrite to replace it)");
  }
  Stopwatch clock;
  auto report = [&](const std::string& what) {
    if (a.verbose) std::cerr << "time: " << what << "\n";
  };
  lumen::Context ctx(path, context);
  apply_adapters(a.adapters, ctx);
  report("load " + seconds_text(clock.lap()));

  ProgressBar bar(img2img ? "img2img" : "txt2img");
  lumen_generation_stats stats{};
  stats.struct_size = sizeof stats;
  p.stats = &stats;
  int64_t written = 0;
  for (int64_t b = 0; b < a.batch_count; ++b) {
    p.seed = a.seed + static_cast<uint64_t>(b * a.batch_size);
    p.progress = [&](int step, int steps) {
      bar.update(b * steps + step, a.batch_count * steps);
      return true;
    };
    clock.lap();
    const lumen::Images images = ctx.generate(p);
    report("batch " + std::to_string(b + 1) + ": text encoding " + seconds_text(stats.encode_seconds) + ", " +
           std::to_string(stats.steps) + " steps " + seconds_text(stats.denoise_seconds) +
           (stats.steps > 0 ? " (" + seconds_text(stats.denoise_seconds / stats.steps) + " a step)" : "") +
           ", decoding " + seconds_text(stats.decode_seconds) + ", in all " + seconds_text(clock.lap()));
    for (size_t i = 0; i < images.size(); ++i) {
      const std::string file = output_path(a, written, total, images[i].seed);
      images.write_png(i, file, a.overwrite);
      std::cout << file << "\n";
      ++written;
    }
    report("writing " + seconds_text(clock.lap()));
  }
  if (a.verbose) std::cerr << "peak RSS " << peak_resident_bytes() / (1 << 20) << " MiB\n";
  return 0;
}

}  // namespace

Runner add_generate_commands(CLI::App& app) {
  auto txt = std::make_shared<GenerateArgs>();
  auto img = std::make_shared<GenerateArgs>();
  auto* t2i = app.add_subcommand("txt2img", "Generate images from a prompt");
  add_generation_options(t2i, *txt);
  auto* i2i = app.add_subcommand("img2img", "Generate images from an image and a prompt (with --mask: inpainting)");
  add_generation_options(i2i, *img);
  i2i->add_option("-i,--init-image", img->init_image, "the starting image")->required()->check(CLI::ExistingFile);
  i2i->add_option("--strength", img->strength, "how much to change it, 0..1")->capture_default_str();
  i2i->add_option("--mask", img->mask, "inpainting mask image: white = repaint")->check(CLI::ExistingFile);
  return [=]() {
    if (*t2i) return run_generate(*txt, false);
    if (*i2i) return run_generate(*img, true);
    return -1;
  };
}

}  // namespace lumen::cli
