// Peak memory and time of ONE ReFL-style training step, with and without
// gradient checkpointing: noise latents → UNet (rank-4 LoRA trainable, base
// frozen) → x0 → VAE decode with grad → MSE to a zero image → backward.
// One configuration per process, so peaks do not mix; prints one JSON line.
//   lumen_bench_checkpoint_memory MODEL [--checkpointing on|off] [--size 512] [--threads 2]

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "error.h"
#include "lora_trainable.h"
#include "model/model_loader.h"
#include "perf/process_memory.h"

namespace {

double peak_rss_mb() { return static_cast<double>(lumen::peak_resident_bytes()) / (1 << 20); }

struct Options {
  std::string model;
  bool checkpointing = true;
  int64_t size = 512;
  int threads = 2;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw lumen::Error("bench", arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--checkpointing") {
      const std::string v = value();
      if (v != "on" && v != "off") throw lumen::Error("bench", "--checkpointing is on or off");
      o.checkpointing = v == "on";
    } else if (arg == "--size") {
      o.size = std::stoll(value());
    } else if (arg == "--threads") {
      o.threads = std::stoi(value());
    } else if (o.model.empty() && arg.rfind("--", 0) != 0) {
      o.model = arg;
    } else {
      throw lumen::Error("bench", "unknown argument " + arg);
    }
  }
  if (o.model.empty()) throw lumen::Error("bench", "usage: MODEL [--checkpointing on|off] [--size N] [--threads N]");
  if (o.size <= 0 || o.size % 8 != 0) throw lumen::Error("bench", "--size must be a positive multiple of 8");
  return o;
}

int run(const Options& o) {
  torch::set_num_threads(o.threads);
  lumen::LoadedModel model = lumen::load_model(o.model);
  model.text_encoder = nullptr;  // a fixed random context stands in for it
  model.text_encoder_2 = nullptr;
  for (auto& p : model.unet->parameters()) p.set_requires_grad(false);
  for (auto& p : model.vae->parameters()) p.set_requires_grad(false);
  lumen::train::LoraTargets targets;
  targets.rank = 4;
  targets.alpha = 4;
  const lumen::train::TrainableLora lora(model, targets, 1);
  int64_t lora_params = 0;
  for (const auto& [key, t] : lora.parameters()) lora_params += t.numel();
  model.unet->set_gradient_checkpointing(o.checkpointing);
  model.vae->set_gradient_checkpointing(o.checkpointing);

  const double load_peak = peak_rss_mb();
  const bool reset = lumen::reset_peak_resident();
  const double before_step = peak_rss_mb();

  torch::manual_seed(0);
  const int64_t latent = o.size / 8;
  const auto& cfg = model.unet->config;
  const auto context = torch::randn({1, 77, cfg.cross_attention_dim.back()});
  // SD's scaled-linear schedule at t = 500: x_t = sqrt(a)·x0 + sqrt(1-a)·ε.
  const int64_t t = 500;
  const auto betas = torch::linspace(std::sqrt(0.00085), std::sqrt(0.012), 1000, torch::kDouble).pow(2);
  const double a = torch::cumprod(1 - betas, 0)[t].item<double>();
  const auto x_t = torch::randn({1, cfg.in_channels, latent, latent});

  const auto start = std::chrono::steady_clock::now();
  const auto eps = model.unet->forward(x_t, torch::tensor({static_cast<float>(t)}), context);
  const auto x0 = (x_t - std::sqrt(1 - a) * eps) / std::sqrt(a);
  const auto image = model.vae->decode(model.vae->from_model_latents(x0));
  const auto loss = image.pow(2).mean();
  loss.backward();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  double grad_norm = 0;
  for (const auto& [key, p] : lora.parameters())
    if (p.grad().defined()) grad_norm += p.grad().pow(2).sum().item<double>();
  const nlohmann::json out{{"model", o.model},
                           {"checkpointing", o.checkpointing},
                           {"size", o.size},
                           {"threads", o.threads},
                           {"lora_params", lora_params},
                           {"load_peak_rss_mb", std::lround(load_peak)},
                           {"rss_before_step_mb", std::lround(before_step)},
                           {"peak_rss_mb", std::lround(peak_rss_mb())},
                           {"peak_is_step_only", reset},
                           {"seconds", std::round(seconds * 10) / 10},
                           {"loss", loss.item<double>()},
                           {"lora_grad_norm", std::sqrt(grad_norm)}};
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
