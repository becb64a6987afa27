#include "server/model_registry.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "error.h"

namespace lumen::server {
namespace fs = std::filesystem;
namespace {

bool is_safetensors(const fs::path& p) { return p.extension() == ".safetensors"; }

void require_dir(const std::string& dir, const char* option) {
  std::error_code ec;
  if (!dir.empty() && !fs::is_directory(dir, ec)) throw Error(dir, std::string(option) + ": not a folder");
}

// Files and diffusers folders (model_index.json) under `dir`; a diffusers
// folder is one model, not searched further. Unreadable corners are skipped.
template <class Visit>
void walk(const std::string& dir, bool diffusers_folders, Visit visit) {
  if (dir.empty()) return;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    if (diffusers_folders && it->is_directory(ec) && fs::exists(p / "model_index.json", ec)) {
      visit(p);
      it.disable_recursion_pending();
    } else if (it->is_regular_file(ec) && is_safetensors(p)) {
      visit(p);
    }
  }
}

}  // namespace

ModelRegistry::ModelRegistry(std::string models_dir, std::string lora_dir)
    : models_dir_(std::move(models_dir)), lora_dir_(std::move(lora_dir)) {
  require_dir(models_dir_, "--models-dir");
  require_dir(lora_dir_, "--lora-dir");
  refresh_models();
  refresh_loras();
}

void ModelRegistry::refresh_models() {
  std::vector<ModelEntry> found{{kDefaultTitle, kDefaultTitle, ""}};
  walk(models_dir_, true, [&](const fs::path& p) {
    const std::string title = p.lexically_relative(models_dir_).generic_string();
    const std::string name = is_safetensors(p) ? fs::path(title).replace_extension().generic_string() : title;
    found.push_back({title, name, fs::absolute(p).string()});
  });
  std::sort(found.begin() + 1, found.end(), [](const auto& a, const auto& b) { return a.title < b.title; });
  std::lock_guard<std::mutex> lock(mutex_);
  models_ = std::move(found);
}

void ModelRegistry::refresh_loras() {
  std::vector<LoraEntry> found;
  walk(lora_dir_, false, [&](const fs::path& p) { found.push_back({p.stem().string(), fs::absolute(p).string()}); });
  // Sorted by path, so of two files with one name the same one always wins.
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.path < b.path; });
  std::lock_guard<std::mutex> lock(mutex_);
  loras_ = std::move(found);
}

std::vector<ModelEntry> ModelRegistry::models() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return models_;
}

std::vector<LoraEntry> ModelRegistry::loras() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return loras_;
}

std::optional<ModelEntry> ModelRegistry::find_model(const std::string& name) const {
  std::string bare = name;
  const size_t bracket = bare.rfind(" [");  // "model.safetensors [a1b2c3d4e5]"
  if (bracket != std::string::npos && bare.back() == ']') bare.erase(bracket);
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& m : models_)
    if (m.title == bare || m.model_name == bare) return m;
  return std::nullopt;
}

std::optional<LoraEntry> ModelRegistry::find_lora(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& l : loras_)
    if (l.name == name) return l;
  return std::nullopt;
}

}  // namespace lumen::server
