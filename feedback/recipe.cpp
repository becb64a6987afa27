#include "recipe.h"

#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <filesystem>
#include <set>

#include "error.h"
#include "io/yaml_json.h"

namespace lumen::train {
namespace {

// One YAML mapping of the recipe: typed getters that name the field and its
// line on error, and a check that no unknown (misspelt) field is left.
class Fields {
 public:
  Fields(const std::string& file, YAML::Node node, std::string prefix)
      : file_(file), node_(std::move(node)), prefix_(std::move(prefix)) {
    if (!node_.IsMap()) throw error_at(node_, prefix_.empty() ? "recipe" : prefix_, "must be a mapping");
  }

  bool has(const std::string& key) const { return static_cast<bool>(node_[key]); }

  template <class T>
  T get(const std::string& key, T fallback) {
    used_.insert(key);
    const YAML::Node v = node_[key];
    if (!v) return fallback;
    if (!v.IsScalar()) throw error_at(v, name(key), "must be a single value");
    try {
      return v.as<T>();
    } catch (const YAML::Exception&) {
      throw error_at(v, name(key), "'" + v.Scalar() + "' is not " + type_name<T>());
    }
  }
  template <class T>
  T required(const std::string& key) {
    if (!has(key)) throw error_at(node_, name(key), "is required");
    return get<T>(key, T{});
  }
  double number(const std::string& key, double fallback, double lo, double hi) {
    const double v = get<double>(key, fallback);
    if (!(v >= lo && v <= hi))
      throw error(key, "must be in [" + fmt(lo) + ", " + fmt(hi) + "]");
    return v;
  }
  int64_t integer(const std::string& key, int64_t fallback, int64_t lo, int64_t hi) {
    const int64_t v = get<int64_t>(key, fallback);
    if (v < lo || v > hi)
      throw error(key, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v;
  }
  std::string choice(const std::string& key, const std::string& fallback, const std::vector<std::string>& allowed) {
    const std::string v = get<std::string>(key, fallback);
    for (const auto& a : allowed)
      if (v == a) return v;
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    throw error(key, "'" + v + "' is not one of " + list);
  }
  nlohmann::json json_map(const std::string& key) {
    used_.insert(key);
    const YAML::Node v = node_[key];
    if (!v) return nullptr;
    if (!v.IsMap()) throw error_at(v, name(key), "must be a mapping");
    return yaml_to_json(v);
  }
  std::vector<std::string> strings(const std::string& key) {
    used_.insert(key);
    const YAML::Node v = node_[key];
    std::vector<std::string> out;
    if (!v) return out;
    if (!v.IsSequence()) throw error_at(v, name(key), "must be a list");
    for (const auto& item : v) {
      if (!item.IsScalar()) throw error_at(item, name(key), "items must be strings");
      out.push_back(item.Scalar());
    }
    return out;
  }
  std::vector<int64_t> integers(const std::string& key, std::vector<int64_t> fallback, int64_t lo, int64_t hi) {
    used_.insert(key);
    const YAML::Node v = node_[key];
    if (!v) return fallback;
    if (!v.IsSequence() || v.size() == 0) throw error_at(v, name(key), "must be a non-empty list of integers");
    std::vector<int64_t> out;
    for (const auto& item : v) {
      int64_t x = 0;
      try {
        x = item.as<int64_t>();
      } catch (const YAML::Exception&) {
        throw error_at(item, name(key), "items must be integers");
      }
      if (x < lo || x > hi) throw error_at(item, name(key), "items must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
      out.push_back(x);
    }
    return out;
  }
  // The mappings of a list field, each as Fields of its own.
  std::vector<Fields> children(const std::string& key) {
    used_.insert(key);
    const YAML::Node v = node_[key];
    std::vector<Fields> out;
    if (!v) return out;
    if (!v.IsSequence()) throw error_at(v, name(key), "must be a list");
    for (size_t i = 0; i < v.size(); ++i) out.emplace_back(file_, v[i], name(key) + "[" + std::to_string(i) + "]");
    return out;
  }
  int line() const { return node_.Mark().line + 1; }
  Fields child(const std::string& key) {
    used_.insert(key);
    const YAML::Node v = node_[key];
    return Fields(file_, v ? v : YAML::Node(YAML::NodeType::Map), name(key));
  }
  void reject_unknown() const {
    for (const auto& kv : node_) {
      const auto key = kv.first.as<std::string>();
      if (!used_.count(key)) throw error_at(kv.first, name(key), "unknown field");
    }
  }
  Error error_at(const YAML::Node& at, const std::string& field, const std::string& problem) const {
    const int line = at.Mark().line;
    return Error(file_ + (line >= 0 ? ":" + std::to_string(line + 1) : ""), field + ": " + problem);
  }
  Error error(const std::string& key, const std::string& problem) const {
    return error_at(node_[key], name(key), problem);
  }
  std::string name(const std::string& key) const { return prefix_.empty() ? key : prefix_ + "." + key; }

 private:
  template <class T>
  static const char* type_name() {
    if constexpr (std::is_same_v<T, bool>) return "true or false";
    if constexpr (std::is_integral_v<T>) return "an integer";
    if constexpr (std::is_floating_point_v<T>) return "a number";
    return "a string";
  }
  static std::string fmt(double v) {
    std::ostringstream s;
    s << v;
    return s.str();
  }
  std::string file_;
  YAML::Node node_;
  std::string prefix_;
  std::set<std::string> used_;
};

// "WxH" items, each side a multiple of 16 (the VAE's 8 times the UNet's
// smallest downsampling) within [16, 2048].
std::vector<Resolution> read_resolutions(Fields& f, const std::string& key) {
  std::vector<Resolution> out;
  for (const std::string& item : f.strings(key)) {
    Resolution r;
    char x = 0, tail = 0;
    long long w = 0, h = 0;
    if (std::sscanf(item.c_str(), "%lld%c%lld%c", &w, &x, &h, &tail) != 3 || (x != 'x' && x != 'X'))
      throw f.error(key, "'" + item + "' is not WIDTHxHEIGHT (e.g. 128x64)");
    if (w < 16 || h < 16 || w > 2048 || h > 2048 || w % 16 || h % 16)
      throw f.error(key, "'" + item + "': each side must be a multiple of 16 in [16, 2048]");
    r.width = w;
    r.height = h;
    out.push_back(r);
  }
  return out;
}

DatasetSpec read_dataset(Fields f) {
  DatasetSpec d;
  d.type = f.choice("type", "", {"shapes", "folder"});
  d.width = f.integer("width", 64, 8, 4096);
  d.height = f.integer("height", 64, 8, 4096);
  if (d.type == "shapes") {
    d.split = f.choice("split", "train", {"train", "seen", "eval"});
    d.drop_size = f.number("drop_size", d.drop_size, 0, 1);
    d.drop_position = f.number("drop_position", d.drop_position, 0, 1);
    d.held_out_without_size = f.get<bool>("held_out_without_size", d.held_out_without_size);
    if (d.held_out_without_size && d.split != "train")
      throw f.error("held_out_without_size", "only the train split can add the held-out captions");
  } else {
    d.path = f.required<std::string>("path");
    d.caption_extension = f.get<std::string>("caption_extension", d.caption_extension);
  }
  d.resolutions = read_resolutions(f, "resolutions");
  f.reject_unknown();
  return d;
}

OptimizerSpec read_optimizer(Fields f) {
  OptimizerSpec o;
  o.lr = f.number("lr", o.lr, 1e-12, 10);
  o.weight_decay = f.number("weight_decay", o.weight_decay, 0, 10);
  o.beta1 = f.number("beta1", o.beta1, 0, 0.999999);
  o.beta2 = f.number("beta2", o.beta2, 0, 0.999999999);
  o.eps = f.number("eps", o.eps, 1e-20, 1);
  o.warmup_steps = f.integer("warmup_steps", 0, 0, 1'000'000'000);
  o.lr_schedule = f.choice("lr_schedule", o.lr_schedule, {"constant", "cosine"});
  o.min_lr_ratio = f.number("min_lr_ratio", o.min_lr_ratio, 0, 1);
  o.grad_clip = f.number("grad_clip", o.grad_clip, 0, 1e9);
  f.reject_unknown();
  return o;
}

SampleSpec read_sample(Fields f) {
  SampleSpec s;
  s.every = f.integer("every", 0, 0, 1'000'000'000);
  s.sampler = f.get<std::string>("sampler", s.sampler);
  s.steps = f.integer("steps", s.steps, 1, 1000);
  s.cfg_scale = f.number("cfg_scale", s.cfg_scale, 0, 100);
  s.guidance_rescale = f.number("guidance_rescale", s.guidance_rescale, 0, 1);
  s.prompts = f.strings("prompts");
  s.judge_captions = f.integer("judge_captions", 0, 0, 108);
  s.sizes = read_resolutions(f, "sizes");
  f.reject_unknown();
  return s;
}

JudgeModelSpec read_judge_model(Fields f, bool reward) {
  JudgeModelSpec j;
  j.channels = f.integers("channels", {}, 1, 4096);
  j.corrupt = f.number("corrupt", j.corrupt, 0, 1);
  j.vae_roundtrip = f.number("vae_roundtrip", j.vae_roundtrip, 0, 1);
  j.eval_pairs = f.integer("eval_pairs", j.eval_pairs, 0, 100000);
  if (!reward) j.colour = f.get<bool>("colour", false);
  if (reward) {
    j.dimension = f.choice("dimension", "", {"colour", "shape", "layout", "background", "global"});
    j.hidden = f.integer("hidden", j.hidden, 1, 4096);
  }
  f.reject_unknown();
  return j;
}

FeedbackSpec read_feedback(Fields f) {
  FeedbackSpec s;
  s.sampler = f.get<std::string>("sampler", s.sampler);
  s.steps = f.integers("steps", s.steps, 1, 1000);
  s.cfg_scale = f.number("cfg_scale", s.cfg_scale, 0, 100);
  s.guidance_rescale = f.number("guidance_rescale", s.guidance_rescale, 0, 1);
  s.denoising_weight = f.number("denoising_weight", s.denoising_weight, 0, 1e6);
  s.init_lora = f.get<std::string>("init_lora", "");
  if (f.has("perceptual")) {
    Fields p = f.child("perceptual");
    s.perceptual_model = p.required<std::string>("model");
    s.perceptual_kind = p.choice("kind", s.perceptual_kind, {"segmentation", "style"});
    s.perceptual_weight = p.number("weight", s.perceptual_weight, 0, 1e6);
    s.perceptual_reduction = p.choice("reduction", s.perceptual_reduction, {"pixels", "shape_area"});
    s.perceptual_foreground_weight = p.number("foreground_weight", s.perceptual_foreground_weight, 0, 1e6);
    s.perceptual_background_weight = p.number("background_weight", s.perceptual_background_weight, 0, 1e6);
    p.reject_unknown();
  }
  for (Fields r : f.children("rewards")) {
    RewardTerm t;
    t.line = r.line();
    t.kind = r.choice("kind", t.kind, {"shapes", "clip", "aesthetic", "torchscript"});
    t.model = r.required<std::string>("model");
    if (t.kind == "aesthetic") t.clip = r.required<std::string>("clip");
    t.weight = r.number("weight", t.weight, 0, 1e6);
    if (r.has("alpha")) t.alpha = r.number("alpha", 0, -1e6, 1e6);
    else if (t.kind != "shapes") throw r.error_at(YAML::Node(), r.name("alpha"), "is required for a " + t.kind + " reward (its hinge threshold)");
    r.reject_unknown();
    s.rewards.push_back(t);
  }
  if (f.has("adversarial")) {
    Fields a = f.child("adversarial");
    s.adversarial_init = a.required<std::string>("init");
    s.adversarial_weight = a.number("weight", s.adversarial_weight, 0, 1e6);
    s.discriminator_lr = a.number("lr", s.discriminator_lr, 1e-12, 10);
    a.reject_unknown();
  }
  Fields p = f.child("prompts");
  s.prompt_selection = p.choice("selection", s.prompt_selection, {"random", "active"});
  s.prompt_pool = p.integer("pool", s.prompt_pool, 1, 100000);
  s.prompt_keep = p.integer("keep", s.prompt_keep, 1, 100000);
  s.prompt_refresh = p.integer("refresh_every", s.prompt_refresh, 1, 1'000'000'000);
  s.prompt_similarity = p.number("similarity", s.prompt_similarity, 0, 1);
  s.prompt_batch = p.integer("batch", 0, 0, 4096);
  s.prompt_file = p.get<std::string>("file", "");
  p.reject_unknown();
  f.reject_unknown();
  if (s.perceptual_model.empty() && s.rewards.empty() && s.adversarial_init.empty())
    throw f.error_at(YAML::Node(), "feedback", "needs at least one of perceptual, rewards or adversarial");
  return s;
}

}  // namespace

const char* task_name(Task task) {
  switch (task) {
    case Task::Vae: return "vae";
    case Task::Diffusion: return "diffusion";
    case Task::Lora: return "lora";
    case Task::Segmenter: return "segmenter";
    case Task::Reward: return "reward";
    case Task::Feedback: return "feedback";
    case Task::ResAdapter: return "resadapter";
  }
  return "?";
}

namespace {

Recipe parse_recipe(const std::string& path, const YAML::Node& root) {
  Fields f(path, root, "");
  Recipe r;
  r.file = path;
  const std::string task = f.choice("task", "", {"vae", "diffusion", "lora", "segmenter", "reward", "feedback", "resadapter"});
  r.task = task == "vae"         ? Task::Vae
           : task == "lora"      ? Task::Lora
           : task == "segmenter" ? Task::Segmenter
           : task == "reward"    ? Task::Reward
           : task == "feedback"  ? Task::Feedback
           : task == "resadapter" ? Task::ResAdapter
                                 : Task::Diffusion;
  r.output = f.required<std::string>("output");
  if (r.output.empty()) throw f.error("output", "is empty; name the run's folder");
  r.seed = f.get<uint64_t>("seed", 0);
  r.threads = static_cast<int>(f.integer("threads", 0, 0, 1024));
  r.steps = f.integer("steps", 0, 1, 1'000'000'000);
  r.batch_size = f.integer("batch_size", 1, 1, 4096);
  r.data_shards = f.integer("data_shards", 0, 0, 4096);
  r.precision = f.choice("precision", r.precision, {"f32", "bf16"});
  r.gradient_checkpointing = f.get<bool>("gradient_checkpointing", false);
  r.ema_decay = f.number("ema_decay", 0, 0, 0.999999);
  r.checkpoint_every = f.integer("checkpoint_every", r.checkpoint_every, 1, 1'000'000'000);
  r.keep_checkpoints = f.integer("keep_checkpoints", r.keep_checkpoints, 1, 1000);
  r.log_every = f.integer("log_every", r.log_every, 1, 1'000'000'000);
  if (!f.has("dataset")) throw f.error_at(root, "dataset", "is required");
  r.dataset = read_dataset(f.child("dataset"));
  r.optimizer = read_optimizer(f.child("optimizer"));
  r.sample = read_sample(f.child("sample"));

  if (r.task == Task::Vae) {
    Fields v = f.child("vae");
    r.vae_config = v.json_map("config");
    r.vae_init = v.get<std::string>("init", "");
    r.vae_decoder_only = v.choice("train", "all", {"all", "decoder"}) == "decoder";
    if (r.vae_config.is_null() == r.vae_init.empty())
      throw v.error_at(root, "vae", "needs exactly one of config (a new AutoencoderKL) or init (a VAE folder to continue)");
    r.kl_weight = v.number("kl_weight", r.kl_weight, 0, 1e6);
    r.mse_weight = v.number("mse_weight", r.mse_weight, 0, 1e6);
    v.reject_unknown();
  } else if (r.task == Task::Segmenter || r.task == Task::Reward) {
    if (r.dataset.type != "shapes") throw f.error_at(root["dataset"], "dataset.type", "must be shapes for a " + task);
    r.judge_model = read_judge_model(f.child(r.task == Task::Reward ? "reward" : "perception"), r.task == Task::Reward);
    Fields m = f.child("model");
    r.base_model = m.get<std::string>("base", "");  // its VAE round-trips training images
    m.reject_unknown();
  } else {
    Fields m = f.child("model");
    r.base_model = m.get<std::string>("base", "");
    r.vae = m.get<std::string>("vae", "");
    r.unet_config = m.json_map("unet");
    r.text_encoder_config = m.json_map("text_encoder");
    r.train_text_encoder = m.get<bool>("train_text_encoder", r.task == Task::Diffusion);
    m.reject_unknown();
    if ((r.task == Task::Lora || r.task == Task::Feedback || r.task == Task::ResAdapter) && r.base_model.empty())
      throw f.error_at(root, "model.base", "is required for a LoRA, a ResAdapter or feedback learning (the model it adapts)");
    if (r.task == Task::Diffusion && r.base_model.empty() &&
        (r.vae.empty() || r.unet_config.is_null() || r.text_encoder_config.is_null()))
      throw f.error_at(root, "model", "needs either base (a model to fine-tune) or vae, unet and text_encoder");
    r.schedule = f.json_map("schedule");
    Fields t = f.child("timesteps");
    r.timesteps.exponent = t.number("exponent", 1.0, 0.1, 10);
    t.reject_unknown();
    r.caption_dropout = f.number("caption_dropout", r.caption_dropout, 0, 1);
    if (r.task == Task::Feedback) {
      if (!f.has("feedback")) throw f.error_at(root, "feedback", "is required for task feedback");
      r.feedback = read_feedback(f.child("feedback"));
      r.use_lora = f.has("lora");
    }
    if (r.task == Task::Lora || (r.task == Task::Feedback && r.use_lora)) {
      Fields l = f.child("lora");
      r.lora_rank = l.integer("rank", r.lora_rank, 1, 1024);
      r.lora_alpha = l.number("alpha", static_cast<double>(r.lora_rank), 1e-6, 1e6);
      r.lora_text_encoder = l.get<bool>("text_encoder", false);
      r.lora_conv = l.get<bool>("conv", false);
      l.reject_unknown();
    }
    if (r.task == Task::ResAdapter) {
      // The LoRA half's rank on the down/upsampler convolutions; the GroupNorms are trained whole.
      Fields a = f.child("resadapter");
      r.lora_rank = a.integer("rank", 16, 1, 1024);
      r.lora_alpha = a.number("alpha", static_cast<double>(r.lora_rank), 1e-6, 1e6);
      r.resadapter_preserve_base = a.number("preserve_base", 0.0, 0.0, 1e6);
      a.reject_unknown();
      r.train_text_encoder = false;
    }
  }
  f.reject_unknown();
  return r;
}

}  // namespace

Recipe read_recipe(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) throw Error(path, "no such recipe file");
  try {
    return parse_recipe(path, YAML::LoadFile(path));
  } catch (const YAML::Exception& e) {
    // Syntax errors, and a value of the wrong YAML kind (a map where a name should be).
    throw Error(path + ":" + std::to_string(e.mark.line + 1), e.msg);
  }
}

}  // namespace lumen::train
