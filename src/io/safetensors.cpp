#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "error.h"
#include "io/atomic_file.h"
#include "io/mmap_file.h"
#include "io/text_file.h"

namespace lumen {
namespace {

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::F64, "F64", 8},  {DType::F32, "F32", 4},   {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8},  {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},  {DType::I8, "I8", 1},     {DType::U64, "U64", 8},
    {DType::U32, "U32", 4},  {DType::U16, "U16", 2},   {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1}, {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
};

// The reference implementation's own limit: a larger header is hostile.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr int kMaxJsonDepth = 4;

const DTypeInfo& info(DType d) {
  for (const auto& i : kDTypes)
    if (i.dtype == d) return i;
  throw Error("internal", "unknown dtype enum");
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

uint64_t checked_u64(const std::string& where, const std::string& key, const nlohmann::json& v,
                     const char* field) {
  if (!v.is_number_unsigned())
    throw Error(where, "tensor '" + key + "': " + field + " must hold non-negative integers");
  return v.get<uint64_t>();
}

TensorEntry parse_entry(const std::string& where, const std::string& key, const nlohmann::json& v,
                        uint64_t data_size) {
  if (!v.is_object()) throw Error(where, "tensor '" + key + "': entry is not an object");
  for (const char* f : {"dtype", "shape", "data_offsets"})
    if (!v.contains(f)) throw Error(where, "tensor '" + key + "': missing field '" + f + "'");
  TensorEntry e;
  e.name = key;
  if (!v["dtype"].is_string() || !parse_dtype(v["dtype"].get<std::string>(), &e.dtype))
    throw Error(where, "tensor '" + key + "': unknown dtype " + v["dtype"].dump());
  const auto& shape = v["shape"];
  if (!shape.is_array()) throw Error(where, "tensor '" + key + "': shape is not an array");
  uint64_t numel = 1;
  for (const auto& d : shape) {
    uint64_t dim = checked_u64(where, key, d, "shape");
    if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / dim))
      throw Error(where, "tensor '" + key + "': shape " + shape.dump() + " overflows");
    numel *= dim;
    e.shape.push_back(static_cast<int64_t>(dim));
  }
  const auto& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2)
    throw Error(where, "tensor '" + key + "': data_offsets must be [begin, end]");
  e.begin = checked_u64(where, key, off[0], "data_offsets");
  e.end = checked_u64(where, key, off[1], "data_offsets");
  if (e.begin > e.end)
    throw Error(where, "tensor '" + key + "': data_offsets " + off.dump() + " end before begin");
  if (e.end > data_size)
    throw Error(where, "tensor '" + key + "': data_offsets " + off.dump() +
                           " run past the end of the data (" + std::to_string(data_size) +
                           " bytes)");
  const uint64_t elem = dtype_size(e.dtype);
  if (numel > std::numeric_limits<uint64_t>::max() / elem || numel * elem != e.end - e.begin)
    throw Error(where, "tensor '" + key + "': " + std::to_string(e.end - e.begin) +
                           " bytes do not match dtype " + dtype_name(e.dtype) + " and shape " +
                           shape.dump());
  return e;
}

void check_no_overlap(const std::string& where, std::vector<TensorEntry> entries) {
  std::sort(entries.begin(), entries.end(),
            [](const TensorEntry& a, const TensorEntry& b) { return a.begin < b.begin; });
  const TensorEntry* furthest = nullptr;  // the non-empty tensor reaching furthest so far
  for (const auto& cur : entries) {
    if (cur.end == cur.begin) continue;
    if (furthest && cur.begin < furthest->end)
      throw Error(where, "tensors '" + furthest->name + "' and '" + cur.name + "' overlap");
    if (!furthest || cur.end > furthest->end) furthest = &cur;
  }
}

}  // namespace

const char* dtype_name(DType d) { return info(d).name; }
size_t dtype_size(DType d) { return info(d).size; }

