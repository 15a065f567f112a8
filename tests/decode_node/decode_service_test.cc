// The decode worker end to end over gRPC (in-process server on 127.0.0.1, stories260K): the
// prompt's KV is computed by a local engine playing the prefill worker and pushed with a real
// KvReceiver.PushKv client; the tokens must equal single-process engine::Generate exactly.

#include <atomic>
#include <chrono>
#include <cmath>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "common/engine/generator.h"
#include "common/rpc/proto_convert.h"
#include "decode_node/decode_scheduler.h"
#include "common/kv_transfer/grpc/kv_receiver_service.h"
#include "common/kv_transfer/transfer_token.h"
#include "decode_node/decode_service.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/decode_node/decode_test_support.h"
#include "tests/support/stories_engine.h"

namespace pdserve::decode {
namespace {

using ::pdserve::decode::testing::DecodeOutcome;
using ::pdserve::decode::testing::FullOutput;
using ::pdserve::decode::testing::LocalPrefill;
using ::pdserve::decode::testing::MakeChunks;
using ::pdserve::decode::testing::RunDecode;
using ::pdserve::decode::testing::RunOptions;

constexpr char kLongPrompt[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "park with her dog.";

sampling::SamplingParams Seeded(uint64_t seed) {
  sampling::SamplingParams params;
  params.temperature = 0.8f;
  params.top_p = 0.9f;
  params.seed = seed;
  return params;
}

class DecodeServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    prefill_engine_ = test_support::LoadStoriesEngine(0).release();
    worker_engine_ = test_support::LoadStoriesEngine(8192).release();
  }
  static void TearDownTestSuite() {
    delete prefill_engine_;
    delete worker_engine_;
    prefill_engine_ = nullptr;
    worker_engine_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(prefill_engine_, nullptr);
    ASSERT_NE(worker_engine_, nullptr);
    SchedulerOptions options;
    options.max_batch = 32;
    // stories260K decodes a token in well under a millisecond: pace the steps so that requests
    // overlap and deadlines can pass mid-generation.
    options.min_step_duration = absl::Milliseconds(2);
    // KvThatNeverArrivesFailsWhenTheLeaseRunsOut relies on the hard cap.
    options.kv_lease.idle = absl::Seconds(2);
    options.kv_lease.max = absl::Seconds(3);
    // A sender that names another model is refused (one that names none is not checked).
    options.model_fingerprint = std::string(32, '0');
    scheduler_ = std::make_unique<DecodeScheduler>(
        worker_engine_->config(), worker_engine_->kv_pool(), worker_engine_->forward(),
        worker_engine_->tokenizer().end_of_generation_ids(), options);
    decode_service_ = std::make_unique<DecodeWorkerService>(*scheduler_, DecodeServiceOptions{});
    kv_service_ = std::make_unique<kv_transfer::KvReceiverService>(*scheduler_,
                                                                   worker_engine_->kv_pool());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(decode_service_.get());
    builder.RegisterService(kv_service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port, 0);
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                       grpc::InsecureChannelCredentials());
    decode_stub_ = v1::DecodeWorker::NewStub(channel);
    kv_stub_ = v1::KvReceiver::NewStub(channel);
    layout_ = rpc::KvLayoutToProto(worker_engine_->kv_pool().layout());
    free_at_start_ = scheduler_->Load().free_kv_blocks;
    EXPECT_EQ(free_at_start_, scheduler_->Load().total_kv_blocks);
  }

  void TearDown() override {
    // Whatever a test did, every block comes back and no prompt was recomputed.
    EXPECT_TRUE(WaitForAllBlocksFree(absl::Seconds(10)))
        << "free " << scheduler_->Load().free_kv_blocks << " of " << free_at_start_;
    const SchedulerLoad load = scheduler_->Load();
    EXPECT_EQ(load.active_sequences, 0);
    EXPECT_EQ(load.queue_length, 0);
    EXPECT_EQ(rpc::WorkerLoadToProto(load).free_kv_blocks(), free_at_start_);
    EXPECT_EQ(scheduler_->prompt_tokens_computed(), 0);
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server_.reset();
    scheduler_.reset();
  }

