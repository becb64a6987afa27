#include "nn/op_profile.h"

#include <atomic>
#include <chrono>

namespace lumen::nn {
namespace {
std::atomic<OpTotals*> g_profile{nullptr};
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

const char* op_kind_name(OpKind kind) {
  switch (kind) {
    case OpKind::Conv: return "conv";
    case OpKind::Linear: return "linear";
    case OpKind::Attention: return "attention";
    case OpKind::Norm: return "norm";
  }
  return "?";
}

OpTotals* active_op_profile() { return g_profile.load(std::memory_order_relaxed); }

ScopedOpProfile::ScopedOpProfile(OpTotals& totals) : previous_(g_profile.exchange(&totals)) {}
ScopedOpProfile::~ScopedOpProfile() { g_profile.store(previous_); }

OpTimer::OpTimer(OpKind kind, double flops) : totals_(active_op_profile()), kind_(kind), flops_(flops) {
  if (!totals_) return;
  if (totals_->synchronize) totals_->synchronize();  // earlier queued GPU work is not this call's
  start_ns_ = now_ns();
}
OpTimer::~OpTimer() {
  if (!totals_) return;
  if (totals_->synchronize) totals_->synchronize();
  const int k = static_cast<int>(kind_);
  totals_->seconds[k] += static_cast<double>(now_ns() - start_ns_) * 1e-9;
  totals_->flops[k] += flops_;
  totals_->calls[k] += 1;
}

double conv2d_flops(int64_t batch, int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t out_h,
                    int64_t out_w) {
  return 2.0 * static_cast<double>(batch) * out_channels * out_h * out_w * in_channels * kernel * kernel;
}
double linear_flops(int64_t rows, int64_t in_features, int64_t out_features) {
  return 2.0 * static_cast<double>(rows) * in_features * out_features;
}
double attention_flops(int64_t batch, int64_t heads, int64_t query_len, int64_t key_len, int64_t head_dim) {
  return 2.0 * 2.0 * static_cast<double>(batch) * heads * query_len * key_len * head_dim;
}

}  // namespace lumen::nn
