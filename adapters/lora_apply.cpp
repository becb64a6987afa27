#include "adapters/lora_apply.h"

#include <algorithm>
#include <set>
#include <sstream>

#include "convert/diffusers_to_ldm.h"
#include "error.h"
#include "nn/unet.h"

namespace lumen::adapters {

std::string underscored(std::string dotted) {
  std::replace(dotted.begin(), dotted.end(), '.', '_');
  return dotted;
}

namespace {

// x -> the layer's share of alpha/rank * delta(x), in the weight's dtype, low rank where the format allows.
std::function<torch::Tensor(const torch::Tensor&)> runtime_forward(const AdaptableLayer& layer, const ModuleDelta& d,
                                                                   const torch::Tensor& dense) {
  const auto options = layer.weight().options();
  const bool low_rank = d.kind == DeltaKind::LoRA && !(layer.linear && d.part("lora_mid"));
  if (layer.linear) {
    if (!low_rank) return [w = dense.to(options)](const torch::Tensor& x) { return torch::linear(x, w); };
    auto down = d.part("lora_down")->flatten(1).to(options);
    auto up = (d.part("lora_up")->flatten(1) * d.alpha_scale()).to(options);
    return [down, up](const torch::Tensor& x) { return torch::linear(torch::linear(x, down), up); };
  }
  const std::vector<int64_t> stride(2, layer.conv->stride), padding(2, layer.conv->padding);
  if (!low_rank)
    return [w = dense.to(options), stride, padding](const torch::Tensor& x) {
      return torch::conv2d(x, w, {}, stride, padding);
    };
  auto as_conv = [&](const torch::Tensor& t) { return (t.dim() == 4 ? t : t.view({t.size(0), t.size(1), 1, 1})); };
  auto down = as_conv(*d.part("lora_down")).to(options);
  auto up = (as_conv(*d.part("lora_up")) * d.alpha_scale()).to(options);
  if (const torch::Tensor* mid_part = d.part("lora_mid")) {  // the kxk step is the middle one
    auto mid = mid_part->to(options);
    return [down, mid, up, stride, padding](const torch::Tensor& x) {
      return torch::conv2d(torch::conv2d(torch::conv2d(x, down), mid, {}, stride, padding), up);
    };
  }
  return [down, up, stride, padding](const torch::Tensor& x) {
    return torch::conv2d(torch::conv2d(x, down, {}, stride, padding), up);
  };
}

// kohya's SDXL trainer (and some SD1 tools) name UNet layers in the original
// layout ("input_blocks_4_1_proj_in"): alias those names to the diffusers layers.
void add_ldm_aliases(torch::nn::Module& root, const std::map<std::string, AdaptableLayer>& layers,
                     std::map<std::string, std::string>& aliases) {
  auto* unet = dynamic_cast<nn::UNet2DConditionImpl*>(&root);
  if (!unet) return;
  std::vector<TensorInfo> tensors;
  for (const auto& p : unet->named_parameters()) tensors.push_back({p.key(), p.value().sizes().vec(), "F32"});
  const auto family = unet->config.addition_embed_type == "text_time" ? ModelFamily::SDXL : ModelFamily::SD1;
  LdmTargets targets;
  try {
    targets = map_diffusers_to_ldm("unet", tensors, {{"layers_per_block", unet->config.layers_per_block.at(0)}}, family);
  } catch (const Error&) {
    return;  // a layout the original format cannot express has no original names
  }
  const std::string prefix = ldm_prefix("unet", family), suffix = ".weight";
  auto strip = [&](const std::string& key, const std::string& head) {
    if (key.size() < head.size() + suffix.size() || key.compare(0, head.size(), head) != 0 ||
        key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0)
      return std::string();
    return key.substr(head.size(), key.size() - head.size() - suffix.size());
  };
  for (const auto& t : targets.targets) {
    if (t.diffusers_keys.size() != 1) continue;
    const std::string module = strip(t.diffusers_keys[0], ""), ldm = strip(t.ldm_key, prefix);
    if (!module.empty() && !ldm.empty() && layers.count(module)) aliases.emplace(underscored(ldm), module);
  }
}

}  // namespace

Components adapter_components(const LoadedModel& model) {
  Components c;
  if (model.unet) c["unet"] = model.unet.ptr();
  if (model.text_encoder) c["text_encoder"] = model.text_encoder.ptr();
  if (model.text_encoder_2) c["text_encoder_2"] = model.text_encoder_2.ptr();
  return c;
}

LayerIndex::LayerIndex(const Components& components) {
  for (const auto& [component, root] : components) {
    auto& layers = layers_[component];
    for (const auto& item : root->named_modules("", /*include_self=*/false)) {
      AdaptableLayer layer{component, item.key(), std::dynamic_pointer_cast<nn::LinearImpl>(item.value()),
                           std::dynamic_pointer_cast<nn::Conv2dImpl>(item.value())};
      if (!layer.linear && !layer.conv) continue;
      underscored_[component][underscored(layer.name)] = layer.name;
      layers.emplace(layer.name, std::move(layer));
    }
    if (component == "unet") add_ldm_aliases(*root, layers, underscored_[component]);
  }
}

const AdaptableLayer* LayerIndex::find(const ModuleDelta& d) const {
  auto comp = layers_.find(d.component);
  if (comp == layers_.end()) return nullptr;
  std::string name = d.module;
  if (d.underscored) {
    auto names = underscored_.find(d.component);
    if (names == underscored_.end()) return nullptr;
    auto u = names->second.find(d.module);
    if (u == names->second.end()) return nullptr;
    name = u->second;
  }
  auto it = comp->second.find(name);
  return it == comp->second.end() ? nullptr : &it->second;
}

std::vector<std::string> LayerIndex::names(const std::string& component) const {
  std::vector<std::string> out;
  auto comp = layers_.find(component);
  if (comp != layers_.end())
    for (const auto& [name, layer] : comp->second) out.push_back(name);
  return out;
}

std::string MatchReport::summary() const {
  std::ostringstream s;
  size_t total = 0, untouched = 0;
  std::string parts;
  for (const auto& [component, n] : matched) {
    total += n;
    parts += (parts.empty() ? "" : ", ") + component + " " + std::to_string(n);
  }
  for (const auto& [component, names] : untouched_modules) untouched += names.size();
  s << file << ": " << total << " modules changed (" << parts << "); " << unmatched_keys.size()
    << " matched nothing; " << ignored_keys.size() << " keys ignored; " << untouched
    << " layers of those networks untouched";
  return s.str();
}

LoraStack::LoraStack(Components components, ApplyMode mode)
    : components_(std::move(components)), index_(components_), mode_(mode) {}

MatchReport LoraStack::add(const std::string& name, std::shared_ptr<const LoraFile> lora, double scale) {
  for (const auto& a : applied_)
    if (a.name == name) throw Error(name, "is already applied");
  Applied a{name, std::move(lora), scale, {}, {}};
  a.report.file = a.lora->path;
  a.report.ignored_keys = a.lora->ignored_keys;
  // Everything is checked before any weight changes.
  std::vector<torch::Tensor> dense;
  for (const ModuleDelta& d : a.lora->modules) {
    const AdaptableLayer* layer = index_.find(d);
    if (!layer) {
      a.report.unmatched_keys.push_back(d.key);
      continue;
    }
    dense.push_back(dense_delta(d, layer->weight().sizes(), a.lora->path));
    a.bound.push_back({*layer, &d, nullptr});
    ++a.report.matched[d.component];
  }
  if (a.bound.empty())
    throw Error(a.lora->path, "matches no module of this model (" + std::to_string(a.lora->modules.size()) +
                                  " modules in the file, e.g. " + a.lora->modules.front().key + ")");
  std::set<std::pair<std::string, std::string>> touched;
  for (const Bound& b : a.bound) touched.emplace(b.layer.component, b.layer.name);
  for (const auto& [component, n] : a.report.matched)
    for (const auto& layer_name : index_.names(component))
      if (!touched.count({component, layer_name})) a.report.untouched_modules[component].push_back(layer_name);

  if (mode_ == ApplyMode::Merge) {
    merge(a);
  } else {
    for (size_t i = 0; i < a.bound.size(); ++i) {
      Bound& b = a.bound[i];
      b.runtime = std::make_shared<nn::WeightDelta>();
      b.runtime->apply = runtime_forward(b.layer, *b.delta, dense[i]);
      b.runtime->scale = scale;
      b.layer.deltas().push_back(b.runtime);
    }
  }
  applied_.push_back(std::move(a));
  return applied_.back().report;
}

void LoraStack::merge(const Applied& a) {
  torch::NoGradGuard no_grad;
  for (const Bound& b : a.bound) {
    torch::Tensor& w = b.layer.weight();
    const std::string key = b.layer.component + "/" + b.layer.name;
    if (!originals_.count(key)) originals_.emplace(key, std::make_pair(b.layer, w.clone()));
    auto delta = dense_delta(*b.delta, w.sizes(), a.lora->path).to(w.device());  // read on the CPU
    if (w.scalar_type() == torch::kFloat) w.add_(delta, a.scale);
    else w.copy_(w.to(torch::kFloat).add_(delta, a.scale));  // add in float32, round once
  }
}

void LoraStack::restore_originals() {
  torch::NoGradGuard no_grad;
  for (auto& [key, original] : originals_) original.first.weight().copy_(original.second);
  originals_.clear();
}

LoraStack::Applied& LoraStack::find(const std::string& name) {
  for (auto& a : applied_)
    if (a.name == name) return a;
  throw Error(name, "is not applied");
}

void LoraStack::set_scale(const std::string& name, double scale) {
  Applied& a = find(name);
  a.scale = scale;
  if (mode_ == ApplyMode::Runtime) {
    for (Bound& b : a.bound) b.runtime->scale = scale;
    return;
  }
  // Re-merging from the saved originals keeps the weights free of accumulated rounding.
  restore_originals();
  for (const auto& applied : applied_) merge(applied);
}

void LoraStack::remove(const std::string& name) {
  Applied& a = find(name);
  if (mode_ == ApplyMode::Runtime) {
    for (Bound& b : a.bound) {
      auto& deltas = b.layer.deltas();
      deltas.erase(std::remove(deltas.begin(), deltas.end(), b.runtime), deltas.end());
    }
  }
  applied_.erase(applied_.begin() + (&a - applied_.data()));
  if (mode_ == ApplyMode::Merge) {
    restore_originals();
    for (const auto& applied : applied_) merge(applied);
  }
}

void LoraStack::clear() {
  while (!applied_.empty()) remove(applied_.back().name);
}

}  // namespace lumen::adapters
