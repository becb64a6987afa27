// Data-parallel training on c10d (Gloo), with the ranks as threads of one
// process: the bucketed, hook-driven all-reduce must give every rank the
// gradient of the whole batch.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "distributed.h"
#include "error.h"

namespace {

using lumen::train::DataParallel;
using lumen::train::LaunchEnv;

// A small network whose parameters span several buckets, one of them used
// only by rank 0 (its gradient elsewhere counts as zero, as in PyTorch's DDP).
struct Net {
  torch::nn::Conv2d conv{torch::nn::Conv2dOptions(3, 8, 3).padding(1)};
  torch::nn::Linear head{8, 4};
  torch::nn::Linear extra{4, 4};
  std::vector<torch::Tensor> parameters() const {
    auto p = conv->parameters();
    for (const auto* m : {&head, &extra})
      for (auto& t : (*m)->parameters()) p.push_back(t);
    return p;
  }
  torch::Tensor loss(const torch::Tensor& x, bool use_extra) {
    auto h = head(torch::relu(conv(x)).mean({2, 3}));
    if (use_extra) h = extra(h);
    return h.pow(2).mean();
  }
};

TEST(DataParallel, BucketedAllReduceGivesTheWholeBatchGradient) {
  torch::manual_seed(3);
  const auto x = torch::randn({4, 3, 6, 6});
  // Each rank's loss is the mean over its half, so the mean over ranks of
  // their gradients is the gradient of (loss(half 0) + loss(half 1)) / 2.
  Net reference;
  auto expected_loss = (reference.loss(x.narrow(0, 0, 2), true) + reference.loss(x.narrow(0, 2, 2), false)) / 2;
  expected_loss.backward();

  const int port = 29600 + static_cast<int>(::getpid() % 1000);
  std::vector<std::vector<torch::Tensor>> grads(2);
  std::vector<size_t> buckets(2), overlapped(2);
  std::vector<std::string> errors(2);
  auto run_rank = [&](int rank) {
    try {
      torch::NoGradGuard no_grad_init;
      Net net;
      // Ranks start different; broadcast makes them rank 0's, which are the reference's.
      for (auto& p : net.parameters()) p.uniform_(-1, 1);
      if (rank == 0) {
        auto ours = net.parameters(), theirs = reference.parameters();
        for (size_t i = 0; i < ours.size(); ++i) ours[i].copy_(theirs[i]);
      }
      LaunchEnv env;
      env.world_size = 2;
      env.rank = rank;
      env.master_port = port;
      DataParallel dp(env, net.parameters(), /*bucket_bytes=*/100);
      buckets[static_cast<size_t>(rank)] = dp.bucket_count();
      dp.broadcast_parameters();
      torch::AutoGradMode grad_mode(true);
      for (int pass = 0; pass < 2; ++pass) {  // a second pass: buckets are reset, not accumulated
        for (auto& p : net.parameters()) p.mutable_grad() = torch::Tensor();
        dp.prepare_backward();
        net.loss(x.narrow(0, 2 * rank, 2), rank == 0).backward();
        dp.finish_backward();
      }
      overlapped[static_cast<size_t>(rank)] = dp.launched_during_backward();
      // Parameters outside the buckets (a discriminator's): one all-reduce of their mean.
      auto other = torch::zeros({3}, torch::requires_grad());
      other.mutable_grad() = torch::full({3}, static_cast<float>(rank + 1));
      auto unused = torch::zeros({2}, torch::requires_grad());  // no grad on any rank: zeros
      dp.average_gradients({other, unused});
      if (!torch::allclose(other.grad(), torch::full({3}, 1.5f)) || !unused.grad().eq(0).all().item<bool>())
        throw std::runtime_error("average_gradients gave " + std::to_string(other.grad()[0].item<float>()));
      for (auto& p : net.parameters()) grads[static_cast<size_t>(rank)].push_back(p.grad().clone());
    } catch (const std::exception& e) {
      errors[static_cast<size_t>(rank)] = e.what();
    }
  };
  std::thread r0(run_rank, 0), r1(run_rank, 1);
  r0.join();
  r1.join();
  ASSERT_EQ(errors[0], "");
  ASSERT_EQ(errors[1], "");
  EXPECT_GE(buckets[0], 3u) << "the test must cover several buckets";
  // Rank 0 uses every parameter: all its buckets start inside backward. Rank 1
  // never fills the first bucket (`extra` is unused), so nothing can start before it.
  EXPECT_EQ(overlapped[0], buckets[0]);
  EXPECT_EQ(overlapped[1], 0u);
  const auto expected = reference.parameters();
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_EQ(grads[rank].size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i)
      EXPECT_TRUE(torch::allclose(grads[rank][i], expected[i].grad(), 1e-5, 1e-6)) << "rank " << rank << " param " << i;
  }
}

