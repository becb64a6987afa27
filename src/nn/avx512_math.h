// AVX-512 pieces shared by the CPU kernels (softmax, fused attention):
// an exponential for non-positive arguments and float32/bfloat16 loads and
// stores with tail masks. Internal to src/nn; compiled per function with the
// target attribute, so callers must check the CPU first (fast_softmax_supported).
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace lumen::nn::avx512 {

#define LUMEN_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

// exp(x) for x <= 0 (scores minus their row maximum): Cephes' expf, a degree-5
// polynomial on x - n ln2 scaled by 2^n. Below -87.3 the result is 0, as ATen's.
LUMEN_AVX512 inline __m512 exp_nonpositive(__m512 x) {
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 r2 = _mm512_mul_ps(r, r);
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0f));
  const __mmask16 underflow = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_LT_OQ);
  // NaN inputs (a row of -inf) stay NaN, as ATen's.
  return _mm512_mask_mov_ps(_mm512_scalef_ps(y, n), underflow & ~_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q),
                            _mm512_setzero_ps());
}

// The first `remaining` of 16 lanes (none when remaining <= 0).
LUMEN_AVX512 inline __mmask16 tail_mask(int64_t remaining) {
  return remaining <= 0    ? static_cast<__mmask16>(0)
         : remaining >= 16 ? static_cast<__mmask16>(0xFFFF)
                           : static_cast<__mmask16>((1u << remaining) - 1);
}

LUMEN_AVX512 inline __m512 load(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
LUMEN_AVX512 inline __m512 load(const uint16_t* p, __mmask16 m) {
  const __m512i wide = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
LUMEN_AVX512 inline void store(float* p, __mmask16 m, __m512 v) { _mm512_mask_storeu_ps(p, m, v); }
// Round to nearest even, as ATen's float -> bfloat16; NaN stays a quiet NaN.
LUMEN_AVX512 inline void store(uint16_t* p, __mmask16 m, __m512 v) {
  __m512i bits = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  bits = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb)), 16);
  bits = _mm512_mask_mov_epi32(bits, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
  _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(bits));
}

}  // namespace lumen::nn::avx512
