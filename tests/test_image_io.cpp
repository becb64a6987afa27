// Image files from strangers (uploads, img2img inputs, dataset folders): what
// their headers claim is checked before anything is allocated for it. Torch-free,
// so it also runs in the sanitized build of the parsers (fuzz/CMakeLists.txt).
#include <gtest/gtest.h>

#include <string>

#include "error.h"
#include "io/image_io.h"
#include "test_helpers.h"

namespace {

using lumen::testing::error_of;

std::string small_png() {
  lumen::RgbImage image;
  image.width = image.height = 16;
  image.pixels.assign(16 * 16 * 3, 200);
  return lumen::encode_png(image, {{"parameters", "a red circle"}});
}

void put_be32(std::string& bytes, size_t at, uint32_t value) {
  for (int i = 0; i < 4; ++i) bytes[at + i] = static_cast<char>(value >> (24 - 8 * i));
}

TEST(ImageIo, HeadersClaimingMorePixelsThanTheFileCanHoldAreRefused) {
  const std::string png = small_png();
  EXPECT_EQ(lumen::decode_image(png, "ok.png").width, 16);

  // IHDR's width and height (stb ignores the CRC): 16000² pixels from a few
  // hundred bytes would have been allocated, and stb would have failed later.
  std::string big = png;
  put_be32(big, 16, 16000);
  put_be32(big, 20, 16000);
  EXPECT_NE(error_of([&] { lumen::decode_image(big, "big.png"); }).find("cannot hold that many pixels"),
            std::string::npos);

  // A GIF's logical screen is allocated four times over and zero-filled.
  std::string gif("GIF89a", 6);
  gif += std::string("\x10\x27\x10\x27\x00\x00\x00", 7);  // 10000x10000, no colour table
  gif += std::string("\x2C\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3B", 16);
  EXPECT_NE(error_of([&] { lumen::decode_image(gif, "screen.gif"); }).find("cannot hold"), std::string::npos);
}

TEST(ImageIo, PngTextChunkClaimingMoreThanTheFileIsAnError) {
  const lumen::testing::TempDir dir;
  const std::string png = small_png();
  EXPECT_EQ(lumen::read_png_text(lumen::testing::write(dir.path + "/ok.png", png)).at("parameters"), "a red circle");

  // The signature and IHDR (8 + 25 bytes), then a tEXt chunk claiming 16 MB:
  // libpng only warns that it is too large, then allocates and zeroes it.
  std::string text = png.substr(0, 33) + std::string("\x00\xFF\x00\x00tEXtparameters", 19);
  text += std::string(64, 'x');
  const std::string message = error_of([&] { lumen::read_png_text(lumen::testing::write(dir.path + "/t.png", text)); });
  EXPECT_NE(message.find("too large"), std::string::npos) << message;
  EXPECT_NE(message.find("t.png"), std::string::npos) << message;
}

}  // namespace