  bool WaitForAllBlocksFree(absl::Duration timeout) {
    const absl::Time until = absl::Now() + timeout;
    while (absl::Now() < until) {
      if (scheduler_->Load().free_kv_blocks == free_at_start_) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return scheduler_->Load().free_kv_blocks == free_at_start_;
  }

  std::vector<int32_t> Encode(const std::string& text) {
    absl::StatusOr<std::vector<int32_t>> ids =
        prefill_engine_->tokenizer().Encode(text, tokenizer::EncodeOptions{});
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<int32_t>{1};
  }

  static v1::DecodeRequest MakeRequest(const std::string& id, const std::vector<int32_t>& prompt,
                                       int max_tokens, const sampling::SamplingParams& params,
                                       bool ignore_eos = false) {
    v1::DecodeRequest request;
    request.set_request_id(id);
    for (int32_t t : prompt) request.add_prompt_ids(t);
    request.set_max_tokens(max_tokens);
    *request.mutable_sampling() = rpc::SamplingToProto(params);
    request.set_ignore_eos(ignore_eos);
    return request;
  }

  engine::GenerationResult Reference(const std::vector<int32_t>& prompt, int max_tokens,
                                     const sampling::SamplingParams& params,
                                     bool ignore_eos = false) {
    engine::GenerationRequest request;
    request.prompt_ids = prompt;
    request.max_new_tokens = max_tokens;
    request.sampling = params;
    request.ignore_eos = ignore_eos;
    absl::StatusOr<engine::GenerationResult> result =
        engine::Generate(*prefill_engine_, request, nullptr);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : engine::GenerationResult{};
  }

  LocalPrefill Prefill(const std::vector<int32_t>& prompt, const sampling::SamplingParams& p) {
    return testing::PrefillLocally(*prefill_engine_, prompt, p);
  }

  DecodeOutcome Run(const v1::DecodeRequest& request, const std::vector<v1::KvChunk>& chunks,
                    const RunOptions& options = {}) {
    return RunDecode(*decode_stub_, *kv_stub_, request, chunks, options);
  }

  // Runs one request through the worker and checks it against Generate.
  void ExpectLossless(const std::string& id, const std::string& text, int max_tokens,
                      const sampling::SamplingParams& params) {
    const std::vector<int32_t> prompt = Encode(text);
    const engine::GenerationResult reference = Reference(prompt, max_tokens, params);
    ASSERT_GT(reference.output_ids.size(), 1u) << "the reference must decode past prefill";
    const LocalPrefill prefill = Prefill(prompt, params);
    const DecodeOutcome out =
        Run(MakeRequest(id, prompt, max_tokens, params), MakeChunks(id, layout_, prefill));
    ASSERT_TRUE(out.status.ok()) << out.status.error_message();
    EXPECT_TRUE(out.push_status.ok()) << out.push_status.error_message();
    EXPECT_TRUE(out.reserved);
    EXPECT_EQ(FullOutput(out, prefill.first_token), reference.output_ids) << text;
    EXPECT_EQ(out.finish_reason, request::FinishReasonName(reference.finish));
    EXPECT_EQ(out.completion_tokens, static_cast<int32_t>(reference.output_ids.size()));
    EXPECT_EQ(out.prompt_tokens_computed, 0);
    for (size_t i = 0; i < out.indices.size(); ++i) EXPECT_EQ(out.indices[i], int(i) + 1);
  }

  static engine::Engine* prefill_engine_;
  static engine::Engine* worker_engine_;
  std::unique_ptr<DecodeScheduler> scheduler_;
  std::unique_ptr<DecodeWorkerService> decode_service_;
  std::unique_ptr<kv_transfer::KvReceiverService> kv_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::DecodeWorker::Stub> decode_stub_;
  std::unique_ptr<v1::KvReceiver::Stub> kv_stub_;
  v1::KvLayoutInfo layout_;
  int64_t free_at_start_ = 0;
};

engine::Engine* DecodeServiceTest::prefill_engine_ = nullptr;
engine::Engine* DecodeServiceTest::worker_engine_ = nullptr;

TEST_F(DecodeServiceTest, GreedyTokensEqualSingleProcessGenerate) {
  ExpectLossless("greedy-1", "Once upon a time", 60, {});
  ExpectLossless("greedy-2", "The little dog", 60, {});
  ExpectLossless("greedy-3", kLongPrompt, 40, {});
}

TEST_F(DecodeServiceTest, SeededSamplingEqualsSingleProcessGenerate) {
  ExpectLossless("seeded-1", "Once upon a time", 60, Seeded(7));
  ExpectLossless("seeded-2", "Lily wanted to", 60, Seeded(12345));
}

TEST_F(DecodeServiceTest, TokensAloneEqualTokensBesideSevenOthers) {
  const std::vector<std::string> texts = {
      "Once upon a time", "The little dog", "Lily wanted to", "Tom and his mom",
      "One day, a bird", "The sun was", kLongPrompt, "There was a big"};
  std::vector<std::vector<int32_t>> prompts;
  std::vector<sampling::SamplingParams> params;
  std::vector<LocalPrefill> prefills;
  std::vector<engine::GenerationResult> references;
  for (size_t i = 0; i < texts.size(); ++i) {
    prompts.push_back(Encode(texts[i]));
    params.push_back(i % 2 == 0 ? sampling::SamplingParams{} : Seeded(100 + i));
    prefills.push_back(Prefill(prompts[i], params[i]));
    references.push_back(Reference(prompts[i], 40, params[i]));
  }
  const DecodeOutcome alone = Run(MakeRequest("alone", prompts[0], 40, params[0]),
                                  MakeChunks("alone", layout_, prefills[0]));
  ASSERT_TRUE(alone.status.ok()) << alone.status.error_message();

  std::vector<std::future<DecodeOutcome>> together;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string id = "together-" + std::to_string(i);
    const v1::DecodeRequest request = MakeRequest(id, prompts[i], 40, params[i]);
    const std::vector<v1::KvChunk> chunks = MakeChunks(id, layout_, prefills[i]);
    together.push_back(std::async(std::launch::async, [this, request, chunks] {
      return Run(request, chunks);
    }));
  }
  for (size_t i = 0; i < together.size(); ++i) {
    ASSERT_EQ(together[i].wait_for(std::chrono::seconds(60)), std::future_status::ready);
    const DecodeOutcome out = together[i].get();
    ASSERT_TRUE(out.status.ok()) << i << ": " << out.status.error_message();
    EXPECT_EQ(FullOutput(out, prefills[i].first_token), references[i].output_ids) << texts[i];
    if (i == 0) {
      EXPECT_EQ(out.streamed, alone.streamed);
    }
  }
  // The eight really shared steps.
  EXPECT_GE(scheduler_->max_batch_seen(), 2);
}

