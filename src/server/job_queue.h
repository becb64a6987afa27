// A bounded queue of jobs run one at a time on one worker thread: the
// server's requests wait here for the one model. A full queue refuses at once
// (the server answers 429); an accepted job always runs and its caller is
// always answered, also when the queue shuts down (the job then runs
// cancelled, and says so).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace lumen::server {

// What /sdapi/v1/progress shows of the running job.
struct JobProgress {
  std::string job;              // "txt2img", "img2img", "load model"; "" when nothing runs
  double fraction = 0;          // of the whole job, 0..1
  double elapsed_seconds = 0;
  int job_no = 0, job_count = 0;  // the batch iteration running, of how many
  int step = 0, steps = 0;        // the sampler step within it
  bool interrupted = false;
  size_t queued = 0;            // jobs waiting behind it
};

// Handed to a running job: it reports progress and asks whether to stop.
class JobControl {
 public:
  virtual ~JobControl() = default;
  virtual bool cancelled() const = 0;
  virtual bool shutting_down() const = 0;
  // Iteration `job_no` of `job_count` is at sampler step `step` of `steps`.
  virtual void report(int job_no, int job_count, int step, int steps) = 0;
};

class JobQueue {
 public:
  explicit JobQueue(size_t capacity);  // jobs waiting, besides the running one
  ~JobQueue();                         // shutdown(), then joins the worker
  JobQueue(const JobQueue&) = delete;
  JobQueue& operator=(const JobQueue&) = delete;

  enum class Admission { Ran, Full, Closed };
  using Work = std::function<void(JobControl&)>;
  // Queues `work` and blocks until it has run. Full or Closed: refused at once, not run.
  Admission run(const std::string& kind, Work work);

  void interrupt();  // cancels the running job (queued ones still run)
  // Refuses new jobs and cancels the running and queued ones, which still run
  // (cancelled) so every caller gets its answer. Idempotent.
  void shutdown();
  JobProgress progress() const;

 private:
  struct Job;
  class Control;
  void work_loop();

  const size_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> waiting_;
  std::shared_ptr<Job> running_;
  bool closed_ = false;
  std::thread worker_;
};

}  // namespace lumen::server
