// store_worker.cc - see store_worker.h.
#include "server/store_worker.h"

#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace crfs::server {

Result<std::unique_ptr<StoreWorker>> StoreWorker::Start() {
  const int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return Status(Code::kIo, std::string("eventfd: ") + strerror(errno));
  std::unique_ptr<StoreWorker> w(new StoreWorker(fd));
  w->thread_ = std::thread(&StoreWorker::Loop, w.get());
  return w;
}

StoreWorker::StoreWorker(int event_fd) : event_fd_(event_fd) {}

StoreWorker::~StoreWorker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  close(event_fd_);
}

void StoreWorker::Loop() {
  // Signals are the event loop's (SIGTERM wakes its epoll_wait): never here.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || job_; });
    if (!job_) return;  // stopping, nothing left to run
    std::function<void()> job = std::move(job_);
    job_ = nullptr;
    lock.unlock();
    job();
    lock.lock();
    finished_ = true;
    cv_.notify_all();
    const uint64_t one = 1;
    (void)!write(event_fd_, &one, sizeof(one));  // wakes the event loop; counter overflow is impossible
  }
}

void StoreWorker::Submit(std::function<void()> job, std::function<void()> done) {
  busy_ = true;
  done_ = std::move(done);
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = std::move(job);
    finished_ = false;
  }
  cv_.notify_all();
}

bool StoreWorker::TakeCompletion() {
  uint64_t count = 0;
  (void)!read(event_fd_, &count, sizeof(count));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!busy_ || !finished_) return false;
    finished_ = false;
  }
  busy_ = false;
  std::function<void()> done = std::move(done_);
  done_ = nullptr;
  if (done) done();
  // What waited for the store, in order; a callback may submit a new job,
  // and whatever comes after it waits for that one.
  std::vector<std::function<void()>> after = std::move(after_);
  after_.clear();
  for (size_t i = 0; i < after.size(); i++) {
    if (busy_) {
      after_.insert(after_.end(), after.begin() + static_cast<std::ptrdiff_t>(i), after.end());
      break;
    }
    after[i]();
  }
  return true;
}

void StoreWorker::AfterJob(std::function<void()> fn) {
  if (!busy_) return fn();
  after_.push_back(std::move(fn));
}

void StoreWorker::Drain() {
  if (!busy_) return;
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return finished_; });
  }
  (void)TakeCompletion();
}

}  // namespace crfs::server
