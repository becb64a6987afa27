// The image reader (stb_image, any format) and the PNG text-chunk reader.
#include "fuzz_common.h"
#include "io/image_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = lumen::fuzz::write_scratch(data, size, ".png");
  lumen::fuzz::expect_clean([&] {
    const auto image = lumen::read_image(path);
    if (image.pixels.size() != static_cast<size_t>(image.width) * image.height * 3) std::abort();
  });
  lumen::fuzz::expect_clean([&] { lumen::read_png_text(path); });
  ::unlink(path.c_str());
  return 0;
}
