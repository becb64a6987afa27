#include "io/image_io.h"

#include <png.h>
#include <stb/stb_image.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>

#include "error.h"
#include "io/atomic_file.h"
#include "io/text_file.h"

namespace lumen {
namespace {

// The largest image Lumen reads: a hostile header must not make it allocate gigabytes.
constexpr int64_t kMaxPixels = 16384LL * 16384LL;

void png_error_to_exception(png_structp png, png_const_charp message) {
  (void)png;
  throw Error("png", message);
}

std::string stbi_reason() { return stbi_failure_reason() ? stbi_failure_reason() : "?"; }

// The size a header states, checked before anything is allocated for it.
void check_image_size(const std::string& what, int w, int h, int64_t max_pixels) {
  if (w <= 0 || h <= 0 || static_cast<int64_t>(w) * h > max_pixels)
    throw Error(what, "image size " + std::to_string(w) + "x" + std::to_string(h) + " is over the limit of " +
                          std::to_string(max_pixels) + " pixels");
}

// The most pixels one byte of each format can stand for: a header claiming
// more than its file could hold is truncated or hostile, and decoding it would
// still allocate (and stb fills) the whole image. PNG: deflate's 1032:1 at one
// bit per pixel; JPEG: a one-bit code per 8x8 block, twice over; GIF:
// 12-bit LZW codes of up to 4096 pixels; BMP (uncompressed) 8; the RLE formats
// (TGA, PSD, PIC, HDR) at most 64; PNM one per byte.
int64_t max_pixels_per_byte(const std::string& bytes) {
  auto starts = [&](const char* magic) { return bytes.rfind(magic, 0) == 0; };
  if (starts("\x89PNG")) return 8256;
  if (starts("\xFF\xD8")) return 1024;
  if (starts("GIF8")) return 2731;
  if (starts("BM")) return 8;
  if (starts("P5") || starts("P6")) return 1;
  return 64;
}

}  // namespace

std::string encode_png(const RgbImage& image, const std::map<std::string, std::string>& text) {
  if (image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != static_cast<size_t>(image.width) * image.height * 3)
    throw Error("png", "image buffer does not match its size");
  std::string encoded;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, png_error_to_exception, nullptr);
  png_infop info = png_create_info_struct(png);
  try {
    png_set_write_fn(
        png, &encoded,
        [](png_structp p, png_bytep data, png_size_t n) {
          static_cast<std::string*>(png_get_io_ptr(p))->append(reinterpret_cast<const char*>(data), n);
        },
        nullptr);
    png_set_IHDR(png, info, image.width, image.height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    std::vector<png_text> chunks;
    for (const auto& [key, value] : text) {
      png_text t{};
      t.compression = PNG_ITXT_COMPRESSION_NONE;  // iTXt: UTF-8 prompts survive
      t.key = const_cast<char*>(key.c_str());
      t.text = const_cast<char*>(value.c_str());
      t.itxt_length = value.size();
      chunks.push_back(t);
    }
    if (!chunks.empty()) png_set_text(png, info, chunks.data(), static_cast<int>(chunks.size()));
    png_write_info(png, info);
    for (int y = 0; y < image.height; ++y)
      png_write_row(png, const_cast<png_bytep>(image.pixels.data() + static_cast<size_t>(y) * image.width * 3));
    png_write_end(png, info);
  } catch (...) {
    png_destroy_write_struct(&png, &info);
    throw;
  }
  png_destroy_write_struct(&png, &info);
  return encoded;
}

void write_png(const std::string& path, const RgbImage& image, const std::map<std::string, std::string>& text,
               bool overwrite) {
  if (!overwrite && std::filesystem::exists(path))
    throw Error(path, "already exists (use --overwrite to replace it)");
  std::string encoded;
  try {
    encoded = encode_png(image, text);
  } catch (const Error& e) {
    throw Error(path, e.what());
  }
  write_text_atomically(path, encoded);
}

std::pair<int, int> image_dimensions(const std::string& path) {
  require_regular_file(path);
  int w = 0, h = 0, channels = 0;
  if (!stbi_info(path.c_str(), &w, &h, &channels)) throw Error(path, "not a readable image: " + stbi_reason());
  check_image_size(path, w, h, kMaxPixels);
  return {w, h};
}

RgbImage decode_image(const std::string& bytes, const std::string& what, int64_t max_pixels) {
  if (max_pixels <= 0 || max_pixels > kMaxPixels) max_pixels = kMaxPixels;
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) throw Error(what, "image data too large");
  const int size = static_cast<int>(bytes.size());
  int w = 0, h = 0, channels = 0;
  if (!stbi_info_from_memory(data, size, &w, &h, &channels)) throw Error(what, "not a readable image: " + stbi_reason());
  check_image_size(what, w, h, max_pixels);
  if (static_cast<int64_t>(w) * h > max_pixels_per_byte(bytes) * size)
    throw Error(what, "the header says " + std::to_string(w) + "x" + std::to_string(h) + " but " +
                          std::to_string(size) + " bytes cannot hold that many pixels (truncated or corrupt)");
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(stbi_load_from_memory(data, size, &w, &h, &channels, 3),
                                                   stbi_image_free);
  if (!pixels) throw Error(what, "cannot decode: " + stbi_reason());
  RgbImage img;
  img.width = w;
  img.height = h;
  img.pixels.assign(pixels.get(), pixels.get() + static_cast<size_t>(w) * h * 3);
  return img;
}

RgbImage read_image(const std::string& path) { return decode_image(read_text_file(path), path); }

std::map<std::string, std::string> read_png_text(const std::string& path) {
  require_regular_file(path);
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f) throw Error(path, "cannot open");
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, png_error_to_exception, nullptr);
  png_infop info = png_create_info_struct(png);
  std::map<std::string, std::string> out;
  try {
    png_init_io(png, f.get());
    // libpng allocates (and zeroes) what a chunk's header claims; a claim over
    // the limit is a "benign" error it would only warn about and then allocate
    // anyway. Bound it by what this file could hold (text decompressed
    // included) and make it, like a bad CRC, an error.
    const auto file_size = static_cast<png_alloc_size_t>(std::filesystem::file_size(path));
    png_set_chunk_malloc_max(png, std::min<png_alloc_size_t>(8000000, 4 * std::max<png_alloc_size_t>(file_size, 65536)));
    png_set_benign_errors(png, 0);
    png_read_info(png, info);
    png_textp text = nullptr;
    int count = 0;
    png_get_text(png, info, &text, &count);
    for (int i = 0; i < count; ++i)
      out[text[i].key] = std::string(text[i].text, text[i].itxt_length ? text[i].itxt_length : text[i].text_length);
  } catch (const Error& e) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw Error(path, e.what());
  }
  png_destroy_read_struct(&png, &info, nullptr);
  return out;
}

}  // namespace lumen
