// The checkpoint key mapper and architecture detection on hostile headers:
// one tensor per line, "key dim dim ...".
#include <sstream>

#include "convert/arch_detect.h"
#include "convert/ldm_keymap.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::istringstream lines(std::string(reinterpret_cast<const char*>(data), size));
  std::vector<lumen::TensorInfo> infos;
  std::string line;
  while (std::getline(lines, line) && infos.size() < 4096) {
    std::istringstream fields(line);
    lumen::TensorInfo info;
    fields >> info.key;
    long long d = 0;
    while (info.shape.size() < 8 && fields >> d) info.shape.push_back(d);
    info.dtype = "F32";
    infos.push_back(info);
  }
  lumen::fuzz::expect_clean([&] { lumen::map_ldm_to_diffusers(infos); });
  lumen::fuzz::expect_clean([&] { lumen::detect_architecture(infos, "fuzz.safetensors"); });
  lumen::fuzz::expect_clean([&] { lumen::ldm_unet_layout(infos); });
  return 0;
}
