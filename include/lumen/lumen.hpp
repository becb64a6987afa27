// A thin C++17 layer over Lumen's C API (lumen.h): RAII handles and
// exceptions instead of statuses. Header-only; it exposes no LibTorch or JSON
// type either.
//
//   lumen::Context ctx;                        // the embedded default model
//   lumen::GenerationParams p;
//   p.prompt = "a small blue square at the top on a white background";
//   lumen::Images images = ctx.generate(p);
//   images.write_png(0, "out.png");
#pragma once
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>

#include "lumen/lumen.h"

namespace lumen {

// A failed call: the C status and lumen_last_error()'s message.
class Exception : public std::runtime_error {
 public:
  Exception(lumen_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  lumen_status status() const { return status_; }

 private:
  lumen_status status_;
};

inline void check(lumen_status status) {
  if (status != LUMEN_OK) throw Exception(status, lumen_last_error());
}

// Images a generation made (or a file read); owns them.
class Images {
 public:
  explicit Images(lumen_images* images = nullptr) : images_(images) {}
  Images(Images&& o) noexcept : images_(std::exchange(o.images_, nullptr)) {}
  Images& operator=(Images&& o) noexcept {
    std::swap(images_, o.images_);
    return *this;
  }
  Images(const Images&) = delete;
  Images& operator=(const Images&) = delete;
  ~Images() { lumen_images_free(images_); }

  size_t size() const { return images_ ? images_->count : 0; }
  const lumen_image& operator[](size_t i) const { return images_->images[i]; }
  void write_png(size_t i, const std::string& path, bool overwrite = false) const {
    check(lumen_image_write_png(&images_->images[i], path.c_str(), overwrite ? 1 : 0));
  }
  // Image i as PNG bytes, with its parameters text.
  std::string png(size_t i) const {
    uint8_t* data = nullptr;
    size_t size = 0;
    check(lumen_image_encode_png(&images_->images[i], &data, &size));
    std::string bytes(reinterpret_cast<const char*>(data), size);
    lumen_free(data);
    return bytes;
  }
  static Images read(const std::string& path) {
    lumen_images* out = nullptr;
    check(lumen_image_read(path.c_str(), &out));
    return Images(out);
  }
  // PNG/JPEG/... bytes in memory; max_pixels 0: the library's limit.
  static Images decode(const std::string& bytes, int64_t max_pixels = 0) {
    lumen_images* out = nullptr;
    check(lumen_image_decode(bytes.data(), bytes.size(), max_pixels, &out));
    return Images(out);
  }

 private:
  lumen_images* images_;
};

struct GenerationParams {
  std::string prompt, negative_prompt, sampler;  // sampler "": the model's scheduler
  int steps = 0;                                 // 0: the model's recommendation
  float cfg_scale = -1, guidance_rescale = -1;   // < 0: the model's recommendation
  int width = 0, height = 0;                     // 0: the model's native size
  uint64_t seed = 0;
  int batch_size = 1;
  const lumen_image* init_image = nullptr;  // img2img
  const lumen_image* mask = nullptr;        // inpainting: white = repaint
  float strength = 0.75f;
  // Called after each step with (step, total); return false to cancel (throws Exception LUMEN_ERR_CANCELLED).
  std::function<bool(int step, int total)> progress;
  // The finer controls; see lumen_generation_params.
  int clip_skip = 0;
  bool plain_prompt = false, rescale_in_v_space = false, vae_tiling = false;
  float eta = 0;
  std::string prediction_type, timestep_spacing;  // "": the model's
  int zero_terminal_snr = -1, karras_sigmas = -1;  // -1: the model's
  int original_size[2] = {0, 0}, target_size[2] = {0, 0}, crop_top_left[2] = {0, 0};
  int vae_tile_size = 0;
  lumen_generation_stats* stats = nullptr;  // filled if set

