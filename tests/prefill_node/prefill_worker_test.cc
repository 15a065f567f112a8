// The prefill worker end to end in one process: a real PrefillWorker gRPC server over the
// stories260K engine, streaming to a fake decode worker (KvReceiver) that records what arrives.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/engine/engine.h"
#include "common/engine/generator.h"
#include "common/kv/block_key.h"
#include "common/rpc/proto_convert.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "kv_transfer.grpc.pb.h"
#include "common/kv_transfer/grpc/control_stream.h"
#include "common/kv_transfer/grpc/grpc_transport.h"
#include "common/kv_transfer/send_transports.h"
#include "prefill_node/prefill_scheduler.h"
#include "prefill_node/prefill_service.h"
#include "tests/support/stories_engine.h"
#include "tests/support/wait_for.h"
#include "worker.grpc.pb.h"
#include "xxhash.h"

namespace pdserve::prefill {
namespace {

using test_support::WaitFor;

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Prompt ids in [1, vocab) that look nothing like a real text but are deterministic.
std::vector<int32_t> MakePrompt(int n, int vocab, int salt = 0) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(1 + (i * 37 + salt * 11 + 5) % (vocab - 1));
  return ids;
}

// A decode worker's KvReceiver that records every chunk; it can hold calls at a gate (a slow
// receiver) or refuse a request after its first chunk.
class FakeKvReceiver final : public v1::KvReceiver::Service {
 public:
  grpc::Status PushKv(grpc::ServerContext* context, grpc::ServerReader<v1::KvChunk>* reader,
                      v1::PushKvResponse* response) override {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ++n_calls_;
      cv_.notify_all();
      // Bounded: a test that forgets to open the gate fails instead of hanging.
      cv_.wait_for(lock, std::chrono::seconds(20),
                   [&] { return gate_open_ || context->IsCancelled(); });
    }
    v1::KvChunk chunk;
    std::string request_id;
    int blocks = 0;
    while (reader->Read(&chunk)) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (request_id.empty()) request_id = chunk.request_id();
      blocks += chunk.blocks_size();
      chunks_[request_id].push_back(chunk);
      cv_.notify_all();
      if (stop_reading_early_) return grpc::Status::OK;
      if (refuse_) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            "no reservation for request " + request_id);
      }
    }
    response->set_blocks_received(blocks);
    return grpc::Status::OK;
  }

  void CloseGate() {
    std::lock_guard<std::mutex> lock(mutex_);
    gate_open_ = false;
  }
  void OpenGate() {
    std::lock_guard<std::mutex> lock(mutex_);
    gate_open_ = true;
    cv_.notify_all();
  }
  // Answers OK after the first chunk without reading the rest.
  void StopReadingEarly() {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_reading_early_ = true;
  }
  void Refuse() {
    std::lock_guard<std::mutex> lock(mutex_);
    refuse_ = true;
  }
  int n_calls() {
    std::lock_guard<std::mutex> lock(mutex_);
    return n_calls_;
  }
  std::vector<v1::KvChunk> chunks(const std::string& request_id) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = chunks_.find(request_id);
    return it == chunks_.end() ? std::vector<v1::KvChunk>() : it->second;
  }
  // Waits until `request_id` has at least `n` chunks here.
  bool WaitForChunks(const std::string& request_id, size_t n, milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return chunks_[request_id].size() >= n; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool gate_open_ = true;
  bool refuse_ = false;
  bool stop_reading_early_ = false;
  int n_calls_ = 0;
  std::map<std::string, std::vector<v1::KvChunk>> chunks_;
};

std::unique_ptr<grpc::Server> StartServer(grpc::Service* service, int* port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), port);
  builder.RegisterService(service);
  return builder.BuildAndStart();
}

class PrefillWorkerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    worker_engine_ = test_support::LoadStoriesEngine(0).release();
    reference_engine_ = test_support::LoadStoriesEngine(0).release();
  }
  static void TearDownTestSuite() {
    delete worker_engine_;
    delete reference_engine_;
  }

  void SetUp() override {
    ASSERT_NE(worker_engine_, nullptr);
    ASSERT_NE(reference_engine_, nullptr);
    decode_server_ = StartServer(&receiver_, &decode_port_);
    ASSERT_NE(decode_port_, 0);
    decode_address_ = "127.0.0.1:" + std::to_string(decode_port_);
  }

  void StartWorker(PrefillSchedulerOptions options) {
    sinks_.Add(std::make_unique<kv_transfer::GrpcKvSendTransport>(channels_));
    scheduler_ = std::make_unique<PrefillScheduler>(*worker_engine_, sinks_, std::move(options));
    service_ = std::make_unique<PrefillService>(*scheduler_);
    int port = 0;
    worker_server_ = StartServer(service_.get(), &port);
    ASSERT_NE(port, 0);
    stub_ = v1::PrefillWorker::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    receiver_.OpenGate();
    if (worker_server_) worker_server_->Shutdown(std::chrono::system_clock::now() + milliseconds(500));
    if (scheduler_) scheduler_->Shutdown();
    if (decode_server_) decode_server_->Shutdown(std::chrono::system_clock::now() + milliseconds(500));
    // Every case leaves the worker's pool as it found it.
    kv::KvBlockPool& pool = worker_engine_->kv_pool();
    EXPECT_TRUE(WaitFor([&] { return pool.n_free() == pool.n_total(); }, milliseconds(2000)))
        << pool.n_free() << " of " << pool.n_total() << " blocks free";
  }

  v1::PrefillRequest Request(const std::string& id, const std::vector<int32_t>& prompt) {
    v1::PrefillRequest request;
    request.set_request_id(id);
    for (int32_t t : prompt) request.add_prompt_ids(t);
    request.set_decode_address(decode_address_);
    // What a decode worker's reservation would answer.
    const kv::KvLayout& layout = worker_engine_->kv_pool().layout();
    v1::KvHandoff* handoff = request.mutable_handoff();
    handoff->set_transfer_token(std::string(16, 't'));
    *handoff->mutable_layout() = rpc::KvLayoutToProto(layout);
    for (size_t b = 0; b * layout.block_size < prompt.size(); ++b) {
      handoff->add_block_ids(static_cast<int32_t>(100 + b));
    }
    handoff->add_transports()->set_transport("grpc");
    return request;
  }

  grpc::Status Call(const v1::PrefillRequest& request, v1::PrefillResponse* response,
                    milliseconds timeout = milliseconds(20000)) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + timeout);
    return stub_->Prefill(&context, request, response);
  }

  // The first token engine::Generate chooses for `prompt` on the reference engine.
  int32_t ReferenceFirstToken(const std::vector<int32_t>& prompt,
                              const sampling::SamplingParams& params) {
    engine::GenerationRequest request;
    request.prompt_ids = prompt;
    request.max_new_tokens = 1;
    request.ignore_eos = true;
    request.sampling = params;
    absl::StatusOr<engine::GenerationResult> result =
        engine::Generate(*reference_engine_, request, nullptr);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() && !result->output_ids.empty() ? result->output_ids[0] : -1;
  }

  // Checks everything the decode worker got for `id` against a local prefill of `prompt` on the
  // reference engine: block count, order, sizes, keys, checksums and the K/V bytes.
  void ExpectChunksMatchLocalPrefill(const std::string& id, const std::vector<int32_t>& prompt,
                                     int32_t first_token) {
    kv::KvBlockPool& pool = reference_engine_->kv_pool();
    const kv::KvLayout& layout = pool.layout();
    const int bs = layout.block_size;
    const int n = static_cast<int>(prompt.size());
    const int n_blocks = (n + bs - 1) / bs;
    const int chunk_blocks = scheduler_->chunk_blocks();

    // The local prefill: the whole prompt in one forward pass.
    absl::StatusOr<std::vector<kv::BlockId>> blocks = pool.Allocate(n_blocks);
    ASSERT_TRUE(blocks.ok()) << blocks.status();
    kv::BlockTable table;
    table.blocks = *blocks;
    std::vector<engine::BatchToken> batch;
    for (int p = 0; p < n; ++p) batch.push_back({prompt[p], p, &table, false});
    ASSERT_TRUE(reference_engine_->forward().Forward(batch).ok());

    // The chunks of blocks, then the last one with the first token.
    const std::vector<v1::KvChunk> chunks = receiver_.chunks(id);
    ASSERT_EQ(static_cast<int>(chunks.size()), (n_blocks + chunk_blocks - 1) / chunk_blocks + 1);
    const v1::KvLayoutInfo expected_layout = rpc::KvLayoutToProto(worker_engine_->kv_pool().layout());
    EXPECT_EQ(chunks[0].request_id(), id);
    EXPECT_EQ(chunks[0].transfer_token(), std::string(16, 't'));
    EXPECT_EQ(chunks[0].transport(), "grpc");
    EXPECT_EQ(chunks[0].layout().SerializeAsString(), expected_layout.SerializeAsString());
    EXPECT_EQ(chunks[0].n_prompt_tokens(), n);
    const std::vector<kv::BlockKey> keys = kv::FullBlockKeys(prompt, bs);
    ASSERT_EQ(static_cast<int>(keys.size()), n / bs);

    int next_index = 0;
    for (size_t c = 0; c < chunks.size(); ++c) {
      const bool last = c + 1 == chunks.size();
      EXPECT_EQ(chunks[c].last(), last) << "chunk " << c;
      if (last) {
        EXPECT_EQ(chunks[c].first_token(), first_token);
        EXPECT_EQ(chunks[c].blocks_size(), 0);
      }
      for (const v1::KvBlock& block : chunks[c].blocks()) {
        const int b = next_index++;
        ASSERT_EQ(block.index(), b) << "chunk " << c;
        const int n_tokens = std::min(bs, n - b * bs);
        EXPECT_EQ(block.n_tokens(), n_tokens) << "block " << b;
        ASSERT_EQ(block.data().size(), layout.BlockBytes()) << "block " << b;
        EXPECT_EQ(block.checksum(), XXH3_64bits(block.data().data(), block.data().size()));
        if (n_tokens == bs) {
          ASSERT_EQ(block.key().size(), 16u) << "block " << b;
          uint64_t low = 0, high = 0;
          for (int i = 0; i < 8; ++i) {
            low |= uint64_t{static_cast<uint8_t>(block.key()[i])} << (8 * i);
            high |= uint64_t{static_cast<uint8_t>(block.key()[8 + i])} << (8 * i);
          }
          EXPECT_EQ(low, keys[b].low) << "block " << b;
          EXPECT_EQ(high, keys[b].high) << "block " << b;
        } else {
          EXPECT_TRUE(block.key().empty()) << "partial block " << b;
        }
        // Bitwise equal K/V on every valid position; the rest of a partial block is zeros.
        const uint8_t* expected = pool.BlockData(table.blocks[b]);
        const uint8_t* got = reinterpret_cast<const uint8_t*>(block.data().data());
        const size_t valid = static_cast<size_t>(n_tokens) * layout.n_kv_heads *
                             layout.head_dim * layout.ElementBytes();
        for (int l = 0; l < layout.n_layers; ++l) {
          for (size_t offset : {layout.KSlabOffset(l), layout.VSlabOffset(l)}) {
            EXPECT_EQ(std::memcmp(got + offset, expected + offset, valid), 0)
                << "block " << b << " layer " << l << " slab at " << offset;
            for (size_t i = valid; i < layout.SlabBytes(); ++i) {
              if (got[offset + i] != 0) {
                ADD_FAILURE() << "block " << b << ": byte " << offset + i
                              << " past the prompt is not zero";
                break;
              }
            }
          }
        }
      }
    }
    EXPECT_EQ(next_index, n_blocks);
    ASSERT_TRUE(pool.Free(table.blocks).ok());
  }

  static engine::Engine* worker_engine_;
  static engine::Engine* reference_engine_;
  FakeKvReceiver receiver_;
  std::unique_ptr<grpc::Server> decode_server_;
  int decode_port_ = 0;
  std::string decode_address_;
  rpc::ChannelCache channels_;
  kv_transfer::KvSendTransports sinks_{kv_transfer::TransportMode::kAuto};
  std::unique_ptr<PrefillScheduler> scheduler_;
  std::unique_ptr<PrefillService> service_;
  std::unique_ptr<grpc::Server> worker_server_;
  std::unique_ptr<v1::PrefillWorker::Stub> stub_;
};

