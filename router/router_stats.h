#pragma once
// Request statistics for GetStats: counts, latency summaries over a bounded window of recent
// requests, token totals and throughput, per cluster and per worker.
//
// Percentiles use the nearest-rank method: p-th percentile of n sorted values is the value at
// rank ceil(p / 100 * n) (1-based), so it is always one of the recorded values.
//
// Thread-safe: every method takes the one mutex.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/request/request_contract.h"
#include "router.pb.h"
#include "worker.pb.h"
#include "router/worker_registry.h"

namespace pdserve::router {

// Nearest-rank percentile of `values` (any order); 0 for no values. p in [0, 100].
double NearestRankPercentile(std::vector<double> values, double p);
v1::LatencySummary Summarize(const std::deque<double>& values);

enum class RequestOutcome {
  kSucceeded,
  kFailed,     // any error, bad input included
  kCancelled,  // the client cancelled or its deadline passed
};

// What one finished request contributes. Latencies are recorded only for successes; TPOT only
// when the request produced at least two tokens.
struct RequestRecord {
  RequestOutcome outcome = RequestOutcome::kFailed;
  std::optional<request::FinishReason> finish_reason;  // successes
  double queue_seconds = 0;
  double ttft_seconds = 0;
  // A chunk reached the client before the request ended: ttft_seconds is set, for a failed or
  // cancelled request too (a success always has it).
  bool first_chunk_sent = false;
  double tpot_seconds = 0;
  double e2e_seconds = 0;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  std::string prefill_worker;  // empty: the request never reached one
  std::string decode_worker;
};

// Sees every record RouterStats takes, as it takes it (RouterMetrics exports them to
// Prometheus). Called outside RouterStats' lock, on the recording thread (a request's strand):
// must be thread-safe and must not block.
class StatsListener {
 public:
  virtual ~StatsListener() = default;
  virtual void OnFinish(const RequestRecord& record) = 0;
  virtual void OnTransfer(const v1::KvTransferReport& report) = 0;
  virtual void OnTokenGap(double seconds) = 0;
};

class RouterStats {
 public:
  // `window`: how many recent requests the latency summaries cover. `listener` (may be null)
  // outlives the stats.
  RouterStats(Clock clock, size_t window = 10000, StatsListener* listener = nullptr);

  void RecordArrival();
  // The request was sent to this worker (counts as received and in flight for it).
  void RecordDispatch(const std::string& worker_id);
  // A call the request made to this worker failed and the request went on elsewhere
  // (failover): the worker's count of it ends as failed.
  void RecordWorkerFailed(const std::string& worker_id);
  // Ends a request that RecordArrival counted; its workers' in-flight counts end too.
  void RecordFinish(const RequestRecord& record);
  // One completed KV handoff between two workers.
  void RecordTransfer(const std::string& prefill_worker, const std::string& decode_worker,
                      const v1::KvTransferReport& report);
  // The time between two tokens of one request as the relay received them (the listener's
  // inter-token latency; GetStats has TPOT instead).
  void RecordTokenGap(double seconds);

  // Worker info (load, KV use, health) comes from `workers`, the registry's snapshot.
  v1::GetStatsResponse Get(const std::vector<WorkerSnapshot>& workers) const;

 private:
  struct Window {
    std::deque<double> values;
    void Add(double v, size_t limit) {
      values.push_back(v);
      while (values.size() > limit) values.pop_front();
    }
  };
  struct PerWorker {
    v1::RequestCounts counts;
    Window ttft;
    Window tpot;
    int64_t tokens = 0;
  };
  void FinishWorker(const std::string& id, const RequestRecord& record, bool is_prefill)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock clock_;
  const size_t window_;
  StatsListener* const listener_;
  const absl::Time start_;
  mutable absl::Mutex mu_;
  v1::RequestCounts counts_ ABSL_GUARDED_BY(mu_);
  Window queue_ ABSL_GUARDED_BY(mu_);
  Window ttft_ ABSL_GUARDED_BY(mu_);
  Window tpot_ ABSL_GUARDED_BY(mu_);
  Window e2e_ ABSL_GUARDED_BY(mu_);
  int64_t prompt_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t completion_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, PerWorker> workers_ ABSL_GUARDED_BY(mu_);
  struct PerTransferPath {
    int64_t count = 0;
    int64_t bytes = 0;
    Window seconds;
    std::deque<int64_t> window_bytes;  // beside seconds.values, for the rate
  };
  // By (prefill worker, decode worker, transport).
  std::map<std::tuple<std::string, std::string, std::string>, PerTransferPath> transfers_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace pdserve::router
