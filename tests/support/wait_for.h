#pragma once
// Polling for a condition that another thread makes true: tests wait on what they assert, never
// on a fixed sleep.

#include <chrono>
#include <thread>

namespace pdserve::test_support {

// Polls `condition` every 2 ms until it holds or `timeout` has passed; returns its last value.
template <typename Condition>
bool WaitFor(Condition condition,
             std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return condition();
}

}  // namespace pdserve::test_support
