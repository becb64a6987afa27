#include "pipeline/model_hash_cache.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/json_output.h"
#include "io/text_file.h"
#include "pipeline/infotext.h"

namespace lumen {
namespace {

using nlohmann::json;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// What identifies a version of the file: size and modification time in nanoseconds.
json file_identity(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return nullptr;
  return {{"size", static_cast<int64_t>(st.st_size)},
          {"mtime_ns", static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec}};
}

// A cache is small (an entry per model file, ~150 bytes); one past these
// bounds (a 188 MB cache made each generation 13 s slower) is rebuilt.
constexpr uintmax_t kMaxCacheBytes = 4u << 20;
constexpr size_t kMaxCacheEntries = 2000;

json read_cache(const std::string& cache_file) {
  try {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(cache_file, ec)) return json::object();
    if (std::filesystem::file_size(cache_file, ec) > kMaxCacheBytes) return json::object();
    json cache = read_json_file(cache_file);
    return cache.is_object() ? cache : json::object();
  } catch (const std::exception&) {
    return json::object();  // corrupt or unreadable: rebuilt
  }
}

}  // namespace

std::string default_hash_cache_file() {
  std::string dir = env("LUMEN_CACHE_DIR");
  if (dir.empty() && !env("XDG_CACHE_HOME").empty()) dir = env("XDG_CACHE_HOME") + "/lumen";
  if (dir.empty() && !env("HOME").empty()) dir = env("HOME") + "/.cache/lumen";
  return dir.empty() ? "" : dir + "/model-hashes.json";
}

std::string cached_short_file_hash(const std::string& path, const std::string& cache_file) {
  if (cache_file.empty()) return short_file_hash(path);
  std::error_code ec;
  const auto canonical = std::filesystem::weakly_canonical(path, ec);
  const std::string key = ec ? path : canonical.string();
  const json identity = file_identity(path);
  json cache = read_cache(cache_file);
  const auto it = cache.find(key);
  if (!identity.is_null() && it != cache.end() && it->is_object() && it->value("size", json()) == identity["size"] &&
      it->value("mtime_ns", json()) == identity["mtime_ns"] && it->value("short_hash", json()).is_string())
    return (*it)["short_hash"].get<std::string>();
  const std::string hash = short_file_hash(path);
  if (identity.is_null()) return hash;
  json entry = identity;
  entry["short_hash"] = hash;
  // Entries of files that are gone are dropped, and the cache kept bounded.
  for (auto it = cache.begin(); it != cache.end();)
    it = file_identity(it.key()).is_null() || cache.size() > kMaxCacheEntries ? cache.erase(it) : std::next(it);
  cache[key] = entry;
  try {
    std::filesystem::create_directories(std::filesystem::path(cache_file).parent_path());
    write_text_atomically(cache_file, dump_for_output(cache, 1));
  } catch (const std::exception&) {
    // A read-only home: the hash is still right, only not remembered.
  }
  return hash;
}

}  // namespace lumen
