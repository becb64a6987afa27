#include "distributed.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstdlib>

#include "error.h"

namespace lumen::train {
namespace {

// An integer environment variable in [lo, hi]; `fallback` when unset.
int env_int(const char* name, int fallback, int lo, int hi) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*end != '\0' || value < lo || value > hi)
    throw Error(std::string("environment variable ") + name + "=" + text,
                "must be a whole number in " + std::to_string(lo) + ".." + std::to_string(hi));
  return static_cast<int>(value);
}

// Gloo's network device: the interface named by GLOO_SOCKET_IFNAME (as
// PyTorch), loopback for a group on one machine, else the host's address.
std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string& master_addr) {
  if (const char* name = std::getenv("GLOO_SOCKET_IFNAME"); name && *name)
    return c10d::ProcessGroupGloo::createDeviceForInterface(name);
  if (master_addr == "localhost" || master_addr.rfind("127.", 0) == 0)
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

LaunchEnv launch_env_from_environment() {
  LaunchEnv env;
  env.world_size = env_int("WORLD_SIZE", 1, 1, 4096);
  env.rank = env_int("RANK", 0, 0, 4095);
  env.local_rank = env_int("LOCAL_RANK", env.rank, 0, 4095);
  env.master_port = env_int("MASTER_PORT", 29500, 1, 65535);
  env.timeout_seconds = env_int("LUMEN_DIST_TIMEOUT_S", 1800, 1, 86400);
  env.overlap = env_int("LUMEN_DIST_OVERLAP", 1, 0, 1) == 1;
  env.bucket_mb = env_int("LUMEN_DIST_BUCKET_MB", 25, 1, 4096);
  if (const char* addr = std::getenv("MASTER_ADDR"); addr && *addr) env.master_addr = addr;
  if (env.rank >= env.world_size)
    throw Error("environment variable RANK=" + std::to_string(env.rank),
                "must be below WORLD_SIZE=" + std::to_string(env.world_size));
  return env;
}

DataParallel::DataParallel(const LaunchEnv& env, std::vector<torch::Tensor> parameters, size_t bucket_bytes)
    : env_(env), parameters_(std::move(parameters)) {
  const std::chrono::seconds timeout(env_.timeout_seconds);
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(env_.master_port);
  store_options.isServer = env_.rank == 0;
  store_options.numWorkers = static_cast<size_t>(env_.world_size);
  store_options.timeout = timeout;
  try {
    store_ = c10::make_intrusive<c10d::TCPStore>(env_.master_addr, store_options);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(gloo_device(env_.master_addr));
    group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, env_.rank, env_.world_size, options);
  } catch (const std::exception& e) {
    throw Error("rendezvous at " + env_.master_addr + ":" + std::to_string(env_.master_port) + " (rank " +
                    std::to_string(env_.rank) + " of " + std::to_string(env_.world_size) + ")",
                e.what());
  }

  // Buckets in reverse parameter order: backward reaches the last layers first.
  bucket_of_.assign(parameters_.size(), 0);
  size_t bytes = bucket_bytes;  // start a new bucket at once
  for (size_t k = parameters_.size(); k-- > 0;) {
    const auto& p = parameters_[k];
    if (p.scalar_type() != torch::kFloat)
      throw Error("data-parallel training", "parameters must be float32 (bf16 runs use autocast)");
    const size_t size = static_cast<size_t>(p.numel()) * sizeof(float);
    if (buckets_.empty() || bytes + size > bucket_bytes) {
      buckets_.emplace_back();
      bytes = 0;
    }
    Bucket& b = buckets_.back();
    b.offsets.push_back(b.members.empty() ? 0 : b.offsets.back() + parameters_[b.members.back()].numel());
    b.members.push_back(k);
    bucket_of_[k] = buckets_.size() - 1;
    bytes += size;
  }
  for (auto& b : buckets_) {
    const int64_t n = b.offsets.back() + parameters_[b.members.back()].numel();
    b.flat = torch::zeros({n}, torch::kFloat);
  }
  seen_.assign(parameters_.size(), false);
  for (size_t k = 0; k < parameters_.size(); ++k)
    hooks_.push_back(parameters_[k].register_hook([this, k](torch::Tensor grad) { on_gradient(k, grad); }));
}

DataParallel::~DataParallel() {
  for (size_t k = 0; k < hooks_.size(); ++k) parameters_[k].remove_hook(hooks_[k]);
}

void DataParallel::broadcast_parameters() {
  torch::NoGradGuard no_grad;
  for (auto& p : parameters_) {
    std::vector<torch::Tensor> one{p.data()};
    wait_for(*group_->broadcast(one), "broadcast of the parameters");
  }
}

void DataParallel::prepare_backward() {
  for (auto& b : buckets_) {
    b.flat.zero_();
    b.ready = 0;
    b.launched = false;
    b.work.reset();
  }
  seen_.assign(parameters_.size(), false);
  next_launch_ = 0;
}

std::string DataParallel::where() const {
  return "data-parallel training, rank " + std::to_string(env_.rank) + " of " + std::to_string(env_.world_size);
}

torch::Tensor DataParallel::slot_of(size_t parameter) {
  Bucket& b = buckets_[bucket_of_[parameter]];
  size_t slot = 0;
  while (b.members[slot] != parameter) ++slot;
  return b.flat.narrow(0, b.offsets[slot], parameters_[parameter].numel());
}

