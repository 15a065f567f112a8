// The relay against in-memory workers (fake_workers.h): the request path, failover without a
// repeated or lost token, retries, admission limits, slow clients, deadlines and cancellation.

#include "router/relay.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "tests/router/fake_workers.h"

namespace pdserve::router {
namespace {

using testing::Executor;
using testing::FakeCluster;
using testing::FakeWorkerScript;
using testing::ToyNextToken;

// The client side of one request: records what the relay sends; completes writes on a thread
// of its own unless stalled (a client that stopped reading).
class TestSink final : public ResponseSink {
 public:
  void Attach(std::shared_ptr<RelayCall> call) {
    absl::MutexLock lock(&mu_);
    call_ = std::move(call);
  }

  void StartWrite(const v1::GenerateResponse& response) override {
    absl::MutexLock lock(&mu_);
    messages_.push_back(response);
    if (stalled_) {
      write_waiting_ = true;
    } else {
      CompleteWriteLocked();
    }
  }
  // A stalled client's write completes (not ok) once its stream is cancelled.
  void CancelStream() override {
    absl::MutexLock lock(&mu_);
    stream_cancelled_ = true;
    if (write_waiting_) {
      write_waiting_ = false;
      std::shared_ptr<RelayCall> call = call_;
      executor_.Post([call] { call->OnWriteDone(false); });
    }
  }
  bool stream_cancelled() {
    absl::MutexLock lock(&mu_);
    return stream_cancelled_;
  }
  void Finish(const absl::Status& status, absl::Duration retry_after) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    retry_after_ = retry_after;
    finished_ = true;
  }

  void Stall() {
    absl::MutexLock lock(&mu_);
    stalled_ = true;
  }
  void Resume() {
    absl::MutexLock lock(&mu_);
    stalled_ = false;
    if (write_waiting_) CompleteWriteLocked();
  }
  void Cancel() {
    absl::MutexLock lock(&mu_);
    std::shared_ptr<RelayCall> call = call_;
    executor_.Post([call] { call->OnClientCancelled(); });
  }

  // Waits (up to 10 s) for Finish; its status.
  absl::Status Wait() {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&finished_), absl::Seconds(10));
    if (!finished_) return absl::DeadlineExceededError("the relay never finished the sink");
    return status_;
  }
  bool finished() {
    absl::MutexLock lock(&mu_);
    return finished_;
  }
  std::string text() {
    absl::MutexLock lock(&mu_);
    std::string text;
    for (const v1::GenerateResponse& m : messages_) text += m.chunk().text();
    return text;
  }
  std::vector<int32_t> token_ids() {
    absl::MutexLock lock(&mu_);
    std::vector<int32_t> ids;
    for (const v1::GenerateResponse& m : messages_) {
      ids.insert(ids.end(), m.chunk().token_ids().begin(), m.chunk().token_ids().end());
    }
    return ids;
  }
  v1::GenerateFinal final_message() {
    absl::MutexLock lock(&mu_);
    return messages_.empty() ? v1::GenerateFinal() : messages_.back().final();
  }
  absl::Duration retry_after() {
    absl::MutexLock lock(&mu_);
    return retry_after_;
  }

 private:
  // The call may not be attached yet (the relay's first step runs inside Start): the completion
  // waits for it on the executor.
  void CompleteWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    write_waiting_ = false;
    executor_.Post([this] {
      std::shared_ptr<RelayCall> call;
      while (call == nullptr) {
        absl::MutexLock lock(&mu_);
        call = call_;
        if (call == nullptr) mu_.AwaitWithTimeout(absl::Condition(+[](std::shared_ptr<RelayCall>* c) { return *c != nullptr; }, &call_), absl::Seconds(1));
      }
      call->OnWriteDone(true);
    });
  }

  absl::Mutex mu_;
  std::shared_ptr<RelayCall> call_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::GenerateResponse> messages_ ABSL_GUARDED_BY(mu_);
  bool stalled_ ABSL_GUARDED_BY(mu_) = false;
  bool write_waiting_ ABSL_GUARDED_BY(mu_) = false;
  bool stream_cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  absl::Duration retry_after_ ABSL_GUARDED_BY(mu_);
  Executor executor_;
};

class RelayTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (model_ != nullptr) return;  // loaded once per process (--gtest_repeat)
    absl::StatusOr<RouterModel> loaded =
        LoadRouterModel(std::string(PDSERVE_SHARED_DIR) + "/models/stories260K.gguf", "");
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    model_ = new RouterModel(*std::move(loaded));
  }

  void StartRelay(RelayOptions options = {}) {
    options.retry_backoff = absl::Milliseconds(5);
    relay_ = std::make_unique<Relay>(*model_, registry_, stats_, cluster_, cluster_, clock_,
                                     options);
  }

  void AddWorker(const std::string& id, v1::WorkerRole role) {
    WorkerRegistration w;
    w.worker_id = id;
    w.role = role;
    w.address = id + ":1";
    if (role == v1::WORKER_ROLE_DECODE) {
      w.kv_layout.set_block_size(16);
      w.load.set_free_kv_blocks(1000);
      w.load.set_total_kv_blocks(1000);
    }
    ASSERT_TRUE(registry_.Register(w).ok());
  }

  bool Healthy(const std::string& id) {
    for (const WorkerSnapshot& w : registry_.Snapshot()) {
      if (w.worker_id == id) return w.healthy;
    }
    return false;
  }

  static v1::GenerateRequest Text(const std::string& prompt, int max_tokens) {
    v1::GenerateRequest request;
    request.set_text(prompt);
    request.set_max_tokens(max_tokens);
    request.set_ignore_eos(true);
    return request;
  }

  std::unique_ptr<TestSink> Start(const v1::GenerateRequest& request,
                                  absl::Time deadline = absl::InfiniteFuture(),
                                  const std::string& client_key = "") {
    auto sink = std::make_unique<TestSink>();
    sink->Attach(relay_->Start(request, *sink, deadline, client_key));
    return sink;
  }

  // What the toy model generates after `prompt_ids`.
  static std::vector<int32_t> ToyTokens(std::vector<int32_t> prompt_ids, int n) {
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) {
      out.push_back(ToyNextToken(prompt_ids));
      prompt_ids.push_back(out.back());
    }
    return out;
  }

  // Waits up to 5 s for `done`.
  static bool Eventually(const std::function<bool()>& done) {
    const absl::Time give_up = absl::Now() + absl::Seconds(5);
    while (!done()) {
      if (absl::Now() > give_up) return false;
      absl::SleepFor(absl::Milliseconds(2));
    }
    return true;
  }

  static RouterModel* model_;
  Clock clock_ = [] { return absl::Now(); };
  WorkerRegistry registry_{absl::Seconds(60), clock_};
  RouterStats stats_{clock_};
  FakeCluster cluster_;
  std::unique_ptr<Relay> relay_;
};

RouterModel* RelayTest::model_ = nullptr;

TEST_F(RelayTest, ServesTheToyModelsTokensInOrder) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE);
  StartRelay();
  auto sink = Start(Text("Once", 12));
  ASSERT_TRUE(sink->Wait().ok()) << sink->Wait();
  std::vector<FakeCluster::Call> decodes = cluster_.decode_calls();
  ASSERT_EQ(decodes.size(), 1u);
  EXPECT_EQ(sink->token_ids(), ToyTokens(decodes[0].prompt_ids, 12));
  EXPECT_EQ(sink->final_message().finish_reason(), "length");
  EXPECT_EQ(sink->final_message().usage().completion_tokens(), 12);
  EXPECT_EQ(cluster_.prefill_calls()[0].handoff_token, "token-0");
  EXPECT_EQ(relay_->in_flight(), 0);
}

