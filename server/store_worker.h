// store_worker.h - runs one tenant's transactions off the event loop.
//
// A transaction can take a second (an rm -r of 20,000 files); run in the
// event loop it would stall every session of every tenant for that long.
// Each tenant store gets a StoreWorker: a thread that runs one job at a
// time. While a job runs the store belongs to the worker, and the event loop
// must not touch it: busy() is true, the tenant's sessions hold the frame
// they would dispatch next (session.h), the durability sweep skips it, and
// anything else that needs the store waits in AfterJob(). Other tenants'
// sessions go on.
//
// Threads: Submit, busy, TakeCompletion, AfterJob and Drain are called from
// the event loop thread only; the job runs on the worker thread. The
// completion is handed over under the mutex, so whatever the job wrote is
// visible to the `done` callback that runs on the event loop. event_fd()
// becomes readable when a job has finished; the loop then calls
// TakeCompletion().
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "proto/status.h"

namespace crfs::server {

class StoreWorker {
 public:
  static Result<std::unique_ptr<StoreWorker>> Start();
  // Waits for a running job, then stops the thread. Completions not taken
  // are dropped (their `done` never runs).
  ~StoreWorker();
  StoreWorker(const StoreWorker&) = delete;
  StoreWorker& operator=(const StoreWorker&) = delete;

  int event_fd() const { return event_fd_; }
  // A job was submitted and its completion not yet taken.
  bool busy() const { return busy_; }
  // Runs `job` on the worker thread, then `done` on the event loop (from
  // TakeCompletion). Only when !busy().
  void Submit(std::function<void()> job, std::function<void()> done);
  // If the job finished: runs its `done`, then what waited in AfterJob, and
  // returns true (the store is the event loop's again).
  bool TakeCompletion();
  // Runs `fn` now if not busy, else once the running job's completion is taken.
  void AfterJob(std::function<void()> fn);
  // Waits until the running job (if any) has finished and takes its
  // completion: for shutting down with every callback run.
  void Drain();

 private:
  explicit StoreWorker(int event_fd);
  void Loop();

  const int event_fd_;
  bool busy_ = false;  // event loop thread only
  std::function<void()> done_;
  std::vector<std::function<void()>> after_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> job_;  // guarded by mu_
  bool finished_ = false;      // guarded by mu_
  bool stop_ = false;          // guarded by mu_
  std::thread thread_;
};

}  // namespace crfs::server
