#pragma once
// The prefill worker's Prometheus metrics (docs/metrics.md), served on its --metrics-port:
// every Prefill call's outcome, prompt tokens, queue wait, compute time and KV send, and the
// scheduler's queue and running jobs set from its load at each scrape. Names carry `prefill`
// where the router has a metric of another meaning (pdserve_request_queue_time_seconds is the
// router's whole wait; pdserve_prefill_queue_time_seconds this worker's queue), so that a sum
// over every target never mixes the two. The worker's identity is the scrape target's
// (instance, job).
//
// Thread-safe: RecordPrefill runs on executor and gRPC threads, RenderText on the metrics
// server's.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/metrics/scrape_registry.h"
#include "prefill_node/prefill_scheduler.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"

namespace pdserve::prefill {

class PrefillMetrics {
 public:
  // `scheduler` outlives this: its load is read at each scrape.
  explicit PrefillMetrics(const PrefillScheduler& scheduler);

  // One Prefill call ended with `outcome` (its status when it failed); `n_prompt_tokens` is its
  // request's prompt length. Takes no lock.
  void RecordPrefill(int64_t n_prompt_tokens, const absl::StatusOr<PrefillOutcome>& outcome);

  std::string RenderText() const { return metrics_.RenderText(); }

 private:
  metrics::ScrapeRegistry metrics_;
  prometheus::Family<prometheus::Counter>& requests_;
  // requests_'s children, made up front (Family::Add locks).
  prometheus::Counter& succeeded_;
  prometheus::Counter& failed_;
  prometheus::Counter& cancelled_;
  prometheus::Counter& prompt_tokens_;
  prometheus::Histogram& queue_seconds_;
  prometheus::Histogram& prefill_seconds_;
  prometheus::Histogram& kv_send_seconds_;
  prometheus::Histogram& kv_send_bytes_;
};

}  // namespace pdserve::prefill