TEST_F(RelayTest, LostDecodeWorkerIsReplacedWithoutRepeatingOrLosingAToken) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE);
  AddWorker("decode-1", v1::WORKER_ROLE_DECODE);
  FakeWorkerScript dies;
  dies.fail_after_tokens = 5;  // the first token (prefill's) and 5 from decode reach the client
  cluster_.Script("decode-0", dies);
  StartRelay();
  auto sink = Start(Text("Once", 20));
  ASSERT_TRUE(sink->Wait().ok()) << sink->Wait();

  std::vector<FakeCluster::Call> decodes = cluster_.decode_calls();
  ASSERT_EQ(decodes.size(), 2u);
  const std::vector<int32_t> expected = ToyTokens(decodes[0].prompt_ids, 20);
  EXPECT_EQ(sink->token_ids(), expected);
  EXPECT_EQ(decodes[0].worker_id, "decode-0");
  EXPECT_EQ(decodes[1].worker_id, "decode-1");
  // The replacement runs the prompt and the 6 tokens the client has, for the 14 it lacks.
  std::vector<int32_t> resumed = decodes[0].prompt_ids;
  resumed.insert(resumed.end(), expected.begin(), expected.begin() + 6);
  EXPECT_EQ(decodes[1].prompt_ids, resumed);
  EXPECT_EQ(decodes[1].max_tokens, 14);
  EXPECT_NE(decodes[1].request_id, decodes[0].request_id);
  EXPECT_EQ(cluster_.prefill_calls().back().prompt_ids, resumed);
  EXPECT_EQ(sink->final_message().decode_worker(), "decode-1");
  EXPECT_EQ(sink->final_message().usage().completion_tokens(), 20);
  EXPECT_FALSE(Healthy("decode-0"));  // out of rotation at once, not after its heartbeats
  EXPECT_TRUE(Healthy("decode-1"));
}

TEST_F(RelayTest, LostPrefillWorkerIsRetriedOnAnotherWithTheSameReservation) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("prefill-1", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE);
  FakeWorkerScript dies;
  dies.prefill_errors.push_back(absl::UnavailableError("connection refused"));
  cluster_.Script("prefill-0", dies);
  StartRelay();
  auto sink = Start(Text("Once", 8));
  ASSERT_TRUE(sink->Wait().ok()) << sink->Wait();
  std::vector<FakeCluster::Call> prefills = cluster_.prefill_calls();
  ASSERT_EQ(prefills.size(), 2u);
  EXPECT_EQ(prefills[0].worker_id, "prefill-0");
  EXPECT_EQ(prefills[1].worker_id, "prefill-1");
  EXPECT_EQ(prefills[1].handoff_token, prefills[0].handoff_token);
  EXPECT_EQ(cluster_.decode_calls().size(), 1u);
  EXPECT_EQ(sink->token_ids(), ToyTokens(cluster_.decode_calls()[0].prompt_ids, 8));
  EXPECT_FALSE(Healthy("prefill-0"));
  EXPECT_EQ(sink->final_message().prefill_worker(), "prefill-1");
}

TEST_F(RelayTest, BusyOnlyPrefillWorkerIsAskedAgainAfterABackoff) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE);
  FakeWorkerScript busy;
  busy.prefill_errors.push_back(absl::ResourceExhaustedError("the prefill queue is full"));
  busy.prefill_errors.push_back(absl::ResourceExhaustedError("the prefill queue is full"));
  cluster_.Script("prefill-0", busy);
  StartRelay();
  auto sink = Start(Text("Once", 4));
  ASSERT_TRUE(sink->Wait().ok()) << sink->Wait();
  EXPECT_EQ(cluster_.prefill_calls().size(), 3u);
  EXPECT_TRUE(Healthy("prefill-0"));  // busy is not gone
}

TEST_F(RelayTest, RefusedRequestIsNotRetriedAndFreesTheReservation) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("prefill-1", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE);
  FakeWorkerScript refuses;
  refuses.prefill_errors.push_back(absl::InvalidArgumentError("the handoff's layout differs"));
  cluster_.Script("prefill-0", refuses);
  StartRelay();
  auto sink = Start(Text("Once", 4));
  const absl::Status status = sink->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("prefill worker 'prefill-0'"), std::string::npos) << status;
  EXPECT_EQ(cluster_.prefill_calls().size(), 1u);
  EXPECT_TRUE(Eventually([&] { return cluster_.open_decode_streams() == 0; }));
}

TEST_F(RelayTest, FailoversAreBoundedAndTheLastErrorNamesTheWorker) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE);
  AddWorker("decode-1", v1::WORKER_ROLE_DECODE);
  FakeWorkerScript broken;  // every stream dies after 2 tokens
  broken.fail_after_tokens = 2;
  cluster_.Script("decode-0", broken);
  cluster_.Script("decode-1", broken);
  RelayOptions options;
  options.max_attempts = 2;
  StartRelay(options);
  auto sink = Start(Text("Once", 40));
  const absl::Status status = sink->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(status.message().find("decode worker 'decode-"), std::string::npos) << status;
  EXPECT_EQ(cluster_.decode_calls().size(), 2u);
}

