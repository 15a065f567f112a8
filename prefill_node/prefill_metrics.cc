#include "prefill_node/prefill_metrics.h"

#include "common/metrics/buckets.h"
#include "prometheus/gauge.h"

namespace pdserve::prefill {

// Buckets as the router's (router/router_metrics.cc says why): the 1-2.5-5 series over the
// span each duration takes, from stories260K on a CPU to a long prompt of a large model.
PrefillMetrics::PrefillMetrics(const PrefillScheduler& scheduler)
    : requests_(prometheus::BuildCounter()
                    .Name("pdserve_prefill_requests_total")
                    .Help("Prefill calls this worker finished, by outcome (succeeded, failed, "
                          "cancelled).")
                    .Register(metrics_.registry())),
      succeeded_(requests_.Add({{"outcome", "succeeded"}})),
      failed_(requests_.Add({{"outcome", "failed"}})),
      cancelled_(requests_.Add({{"outcome", "cancelled"}})),
      prompt_tokens_(prometheus::BuildCounter()
                         .Name("pdserve_prefill_prompt_tokens_total")
                         .Help("Prompt tokens of succeeded prefills (positions run through the "
                               "model; a failover's re-run counts again).")
                         .Register(metrics_.registry())
                         .Add({})),
      queue_seconds_(prometheus::BuildHistogram()
                         .Name("pdserve_prefill_queue_time_seconds")
                         .Help("Wait in this worker's queue before an executor took the prompt, "
                               "succeeded prefills.")
                         .Register(metrics_.registry())
                         .Add({}, metrics::DecadeBuckets(0.0005, 50))),
      prefill_seconds_(prometheus::BuildHistogram()
                           .Name("pdserve_prefill_seconds")
                           .Help("Time in the forward pass for a prompt (all its chunks), "
                                 "succeeded prefills.")
                           .Register(metrics_.registry())
                           .Add({}, metrics::DecadeBuckets(0.001, 50))),
      kv_send_seconds_(prometheus::BuildHistogram()
                           .Name("pdserve_prefill_kv_send_seconds")
                           .Help("KV handoff to the decode worker: first block handed over to "
                                 "completion acknowledged, succeeded prefills.")
                           .Register(metrics_.registry())
                           .Add({}, metrics::DecadeBuckets(0.0001, 10))),
      kv_send_bytes_(prometheus::BuildHistogram()
                         .Name("pdserve_prefill_kv_send_bytes")
                         .Help("Bytes of each KV handoff, succeeded prefills.")
                         .Register(metrics_.registry())
                         .Add({}, metrics::ExponentialBuckets(1024, 4, 12))) {
  prometheus::Gauge& queued = prometheus::BuildGauge()
                                  .Name("pdserve_prefill_requests_queued")
                                  .Help("Prompts waiting in this worker's queue for an executor.")
                                  .Register(metrics_.registry())
                                  .Add({});
  prometheus::Gauge& running =
      prometheus::BuildGauge()
          .Name("pdserve_prefill_requests_running")
          .Help("Prompts an executor is running (computing or sending KV).")
          .Register(metrics_.registry())
          .Add({});
  metrics_.AddRefresher([&scheduler, &queued, &running] {
    const auto load = scheduler.load();
    queued.Set(static_cast<double>(load.queue_length));
    running.Set(static_cast<double>(load.active_sequences));
  });
}

void PrefillMetrics::RecordPrefill(int64_t n_prompt_tokens,
                                   const absl::StatusOr<PrefillOutcome>& outcome) {
  const absl::Status& status = outcome.status();
  if (!status.ok()) {
    // cancelled: the caller went away or its deadline passed; failed: anything else (bad
    // input, a full queue, a failed KV send).
    (absl::IsCancelled(status) || absl::IsDeadlineExceeded(status) ? cancelled_ : failed_)
        .Increment();
    return;
  }
  succeeded_.Increment();
  prompt_tokens_.Increment(static_cast<double>(n_prompt_tokens));
  queue_seconds_.Observe(outcome->queue_seconds);
  prefill_seconds_.Observe(outcome->prefill_seconds);
  kv_send_seconds_.Observe(outcome->transfer.seconds);
  kv_send_bytes_.Observe(static_cast<double>(outcome->transfer.bytes));
}

}  // namespace pdserve::prefill
