// The process's resident memory, from /proc/self/status (Linux).
#pragma once
#include <cstdint>

namespace lumen {

int64_t resident_bytes();       // VmRSS now; 0 where unknown
int64_t peak_resident_bytes();  // VmHWM: the high-water mark since start or the last reset

// Resets the high-water mark to the current RSS (/proc/self/clear_refs), so a
// phase's peak is not hidden by an earlier one. False where the kernel refuses.
bool reset_peak_resident();

}  // namespace lumen
