// The router's /metrics text against the relay and in-memory workers (fake_workers.h): one TTFT
// observation per request, one inter-token gap per token after the first (a failover adds
// none), outcomes and token usage counted as GetStats counts them, and the gauges of the
// registry and the queue.

#include "router/router_metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "router/relay.h"
#include "tests/router/fake_workers.h"
#include "tests/support/metrics_sample.h"

namespace pdserve::router {
namespace {

using testing::Executor;
using testing::FakeCluster;
using testing::FakeWorkerScript;

using test_support::BucketBounds;
using test_support::MetricSample;
using test_support::MetricTypes;

constexpr char kSucceededLength[] =
    "pdserve_requests_total{outcome=\"succeeded\",finish_reason=\"length\"}";
constexpr char kFailed[] = "pdserve_requests_total{outcome=\"failed\",finish_reason=\"none\"}";

// A client that reads as fast as the relay writes: each write completes on its own executor.
class ReadingSink final : public ResponseSink {
 public:
  void Attach(std::shared_ptr<RelayCall> call) {
    absl::MutexLock lock(&mu_);
    call_ = std::move(call);
  }
  void StartWrite(const v1::GenerateResponse& response) override {
    absl::MutexLock lock(&mu_);
    if (response.has_final()) final_ = response.final();
    executor_.Post([this] {
      std::shared_ptr<RelayCall> call;
      {
        absl::MutexLock lock(&mu_);  // the relay may write before Start returned the call
        mu_.Await(absl::Condition(
            +[](std::shared_ptr<RelayCall>* c) { return *c != nullptr; }, &call_));
        call = call_;
      }
      call->OnWriteDone(true);
    });
  }
  void CancelStream() override {}
  void Finish(const absl::Status& status, absl::Duration) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    finished_ = true;
  }
  // Waits up to 10 s for Finish; its status.
  absl::Status Wait() {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&finished_), absl::Seconds(10));
    return finished_ ? status_ : absl::DeadlineExceededError("the relay never finished");
  }
  v1::GenerateFinal final_message() {
    absl::MutexLock lock(&mu_);
    return final_;
  }

 private:
  absl::Mutex mu_;
  std::shared_ptr<RelayCall> call_ ABSL_GUARDED_BY(mu_);
  v1::GenerateFinal final_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  Executor executor_;  // last: joined first
};

class RouterMetricsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (model_ != nullptr) return;
    absl::StatusOr<RouterModel> loaded =
        LoadRouterModel(std::string(PDSERVE_SHARED_DIR) + "/models/stories260K.gguf", "");
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    model_ = new RouterModel(*std::move(loaded));
  }

  void SetUp() override {
    relay_ = std::make_unique<Relay>(*model_, registry_, stats_, cluster_, cluster_, clock_,
                                     RelayOptions{.retry_backoff = absl::Milliseconds(5)});
    metrics_.TrackRelay(*relay_);
  }

  void AddWorker(const std::string& id, v1::WorkerRole role, int64_t free_blocks = 1000) {
    WorkerRegistration w;
    w.worker_id = id;
    w.role = role;
    w.address = id + ":1";
    if (role == v1::WORKER_ROLE_DECODE) {
      w.kv_layout.set_block_size(16);
      w.load.set_free_kv_blocks(free_blocks);
      w.load.set_total_kv_blocks(1000);
    }
    ASSERT_TRUE(registry_.Register(w).ok());
  }

  // Runs one request to its end; its final message (empty for an error) and status.
  std::pair<v1::GenerateFinal, absl::Status> Run(const std::string& prompt, int max_tokens) {
    v1::GenerateRequest request;
    request.set_text(prompt);
    request.set_max_tokens(max_tokens);
    request.set_ignore_eos(true);
    ReadingSink sink;
    sink.Attach(relay_->Start(request, sink, absl::InfiniteFuture()));
    absl::Status status = sink.Wait();
    return {sink.final_message(), status};
  }

  static RouterModel* model_;
  Clock clock_ = [] { return absl::Now(); };
  WorkerRegistry registry_{absl::Seconds(60), clock_};
  RouterMetrics metrics_{registry_};
  RouterStats stats_{clock_, 10000, &metrics_};
  FakeCluster cluster_;
  std::unique_ptr<Relay> relay_;
};

RouterModel* RouterMetricsTest::model_ = nullptr;

