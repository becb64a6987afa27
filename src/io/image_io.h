// Image files: PNG writing with text chunks (A1111's "parameters"), reading
// PNG/JPEG/BMP/... for img2img. Torch-free: 8-bit RGB buffers.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace lumen {

struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // row-major RGB
};

// PNG bytes with tEXt-style chunks (iTXt: UTF-8 survives).
std::string encode_png(const RgbImage& image, const std::map<std::string, std::string>& text);
// Atomic; refuses to replace an existing file unless `overwrite`.
void write_png(const std::string& path, const RgbImage& image, const std::map<std::string, std::string>& text,
               bool overwrite);
RgbImage read_image(const std::string& path);  // any stb_image format, converted to RGB
// The same from bytes in memory (an upload); `what` names them in errors.
// More than max_pixels (0: the reading limit, 16384²) is refused before decoding.
RgbImage decode_image(const std::string& bytes, const std::string& what, int64_t max_pixels = 0);
// Width and height from the file's header, without decoding it.
std::pair<int, int> image_dimensions(const std::string& path);
// The PNG's tEXt/iTXt chunks.
std::map<std::string, std::string> read_png_text(const std::string& path);

}  // namespace lumen
