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
#include <functional>
#include <thread>

#include "distributed.h"
#include "error.h"
#include "io/safetensors_torch.h"

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

// Runs fn(rank, env) for two ranks as threads; returns each rank's error ("" if none).
std::vector<std::string> two_ranks(const std::function<void(int, const LaunchEnv&)>& fn) {
  static int calls = 0;  // a fresh port for each group
  const int port = 28000 + static_cast<int>(::getpid() % 200) * 5 + calls++ % 5;
  std::vector<std::string> errors(2);
  auto run = [&](int rank) {
    try {
      LaunchEnv env;
      env.world_size = 2;
      env.rank = rank;
      env.master_port = port;
      env.timeout_seconds = 20;
      fn(rank, env);
    } catch (const std::exception& e) {
      errors[static_cast<size_t>(rank)] = e.what();
    }
  };
  std::thread r0(run, 0), r1(run, 1);
  r0.join();
  r1.join();
  return errors;
}

// Several backward passes per step (gradient accumulation): only the last
// syncs, and the bucket carries the sum of all of them, also for a parameter
// the syncing pass did not reach. Without overlap nothing starts in backward.
TEST(DataParallel, AccumulatedPassesAndNoOverlap) {
  torch::manual_seed(5);
  const auto x = torch::randn({8, 3, 6, 6});
  Net reference;
  // Rank r's shards are x[4r..4r+1] (uses extra) and x[4r+2..4r+3] (does not); each weighs 1/2.
  auto total = torch::zeros({});
  for (int rank = 0; rank < 2; ++rank)
    total = total + (reference.loss(x.narrow(0, 4 * rank, 2), true) + reference.loss(x.narrow(0, 4 * rank + 2, 2), false)) / 4;
  total.backward();
  for (bool overlap : {true, false}) {
    std::vector<std::vector<torch::Tensor>> grads(2);
    std::vector<size_t> overlapped(2);
    const auto errors = two_ranks([&](int rank, LaunchEnv env) {
      env.overlap = overlap;
      Net net;
      {
        torch::NoGradGuard no_grad;
        auto ours = net.parameters(), theirs = reference.parameters();
        for (size_t i = 0; i < ours.size(); ++i) ours[i].copy_(theirs[i]);
      }
      DataParallel dp(env, net.parameters(), /*bucket_bytes=*/100);
      dp.set_sync(false);
      (net.loss(x.narrow(0, 4 * rank, 2), true) / 2).backward();
      dp.set_sync(true);
      dp.prepare_backward();
      (net.loss(x.narrow(0, 4 * rank + 2, 2), false) / 2).backward();
      dp.finish_backward();
      overlapped[static_cast<size_t>(rank)] = dp.launched_during_backward();
      EXPECT_GE(dp.last_wait_seconds(), 0.0);
      for (auto& p : net.parameters()) grads[static_cast<size_t>(rank)].push_back(p.grad().clone());
    });
    ASSERT_EQ(errors[0], "");
    ASSERT_EQ(errors[1], "");
    if (!overlap) EXPECT_EQ(overlapped[0] + overlapped[1], 0u);
    const auto expected = reference.parameters();
    for (int rank = 0; rank < 2; ++rank)
      for (size_t i = 0; i < expected.size(); ++i)
        EXPECT_TRUE(torch::allclose(grads[rank][i], expected[i].grad(), 1e-5, 1e-6))
            << "overlap " << overlap << " rank " << rank << " param " << i;
  }
}

