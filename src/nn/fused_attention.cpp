#include "nn/fused_attention.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "nn/avx512_math.h"
#include "nn/conv_prepack.h"
#include "nn/fast_softmax.h"

namespace lumen::nn {
namespace {

using namespace avx512;

std::atomic<bool> g_enabled{true};

constexpr int64_t kTileRows = 32;  // queries per task: each key and value block is reused this often from cache
constexpr int64_t kKeyBlock = 64;  // keys per block: four vectors of scores per query row

int64_t round_up(int64_t n, int64_t to) { return (n + to - 1) / to * to; }

// s[r][j] = q_r · k_j for 4 query rows and one key block; kt holds the keys
// transposed ([d][keys]), so each step is a broadcast query value times four
// vectors of 16 keys.
LUMEN_AVX512 void scores_4rows(const float* q, int64_t d, const float* kt, int64_t kt_stride, float* s) {
  __m512 acc[4][4];
  for (auto& row : acc)
    for (auto& a : row) a = _mm512_setzero_ps();
  for (int64_t i = 0; i < d; ++i) {
    const float* krow = kt + i * kt_stride;
    const __m512 k0 = _mm512_loadu_ps(krow), k1 = _mm512_loadu_ps(krow + 16), k2 = _mm512_loadu_ps(krow + 32),
                 k3 = _mm512_loadu_ps(krow + 48);
    for (int r = 0; r < 4; ++r) {
      const __m512 qb = _mm512_set1_ps(q[r * d + i]);
      acc[r][0] = _mm512_fmadd_ps(qb, k0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(qb, k1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(qb, k2, acc[r][2]);
      acc[r][3] = _mm512_fmadd_ps(qb, k3, acc[r][3]);
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) _mm512_storeu_ps(s + r * kKeyBlock + c * 16, acc[r][c]);
}

// Online softmax over one key block: each row's scores become exp(s - m) in
// place (0 past `keys`), with m the running maximum; corr[r] rescales what
// the row accumulated before this block (1 when its maximum did not grow, the
// common case after the first blocks), l[r] holds its running sums, one per
// lane, added up once at the end.
LUMEN_AVX512 void online_softmax(float* s, int64_t keys, float* m, __m512* l, float* corr) {
  const __mmask16 valid[4] = {tail_mask(keys), tail_mask(keys - 16), tail_mask(keys - 32), tail_mask(keys - 48)};
  for (int64_t r = 0; r < kTileRows; ++r) {
    float* row = s + r * kKeyBlock;
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int c = 0; c < 4; ++c) vmax = _mm512_mask_max_ps(vmax, valid[c], vmax, _mm512_loadu_ps(row + c * 16));
    const float block_max = _mm512_reduce_max_ps(vmax);
    if (block_max > m[r]) {
      corr[r] = std::exp(m[r] - block_max);  // 0 on the first block (m = -inf)
      m[r] = block_max;
      l[r] = _mm512_mul_ps(l[r], _mm512_set1_ps(corr[r]));
    } else {
      corr[r] = 1.0f;
    }
    const __m512 shift = _mm512_set1_ps(m[r]);
    for (int c = 0; c < 4; ++c) {
      const __m512 e = _mm512_maskz_mov_ps(valid[c], exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(row + c * 16), shift)));
      _mm512_storeu_ps(row + c * 16, e);
      l[r] = _mm512_add_ps(l[r], e);
    }
  }
}

// o[r] = o[r]·corr[r] + Σ_j p[r][j] v_j for 4 rows and NC vectors of the head dim.
template <int NC>
LUMEN_AVX512 void accumulate_pv(const float* p, int64_t keys, const float* v, int64_t v_stride, float* o,
                                int64_t o_stride, const float* corr) {
  __m512 acc[4][NC];
  for (int r = 0; r < 4; ++r) {
    const __m512 c = _mm512_set1_ps(corr[r]);
    for (int j = 0; j < NC; ++j) acc[r][j] = _mm512_mul_ps(_mm512_loadu_ps(o + r * o_stride + j * 16), c);
  }
  for (int64_t k = 0; k < keys; ++k) {
    const float* vrow = v + k * v_stride;
    __m512 vv[NC];
    for (int j = 0; j < NC; ++j) vv[j] = _mm512_loadu_ps(vrow + j * 16);
    for (int r = 0; r < 4; ++r) {
      const __m512 pb = _mm512_set1_ps(p[r * kKeyBlock + k]);
      for (int j = 0; j < NC; ++j) acc[r][j] = _mm512_fmadd_ps(pb, vv[j], acc[r][j]);
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int j = 0; j < NC; ++j) _mm512_storeu_ps(o + r * o_stride + j * 16, acc[r][j]);
}

struct Head {
  const void* q;   // queries, [tile rows·tiles][q_stride], scaled by 1/√d
  const void* k;   // keys: f32 [d][sk_pad]; bf16 [d/2][sk_pad][2]
  const void* v;   // values: f32 [sk_pad][d_pad]; bf16 [sk_pad/2][d_pad][2]
  int64_t d, q_stride, d_pad, sk, sk_pad;
};

// float32 storage, FMA.
struct F32Kernel {
  using T = float;
  static void scores(const Head& h, const float* q, int64_t kb, float* s) {
    scores_4rows(q, h.d, static_cast<const float*>(h.k) + kb, h.sk_pad, s);
  }
  static void to_weights(const float* /*s*/, void* /*p*/) {}  // the products read s itself
  template <int NC>
  static void pv(const Head& h, const float* s, const void* /*p*/, int64_t kb, int64_t keys, int64_t c, float* o,
                 const float* corr) {
    accumulate_pv<NC>(s, keys, static_cast<const float*>(h.v) + kb * h.d_pad + c * 16, h.d_pad, o, h.d_pad, corr);
  }
};

#define LUMEN_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

LUMEN_AVX512_BF16 inline __m512bh pair_of(const uint16_t* p) {
  int32_t bits;
  std::memcpy(&bits, p, sizeof bits);
  return (__m512bh)_mm512_set1_epi32(bits);
}

// bfloat16 storage, AVX512-BF16 pair products (_mm512_dpbf16_ps: two products
// per f32 lane, twice FMA's rate): the keys are stored in pairs of head-dim
// values, the values in pairs of keys, the weights p rounded to bf16 as the
// batched-product path rounds them.
struct Bf16Kernel {
  using T = uint16_t;
  LUMEN_AVX512_BF16 static void scores(const Head& h, const uint16_t* q, int64_t kb, float* s) {
    __m512 acc[4][4];
    for (auto& row : acc)
      for (auto& a : row) a = _mm512_setzero_ps();
    const auto* k = static_cast<const uint16_t*>(h.k) + kb * 2;
    for (int64_t i = 0; i < h.q_stride / 2; ++i) {
      const uint16_t* krow = k + i * h.sk_pad * 2;
      __m512bh kv[4];
      for (int c = 0; c < 4; ++c) kv[c] = (__m512bh)_mm512_loadu_si512(krow + c * 32);
      for (int r = 0; r < 4; ++r) {
        const __m512bh qp = pair_of(q + r * h.q_stride + 2 * i);
        for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], qp, kv[c]);
      }
    }
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c) _mm512_storeu_ps(s + r * kKeyBlock + c * 16, acc[r][c]);
  }
  LUMEN_AVX512_BF16 static void to_weights(const float* s, void* p) {
    auto* out = static_cast<uint16_t*>(p);
    for (int64_t i = 0; i < kTileRows * kKeyBlock; i += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(s + i)));
  }
  template <int NC>
  LUMEN_AVX512_BF16 static void pv(const Head& h, const float* /*s*/, const void* p, int64_t kb, int64_t keys,
                                   int64_t c, float* o, const float* corr) {
    const auto* w = static_cast<const uint16_t*>(p);
    const auto* v = static_cast<const uint16_t*>(h.v) + kb * h.d_pad + c * 32;
    __m512 acc[4][NC];
    for (int r = 0; r < 4; ++r) {
      const __m512 cr = _mm512_set1_ps(corr[r]);
      for (int j = 0; j < NC; ++j) acc[r][j] = _mm512_mul_ps(_mm512_loadu_ps(o + r * h.d_pad + j * 16), cr);
    }
    for (int64_t t = 0; t < (keys + 1) / 2; ++t) {  // past `keys` the weights are 0 and the values padding
      const uint16_t* vrow = v + t * h.d_pad * 2;
      __m512bh vv[NC];
      for (int j = 0; j < NC; ++j) vv[j] = (__m512bh)_mm512_loadu_si512(vrow + j * 32);
      for (int r = 0; r < 4; ++r) {
        const __m512bh wp = pair_of(w + r * kKeyBlock + 2 * t);
        for (int j = 0; j < NC; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], wp, vv[j]);
      }
    }
    for (int r = 0; r < 4; ++r)
      for (int j = 0; j < NC; ++j) _mm512_storeu_ps(o + r * h.d_pad + j * 16, acc[r][j]);
  }
};

