#include "router/router_metrics.h"

#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/metrics/buckets.h"

namespace pdserve::router {
namespace {

// finish_reason of a request that did not succeed.
constexpr char kNoFinishReason[] = "none";

prometheus::Labels RequestLabels(const char* outcome, const char* finish_reason) {
  return {{"outcome", outcome}, {"finish_reason", finish_reason}};
}

// The router's view of its workers, set at each scrape from one WorkerRegistry::Snapshot:
// healthy workers by role, and each registered decode worker's KV blocks as its last heartbeat
// reported them (a worker that left the registry loses its series).
class WorkerGauges {
 public:
  WorkerGauges(prometheus::Registry& registry, const WorkerRegistry& workers)
      : workers_(workers),
        healthy_(prometheus::BuildGauge()
                     .Name("pdserve_workers_healthy")
                     .Help("Registered workers in rotation, by role.")
                     .Register(registry)),
        healthy_prefill_(healthy_.Add({{"role", "prefill"}})),
        healthy_decode_(healthy_.Add({{"role", "decode"}})),
        blocks_free_(prometheus::BuildGauge()
                         .Name("pdserve_worker_kv_blocks_free")
                         .Help("Free KV blocks of each registered decode worker, as of its last "
                               "heartbeat.")
                         .Register(registry)),
        blocks_used_(prometheus::BuildGauge()
                         .Name("pdserve_worker_kv_blocks_used")
                         .Help("Used KV blocks (total - free) of each registered decode worker, "
                               "as of its last heartbeat.")
                         .Register(registry)) {}

  // A ScrapeRegistry refresher: runs one at a time, so by_worker_ needs no lock.
  void Refresh() {
    int n_prefill = 0;
    int n_decode = 0;
    std::set<std::string> present;
    for (const WorkerSnapshot& w : workers_.Snapshot()) {
      if (w.healthy) ++(w.role == v1::WORKER_ROLE_PREFILL ? n_prefill : n_decode);
      if (w.role != v1::WORKER_ROLE_DECODE) continue;
      present.insert(w.worker_id);
      auto it = by_worker_.find(w.worker_id);
      if (it == by_worker_.end()) {
        const prometheus::Labels labels = {{"worker", w.worker_id}};
        it = by_worker_.emplace(w.worker_id, BlockGauges{&blocks_free_.Add(labels),
                                                         &blocks_used_.Add(labels)})
                 .first;
      }
      const int64_t n_free = w.load.free_kv_blocks();
      it->second.free->Set(static_cast<double>(n_free));
      it->second.used->Set(static_cast<double>(w.load.total_kv_blocks() - n_free));
    }
    healthy_prefill_.Set(n_prefill);
    healthy_decode_.Set(n_decode);
    for (auto it = by_worker_.begin(); it != by_worker_.end();) {
      if (present.count(it->first) != 0) {
        ++it;
        continue;
      }
      blocks_free_.Remove(it->second.free);
      blocks_used_.Remove(it->second.used);
      it = by_worker_.erase(it);
    }
  }

 private:
  struct BlockGauges {
    prometheus::Gauge* free;
    prometheus::Gauge* used;
  };