TEST(DataParallel, LaunchVariablesAreChecked) {
  ::setenv("WORLD_SIZE", "2", 1);
  ::setenv("RANK", "2", 1);
  EXPECT_THROW(lumen::train::launch_env_from_environment(), lumen::Error);
  ::setenv("RANK", "x", 1);
  EXPECT_THROW(lumen::train::launch_env_from_environment(), lumen::Error);
  ::setenv("RANK", "1", 1);
  ::setenv("MASTER_PORT", "70000", 1);
  EXPECT_THROW(lumen::train::launch_env_from_environment(), lumen::Error);
  ::setenv("MASTER_PORT", "29511", 1);
  ::setenv("LUMEN_DIST_TIMEOUT_S", "0", 1);
  EXPECT_THROW(lumen::train::launch_env_from_environment(), lumen::Error);
  ::setenv("LUMEN_DIST_TIMEOUT_S", "5", 1);
  const auto env = lumen::train::launch_env_from_environment();
  EXPECT_EQ(env.timeout_seconds, 5);
  EXPECT_EQ(env.world_size, 2);
  EXPECT_EQ(env.rank, 1);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.master_port, 29511);
  for (const char* v : {"WORLD_SIZE", "RANK", "MASTER_PORT", "LUMEN_DIST_TIMEOUT_S"}) ::unsetenv(v);
  EXPECT_FALSE(lumen::train::launch_env_from_environment().distributed());
}

// `lumen train` as two processes, launched with torchrun's variables: rank 0
// alone writes the run, the logged loss is the mean over ranks, and the run
// resumes in one process (a different world size).
TEST(DataParallelCli, TwoProcessesTrainAndOneResumes) {
  char tmpl[] = "/tmp/lumen_ddp_XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  std::ofstream(dir + "/vae.yaml") << "task: vae\noutput: " << dir << "/run\nseed: 3\nthreads: 1\nsteps: 4\n"
                                   << "batch_size: 2\ndataset: {type: shapes, width: 32, height: 32}\n"
                                   << "optimizer: {lr: 2.0e-3, warmup_steps: 1, grad_clip: 1.0}\n"
                                   << "checkpoint_every: 1000\nlog_every: 1\n"
                                   << "vae:\n  config:\n    block_out_channels: [8, 16]\n"
                                   << "    down_block_types: [DownEncoderBlock2D, DownEncoderBlock2D]\n"
                                   << "    up_block_types: [UpDecoderBlock2D, UpDecoderBlock2D]\n"
                                   << "    layers_per_block: 1\n    norm_num_groups: 4\n    latent_channels: 4\n";
  const std::string port = std::to_string(29700 + ::getpid() % 1000);
  const std::string train = std::string(LUMEN_BINARY) + " train " + dir + "/vae.yaml --stop-after 2";
  auto rank = [&](int r) {
    return "WORLD_SIZE=2 RANK=" + std::to_string(r) + " MASTER_ADDR=127.0.0.1 MASTER_PORT=" + port + " " + train +
           " > " + dir + "/rank" + std::to_string(r) + ".log 2>&1";
  };
  const std::string both = "(" + rank(1) + ") & pid=$!; " + rank(0) + "; r0=$?; wait $pid; r1=$?; exit $((r0 + r1))";
  ASSERT_EQ(std::system(("bash -c '" + both + "'").c_str()), 0);
  EXPECT_TRUE(std::filesystem::exists(dir + "/run/checkpoints/step-00000002/trainable.safetensors"));
  std::ifstream metrics(dir + "/run/metrics.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(metrics, line)) ++lines;
  EXPECT_EQ(lines, 2) << "one line per step, written by rank 0 only";
  // The second rank said nothing about the run folder.
  std::stringstream rank1;
  rank1 << std::ifstream(dir + "/rank1.log").rdbuf();
  EXPECT_EQ(rank1.str().find("error"), std::string::npos) << rank1.str();

  // A rank whose group never forms gives up at the timeout with a clear error, not a hang.
  const std::string alone = "WORLD_SIZE=2 RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + port +
                            " LUMEN_DIST_TIMEOUT_S=3 " + std::string(LUMEN_BINARY) + " train " + dir +
                            "/vae.yaml --resume > " + dir + "/alone.log 2>&1";
  EXPECT_EQ(WEXITSTATUS(std::system(alone.c_str())), 1);
  std::stringstream alone_log;
  alone_log << std::ifstream(dir + "/alone.log").rdbuf();
  EXPECT_NE(alone_log.str().find("lumen: error: rendezvous at 127.0.0.1:" + port + " (rank 1 of 2)"), std::string::npos)
      << alone_log.str();

  const std::string resume = std::string(LUMEN_BINARY) + " train " + dir + "/vae.yaml --resume > " + dir + "/resume.log 2>&1";
  EXPECT_EQ(std::system(resume.c_str()), 0);
  EXPECT_TRUE(std::filesystem::exists(dir + "/run/final/DONE"));
  std::filesystem::remove_all(dir);
}

}  // namespace

