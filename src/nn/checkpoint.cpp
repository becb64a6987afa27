#include "nn/checkpoint.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace lumen::nn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// LibTorch 2.4 replaced the per-device autocast calls with device-taking ones.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool autocast_on(c10::DeviceType d) { return at::autocast::is_autocast_enabled(d); }
void set_autocast_on(c10::DeviceType d, bool on) { at::autocast::set_autocast_enabled(d, on); }
at::ScalarType autocast_dtype(c10::DeviceType d) { return at::autocast::get_autocast_dtype(d); }
void set_autocast_dtype(c10::DeviceType d, at::ScalarType t) { at::autocast::set_autocast_dtype(d, t); }
#else
bool autocast_on(c10::DeviceType d) {
  return d == c10::kCPU ? at::autocast::is_cpu_enabled() : at::autocast::is_enabled();
}
void set_autocast_on(c10::DeviceType d, bool on) {
  d == c10::kCPU ? at::autocast::set_cpu_enabled(on) : at::autocast::set_enabled(on);
}
at::ScalarType autocast_dtype(c10::DeviceType d) {
  return d == c10::kCPU ? at::autocast::get_autocast_cpu_dtype() : at::autocast::get_autocast_gpu_dtype();
}
void set_autocast_dtype(c10::DeviceType d, at::ScalarType t) {
  d == c10::kCPU ? at::autocast::set_autocast_cpu_dtype(t) : at::autocast::set_autocast_gpu_dtype(t);
}
#endif

// Autocast state of the CPU and CUDA, saved as plain values for backward.
struct AutocastState {
  bool cpu = false, cuda = false;
  at::ScalarType cpu_dtype = at::kBFloat16, cuda_dtype = at::kHalf;
  bool cache = true;

  static AutocastState current() {
    return {autocast_on(c10::kCPU), autocast_on(c10::kCUDA), autocast_dtype(c10::kCPU), autocast_dtype(c10::kCUDA),
            at::autocast::is_autocast_cache_enabled()};
  }
  void apply() const {
    set_autocast_on(c10::kCPU, cpu), set_autocast_on(c10::kCUDA, cuda);
    set_autocast_dtype(c10::kCPU, cpu_dtype), set_autocast_dtype(c10::kCUDA, cuda_dtype);
    at::autocast::set_autocast_cache_enabled(cache);
  }
};

// Sets an autocast state for a scope. The weight-cast cache is off inside:
// a cast cached by the no-grad forward has no grad_fn, and reusing it in the
// recomputation would cut the gradient to the weight it was cast from.
struct AutocastGuard {
  explicit AutocastGuard(AutocastState state) : saved_(AutocastState::current()) {
    state.cache = false;
    state.apply();
  }
  ~AutocastGuard() { saved_.apply(); }
  AutocastState saved_;
};

struct FnHolder : torch::CustomClassHolder {
  explicit FnHolder(CheckpointedFn f) : fn(std::move(f)) {}
  CheckpointedFn fn;
};

struct Checkpoint : torch::autograd::Function<Checkpoint> {
  // `inputs` are the defined ones; `first_forced`: inputs[0] only pretends to require grad.
  static torch::Tensor forward(AutogradContext* ctx, const CheckpointedFn& fn, at::TensorList inputs,
                               bool first_forced) {
    const AutocastState autocast = AutocastState::current();
    ctx->saved_data["fn"] = c10::IValue::make_capsule(c10::make_intrusive<FnHolder>(fn));
    ctx->saved_data["first_forced"] = first_forced;
    ctx->saved_data["cpu_autocast"] = autocast.cpu;
    ctx->saved_data["cuda_autocast"] = autocast.cuda;
    ctx->saved_data["cpu_dtype"] = static_cast<int64_t>(autocast.cpu_dtype);
    ctx->saved_data["cuda_dtype"] = static_cast<int64_t>(autocast.cuda_dtype);
    c10::List<bool> needs_grad;
    for (const auto& t : inputs) needs_grad.push_back(t.requires_grad());
    ctx->saved_data["needs_grad"] = needs_grad;
    ctx->save_for_backward(inputs.vec());
    AutocastGuard guard(autocast);
    return fn(inputs.vec());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto& fn = static_cast<FnHolder*>(ctx->saved_data["fn"].toCapsule().get())->fn;
    const bool first_forced = ctx->saved_data["first_forced"].toBool();
    const c10::List<bool> needs_grad = ctx->saved_data["needs_grad"].toBoolList();
    AutocastState autocast;
    autocast.cpu = ctx->saved_data["cpu_autocast"].toBool();
    autocast.cuda = ctx->saved_data["cuda_autocast"].toBool();
    autocast.cpu_dtype = static_cast<at::ScalarType>(ctx->saved_data["cpu_dtype"].toInt());
    autocast.cuda_dtype = static_cast<at::ScalarType>(ctx->saved_data["cuda_dtype"].toInt());

    variable_list inputs = ctx->get_saved_variables();
    for (size_t i = 0; i < inputs.size(); ++i)
      inputs[i] = inputs[i].detach().requires_grad_(needs_grad.get(i) && !(i == 0 && first_forced));
    torch::Tensor output;
    {
      torch::AutoGradMode grad(true);
      AutocastGuard guard(autocast);
      output = fn(inputs);
    }
    // One gradient per forward argument: none for the callable, one per input, none for the flag.
    variable_list grads{torch::Tensor()};
    if (output.requires_grad()) torch::autograd::backward({output}, {grad_outputs[0]});
    for (const auto& t : inputs) grads.push_back(t.requires_grad() ? t.grad() : torch::Tensor());
    grads.emplace_back();  // first_forced
    return grads;
  }
};

}  // namespace

torch::Tensor checkpoint(const CheckpointedFn& fn, const std::vector<torch::Tensor>& inputs) {
  if (!torch::GradMode::is_enabled()) return fn(inputs);
  // The Function sees only the defined inputs; fn gets the undefined ones back in place.
  std::vector<torch::Tensor> defined;
  std::vector<bool> present;
  for (const auto& t : inputs) {
    present.push_back(t.defined());
    if (t.defined()) defined.push_back(t);
  }
  CheckpointedFn inner = fn;
  if (defined.size() != inputs.size())
    inner = [fn, present](const std::vector<torch::Tensor>& in) {
      std::vector<torch::Tensor> all;
      size_t next = 0;
      for (bool p : present) all.push_back(p ? in[next++] : torch::Tensor());
      return fn(all);
    };
  bool any = false;
  for (const auto& t : defined) any |= t.requires_grad();
  const bool force = !any && !defined.empty();
  if (force) defined[0] = defined[0].detach().requires_grad_(true);
  return Checkpoint::apply(inner, at::TensorList(defined), force);
}

}  // namespace lumen::nn
