#include "trainer.h"

#include <ATen/autocast_mode.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "datasets.h"
#include "distributed.h"
#include "error.h"
#include "io/atomic_file.h"
#include "io/image_io.h"
#include "io/safetensors_torch.h"
#include "io/text_file.h"
#include "model_folder.h"
#include "objective.h"
#include "plot.h"
#include "runtime.h"
#include "tensorboard_writer.h"

namespace lumen::train {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

double learning_rate(const OptimizerSpec& o, int64_t step, int64_t steps) {
  double lr = o.lr;
  if (o.lr_schedule == "cosine") {
    const double progress = static_cast<double>(step) / static_cast<double>(std::max<int64_t>(steps, 1));
    lr *= o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + std::cos(M_PI * progress));
  }
  if (o.warmup_steps > 0) lr *= std::min(1.0, static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps));
  return lr;
}

// Exponential moving average of the trainable parameters, with the usual
// warm-up (decay min(d, (1+k)/(10+k))) so early steps are not dominated by the init.
class Ema {
 public:
  Ema(const NamedTensors& params, double decay) : decay_(decay) {
    torch::NoGradGuard no_grad;
    for (const auto& [name, p] : params) shadow_.emplace_back(name, p.detach().clone());
  }
  void update(const NamedTensors& params, int64_t step) {
    torch::NoGradGuard no_grad;
    const double d = std::min(decay_, (1.0 + static_cast<double>(step)) / (10.0 + static_cast<double>(step)));
    for (size_t i = 0; i < params.size(); ++i) shadow_[i].second.mul_(d).add_(params[i].second.detach(), 1 - d);
  }
  // Runs `fn` with the EMA weights in the model, then puts the trained ones back.
  template <class Fn>
  void with_weights(const NamedTensors& params, Fn fn) {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> backup;
    for (size_t i = 0; i < params.size(); ++i) {
      backup.push_back(params[i].second.detach().clone());
      params[i].second.detach().copy_(shadow_[i].second);
    }
    try {
      fn();
    } catch (...) {
      for (size_t i = 0; i < params.size(); ++i) params[i].second.detach().copy_(backup[i]);
      throw;
    }
    for (size_t i = 0; i < params.size(); ++i) params[i].second.detach().copy_(backup[i]);
  }
  NamedTensors& shadow() { return shadow_; }

 private:
  double decay_;
  NamedTensors shadow_;
};

std::map<std::string, torch::Tensor> as_map(const NamedTensors& named) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, t] : named) out[name] = t.detach();
  return out;
}

void load_into(const NamedTensors& params, const std::string& file) {
  const auto stored = load_safetensors(file);
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : params) {
    auto it = stored.find(name);
    if (it == stored.end()) throw Error(file, "checkpoint has no tensor '" + name + "' (was the recipe changed?)");
    if (it->second.sizes() != p.sizes()) throw Error(file, "tensor '" + name + "' has another shape than the model's");
    // A damaged checkpoint must not carry NaN silently into the final model.
    if (!it->second.is_floating_point() || !torch::isfinite(it->second).all().item<bool>())
      throw Error(file, "tensor '" + name + "' holds non-finite or non-float values (a damaged checkpoint?)");
    p.detach().copy_(it->second);
  }
}

// The step of a checkpoint folder's name, "step-<digits>" as step_name writes
// it; nullopt for anything else (a ".tmp" left by a kill, a user's folder).
std::optional<int64_t> checkpoint_step(const std::string& name) {
  const std::string prefix = "step-";
  if (name.size() < prefix.size() + 8 || name.size() > prefix.size() + 10 || name.compare(0, prefix.size(), prefix) != 0)
    return std::nullopt;
  const std::string digits = name.substr(prefix.size());
  if (digits.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::stoll(digits);
}

// Checkpoint folders by step, oldest first.
std::vector<std::pair<int64_t, fs::path>> checkpoint_folders(const std::string& dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (auto step = checkpoint_step(entry.path().filename().string()); step && entry.is_directory(ec))
      out.emplace_back(*step, entry.path());
  std::sort(out.begin(), out.end());
  return out;
}

// A checkpoint's state.json, checked against its folder and the recipe.
int64_t checkpoint_state_step(const std::string& folder, const json& state, const Recipe& recipe, double* seconds) {
  const std::string file = folder + "/state.json";
  if (!state.is_object() || !state.contains("step") || !state["step"].is_number_integer())
    throw Error(file, "has no integer 'step' (a damaged checkpoint?)");
  const int64_t step = state["step"].get<int64_t>();
  if (checkpoint_step(fs::path(folder).filename().string()) != step || step < 0 || step > recipe.steps)
    throw Error(file, "says step " + std::to_string(step) + ", which is not its folder's step within the recipe's " +
                          std::to_string(recipe.steps) + " (a damaged checkpoint?)");
  if (state.contains("task") && state["task"] != task_name(recipe.task))
    throw Error(file, "is a checkpoint of a '" + state["task"].dump() + "' run, not of this recipe's '" +
                          task_name(recipe.task) + "'");
  *seconds = state.contains("train_seconds") && state["train_seconds"].is_number() ? state["train_seconds"].get<double>() : 0.0;
  return step;
}

// An exclusive lock on OUTPUT/.lock for the run's life: two processes writing
// one run folder would delete each other's checkpoints and metrics.
class RunLock {
 public:
  explicit RunLock(const std::string& folder) : path_(folder + "/.lock") {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error(path_, std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd_);
      throw Error(folder, "is in use by another lumen run (it holds " + path_ + ")");
    }
  }
  ~RunLock() { ::close(fd_); }
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  std::string path_;
  int fd_ = -1;
};

