#pragma once
// The decode worker's Prometheus metrics (docs/metrics.md), served on its --metrics-port: decode
// steps and the tokens they sample, sequences by how they ended (this is the scheduler's
// SchedulerObserver), and the KV pool and sequences set from the scheduler's load at each
// scrape. The worker's identity is the scrape target's (instance, job); the router exports its
// own view of each decode worker's blocks with a `worker` label.
//
// Thread-safe: the observer methods run on the scheduler's threads, RenderText on the metrics
// server's.

#include <cstdint>
#include <string>

#include "common/metrics/scrape_registry.h"
#include "decode_node/decode_scheduler.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"

namespace pdserve::decode {

class DecodeMetrics final : public SchedulerObserver {
 public:
  DecodeMetrics();

  // Adds the gauges read from `scheduler` at each scrape (Load); it outlives this. Once.
  void TrackScheduler(const DecodeScheduler& scheduler);

  std::string RenderText() const { return metrics_.RenderText(); }

  void OnStep(absl::Duration forward_time, int64_t n_tokens) override;
  void OnSequenceEnd(SequenceState state, request::FinishReason reason) override;

 private:
  metrics::ScrapeRegistry metrics_;
  prometheus::Histogram& step_seconds_;
  prometheus::Counter& tokens_;
  prometheus::Family<prometheus::Counter>& sequences_;
  // sequences_'s children that OnSequenceEnd uses, made up front (Family::Add locks).
  prometheus::Counter& finished_length_;
  prometheus::Counter& finished_eos_;
  prometheus::Counter& cancelled_;
  prometheus::Counter& failed_;
};

}  // namespace pdserve::decode
