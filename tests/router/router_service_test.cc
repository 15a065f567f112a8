// Router.Generate end to end against fake prefill and decode workers served in-process on
// 127.0.0.1, with the stories260K tokenizer (byte tokens: id = byte + 3; EOS = 2).

#include "router/router_service.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/sampling/text_stream.h"
#include "grpcpp/grpcpp.h"
#include "router/grpc_worker_clients.h"
#include "router/registry_service.h"
#include "router/relay.h"
#include "worker.grpc.pb.h"

namespace pdserve::router {
namespace {

constexpr int32_t kEos = 2;
int32_t Byte(unsigned char b) { return static_cast<int32_t>(b) + 3; }

std::chrono::system_clock::time_point In(std::chrono::milliseconds ms) {
  return std::chrono::system_clock::now() + ms;
}

// Answers Prefill with a chosen first token (or a chosen error) and records the request.
class FakePrefill final : public v1::PrefillWorker::Service {
 public:
  grpc::Status Prefill(grpc::ServerContext* context, const v1::PrefillRequest* request,
                       v1::PrefillResponse* response) override {
    std::lock_guard<std::mutex> lock(mu);
    last_request = *request;
    ++n_calls;
    if (!next_errors.empty()) {
      grpc::Status error = next_errors.front();
      next_errors.erase(next_errors.begin());
      return error;
    }
    response->set_first_token(first_token);
    response->set_queue_seconds(0.25);
    response->mutable_transfer()->set_transport("shm");
    response->mutable_transfer()->set_bytes(2'000'000);
    response->mutable_transfer()->set_seconds(0.001);
    return grpc::Status::OK;
  }

  std::mutex mu;
  int32_t first_token = Byte('a');
  std::vector<grpc::Status> next_errors;
  v1::PrefillRequest last_request;
  int n_calls = 0;
};

// Answers `reserved`, streams chosen tokens (index 1, 2, ...), then either `finished` or, when
// `hang`, waits for the call to be cancelled and records that it saw the cancellation.
class FakeDecode final : public v1::DecodeWorker::Service {
 public:
  grpc::Status Decode(grpc::ServerContext* context, const v1::DecodeRequest* request,
                      grpc::ServerWriter<v1::DecodeEvent>* writer) override {
    std::vector<int32_t> tokens;
    bool hang_now;
    std::string reason;
    {
      std::lock_guard<std::mutex> lock(mu);
      last_request = *request;
      tokens = this->tokens;
      hang_now = hang;
      reason = finish_reason;
      if (!next_errors.empty()) {
        grpc::Status error = next_errors.front();
        next_errors.erase(next_errors.begin());
        return error;
      }
    }
    v1::DecodeEvent event;
    event.mutable_reserved()->set_kv_blocks(3);
    event.mutable_reserved()->mutable_handoff()->set_transfer_token("token-" +
                                                                     request->request_id());
    event.mutable_reserved()->mutable_handoff()->add_block_ids(7);
    writer->Write(event);
    int index = 1;
    for (int32_t token : tokens) {
      v1::DecodeEvent t;
      t.mutable_token()->set_token_id(token);
      t.mutable_token()->set_index(index++);
      if (!writer->Write(t)) break;
    }
    if (hang_now) {
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (!context->IsCancelled() && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      std::lock_guard<std::mutex> lock(mu);
      saw_cancel = context->IsCancelled();
      cv.notify_all();
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    }
    v1::DecodeEvent finished;
    finished.mutable_finished()->set_finish_reason(reason);
    finished.mutable_finished()->set_completion_tokens(static_cast<int32_t>(tokens.size()) + 1);
    writer->Write(finished);
    return grpc::Status::OK;
  }

  bool WaitForCancel() {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return saw_cancel; });
  }

