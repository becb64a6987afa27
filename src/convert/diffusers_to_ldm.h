// The inverse of ldm_keymap: diffusers / transformers keys of one component
// to the LDM / SGM single-file ("original layout") keys, following diffusers'
// scripts/convert_diffusers_to_original_stable_diffusion.py (SD1.x / SD2.x)
// and convert_diffusers_to_original_sdxl.py (SDXL). Block indices come from
// the config and the keys themselves; every result is checked by mapping it
// forward again with map_ldm_to_diffusers.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "convert/arch_detect.h"
#include "convert/ldm_keymap.h"

namespace lumen {

// One tensor of the single file. `transform` names the LDM -> diffusers
// direction (as in KeyMapping); writing applies its inverse: Squeeze1x1 ->
// reshape to [O, I, 1, 1], Transpose -> transpose, CatDim0 -> cat(keys, 0).
struct LdmTarget {
  std::string ldm_key;
  std::vector<std::string> diffusers_keys;  // several only for CatDim0 (q, k, v)
  Transform transform = Transform::Copy;
  std::vector<int64_t> shape;  // shape in the single file
};

struct LdmTargets {
  std::vector<LdmTarget> targets;     // sorted by ldm_key
  std::vector<std::string> unmapped;  // diffusers keys with no LDM name
};

// Key prefix of a component in the single file for a family, e.g. "model.diffusion_model."
// Throws lumen::Error for a component the family does not have.
std::string ldm_prefix(const std::string& component, ModelFamily family);

// `tensors`: the component's diffusers keys with their (diffusers) shapes.
// Throws lumen::Error if the config lacks what the layout needs or the round
// trip through map_ldm_to_diffusers disagrees (an internal inconsistency).
LdmTargets map_diffusers_to_ldm(const std::string& component, const std::vector<TensorInfo>& tensors,
                                const nlohmann::json& config, ModelFamily family);

}  // namespace lumen
