#include "server/job_queue.h"

#include <chrono>
#include <future>

namespace lumen::server {

struct JobQueue::Job {
  std::string kind;
  Work work;
  std::promise<void> done;
  std::atomic<bool> cancel{false};
  std::chrono::steady_clock::time_point started;
  int job_no = 0, job_count = 1, step = 0, steps = 0;  // guarded by the queue's mutex
};

class JobQueue::Control : public JobControl {
 public:
  Control(JobQueue& queue, Job& job) : queue_(queue), job_(job) {}
  bool cancelled() const override { return job_.cancel.load(); }
  bool shutting_down() const override {
    std::lock_guard<std::mutex> lock(queue_.mutex_);
    return queue_.closed_;
  }
  void report(int job_no, int job_count, int step, int steps) override {
    std::lock_guard<std::mutex> lock(queue_.mutex_);
    job_.job_no = job_no;
    job_.job_count = job_count;
    job_.step = step;
    job_.steps = steps;
  }

 private:
  JobQueue& queue_;
  Job& job_;
};

JobQueue::JobQueue(size_t capacity) : capacity_(capacity), worker_([this] { work_loop(); }) {}

JobQueue::~JobQueue() {
  shutdown();
  worker_.join();
}

JobQueue::Admission JobQueue::run(const std::string& kind, Work work) {
  auto job = std::make_shared<Job>();
  job->kind = kind;
  job->work = std::move(work);
  std::future<void> done = job->done.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) return Admission::Closed;
    if (waiting_.size() + (running_ ? 1 : 0) > capacity_) return Admission::Full;
    waiting_.push_back(job);
  }
  wake_.notify_one();
  done.wait();
  return Admission::Ran;
}

void JobQueue::work_loop() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return closed_ || !waiting_.empty(); });
      if (waiting_.empty()) return;  // closed and drained
      job = waiting_.front();
      waiting_.pop_front();
      if (closed_) job->cancel = true;
      job->started = std::chrono::steady_clock::now();
      running_ = job;
    }
    Control control(*this, *job);
    try {
      job->work(control);
    } catch (...) {
      // The work answers its own errors; nothing may stop the worker.
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      running_.reset();
    }
    job->done.set_value();
  }
}

void JobQueue::interrupt() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (running_) running_->cancel = true;
}

void JobQueue::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    if (running_) running_->cancel = true;
    for (auto& job : waiting_) job->cancel = true;
  }
  wake_.notify_all();
}

JobProgress JobQueue::progress() const {
  std::lock_guard<std::mutex> lock(mutex_);
  JobProgress p;
  p.queued = waiting_.size();
  if (!running_) return p;
  const Job& job = *running_;
  p.job = job.kind;
  p.job_no = job.job_no;
  p.job_count = job.job_count;
  p.step = job.step;
  p.steps = job.steps;
  p.interrupted = job.cancel.load();
  p.elapsed_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - job.started).count();
  if (job.job_count > 0 && job.steps > 0)
    p.fraction = (job.job_no + static_cast<double>(job.step) / job.steps) / job.job_count;
  return p;
}

}  // namespace lumen::server