  std::mutex mu;
  std::condition_variable cv;
  std::vector<int32_t> tokens;
  std::string finish_reason = "length";
  bool hang = false;
  bool saw_cancel = false;
  std::vector<grpc::Status> next_errors;  // returned before `reserved`
  v1::DecodeRequest last_request;
};

class RouterServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<RouterModel> loaded =
        LoadRouterModel(std::string(PDSERVE_SHARED_DIR) + "/models/stories260K.gguf", "");
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    model_ = new RouterModel(*std::move(loaded));
  }

  void SetUp() override {
    ASSERT_NE(model_, nullptr);
    grpc::ServerBuilder worker_builder;
    int worker_port = 0;
    worker_builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &worker_port);
    worker_builder.RegisterService(&prefill_);
    worker_builder.RegisterService(&decode_);
    workers_server_ = worker_builder.BuildAndStart();
    ASSERT_NE(workers_server_, nullptr);
    worker_address_ = absl::StrCat("127.0.0.1:", worker_port);
    StartRouter(RelayOptions{});
  }

  // (Re)starts the router's server with a relay of these options.
  void StartRouter(RelayOptions options) {
    if (router_server_) router_server_->Shutdown(In(std::chrono::milliseconds(500)));
    router_server_.reset();
    service_.reset();
    relay_.reset();  // before the next one: a relay leaves the registry without a listener
    relay_ = std::make_unique<Relay>(*model_, registry_, stats_, prefill_client_, decode_client_,
                                     clock_, options);
    service_ = std::make_unique<RouterService>(*relay_, registry_, stats_);
    registry_service_ = std::make_unique<RegistryService>(registry_, 500);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    builder.RegisterService(registry_service_.get());
    router_server_ = builder.BuildAndStart();
    ASSERT_NE(router_server_, nullptr);
    auto channel =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
    stub_ = v1::Router::NewStub(channel);
    registry_stub_ = v1::WorkerRegistry::NewStub(channel);
  }

  void TearDown() override {
    if (router_server_) router_server_->Shutdown(In(std::chrono::milliseconds(500)));
    if (workers_server_) workers_server_->Shutdown(In(std::chrono::milliseconds(500)));
  }

  void RegisterWorkers() {
    WorkerRegistration prefill;
    prefill.worker_id = "prefill-0";
    prefill.role = v1::WORKER_ROLE_PREFILL;
    prefill.address = worker_address_;
    ASSERT_TRUE(registry_.Register(prefill).ok());
    WorkerRegistration decode;
    decode.worker_id = "decode-0";
    decode.role = v1::WORKER_ROLE_DECODE;
    decode.address = worker_address_;
    decode.kv_layout.set_block_size(16);
    decode.load.set_free_kv_blocks(100);
    decode.load.set_total_kv_blocks(100);
    ASSERT_TRUE(registry_.Register(decode).ok());
  }

  struct Result {
    grpc::Status status;
    std::vector<v1::TextChunk> chunks;
    std::string text;
    std::vector<int32_t> ids;
    bool has_final = false;
    v1::GenerateFinal final_message;
  };

  Result Generate(const v1::GenerateRequest& request,
                  std::chrono::milliseconds deadline = std::chrono::milliseconds(10000)) {
    grpc::ClientContext context;
    context.set_deadline(In(deadline));
    Result result;
    auto reader = stub_->Generate(&context, request);
    v1::GenerateResponse response;
    while (reader->Read(&response)) {
      if (response.has_chunk()) {
        result.chunks.push_back(response.chunk());
        result.text += response.chunk().text();
        result.ids.insert(result.ids.end(), response.chunk().token_ids().begin(),
                          response.chunk().token_ids().end());
      } else if (response.has_final()) {
        result.has_final = true;
        result.final_message = response.final();
      }
    }
    result.status = reader->Finish();
    return result;
  }

  static v1::GenerateRequest TextRequest(const std::string& text, int max_tokens) {
    v1::GenerateRequest request;
    request.set_text(text);
    request.set_max_tokens(max_tokens);
    return request;
  }

  static RouterModel* model_;
  absl::Time now_;
  Clock clock_ = [] { return absl::Now(); };
  WorkerRegistry registry_{absl::Seconds(60), clock_};
  RouterStats stats_{clock_};
  FakePrefill prefill_;
  FakeDecode decode_;
  std::unique_ptr<grpc::Server> workers_server_;
  std::string worker_address_;
  rpc::ChannelCache channels_;
  GrpcPrefillClient prefill_client_{channels_};
  GrpcDecodeClient decode_client_{channels_};
  std::unique_ptr<Relay> relay_;
  std::unique_ptr<RouterService> service_;
  std::unique_ptr<RegistryService> registry_service_;
  std::unique_ptr<grpc::Server> router_server_;
  std::unique_ptr<v1::Router::Stub> stub_;
  std::unique_ptr<v1::WorkerRegistry::Stub> registry_stub_;
};

