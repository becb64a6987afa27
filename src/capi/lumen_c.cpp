// The C API (include/lumen/lumen.h) over the library: every entry point
// catches what the C++ side throws and turns it into a status plus a
// thread-local message, so no exception crosses the boundary.
#include "lumen/lumen.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <list>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "adapters/lora_apply.h"
#include "adapters/resadapter.h"
#include "error.h"
#include "io/image_io.h"
#include "io/image_tensor.h"
#include "model/device.h"
#include "model/model_loader.h"
#include "pipeline/infotext.h"
#include "pipeline/model_hash_cache.h"
#include "pipeline/pipeline.h"
#include "pipeline/recommended_settings.h"
#include "prompt/prompt_parser.h"
#include "recipe.h"
#include "runtime.h"
#include "samplers/scheduler.h"
#include "trainer.h"

#ifndef LUMEN_VERSION_STRING
#define LUMEN_VERSION_STRING "0.0.0"
#endif

struct lumen_context {
  struct Adapter {
    int id;
    lumen_adapter_kind kind;
    std::string path;
    float scale;
    std::string summary;  // what applying it matched
    std::unique_ptr<lumen::adapters::AppliedResAdapter> resadapter;  // kind RESADAPTER
  };
  std::string model_path;
  std::optional<std::string> model_hash;  // single files: A1111's short hash, made at the first generation
  std::shared_ptr<lumen::LoadedModel> model;
  std::unique_ptr<lumen::Pipeline> pipeline;
  lumen::RecommendedSettings recommended;
  std::unique_ptr<lumen::adapters::LoraStack> loras;  // merged into the weights; removal restores them exactly
  std::mutex busy;                                    // held by the one job running (try_lock: BUSY otherwise)
  mutable std::mutex list;                            // guards `adapters` for readers
  // A list: lumen_adapter_get hands out path pointers "valid until the adapter
  // is removed", which a vector's reallocation (or an erase before it) broke.
  std::list<Adapter> adapters;
  int next_id = 1;
};

namespace {

// Encoded images handed to lumen_image_decode: far above any real PNG/JPEG of
// the 16384² images the library reads.
constexpr size_t kMaxEncodedImageBytes = size_t{1} << 30;

thread_local std::string g_last_error;

struct Cancelled {};

lumen_status fail(lumen_status status, const std::string& message) {
  g_last_error = message;
  return status;
}

// Runs `body`; lumen::Error (a named file or option with its problem) becomes
// `user_error`, everything else its own status.
template <class Body>
lumen_status guarded(lumen_status user_error, Body body) {
  try {
    body();
    return LUMEN_OK;
  } catch (const Cancelled&) {
    return fail(LUMEN_ERR_CANCELLED, "cancelled by the progress callback");
  } catch (const lumen::Error& e) {
    return fail(user_error, e.what());
  } catch (const std::filesystem::filesystem_error& e) {
    return fail(LUMEN_ERR_FILE, e.path1().string() + ": " + e.code().message());
  } catch (const std::bad_alloc&) {
    return fail(LUMEN_ERR_OUT_OF_MEMORY, "out of memory");
  } catch (const c10::Error& e) {
    bool out_of_memory = false;
    const std::string message = lumen::describe_error(e, &out_of_memory);
    return fail(out_of_memory ? LUMEN_ERR_OUT_OF_MEMORY : LUMEN_ERR_INTERNAL, message);
  } catch (const std::exception& e) {
    return fail(LUMEN_ERR_INTERNAL, e.what());
  } catch (...) {
    return fail(LUMEN_ERR_INTERNAL, "unknown error");
  }
}

// A caller's struct read up to the size it says it has; fields it does not
// know keep their defaults (an older caller, a newer library).
// Every version's sizeof is a multiple of the struct's alignment (8: it holds
// pointers); any other size would copy part of a pointer (struct_size 9..13
// once made lumen_generation_validate dereference half of `prompt`).
template <class T>
bool read_params(const T* given, T& out) {
  if (given->struct_size < sizeof(uint32_t) || given->struct_size % alignof(T) != 0) return false;
  std::memcpy(static_cast<void*>(&out), given, std::min<size_t>(given->struct_size, sizeof(T)));
  out.struct_size = sizeof(T);
  return true;
}

char* copy_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (!out) throw std::bad_alloc();
  std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}


