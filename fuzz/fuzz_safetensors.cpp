// The safetensors reader: the 8-byte length, the JSON header and every field's
// validation against the data section, on a whole file as `lumen info` maps it.
#include "fuzz_common.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = lumen::fuzz::write_scratch(data, size, ".safetensors");
  lumen::fuzz::expect_clean([&] {
    auto file = lumen::SafetensorsFile::open(path);
    volatile uint8_t sink = 0;
    for (const auto& e : file->entries()) {
      // Every accepted entry lies inside the mapping (AddressSanitizer checks the reads).
      const uint8_t* p = file->data(e);
      if (e.end > e.begin) sink = sink ^ p[0] ^ p[e.end - e.begin - 1];
    }
  });
  ::unlink(path.c_str());
  return 0;
}