RouterModel* RouterServiceTest::model_ = nullptr;

TEST_F(RouterServiceTest, ModelMetadataIsRead) {
  EXPECT_EQ(model_->context_length, 512);
  EXPECT_EQ(model_->tokenizer->TokenText(Byte(0xE2), Byte('a')), "\xE2");
}

TEST_F(RouterServiceTest, CharacterSpanningTokensArrivesWhole) {
  RegisterWorkers();
  prefill_.first_token = Byte(0xE2);
  decode_.tokens = {Byte(0x82), Byte(0xAC), Byte('x')};
  Result r = Generate(TextRequest("Once upon", 4));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  for (const v1::TextChunk& chunk : r.chunks) {
    EXPECT_EQ(sampling::ToValidUtf8(chunk.text()), chunk.text());
  }
  EXPECT_EQ(r.text, "\xE2\x82\xAC" "x");
  EXPECT_EQ(r.ids, (std::vector<int32_t>{Byte(0xE2), Byte(0x82), Byte(0xAC), Byte('x')}));
  ASSERT_TRUE(r.has_final);
  EXPECT_EQ(r.final_message.finish_reason(), "length");
  EXPECT_EQ(r.final_message.usage().completion_tokens(), 4);
  absl::StatusOr<std::vector<int32_t>> prompt =
      model_->tokenizer->Encode("Once upon", tokenizer::EncodeOptions{});
  ASSERT_TRUE(prompt.ok());
  EXPECT_EQ(r.final_message.usage().prompt_tokens(), static_cast<int32_t>(prompt->size()));
  EXPECT_EQ(r.final_message.prefill_worker(), "prefill-0");
  EXPECT_EQ(r.final_message.decode_worker(), "decode-0");
  EXPECT_FALSE(r.final_message.request_id().empty());
  const v1::RequestTiming& t = r.final_message.timing();
  EXPECT_GE(t.queue_seconds(), 0.25);  // the prefill's reported queue time is included
  EXPECT_GT(t.ttft_seconds(), 0);
  EXPECT_GE(t.e2e_seconds(), t.ttft_seconds());
  EXPECT_NEAR(t.tpot_seconds(), (t.e2e_seconds() - t.ttft_seconds()) / 3, 1e-9);

  // The workers got the tokenized prompt and the request's limits.
  std::lock_guard<std::mutex> lock(decode_.mu);
  EXPECT_EQ(std::vector<int32_t>(decode_.last_request.prompt_ids().begin(),
                                 decode_.last_request.prompt_ids().end()),
            *prompt);
  EXPECT_EQ(decode_.last_request.max_tokens(), 4);
  EXPECT_EQ(prefill_.last_request.decode_address(), worker_address_);
  EXPECT_EQ(prefill_.last_request.request_id(), decode_.last_request.request_id());
  // The decode worker's handoff reaches the prefill worker unchanged.
  EXPECT_EQ(prefill_.last_request.handoff().transfer_token(),
            "token-" + decode_.last_request.request_id());
  EXPECT_EQ(prefill_.last_request.handoff().block_ids_size(), 1);
}

