#include "io/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "error.h"

namespace lumen {

namespace {

namespace fs = std::filesystem;

// Where the bytes go. A symbolic link's target (the link is kept, as cp and
// editors do); and only ever a regular file: renaming over a device node
// replaced /dev/null itself with a model when run as root (`--overwrite`).
std::string write_target(const std::string& path) {
  std::error_code ec;
  fs::path target = path;
  if (fs::is_symlink(fs::symlink_status(target, ec))) {
    target = fs::weakly_canonical(target, ec);  // follows chains; a loop is an error
    if (ec) throw Error(path, "is a symbolic link that cannot be followed (" + ec.message() + ")");
  }
  const fs::file_status st = fs::status(target, ec);
  if (fs::is_directory(st)) throw Error(path, "is a folder; a file was to be written there");
  if (fs::exists(st) && !fs::is_regular_file(st))
    throw Error(path, "is not a regular file (a device, FIFO or socket); it is not replaced");
  return target.string();
}

}  // namespace

void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
  const std::string target = write_target(path);
  const std::string tmp = target + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      const int error = errno;
      std::error_code ec;
      const fs::path folder = fs::path(target).parent_path();
      if (!folder.empty() && !fs::is_directory(folder, ec)) throw Error(path, "its folder does not exist");
      throw Error(path, "cannot write there (" + std::string(std::strerror(error)) + ")");
    }
    write(out);
    out.flush();
    if (!out) {
      out.close();
      std::remove(tmp.c_str());
      throw Error(path, "write failed (disk full?)");
    }
  }
  if (std::rename(tmp.c_str(), target.c_str()) != 0) {
    const int error = errno;
    std::remove(tmp.c_str());
    throw Error(path, "cannot move the written file into place (" + std::string(std::strerror(error)) + ")");
  }
}

void write_folder_atomically(const std::string& folder, const std::function<void(const std::string& tmp)>& write) {
  std::string target = folder;
  while (target.size() > 1 && target.back() == '/') target.pop_back();
  const std::string tmp = target + ".tmp" + std::to_string(::getpid());
  const std::string old = target + ".old" + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  try {
    write(tmp);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  const bool replacing = fs::exists(fs::symlink_status(target, ec));
  if (replacing && std::rename(target.c_str(), old.c_str()) != 0) {
    const int error = errno;
    fs::remove_all(tmp, ec);
    throw Error(folder, "cannot be replaced (" + std::string(std::strerror(error)) + ")");
  }
  if (std::rename(tmp.c_str(), target.c_str()) != 0) {
    const int error = errno;
    if (replacing) std::rename(old.c_str(), target.c_str());  // put the old one back
    fs::remove_all(tmp, ec);
    throw Error(folder, "cannot move the written folder into place (" + std::string(std::strerror(error)) + ")");
  }
  if (replacing) fs::remove_all(old, ec);
}

void write_text_atomically(const std::string& path, const std::string& text) {
  write_file_atomically(path, [&](std::ostream& out) { out << text; });
}

void create_output_folder(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec))
    throw Error(dir, "exists and is not a folder (an output folder was expected)");
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error(dir, "cannot create the folder: " + ec.message());
}

}  // namespace lumen