void fill_image(lumen_image& out, const lumen::RgbImage& rgb) {
  out.width = static_cast<uint32_t>(rgb.width);
  out.height = static_cast<uint32_t>(rgb.height);
  out.pixels = static_cast<uint8_t*>(std::malloc(rgb.pixels.size()));
  if (!out.pixels) throw std::bad_alloc();
  std::memcpy(out.pixels, rgb.pixels.data(), rgb.pixels.size());
}

lumen_images* new_images(size_t count) {
  auto* out = static_cast<lumen_images*>(std::calloc(1, sizeof(lumen_images)));
  if (!out) throw std::bad_alloc();
  out->images = static_cast<lumen_image*>(std::calloc(count, sizeof(lumen_image)));
  if (!out->images) {
    std::free(out);
    throw std::bad_alloc();
  }
  out->count = count;
  return out;
}

lumen::RgbImage rgb_of(const lumen_image& image) {
  lumen::RgbImage rgb;
  rgb.width = static_cast<int>(image.width);
  rgb.height = static_cast<int>(image.height);
  rgb.pixels.assign(image.pixels, image.pixels + static_cast<size_t>(image.width) * image.height * 3);
  return rgb;
}

// A generation input (`what` names it in the error), checked before use.
void check_input(const lumen_image& image, const char* what) {
  if (!image.pixels || image.width == 0 || image.height == 0 || image.width > 16384 || image.height > 16384)
    throw lumen::Error(what, "needs pixels and a width and height in 1..16384");
}

// The same for an image to encode: a NULL or oversized one is the caller's
// error, not an allocation failure (width 2^31 crashed, 2^32-1 leaked
// "cannot create std::vector larger than max_size()").
bool image_is_usable(const lumen_image& image) {
  return image.pixels && image.width > 0 && image.height > 0 && image.width <= 16384 && image.height <= 16384;
}

// A checked input as RGB. One with over four times the generation's pixels is
// shrunk to its size here, in 8 bits with OpenCV's area filter: a 16000² upload
// for a 64² image would otherwise become gigabytes of float pixels before the
// pipeline resizes it.
lumen::RgbImage input_rgb(const lumen_image& image, const char* what, int64_t width, int64_t height) {
  check_input(image, what);
  if (static_cast<int64_t>(image.width) * image.height <= 4 * width * height) return rgb_of(image);
  const cv::Mat source(static_cast<int>(image.height), static_cast<int>(image.width), CV_8UC3,
                       const_cast<uint8_t*>(image.pixels));
  cv::Mat shrunk;
  cv::resize(source, shrunk, cv::Size(static_cast<int>(width), static_cast<int>(height)), 0, 0, cv::INTER_AREA);
  lumen::RgbImage rgb;
  rgb.width = shrunk.cols;
  rgb.height = shrunk.rows;
  rgb.pixels.assign(shrunk.data, shrunk.data + shrunk.total() * 3);
  return rgb;
}

}  // namespace

// The definitions take their C linkage from the header's declarations.

const char* lumen_version(void) { return LUMEN_VERSION_STRING; }
int lumen_api_version(void) { return LUMEN_API_VERSION; }
const char* lumen_last_error(void) { return g_last_error.c_str(); }
void lumen_set_threads(int n) {
  guarded(LUMEN_ERR_INVALID_ARGUMENT, [&] { lumen::set_threads(n); });
}