TEST_F(DecodeServiceTest, ShortRequestJoinsWhileLongOneGenerates) {
  const std::vector<int32_t> long_prompt = Encode("Once upon a time");
  const std::vector<int32_t> short_prompt = Encode("The little dog");
  const LocalPrefill long_prefill = Prefill(long_prompt, {});
  const LocalPrefill short_prefill = Prefill(short_prompt, {});
  std::promise<void> long_started;
  std::atomic<bool> signalled{false};
  RunOptions long_options;
  long_options.on_token = [&](int n) {
    if (n >= 10 && !signalled.exchange(true)) long_started.set_value();
    return true;
  };
  std::future<DecodeOutcome> long_run = std::async(std::launch::async, [&] {
    return Run(MakeRequest("long", long_prompt, 400, {}, /*ignore_eos=*/true),
               MakeChunks("long", layout_, long_prefill), long_options);
  });
  ASSERT_EQ(long_started.get_future().wait_for(std::chrono::seconds(30)),
            std::future_status::ready);
  const DecodeOutcome short_out = Run(MakeRequest("short", short_prompt, 5, {}),
                                      MakeChunks("short", layout_, short_prefill));
  ASSERT_EQ(long_run.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  const DecodeOutcome long_out = long_run.get();
  ASSERT_TRUE(short_out.status.ok()) << short_out.status.error_message();
  ASSERT_TRUE(long_out.status.ok()) << long_out.status.error_message();
  EXPECT_EQ(long_out.completion_tokens, 400);
  EXPECT_EQ(long_out.finish_reason, "length");
  ASSERT_FALSE(short_out.arrival.empty());
  EXPECT_LT(short_out.arrival.front(), long_out.finished_at);
  EXPECT_LT(short_out.finished_at, long_out.finished_at);
  EXPECT_GE(scheduler_->max_batch_seen(), 2);
}

TEST_F(DecodeServiceTest, ShippedKvIsUsedNotRecomputed) {
  const std::vector<int32_t> prompt = Encode(kLongPrompt);
  const LocalPrefill prefill = Prefill(prompt, {});
  ASSERT_GE(prefill.blocks.size(), 2u);
  const engine::GenerationResult reference = Reference(prompt, 40, {}, /*ignore_eos=*/true);
  const DecodeOutcome good = Run(MakeRequest("kv-good", prompt, 40, {}, true),
                                 MakeChunks("kv-good", layout_, prefill));
  ASSERT_TRUE(good.status.ok()) << good.status.error_message();
  EXPECT_EQ(FullOutput(good, prefill.first_token), reference.output_ids);
  EXPECT_EQ(good.prompt_tokens_computed, 0);

  // Block 0 with other (well-formed, correctly checksummed) values must change what follows.
  LocalPrefill altered = prefill;
  std::string& block = altered.blocks[0];
  float* values = reinterpret_cast<float*>(block.data());
  for (size_t i = 0; i < block.size() / sizeof(float); ++i) values[i] = std::sin(0.37f * i) * 2;
  const DecodeOutcome changed = Run(MakeRequest("kv-altered", prompt, 40, {}, true),
                                    MakeChunks("kv-altered", layout_, altered));
  ASSERT_TRUE(changed.status.ok()) << changed.status.error_message();
  EXPECT_EQ(changed.streamed.size(), good.streamed.size());
  EXPECT_NE(changed.streamed, good.streamed);
  EXPECT_EQ(changed.prompt_tokens_computed, 0);
}

struct BadChunkCase {
  std::string name;
  std::function<void(std::vector<v1::KvChunk>&)> corrupt;
  grpc::StatusCode code;
  std::string message_part;
};

TEST_F(DecodeServiceTest, BadChunkFailsOnlyItsRequest) {
  const std::vector<int32_t> prompt = Encode(kLongPrompt);
  const LocalPrefill prefill = Prefill(prompt, {});
  ASSERT_GE(prefill.blocks.size(), 3u);
  const std::vector<int32_t> good_prompt = Encode("Once upon a time");
  const LocalPrefill good_prefill = Prefill(good_prompt, {});
  const engine::GenerationResult good_reference = Reference(good_prompt, 60, {}, true);

  const std::vector<BadChunkCase> cases = {
      {"wrong data size",
       [](auto& c) {
         v1::KvBlock* b = c[0].mutable_blocks(0);
         b->mutable_data()->resize(b->data().size() - 4);
         testing::RecomputeChecksum(*b);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "bytes"},
      {"wrong checksum", [](auto& c) { c[0].mutable_blocks(0)->set_checksum(c[0].blocks(0).checksum() ^ 1); },
       grpc::StatusCode::DATA_LOSS, "checksum"},
      {"wrong layout block size", [](auto& c) { c[0].mutable_layout()->set_block_size(8); },
       grpc::StatusCode::FAILED_PRECONDITION, "layout"},
      {"wrong layout layers",
       [](auto& c) { c[0].mutable_layout()->set_n_layers(c[0].layout().n_layers() + 1); },
       grpc::StatusCode::FAILED_PRECONDITION, "layout mismatch"},
      {"another model",
       [](auto& c) { c[0].mutable_layout()->set_model_fingerprint(std::string(32, 'f')); },
       grpc::StatusCode::FAILED_PRECONDITION, "model mismatch"},
      {"wrong layout version", [](auto& c) { c[0].mutable_layout()->set_version(99); },
       grpc::StatusCode::INVALID_ARGUMENT, "version"},
      {"duplicate index", [](auto& c) { c[1].mutable_blocks(0)->set_index(0); },
       grpc::StatusCode::INVALID_ARGUMENT, "more than once"},
      {"index out of range", [](auto& c) { c[1].mutable_blocks(0)->set_index(99); },
       grpc::StatusCode::INVALID_ARGUMENT, "out of range"},
      {"negative index", [](auto& c) { c[1].mutable_blocks(0)->set_index(-1); },
       grpc::StatusCode::INVALID_ARGUMENT, "out of range"},
      {"too few blocks",
       [](auto& c) { c.back().mutable_blocks()->RemoveLast(); },
       grpc::StatusCode::INVALID_ARGUMENT, "prompt blocks"},
      {"inconsistent n_tokens", [](auto& c) { c[0].mutable_blocks(0)->set_n_tokens(3); },
       grpc::StatusCode::INVALID_ARGUMENT, "n_tokens"},
      {"wrong prompt size", [](auto& c) { c[0].set_n_prompt_tokens(c[0].n_prompt_tokens() + 1); },
       grpc::StatusCode::INVALID_ARGUMENT, "prompt tokens"},
      {"no last chunk", [](auto& c) { c.back().set_last(false); },
       grpc::StatusCode::ABORTED, "before its last chunk"},
      {"first token outside vocabulary", [](auto& c) { c.back().set_first_token(1 << 20); },
       grpc::StatusCode::INVALID_ARGUMENT, "vocabulary"},
  };
  int n = 0;
  for (const BadChunkCase& bad : cases) {
    SCOPED_TRACE(bad.name);
    const std::string good_id = "good-" + std::to_string(n);
    const std::string bad_id = "bad-" + std::to_string(n++);
    // A good request is decoding while the bad one arrives.
    std::promise<void> good_decoding;
    std::atomic<bool> signalled{false};
    RunOptions good_options;
    good_options.on_token = [&](int) {
      if (!signalled.exchange(true)) good_decoding.set_value();
      return true;
    };
    std::future<DecodeOutcome> good_run = std::async(std::launch::async, [&] {
      return Run(MakeRequest(good_id, good_prompt, 60, {}, true),
                 MakeChunks(good_id, layout_, good_prefill), good_options);
    });
    ASSERT_EQ(good_decoding.get_future().wait_for(std::chrono::seconds(30)),
              std::future_status::ready);

    std::vector<v1::KvChunk> chunks = MakeChunks(bad_id, layout_, prefill, /*per chunk=*/1);
    bad.corrupt(chunks);
    const DecodeOutcome out = Run(MakeRequest(bad_id, prompt, 20, {}), chunks);
    EXPECT_EQ(out.push_status.error_code(), bad.code) << out.push_status.error_message();
    EXPECT_EQ(out.status.error_code(), bad.code) << out.status.error_message();
    EXPECT_NE(out.status.error_message().find(bad.message_part), std::string::npos)
        << out.status.error_message();
    EXPECT_TRUE(out.streamed.empty());

    ASSERT_EQ(good_run.wait_for(std::chrono::seconds(60)), std::future_status::ready);
    const DecodeOutcome good = good_run.get();
    ASSERT_TRUE(good.status.ok()) << good.status.error_message();
    EXPECT_EQ(FullOutput(good, good_prefill.first_token), good_reference.output_ids);
  }
}

TEST_F(DecodeServiceTest, KvWithoutTheTransferTokenIsRefusedAndTouchesNothing) {
  const std::vector<int32_t> prompt = Encode(kLongPrompt);
  const LocalPrefill prefill = Prefill(prompt, {});
  const engine::GenerationResult reference = Reference(prompt, 30, {}, true);
  // No token at all, for a request nobody reserved.
  grpc::Status status = testing::PushChunks(*kv_stub_, MakeChunks("nobody", layout_, prefill));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();

  // A stranger who knows the request id pushes forged blocks with correct checksums while the
  // reservation awaits its KV: refused, and the real KV that follows decodes as if nothing
  // happened.
  LocalPrefill forged = prefill;
  for (std::string& block : forged.blocks) block.assign(block.size(), '\x7f');
  RunOptions options;
  options.on_reserved = [&] {
    for (const std::string& token : {std::string(), kv_transfer::NewTransferToken()}) {
      std::vector<v1::KvChunk> chunks = MakeChunks("victim", layout_, forged);
      chunks.front().set_transfer_token(token);
      const grpc::Status refused = testing::PushChunks(*kv_stub_, chunks);
      EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED)
          << refused.error_message();
    }
  };
  const DecodeOutcome out = Run(MakeRequest("victim", prompt, 30, {}, true),
                                MakeChunks("victim", layout_, prefill), options);
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  EXPECT_TRUE(out.push_status.ok()) << out.push_status.error_message();
  EXPECT_EQ(FullOutput(out, prefill.first_token), reference.output_ids);

  // The token is used up: presenting it again is refused too.
  std::vector<v1::KvChunk> again = MakeChunks("victim", layout_, prefill);
  again.front().set_transfer_token(out.handoff.transfer_token());
  status = testing::PushChunks(*kv_stub_, again);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
}

TEST_F(DecodeServiceTest, ReservedAnswersWithTheHandoff) {
  const std::vector<int32_t> prompt = Encode(kLongPrompt);
  const LocalPrefill prefill = Prefill(prompt, {});
  const DecodeOutcome out = Run(MakeRequest("handoff", prompt, 10, {}, true),
                                MakeChunks("handoff", layout_, prefill));
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  const v1::KvHandoff& handoff = out.handoff;
  EXPECT_EQ(handoff.transfer_token().size(), kv_transfer::kTransferTokenBytes);
  EXPECT_EQ(static_cast<size_t>(handoff.block_ids_size()), prefill.blocks.size());
  EXPECT_EQ(handoff.layout().block_size(), layout_.block_size());
  EXPECT_EQ(handoff.layout().n_layers(), layout_.n_layers());
  ASSERT_EQ(handoff.transports_size(), 1);
  EXPECT_EQ(handoff.transports(0).transport(), "grpc");
  EXPECT_EQ(handoff.lease_idle_ms(), 2000);
  EXPECT_EQ(handoff.lease_max_ms(), 3000);
}

TEST_F(DecodeServiceTest, BadRequestsAreRejected) {
  const std::vector<int32_t> prompt = Encode("Once upon a time");
  const LocalPrefill prefill = Prefill(prompt, {});
  // Prompt + max tokens beyond the context; an empty prompt; max_tokens 0.
  for (const v1::DecodeRequest& request :
       {MakeRequest("too-long", prompt, 600, {}), MakeRequest("empty", {}, 5, {}),
        MakeRequest("zero", prompt, 0, {})}) {
    const DecodeOutcome out = Run(request, {});
    EXPECT_EQ(out.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << request.request_id() << ": " << out.status.error_message();
    EXPECT_FALSE(out.reserved);
  }
}

TEST_F(DecodeServiceTest, CancelWhileDecodingFreesBlocks) {
  const std::vector<int32_t> prompt = Encode("Once upon a time");
  const LocalPrefill prefill = Prefill(prompt, {});
  RunOptions options;
  options.on_token = [](int n) { return n < 5; };
  const DecodeOutcome out = Run(MakeRequest("cancel-decoding", prompt, 400, {}, true),
                                MakeChunks("cancel-decoding", layout_, prefill), options);
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_LT(out.streamed.size(), 399u);
  EXPECT_TRUE(WaitForAllBlocksFree(absl::Seconds(5)));
}

TEST_F(DecodeServiceTest, CancelWhileAwaitingKvFreesBlocks) {
  const std::vector<int32_t> prompt = Encode("Once upon a time");
  RunOptions options;
  options.cancel_after_reserved = true;
  options.on_reserved = [&] { EXPECT_LT(scheduler_->Load().free_kv_blocks, free_at_start_); };
  const DecodeOutcome out = Run(MakeRequest("cancel-awaiting", prompt, 50, {}), {}, options);
  EXPECT_TRUE(out.reserved);
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitForAllBlocksFree(absl::Seconds(5)));
}

TEST_F(DecodeServiceTest, DeadlineWhileAwaitingKvFreesBlocks) {
  const std::vector<int32_t> prompt = Encode("Once upon a time");
  RunOptions options;
  options.push = false;
  options.deadline = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  const DecodeOutcome out = Run(MakeRequest("deadline-awaiting", prompt, 50, {}), {}, options);
  EXPECT_TRUE(out.reserved);
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_TRUE(WaitForAllBlocksFree(absl::Seconds(5)));
}

TEST_F(DecodeServiceTest, KvThatNeverArrivesFailsWhenTheLeaseRunsOut) {
  // The call itself has a long deadline: the reservation's lease (3 s at most here) ends it.
  const std::vector<int32_t> prompt = Encode("Once upon a time");
  RunOptions options;
  options.push = false;
  const absl::Time start = absl::Now();
  const DecodeOutcome out = Run(MakeRequest("kv-never", prompt, 50, {}), {}, options);
  EXPECT_TRUE(out.reserved);
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_NE(out.status.error_message().find("lease ran out"), std::string::npos)
      << out.status.error_message();
  EXPECT_GE(absl::Now() - start, absl::Seconds(3));
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  EXPECT_TRUE(WaitForAllBlocksFree(absl::Seconds(5)));
}

TEST_F(DecodeServiceTest, DeadlineWhileDecodingFreesBlocks) {
  const std::vector<int32_t> prompt = Encode("Once upon a time");
  const LocalPrefill prefill = Prefill(prompt, {});
  RunOptions options;
  options.deadline = absl::Milliseconds(400);  // 400 steps of >= 2 ms cannot finish in time
  const DecodeOutcome out = Run(MakeRequest("deadline-decoding", prompt, 400, {}, true),
                                MakeChunks("deadline-decoding", layout_, prefill), options);
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_FALSE(out.streamed.empty());
  EXPECT_FALSE(out.finished);
  EXPECT_TRUE(WaitForAllBlocksFree(absl::Seconds(5)));
}

}  // namespace
}  // namespace pdserve::decode