TEST_F(RouterMetricsTest, SucceededRequestsCountOnceEachWithTheirUsage) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE);
  const int max_tokens[] = {5, 9, 1};
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  for (int n : max_tokens) {
    auto [final_message, status] = Run("Once upon", n);
    ASSERT_TRUE(status.ok()) << status;
    prompt_tokens += final_message.usage().prompt_tokens();
    completion_tokens += final_message.usage().completion_tokens();
  }
  const std::string text = metrics_.RenderText();
  EXPECT_EQ(MetricSample(text, "pdserve_time_to_first_token_seconds_count"), 3) << text;
  EXPECT_EQ(MetricSample(text, "pdserve_e2e_request_latency_seconds_count"), 3);
  EXPECT_EQ(MetricSample(text, "pdserve_request_queue_time_seconds_count"), 3);
  // A gap per token after each request's first: 4 + 8 + 0.
  EXPECT_EQ(MetricSample(text, "pdserve_inter_token_latency_seconds_count"), 12);
  EXPECT_EQ(MetricSample(text, kSucceededLength), 3);
  EXPECT_EQ(MetricSample(text, kFailed), 0);
  EXPECT_EQ(MetricSample(text, "pdserve_prompt_tokens_total"), prompt_tokens);
  EXPECT_EQ(MetricSample(text, "pdserve_generation_tokens_total"), completion_tokens);
  EXPECT_EQ(completion_tokens, 15);
  EXPECT_EQ(MetricSample(text, "pdserve_requests_running"), 0);
  EXPECT_EQ(MetricSample(text, "pdserve_requests_queued"), 0);
}

TEST_F(RouterMetricsTest, AFailoverAddsNoTokenGapAndNoSecondTtft) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE);
  AddWorker("decode-1", v1::WORKER_ROLE_DECODE);
  FakeWorkerScript dies;
  dies.fail_after_tokens = 5;
  cluster_.Script("decode-0", dies);
  auto [final_message, status] = Run("Once", 20);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(final_message.decode_worker(), "decode-1");  // it did fail over
  const std::string text = metrics_.RenderText();
  EXPECT_EQ(MetricSample(text, "pdserve_time_to_first_token_seconds_count"), 1);
  EXPECT_EQ(MetricSample(text, "pdserve_inter_token_latency_seconds_count"), 19);
}

TEST_F(RouterMetricsTest, AFailureAfterTheFirstChunkCountsItsTtftButNoUsage) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE);
  FakeWorkerScript broken;  // every stream dies after 2 tokens, and no failover is left
  broken.fail_after_tokens = 2;
  cluster_.Script("decode-0", broken);
  auto [final_message, status] = Run("Once", 40);
  ASSERT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  const std::string text = metrics_.RenderText();
  EXPECT_EQ(MetricSample(text, kFailed), 1);
  EXPECT_EQ(MetricSample(text, "pdserve_time_to_first_token_seconds_count"), 1);
  EXPECT_EQ(MetricSample(text, "pdserve_e2e_request_latency_seconds_count"), 0);
  EXPECT_EQ(MetricSample(text, "pdserve_generation_tokens_total"), 0);
  EXPECT_EQ(MetricSample(text, "pdserve_prompt_tokens_total"), 0);
}

TEST_F(RouterMetricsTest, ARefusedRequestCountsAsFailedWithoutTtft) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE);
  auto [final_message, status] = Run("", 4);  // no prompt: refused before any worker call
  ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  const std::string text = metrics_.RenderText();
  EXPECT_EQ(MetricSample(text, kFailed), 1);
  EXPECT_EQ(MetricSample(text, "pdserve_time_to_first_token_seconds_count"), 0);
}

TEST_F(RouterMetricsTest, WorkerGaugesFollowTheRegistry) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE, /*free_blocks=*/700);
  AddWorker("decode-1", v1::WORKER_ROLE_DECODE, /*free_blocks=*/1000);
  std::string text = metrics_.RenderText();
  EXPECT_EQ(MetricSample(text, "pdserve_workers_healthy{role=\"prefill\"}"), 1) << text;
  EXPECT_EQ(MetricSample(text, "pdserve_workers_healthy{role=\"decode\"}"), 2);
  EXPECT_EQ(MetricSample(text, "pdserve_worker_kv_blocks_free{worker=\"decode-0\"}"), 700);
  EXPECT_EQ(MetricSample(text, "pdserve_worker_kv_blocks_used{worker=\"decode-0\"}"), 300);
  EXPECT_EQ(MetricSample(text, "pdserve_worker_kv_blocks_used{worker=\"decode-1\"}"), 0);
  EXPECT_TRUE(
      std::isnan(MetricSample(text, "pdserve_worker_kv_blocks_free{worker=\"prefill-0\"}")));

  registry_.MarkUnreachable("decode-1");
  v1::WorkerLoad load;
  load.set_free_kv_blocks(650);
  load.set_total_kv_blocks(1000);
  ASSERT_TRUE(registry_.Heartbeat("decode-0", load));
  text = metrics_.RenderText();
  EXPECT_EQ(MetricSample(text, "pdserve_workers_healthy{role=\"decode\"}"), 1);
  EXPECT_EQ(MetricSample(text, "pdserve_worker_kv_blocks_used{worker=\"decode-0\"}"), 350);

  // A worker that leaves the registry leaves the metrics too.
  ASSERT_TRUE(registry_.Deregister("decode-1", "decode-1:1"));
  text = metrics_.RenderText();
  EXPECT_TRUE(std::isnan(MetricSample(text, "pdserve_worker_kv_blocks_free{worker=\"decode-1\"}")))
      << text;
  EXPECT_TRUE(std::isnan(MetricSample(text, "pdserve_worker_kv_blocks_used{worker=\"decode-1\"}")));
  EXPECT_EQ(MetricSample(text, "pdserve_worker_kv_blocks_free{worker=\"decode-0\"}"), 650);
}

