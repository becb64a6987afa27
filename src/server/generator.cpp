#include "server/generator.h"

#include <sys/sysinfo.h>

#include <filesystem>
#include <random>

#include "server/api_error.h"
#include "server/base64.h"

namespace lumen::server {
namespace {

ApiError api_error(const lumen::Exception& e) {
  switch (e.status()) {
    case LUMEN_ERR_INVALID_ARGUMENT:
    case LUMEN_ERR_FILE: return ApiError(422, "invalid request", e.what());
    case LUMEN_ERR_OUT_OF_MEMORY: return ApiError(507, "out of memory", e.what());
    default: return ApiError(500, "internal error", e.what());
  }
}

uint64_t random_seed() {
  std::random_device device;
  return device();  // 32 bits, as A1111's random seeds
}

std::shared_ptr<const lumen::Images> decode_upload(const std::string& bytes, const char* name, int64_t max_pixels) {
  if (bytes.empty()) return nullptr;
  try {
    return std::make_shared<const lumen::Images>(lumen::Images::decode(bytes, max_pixels));
  } catch (const lumen::Exception& e) {
    throw ApiError(422, "invalid request", std::string(name) + ": " + e.what());
  }
}

}  // namespace

void decode_uploads(GenerationRequest& request, int64_t max_pixels) {
  request.init_image = decode_upload(request.init_image_bytes, "init_images[0]", max_pixels);
  request.mask = decode_upload(request.mask_bytes, "mask", max_pixels);
}

Generator::Generator(const ModelRegistry& registry, int threads) : registry_(registry), threads_(threads) {}

namespace {

// What a model's weights may take in memory: its .safetensors files, twice
// over (f16 files are loaded as f32). 0 for the embedded model (no path).
uint64_t weights_bytes_bound(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  uint64_t bytes = 0;
  if (fs::is_regular_file(path, ec)) return 2 * fs::file_size(path, ec);
  for (fs::recursive_directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().extension() == ".safetensors" && it->is_regular_file(ec)) bytes += it->file_size(ec);
  return 2 * bytes;
}

// Memory free now, without counting reclaimable caches (so it errs low).
uint64_t free_memory_bytes() {
  struct sysinfo info {};
  return ::sysinfo(&info) == 0 ? static_cast<uint64_t>(info.freeram) * info.mem_unit : 0;
}

}  // namespace

std::string Generator::load(const std::string& name) {
  const auto entry = registry_.find_model(name);
  if (!entry) throw ApiError(404, "not found", "model '" + name + "' not found (GET /sdapi/v1/sd-models lists them)");
  if (context_ && entry->title == loaded_) return loaded_;
  lumen_context_params params = lumen_context_default_params();
  params.threads = threads_;
  // With room for both, the new model loads beside the current one, which
  // stays if it fails (a broken model once left the server with none, and
  // the next request reloading the old one from disk). Without room, one
  // model in memory at a time: the current one goes first.
  const bool room_for_both = weights_bytes_bound(entry->path) * 5 / 4 < free_memory_bytes();
  if (!room_for_both) {
    context_.reset();
    loras_.clear();
    loaded_.clear();
  }
  try {
    lumen::Context fresh(entry->path, params);
    context_.reset();
    loras_.clear();
    context_.emplace(std::move(fresh));
  } catch (const lumen::Exception& e) {
    throw ApiError(422, "invalid model", e.what());
  }
  loaded_ = entry->title;
  return loaded_;
}

void Generator::select(const std::string& name) {
  const std::string title = load(name);
  std::lock_guard<std::mutex> lock(selected_mutex_);
  selected_ = title;
}

std::string Generator::selected_title() const {
  std::lock_guard<std::mutex> lock(selected_mutex_);
  return selected_;
}

void Generator::apply_loras(const std::vector<LoraTag>& tags) {
  std::map<std::string, float> wanted;  // by path; a LoRA named twice adds up, as in A1111
  for (const auto& tag : tags) {
    const auto entry = registry_.find_lora(tag.name);
    if (!entry) throw ApiError(404, "not found", "LoRA '" + tag.name + "' not found (GET /sdapi/v1/loras lists them)");
    wanted[entry->path] += tag.weight;
  }
  try {
    for (auto it = loras_.begin(); it != loras_.end();) {
      if (wanted.count(it->first)) {
        ++it;
        continue;
      }
      context_->remove_adapter(it->second.id);
      it = loras_.erase(it);
    }
    for (const auto& [path, weight] : wanted) {
      auto it = loras_.find(path);
      if (it == loras_.end()) {
        const int id = context_->apply_lora(path, weight);  // throws before any entry is made
        loras_[path] = {id, weight};
      } else if (it->second.weight != weight) {
        context_->set_adapter_scale(it->second.id, weight);
        it->second.weight = weight;
      }
    }
  } catch (const lumen::Exception& e) {
    throw api_error(e);
  }
}

GenerationOutcome Generator::generate(const GenerationRequest& request, JobControl& control) {
  GenerationOutcome out;
  if (control.cancelled()) {  // cancelled while it waited: nothing to load or apply
    out.interrupted = true;
    return out;
  }
  // An override holds for this request only unless it says otherwise, as A1111's
  // override_settings_restore_afterwards; the next request reloads the selected model.
  if (request.checkpoint.empty()) {
    out.model = load(selected_title());
  } else if (request.restore_afterwards) {
    out.model = load(request.checkpoint);
  } else {
    select(request.checkpoint);
    out.model = loaded_;
  }
  apply_loras(request.loras);

  out.first_seed = request.seed >= 0 ? static_cast<uint64_t>(request.seed) : random_seed();
  for (int iteration = 0; iteration < request.n_iter; ++iteration) {
    if (control.cancelled()) {
      out.interrupted = true;
      break;
    }
    lumen::GenerationParams p;
    p.prompt = request.prompt;
    p.negative_prompt = request.negative_prompt;
    p.sampler = request.sampler;
    p.steps = request.steps.value_or(0);
    p.cfg_scale = request.cfg_scale.value_or(-1);
    p.guidance_rescale = request.guidance_rescale.value_or(-1);
    p.width = request.width.value_or(0);
    p.height = request.height.value_or(0);
    p.seed = out.first_seed + static_cast<uint64_t>(iteration) * static_cast<uint64_t>(request.batch_size);
    p.batch_size = request.batch_size;
    if (request.init_image) p.init_image = &(*request.init_image)[0];
    if (request.mask) p.mask = &(*request.mask)[0];
    p.strength = request.denoising_strength;
    p.progress = [&](int step, int total) {
      control.report(iteration, request.n_iter, step, total);
      return !control.cancelled();
    };
    control.report(iteration, request.n_iter, 0, 0);
    try {
      const lumen::Images images = context_->generate(p);
      for (size_t i = 0; i < images.size(); ++i) {
        out.png_base64.push_back(base64_encode(images.png(i)));
        out.infotexts.push_back(images[i].parameters ? images[i].parameters : "");
        out.seeds.push_back(images[i].seed);
      }
    } catch (const lumen::Exception& e) {
      if (e.status() != LUMEN_ERR_CANCELLED) throw api_error(e);
      out.interrupted = true;
      break;
    }
  }
  return out;
}

}  // namespace lumen::server
