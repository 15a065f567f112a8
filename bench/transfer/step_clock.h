#pragma once
// The decode step clock of bench/transfer/decode_interference: a thread that waits on one running
// sequence's events (DecodeScheduler::WaitEvents) and timestamps its tokens, from outside the
// scheduler. Consecutive tokens of a sequence in the running batch are one decode step apart.

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "decode_node/decode_scheduler.h"

namespace pdserve::bench {

// A step: the interval between two consecutive tokens of the watched sequence.
struct Step {
  absl::Time start;
  absl::Time end;
  double ms() const { return absl::ToDoubleMilliseconds(end - start); }
};

// Watches `request_id` (running in `scheduler`, which outlives the clock) from its own thread,
// started by the constructor and joined by the destructor. Thread-safe.
class StepClock {
 public:
  StepClock(decode::DecodeScheduler& scheduler, std::string request_id);
  ~StepClock();
  StepClock(const StepClock&) = delete;
  StepClock& operator=(const StepClock&) = delete;

  // Waits until `n` more steps than now have been seen; when the last of them ended.
  // The sequence's error, or FailedPrecondition when it finished, once it has ended.
  absl::StatusOr<absl::Time> WaitSteps(int64_t n);
  // Steps that started at or after `t`.
  int64_t steps_since(absl::Time t) const;
  std::vector<Step> steps() const;
  absl::Status status() const;  // OK while the sequence runs

 private:
  void Loop();

  decode::DecodeScheduler& scheduler_;
  const std::string request_id_;
  std::atomic<bool> stop_{false};
  mutable absl::Mutex mu_;
  std::vector<Step> steps_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;  // last: starts once the rest exists
};

}  // namespace pdserve::bench