TEST_F(RouterServiceTest, StopStringAcrossTokensEndsWithStopAndIsCut) {
  RegisterWorkers();
  prefill_.first_token = Byte('h');
  decode_.tokens = {Byte('e'), Byte('l'), Byte('l'), Byte('o'), Byte(' '), Byte('w'), Byte('z')};
  decode_.hang = true;  // the router must end the stream itself and cancel the decode call
  v1::GenerateRequest request = TextRequest("Once", 20);
  request.add_stop("o w");
  request.set_request_id("my-request");
  Result r = Generate(request);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.text, "hell");
  ASSERT_TRUE(r.has_final);
  EXPECT_EQ(r.final_message.finish_reason(), "stop");
  EXPECT_EQ(r.final_message.request_id(), "my-request");
  EXPECT_TRUE(decode_.WaitForCancel());
  // Workers see an id of the router's making, never the client's alone: two clients may send
  // the same id at once.
  std::lock_guard<std::mutex> lock(decode_.mu);
  EXPECT_NE(decode_.last_request.request_id(), "my-request");
  EXPECT_EQ(decode_.last_request.request_id().rfind("my-request-", 0), 0u)
      << decode_.last_request.request_id();
}

TEST_F(RouterServiceTest, WorkerRequestIdsAreUniqueAndCarryTheRoutersRandomInstance) {
  RegisterWorkers();
  decode_.tokens = {Byte('b')};
  std::set<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    v1::GenerateRequest request = TextRequest("Once", 2);
    if (i == 1) request.set_request_id("req-2");  // a client taking a router-looking id
    Result r = Generate(request);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    std::lock_guard<std::mutex> lock(decode_.mu);
    EXPECT_TRUE(ids.insert(decode_.last_request.request_id()).second);
  }
  // "<client id or req>-<16 random hex digits of this router process>-<n>": a restarted router
  // draws another instance, so it never repeats an id of the one before.
  EXPECT_EQ(ids.size(), 3u);
  const std::regex shape("req(-2)?-[0-9a-f]{16}-[0-9]+");
  for (const std::string& id : ids) EXPECT_TRUE(std::regex_match(id, shape)) << id;
}

TEST_F(RouterServiceTest, EndTokenFromPrefillFinishesWithEos) {
  RegisterWorkers();
  prefill_.first_token = kEos;
  decode_.hang = true;
  Result r = Generate(TextRequest("Once", 5));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.text, "");
  ASSERT_TRUE(r.has_final);
  EXPECT_EQ(r.final_message.finish_reason(), "eos");
  EXPECT_EQ(r.final_message.usage().completion_tokens(), 0);
  EXPECT_TRUE(decode_.WaitForCancel());
}

TEST_F(RouterServiceTest, EndTokenIsOrdinaryWithIgnoreEosAndDecodesFinishReasonIsKept) {
  RegisterWorkers();
  prefill_.first_token = Byte('a');
  decode_.tokens = {Byte('b')};
  decode_.finish_reason = "eos";
  Result r = Generate(TextRequest("Once", 5));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.text, "ab");
  EXPECT_EQ(r.final_message.finish_reason(), "eos");
  EXPECT_EQ(r.final_message.usage().completion_tokens(), 2);
}

