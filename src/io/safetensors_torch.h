// safetensors <-> torch::Tensor.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>

#include "io/safetensors.h"

namespace lumen {

at::ScalarType to_scalar_type(DType dtype, const std::string& where);
DType to_dtype(at::ScalarType type);

// A zero-copy CPU tensor over the mapped bytes; it keeps the file mapped while
// it lives. Treat it as read-only.
torch::Tensor tensor_view(const std::shared_ptr<SafetensorsFile>& file, const TensorEntry& entry);

// Every tensor of a file, as views.
std::map<std::string, torch::Tensor> load_safetensors(const std::string& path);

// Contiguous CPU copies are written; the write is atomic (see write_safetensors).
void save_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace lumen
