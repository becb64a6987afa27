#include "runtime.h"

#include <dlfcn.h>
#include <link.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <thread>

#include <torch/torch.h>

namespace lumen {
namespace {

bool is_dir(const std::string& p) { return std::filesystem::is_directory(p); }

}  // namespace

namespace {
bool g_threads_chosen = false;
}

void set_threads(int n) {
  g_threads_chosen = n > 0;
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(n);
}

bool fit_threads_to_work(double unet_step_flops) {
  if (g_threads_chosen || torch::get_num_threads() <= 1 || unet_step_flops >= kSmallUNetStepFlops) return false;
  torch::set_num_threads(1);
  return true;
}

bool cpu_runs_bf16_fast() {
  static const bool fast = [] {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("flags", 0) != 0) continue;
      std::istringstream words(line.substr(line.find(':') + 1));
      std::set<std::string> flags{std::istream_iterator<std::string>(words), std::istream_iterator<std::string>()};
      return flags.count("avx512bw") && flags.count("avx512vl") && flags.count("avx512dq");
    }
    return false;
  }();
  return fast;
}

std::string asset_dir() {
  if (const char* env = std::getenv("LUMEN_ASSET_DIR"); env && *env) return env;
  // Installed, the assets are at <prefix>/share/lumen/assets, beside the
  // running program's bin/ or (an app elsewhere) liblumen.so's lib/.
  auto under_prefix_of = [](const std::filesystem::path& file) {
    return (file.parent_path().parent_path() / "share" / "lumen" / "assets").string();
  };
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec && is_dir(under_prefix_of(exe))) return under_prefix_of(exe);
  Dl_info self{};
  if (dladdr(reinterpret_cast<void*>(&asset_dir), &self) && self.dli_fname) {
    const auto lib = std::filesystem::weakly_canonical(self.dli_fname, ec);
    if (!ec && is_dir(under_prefix_of(lib))) return under_prefix_of(lib);
  }
#ifdef LUMEN_INSTALL_ASSET_DIR
  if (is_dir(LUMEN_INSTALL_ASSET_DIR)) return LUMEN_INSTALL_ASSET_DIR;
#endif
#ifdef LUMEN_SOURCE_ASSET_DIR
  if (is_dir(LUMEN_SOURCE_ASSET_DIR)) return LUMEN_SOURCE_ASSET_DIR;
#endif
  return "assets";
}

std::string asset_path(const std::string& relative) { return asset_dir() + "/" + relative; }

std::string loaded_blas_library() {
  std::string found;
  dl_iterate_phdr(
      [](struct dl_phdr_info* info, size_t, void* data) {
        std::string name = info->dlpi_name ? info->dlpi_name : "";
        if (name.find("libblas") != std::string::npos || name.find("openblas") != std::string::npos) {
          char real[PATH_MAX];
          *static_cast<std::string*>(data) = ::realpath(name.c_str(), real) ? real : name;
          return 1;
        }
        return 0;
      },
      &found);
  return found;
}

bool blas_is_reference() {
  const std::string lib = loaded_blas_library();
  return !lib.empty() && lib.find("openblas") == std::string::npos && lib.find("mkl") == std::string::npos &&
         lib.find("blis") == std::string::npos;
}

std::string describe_error(const std::exception& e, bool* out_of_memory) {
  if (out_of_memory) *out_of_memory = false;
  const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
  if (!torch_error) return e.what();
  const std::string message = torch_error->what_without_backtrace();
  // DefaultCPUAllocator: "... you tried to allocate N bytes. Error code 12 ..."
  if (message.find("can't allocate memory") == std::string::npos) return message;
  if (out_of_memory) *out_of_memory = true;
  const std::string marker = "you tried to allocate ";
  const size_t at = message.find(marker);
  std::ostringstream s;
  s << "out of memory";
  if (at != std::string::npos) {
    const double bytes = std::strtod(message.c_str() + at + marker.size(), nullptr);
    s.precision(3);
    s << " (an allocation of " << bytes / (1 << 30) << " GiB failed)";
  }
  s << ": ask for smaller images, a smaller batch or a smaller model";
  return s.str();
}

}  // namespace lumen