TEST_F(RouterServiceTest, BadInputIsInvalidArgumentWithAMessage) {
  RegisterWorkers();
  struct Case {
    std::string name;
    v1::GenerateRequest request;
    std::vector<std::string> message_parts;
  };
  std::vector<Case> cases;
  cases.push_back({"no prompt", [] { v1::GenerateRequest r; r.set_max_tokens(3); return r; }(),
                   {"no prompt"}});
  cases.push_back({"empty prompt", TextRequest("", 3), {"empty"}});
  cases.push_back({"over the context", TextRequest("Once upon a time", 600), {"600", "512"}});
  cases.push_back({"negative max_tokens", TextRequest("Once", -4), {"max_tokens", "-4"}});
  {
    v1::GenerateRequest r = TextRequest("Once", 3);
    r.mutable_sampling()->set_temperature(-1);
    cases.push_back({"negative temperature", r, {"temperature"}});
  }
  {
    v1::GenerateRequest r = TextRequest("Once", 3);
    r.mutable_sampling()->set_top_p(0);
    cases.push_back({"top_p 0", r, {"top_p"}});
  }
  {
    v1::GenerateRequest r = TextRequest("Once", 3);
    r.mutable_sampling()->set_top_k(-2);
    cases.push_back({"negative top_k", r, {"top_k"}});
  }
  {
    v1::GenerateRequest r = TextRequest("Once", 3);
    r.add_stop("");
    cases.push_back({"empty stop string", r, {"stop string 0"}});
  }
  cases.push_back({"invalid UTF-8 text", TextRequest("ab\xC3(", 3), {"UTF-8", "byte 2"}});
  {
    v1::GenerateRequest r;
    r.set_max_tokens(3);
    v1::ChatMessage* m = r.mutable_chat()->add_messages();
    m->set_role("user");
    m->set_content("hi \xFF there");
    cases.push_back({"invalid UTF-8 chat", r, {"chat message 0", "UTF-8"}});
  }
  {
    v1::GenerateRequest r;
    r.set_max_tokens(3);
    r.mutable_chat();
    cases.push_back({"empty chat", r, {"no messages"}});
  }
  for (const Case& c : cases) {
    Result r = Generate(c.request);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name;
    for (const std::string& part : c.message_parts) {
      EXPECT_NE(r.status.error_message().find(part), std::string::npos)
          << c.name << ": '" << r.status.error_message() << "' lacks '" << part << "'";
    }
    EXPECT_TRUE(r.chunks.empty()) << c.name;
  }
  std::lock_guard<std::mutex> lock(prefill_.mu);
  EXPECT_EQ(prefill_.n_calls, 0);
}

TEST_F(RouterServiceTest, NoWorkersIsUnavailable) {
  Result r = Generate(TextRequest("Once", 3));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(r.status.error_message().empty());

  // A decode worker alone is not enough.
  WorkerRegistration decode;
  decode.worker_id = "decode-0";
  decode.role = v1::WORKER_ROLE_DECODE;
  decode.address = worker_address_;
  decode.kv_layout.set_block_size(16);
  decode.load.set_free_kv_blocks(100);
  decode.load.set_total_kv_blocks(100);
  ASSERT_TRUE(registry_.Register(decode).ok());
  r = Generate(TextRequest("Once", 3));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(r.status.error_message().find("prefill"), std::string::npos);
}

TEST_F(RouterServiceTest, BusyPrefillWorkerIsAskedAgainInsteadOfFailingTheClient) {
  RegisterWorkers();
  prefill_.next_errors.push_back(
      grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "prefill queue is full"));
  decode_.tokens = {Byte('b')};
  Result ok = Generate(TextRequest("Once", 2));
  ASSERT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.text, "ab");
  std::lock_guard<std::mutex> lock(prefill_.mu);
  EXPECT_EQ(prefill_.n_calls, 2);
}

