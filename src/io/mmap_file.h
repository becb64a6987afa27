// A read-only memory map of a whole file. Pages can be handed back to the
// kernel once copied, so loading a model never holds two copies of its weights.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace lumen {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws lumen::Error naming the file
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drop the resident pages of [offset, offset+length): they are re-read from
  // disk if touched again. Used after a tensor has been copied out.
  void release(size_t offset, size_t length) const;
  // Asks the kernel to map the pages of [offset, offset+length) in one call
  // before they are read (MADV_POPULATE_READ): faults are dear in a VM. It
  // saves only part of the first reads' cost (mmap_file.cpp).
  void prefetch(size_t offset, size_t length) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace lumen