bool parse_dtype(const std::string& name, DType* out) {
  for (const auto& i : kDTypes)
    if (name == i.name) {
      *out = i.dtype;
      return true;
    }
  return false;
}

int64_t TensorEntry::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

void parse_safetensors_header(const std::string& where, const char* json, size_t json_size,
                              uint64_t data_size, std::vector<TensorEntry>* entries,
                              std::map<std::string, std::string>* metadata) {
  nlohmann::json header;
  try {
    // Refuse deep nesting before it is built: a hostile header must not exhaust the stack.
    auto depth_guard = [](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
      if (depth > kMaxJsonDepth) throw Error("header nests deeper than a safetensors header can");
      return true;
    };
    header = nlohmann::json::parse(json, json + json_size, depth_guard);
  } catch (const nlohmann::json::exception& e) {
    throw Error(where, "header is not valid JSON: " + json_error_message(e));
  } catch (const Error& e) {
    throw Error(where, e.what());
  }
  if (!header.is_object()) throw Error(where, "header is not a JSON object");
  entries->clear();
  metadata->clear();
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) throw Error(where, "__metadata__ is not an object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string())
          throw Error(where, "__metadata__ value for '" + m.key() + "' is not a string");
        (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    entries->push_back(parse_entry(where, it.key(), it.value(), data_size));
  }
  check_no_overlap(where, *entries);
  std::sort(entries->begin(), entries->end(),
            [](const TensorEntry& a, const TensorEntry& b) { return a.name < b.name; });
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto f = std::shared_ptr<SafetensorsFile>(new SafetensorsFile());
  f->map_ = std::make_shared<MappedFile>(path);
  const size_t size = f->map_->size();
  if (size < 8) throw Error(path, "too short to be a safetensors file (" + std::to_string(size) + " bytes)");
  const uint64_t n = read_u64_le(f->map_->data());
  if (n > size - 8)
    throw Error(path, "header length " + std::to_string(n) + " runs past the end of the file (" +
                          std::to_string(size) + " bytes; truncated or not safetensors)");
  if (n > kMaxHeaderBytes) throw Error(path, "header length " + std::to_string(n) + " is too large");
  f->data_start_ = 8 + n;
  parse_safetensors_header(path, reinterpret_cast<const char*>(f->map_->data() + 8), n,
                           size - f->data_start_, &f->entries_, &f->metadata_);
  for (size_t i = 0; i < f->entries_.size(); ++i) f->index_[f->entries_[i].name] = i;
  return f;
}

const std::string& SafetensorsFile::path() const { return map_->path(); }

const TensorEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

const TensorEntry& SafetensorsFile::at(const std::string& name) const {
  const TensorEntry* e = find(name);
  if (!e) throw Error(path(), "no tensor named '" + name + "'");
  return *e;
}

const uint8_t* SafetensorsFile::data(const TensorEntry& e) const {
  return map_->data() + data_start_ + e.begin;
}

void SafetensorsFile::release(const TensorEntry& e) const {
  map_->release(data_start_ + e.begin, e.end - e.begin);
}

void SafetensorsFile::prefetch(const TensorEntry& e) const { map_->prefetch(data_start_ + e.begin, e.end - e.begin); }

void write_safetensors(const std::string& path, const std::map<std::string, TensorBlob>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    uint64_t numel = 1;
    for (auto d : t.shape) numel *= static_cast<uint64_t>(d);
    if (numel * dtype_size(t.dtype) != t.nbytes)
      throw Error(path, "tensor '" + name + "': byte count does not match its shape");
    header[name] = {{"dtype", dtype_name(t.dtype)},
                    {"shape", t.shape},
                    {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  write_file_atomically(path, [&](std::ostream& out) {
    char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<char>(text.size() >> (8 * i));
    out.write(len, 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& [name, t] : tensors)
      out.write(static_cast<const char*>(t.data), static_cast<std::streamsize>(t.nbytes));
  });
}

}  // namespace lumen