TEST_F(RouterServiceTest, RefusedPrefillReachesTheClientNamingTheWorker) {
  RegisterWorkers();
  prefill_.next_errors.push_back(
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the handoff's layout differs"));
  decode_.tokens = {Byte('b')};
  Result failed = Generate(TextRequest("Once", 2));
  EXPECT_EQ(failed.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(failed.status.error_message().find("prefill worker 'prefill-0'"), std::string::npos)
      << failed.status.error_message();
  EXPECT_NE(failed.status.error_message().find("layout differs"), std::string::npos);

  Result ok = Generate(TextRequest("Once", 2));
  ASSERT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.text, "ab");
}

TEST_F(RouterServiceTest, DecodeWorkerErrorNamesTheWorkerAndSkipsPrefill) {
  RegisterWorkers();
  decode_.next_errors.push_back(
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the prompt is empty"));
  Result failed = Generate(TextRequest("Once", 2));
  EXPECT_EQ(failed.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(failed.status.error_message().find("decode worker 'decode-0'"), std::string::npos)
      << failed.status.error_message();
  EXPECT_NE(failed.status.error_message().find("prompt is empty"), std::string::npos);
  {
    std::lock_guard<std::mutex> lock(prefill_.mu);
    EXPECT_EQ(prefill_.n_calls, 0);
  }
  Result ok = Generate(TextRequest("Once", 1));
  ASSERT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.text, "a");
  EXPECT_EQ(ok.final_message.usage().completion_tokens(), 1);
  EXPECT_EQ(ok.final_message.timing().tpot_seconds(), 0);
}

TEST_F(RouterServiceTest, UnreachableWorkerIsUnavailableNamingIt) {
  WorkerRegistration prefill;
  prefill.worker_id = "prefill-gone";
  prefill.role = v1::WORKER_ROLE_PREFILL;
  prefill.address = worker_address_;
  ASSERT_TRUE(registry_.Register(prefill).ok());
  WorkerRegistration decode;
  decode.worker_id = "decode-gone";
  decode.role = v1::WORKER_ROLE_DECODE;
  decode.address = "127.0.0.1:1";  // nothing listens there
  decode.kv_layout.set_block_size(16);
  decode.load.set_free_kv_blocks(100);
  decode.load.set_total_kv_blocks(100);
  ASSERT_TRUE(registry_.Register(decode).ok());
  Result r = Generate(TextRequest("Once", 2));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(r.status.error_message().find("decode-gone"), std::string::npos)
      << r.status.error_message();
}

TEST_F(RouterServiceTest, ClientCancelReachesTheDecodeWorker) {
  RegisterWorkers();
  prefill_.first_token = Byte('a');
  decode_.hang = true;
  grpc::ClientContext context;
  context.set_deadline(In(std::chrono::milliseconds(10000)));
  auto reader = stub_->Generate(&context, TextRequest("Once", 50));
  v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.chunk().text(), "a");
  context.TryCancel();
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(decode_.WaitForCancel());
}

TEST_F(RouterServiceTest, ClientDeadlineReachesTheDecodeWorker) {
  RegisterWorkers();
  decode_.hang = true;
  Result r = Generate(TextRequest("Once", 50), std::chrono::milliseconds(300));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(decode_.WaitForCancel());
}

TEST_F(RouterServiceTest, StatsCountRequestsAndSummarizeLatencies) {
  RegisterWorkers();
  decode_.tokens = {Byte('b'), Byte('c')};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Generate(TextRequest("Once", 3)).status.ok());
  EXPECT_FALSE(Generate(TextRequest("", 3)).status.ok());

  grpc::ClientContext context;
  context.set_deadline(In(std::chrono::milliseconds(5000)));
  v1::GetStatsResponse stats;
  ASSERT_TRUE(stub_->GetStats(&context, v1::GetStatsRequest(), &stats).ok());
  const v1::ClusterStats& c = stats.cluster();
  EXPECT_EQ(c.requests().received(), 4);
  EXPECT_EQ(c.requests().succeeded(), 3);
  EXPECT_EQ(c.requests().failed(), 1);
  EXPECT_EQ(c.requests().in_flight(), 0);
  EXPECT_EQ(c.completion_tokens(), 9);
  EXPECT_EQ(c.ttft_seconds().count(), 3);
  EXPECT_EQ(c.tpot_seconds().count(), 3);
  EXPECT_GT(c.ttft_seconds().p50(), 0);
  EXPECT_LE(c.ttft_seconds().p50(), c.ttft_seconds().p99());
  EXPECT_LE(c.ttft_seconds().p99(), c.e2e_seconds().p99());
  EXPECT_GT(c.output_tokens_per_second(), 0);
  ASSERT_EQ(stats.workers_size(), 2);
  for (const v1::WorkerStats& w : stats.workers()) {
    EXPECT_EQ(w.requests().succeeded(), 3) << w.worker().worker_id();
    EXPECT_TRUE(w.worker().healthy());
  }

  grpc::ClientContext list_context;
  list_context.set_deadline(In(std::chrono::milliseconds(5000)));
  v1::ListWorkersResponse list;
  ASSERT_TRUE(stub_->ListWorkers(&list_context, v1::ListWorkersRequest(), &list).ok());
  ASSERT_EQ(list.workers_size(), 2);
  EXPECT_EQ(list.workers(0).worker_id(), "decode-0");
  EXPECT_EQ(list.workers(0).kv_layout().block_size(), 16);

  // Each prefill answer's transfer report, per worker pair and transport.
  ASSERT_EQ(stats.kv_transfers_size(), 1);
  const v1::KvTransferStats& t = stats.kv_transfers(0);
  EXPECT_EQ(t.prefill_worker(), "prefill-0");
  EXPECT_EQ(t.decode_worker(), "decode-0");
  EXPECT_EQ(t.transport(), "shm");
  EXPECT_EQ(t.count(), 3);
  EXPECT_EQ(t.bytes(), 6'000'000);
  EXPECT_DOUBLE_EQ(t.seconds().p50(), 0.001);
  EXPECT_DOUBLE_EQ(t.gb_per_second(), 2.0);
}

