// A1111's "Model hash" (the file's sha256, first 10 hex digits) computed once
// per file: hashing a 4-7 GB checkpoint costs seconds on every run, so, as
// A1111's cache.json does, hashes are kept keyed by path, size and mtime.
#pragma once
#include <string>

namespace lumen {

// $LUMEN_CACHE_DIR, else $XDG_CACHE_HOME/lumen, else ~/.cache/lumen; plus
// "/model-hashes.json". Empty when none of them is set.
std::string default_hash_cache_file();

// The short hash of `path`, from `cache_file` when its entry still matches the
// file's size and modification time; otherwise hashed and recorded. A missing,
// unreadable or corrupt cache is rebuilt; one that cannot be written is skipped
// (the hash is still right, only not remembered). Empty cache_file: no cache.
std::string cached_short_file_hash(const std::string& path, const std::string& cache_file = default_hash_cache_file());

}  // namespace lumen