namespace {

lumen_context_params context_defaults() {
  lumen_context_params p{};
  p.struct_size = sizeof p;
  p.dtype = LUMEN_DTYPE_F32;
  return p;
}

lumen_generation_params generation_defaults() {
  lumen_generation_params p{};
  p.struct_size = sizeof p;
  p.cfg_scale = -1;
  p.guidance_rescale = -1;
  p.batch_size = 1;
  p.strength = 0.75f;
  p.zero_terminal_snr = -1;
  p.karras_sigmas = -1;
  return p;
}

// What a caller's output struct (struct_size first, set by the caller) can hold of `full`.
template <class T>
void write_out(T* out, T full) {
  if (!out || out->struct_size < sizeof(uint32_t)) return;
  full.struct_size = out->struct_size;
  std::memcpy(static_cast<void*>(out), &full, std::min<size_t>(out->struct_size, sizeof(T)));
}

// The first `size` bytes of `defaults` into the caller's struct, its struct_size set to them.
template <class T>
void init_params(T* out, size_t size, T defaults) {
  if (!out || size < sizeof(uint32_t)) return;
  size = std::min(size, sizeof(T));
  defaults.struct_size = static_cast<uint32_t>(size);
  std::memcpy(static_cast<void*>(out), &defaults, size);
}

}  // namespace

void lumen_context_params_init(lumen_context_params* params, size_t size) { init_params(params, size, context_defaults()); }
void lumen_generation_params_init(lumen_generation_params* params, size_t size) {
  init_params(params, size, generation_defaults());
}

lumen_status lumen_context_create(const char* model_path, const lumen_context_params* given, lumen_context** out) {
  if (!out) return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_context_create: out is NULL");
  *out = nullptr;
  lumen_context_params params = context_defaults();
  if (given && !read_params(given, params))
    return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_context_create: params.struct_size is not set");
  lumen::LoadOptions load;
  try {
    load.device = lumen::parse_device(params.device ? params.device : "cpu");
  } catch (const std::exception& e) {
    return fail(LUMEN_ERR_INVALID_ARGUMENT, lumen::describe_error(e));
  }
  switch (params.dtype) {
    case LUMEN_DTYPE_F32: load.dtype = torch::kFloat; break;
    case LUMEN_DTYPE_BF16: load.dtype = torch::kBFloat16; break;
    case LUMEN_DTYPE_F16:
      if (load.device.is_cpu()) return fail(LUMEN_ERR_INVALID_ARGUMENT, "dtype f16: float16 is for GPUs; on a CPU use bf16 or f32");
      load.dtype = torch::kHalf;
      break;
    default: return fail(LUMEN_ERR_INVALID_ARGUMENT, "dtype: not one of LUMEN_DTYPE_F32, _BF16, _F16");
  }
  if (params.threads < 0 || params.threads > 4096) return fail(LUMEN_ERR_INVALID_ARGUMENT, "threads: must be in 0..4096");
  if (params.config_override) load.config_override = params.config_override;
  return guarded(LUMEN_ERR_FILE, [&] {
    if (params.threads > 0) lumen::set_threads(params.threads);
    auto ctx = std::make_unique<lumen_context>();
    ctx->model_path = model_path && *model_path ? model_path : lumen::asset_path("default-model");
    ctx->model = std::make_shared<lumen::LoadedModel>(lumen::load_model(ctx->model_path, load));
    ctx->pipeline = std::make_unique<lumen::Pipeline>(ctx->model);
    ctx->recommended = lumen::read_recommended_settings(ctx->model_path);
    ctx->loras = std::make_unique<lumen::adapters::LoraStack>(lumen::adapters::adapter_components(*ctx->model),
                                                              lumen::adapters::ApplyMode::Merge);
    *out = ctx.release();
  });
}

void lumen_context_free(lumen_context* ctx) {
  if (!ctx) return;
  { std::lock_guard<std::mutex> wait_for_the_job(ctx->busy); }
  delete ctx;
}

// ---- adapters ----