TEST_F(RouterServiceTest, StatsShowTheRoutersQueue) {
  RegisterWorkers();
  RelayOptions options;
  options.max_in_flight = 1;
  ASSERT_NO_FATAL_FAILURE(StartRouter(options));
  prefill_.first_token = Byte('a');
  decode_.hang = true;  // the first request holds the one slot
  grpc::ClientContext first_context;
  first_context.set_deadline(In(std::chrono::milliseconds(10000)));
  auto first = stub_->Generate(&first_context, TextRequest("Once", 50));
  v1::GenerateResponse response;
  ASSERT_TRUE(first->Read(&response));
  grpc::ClientContext second_context;
  second_context.set_deadline(In(std::chrono::milliseconds(10000)));
  auto second = stub_->Generate(&second_context, TextRequest("Once", 2));
  int64_t queued = 0;
  for (int i = 0; i < 200 && queued == 0; ++i) {
    grpc::ClientContext context;
    v1::GetStatsResponse stats;
    ASSERT_TRUE(stub_->GetStats(&context, v1::GetStatsRequest(), &stats).ok());
    queued = stats.cluster().queued();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(queued, 1);
  first_context.TryCancel();
  second_context.TryCancel();
  while (first->Read(&response)) {
  }
  while (second->Read(&response)) {
  }
  first->Finish();
  second->Finish();
}

TEST_F(RouterServiceTest, ConcurrentRequestsAllSucceed) {
  RegisterWorkers();
  decode_.tokens = {Byte('b'), Byte('c'), Byte('d')};
  constexpr int kRequests = 16;
  std::vector<Result> results(kRequests);
  std::vector<std::thread> clients;
  for (int i = 0; i < kRequests; ++i) {
    clients.emplace_back([&, i] { results[i] = Generate(TextRequest("Once", 4)); });
  }
  for (std::thread& t : clients) t.join();
  for (const Result& r : results) {
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.text, "abcd");
  }
  v1::GetStatsResponse stats = stats_.Get(registry_.Snapshot());
  EXPECT_EQ(stats.cluster().requests().succeeded(), kRequests);
  EXPECT_EQ(stats.cluster().requests().in_flight(), 0);
  EXPECT_EQ(stats.cluster().completion_tokens(), 4 * kRequests);
}