// The newest complete checkpoint folder (its state.json is written last), or "".
std::string latest_checkpoint(const std::string& dir) {
  const auto all = checkpoint_folders(dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it)
    if (fs::exists(it->second / "state.json")) return it->second.string();
  return "";
}

class MetricsLog {
 public:
  // Keeps the lines of steps ≤ `keep_until` (a resumed run rewrites what came after).
  MetricsLog(std::string path, int64_t keep_until) : path_(std::move(path)) {
    std::ifstream in(path_);
    std::string line, kept;
    while (std::getline(in, line)) {
      try {
        auto j = json::parse(line);
        if (j.value("step", int64_t{0}) > keep_until) continue;
        kept += line + "\n";
        remember(j);
      } catch (const json::exception&) {
        // a torn last line from an interrupted run: dropped
      }
    }
    write_text_atomically(path_, kept);
    out_.open(path_, std::ios::app);
    if (!out_) throw Error(path_, "cannot write the metrics log");
  }
  void write(const json& record) {
    out_ << record.dump() << "\n";
    out_.flush();
    remember(record);
  }
  // The loss panel always; a judged panel once its metric has been logged.
  void plot(const std::string& png) const {
    std::vector<Series> series;
    std::vector<bool> log_y;
    for (const Curve& c : curves_) {
      if (c.key != std::string("loss") && c.points.x.empty()) continue;
      series.push_back(c.points);
      log_y.push_back(c.log_y);
    }
    write_curves_png(png, series, log_y);
  }

 private:
  struct Curve {
    const char* key;  // the metrics record's field
    bool log_y;
    Series points;
  };
  // The record's points on the curves it belongs to.
  void remember(const json& record) {
    for (Curve& c : curves_) {
      if (!record.contains(c.key)) continue;
      c.points.x.push_back(record["step"].get<double>());
      c.points.y.push_back(record[c.key].get<double>());
    }
  }
  std::string path_;
  std::ofstream out_;
  std::vector<Curve> curves_{{"loss", true, {"loss (mean over the log interval)", {}, {}}},
                             {"correct", false, {"judged correct (ShapesWorld seen captions)", {}, {}}},
                             {"unseen_correct", false, {"judged correct (ShapesWorld unseen captions)", {}, {}}},
                             {"mask_iou", false, {"mask IoU vs the ideal render (seen captions)", {}, {}}},
                             // judges being trained
                             {"fg_iou", false, {"segmenter: foreground IoU (training batch)", {}, {}}},
                             {"held_out_iou", false, {"segmenter: foreground IoU (held-out renders)", {}, {}}},
                             {"pair_accuracy", false, {"reward: pairwise accuracy (training batch)", {}, {}}},
                             {"held_out_pair_accuracy", false, {"reward: pairwise accuracy (held-out pairs)", {}, {}}},
                             // feedback learning: each term as logged (rewards should rise, losses fall)
                             {"pefl", false, {"perceptual feedback loss (segmentation of x0)", {}, {}}},
                             {"x0_bg_error", false, {"background error of x0 (judge's bg_error, 0-255 RGB)", {}, {}}},
                             {"denoise", true, {"denoising loss (regulariser)", {}, {}}},
                             {"reward_colour", false, {"reward: colour (mean on x0)", {}, {}}},
                             {"reward_shape", false, {"reward: shape (mean on x0)", {}, {}}},
                             {"reward_layout", false, {"reward: layout (mean on x0)", {}, {}}},
                             {"reward_background", false, {"reward: background (mean on x0)", {}, {}}},
                             {"reward_global", false, {"reward: global (mean on x0)", {}, {}}},
                             {"reward_clip", false, {"reward: CLIP preference (mean on x0)", {}, {}}},
                             {"reward_aesthetic", false, {"reward: LAION aesthetic (mean on x0)", {}, {}}},
                             {"reward_torchscript", false, {"reward: TorchScript (mean on x0)", {}, {}}},
                             {"d_loss", false, {"discriminator loss", {}, {}}},
                             {"g_loss", false, {"generator adversarial loss (-r_a)", {}, {}}}};
};

