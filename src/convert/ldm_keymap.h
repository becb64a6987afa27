// Key mapping between single-file "original layout" (LDM / SGM) Stable
// Diffusion checkpoints and the diffusers / transformers layout. Works on
// names and shapes only (a safetensors header), never on tensor data, so the
// loader can decide what to read and how to transform it.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lumen {

// What a safetensors header says about one tensor.
struct TensorInfo {
  std::string key;
  std::vector<int64_t> shape;
  std::string dtype;
};

enum class Transform {
  Copy,        // same data, same shape
  Squeeze1x1,  // [O, I, 1, 1] conv weight -> [O, I] linear weight
  Transpose,   // 2-D matrix transposed (OpenCLIP text_projection is W^T)
  CatDim0,     // source = cat(diffusers_keys...) along dim 0, equal chunks
};

struct KeyMapping {
  std::string ldm_key;
  std::string component;                    // "unet", "vae", "text_encoder", "text_encoder_2"
  std::vector<std::string> diffusers_keys;  // several only for CatDim0, in order
  Transform transform;
};

struct KeyMapResult {
  std::vector<KeyMapping> mapped;     // in input order
  std::vector<std::string> unmapped;  // unknown or deliberately dropped keys
};

// Maps every key of a single-file checkpoint to diffusers names, following
// diffusers 0.27 single_file_utils (convert_ldm_unet_checkpoint,
// convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint,
// convert_open_clip_checkpoint). Unknown keys go to `unmapped`; never throws.
KeyMapResult map_ldm_to_diffusers(const std::vector<TensorInfo>& tensors);

// The LDM UNet's input_blocks are a flat list; its level structure is needed
// to name diffusers blocks. Inferred from where the downsamplers (`op`) sit.
struct LdmUnetLayout {
  int levels = 0;
  int layers_per_block = 0;
};
// nullopt if there are no (usable) `model.diffusion_model.input_blocks.*` keys.
std::optional<LdmUnetLayout> ldm_unet_layout(const std::vector<TensorInfo>& tensors);

// SD2 conditions on OpenCLIP-H's penultimate layer, so diffusers leaves out
// the last of its 24 resblocks (hard-coded as resblocks.23; we follow it, so
// smaller SD2-style towers keep every block).
constexpr int kSd2UnusedOpenClipBlock = 23;

// Lower-case name used in key_map.json ("copy", "squeeze_1x1", ...).
const char* transform_name(Transform t);

}  // namespace lumen