TEST_F(RelayTest, BusyRetriesAreBoundedApartFromFailovers) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE);
  FakeWorkerScript always;
  for (int i = 0; i < 100; ++i) {
    always.reserve_errors.push_back(absl::ResourceExhaustedError("too many waiting"));
  }
  cluster_.Script("decode-0", always);
  RelayOptions options;
  options.max_attempts = 1;  // busy answers do not spend it
  options.max_busy_retries = 4;
  options.retry_backoff_max = absl::Milliseconds(20);
  StartRelay(options);
  auto sink = Start(Text("Once", 4));
  const absl::Status status = sink->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(status.message().find("decode worker 'decode-0'"), std::string::npos) << status;
  EXPECT_EQ(cluster_.decode_calls().size(), 5u);  // the first try and 4 retries
  EXPECT_TRUE(Healthy("decode-0"));  // busy is not gone
}

TEST_F(RelayTest, SlowClientStopsTheDecodeReadsUntilItReadsAgain) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE);
  RelayOptions options;
  options.max_buffered_messages = 2;
  StartRelay(options);
  auto sink = std::make_unique<TestSink>();
  sink->Stall();
  sink->Attach(relay_->Start(Text("Once", 40), *sink, absl::InfiniteFuture()));
  absl::SleepFor(absl::Milliseconds(200));
  // One write outstanding, two buffered, one read that filled the buffer: no more reads.
  EXPECT_LE(cluster_.decode_reads(), 5);
  EXPECT_FALSE(sink->finished());
  sink->Resume();
  ASSERT_TRUE(sink->Wait().ok());
  EXPECT_EQ(sink->token_ids(), ToyTokens(cluster_.decode_calls()[0].prompt_ids, 40));
}

TEST_F(RelayTest, ClientThatStopsReadingIsEndedAfterTheStallTimeoutAndItsDecodeCancelled) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE);
  AddWorker("decode-1", v1::WORKER_ROLE_DECODE);
  RelayOptions options;
  options.max_buffered_messages = 2;
  options.client_stall_timeout = absl::Milliseconds(150);
  StartRelay(options);
  auto sink = std::make_unique<TestSink>();
  sink->Stall();
  const absl::Time start = absl::Now();
  sink->Attach(relay_->Start(Text("Once", 40), *sink, absl::InfiniteFuture()));
  const absl::Status status = sink->Wait();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(150));
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted);
  EXPECT_NE(status.message().find("stopped reading"), std::string::npos) << status;
  EXPECT_TRUE(sink->stream_cancelled());  // the outstanding write could never complete
  EXPECT_EQ(cluster_.decode_calls().size(), 1u);  // not run again elsewhere
  EXPECT_TRUE(Eventually([&] { return cluster_.open_decode_streams() == 0; }));
  EXPECT_EQ(relay_->in_flight(), 0);
}

TEST_F(RelayTest, AClientThatReadsSlowlyButSteadilyIsNotEnded) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE);
  RelayOptions options;
  options.max_buffered_messages = 2;
  options.client_stall_timeout = absl::Milliseconds(300);
  StartRelay(options);
  auto sink = std::make_unique<TestSink>();
  sink->Stall();
  sink->Attach(relay_->Start(Text("Once", 12), *sink, absl::InfiniteFuture()));
  for (int i = 0; i < 8 && !sink->finished(); ++i) {  // a read every 100 ms: 0.8 s in all
    absl::SleepFor(absl::Milliseconds(100));
    sink->Resume();
    sink->Stall();
  }
  sink->Resume();
  ASSERT_TRUE(sink->Wait().ok()) << sink->Wait();
  EXPECT_EQ(sink->token_ids(), ToyTokens(cluster_.decode_calls()[0].prompt_ids, 12));
}

