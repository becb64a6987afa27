// Counting what the networks compute: floating-point operations and time per
// layer kind (convolution, linear, attention, normalisation), for `lumen bench`
// and `-v`. Off unless a ScopedOpProfile is alive; then every Conv2d, Linear,
// GroupNorm/LayerNorm and attention call adds its FLOPs and wall time.
// CPU work is synchronous, so a call's wall time is its compute time; GPU
// work is queued, so a GPU profile waits for the device around each call.
#pragma once
#include <array>
#include <cstdint>

namespace lumen::nn {

enum class OpKind { Conv, Linear, Attention, Norm };
constexpr int kOpKinds = 4;
const char* op_kind_name(OpKind kind);  // "conv", "linear", "attention", "norm"

struct OpTotals {
  std::array<double, kOpKinds> flops{};    // multiply-adds count 2
  std::array<double, kOpKinds> seconds{};
  std::array<int64_t, kOpKinds> calls{};
  void (*synchronize)() = nullptr;  // GPU: waits for the device (set before profiling)
  double flops_of(OpKind k) const { return flops[static_cast<int>(k)]; }
  double seconds_of(OpKind k) const { return seconds[static_cast<int>(k)]; }
};

// The profile being recorded into, or null (the common case: one pointer test per layer call).
OpTotals* active_op_profile();

// Records every layer call of this process into `totals` while alive. Not
// nestable; meant for one measuring thread (the layers' own ops may fan out).
class ScopedOpProfile {
 public:
  explicit ScopedOpProfile(OpTotals& totals);
  ~ScopedOpProfile();
  ScopedOpProfile(const ScopedOpProfile&) = delete;
  ScopedOpProfile& operator=(const ScopedOpProfile&) = delete;

 private:
  OpTotals* previous_;
};

// Times one call of kind `kind` doing `flops` operations when a profile is active.
class OpTimer {
 public:
  OpTimer(OpKind kind, double flops);
  ~OpTimer();
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

 private:
  OpTotals* totals_;
  OpKind kind_;
  double flops_;
  int64_t start_ns_ = 0;
};

// FLOPs of the layer kinds, as the bench counts them.
double conv2d_flops(int64_t batch, int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t out_h,
                    int64_t out_w);
double linear_flops(int64_t rows, int64_t in_features, int64_t out_features);
// Both matrix products of softmax(QKᵀ)V over all heads.
double attention_flops(int64_t batch, int64_t heads, int64_t query_len, int64_t key_len, int64_t head_dim);

}  // namespace lumen::nn
