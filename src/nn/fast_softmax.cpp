#include "nn/fast_softmax.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "nn/avx512_math.h"

namespace lumen::nn {

namespace {
std::atomic<bool> g_fast_softmax_enabled{true};
}  // namespace

bool fast_softmax_supported() {
  static const bool supported = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                                __builtin_cpu_supports("avx512vl");
  return supported;
}
void set_fast_softmax(bool enabled) { g_fast_softmax_enabled = enabled; }
bool fast_softmax_enabled() { return g_fast_softmax_enabled && fast_softmax_supported(); }

namespace {

using namespace avx512;

// One row: max, then exp(x - max) into `work` with their sum, then scaled back into the row.
template <typename T>
LUMEN_AVX512 void softmax_row(T* row, int64_t cols, float* work) {
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < cols; j += 16) {
    const __mmask16 m = tail_mask(cols - j);
    vmax = _mm512_mask_max_ps(vmax, m, vmax, load(row + j, m));
  }
  const __m512 max = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
  __m512 vsum = _mm512_setzero_ps();
  for (int64_t j = 0; j < cols; j += 16) {
    const __mmask16 m = tail_mask(cols - j);
    const __m512 e = exp_nonpositive(_mm512_sub_ps(load(row + j, m), max));
    vsum = _mm512_mask_add_ps(vsum, m, vsum, e);
    _mm512_mask_storeu_ps(work + j, m, e);
  }
  const __m512 scale = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
  for (int64_t j = 0; j < cols; j += 16) {
    const __mmask16 m = tail_mask(cols - j);
    store(row + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, work + j), scale));
  }
}

template <typename T>
void softmax_rows(T* data, int64_t rows, int64_t cols) {
  // Enough rows per task to amortise the scratch row; rows are independent.
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(cols, 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> work(static_cast<size_t>(cols));
    for (int64_t r = begin; r < end; ++r) softmax_row(data + r * cols, cols, work.data());
  });
}

}  // namespace

void softmax_rows_inplace(float* data, int64_t rows, int64_t cols) { softmax_rows(data, rows, cols); }
void softmax_rows_inplace_bf16(uint16_t* data, int64_t rows, int64_t cols) { softmax_rows(data, rows, cols); }

}  // namespace lumen::nn