TEST_F(RouterServiceTest, RegistryServiceRegistersAndAnswersHeartbeats) {
  {
    grpc::ClientContext context;
    context.set_deadline(In(std::chrono::milliseconds(5000)));
    v1::HeartbeatRequest request;
    request.set_worker_id("ghost");
    v1::HeartbeatResponse response;
    ASSERT_TRUE(registry_stub_->Heartbeat(&context, request, &response).ok());
    EXPECT_FALSE(response.registered());
  }
  {
    grpc::ClientContext context;
    context.set_deadline(In(std::chrono::milliseconds(5000)));
    v1::RegisterWorkerRequest request;
    request.set_worker_id("d");
    request.set_role(v1::WORKER_ROLE_DECODE);
    request.set_address("127.0.0.1:9");
    v1::RegisterWorkerResponse response;
    grpc::Status status = registry_stub_->RegisterWorker(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);  // no block size
    EXPECT_NE(status.error_message().find("block size"), std::string::npos);
  }
  {
    grpc::ClientContext context;
    context.set_deadline(In(std::chrono::milliseconds(5000)));
    v1::RegisterWorkerRequest request;
    request.set_worker_id("p");
    request.set_role(v1::WORKER_ROLE_PREFILL);
    request.set_address("127.0.0.1:9");
    v1::RegisterWorkerResponse response;
    ASSERT_TRUE(registry_stub_->RegisterWorker(&context, request, &response).ok());
    EXPECT_EQ(response.heartbeat_interval_ms(), 500);
  }
  grpc::ClientContext context;
  context.set_deadline(In(std::chrono::milliseconds(5000)));
  v1::HeartbeatRequest request;
  request.set_worker_id("p");
  request.mutable_load()->set_queue_length(4);
  v1::HeartbeatResponse response;
  ASSERT_TRUE(registry_stub_->Heartbeat(&context, request, &response).ok());
  EXPECT_TRUE(response.registered());
  ASSERT_EQ(registry_.Snapshot().size(), 1u);
  EXPECT_EQ(registry_.Snapshot()[0].load.queue_length(), 4);
}

TEST_F(RouterServiceTest, ADeregisteredWorkerLeavesListWorkersAtOnceAndGetsNoRequest) {
  RegisterWorkers();
  const auto deregister = [&](const std::string& id, const std::string& address,
                              v1::DeregisterWorkerResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(In(std::chrono::milliseconds(5000)));
    v1::DeregisterWorkerRequest request;
    request.set_worker_id(id);
    request.set_address(address);
    return registry_stub_->Deregister(&context, request, response);
  };
  v1::DeregisterWorkerResponse response;
  EXPECT_EQ(deregister("", "", &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(deregister("decode-0", worker_address_, &response).ok());
  EXPECT_TRUE(response.was_registered());
  ASSERT_TRUE(deregister("decode-0", worker_address_, &response).ok());  // idempotent
  EXPECT_FALSE(response.was_registered());

  grpc::ClientContext list_context;
  v1::ListWorkersResponse list;
  ASSERT_TRUE(stub_->ListWorkers(&list_context, v1::ListWorkersRequest(), &list).ok());
  ASSERT_EQ(list.workers_size(), 1);
  EXPECT_EQ(list.workers(0).worker_id(), "prefill-0");
  // With its only decode worker gone, a request finds none (rather than reaching it).
  const Result result = Generate(TextRequest("ab", 2), std::chrono::milliseconds(1500));
  EXPECT_FALSE(result.status.ok());
  std::lock_guard<std::mutex> lock(decode_.mu);
  EXPECT_TRUE(decode_.last_request.request_id().empty());  // never called
}

}  // namespace
}  // namespace pdserve::router