TEST_F(RelayTest, PastTheQueueRequestsAreRefusedWithARetryHint) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE);
  RelayOptions options;
  options.max_in_flight = 1;
  options.max_queued = 1;
  options.max_buffered_messages = 1;
  StartRelay(options);
  auto first = std::make_unique<TestSink>();
  first->Stall();  // holds its slot
  first->Attach(relay_->Start(Text("Once", 30), *first, absl::InfiniteFuture()));
  ASSERT_TRUE(Eventually([&] { return relay_->in_flight() == 1; }));
  auto second = Start(Text("Once", 3));
  ASSERT_TRUE(Eventually([&] { return relay_->queued() == 1; }));
  auto third = Start(Text("Once", 3));
  const absl::Status refused = third->Wait();
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.message().find("retry"), std::string::npos) << refused;
  EXPECT_GT(third->retry_after(), absl::ZeroDuration());
  EXPECT_FALSE(second->finished());

  first->Resume();
  EXPECT_TRUE(first->Wait().ok());
  EXPECT_TRUE(second->Wait().ok());  // fed from the queue as the slot freed
  EXPECT_TRUE(Eventually([&] { return relay_->in_flight() == 0 && relay_->queued() == 0; }));
}

TEST_F(RelayTest, QueueTakesClientsInTurnSoAFloodDoesNotStarveAnotherClient) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE);
  RelayOptions options;
  options.max_in_flight = 1;
  options.max_buffered_messages = 1;
  StartRelay(options);
  auto holder = std::make_unique<TestSink>();
  holder->Stall();  // holds the one slot while the others queue
  holder->Attach(relay_->Start(Text("Once", 30), *holder, absl::InfiniteFuture(), "flood"));
  ASSERT_TRUE(Eventually([&] { return relay_->in_flight() == 1; }));
  std::vector<std::unique_ptr<TestSink>> flood;
  for (int i = 0; i < 5; ++i) flood.push_back(Start(Text("Once", 2), absl::InfiniteFuture(), "flood"));
  auto probe = Start(Text("The dog", 2), absl::InfiniteFuture(), "probe");
  ASSERT_TRUE(Eventually([&] { return relay_->queued() == 6; }));
  holder->Resume();
  ASSERT_TRUE(probe->Wait().ok());
  for (auto& sink : flood) ASSERT_TRUE(sink->Wait().ok());
  // Admission order = Decode call order: the holder, one of the flood, then the probe (its
  // key's turn), although it came after all five.
  std::vector<FakeCluster::Call> decodes = cluster_.decode_calls();
  ASSERT_EQ(decodes.size(), 7u);
  const std::vector<int32_t> probe_prompt = decodes[2].prompt_ids;
  EXPECT_NE(probe_prompt, decodes[1].prompt_ids);
  for (size_t i = 3; i < decodes.size(); ++i) EXPECT_EQ(decodes[i].prompt_ids, decodes[1].prompt_ids);
}

TEST_F(RelayTest, DeadlineWhileQueuedEndsTheRequestSayingWhere) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE);
  RelayOptions options;
  options.max_in_flight = 1;
  options.max_buffered_messages = 1;
  StartRelay(options);
  auto first = std::make_unique<TestSink>();
  first->Stall();
  first->Attach(relay_->Start(Text("Once", 30), *first, absl::InfiniteFuture()));
  auto second = Start(Text("Once", 3), absl::Now() + absl::Milliseconds(100));
  const absl::Status status = second->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(status.message().find("queued"), std::string::npos) << status;
  EXPECT_EQ(relay_->queued(), 0);
  first->Resume();
  EXPECT_TRUE(first->Wait().ok());
}

TEST_F(RelayTest, ClientCancelEndsTheDecodeStream) {
  AddWorker("prefill-0", v1::WORKER_ROLE_PREFILL);
  AddWorker("decode-0", v1::WORKER_ROLE_DECODE);
  RelayOptions options;
  options.max_buffered_messages = 1;
  StartRelay(options);
  auto sink = std::make_unique<TestSink>();
  sink->Stall();
  sink->Attach(relay_->Start(Text("Once", 30), *sink, absl::InfiniteFuture()));
  ASSERT_TRUE(Eventually([&] { return cluster_.decode_reads() >= 1; }));
  sink->Cancel();
  sink->Resume();
  EXPECT_EQ(sink->Wait().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(Eventually([&] { return cluster_.open_decode_streams() == 0; }));
  EXPECT_EQ(relay_->in_flight(), 0);
}

}  // namespace
}  // namespace pdserve::router
