// Process-wide runtime settings: threads, asset lookup, BLAS sanity.
#pragma once
#include <exception>
#include <string>

#include "error.h"

namespace lumen {

// Sets LibTorch's intra-op threads; n ≤ 0 means one per core, chosen
// automatically (fit_threads_to_unet may lower it). (Debian's LibTorch
// defaults to 1 here, so this is always called explicitly.)
void set_threads(int n);

// A UNet step estimated below this many FLOPs runs on one thread. Measured
// (2 cores, the default model's architecture): a 1.7 GFLOP step ran as fast
// on one thread as on two, an 8.3 GFLOP one 1.3x faster on two; with the other
// core busy two threads made a 64x64 image 3.8x slower than one.
constexpr double kSmallUNetStepFlops = 4e9;

// Small networks gain nothing from more threads and lose much when another
// core is busy (OpenMP workers wait on it). Unless the user set the thread
// count, uses one thread when a UNet step is small. True when it did.
bool fit_threads_to_work(double unet_step_flops);

// The assets folder: $LUMEN_ASSET_DIR, else <prefix>/share/lumen/assets beside
// the running program, else the configured install prefix's, else the source
// tree's assets/.
std::string asset_dir();
std::string asset_path(const std::string& relative);

// Whether LibTorch's bf16 matrix products and convolutions run on oneDNN here:
// it needs AVX-512 (BW, VL, DQ; AVX512-BF16 or AMX make them faster still).
// Without it bf16 falls back to scalar code (measured on an AVX2-only EPYC:
// 4-5 GFLOP/s against 80 in f32). Read from /proc/cpuinfo's flags.
bool cpu_runs_bf16_fast();

// The real path of the BLAS library LibTorch loaded, and whether it is the slow
// reference implementation rather than OpenBLAS.
std::string loaded_blas_library();
bool blas_is_reference();

// An exception's text for the user: LibTorch's errors without their C++
// backtrace, and its allocator's failures as "out of memory (… GB asked)".
// Sets *out_of_memory when it was one.
std::string describe_error(const std::exception& e, bool* out_of_memory = nullptr);

// Runs `make` (building a network from a config); a failure that is not
// already Lumen's own error, such as an allocation a config asked for, becomes
// one naming `where` (it named no file: "out of memory (… failed)").
template <class Make>
auto built_from(const std::string& where, Make make) -> decltype(make()) {
  try {
    return make();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(where, describe_error(e));
  }
}

}  // namespace lumen