// The end-of-run check: equal weights pass, one differing bit stops every rank.
TEST(DataParallel, RanksWithDifferentWeightsAllStop) {
  for (bool differ : {false, true}) {
    const auto errors = two_ranks([&](int rank, const LaunchEnv& env) {
      auto w = torch::linspace(0, 1, 10);
      if (differ && rank == 1) w[3] = std::nextafter(w[3].item<float>(), 2.0f);
      w.set_requires_grad(true);
      DataParallel dp(env, {w});
      dp.check_identical({w});
    });
    for (int rank = 0; rank < 2; ++rank) {
      if (differ)
        EXPECT_NE(errors[rank].find("the weights of 1 rank(s) differ from rank 0's"), std::string::npos) << errors[rank];
      else
        EXPECT_EQ(errors[rank], "");
    }
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
  ::setenv("LUMEN_DIST_OVERLAP", "2", 1);
  EXPECT_THROW(lumen::train::launch_env_from_environment(), lumen::Error);
  ::setenv("LUMEN_DIST_OVERLAP", "0", 1);
  ::setenv("LUMEN_DIST_BUCKET_MB", "4", 1);
  EXPECT_FALSE(lumen::train::launch_env_from_environment().overlap);
  EXPECT_EQ(lumen::train::launch_env_from_environment().bucket_mb, 4);
  ::setenv("LUMEN_DIST_BUCKET_MB", "0", 1);
  EXPECT_THROW(lumen::train::launch_env_from_environment(), lumen::Error);
  ::unsetenv("LUMEN_DIST_OVERLAP");
  ::unsetenv("LUMEN_DIST_BUCKET_MB");
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
// A tiny VAE recipe writing to `output`, with `extra` lines appended.
void write_vae_recipe(const std::string& path, const std::string& output, const std::string& extra = "") {
  std::ofstream(path) << "task: vae\noutput: " << output << "\nseed: 3\nthreads: 1\nsteps: 4\n"
                      << "batch_size: 2\ndataset: {type: shapes, width: 32, height: 32}\n"
                      << "optimizer: {lr: 2.0e-3, warmup_steps: 1, grad_clip: 1.0}\n"
                      << "checkpoint_every: 1000\nlog_every: 1\n"
                      << "vae:\n  config:\n    block_out_channels: [8, 16]\n"
                      << "    down_block_types: [DownEncoderBlock2D, DownEncoderBlock2D]\n"
                      << "    up_block_types: [UpDecoderBlock2D, UpDecoderBlock2D]\n"
                      << "    layers_per_block: 1\n    norm_num_groups: 4\n    latent_channels: 4\n"
                      << extra;
}

// `lumen train ARGS` as ranks 0 and 1 on loopback, each logging to DIR/rankN.log;
// the bash command's exit status is the sum of theirs.
std::string two_process_command(const std::string& dir, const std::string& port, const std::string& args) {
  auto rank = [&](int r) {
    return "WORLD_SIZE=2 RANK=" + std::to_string(r) + " MASTER_ADDR=127.0.0.1 MASTER_PORT=" + port + " " +
           LUMEN_BINARY + " train " + args + " > " + dir + "/rank" + std::to_string(r) + ".log 2>&1";
  };
  return "bash -c '(" + rank(1) + ") & pid=$!; " + rank(0) + "; r0=$?; wait $pid; r1=$?; exit $((r0 + r1))'";
}

TEST(DataParallelCli, TwoProcessesTrainAndOneResumes) {
  char tmpl[] = "/tmp/lumen_ddp_XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  write_vae_recipe(dir + "/vae.yaml", dir + "/run");
  const std::string port = std::to_string(29700 + ::getpid() % 1000);
  ASSERT_EQ(std::system(two_process_command(dir, port, dir + "/vae.yaml --stop-after 2").c_str()), 0);
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


namespace {

// With `data_shards: 2` a step is the same two batches whatever the number of
// processes: 2 processes × 1 shard each must train the same weights as 1
// process accumulating both (tolerance 1e-6; on this machine they are
// bit-identical, halving being exact), and every rank ends equal (the
// trainer's end-of-run check would fail the run otherwise).
TEST(DataParallelCli, TwoProcessesMatchOneAccumulatingTheSameShards) {
  char tmpl[] = "/tmp/lumen_ddp_XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  write_vae_recipe(dir + "/one.yaml", dir + "/one", "data_shards: 2\n");
  write_vae_recipe(dir + "/two.yaml", dir + "/two", "data_shards: 2\n");
  write_vae_recipe(dir + "/odd.yaml", dir + "/odd", "data_shards: 3\n");
  ASSERT_EQ(std::system((std::string(LUMEN_BINARY) + " train " + dir + "/one.yaml > " + dir + "/one.log 2>&1").c_str()), 0);
  const std::string port = std::to_string(28700 + ::getpid() % 1000);
  ASSERT_EQ(std::system(two_process_command(dir, port, dir + "/two.yaml").c_str()), 0);
  const auto one = lumen::load_safetensors(dir + "/one/final/vae/diffusion_pytorch_model.safetensors");
  const auto two = lumen::load_safetensors(dir + "/two/final/vae/diffusion_pytorch_model.safetensors");
  ASSERT_EQ(one.size(), two.size());
  for (const auto& [name, w] : one) {
    ASSERT_TRUE(two.count(name)) << name;
    EXPECT_LE((w - two.at(name)).abs().max().item<float>(), 1e-6f) << name;
  }
  // The metrics: the same losses, and the communication timings.
  std::ifstream m1(dir + "/one/metrics.jsonl"), m2(dir + "/two/metrics.jsonl");
  std::string l1, l2;
  int lines = 0;
  while (std::getline(m1, l1) && std::getline(m2, l2)) {
    ++lines;
    const auto loss = [](const std::string& line) { return std::stod(line.substr(line.find("\"loss\":") + 7)); };
    EXPECT_NEAR(loss(l1), loss(l2), 1e-6) << l1 << "\n" << l2;
    EXPECT_NE(l2.find("\"comm_wait_s\""), std::string::npos) << l2;
    EXPECT_NE(l2.find("\"step_s\""), std::string::npos) << l2;
  }
  EXPECT_EQ(lines, 4);
  // Shards that do not divide among the processes: a clear error before anything is written.
  EXPECT_NE(std::system(two_process_command(dir, std::to_string(std::stoi(port) + 1), dir + "/odd.yaml").c_str()), 0);
  std::stringstream odd;
  odd << std::ifstream(dir + "/rank0.log").rdbuf();
  EXPECT_NE(odd.str().find("data_shards: 3 is not a multiple of WORLD_SIZE=2"), std::string::npos) << odd.str();
  EXPECT_FALSE(std::filesystem::exists(dir + "/odd"));
  std::filesystem::remove_all(dir);
}

// A rank killed mid-run (SIGKILL, no goodbye): the other stops with a clear
// error within LUMEN_DIST_TIMEOUT_S (10 s here; Gloo sees the closed
// connection at once), and the last checkpoint resumes.
TEST(DataParallelCli, AKilledRankStopsTheOthers) {
  char tmpl[] = "/tmp/lumen_ddp_XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  write_vae_recipe(dir + "/vae.yaml", dir + "/run");
  {  // long enough to be killed in the middle, a checkpoint every 2 steps
    std::string text;
    std::stringstream in;
    in << std::ifstream(dir + "/vae.yaml").rdbuf();
    text = in.str();
    text.replace(text.find("steps: 4"), 8, "steps: 100000");
    text.replace(text.find("checkpoint_every: 1000"), 22, "checkpoint_every: 2");
    std::ofstream(dir + "/vae.yaml") << text;
  }
  const std::string port = std::to_string(28800 + ::getpid() % 1000);
  const std::string env = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + port + " LUMEN_DIST_TIMEOUT_S=10 ";
  const std::string train = std::string(LUMEN_BINARY) + " train " + dir + "/vae.yaml";
  const std::string script =
      "(RANK=1 " + env + "exec " + train + " > " + dir + "/rank1.log 2>&1) & p1=$!; "
      "(RANK=0 " + env + "exec " + train + " > " + dir + "/rank0.log 2>&1) & p0=$!; "
      "for i in $(seq 600); do ls " + dir + "/run/checkpoints 2>/dev/null | grep -q step && break; sleep 0.1; done; "
      "kill -9 $p1; start=$(date +%s); "
      "for i in $(seq 300); do kill -0 $p0 2>/dev/null || break; sleep 0.1; done; "
      "if kill -0 $p0 2>/dev/null; then kill -9 $p0; exit 99; fi; "
      "wait $p0; r0=$?; echo $(( $(date +%s) - start )) > " + dir + "/seconds; exit $r0";
  std::ofstream(dir + "/kill.sh") << script;
  const int status = std::system(("bash " + dir + "/kill.sh").c_str());
  ASSERT_NE(WEXITSTATUS(status), 99) << "rank 0 still ran 30 s after rank 1 was killed";
  EXPECT_EQ(WEXITSTATUS(status), 1);
  int seconds = 0;
  std::ifstream(dir + "/seconds") >> seconds;
  EXPECT_LE(seconds, 12);
  std::stringstream log;
  log << std::ifstream(dir + "/rank0.log").rdbuf();
  EXPECT_NE(log.str().find("lumen: error: data-parallel training, rank 0 of 2:"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("the last checkpoint is kept"), std::string::npos) << log.str();
  // The last checkpoint is whole: one process resumes from it.
  const std::string resume = train + " --resume --stop-after 1 > " + dir + "/resume.log 2>&1";
  EXPECT_EQ(std::system(resume.c_str()), 0);
  std::stringstream resumed;
  resumed << std::ifstream(dir + "/resume.log").rdbuf();
  EXPECT_NE(resumed.str().find("resuming " + dir + "/run from step"), std::string::npos) << resumed.str();
  std::filesystem::remove_all(dir);
}

}  // namespace
