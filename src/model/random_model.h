// Writes a random-weight model folder in the diffusers layout: preset "sd15"
// (full-size SD1.5 shapes) or "tiny". Each file is written atomically; the
// caller decides whether an existing folder may be replaced.
#pragma once
#include <cstdint>
#include <string>

namespace lumen {

void write_random_model(const std::string& folder, const std::string& preset, uint64_t seed);

}  // namespace lumen
