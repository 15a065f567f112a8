// The decode worker under load it cannot serve at once: many Decode calls waiting for KV blocks
// hold no thread each, are granted in arrival order as blocks come back, and past the waiter
// bound are refused at once; a consumer that stops taking its tokens leaves the batch (the
// others keep their pace) and is cancelled after the stalled-stream timeout.

#include <algorithm>
#include <atomic>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/kv_transfer/grpc/kv_receiver_service.h"
#include "common/kv_transfer/kv_blocks.h"
#include "common/kv_transfer/receive_session.h"
#include "decode_node/decode_scheduler.h"
#include "decode_node/decode_service.h"
#include "grpcpp/grpcpp.h"
#include "common/rpc/proto_convert.h"
#include "gtest/gtest.h"
#include "tests/decode_node/decode_test_support.h"
#include "tests/support/stories_engine.h"
#include "tests/support/wait_for.h"

namespace pdserve::decode {
namespace {

using test_support::WaitFor;

// Threads of this process, from /proc/self/status; -1 when unreadable.
int ThreadCount() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

// Samples ThreadCount() every few ms until destroyed; peak() is the most seen.
class ThreadCountSampler {
 public:
  ThreadCountSampler()
      : thread_([this] {
          while (!stop_) {
            peak_ = std::max(peak_.load(), ThreadCount());
            absl::SleepFor(absl::Milliseconds(5));
          }
        }) {}
  ~ThreadCountSampler() {
    stop_ = true;
    thread_.join();
  }
  int peak() const { return peak_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> peak_{0};
  std::thread thread_;
};

// A Decode call on the client's callback API (no client thread per call either): records when
// `reserved` arrives (a global order) and cancels the call there, freeing the blocks for the
// next waiter.
class WaitingCall final : public grpc::ClientReadReactor<v1::DecodeEvent> {
 public:
  WaitingCall(v1::DecodeWorker::Stub& stub, const v1::DecodeRequest& request,
              std::atomic<int>& grants)
      : request_(request), grants_(grants) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
    stub.async()->Decode(&context_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (event_.has_reserved() && grant_order_ < 0) {
      grant_order_ = grants_.fetch_add(1);
      context_.TryCancel();
    }
    StartRead(&event_);
  }
  void OnDone(const grpc::Status& status) override {
    status_ = status;
    done_at_ = absl::Now();
    done_.Notify();
  }
  bool WaitDone(absl::Duration timeout) { return done_.WaitForNotificationWithTimeout(timeout); }
  const grpc::Status& status() const { return status_; }  // after WaitDone
  int grant_order() const { return grant_order_; }       // after WaitDone; -1: never granted
  absl::Time done_at() const { return done_at_; }

 private:
  grpc::ClientContext context_;
  const v1::DecodeRequest request_;
  std::atomic<int>& grants_;
  v1::DecodeEvent event_;
  int grant_order_ = -1;
  grpc::Status status_;
  absl::Time done_at_;
  absl::Notification done_;
};

TEST(DecodeBackpressureTest, WaitersHoldNoThreadAreGrantedInOrderAndTheBoundRefusesAtOnce) {
  constexpr int kWaiters = 450;
  constexpr int kRefused = 50;
  ThreadCountSampler threads;
  // 64 tokens: 4 blocks, and every request below needs all of them.
  std::unique_ptr<engine::Engine> engine = test_support::LoadStoriesEngine(64);
  ASSERT_NE(engine, nullptr);
  SchedulerOptions options;
  options.max_waiting_reservations = kWaiters;
  DecodeScheduler scheduler(engine->config(), engine->kv_pool(), engine->forward(),
                            engine->tokenizer().end_of_generation_ids(), options);
  DecodeWorkerService service(scheduler, DecodeServiceOptions{});
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = v1::DecodeWorker::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));

  auto request = [](const std::string& id) {
    v1::DecodeRequest r;
    r.set_request_id(id);
    for (int i = 0; i < 4; ++i) r.add_prompt_ids(5);
    r.set_max_tokens(60);  // 4 + 60 positions: the whole pool
    return r;
  };
  DecodeSpec blocker_spec;
  blocker_spec.request_id = "blocker";
  blocker_spec.prompt_ids.assign(4, 5);
  blocker_spec.max_tokens = 60;
  ASSERT_TRUE(scheduler.Reserve(blocker_spec, absl::Now() + absl::Seconds(5), {}).ok());
  ASSERT_EQ(scheduler.Load().free_kv_blocks, 0);