engine::Engine* PrefillWorkerTest::worker_engine_ = nullptr;
engine::Engine* PrefillWorkerTest::reference_engine_ = nullptr;

TEST_F(PrefillWorkerTest, ChunkedPrefillShipsTheSameKvAsALocalPrefill) {
  StartWorker({});
  ASSERT_EQ(scheduler_->chunk_blocks(), 4);  // 150 tokens = 10 blocks = 3 chunks
  const std::vector<int32_t> prompt = MakePrompt(150, worker_engine_->config().vocab_size);
  v1::PrefillResponse response;
  const grpc::Status status = Call(Request("r150", prompt), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const int32_t expected = ReferenceFirstToken(prompt, {});
  EXPECT_EQ(response.first_token(), expected);
  EXPECT_EQ(response.kv_blocks_sent(), 10);
  EXPECT_GT(response.prefill_seconds(), 0);
  ASSERT_NO_FATAL_FAILURE(ExpectChunksMatchLocalPrefill("r150", prompt, expected));
}

TEST_F(PrefillWorkerTest, ShortAndBlockAlignedPrompts) {
  StartWorker({});
  const int vocab = worker_engine_->config().vocab_size;
  for (int n : {1, 5, 16, 32, 64, 65}) {
    const std::vector<int32_t> prompt = MakePrompt(n, vocab, n);
    const std::string id = "short-" + std::to_string(n);
    v1::PrefillResponse response;
    const grpc::Status status = Call(Request(id, prompt), &response);
    ASSERT_TRUE(status.ok()) << n << ": " << status.error_message();
    const int32_t expected = ReferenceFirstToken(prompt, {});
    EXPECT_EQ(response.first_token(), expected) << n;
    EXPECT_EQ(response.kv_blocks_sent(), (n + 15) / 16) << n;
    ASSERT_NO_FATAL_FAILURE(ExpectChunksMatchLocalPrefill(id, prompt, expected)) << n;
  }
}

TEST_F(PrefillWorkerTest, SampledFirstTokenMatchesGenerate) {
  StartWorker({});
  const std::vector<int32_t> prompt = MakePrompt(40, worker_engine_->config().vocab_size, 3);
  sampling::SamplingParams params;
  params.temperature = 1.3f;
  params.top_k = 50;
  params.top_p = 0.95f;
  params.repetition_penalty = 1.2f;
  int n_distinct_from_greedy = 0;
  const int32_t greedy = ReferenceFirstToken(prompt, {});
  for (uint64_t seed : {1, 2, 3, 4, 5, 6}) {
    params.seed = seed;
    v1::PrefillRequest request = Request("sampled-" + std::to_string(seed), prompt);
    *request.mutable_sampling() = rpc::SamplingToProto(params);
    v1::PrefillResponse response;
    const grpc::Status status = Call(request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.first_token(), ReferenceFirstToken(prompt, params)) << "seed " << seed;
    if (response.first_token() != greedy) ++n_distinct_from_greedy;
  }
  // The sampling parameters reached the sampler (not all seeds can give the greedy token).
  EXPECT_GT(n_distinct_from_greedy, 0);
}

TEST_F(PrefillWorkerTest, ChunksArriveWhileLaterChunksAreComputed) {
  // Before each chunk's forward pass, wait for the previous chunk to reach the decode worker:
  // a worker that sent everything at the end would time out here.
  std::mutex mutex;
  std::vector<std::string> events;
  PrefillSchedulerOptions options;
  options.before_chunk = [&](const std::string& id, int chunk) {
    if (chunk > 0) {
      const bool arrived = receiver_.WaitForChunks(id, chunk, milliseconds(5000));
      std::lock_guard<std::mutex> lock(mutex);
      events.push_back("forward " + std::to_string(chunk) +
                       (arrived ? " after chunk arrived" : " BEFORE chunk arrived"));
    }
  };
  StartWorker(options);
  const std::vector<int32_t> prompt = MakePrompt(150, worker_engine_->config().vocab_size, 9);
  v1::PrefillResponse response;
  const grpc::Status status = Call(Request("overlap", prompt), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::lock_guard<std::mutex> lock(mutex);
  EXPECT_EQ(events, (std::vector<std::string>{"forward 1 after chunk arrived",
                                              "forward 2 after chunk arrived"}));
  EXPECT_EQ(receiver_.chunks("overlap").size(), 4u);  // 3 of blocks, the last with the token
}

TEST_F(PrefillWorkerTest, FullQueueIsResourceExhaustedAtOnce) {
  PrefillSchedulerOptions options;
  options.queue_capacity = 1;
  options.n_executors = 1;
  StartWorker(options);
  receiver_.CloseGate();
  const std::vector<int32_t> prompt = MakePrompt(20, worker_engine_->config().vocab_size);
  auto call_async = [&](const std::string& id) {
    return std::async(std::launch::async, [this, id, prompt] {
      v1::PrefillResponse response;
      grpc::Status status = Call(Request(id, prompt), &response);
      return std::make_pair(status, response);
    });
  };
  auto running = call_async("running");
  ASSERT_TRUE(WaitFor([&] { return scheduler_->load().active_sequences == 1; }));
  auto queued = call_async("queued");
  ASSERT_TRUE(WaitFor([&] { return scheduler_->load().queue_length == 1; }));

  const auto start = Clock::now();
  v1::PrefillResponse response;
  const grpc::Status full = Call(Request("rejected", prompt), &response);
  EXPECT_LT(Clock::now() - start, milliseconds(2000));
  EXPECT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(full.error_message().find("queue is full"), std::string::npos) << full.error_message();

  receiver_.OpenGate();
  const int32_t expected = ReferenceFirstToken(prompt, {});
  for (auto* f : {&running, &queued}) {
    ASSERT_EQ(f->wait_for(std::chrono::seconds(20)), std::future_status::ready);
    auto [status, r] = f->get();
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(r.first_token(), expected);
  }
  EXPECT_TRUE(receiver_.chunks("rejected").empty());
}

TEST_F(PrefillWorkerTest, InvalidInputIsInvalidArgumentNamingTheProblem) {
  StartWorker({});
  const int vocab = worker_engine_->config().vocab_size;
  const int context = static_cast<int>(worker_engine_->config().context_length);
  struct Case {
    std::string name;
    v1::PrefillRequest request;
    std::string message;
  };
  std::vector<Case> cases;
  const std::vector<int32_t> ok_prompt = MakePrompt(8, vocab);
  cases.push_back({"empty prompt", Request("a", {}), "prompt is empty"});
  cases.push_back({"id too large", Request("b", {1, 2, vocab}), "outside the vocabulary"});
  cases.push_back({"negative id", Request("c", {1, -3}), "outside the vocabulary"});
  cases.push_back({"prompt fills the context", Request("d", MakePrompt(context, vocab)),
                   "context length"});
  cases.push_back({"prompt over the context", Request("e", MakePrompt(context + 40, vocab)),
                   "context length"});
  {
    v1::PrefillRequest r = Request("f", ok_prompt);
    r.mutable_sampling()->set_temperature(-1);
    cases.push_back({"negative temperature", r, "temperature"});
  }
  {
    v1::PrefillRequest r = Request("g", ok_prompt);
    r.mutable_sampling()->set_top_p(0);
    cases.push_back({"top_p 0", r, "top_p"});
  }
  {
    v1::PrefillRequest r = Request("h", ok_prompt);
    r.mutable_sampling()->set_top_k(-2);
    cases.push_back({"negative top_k", r, "top_k"});
  }
  {
    v1::PrefillRequest r = Request("i", ok_prompt);
    r.mutable_sampling()->set_repetition_penalty(0);
    cases.push_back({"zero penalty", r, "repetition_penalty"});
  }
  {
    v1::PrefillRequest r = Request("j", ok_prompt);
    r.clear_decode_address();
    cases.push_back({"no decode address", r, "decode_address is empty"});
  }
  cases.push_back({"no request id", Request("", ok_prompt), "request_id is empty"});
  {
    v1::PrefillRequest r = Request("k", ok_prompt);
    r.clear_handoff();
    cases.push_back({"no handoff", r, "no KV handoff"});
  }
  {
    v1::PrefillRequest r = Request("l", ok_prompt);
    r.mutable_handoff()->add_block_ids(7);
    cases.push_back({"a target block too many", r, "target blocks"});
  }
  for (const Case& c : cases) {
    v1::PrefillResponse response;
    const grpc::Status status = Call(c.request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name;
    EXPECT_NE(status.error_message().find(c.message), std::string::npos)
        << c.name << ": " << status.error_message();
  }
  EXPECT_EQ(receiver_.n_calls(), 0);  // nothing was sent for a bad request
}

TEST_F(PrefillWorkerTest, UnreachableDecodeWorkerIsUnavailableNamingItsAddress) {
  StartWorker({});
  // A port that was just free: nothing listens there.
  FakeKvReceiver unused;
  int closed_port = 0;
  StartServer(&unused, &closed_port)->Shutdown();
  const std::string address = "127.0.0.1:" + std::to_string(closed_port);
  v1::PrefillRequest request = Request("nowhere", MakePrompt(100, worker_engine_->config().vocab_size));
  request.set_decode_address(address);
  v1::PrefillResponse response;
  const auto start = Clock::now();
  const grpc::Status status = Call(request, &response);
  EXPECT_LT(Clock::now() - start, milliseconds(5000));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_NE(status.error_message().find(address), std::string::npos) << status.error_message();
  // The worker still serves the next request.
  const grpc::Status next = Call(Request("after", MakePrompt(10, 100)), &response);
  EXPECT_TRUE(next.ok()) << next.error_message();
}

TEST_F(PrefillWorkerTest, DecodeWorkerThatRefusesTheKvFailsThePrefillWithItsCode) {
  StartWorker({});
  receiver_.Refuse();
  v1::PrefillResponse response;
  const grpc::Status status =
      Call(Request("refused", MakePrompt(150, worker_engine_->config().vocab_size)), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  EXPECT_NE(status.error_message().find(decode_address_), std::string::npos)
      << status.error_message();
  EXPECT_NE(status.error_message().find("no reservation for request refused"), std::string::npos)
      << status.error_message();
}

TEST_F(PrefillWorkerTest, DecodeWorkerThatStopsReadingEarlyIsAnError) {
  StartWorker({});
  receiver_.StopReadingEarly();
  v1::PrefillResponse response;
  const grpc::Status status =
      Call(Request("partial", MakePrompt(150, worker_engine_->config().vocab_size)), &response);
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(status.error_code() == grpc::StatusCode::INTERNAL ||
              status.error_code() == grpc::StatusCode::DATA_LOSS)
      << status.error_code() << " " << status.error_message();
  EXPECT_NE(status.error_message().find(decode_address_), std::string::npos)
      << status.error_message();
}

TEST_F(PrefillWorkerTest, DeadlineStopsRunningWorkAndSkipsQueuedWork) {
  PrefillSchedulerOptions options;
  options.n_executors = 1;
  StartWorker(options);
  receiver_.CloseGate();
  const std::vector<int32_t> prompt = MakePrompt(150, worker_engine_->config().vocab_size);
  auto late = std::async(std::launch::async, [&] {
    v1::PrefillResponse response;
    return Call(Request("late", prompt), &response, milliseconds(1500));
  });
  ASSERT_TRUE(WaitFor([&] { return scheduler_->load().active_sequences == 1; }));
  // Queued behind "late"; its deadline passes while it waits.
  v1::PrefillResponse response;
  const grpc::Status skipped = Call(Request("skipped", prompt), &response, milliseconds(300));
  EXPECT_EQ(skipped.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_EQ(late.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(late.get().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // The worker lets go of both: blocks free, queue empty, nothing running.
  kv::KvBlockPool& pool = worker_engine_->kv_pool();
  ASSERT_TRUE(WaitFor([&] {
    const PrefillLoad load = scheduler_->load();
    return load.active_sequences == 0 && load.queue_length == 0 && pool.n_free() == pool.n_total();
  }));
  receiver_.OpenGate();
  // The skipped request never reached the decode worker, and the worker serves the next one.
  const grpc::Status next = Call(Request("next", MakePrompt(10, 100)), &response);
  EXPECT_TRUE(next.ok()) << next.error_message();
  EXPECT_TRUE(receiver_.chunks("skipped").empty());
  EXPECT_EQ(receiver_.n_calls(), 2);  // "late" and "next"
}

}  // namespace
}  // namespace pdserve::prefill