void DataParallel::wait_for(c10d::Work& work, const char* what) {
  try {
    work.wait();
  } catch (const std::exception& e) {
    throw Error(where(),
                std::string(what) + " failed (another rank stopped, or the network failed; the last checkpoint is kept): " +
                    e.what());
  }
}

void DataParallel::on_gradient(size_t parameter, const torch::Tensor& grad) {
  if (!sync_) return;  // an accumulation pass: autograd adds grad to .grad
  if (seen_[parameter]) throw Error("data-parallel training", "a parameter received two gradients in one backward pass");
  seen_[parameter] = true;
  Bucket& b = buckets_[bucket_of_[parameter]];
  {
    torch::NoGradGuard no_grad;
    auto into = slot_of(parameter);
    into.copy_(grad.reshape({-1}));
    // Earlier passes of this step: the hook runs before autograd adds grad.
    if (const auto& earlier = parameters_[parameter].grad(); earlier.defined()) into.add_(earlier.reshape({-1}));
  }
  if (++b.ready == b.members.size() && env_.overlap) launch_ready_buckets();
}

// Starts every full bucket whose predecessors have started: all ranks then
// issue their all-reduces in the same order.
void DataParallel::launch_ready_buckets() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].ready == buckets_[next_launch_].members.size())
    launch(buckets_[next_launch_++]);
}

void DataParallel::launch(Bucket& bucket) {
  std::vector<torch::Tensor> one{bucket.flat};
  bucket.work = group_->allreduce(one);
  bucket.launched = true;
}

void DataParallel::finish_backward() {
  launched_during_backward_ = next_launch_;
  // Parameters the syncing pass did not reach: what earlier passes of the step
  // accumulated (their buckets cannot have started), else zeros.
  {
    torch::NoGradGuard no_grad;
    for (size_t k = 0; k < parameters_.size(); ++k) {
      const auto& earlier = parameters_[k].grad();
      if (!seen_[k] && earlier.defined()) slot_of(k).copy_(earlier.reshape({-1}));
    }
  }
  while (next_launch_ < buckets_.size()) launch(buckets_[next_launch_++]);
  torch::NoGradGuard no_grad;
  const double scale = 1.0 / env_.world_size;
  last_wait_seconds_ = 0;
  for (auto& b : buckets_) {
    const auto before = std::chrono::steady_clock::now();
    wait_for(*b.work, "all-reduce of the gradients");
    last_wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - before).count();
    b.flat.mul_(scale);
    for (size_t slot = 0; slot < b.members.size(); ++slot) {
      auto& p = parameters_[b.members[slot]];
      auto mean = b.flat.narrow(0, b.offsets[slot], p.numel()).view(p.sizes());
      if (p.grad().defined())
        p.mutable_grad().copy_(mean);
      else
        p.mutable_grad() = mean.clone();
    }
  }
}

void DataParallel::average_gradients(const std::vector<torch::Tensor>& parameters) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> flat_parts;
  for (const auto& p : parameters)
    flat_parts.push_back(p.grad().defined() ? p.grad().reshape({-1}).to(torch::kFloat) : torch::zeros({p.numel()}));
  std::vector<torch::Tensor> one{torch::cat(flat_parts)};
  wait_for(*group_->allreduce(one), "all-reduce of the gradients");
  one[0].div_(env_.world_size);
  int64_t at = 0;
  for (auto p : parameters) {
    auto mean = one[0].narrow(0, at, p.numel()).view(p.sizes()).to(p.scalar_type());
    if (p.grad().defined())
      p.mutable_grad().copy_(mean);
    else
      p.mutable_grad() = mean.clone();
    at += p.numel();
  }
}

double DataParallel::mean(double value) {
  std::vector<torch::Tensor> one{torch::tensor({value}, torch::kDouble)};
  wait_for(*group_->allreduce(one), "all-reduce of the loss");
  return one[0].item<double>() / env_.world_size;
}

void DataParallel::check_identical(const std::vector<torch::Tensor>& parameters) {
  uint64_t hash = 14695981039346656037ull;  // FNV-1a over every byte
  for (const auto& p : parameters) {
    const auto bytes = p.detach().contiguous();
    const auto* data = static_cast<const unsigned char*>(bytes.data_ptr());
    for (size_t i = 0, n = bytes.numel() * bytes.element_size(); i < n; ++i) hash = (hash ^ data[i]) * 1099511628211ull;
  }
  // Split in two halves: exact in int64 whatever the sign.
  auto mine = torch::tensor({static_cast<int64_t>(hash >> 32), static_cast<int64_t>(hash & 0xffffffffu)}, torch::kLong);
  std::vector<torch::Tensor> one{mine.clone()};
  wait_for(*group_->broadcast(one), "broadcast of rank 0's weight hash");
  // Every rank learns how many differ, so all stop together.
  std::vector<torch::Tensor> differ{torch::tensor({one[0].equal(mine) ? int64_t{0} : int64_t{1}}, torch::kLong)};
  wait_for(*group_->allreduce(differ), "all-reduce of the weight check");
  if (const int64_t n = differ[0].item<int64_t>(); n > 0)
    throw Error(where(), "the weights of " + std::to_string(n) + " rank(s) differ from rank 0's at the end of the run (the ranks diverged)");
}

}  // namespace lumen::train