namespace {

std::string lora_name(int id) { return "lora-" + std::to_string(id); }

lumen_context::Adapter* find_adapter(lumen_context* ctx, int id) {
  for (auto& a : ctx->adapters)
    if (a.id == id) return &a;
  return nullptr;
}

// Runs an adapter change with the context held; BUSY when a job runs.
template <class Body>
lumen_status with_context(lumen_context* ctx, lumen_status user_error, Body body) {
  if (!ctx) return fail(LUMEN_ERR_INVALID_ARGUMENT, "the context is NULL");
  std::unique_lock<std::mutex> lock(ctx->busy, std::try_to_lock);
  if (!lock.owns_lock()) return fail(LUMEN_ERR_BUSY, "the context is running another job");
  return guarded(user_error, body);
}

}  // namespace

lumen_status lumen_adapter_apply(lumen_context* ctx, lumen_adapter_kind kind, const char* path, float scale, int* id_out) {
  if (!path || !*path) return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_adapter_apply: no path");
  if (!std::isfinite(scale) || std::abs(scale) > 100)
    return fail(LUMEN_ERR_INVALID_ARGUMENT, std::string(path) + ": scale must be finite, within ±100");
  if (kind != LUMEN_ADAPTER_LORA && kind != LUMEN_ADAPTER_RESADAPTER && kind != LUMEN_ADAPTER_RESADAPTER_BLEND)
    return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_adapter_apply: kind is not LORA, RESADAPTER or RESADAPTER_BLEND");
  return with_context(ctx, LUMEN_ERR_FILE, [&] {
    if (kind != LUMEN_ADAPTER_LORA)
      for (const auto& a : ctx->adapters)
        if (a.kind != LUMEN_ADAPTER_LORA) throw lumen::Error(path, "a ResAdapter is applied already; remove it first");
    lumen_context::Adapter a{ctx->next_id, kind, path, scale, "", nullptr};
    if (kind == LUMEN_ADAPTER_LORA) {
      auto file = std::make_shared<lumen::adapters::LoraFile>(lumen::adapters::read_lora_file(path));
      a.summary = ctx->loras->add(lora_name(a.id), file, scale).summary();
    } else {
      // Its LoRA half runs beside the weights (not merged), so it never
      // interferes with the merged LoRAs' exact restore.
      a.resadapter = std::make_unique<lumen::adapters::AppliedResAdapter>(
          ctx->model->unet.ptr(), lumen::adapters::read_resadapter(lumen::adapters::resadapter_files(path)), scale,
          kind == LUMEN_ADAPTER_RESADAPTER ? lumen::adapters::NormMode::Replace : lumen::adapters::NormMode::Blend,
          lumen::adapters::ApplyMode::Runtime);
      a.summary = a.resadapter->report().summary();
    }
    std::lock_guard<std::mutex> l(ctx->list);
    ctx->adapters.push_back(std::move(a));
    if (id_out) *id_out = ctx->next_id;
    ++ctx->next_id;
  });
}

lumen_status lumen_adapter_set_scale(lumen_context* ctx, int id, float scale) {
  if (!std::isfinite(scale) || std::abs(scale) > 100)
    return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_adapter_set_scale: scale must be finite, within ±100");
  return with_context(ctx, LUMEN_ERR_INVALID_ARGUMENT, [&] {
    auto* a = find_adapter(ctx, id);
    if (!a) throw lumen::Error("adapter " + std::to_string(id), "no such adapter on this context");
    if (a->resadapter) a->resadapter->set_scale(scale);
    else ctx->loras->set_scale(lora_name(id), scale);
    std::lock_guard<std::mutex> l(ctx->list);
    a->scale = scale;
  });
}

lumen_status lumen_adapter_remove(lumen_context* ctx, int id) {
  return with_context(ctx, LUMEN_ERR_INVALID_ARGUMENT, [&] {
    auto* a = find_adapter(ctx, id);
    if (!a) throw lumen::Error("adapter " + std::to_string(id), "no such adapter on this context");
    if (a->resadapter) a->resadapter->remove();
    else ctx->loras->remove(lora_name(id));
    std::lock_guard<std::mutex> l(ctx->list);
    ctx->adapters.remove_if([a](const lumen_context::Adapter& x) { return &x == a; });
  });
}