// One tile of queries against all keys; the result rows go to out (row stride out_stride).
template <typename Kernel>
LUMEN_AVX512 void attend_tile(const Head& h, const typename Kernel::T* q, float* s, void* p, float* o, float* out,
                              int64_t out_stride, int64_t rows) {
  float m[kTileRows], corr[kTileRows];
  __m512 l[kTileRows];
  std::fill(m, m + kTileRows, -INFINITY);
  std::fill(l, l + kTileRows, _mm512_setzero_ps());
  std::fill(o, o + kTileRows * h.d_pad, 0.0f);
  const int64_t vectors = h.d_pad / 16;
  for (int64_t kb = 0; kb < h.sk; kb += kKeyBlock) {
    const int64_t keys = std::min(kKeyBlock, h.sk - kb);
    for (int64_t r = 0; r < kTileRows; r += 4) Kernel::scores(h, q + r * h.q_stride, kb, s + r * kKeyBlock);
    online_softmax(s, keys, m, l, corr);
    Kernel::to_weights(s, p);
    for (int64_t r = 0; r < kTileRows; r += 4) {
      const float* sr = s + r * kKeyBlock;
      const void* pr = static_cast<const typename Kernel::T*>(p) + r * kKeyBlock;
      for (int64_t c = 0; c < vectors; c += 4) {
        float* orow = o + r * h.d_pad + c * 16;
        switch (std::min<int64_t>(4, vectors - c)) {
          case 4: Kernel::template pv<4>(h, sr, pr, kb, keys, c, orow, corr + r); break;
          case 3: Kernel::template pv<3>(h, sr, pr, kb, keys, c, orow, corr + r); break;
          case 2: Kernel::template pv<2>(h, sr, pr, kb, keys, c, orow, corr + r); break;
          default: Kernel::template pv<1>(h, sr, pr, kb, keys, c, orow, corr + r); break;
        }
      }
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    const __m512 scale = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(l[r]));
    for (int64_t c = 0; c < h.d; c += 16)
      _mm512_mask_storeu_ps(out + r * out_stride + c, tail_mask(h.d - c),
                            _mm512_mul_ps(_mm512_loadu_ps(o + r * h.d_pad + c), scale));
  }
}

