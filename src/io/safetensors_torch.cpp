#include "io/safetensors_torch.h"

#include "error.h"

namespace lumen {

at::ScalarType to_scalar_type(DType d, const std::string& where) {
  switch (d) {
    case DType::F64: return at::kDouble;
    case DType::F32: return at::kFloat;
    case DType::F16: return at::kHalf;
    case DType::BF16: return at::kBFloat16;
    case DType::I64: return at::kLong;
    case DType::I32: return at::kInt;
    case DType::I16: return at::kShort;
    case DType::I8: return at::kChar;
    case DType::U8: return at::kByte;
    case DType::BOOL: return at::kBool;
    default:
      throw Error(where, std::string("dtype ") + dtype_name(d) + " is not supported by this LibTorch");
  }
}

DType to_dtype(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return DType::F64;
    case at::kFloat: return DType::F32;
    case at::kHalf: return DType::F16;
    case at::kBFloat16: return DType::BF16;
    case at::kLong: return DType::I64;
    case at::kInt: return DType::I32;
    case at::kShort: return DType::I16;
    case at::kChar: return DType::I8;
    case at::kByte: return DType::U8;
    case at::kBool: return DType::BOOL;
    default: throw Error("safetensors", std::string("cannot store dtype ") + c10::toString(t));
  }
}

torch::Tensor tensor_view(const std::shared_ptr<SafetensorsFile>& file, const TensorEntry& e) {
  const auto type = to_scalar_type(e.dtype, file->path() + ": tensor '" + e.name + "'");
  auto options = torch::TensorOptions().dtype(type);
  void* ptr = const_cast<uint8_t*>(file->data(e));
  if (e.numel() == 0) return torch::empty(e.shape, options);
  file->prefetch(e);  // a view is made to be read
  // Offsets need not be aligned to the element size; kernels may assume they are.
  if (reinterpret_cast<uintptr_t>(ptr) % dtype_size(e.dtype) != 0) {
    auto t = torch::empty(e.shape, options);
    std::memcpy(t.data_ptr(), ptr, e.end - e.begin);
    return t;
  }
  auto keep_alive = file;
  return torch::from_blob(ptr, e.shape, [keep_alive](void*) {}, options);
}

std::map<std::string, torch::Tensor> load_safetensors(const std::string& path) {
  auto file = SafetensorsFile::open(path);
  std::map<std::string, torch::Tensor> out;
  for (const auto& e : file->entries()) out[e.name] = tensor_view(file, e);
  return out;
}

void save_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::map<std::string, torch::Tensor> contiguous;
  std::map<std::string, TensorBlob> blobs;
  for (const auto& [name, t] : tensors) {
    auto c = t.detach().to(torch::kCPU).contiguous();
    contiguous[name] = c;
    blobs[name] = TensorBlob{to_dtype(c.scalar_type()), c.sizes().vec(), c.data_ptr(),
                             static_cast<size_t>(c.numel()) * c.element_size()};
  }
  write_safetensors(path, blobs, metadata);
}

}  // namespace lumen