int lumen_adapter_count(const lumen_context* ctx) {
  if (!ctx) return 0;
  std::lock_guard<std::mutex> l(ctx->list);
  return static_cast<int>(ctx->adapters.size());
}

lumen_status lumen_adapter_get(const lumen_context* ctx, int index, lumen_adapter_info* info) {
  if (!ctx || !info) return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_adapter_get: NULL context or info");
  std::lock_guard<std::mutex> l(ctx->list);
  if (index < 0 || index >= static_cast<int>(ctx->adapters.size()))
    return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_adapter_get: index " + std::to_string(index) + " out of range");
  const auto& a = *std::next(ctx->adapters.begin(), index);
  *info = {a.id, a.kind, a.path.c_str(), a.scale};
  return LUMEN_OK;
}

const char* lumen_adapter_summary(const lumen_context* ctx, int id) {
  if (!ctx) return nullptr;
  std::lock_guard<std::mutex> l(ctx->list);
  for (const auto& a : ctx->adapters)
    if (a.id == id) return a.summary.c_str();
  return nullptr;
}

// ---- images ----

void lumen_images_free(lumen_images* images) {
  if (!images) return;
  for (size_t i = 0; i < images->count; ++i) {
    std::free(images->images[i].pixels);
    std::free(const_cast<char*>(images->images[i].parameters));
  }
  std::free(images->images);
  std::free(images);
}

namespace {

// One decoded image as a lumen_images of count 1.
lumen_images* single_image(const lumen::RgbImage& rgb) {
  lumen_images* images = new_images(1);
  try {
    fill_image(images->images[0], rgb);
  } catch (...) {
    lumen_images_free(images);
    throw;
  }
  return images;
}

std::map<std::string, std::string> png_text(const lumen_image& image) {
  std::map<std::string, std::string> text;
  if (image.parameters) text["parameters"] = image.parameters;
  return text;
}

}  // namespace

lumen_status lumen_image_write_png(const lumen_image* image, const char* path, int overwrite) {
  if (!image || !path || !*path) return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_image_write_png: NULL image or path");
  if (!image_is_usable(*image))
    return fail(LUMEN_ERR_INVALID_ARGUMENT, std::string(path) + ": the image needs pixels and a width and height in 1..16384");
  return guarded(LUMEN_ERR_FILE, [&] { lumen::write_png(path, rgb_of(*image), png_text(*image), overwrite != 0); });
}

lumen_status lumen_image_read(const char* path, lumen_images** out) {
  if (!path || !out) return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_image_read: NULL path or out");
  *out = nullptr;
  return guarded(LUMEN_ERR_FILE, [&] { *out = single_image(lumen::read_image(path)); });
}

lumen_status lumen_image_decode(const void* data, size_t size, int64_t max_pixels, lumen_images** out) {
  if (!data || !out || max_pixels < 0) return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_image_decode: NULL data or out, or max_pixels < 0");
  if (size > kMaxEncodedImageBytes)  // before copying it: size (size_t)-1 leaked "basic_string::_M_create"
    return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_image_decode: more than 1 GiB of encoded image");
  *out = nullptr;
  return guarded(LUMEN_ERR_FILE, [&] {
    *out = single_image(
        lumen::decode_image(std::string(static_cast<const char*>(data), size), "image data", max_pixels));
  });
}

lumen_status lumen_image_encode_png(const lumen_image* image, uint8_t** data, size_t* size) {
  if (!image || !data || !size) return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_image_encode_png: NULL argument");
  *data = nullptr;
  *size = 0;
  if (!image_is_usable(*image))
    return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_image_encode_png: the image needs pixels and a width and height in 1..16384");
  return guarded(LUMEN_ERR_INTERNAL, [&] {
    const std::string png = lumen::encode_png(rgb_of(*image), png_text(*image));
    auto* bytes = static_cast<uint8_t*>(std::malloc(png.size()));
    if (!bytes) throw std::bad_alloc();
    std::memcpy(bytes, png.data(), png.size());
    *data = bytes;
    *size = png.size();
  });
}

void lumen_free(void* p) { std::free(p); }