// bf16 autocast on the CPU for the forward pass; weights, gradients and the
// optimiser stay float32.
struct AutocastScope {
  explicit AutocastScope(bool on) : on_(on) {
    if (!on_) return;
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  }
  ~AutocastScope() {
    if (!on_) return;
    at::autocast::set_cpu_enabled(false);
    at::autocast::clear_cache();
  }
  bool on_;
};

void print_progress(bool enabled, int64_t step, int64_t steps, double loss, double elapsed) {
  if (!enabled) return;
  const int width = 30;
  const int filled = static_cast<int>(width * step / std::max<int64_t>(steps, 1));
  std::fprintf(stderr, "\rtrain [%s%s] %lld/%lld loss %.4f %.0fs", std::string(filled, '#').c_str(),
               std::string(width - filled, '.').c_str(), static_cast<long long>(step), static_cast<long long>(steps),
               loss, elapsed);
  if (step == steps) std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

}  // namespace

TrainResult run_training(const Recipe& recipe, const TrainOptions& options) {
  if (recipe.threads > 0) set_threads(recipe.threads);
  // Several processes (torchrun's variables): a step is `shards` batches, shard
  // k drawn from stream step·shards + k; rank r takes shards r, r + world, …
  // (one, stream step·world + r, by default). Only rank 0 writes the run folder.
  const LaunchEnv launch = launch_env_from_environment();
  const bool writer = launch.rank == 0;
  const auto world = static_cast<int64_t>(launch.world_size);
  const int64_t shards = recipe.data_shards > 0 ? recipe.data_shards : world;
  if (shards % world != 0)
    throw Error(recipe.file, "data_shards: " + std::to_string(shards) + " is not a multiple of WORLD_SIZE=" +
                                 std::to_string(world) + " (each process takes the same number of shards)");
  const int64_t local_shards = shards / world;
  if (local_shards > 1 && recipe.task == Task::Feedback)
    throw Error(recipe.file, "data_shards above the number of processes (gradient accumulation) is not supported "
                             "by task: feedback (its discriminator steps inside each batch)");
  const std::string out = recipe.output;
  const std::string ckpt_dir = out + "/checkpoints";
  const std::string resume_from = latest_checkpoint(ckpt_dir);
  if (fs::exists(out) && !fs::is_directory(out)) throw Error(out, "is not a folder; output names the run's folder");
  if (fs::exists(out) && !fs::is_empty(out)) {
    // Never write a run into a folder of the user's own files.
    if (!fs::exists(out + "/recipe.yaml"))
      throw Error(out, "holds files but no training run (no recipe.yaml); choose a new or empty folder");
    if (!options.resume)
      throw Error(out, "already holds a training run; pass --resume to continue it, or choose another output");
  }
  if (fs::exists(out + "/final/DONE")) throw Error(out, "this run has finished; its model is in " + out + "/final");
  // Data and models first: a recipe that cannot start must not leave a run folder behind.
  auto dataset = make_dataset(recipe.dataset);
  auto objective = make_objective(recipe, *dataset);
  const NamedTensors params = objective->trainable();
  std::vector<torch::Tensor> tensors;
  for (const auto& [name, p] : params) {
    p.set_requires_grad(true);
    tensors.push_back(p);
  }
  // The rendezvous: every rank has passed the checks above before rank 0 writes.
  std::unique_ptr<DataParallel> parallel;
  if (launch.distributed()) {
    parallel = std::make_unique<DataParallel>(launch, tensors, static_cast<size_t>(launch.bucket_mb) << 20);
    objective->use_data_parallel(parallel.get());
  }

  const std::string recipe_text = read_text(recipe.file);
  std::optional<RunLock> lock;
  if (writer) {
    fs::create_directories(ckpt_dir);
    lock.emplace(out);
    if (options.resume && resume_from.empty() && fs::exists(out + "/metrics.jsonl"))
      std::fprintf(stderr, "warning: %s has no complete checkpoint left; starting again from step 0\n", out.c_str());
    fs::create_directories(out + "/samples");
    if (!fs::exists(out + "/recipe.yaml")) {
      write_text_atomically(out + "/recipe.yaml", recipe_text);
    } else if (read_text(out + "/recipe.yaml") != recipe_text) {
      std::fprintf(stderr, "warning: %s differs from the recipe this run started with (%s/recipe.yaml)\n",
                   recipe.file.c_str(), out.c_str());
    }
  }
  const auto& o = recipe.optimizer;
  torch::optim::AdamW optimizer(
      tensors, torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay));
  std::unique_ptr<Ema> ema;
  if (recipe.ema_decay > 0) ema = std::make_unique<Ema>(params, recipe.ema_decay);

  TrainResult result;
  double previous_seconds = 0;
  if (!resume_from.empty()) {
    const json state = read_json_file(resume_from + "/state.json");
    result.first_step = checkpoint_state_step(resume_from, state, recipe, &previous_seconds);
    load_into(params, resume_from + "/trainable.safetensors");
    if (ema) load_into(ema->shadow(), resume_from + "/ema.safetensors");
    load_optimizer_state(optimizer, resume_from + "/optimizer.pt");
    objective->load_state(resume_from);
    std::fprintf(stderr, "resuming %s from step %lld\n", out.c_str(), static_cast<long long>(result.first_step));
  }
  if (parallel) parallel->broadcast_parameters();
  // Only rank 0 logs: metrics.jsonl, and the same records as TensorBoard
  // scalars (the sample grids as images).
  std::optional<MetricsLog> metrics_log;
  std::optional<TensorBoardWriter> tensorboard;
  if (writer) {
    metrics_log.emplace(out + "/metrics.jsonl", result.first_step);
    tensorboard.emplace(out);
  }
  auto log_record = [&](const json& record) {
    if (!writer) return;
    metrics_log->write(record);
    const int64_t at = record.at("step").get<int64_t>();
    for (const auto& [key, value] : record.items())
      if (key != "step" && key != "time_s" && value.is_number()) tensorboard->scalar(key, value.get<double>(), at);
  };

  const bool progress = writer && options.progress && ::isatty(STDERR_FILENO);
  auto with_eval_weights = [&](auto fn) {
    if (ema) ema->with_weights(params, fn);
    else fn();
  };
  auto save_checkpoint = [&](int64_t done, double seconds) {
    const std::string final_dir = ckpt_dir + "/" + step_name(done), tmp = final_dir + ".tmp";
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    save_safetensors(tmp + "/trainable.safetensors", as_map(params));
    if (ema) save_safetensors(tmp + "/ema.safetensors", as_map(ema->shadow()));
    save_optimizer_state(optimizer, tmp + "/optimizer.pt");
    objective->save_state(tmp);
    write_text_atomically(tmp + "/state.json",
                          json{{"step", done}, {"train_seconds", seconds}, {"task", task_name(recipe.task)}}.dump(2));
    fs::remove_all(final_dir);
    fs::rename(tmp, final_dir);
    // Keep the newest few: only folders named as checkpoints, by step, none
    // newer than this one (so no stray folder can push the real ones out).
    std::vector<fs::path> older;
    for (const auto& [at, path] : checkpoint_folders(ckpt_dir))
      if (at < done) older.push_back(path);
    const size_t keep_older = static_cast<size_t>(recipe.keep_checkpoints) - 1;
    for (size_t i = 0; i + keep_older < older.size(); ++i) fs::remove_all(older[i]);
    metrics_log->plot(out + "/loss.png");
  };

  const double start = now_seconds();
  double window_sum = 0;
  int64_t window_count = 0;
  std::map<std::string, std::pair<double, int64_t>> window_metrics;  // the objective's, averaged like the loss
  int64_t step = result.first_step;
  int64_t stop_at =
      options.stop_after > 0 ? std::min(recipe.steps, result.first_step + options.stop_after) : recipe.steps;
  while (step < stop_at) {
    const double lr = learning_rate(o, step, recipe.steps);
    for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    const double step_start = now_seconds();
    Metrics metrics;
    optimizer.zero_grad();
    double local_loss = 0, loss_value = 0;  // this rank's mean over its shards; the mean over ranks
    for (int64_t j = 0; j < local_shards; ++j) {
      const int64_t stream = step * shards + launch.rank + j * world;  // = step in one process
      auto gen = at::detail::createCPUGenerator(mix_seed(recipe.seed, static_cast<uint64_t>(stream), 1));
      const Batch batch = dataset->batch(recipe.seed, stream, recipe.batch_size);
      Metrics shard_metrics;
      torch::Tensor loss;
      {
        AutocastScope autocast(recipe.precision == "bf16");
        loss = objective->loss(batch, gen, shard_metrics);
      }
      for (const auto& [k, v] : shard_metrics) metrics[k] += v / static_cast<double>(local_shards);
      local_loss += loss.item<double>() / static_cast<double>(local_shards);
      if (local_shards > 1) loss = loss / static_cast<double>(local_shards);
      const bool last = j + 1 == local_shards;
      if (!last) {
        if (parallel) parallel->set_sync(false);
        loss.backward();
        continue;
      }
      // Over all ranks, so that every rank stops together on a non-finite loss.
      loss_value = parallel ? parallel->mean(local_loss) : local_loss;
      if (!std::isfinite(loss_value))
        throw Error(out, "the loss became " + std::to_string(loss_value) + " at step " + std::to_string(step + 1) +
                             " (lower optimizer.lr or raise warmup_steps; the last checkpoint is kept)");
      if (parallel) {
        parallel->set_sync(true);
        parallel->prepare_backward();
      }
      loss.backward();
      if (parallel) parallel->finish_backward();
    }
    double grad_norm = 0;
    if (o.grad_clip > 0) grad_norm = torch::nn::utils::clip_grad_norm_(tensors, o.grad_clip);
    optimizer.step();
    if (parallel) {
      // Rank 0's timings: how much of a step waited on communication.
      metrics["comm_wait_s"] = parallel->last_wait_seconds();
      metrics["step_s"] = now_seconds() - step_start;
    }
    if (ema) ema->update(params, step);
    ++step;
    result.losses.push_back(loss_value);
    window_sum += loss_value;
    ++window_count;
    for (const auto& [k, v] : metrics) {
      auto& [sum, count] = window_metrics[k];
      sum += v;
      ++count;
    }
    metrics["loss"] = loss_value;
    metrics["lr"] = lr;
    if (options.on_step) options.on_step(step, metrics);
    if (options.stop_requested && options.stop_requested()) stop_at = step;
    const double elapsed = now_seconds() - start;
    print_progress(progress, step, recipe.steps, loss_value, elapsed);
    if (step % recipe.log_every == 0 || step == stop_at) {
      json record{{"step", step}, {"loss", window_sum / static_cast<double>(window_count)}, {"lr", lr},
                  {"time_s", previous_seconds + elapsed}};
      if (o.grad_clip > 0) record["grad_norm"] = grad_norm;
      for (const auto& [k, sum_count] : window_metrics)
        if (k != "loss" && k != "lr") record[k] = sum_count.first / static_cast<double>(sum_count.second);
      log_record(record);
      window_sum = 0;
      window_count = 0;
      window_metrics.clear();
    }
    if (writer && recipe.sample.every > 0 && (step % recipe.sample.every == 0 || step == recipe.steps)) {
      Metrics sampled;
      const std::string grid = out + "/samples/" + step_name(step) + ".png";
      with_eval_weights([&] { objective->sample(grid, sampled); });
      if (fs::exists(grid)) {
        const RgbImage image = read_image(grid);
        tensorboard->image_png("samples", read_text_file(grid), image.width, image.height, step);
      }
      json record{{"step", step}};
      for (const auto& [k, v] : sampled) record[k] = v;
      log_record(record);
    }
    if (writer && (step % recipe.checkpoint_every == 0 || step == stop_at))
      save_checkpoint(step, previous_seconds + elapsed);
  }
  if (parallel) parallel->check_identical(tensors);
  result.last_step = step;
  result.seconds = now_seconds() - start;
  result.total_seconds = previous_seconds + result.seconds;
  if (step >= recipe.steps) {
    const std::string final_dir = out + "/final", tmp = out + "/final.tmp";
    if (writer) {
      fs::remove_all(tmp);
      fs::create_directories(tmp);
      with_eval_weights([&] { objective->write_final(tmp); });
      write_text_atomically(tmp + "/DONE", json{{"steps", step}, {"train_seconds", result.total_seconds}}.dump(2));
      fs::remove_all(final_dir);
      fs::rename(tmp, final_dir);
    }
    result.finished = true;
    result.final_folder = final_dir;
  }
  return result;
}

}  // namespace lumen::train
