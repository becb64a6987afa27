// The YAML recipe loader (lumen train / lumen feedback) on any text.
#include "fuzz_common.h"
#include "recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = lumen::fuzz::write_scratch(data, size, ".yaml");
  lumen::fuzz::expect_clean([&] { lumen::train::read_recipe(path); });
  ::unlink(path.c_str());
  return 0;
}
