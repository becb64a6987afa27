#include "model/weights.h"

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "error.h"
#include "io/text_file.h"
#include "io/safetensors_torch.h"
#include "nn/init.h"

namespace lumen {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

class FileWeights : public WeightSource {
 public:
  explicit FileWeights(const std::vector<std::string>& paths) {
    for (const auto& p : paths) {
      files_.push_back(SafetensorsFile::open(p));
      for (const auto& e : files_.back()->entries()) {
        if (index_.count(e.name))
          throw Error(p, "tensor '" + e.name + "' also appears in " + files_[index_[e.name]]->path());
        index_[e.name] = files_.size() - 1;
      }
    }
  }
  std::vector<std::string> keys() const override {
    std::vector<std::string> k;
    for (const auto& [name, _] : index_) k.push_back(name);
    return k;
  }
  bool has(const std::string& key) const override { return index_.count(key) > 0; }
  std::vector<int64_t> shape(const std::string& key) const override { return entry(key).shape; }
  std::string dtype(const std::string& key) const override { return dtype_name(entry(key).dtype); }
  torch::Tensor get(const std::string& key) const override { return tensor_view(file(key), entry(key)); }
  void release(const std::string& key) const override { file(key)->release(entry(key)); }
  std::string where() const override {
    std::string w;
    for (const auto& f : files_) w += (w.empty() ? "" : ", ") + f->path();
    return w;
  }

 private:
  const std::shared_ptr<SafetensorsFile>& file(const std::string& key) const { return files_[index_.at(key)]; }
  const TensorEntry& entry(const std::string& key) const { return file(key)->at(key); }
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> index_;
};

class LdmComponentWeights : public WeightSource {
 public:
  LdmComponentWeights(std::shared_ptr<SafetensorsFile> file, const KeyMapResult& map, const std::string& component)
      : file_(std::move(file)) {
    for (const auto& m : map.mapped) {
      if (m.component != component) continue;
      const TensorEntry& e = file_->at(m.ldm_key);
      for (size_t i = 0; i < m.diffusers_keys.size(); ++i) {
        if (m.transform == Transform::CatDim0 && (e.shape.empty() || e.shape[0] % m.diffusers_keys.size() != 0))
          throw Error(file_->path(), "tensor '" + m.ldm_key + "' of shape " + shape_str(e.shape) +
                                         " cannot be split into " + std::to_string(m.diffusers_keys.size()));
        sources_[m.diffusers_keys[i]] = Part{&e, m.transform, i, m.diffusers_keys.size()};
      }
    }
  }
  std::vector<std::string> keys() const override {
    std::vector<std::string> k;
    for (const auto& [name, _] : sources_) k.push_back(name);
    return k;
  }
  bool has(const std::string& key) const override { return sources_.count(key) > 0; }
  std::vector<int64_t> shape(const std::string& key) const override {
    const Part& p = sources_.at(key);
    auto s = p.entry->shape;
    switch (p.transform) {
      case Transform::Copy: break;
      case Transform::Squeeze1x1: while (s.size() > 2 && s.back() == 1) s.pop_back(); break;
      case Transform::Transpose: if (s.size() == 2) std::swap(s[0], s[1]); break;
      case Transform::CatDim0: s[0] /= static_cast<int64_t>(p.parts); break;
    }
    return s;
  }
  std::string dtype(const std::string& key) const override { return dtype_name(sources_.at(key).entry->dtype); }
  torch::Tensor get(const std::string& key) const override {
    const Part& p = sources_.at(key);
    auto t = tensor_view(file_, *p.entry);
    switch (p.transform) {
      case Transform::Copy: return t;
      case Transform::Squeeze1x1: return t.reshape(shape(key));
      case Transform::Transpose: return t.t();
      case Transform::CatDim0: return t.chunk(static_cast<int64_t>(p.parts), 0)[static_cast<int64_t>(p.index)];
    }
    return t;
  }
  void release(const std::string& key) const override { file_->release(*sources_.at(key).entry); }
  std::string where() const override { return file_->path(); }

 private:
  struct Part {
    const TensorEntry* entry;
    Transform transform;
    size_t index, parts;
  };
  std::shared_ptr<SafetensorsFile> file_;
  std::map<std::string, Part> sources_;
};

// Expands "x.safetensors.index.json" to its shard files.
std::vector<std::string> expand_shards(const std::vector<std::string>& files) {
  std::vector<std::string> out;
  for (const auto& f : files) {
    const std::string suffix = ".index.json";
    if (f.size() < suffix.size() || f.compare(f.size() - suffix.size(), suffix.size(), suffix) != 0) {
      out.push_back(f);
      continue;
    }
    const nlohmann::json j = read_json_file(f);
    if (!j.contains("weight_map") || !j["weight_map"].is_object()) throw Error(f, "no weight_map object");
    const std::string dir = f.substr(0, f.find_last_of('/') + 1);
    std::set<std::string> shards;
    for (const auto& v : j["weight_map"]) {
      if (!v.is_string()) throw Error(f, "weight_map values must be file names");
      auto name = v.get<std::string>();
      if (name.find('/') != std::string::npos || name.find("..") != std::string::npos)
        throw Error(f, "shard name '" + name + "' leaves the folder");
      shards.insert(dir + name);
    }
    out.insert(out.end(), shards.begin(), shards.end());
  }
  return out;
}

}  // namespace

std::unique_ptr<WeightSource> open_component_weights(const std::vector<std::string>& files) {
  return std::make_unique<FileWeights>(expand_shards(files));
}

std::unique_ptr<WeightSource> open_ldm_component(std::shared_ptr<SafetensorsFile> file, const KeyMapResult& map,
                                                 const std::string& component) {
  return std::make_unique<LdmComponentWeights>(std::move(file), map, component);
}

namespace {
std::atomic<bool> g_map_weights{true};
}  // namespace

void set_map_weights(bool on) { g_map_weights = on; }
bool map_weights_enabled() { return g_map_weights; }

LoadReport load_weights(torch::nn::Module& module, const WeightSource& source) {
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& item : module.named_parameters(/*recurse=*/true)) {
    const std::string& key = item.key();
    torch::Tensor& param = item.value();
    if (!source.has(key)) throw Error(source.where(), "missing tensor '" + key + "'");
    auto expected = param.sizes().vec();
    auto got = source.shape(key);
    if (got != expected)
      throw Error(source.where(), "tensor '" + key + "' has shape " + shape_str(got) + ", the model needs " +
                                      shape_str(expected));
    auto t = source.get(key);
    if (!t.is_floating_point())
      throw Error(source.where(), "tensor '" + key + "' is not a floating-point tensor");
    if (g_map_weights && t.scalar_type() == param.scalar_type() && t.is_contiguous() && param.is_cpu()) {
      // Stored as needed: the parameter uses the file's pages themselves (a
      // private mapping: copied only where written, e.g. by a merged LoRA).
      // Copying a 4 GB model into fresh memory took 8-12 s here, mostly page
      // faults; the file's pages are in the page cache or read on first use.
      param.set_data(t);
    } else {
      nn::advise_huge_pages(param.data_ptr(), param.nbytes());  // fresh storage, written whole next
      param.copy_(t);  // converted, transposed or split: a copy, and the file's pages go back
      source.release(key);
    }
    used.insert(key);
  }
  LoadReport report;
  for (const auto& k : source.keys())
    if (!used.count(k)) report.unused_keys.push_back(k);
  return report;
}

}  // namespace lumen