  std::atomic<int> grants{0};
  std::vector<std::unique_ptr<WaitingCall>> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    waiters.push_back(
        std::make_unique<WaitingCall>(*stub, request("w" + std::to_string(i)), grants));
    // One at a time, so that the order they arrive in is the order they were started in.
    ASSERT_TRUE(WaitFor([&] { return scheduler.Load().queue_length == i + 1; })) << i;
  }
  // Past the bound: refused at once, naming the limit and saying to retry.
  std::vector<std::unique_ptr<WaitingCall>> refused;
  const absl::Time refused_start = absl::Now();
  for (int i = 0; i < kRefused; ++i) {
    refused.push_back(
        std::make_unique<WaitingCall>(*stub, request("r" + std::to_string(i)), grants));
  }
  for (const auto& call : refused) {
    ASSERT_TRUE(call->WaitDone(absl::Seconds(10)));
    EXPECT_EQ(call->status().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << call->status().error_message();
    EXPECT_NE(call->status().error_message().find("max-waiting-reservations"), std::string::npos)
        << call->status().error_message();
    EXPECT_NE(call->status().error_message().find("retry"), std::string::npos);
    EXPECT_LT(call->done_at() - refused_start, absl::Seconds(2));
  }
  EXPECT_EQ(scheduler.Load().queue_length, kWaiters);

  // Blocks come back: each waiter in turn gets them, and gives them back by cancelling.
  scheduler.Release("blocker");
  for (int i = 0; i < kWaiters; ++i) {
    ASSERT_TRUE(waiters[i]->WaitDone(absl::Seconds(60))) << i;
    EXPECT_EQ(waiters[i]->grant_order(), i);
    EXPECT_EQ(waiters[i]->status().error_code(), grpc::StatusCode::CANCELLED)
        << waiters[i]->status().error_message();
  }
  EXPECT_TRUE(WaitFor([&] { return scheduler.Load().free_kv_blocks == 4; }));
  EXPECT_EQ(scheduler.Load().queue_length, 0);

  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int bound = 64 + 8 * cores;
  std::cout << "peak threads with " << kWaiters << " waiting Decode calls: " << threads.peak()
            << " (bound " << bound << ")\n";
  EXPECT_GT(threads.peak(), 0);
  EXPECT_LE(threads.peak(), bound);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

TEST(DecodeBackpressureTest, WaiterWhoseCallEndsLeavesTheQueueAtOnce) {
  std::unique_ptr<engine::Engine> engine = test_support::LoadStoriesEngine(64);
  ASSERT_NE(engine, nullptr);
  DecodeScheduler scheduler(engine->config(), engine->kv_pool(), engine->forward(),
                            engine->tokenizer().end_of_generation_ids(), SchedulerOptions{});
  auto spec = [](const std::string& id) {
    DecodeSpec s;
    s.request_id = id;
    s.prompt_ids.assign(4, 5);
    s.max_tokens = 60;
    return s;
  };
  ASSERT_TRUE(scheduler.Reserve(spec("blocker"), absl::Now() + absl::Seconds(5), {}).ok());
  // A deadline passing: answered by the scheduler's timer, not by a poll of the caller.
  absl::Notification answered;
  absl::Status answer;
  absl::Time answered_at;
  ReserveCall call;
  call.spec = spec("late");
  call.reserve_deadline = absl::Now() + absl::Milliseconds(100);
  call.on_reserved = [&](absl::StatusOr<Reservation> r) {
    answer = r.status();
    answered_at = absl::Now();
    answered.Notify();
  };
  const absl::Time start = absl::Now();
  ASSERT_TRUE(scheduler.StartReserve(std::move(call)).ok());
  EXPECT_EQ(scheduler.Load().queue_length, 1);
  ASSERT_TRUE(answered.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_EQ(answer.code(), absl::StatusCode::kDeadlineExceeded) << answer;
  EXPECT_LT(answered_at - start, absl::Milliseconds(500));
  EXPECT_EQ(scheduler.Load().queue_length, 0);

  // A caller going away (Release) leaves the FIFO, and the one behind it moves up.
  bool gone_answered = false;
  ReserveCall gone;
  gone.spec = spec("gone");
  gone.on_reserved = [&](absl::StatusOr<Reservation>) { gone_answered = true; };
  ASSERT_TRUE(scheduler.StartReserve(std::move(gone)).ok());
  absl::Notification next_granted;
  ReserveCall next;
  next.spec = spec("next");
  next.on_reserved = [&](absl::StatusOr<Reservation> r) {
    EXPECT_TRUE(r.ok()) << r.status();
    next_granted.Notify();
  };
  ASSERT_TRUE(scheduler.StartReserve(std::move(next)).ok());
  EXPECT_EQ(scheduler.Load().queue_length, 2);
  scheduler.Release("gone");
  EXPECT_EQ(scheduler.Load().queue_length, 1);
  scheduler.Release("blocker");
  ASSERT_TRUE(next_granted.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_FALSE(gone_answered);
  scheduler.Release("next");
  EXPECT_EQ(engine->kv_pool().n_free(), 4);
}

// A sequence whose consumer takes no tokens: it leaves the batch with max_undelivered_tokens
// untaken while another keeps its step rate, rejoins when they are taken, and is cancelled after
// the stalled-stream timeout with its blocks freed.
TEST(DecodeBackpressureTest, SlowConsumerLeavesTheBatchAndIsCancelledAfterTheTimeout) {
  std::unique_ptr<engine::Engine> engine = test_support::LoadStoriesEngine(1024);
  ASSERT_NE(engine, nullptr);
  const int64_t total = engine->kv_pool().n_total();
  SchedulerOptions options;
  options.min_step_duration = absl::Milliseconds(2);
  options.max_undelivered_tokens = 8;
  options.stalled_stream_timeout = absl::Milliseconds(500);
  DecodeScheduler scheduler(engine->config(), engine->kv_pool(), engine->forward(),
                            engine->tokenizer().end_of_generation_ids(), options);
  const std::string zero_block(engine->kv_pool().layout().BlockBytes(), '\0');
  const absl::Span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(zero_block.data()),
                                        zero_block.size());
  auto start = [&](const std::string& id, int max_tokens, EventsCallback on_events) {
    DecodeSpec spec;
    spec.request_id = id;
    spec.prompt_ids.assign(4, 5);
    spec.max_tokens = max_tokens;
    spec.ignore_eos = true;
    absl::Notification granted;
    std::string token;
    ReserveCall call;
    call.spec = spec;
    call.on_reserved = [&](absl::StatusOr<Reservation> r) {
      ASSERT_TRUE(r.ok()) << r.status();
      token = r->transfer_token;
      granted.Notify();
    };
    call.on_events = std::move(on_events);
    ASSERT_TRUE(scheduler.StartReserve(std::move(call)).ok());
    ASSERT_TRUE(granted.WaitForNotificationWithTimeout(absl::Seconds(5)));
    absl::StatusOr<kv_transfer::KvReceiveSession> session =
        kv_transfer::KvReceiveSession::Open(scheduler, engine->kv_pool(), token);
    ASSERT_TRUE(session.ok()) << session.status();
    const kv_transfer::IncomingBlock block{{0, 4, kv_transfer::BlockChecksum(bytes)}, bytes};
    ASSERT_TRUE(session->ReceiveCopies({block}).ok());
    ASSERT_TRUE(session->Complete(7).ok());
  };

  std::atomic<int> slow_notifications{0};
  start("slow", 400, [&] { ++slow_notifications; });
  // The other consumer takes every token as soon as it is told of it.
  absl::Mutex mu;
  std::vector<absl::Time> fast_arrivals;  // guarded by mu
  start("fast", 450, [&] {
    while (std::optional<SequenceEvent> e = scheduler.TakeEvent("fast")) {
      absl::MutexLock lock(&mu);
      if (e->kind == SequenceEvent::Kind::kToken) fast_arrivals.push_back(absl::Now());
    }
  });

  ASSERT_TRUE(WaitFor([&] { return scheduler.StateOf("slow") == SequenceState::kStalled; }));
  EXPECT_GE(slow_notifications.load(), 1);
  const absl::Time stalled_at = absl::Now();
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(scheduler.StateOf("slow"), SequenceState::kStalled);  // still out, blocks kept
  EXPECT_LT(scheduler.Load().free_kv_blocks, total - 1);
  {
    absl::MutexLock lock(&mu);
    const int64_t during = std::count_if(fast_arrivals.begin(), fast_arrivals.end(),
                                         [&](absl::Time t) { return t >= stalled_at; });
    // Steps of >= 2 ms: about 100 in 200 ms; a batch held up by the slow one would make none.
    EXPECT_GE(during, 40) << "the fast sequence lost its step rate";
  }

  // Taking the untaken tokens puts it back in the batch...
  int taken = 0;
  while (std::optional<SequenceEvent> e = scheduler.TakeEvent("slow")) {
    EXPECT_EQ(e->kind, SequenceEvent::Kind::kToken);
    EXPECT_EQ(e->index, taken + 1);
    ++taken;
  }
  EXPECT_EQ(taken, 8);
  // ... it decodes 8 more and leaves again; then nobody takes them for the timeout.
  ASSERT_TRUE(WaitFor([&] {
    return scheduler.StateOf("slow") == SequenceState::kStalled;
  }));
  const absl::Time stalled_again = absl::Now();
  ASSERT_TRUE(WaitFor([&] { return scheduler.StateOf("slow") == SequenceState::kCancelled; }));
  EXPECT_GE(absl::Now() - stalled_again, absl::Milliseconds(400));
  std::vector<SequenceEvent> rest;
  while (std::optional<SequenceEvent> e = scheduler.TakeEvent("slow")) rest.push_back(*e);
  ASSERT_EQ(rest.size(), 9u);  // the 8 untaken tokens, then the verdict
  EXPECT_EQ(rest[0].index, 9);
  EXPECT_EQ(rest.back().kind, SequenceEvent::Kind::kError);
  EXPECT_EQ(rest.back().error.code(), absl::StatusCode::kAborted) << rest.back().error;
  EXPECT_NE(rest.back().error.message().find("stalled-stream-timeout"), std::string::npos)
      << rest.back().error;
  scheduler.Release("slow");

  ASSERT_TRUE(WaitFor([&] { return scheduler.StateOf("fast") == SequenceState::kFinished; },
                      std::chrono::seconds(20)));
  scheduler.Release("fast");
  EXPECT_EQ(scheduler.Load().free_kv_blocks, total);
}

}  // namespace
}  // namespace pdserve::decode

namespace pdserve::decode {
namespace {

using test_support::WaitFor;

// Over gRPC: a client that reads `reserved`, sends the KV, then never reads again. Its writes
// stop once the HTTP/2 windows fill (kept small here), its sequence leaves the batch, and after
// the (shortened) timeout the sequence is cancelled and its blocks freed; when the client reads
// at last it gets the tokens that were written, then ABORTED.
TEST(DecodeBackpressureTest, ClientThatStopsReadingIsStalledThenAborted) {
  std::unique_ptr<engine::Engine> prefill = test_support::LoadStoriesEngine(0);
  std::unique_ptr<engine::Engine> engine = test_support::LoadStoriesEngine(1024);
  ASSERT_NE(engine, nullptr);
  ASSERT_NE(prefill, nullptr);
  const int64_t total = engine->kv_pool().n_total();
  SchedulerOptions options;
  options.stalled_stream_timeout = absl::Milliseconds(500);
  DecodeScheduler scheduler(engine->config(), engine->kv_pool(), engine->forward(),
                            engine->tokenizer().end_of_generation_ids(), options);
  DecodeWorkerService service(scheduler, DecodeServiceOptions{});
  kv_transfer::KvReceiverService kv_service(scheduler, engine->kv_pool());
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  builder.RegisterService(&kv_service);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_WRITE_BUFFER_SIZE, 1024);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 64 << 20);
  auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                           grpc::InsecureChannelCredentials(), args);
  auto decode = v1::DecodeWorker::NewStub(channel);
  auto kv = v1::KvReceiver::NewStub(channel);

  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
  const testing::LocalPrefill local = testing::PrefillLocally(*prefill, prompt, {});
  v1::DecodeRequest request;
  request.set_request_id("unread");
  for (int32_t t : prompt) request.add_prompt_ids(t);
  request.set_max_tokens(500);
  request.set_ignore_eos(true);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  std::unique_ptr<grpc::ClientReader<v1::DecodeEvent>> reader = decode->Decode(&context, request);
  v1::DecodeEvent event;
  ASSERT_TRUE(reader->Read(&event));
  ASSERT_TRUE(event.has_reserved());
  std::vector<v1::KvChunk> chunks =
      testing::MakeChunks("unread", rpc::KvLayoutToProto(engine->kv_pool().layout()), local);
  chunks.front().set_transfer_token(event.reserved().handoff().transfer_token());
  ASSERT_TRUE(testing::PushChunks(*kv, chunks).ok());

  // No more reads: the sequence leaves the batch long before its 500 tokens, keeping its blocks.
  ASSERT_TRUE(WaitFor([&] { return scheduler.StateOf("unread") == SequenceState::kStalled; }))
      << SequenceStateName(scheduler.StateOf("unread"));
  EXPECT_LT(scheduler.Load().free_kv_blocks, total);
  // Then the timeout ends it and frees them, the call still open.
  ASSERT_TRUE(WaitFor([&] { return scheduler.Load().free_kv_blocks == total; }));
  EXPECT_EQ(scheduler.StateOf("unread"), SequenceState::kCancelled);

  int n_tokens = 0;
  while (reader->Read(&event)) {
    EXPECT_TRUE(event.has_token());
    ++n_tokens;
  }
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED) << status.error_message();
  EXPECT_NE(status.error_message().find("stalled-stream-timeout"), std::string::npos)
      << status.error_message();
  EXPECT_GT(n_tokens, 0);
  EXPECT_LT(n_tokens, 499);
  std::cout << "tokens written before the stream stalled: " << n_tokens << "\n";
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

}  // namespace
}  // namespace pdserve::decode
