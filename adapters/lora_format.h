// Reading LoRA-family files into one normalized, model-independent list of
// per-module weight changes. Formats found in the wild:
//   kohya      lora_unet_<module with . -> _>.lora_down.weight / .lora_up.weight
//              [/ .lora_mid.weight] / .alpha; lora_te_, lora_te1_, lora_te2_
//   diffusers  unet.<module>.lora_A.weight / .lora_B.weight (PEFT) or
//              .lora.down.weight / .lora.up.weight; prefixes text_encoder.,
//              text_encoder_2.; alpha optional (absent: alpha = rank)
//   LyCORIS    LoHa (hada_w1_a, hada_w1_b, hada_w2_a, hada_w2_b [, hada_t1, hada_t2])
//              and LoKr (lokr_w1 | lokr_w1_a+b, lokr_w2 | lokr_w2_a+b [, lokr_t2])
#pragma once
#include <torch/torch.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace lumen::adapters {

enum class DeltaKind { LoRA, LoHa, LoKr };

// One module's change as the file stores it.
struct ModuleDelta {
  std::string component;  // "unet", "text_encoder" or "text_encoder_2"
  std::string module;     // module path as the file writes it
  bool underscored;       // kohya: the path's '.' were replaced by '_'
  std::string key;        // the file's key prefix, for messages
  DeltaKind kind;
  // float32 copies by role, named as kohya/LyCORIS do ("lora_down", "lora_up",
  // "lora_mid", "hada_w1_a", ..., "lokr_t2"); PEFT's lora_A/lora_B become lora_down/lora_up.
  std::map<std::string, torch::Tensor> parts;
  std::optional<double> alpha;

  const torch::Tensor* part(const std::string& role) const;
  int64_t rank() const;          // the rank alpha is divided by (0: LoKr without a factored half)
  double alpha_scale() const;    // alpha / rank, 1 where the format has no rank
};

struct LoraFile {
  std::string path;
  std::vector<ModuleDelta> modules;
  std::vector<std::string> ignored_keys;  // keys that are not adapter weights of a known network
};

// Throws lumen::Error naming the file (and key) when it is not a LoRA-family
// file or a module's parts are incomplete, disagree in rank or have alpha 0.
LoraFile read_lora_file(const std::string& path);

// The full weight change alpha/rank * delta, shaped like `weight_shape`.
// Throws naming `where` and the key when the delta cannot have that shape.
torch::Tensor dense_delta(const ModuleDelta& d, at::IntArrayRef weight_shape, const std::string& where);

}  // namespace lumen::adapters
