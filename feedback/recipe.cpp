#include "recipe.h"

#include <yaml-cpp/yaml.h>

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
  f.reject_unknown();
  return s;
}

}  // namespace

const char* task_name(Task task) {
  switch (task) {
    case Task::Vae: return "vae";
    case Task::Diffusion: return "diffusion";
    case Task::Lora: return "lora";
  }
  return "?";
}

Recipe read_recipe(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) throw Error(path, "no such recipe file");
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw Error(path + ":" + std::to_string(e.mark.line + 1), e.msg);
  }
  Fields f(path, root, "");
  Recipe r;
  r.file = path;
  const std::string task = f.choice("task", "", {"vae", "diffusion", "lora"});
  r.task = task == "vae" ? Task::Vae : task == "lora" ? Task::Lora : Task::Diffusion;
  r.output = f.required<std::string>("output");
  r.seed = f.get<uint64_t>("seed", 0);
  r.threads = static_cast<int>(f.integer("threads", 0, 0, 1024));
  r.steps = f.integer("steps", 0, 1, 1'000'000'000);
  r.batch_size = f.integer("batch_size", 1, 1, 4096);
  r.precision = f.choice("precision", r.precision, {"f32", "bf16"});
  r.gradient_checkpointing = f.get<bool>("gradient_checkpointing", false);
  if (r.gradient_checkpointing)
    throw f.error_at(root["gradient_checkpointing"], "gradient_checkpointing", "is not supported yet (train at a smaller batch size)");
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
  } else {
    Fields m = f.child("model");
    r.base_model = m.get<std::string>("base", "");
    r.vae = m.get<std::string>("vae", "");
    r.unet_config = m.json_map("unet");
    r.text_encoder_config = m.json_map("text_encoder");
    r.train_text_encoder = m.get<bool>("train_text_encoder", r.task == Task::Diffusion);
    m.reject_unknown();
    if (r.task == Task::Lora && r.base_model.empty())
      throw f.error_at(root, "model.base", "is required for a LoRA (the model it adapts)");
    if (r.task == Task::Diffusion && r.base_model.empty() &&
        (r.vae.empty() || r.unet_config.is_null() || r.text_encoder_config.is_null()))
      throw f.error_at(root, "model", "needs either base (a model to fine-tune) or vae, unet and text_encoder");
    r.schedule = f.json_map("schedule");
    Fields t = f.child("timesteps");
    r.timesteps.exponent = t.number("exponent", 1.0, 0.1, 10);
    t.reject_unknown();
    r.caption_dropout = f.number("caption_dropout", r.caption_dropout, 0, 1);
    if (r.task == Task::Lora) {
      Fields l = f.child("lora");
      r.lora_rank = l.integer("rank", r.lora_rank, 1, 1024);
      r.lora_alpha = l.number("alpha", static_cast<double>(r.lora_rank), 1e-6, 1e6);
      r.lora_text_encoder = l.get<bool>("text_encoder", false);
      r.lora_conv = l.get<bool>("conv", false);
      l.reject_unknown();
    }
  }
  f.reject_unknown();
  return r;
}

}  // namespace lumen::train