  const WorkerRegistry& workers_;
  prometheus::Family<prometheus::Gauge>& healthy_;
  prometheus::Gauge& healthy_prefill_;
  prometheus::Gauge& healthy_decode_;
  prometheus::Family<prometheus::Gauge>& blocks_free_;
  prometheus::Family<prometheus::Gauge>& blocks_used_;
  std::map<std::string, BlockGauges> by_worker_;  // the decode workers of the last scrape
};

}  // namespace

// Buckets: the 1-2.5-5 series (metrics::DecadeBuckets), each bucket 2-2.5x the one before, so
// that histogram_quantile's error is about the same fraction of the value from the fastest case
// (stories260K on a CPU: tokens in ~0.1 ms) to the slowest (long prompts, queueing, failover).
//   - TTFT 1 ms..50 s: a queued long prompt on a busy cluster takes tens of seconds;
//   - inter-token 0.5 ms..5 s: a step of a small model to a failover's gap;
//   - E2E 10 ms..500 s: up to the default request limit (--max-request-seconds 600);
//   - queue 0.5 ms..50 s: an idle router's admission to a long wait for blocks;
//   - KV transfer 0.1 ms..10 s: a tiny prompt over shm to an 8B model's long prompt over TCP;
//   - KV transfer bytes 1 KiB..4 GiB in powers of 4: stories260K's few KB per prompt to an 8B
//     bf16 model's 128 KiB per token times thousands of tokens.
RouterMetrics::RouterMetrics(const WorkerRegistry& workers)
    : requests_(prometheus::BuildCounter()
                    .Name("pdserve_requests_total")
                    .Help("Requests the router finished, by outcome (succeeded, failed, "
                          "cancelled: the client cancelled or its deadline passed) and finish "
                          "reason (length, stop, eos; none unless succeeded).")
                    .Register(metrics_.registry())),
      failed_(requests_.Add(RequestLabels("failed", kNoFinishReason))),
      cancelled_(requests_.Add(RequestLabels("cancelled", kNoFinishReason))),
      prompt_tokens_(prometheus::BuildCounter()
                         .Name("pdserve_prompt_tokens_total")
                         .Help("Prompt tokens of succeeded requests (their usage).")
                         .Register(metrics_.registry())
                         .Add({})),
      generation_tokens_(
          prometheus::BuildCounter()
              .Name("pdserve_generation_tokens_total")
              .Help("Generated tokens of succeeded requests (their usage's completion_tokens).")
              .Register(metrics_.registry())
              .Add({})),
      ttft_(prometheus::BuildHistogram()
                .Name("pdserve_time_to_first_token_seconds")
                .Help("Arrival at the router to the first text chunk sent to the client; once "
                      "per request that sent one, and every succeeded request.")
                .Register(metrics_.registry())
                .Add({}, metrics::DecadeBuckets(0.001, 50))),
      inter_token_(prometheus::BuildHistogram()
                       .Name("pdserve_inter_token_latency_seconds")
                       .Help("Time between two consecutive tokens of a request as the router "
                             "received them.")
                       .Register(metrics_.registry())
                       .Add({}, metrics::DecadeBuckets(0.0005, 5))),
      e2e_(prometheus::BuildHistogram()
               .Name("pdserve_e2e_request_latency_seconds")
               .Help("Arrival at the router to the final message, succeeded requests.")
               .Register(metrics_.registry())
               .Add({}, metrics::DecadeBuckets(0.01, 500))),
      queue_(prometheus::BuildHistogram()
                 .Name("pdserve_request_queue_time_seconds")
                 .Help("Arrival at the router to the start of prefill (the router's queue and "
                       "the prefill worker's), succeeded requests.")
                 .Register(metrics_.registry())
                 .Add({}, metrics::DecadeBuckets(0.0005, 50))),
      kv_transfer_seconds_(prometheus::BuildHistogram()
                               .Name("pdserve_kv_transfer_seconds")
                               .Help("Duration of each completed KV handoff from a prefill to a "
                                     "decode worker, as the prefill worker reported it.")
                               .Register(metrics_.registry())
                               .Add({}, metrics::DecadeBuckets(0.0001, 10))),
      kv_transfer_bytes_(prometheus::BuildHistogram()
                             .Name("pdserve_kv_transfer_bytes")
                             .Help("Bytes of each completed KV handoff.")
                             .Register(metrics_.registry())
                             .Add({}, metrics::ExponentialBuckets(1024, 4, 12))) {
  // Every outcome from the start, so that rate() sees the first request of each.
  for (request::FinishReason reason : {request::FinishReason::kLength,
                                       request::FinishReason::kStop, request::FinishReason::kEos}) {
    succeeded_[static_cast<int>(reason)] =
        &requests_.Add(RequestLabels("succeeded", request::FinishReasonName(reason)));
  }
  auto gauges = std::make_shared<WorkerGauges>(metrics_.registry(), workers);
  metrics_.AddRefresher([gauges] { gauges->Refresh(); });
}

void RouterMetrics::TrackRelay(const Relay& relay) {
  prometheus::Gauge& queued = prometheus::BuildGauge()
                                  .Name("pdserve_requests_queued")
                                  .Help("Requests waiting in the router's queue for a slot.")
                                  .Register(metrics_.registry())
                                  .Add({});
  prometheus::Gauge& running =
      prometheus::BuildGauge()
          .Name("pdserve_requests_running")
          .Help("Requests the router is serving (reserving, prefilling or decoding).")
          .Register(metrics_.registry())
          .Add({});
  metrics_.AddRefresher([&relay, &queued, &running] {
    queued.Set(static_cast<double>(relay.queued()));
    running.Set(static_cast<double>(relay.in_flight()));
  });
}

void RouterMetrics::OnFinish(const RequestRecord& record) {
  switch (record.outcome) {
    case RequestOutcome::kSucceeded:
      if (record.finish_reason.has_value()) {
        succeeded_[static_cast<int>(*record.finish_reason)]->Increment();
      } else {
        requests_.Add(RequestLabels("succeeded", kNoFinishReason)).Increment();
      }
      break;
    case RequestOutcome::kFailed:
      failed_.Increment();
      break;
    case RequestOutcome::kCancelled:
      cancelled_.Increment();
      break;
  }
  const bool succeeded = record.outcome == RequestOutcome::kSucceeded;
  if (succeeded || record.first_chunk_sent) ttft_.Observe(record.ttft_seconds);
  if (!succeeded) return;
  e2e_.Observe(record.e2e_seconds);
  queue_.Observe(record.queue_seconds);
  prompt_tokens_.Increment(static_cast<double>(record.prompt_tokens));
  generation_tokens_.Increment(static_cast<double>(record.completion_tokens));
}

void RouterMetrics::OnTransfer(const v1::KvTransferReport& report) {
  kv_transfer_seconds_.Observe(report.seconds());
  kv_transfer_bytes_.Observe(static_cast<double>(report.bytes()));
}

void RouterMetrics::OnTokenGap(double seconds) { inter_token_.Observe(seconds); }

}  // namespace pdserve::router