// The families docs/metrics.md lists for the router, each with its type, every outcome's
// counter from the start, and the documented buckets.
TEST_F(RouterMetricsTest, ExportsTheDocumentedFamilies) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE);
  const std::string text = metrics_.RenderText();
  EXPECT_EQ(MetricTypes(text),
            (std::map<std::string, std::string>{
                {"pdserve_requests_total", "counter"},
                {"pdserve_prompt_tokens_total", "counter"},
                {"pdserve_generation_tokens_total", "counter"},
                {"pdserve_time_to_first_token_seconds", "histogram"},
                {"pdserve_inter_token_latency_seconds", "histogram"},
                {"pdserve_e2e_request_latency_seconds", "histogram"},
                {"pdserve_request_queue_time_seconds", "histogram"},
                {"pdserve_kv_transfer_seconds", "histogram"},
                {"pdserve_kv_transfer_bytes", "histogram"},
                {"pdserve_requests_queued", "gauge"},
                {"pdserve_requests_running", "gauge"},
                {"pdserve_workers_healthy", "gauge"},
                {"pdserve_worker_kv_blocks_free", "gauge"},
                {"pdserve_worker_kv_blocks_used", "gauge"}}))
      << text;
  for (const char* labels : {"outcome=\"succeeded\",finish_reason=\"length\"",
                             "outcome=\"succeeded\",finish_reason=\"stop\"",
                             "outcome=\"succeeded\",finish_reason=\"eos\"",
                             "outcome=\"failed\",finish_reason=\"none\"",
                             "outcome=\"cancelled\",finish_reason=\"none\""}) {
    EXPECT_EQ(MetricSample(text, std::string("pdserve_requests_total{") + labels + "}"), 0)
        << labels;
  }
  EXPECT_EQ(BucketBounds(text, "pdserve_time_to_first_token_seconds"),
            (std::vector<std::string>{"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
                                      "0.25", "0.5", "1", "2.5", "5", "10", "25", "50", "+Inf"}));
  EXPECT_EQ(BucketBounds(text, "pdserve_kv_transfer_bytes"),
            (std::vector<std::string>{"1024", "4096", "16384", "65536", "262144", "1048576",
                                      "4194304", "16777216", "67108864", "268435456",
                                      "1073741824", "4294967296", "+Inf"}));
}

TEST(RouterMetricsStandaloneTest, KvTransfersFillBothHistograms) {
  WorkerRegistry registry(absl::Seconds(60), [] { return absl::Now(); });
  RouterMetrics metrics(registry);
  RouterStats stats([] { return absl::Now(); }, 100, &metrics);
  v1::KvTransferReport report;
  report.set_transport("shm");
  report.set_seconds(0.003);
  report.set_bytes(5000);
  stats.RecordTransfer("prefill-0", "decode-0", report);
  report.set_seconds(0.02);
  report.set_bytes(2 << 20);
  stats.RecordTransfer("prefill-0", "decode-0", report);
  const std::string text = metrics.RenderText();
  EXPECT_EQ(MetricSample(text, "pdserve_kv_transfer_seconds_count"), 2) << text;
  EXPECT_DOUBLE_EQ(MetricSample(text, "pdserve_kv_transfer_seconds_sum"), 0.023);
  EXPECT_EQ(MetricSample(text, "pdserve_kv_transfer_seconds_bucket{le=\"0.005\"}"), 1);
  EXPECT_EQ(MetricSample(text, "pdserve_kv_transfer_bytes_bucket{le=\"4096\"}"), 0);
  EXPECT_EQ(MetricSample(text, "pdserve_kv_transfer_bytes_bucket{le=\"16384\"}"), 1);
  EXPECT_EQ(MetricSample(text, "pdserve_kv_transfer_bytes_bucket{le=\"+Inf\"}"), 2);
  // The router's GetStats still sees them.
  EXPECT_EQ(stats.Get({}).kv_transfers(0).count(), 2);
}

}  // namespace
}  // namespace pdserve::router