  // The C struct, pointing into this object (valid while it lives unchanged).
  lumen_generation_params c_params() const {
    lumen_generation_params c = lumen_generation_default_params();
    c.prompt = prompt.c_str();
    c.negative_prompt = negative_prompt.empty() ? nullptr : negative_prompt.c_str();
    c.sampler = sampler.empty() ? nullptr : sampler.c_str();
    c.steps = steps;
    c.cfg_scale = cfg_scale;
    c.guidance_rescale = guidance_rescale;
    c.width = width;
    c.height = height;
    c.seed = seed;
    c.batch_size = batch_size;
    c.init_image = init_image;
    c.mask = mask;
    c.strength = strength;
    if (progress) {
      c.progress = [](int step, int total, void* user) {
        return (*static_cast<const std::function<bool(int, int)>*>(user))(step, total) ? 0 : 1;
      };
      c.user_data = const_cast<std::function<bool(int, int)>*>(&progress);
    }
    c.clip_skip = clip_skip;
    c.plain_prompt = plain_prompt;
    c.eta = eta;
    c.rescale_in_v_space = rescale_in_v_space;
    c.prediction_type = prediction_type.empty() ? nullptr : prediction_type.c_str();
    c.timestep_spacing = timestep_spacing.empty() ? nullptr : timestep_spacing.c_str();
    c.zero_terminal_snr = zero_terminal_snr;
    c.karras_sigmas = karras_sigmas;
    for (int i = 0; i < 2; ++i) {
      c.original_size[i] = original_size[i];
      c.target_size[i] = target_size[i];
      c.crop_top_left[i] = crop_top_left[i];
    }
    c.vae_tiling = vae_tiling;
    c.vae_tile_size = vae_tile_size;
    c.stats = stats;
    return c;
  }
  // Throws on what can be refused without a model (lumen_generation_validate).
  void validate() const {
    const lumen_generation_params c = c_params();
    check(lumen_generation_validate(&c));
  }
};

// One loaded model; see lumen.h for thread-safety.
class Context {
 public:
  // "" loads the embedded default model.
  explicit Context(const std::string& model_path = "", lumen_context_params params = lumen_context_default_params()) {
    check(lumen_context_create(model_path.c_str(), &params, &ctx_));
  }
  Context(Context&& o) noexcept : ctx_(std::exchange(o.ctx_, nullptr)) {}
  Context& operator=(Context&& o) noexcept {
    std::swap(ctx_, o.ctx_);
    return *this;
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  ~Context() { lumen_context_free(ctx_); }

  Images generate(const GenerationParams& p) {
    const lumen_generation_params c = p.c_params();
    lumen_images* out = nullptr;
    check(lumen_generate(ctx_, &c, &out));
    return Images(out);
  }

  // Returns the adapter's id, for set_adapter_scale / remove_adapter.
  int apply_lora(const std::string& path, float scale = 1) { return apply(LUMEN_ADAPTER_LORA, path, scale); }
  int apply_resadapter(const std::string& path, float scale = 1, bool blend_norms = false) {
    return apply(blend_norms ? LUMEN_ADAPTER_RESADAPTER_BLEND : LUMEN_ADAPTER_RESADAPTER, path, scale);
  }
  // What applying adapter `id` matched, one line.
  std::string adapter_summary(int id) const {
    const char* s = lumen_adapter_summary(ctx_, id);
    return s ? s : "";
  }
  void set_adapter_scale(int id, float scale) { check(lumen_adapter_set_scale(ctx_, id, scale)); }
  void remove_adapter(int id) { check(lumen_adapter_remove(ctx_, id)); }

  lumen_context* get() const { return ctx_; }

 private:
  int apply(lumen_adapter_kind kind, const std::string& path, float scale) {
    int id = 0;
    check(lumen_adapter_apply(ctx_, kind, path.c_str(), scale, &id));
    return id;
  }
  lumen_context* ctx_ = nullptr;
};

}  // namespace lumen