// [B,S,H·D] → [B·H,S,D] in float32.
torch::Tensor heads_first(const torch::Tensor& t, int64_t heads) { return split_heads(t.to(torch::kFloat), heads); }

bool bf16_kernel_supported() {
  static const bool supported = fast_softmax_supported() && __builtin_cpu_supports("avx512bf16");
  return supported;
}

// The tiles of all heads, in parallel; `out` is [B,Sq,H·D] float32.
template <typename Kernel>
void attend_all(const torch::Tensor& qh, const torch::Tensor& kp, const torch::Tensor& vp, int64_t b, int64_t heads,
                int64_t sq, int64_t sk, int64_t d, torch::Tensor& out) {
  using T = typename Kernel::T;
  const int64_t tiles = qh.size(1) / kTileRows, q_stride = qh.size(2), sk_pad = round_up(sk, kKeyBlock),
                d_pad = round_up(d, 16);
  const auto* qp = reinterpret_cast<const T*>(qh.data_ptr());
  const auto* kbase = reinterpret_cast<const T*>(kp.data_ptr());
  const auto* vbase = reinterpret_cast<const T*>(vp.data_ptr());
  const int64_t k_head = kp.numel() / (b * heads), v_head = vp.numel() / (b * heads);
  float* op = out.data_ptr<float>();
  at::parallel_for(0, b * heads * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> s(kTileRows * kKeyBlock), o(kTileRows * d_pad);
    std::vector<T> p(kTileRows * kKeyBlock);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bh = task / tiles, tile = task % tiles, batch = bh / heads, head = bh % heads;
      const Head h{qp + bh * tiles * kTileRows * q_stride, kbase + bh * k_head, vbase + bh * v_head,
                   d, q_stride, d_pad, sk, sk_pad};
      const int64_t row0 = tile * kTileRows;
      attend_tile<Kernel>(h, static_cast<const T*>(h.q) + row0 * q_stride, s.data(), p.data(), o.data(),
                          op + (batch * sq + row0) * heads * d + head * d, heads * d, std::min(kTileRows, sq - row0));
    }
  });
}

}  // namespace