// ---- generation ----

namespace {

// {width, height} or {top, left} as the pipeline's {height, width} / {top, left}.
std::array<int64_t, 2> pair_of(const int v[2], bool width_first, const char* what) {
  if (v[0] < 0 || v[1] < 0 || v[0] > 65536 || v[1] > 65536) throw lumen::Error(what, "must be in 0..65536");
  return width_first ? std::array<int64_t, 2>{v[1], v[0]} : std::array<int64_t, 2>{v[0], v[1]};
}

// The pipeline's options for a caller's params; `recommended` fills what
// they leave to the model (none: the library's defaults).
lumen::GenerationOptions options_from(const lumen_generation_params& p, const lumen::RecommendedSettings& recommended) {
  lumen::GenerationOptions o;
  o.prompt = p.prompt;
  o.negative_prompt = p.negative_prompt ? p.negative_prompt : "";
  o.sampler = p.sampler ? p.sampler : "";
  o.steps = p.steps > 0 ? p.steps : recommended.steps.value_or(20);
  if (p.steps < 0) o.steps = p.steps;  // refused by validate_options, with its name
  o.cfg_scale = p.cfg_scale >= 0 || std::isnan(p.cfg_scale) ? p.cfg_scale : recommended.cfg_scale.value_or(7.0);
  o.guidance_rescale = p.guidance_rescale >= 0 || std::isnan(p.guidance_rescale)
                           ? p.guidance_rescale
                           : recommended.guidance_rescale.value_or(0.0);
  o.width = p.width;
  o.height = p.height;
  o.seed = p.seed;
  o.batch_size = p.batch_size;
  o.strength = p.strength;
  // Checked here, so that lumen_generation_validate refuses what generate would.
  if (p.clip_skip < 0 || p.clip_skip > 64) throw lumen::Error("clip_skip", "must be in 0..64");
  for (const auto& [value, name] : {std::pair{p.zero_terminal_snr, "zero_terminal_snr"}, {p.karras_sigmas, "karras_sigmas"}})
    if (value < -1 || value > 1) throw lumen::Error(name, "must be -1 (the model's), 0 or 1");
  if (p.vae_tile_size != 0 && (p.vae_tile_size < 64 || p.vae_tile_size > 16384))
    throw lumen::Error("vae_tile_size", "must be 0 (the VAE's sample size) or in 64..16384");
  o.encoding.clip_skip = std::max(1, p.clip_skip);
  o.encoding.plain = p.plain_prompt != 0;
  o.eta = p.eta;
  o.rescale_space = p.rescale_in_v_space ? lumen::RescaleSpace::V : lumen::RescaleSpace::ModelOutput;
  if (p.prediction_type) o.prediction_type = p.prediction_type;
  if (p.timestep_spacing) o.timestep_spacing = p.timestep_spacing;
  if (p.zero_terminal_snr >= 0) o.zero_terminal_snr = p.zero_terminal_snr != 0;
  if (p.karras_sigmas >= 0) o.karras_sigmas = p.karras_sigmas != 0;
  o.original_size = pair_of(p.original_size, true, "original_size");
  o.target_size = pair_of(p.target_size, true, "target_size");
  o.crop_top_left = pair_of(p.crop_top_left, false, "crop_top_left");
  o.vae_tiling = p.vae_tiling != 0;
  o.vae_tile_size = p.vae_tile_size;
  return o;
}

// Reads the caller's params and checks their NULL rules: LUMEN_OK, or the failure (its message set).
lumen_status read_generation_params(const lumen_generation_params* given, lumen_generation_params& p) {
  p = generation_defaults();
  if (!given) return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_generate: NULL params");
  if (!read_params(given, p)) return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_generate: params.struct_size is not set (or not a struct's size: a multiple of 8)");
  if (!p.prompt) return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_generate: prompt is NULL (use \"\" for none)");
  if (p.mask && !p.init_image) return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_generate: a mask needs an init_image");
  return LUMEN_OK;
}

}  // namespace

lumen_status lumen_generation_validate(const lumen_generation_params* given) {
  lumen_generation_params p;
  if (const lumen_status s = read_generation_params(given, p); s != LUMEN_OK) return s;
  return guarded(LUMEN_ERR_INVALID_ARGUMENT, [&] {
    const lumen::GenerationOptions o = options_from(p, lumen::RecommendedSettings{});
    lumen::validate_options(o);
    if (p.init_image) check_input(*p.init_image, "init_image");
    if (p.mask) check_input(*p.mask, "mask");
    // Every SD-family VAE downsamples by 8; a model may need more (checked when generating).
    lumen::check_size_factor(o, 8);
    if (!o.sampler.empty()) lumen::samplers::make_scheduler(o.sampler, lumen::samplers::ScheduleConfig{});
    if (!o.encoding.plain)  // syntax, length and nesting; the token count needs the model's tokenizer
      for (const auto* text : {&o.prompt, &o.negative_prompt}) lumen::parse_prompt_weights(*text);
  });
}

lumen_status lumen_generate(lumen_context* ctx, const lumen_generation_params* given, lumen_images** out) {
  if (!out) return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_generate: out is NULL");
  *out = nullptr;
  lumen_generation_params p;
  if (const lumen_status s = read_generation_params(given, p); s != LUMEN_OK) return s;
  return with_context(ctx, LUMEN_ERR_INVALID_ARGUMENT, [&] {
    lumen::GenerationOptions o = options_from(p, ctx->recommended);
    const int64_t native = lumen::native_image_size(*ctx->model);
    const int64_t width = o.width > 0 ? o.width : native, height = o.height > 0 ? o.height : native;
    if (p.init_image) o.init_image = lumen::init_image_tensor(input_rgb(*p.init_image, "init_image", width, height));
    if (p.mask) o.mask = lumen::mask_tensor(input_rgb(*p.mask, "mask", width, height));
    o.on_step = [&](int64_t step, int64_t total, const torch::Tensor&) {
      if (p.progress && p.progress(static_cast<int>(step + 1), static_cast<int>(total), p.user_data)) throw Cancelled{};
    };
    lumen::validate_options(o);
    lumen::fit_threads_to_work(lumen::estimated_unet_step_flops(*ctx->model, o));
    const lumen::GenerationResult result = ctx->pipeline->generate(o);
    write_out(p.stats, lumen_generation_stats{0, result.times.encode, result.times.denoise, result.times.decode,
                                              static_cast<int>(result.times.steps)});

    lumen::GenerationOptions made = o;  // the size made, for the parameters text
    made.height = result.images.size(1);
    made.width = result.images.size(2);
    lumen::InfotextFields fields;
    fields.sampler = !o.sampler.empty() ? o.sampler : ctx->pipeline->scheduler_config().value("_class_name", "");
    fields.model_name = std::filesystem::path(ctx->model_path).filename().string();
    if (!ctx->model_hash) {  // hashing a checkpoint takes a while: not at load, and once (cached on disk too)
      // The weights are in memory: a file moved or deleted since loading
      // costs the image its "Model hash" field, not the image.
      std::error_code ec;
      const bool file = std::filesystem::is_regular_file(ctx->model_path, ec);
      try {
        ctx->model_hash = file ? lumen::cached_short_file_hash(ctx->model_path) : "";
      } catch (const std::exception&) {
        ctx->model_hash = "";
      }
    }
    fields.model_hash = *ctx->model_hash;
    lumen_images* images = new_images(static_cast<size_t>(result.images.size(0)));
    try {
      for (size_t i = 0; i < images->count; ++i) {
        fields.seed = result.seeds[i];
        fill_image(images->images[i], lumen::rgb_from_tensor(result.images[static_cast<int64_t>(i)]));
        images->images[i].seed = fields.seed;
        images->images[i].parameters = copy_string(lumen::format_infotext(made, o.prompt, o.negative_prompt, fields));
      }
    } catch (...) {
      lumen_images_free(images);
      throw;
    }
    *out = images;
  });
}

// ---- training ----

namespace {

// A string into a caller's fixed buffer; refused rather than cut short.
void copy_into(char* out, size_t size, const std::string& s, const char* what) {
  if (s.size() >= size) throw lumen::Error(what, "is longer than the " + std::to_string(size - 1) + " bytes the API holds");
  std::memcpy(out, s.c_str(), s.size() + 1);
}

bool is_feedback_task(lumen::train::Task task) {
  return task == lumen::train::Task::Feedback || task == lumen::train::Task::Segmenter ||
         task == lumen::train::Task::Reward;
}

lumen_train_params train_defaults() {
  lumen_train_params p{};
  p.struct_size = sizeof p;
  return p;
}

}  // namespace

void lumen_train_params_init(lumen_train_params* params, size_t size) { init_params(params, size, train_defaults()); }

lumen_status lumen_recipe_read_info(const char* recipe_path, lumen_recipe_info* info) {
  if (!recipe_path || !*recipe_path || !info)
    return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_recipe_read_info: no recipe path or info");
  if (info->struct_size < sizeof(uint32_t))  // it returned OK having written nothing
    return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_recipe_read_info: info.struct_size is not set");
  return guarded(LUMEN_ERR_FILE, [&] {
    const lumen::train::Recipe recipe = lumen::train::read_recipe(recipe_path);
    lumen_recipe_info full{};
    copy_into(full.task, sizeof full.task, lumen::train::task_name(recipe.task), "task");
    full.feedback = is_feedback_task(recipe.task);
    full.steps = recipe.steps;
    full.batch_size = recipe.batch_size;
    copy_into(full.output, sizeof full.output, recipe.output, recipe_path);
    write_out(info, full);
  });
}

lumen_status lumen_train_run(const char* recipe_path, const lumen_train_params* given) {
  if (!recipe_path || !*recipe_path) return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_train_run: no recipe path");
  lumen_train_params p = train_defaults();
  if (given && !read_params(given, p))
    return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_train_run: params.struct_size is not set (or not a struct's size: a multiple of 8)");
  if (p.stop_after < 0 || p.threads < 0 || p.threads > 4096)
    return fail(LUMEN_ERR_INVALID_ARGUMENT, "lumen_train_run: stop_after must be >= 0 and threads in 0..4096");
  bool cancelled = false;
  const lumen_status status = guarded(LUMEN_ERR_FILE, [&] {
    lumen::train::Recipe recipe = lumen::train::read_recipe(recipe_path);
    if (p.threads > 0) recipe.threads = p.threads;
    lumen::train::TrainOptions options;
    options.resume = p.resume != 0;
    options.stop_after = p.stop_after;
    options.progress = p.progress_bar != 0;
    if (p.callback) {
      options.on_step = [&](int64_t step, const std::map<std::string, double>& metrics) {
        const auto loss = metrics.find("loss");
        if (p.callback(step, recipe.steps, loss == metrics.end() ? 0.0 : loss->second, p.user_data)) cancelled = true;
      };
      options.stop_requested = [&] { return cancelled; };
    }
    const lumen::train::TrainResult r = lumen::train::run_training(recipe, options);
    lumen_train_result full{};
    full.first_step = r.first_step;
    full.last_step = r.last_step;
    full.seconds = r.seconds;
    full.total_seconds = r.total_seconds;
    full.finished = r.finished;
    copy_into(full.final_folder, sizeof full.final_folder, r.final_folder, "final folder");
    write_out(p.result, full);
  });
  if (status == LUMEN_OK && cancelled)
    return fail(LUMEN_ERR_CANCELLED, std::string(recipe_path) + ": stopped by the callback (checkpointed; resume continues it)");
  return status;
}

lumen_status lumen_train(const char* recipe_path, int resume, lumen_train_callback callback, void* user_data) {
  lumen_train_params p = train_defaults();
  p.resume = resume;
  p.callback = callback;
  p.user_data = user_data;
  return lumen_train_run(recipe_path, &p);
}
