// Data-parallel training on LibTorch's own c10d, launched the way torchrun
// launches PyTorch jobs (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT): TCPStore rendezvous, Gloo on CPU.
//
// Gradients are averaged as PyTorch's DDP reducer does it: parameters are
// packed into buckets (in reverse order, the order backward reaches them), a
// hook on each parameter copies its gradient into its bucket, and a full
// bucket's all-reduce starts at once, so communication overlaps the rest of
// the backward pass. Buckets are launched in index order on every rank, as
// collectives must match. With several backward passes per step (gradient
// accumulation), only the last one syncs: the hooks then add the gradients
// accumulated so far, as DDP's no_sync does.
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace c10d {
class ProcessGroup;
class Store;
class Work;
}  // namespace c10d

namespace lumen::train {

struct LaunchEnv {
  int world_size = 1, rank = 0, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // How long a rank waits for the others (rendezvous and each collective):
  // LUMEN_DIST_TIMEOUT_S, default 30 min. A rank that fails ends the others only
  // then, unless the launcher stops them (torchrun does).
  int timeout_seconds = 1800;
  // LUMEN_DIST_OVERLAP=0 starts every all-reduce after the backward pass
  // instead of during it: for measuring what the overlap saves.
  bool overlap = true;
  // LUMEN_DIST_BUCKET_MB: the size of a gradient bucket (DDP's bucket_cap_mb).
  int bucket_mb = 25;
  bool distributed() const { return world_size > 1; }
};

// The torchrun variables from the environment; none set means one process.
// Malformed or inconsistent values are a lumen::Error naming the variable.
LaunchEnv launch_env_from_environment();

class DataParallel {
 public:
  // Joins the group: returns once every rank has connected (or throws after `timeout`).
  DataParallel(const LaunchEnv& env, std::vector<torch::Tensor> parameters, size_t bucket_bytes = 25u << 20);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  size_t bucket_count() const { return buckets_.size(); }
  // Buckets whose all-reduce had started before the last finish_backward():
  // the communication that overlapped the backward pass.
  size_t launched_during_backward() const { return launched_during_backward_; }
  // Seconds the last finish_backward() spent waiting for all-reduces: the
  // communication the backward pass did not hide.
  double last_wait_seconds() const { return last_wait_seconds_; }

  // Rank 0's parameter values to every rank, so all start equal.
  void broadcast_parameters();
  // Before the backward pass that syncs (the last of a step): empties the
  // buckets. Backward passes before it in the same step (sync = false in
  // set_sync) only accumulate into .grad.
  void prepare_backward();
  void set_sync(bool sync) { sync_ = sync; }
  // After it: launches what is left (a parameter without a gradient counts as
  // zero), waits, and sets every parameter's grad to the mean over ranks.
  void finish_backward();
  // The mean of a number over ranks (losses for the log).
  double mean(double value);
  // Throws a lumen::Error if any rank's `parameters` differ in any bit from
  // rank 0's (compared by a 64-bit hash of their bytes).
  void check_identical(const std::vector<torch::Tensor>& parameters);
  // Sets the grads of `parameters` (not those given at construction: a
  // discriminator's, say) to their mean over ranks, in one all-reduce; a
  // missing grad counts as zero.
  void average_gradients(const std::vector<torch::Tensor>& parameters);

 private:
  struct Bucket {
    std::vector<size_t> members;  // indices into parameters_
    std::vector<int64_t> offsets;  // of each member in `flat`
    torch::Tensor flat;
    size_t ready = 0;
    bool launched = false;
    c10::intrusive_ptr<c10d::Work> work;
  };
  void on_gradient(size_t parameter, const torch::Tensor& grad);
  void launch_ready_buckets();
  void launch(Bucket& bucket);
  // A parameter's place in its bucket's flat tensor (a view).
  torch::Tensor slot_of(size_t parameter);
  // Waits for a collective; a failure (a rank gone, a timeout) becomes a lumen::Error.
  void wait_for(c10d::Work& work, const char* what);
  std::string where() const;  // "data-parallel training, rank r of W", for errors

  LaunchEnv env_;
  std::vector<torch::Tensor> parameters_;
  std::vector<size_t> bucket_of_;  // per parameter
  std::vector<bool> seen_;         // per parameter, this backward pass
  std::vector<Bucket> buckets_;
  size_t next_launch_ = 0, launched_during_backward_ = 0;
  bool sync_ = true;
  double last_wait_seconds_ = 0;
  std::vector<unsigned> hooks_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
};

}  // namespace lumen::train
