#include "bench/transfer/step_clock.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace pdserve::bench {

using decode::SequenceEvent;

StepClock::StepClock(decode::DecodeScheduler& scheduler, std::string request_id)
    : scheduler_(scheduler), request_id_(std::move(request_id)), thread_([this] { Loop(); }) {}

StepClock::~StepClock() {
  stop_ = true;
  thread_.join();
}

absl::StatusOr<absl::Time> StepClock::WaitSteps(int64_t n) {
  absl::MutexLock lock(&mu_);
  const size_t target = steps_.size() + n;
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return steps_.size() >= target || !status_.ok();
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(120))) {
    return absl::DeadlineExceededError(
        absl::StrCat(request_id_, ": no decode step for 120 s"));
  }
  if (!status_.ok()) return status_;
  return steps_.back().end;
}

int64_t StepClock::steps_since(absl::Time t) const {
  absl::MutexLock lock(&mu_);
  return std::count_if(steps_.begin(), steps_.end(), [&](const Step& s) { return s.start >= t; });
}

std::vector<Step> StepClock::steps() const {
  absl::MutexLock lock(&mu_);
  return steps_;
}

absl::Status StepClock::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

void StepClock::Loop() {
  absl::Time last = absl::InfiniteFuture();  // when the previous token was seen
  while (!stop_) {
    std::vector<SequenceEvent> events;
    absl::Status s =
        scheduler_.WaitEvents(request_id_, absl::Now() + absl::Milliseconds(100), &events);
    const absl::Time now = absl::Now();
    int64_t n_tokens = 0;
    for (const SequenceEvent& e : events) {
      if (e.kind == SequenceEvent::Kind::kToken) {
        ++n_tokens;
      } else if (s.ok()) {
        s = e.kind == SequenceEvent::Kind::kError
                ? e.error
                : absl::FailedPreconditionError(absl::StrCat(
                      "running sequence ", request_id_, " finished (", e.finish_reason,
                      ") during the measurement: lower --reps or --window-steps"));
      }
    }
    absl::MutexLock lock(&mu_);
    if (n_tokens > 0 && last != absl::InfiniteFuture()) {
      // Several tokens at one wake-up: the watcher was late; spread the interval over them.
      const absl::Duration each = (now - last) / n_tokens;
      for (int64_t i = 0; i < n_tokens; ++i) {
        steps_.push_back({last + each * i, last + each * (i + 1)});
      }
    }
    if (n_tokens > 0) last = now;
    if (!s.ok()) {
      status_ = s;
      return;
    }
  }
}

}  // namespace pdserve::bench
