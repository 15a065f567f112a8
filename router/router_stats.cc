#include "router/router_stats.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace pdserve::router {

double NearestRankPercentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double n = static_cast<double>(values.size());
  int64_t rank = static_cast<int64_t>(std::ceil(p / 100.0 * n));
  rank = std::clamp<int64_t>(rank, 1, static_cast<int64_t>(values.size()));
  return values[static_cast<size_t>(rank - 1)];
}

v1::LatencySummary Summarize(const std::deque<double>& values) {
  v1::LatencySummary summary;
  summary.set_count(static_cast<int64_t>(values.size()));
  if (values.empty()) return summary;
  std::vector<double> sorted(values.begin(), values.end());
  double sum = 0;
  for (double v : sorted) sum += v;
  summary.set_mean(sum / static_cast<double>(sorted.size()));
  summary.set_p50(NearestRankPercentile(sorted, 50));
  summary.set_p90(NearestRankPercentile(sorted, 90));
  summary.set_p99(NearestRankPercentile(sorted, 99));
  return summary;
}

RouterStats::RouterStats(Clock clock, size_t window, StatsListener* listener)
    : clock_(std::move(clock)), window_(std::max<size_t>(window, 1)), listener_(listener),
      start_(clock_()) {}

void RouterStats::RecordArrival() {
  absl::MutexLock lock(&mu_);
  counts_.set_received(counts_.received() + 1);
  counts_.set_in_flight(counts_.in_flight() + 1);
}

void RouterStats::RecordDispatch(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  v1::RequestCounts& c = workers_[worker_id].counts;
  c.set_received(c.received() + 1);
  c.set_in_flight(c.in_flight() + 1);
}

static void CountOutcome(v1::RequestCounts& c, RequestOutcome outcome) {
  c.set_in_flight(c.in_flight() - 1);
  switch (outcome) {
    case RequestOutcome::kSucceeded: c.set_succeeded(c.succeeded() + 1); break;
    case RequestOutcome::kFailed: c.set_failed(c.failed() + 1); break;
    case RequestOutcome::kCancelled: c.set_cancelled(c.cancelled() + 1); break;
  }
}

void RouterStats::FinishWorker(const std::string& id, const RequestRecord& record,
                               bool is_prefill) {
  if (id.empty()) return;
  PerWorker& w = workers_[id];
  CountOutcome(w.counts, record.outcome);
  if (record.outcome != RequestOutcome::kSucceeded) return;
  w.ttft.Add(record.ttft_seconds, window_);
  if (record.completion_tokens >= 2) w.tpot.Add(record.tpot_seconds, window_);
  // A prefill worker computes the prompt; a decode worker makes every token after the first.
  w.tokens += is_prefill ? record.prompt_tokens : std::max<int64_t>(record.completion_tokens - 1, 0);
}

void RouterStats::RecordWorkerFailed(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  CountOutcome(workers_[worker_id].counts, RequestOutcome::kFailed);
}

void RouterStats::RecordFinish(const RequestRecord& record) {
  if (listener_ != nullptr) listener_->OnFinish(record);
  absl::MutexLock lock(&mu_);
  CountOutcome(counts_, record.outcome);
  FinishWorker(record.prefill_worker, record, /*is_prefill=*/true);
  FinishWorker(record.decode_worker, record, /*is_prefill=*/false);
  if (record.outcome != RequestOutcome::kSucceeded) return;
  queue_.Add(record.queue_seconds, window_);
  ttft_.Add(record.ttft_seconds, window_);
  if (record.completion_tokens >= 2) tpot_.Add(record.tpot_seconds, window_);
  e2e_.Add(record.e2e_seconds, window_);
  prompt_tokens_ += record.prompt_tokens;
  completion_tokens_ += record.completion_tokens;
}

void RouterStats::RecordTransfer(const std::string& prefill_worker,
                                 const std::string& decode_worker,
                                 const v1::KvTransferReport& report) {
  if (listener_ != nullptr) listener_->OnTransfer(report);
  absl::MutexLock lock(&mu_);
  PerTransferPath& path = transfers_[{prefill_worker, decode_worker, report.transport()}];
  ++path.count;
  path.bytes += report.bytes();
  path.seconds.Add(report.seconds(), window_);
  path.window_bytes.push_back(report.bytes());
  while (path.window_bytes.size() > path.seconds.values.size()) path.window_bytes.pop_front();
}

void RouterStats::RecordTokenGap(double seconds) {
  if (listener_ != nullptr) listener_->OnTokenGap(seconds);
}

v1::GetStatsResponse RouterStats::Get(const std::vector<WorkerSnapshot>& workers) const {
  const double uptime = absl::ToDoubleSeconds(clock_() - start_);
  absl::MutexLock lock(&mu_);
  v1::GetStatsResponse response;
  v1::ClusterStats* cluster = response.mutable_cluster();
  *cluster->mutable_requests() = counts_;
  *cluster->mutable_queue_seconds() = Summarize(queue_.values);
  *cluster->mutable_ttft_seconds() = Summarize(ttft_.values);
  *cluster->mutable_tpot_seconds() = Summarize(tpot_.values);
  *cluster->mutable_e2e_seconds() = Summarize(e2e_.values);
  cluster->set_prompt_tokens(prompt_tokens_);
  cluster->set_completion_tokens(completion_tokens_);
  cluster->set_uptime_seconds(uptime);
  cluster->set_output_tokens_per_second(
      uptime > 0 ? static_cast<double>(completion_tokens_) / uptime : 0);
  for (const WorkerSnapshot& snapshot : workers) {
    v1::WorkerStats* ws = response.add_workers();
    *ws->mutable_worker() = snapshot.ToProto();
    auto it = workers_.find(snapshot.worker_id);
    if (it == workers_.end()) continue;
    *ws->mutable_requests() = it->second.counts;
    *ws->mutable_ttft_seconds() = Summarize(it->second.ttft.values);
    *ws->mutable_tpot_seconds() = Summarize(it->second.tpot.values);
    ws->set_tokens(it->second.tokens);
  }
  for (const auto& [key, path] : transfers_) {
    v1::KvTransferStats* ts = response.add_kv_transfers();
    ts->set_prefill_worker(std::get<0>(key));
    ts->set_decode_worker(std::get<1>(key));
    ts->set_transport(std::get<2>(key));
    ts->set_count(path.count);
    ts->set_bytes(path.bytes);
    *ts->mutable_seconds() = Summarize(path.seconds.values);
    double seconds = 0;
    int64_t bytes = 0;
    for (double s : path.seconds.values) seconds += s;
    for (int64_t b : path.window_bytes) bytes += b;
    ts->set_gb_per_second(seconds > 0 ? static_cast<double>(bytes) / seconds / 1e9 : 0);
  }
  return response;
}

}  // namespace pdserve::router
