#include "decode_node/decode_metrics.h"

#include "common/metrics/buckets.h"
#include "prometheus/gauge.h"

namespace pdserve::decode {
namespace {

constexpr char kNoFinishReason[] = "none";

prometheus::Labels SequenceLabels(const char* outcome, const char* finish_reason) {
  return {{"outcome", outcome}, {"finish_reason", finish_reason}};
}

}  // namespace

// Step buckets 0.1 ms..5 s in the 1-2.5-5 series (router/router_metrics.cc says why): a step of
// stories260K on a CPU to a large batch of a large model on a slow device.
DecodeMetrics::DecodeMetrics()
    : step_seconds_(prometheus::BuildHistogram()
                        .Name("pdserve_decode_step_seconds")
                        .Help("Forward pass of one decode step (the whole batch, one token per "
                              "sequence).")
                        .Register(metrics_.registry())
                        .Add({}, metrics::DecadeBuckets(0.0001, 5))),
      tokens_(prometheus::BuildCounter()
                  .Name("pdserve_decode_tokens_total")
                  .Help("Tokens decode steps sampled (an end token included; each sequence's "
                        "first token comes from prefill and is not counted).")
                  .Register(metrics_.registry())
                  .Add({})),
      sequences_(prometheus::BuildCounter()
                     .Name("pdserve_decode_sequences_total")
                     .Help("Sequences that held a reservation here and ended, by outcome "
                           "(succeeded; cancelled: the caller went away, its deadline passed, "
                           "its stream stalled or the worker stopped; failed: bad KV or an "
                           "internal error) and finish reason (length, eos; none unless "
                           "succeeded).")
                     .Register(metrics_.registry())),
      finished_length_(sequences_.Add(SequenceLabels(
          "succeeded", request::FinishReasonName(request::FinishReason::kLength)))),
      finished_eos_(sequences_.Add(
          SequenceLabels("succeeded", request::FinishReasonName(request::FinishReason::kEos)))),
      cancelled_(sequences_.Add(SequenceLabels("cancelled", kNoFinishReason))),
      failed_(sequences_.Add(SequenceLabels("failed", kNoFinishReason))) {}

void DecodeMetrics::TrackScheduler(const DecodeScheduler& scheduler) {
  const auto gauge = [this](const char* name, const char* help) -> prometheus::Gauge& {
    return prometheus::BuildGauge().Name(name).Help(help).Register(metrics_.registry()).Add({});
  };
  prometheus::Gauge& free =
      gauge("pdserve_kv_blocks_free", "KV blocks free in this worker's pool.");
  prometheus::Gauge& used = gauge(
      "pdserve_kv_blocks_used",
      "KV blocks not free (reserved by sequences, or quarantined after an unfinished handoff).");
  prometheus::Gauge& total = gauge("pdserve_kv_blocks_total", "KV blocks in this worker's pool.");
  prometheus::Gauge& running =
      gauge("pdserve_sequences_running",
            "Sequences holding a reservation (receiving KV, ready, decoding or stalled).");
  prometheus::Gauge& waiting =
      gauge("pdserve_sequences_waiting", "Reservations waiting for free KV blocks.");
  metrics_.AddRefresher([&scheduler, &free, &used, &total, &running, &waiting] {
    const SchedulerLoad load = scheduler.Load();
    free.Set(static_cast<double>(load.free_kv_blocks));
    used.Set(static_cast<double>(load.total_kv_blocks - load.free_kv_blocks));
    total.Set(static_cast<double>(load.total_kv_blocks));
    running.Set(static_cast<double>(load.active_sequences));
    waiting.Set(static_cast<double>(load.queue_length));
  });
}

void DecodeMetrics::OnStep(absl::Duration forward_time, int64_t n_tokens) {
  step_seconds_.Observe(absl::ToDoubleSeconds(forward_time));
  tokens_.Increment(static_cast<double>(n_tokens));
}

void DecodeMetrics::OnSequenceEnd(SequenceState state, request::FinishReason reason) {
  switch (state) {
    case SequenceState::kFinished:
      if (reason == request::FinishReason::kLength) {
        finished_length_.Increment();
      } else if (reason == request::FinishReason::kEos) {
        finished_eos_.Increment();
      } else {  // a worker never sees "stop"; counted as given all the same
        sequences_.Add(SequenceLabels("succeeded", request::FinishReasonName(reason))).Increment();
      }
      return;
    case SequenceState::kCancelled:
      cancelled_.Increment();
      return;
    default:
      failed_.Increment();
      return;
  }
}

}  // namespace pdserve::decode
