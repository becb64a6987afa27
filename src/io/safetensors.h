// safetensors: reading (memory-mapped, every header field validated) and
// writing (atomic). Torch-free; see safetensors_torch.h for tensors.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lumen {

class MappedFile;

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, F8_E4M3, F8_E5M2 };

const char* dtype_name(DType dtype);       // "F32", ...
size_t dtype_size(DType dtype);            // bytes per element
bool parse_dtype(const std::string& name, DType* out);

struct TensorEntry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data section
  uint64_t end = 0;
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Maps and validates the file; throws lumen::Error("<path>: <problem>").
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);

  const std::string& path() const;
  const std::vector<TensorEntry>& entries() const { return entries_; }  // sorted by name
  const TensorEntry* find(const std::string& name) const;
  const TensorEntry& at(const std::string& name) const;  // throws naming file and key
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const uint8_t* data(const TensorEntry& entry) const;
  // Give the entry's pages back to the kernel (after copying it elsewhere).
  void release(const TensorEntry& entry) const;
  // Map the entry's pages in one go before it is read (MappedFile::prefetch).
  void prefetch(const TensorEntry& entry) const;

 private:
  std::shared_ptr<MappedFile> map_;
  uint64_t data_start_ = 0;
  std::vector<TensorEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Parses and validates a header (the JSON after the 8-byte length) against a
// data section of `data_size` bytes. Exposed for fuzzing and tests.
void parse_safetensors_header(const std::string& where, const char* json, size_t json_size,
                              uint64_t data_size, std::vector<TensorEntry>* entries,
                              std::map<std::string, std::string>* metadata);

// A tensor to write: raw little-endian bytes.
struct TensorBlob {
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
  size_t nbytes;
};

// Writes keys sorted, header padded to 8 bytes, to `path` via a temporary file
// and rename, so a crash never leaves a half-written file under the real name.
void write_safetensors(const std::string& path, const std::map<std::string, TensorBlob>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace lumen