torch::Tensor split_heads(const torch::Tensor& t, int64_t heads) {
  const int64_t b = t.size(0), s = t.size(1), d = t.size(2) / heads;
  return t.reshape({b, s, heads, d}).permute({0, 2, 1, 3}).reshape({b * heads, s, d});
}

void set_fused_attention(bool enabled) { g_enabled = enabled; }
bool fused_attention_enabled() { return g_enabled && fast_softmax_supported(); }

bool fused_attention_applies(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t heads) {
  auto fits = [&](const torch::Tensor& t) { return t.is_cpu() && t.dim() == 3 && t.scalar_type() == q.scalar_type(); };
  if (!fused_attention_enabled() || autograd_records(q, k, v) || !fits(q) || !fits(k) || !fits(v)) return false;
  if (q.scalar_type() == torch::kFloat) return true;  // 1.2-2x the batched products at every SD shape
  // bf16: the batched products run on oneDNN's bf16 kernels, as fast as these
  // pair products; measured (one thread, 8 heads) the fused kernel wins only
  // at head dim 40 with 4096 keys (1.25x; 0.6-0.9x at head dims 64-160 or 77
  // keys). There the score matrices are also largest.
  const int64_t d = q.size(2) / heads;
  return q.scalar_type() == torch::kBFloat16 && bf16_kernel_supported() && d <= 48 && k.size(1) >= 2048;
}

torch::Tensor fused_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              int64_t heads) {
  const int64_t b = q.size(0), sq = q.size(1), sk = k.size(1), d = q.size(2) / heads;
  const int64_t sq_pad = round_up(sq, kTileRows), sk_pad = round_up(sk, kKeyBlock), d_pad = round_up(d, 16);
  // Packed once per call (O(S·D), against the O(Sq·Sk·D) products): queries
  // scaled (in f32) and padded to whole tiles, keys transposed and padded to
  // whole blocks, values padded to whole vectors. Padding is zeros; padded
  // keys are masked out of the softmax, padded query rows are dropped.
  const auto qf = heads_first(q, heads) * (1.0 / std::sqrt(static_cast<double>(d)));
  const auto kf = heads_first(k, heads), vf = heads_first(v, heads);
  auto out = torch::empty({b, sq, heads * d}, q.options().dtype(torch::kFloat));
  if (q.scalar_type() == torch::kBFloat16 && bf16_kernel_supported()) {
    const int64_t d_even = round_up(d, 2);
    const auto qh = torch::constant_pad_nd(qf, {0, d_even - d, 0, sq_pad - sq}).to(torch::kBFloat16).contiguous();
    // [BH,Sk,D] → [BH,D/2,Sk,2]: the two head-dim values of a pair side by side, keys along the vector.
    const auto kp = torch::constant_pad_nd(kf, {0, d_even - d, 0, sk_pad - sk})
                        .to(torch::kBFloat16)
                        .reshape({b * heads, sk_pad, d_even / 2, 2})
                        .permute({0, 2, 1, 3})
                        .contiguous();
    // [BH,Sk,D] → [BH,Sk/2,D,2]: the values of two keys side by side, head dims along the vector.
    const auto vp = torch::constant_pad_nd(vf, {0, d_pad - d, 0, sk_pad - sk})
                        .to(torch::kBFloat16)
                        .reshape({b * heads, sk_pad / 2, 2, d_pad})
                        .permute({0, 1, 3, 2})
                        .contiguous();
    attend_all<Bf16Kernel>(qh, kp, vp, b, heads, sq, sk, d, out);
  } else {
    const auto qh = torch::constant_pad_nd(qf, {0, 0, 0, sq_pad - sq}).contiguous();
    const auto kt = torch::constant_pad_nd(kf.transpose(1, 2), {0, sk_pad - sk}).contiguous();
    const auto vh = torch::constant_pad_nd(vf, {0, d_pad - d, 0, sk_pad - sk}).contiguous();
    attend_all<F32Kernel>(qh, kt, vh, b, heads, sq, sk, d, out);
  }
  return out.to(q.scalar_type());
}

}  // namespace lumen::nn
