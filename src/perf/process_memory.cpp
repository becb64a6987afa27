#include "perf/process_memory.h"

#include <fstream>
#include <sstream>
#include <string>

namespace lumen {
namespace {

int64_t status_field_bytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, field.size(), field) != 0) continue;
    std::istringstream values(line.substr(field.size()));
    int64_t kib = 0;
    values >> kib;
    return kib * 1024;
  }
  return 0;
}

}  // namespace

int64_t resident_bytes() { return status_field_bytes("VmRSS:"); }
int64_t peak_resident_bytes() { return status_field_bytes("VmHWM:"); }

bool reset_peak_resident() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

}  // namespace lumen
