// AUTOMATIC1111's names for Lumen's samplers: the "Sampler:" of a PNG's
// parameters text and the sampler_name of the HTTP API. Header-only and
// torch-free, so the server (a C API client) shares the one table.
#pragma once
#include <string>
#include <vector>

namespace lumen::samplers {

struct A1111Sampler {
  const char* a1111;                 // "Euler a"
  const char* lumen;                 // Lumen's registry name, "euler_a"
  const char* diffusers;             // the diffusers class it is, "" if none of its own
  std::vector<const char*> aliases;  // A1111's aliases
};

inline const std::vector<A1111Sampler>& a1111_samplers() {
  static const std::vector<A1111Sampler> table = {
      {"Euler a", "euler_a", "EulerAncestralDiscreteScheduler", {"k_euler_a", "k_euler_ancestral"}},
      {"Euler", "euler", "EulerDiscreteScheduler", {"k_euler"}},
      {"DPM++ 2M", "dpm++_2m", "DPMSolverMultistepScheduler", {"k_dpmpp_2m"}},
      {"DPM++ 2M Karras", "dpm++_2m_karras", "", {"k_dpmpp_2m_ka"}},
      {"DDIM", "ddim", "DDIMScheduler", {}},
      {"PLMS", "plms", "PNDMScheduler", {"pndm"}},
      {"UniPC", "unipc", "UniPCMultistepScheduler", {}},
      {"LCM", "lcm", "LCMScheduler", {}},
  };
  return table;
}

// "euler_a" or "EulerAncestralDiscreteScheduler" -> "Euler a"; other names unchanged.
inline std::string a1111_sampler_name(const std::string& name) {
  for (const auto& s : a1111_samplers()) {
    if (name == s.lumen || name == s.diffusers) return s.a1111;
    for (const char* alias : s.aliases)
      if (name == alias) return s.a1111;
  }
  return name;
}

}  // namespace lumen::samplers
