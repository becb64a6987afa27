// Process-wide runtime settings: threads, asset lookup, BLAS sanity.
#pragma once
#include <string>

namespace lumen {

// Sets LibTorch's intra-op threads; n ≤ 0 means one per core. (Debian's
// LibTorch defaults to 1 here, so this is always called explicitly.)
void set_threads(int n);

// The assets folder: $LUMEN_ASSET_DIR, else <prefix>/share/lumen/assets beside
// the running program, else the configured install prefix's, else the source
// tree's assets/.
std::string asset_dir();
std::string asset_path(const std::string& relative);

// The real path of the BLAS library LibTorch loaded, and whether it is the slow
// reference implementation rather than OpenBLAS.
std::string loaded_blas_library();
bool blas_is_reference();

}  // namespace lumen
