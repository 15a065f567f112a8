// pdserve-client: sends one request to a pdserve router and streams the generated text to stdout
// (only that); TTFT, TPOT, the finish reason and the token counts go to stderr. It loads no
// model: the router tokenizes. --stats and --list-workers print the router's GetStats and
// ListWorkers as text instead. An error prints the gRPC status on stderr and exits non-zero.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/arg_parser.h"
#include "cli/generation_flags.h"
#include "common/rpc/cluster_security.h"
#include "common/rpc/grpc_status.h"
#include "grpcpp/grpcpp.h"
#include "router.grpc.pb.h"

namespace pdserve::cli {
namespace {

constexpr int kExitError = 1;  // the router answered with an error, or could not be reached
constexpr int kExitUsage = 2;

void AddClientFlags(ArgParser& parser) {
  parser.AddString("router", "HOST:PORT of the router (default 127.0.0.1:50051)");
  parser.AddString("api-key", "the router's API key, sent as 'authorization: Bearer <key>' "
                              "(default: $PDSERVE_API_KEY; none when unset)");
  parser.AddString("tls-ca", "PEM CA certificate: connect with TLS and verify the router's "
                             "certificate against it (default: plaintext)");
  parser.AddString("prompt", "the prompt text");
  parser.AddBool("chat", "send --prompt as the user's message (the router applies the chat template)");
  parser.AddString("system", "with --chat: the system message");
  AddGenerationFlags(parser);
  parser.AddString("request-id", "the request's id (default: the router assigns one)");
  parser.AddString("timeout-ms", "deadline of the call in ms (default 600000; 10000 for "
                                 "--stats and --list-workers)");
  parser.AddBool("stats", "print the router's statistics (GetStats) and exit");
  parser.AddBool("list-workers", "print the workers the router knows (ListWorkers) and exit");
  parser.AddBool("help", "show this help");
}

int PrintRpcError(const grpc::Status& status) {
  std::cerr << "pdserve-client: " << rpc::FromGrpcStatus(status).ToString() << "\n";
  return kExitError;
}

std::string RoleName(v1::WorkerRole role) {
  switch (role) {
    case v1::WORKER_ROLE_PREFILL: return "prefill";
    case v1::WORKER_ROLE_DECODE: return "decode";
    default: return "unspecified";
  }
}

// One line per worker: id, role, address, healthy|unhealthy, then its load. launch.sh counts the
// lines whose fourth column is "healthy".
void PrintWorkers(const v1::ListWorkersResponse& response) {
  std::cout << absl::StrFormat("%-16s %-8s %-22s %-9s %5s %6s %15s %10s\n", "WORKER", "ROLE",
                               "ADDRESS", "STATE", "QUEUE", "ACTIVE", "FREE/TOTAL_KV",
                               "HEARTBEAT");
  for (const v1::WorkerInfo& w : response.workers()) {
    std::cout << absl::StrFormat(
        "%-16s %-8s %-22s %-9s %5d %6d %15s %9.2fs\n", w.worker_id(), RoleName(w.role()),
        w.address(), w.healthy() ? "healthy" : "unhealthy", w.load().queue_length(),
        w.load().active_sequences(),
        absl::StrCat(w.load().free_kv_blocks(), "/", w.load().total_kv_blocks()),
        w.seconds_since_heartbeat());
  }
}

std::string Counts(const v1::RequestCounts& c) {
  return absl::StrFormat("received %d, succeeded %d, failed %d, cancelled %d, in flight %d",
                         c.received(), c.succeeded(), c.failed(), c.cancelled(), c.in_flight());
}

std::string Latency(const std::string& name, const v1::LatencySummary& s) {
  return absl::StrFormat("  %-6s n=%-6d mean %9.2f ms  p50 %9.2f ms  p90 %9.2f ms  p99 %9.2f ms\n",
                         name, s.count(), s.mean() * 1e3, s.p50() * 1e3, s.p90() * 1e3,
                         s.p99() * 1e3);
}

void PrintStats(const v1::GetStatsResponse& response) {
  const v1::ClusterStats& c = response.cluster();
  std::cout << "cluster: " << Counts(c.requests()) << absl::StrFormat(" (%d queued)", c.queued())
            << "\n"
            << Latency("queue", c.queue_seconds()) << Latency("ttft", c.ttft_seconds())
            << Latency("tpot", c.tpot_seconds()) << Latency("e2e", c.e2e_seconds())
            << absl::StrFormat("  tokens: prompt %d, completion %d; %.1f output tokens/s over "
                               "%.1f s\n",
                               c.prompt_tokens(), c.completion_tokens(),
                               c.output_tokens_per_second(), c.uptime_seconds());
  for (const v1::WorkerStats& w : response.workers()) {
    std::cout << absl::StrFormat("worker %s (%s, %s, %s): %s; tokens %d\n", w.worker().worker_id(),
                                 RoleName(w.worker().role()), w.worker().address(),
                                 w.worker().healthy() ? "healthy" : "unhealthy",
                                 Counts(w.requests()), w.tokens())
              << Latency("ttft", w.ttft_seconds()) << Latency("tpot", w.tpot_seconds());
  }
  for (const v1::KvTransferStats& t : response.kv_transfers()) {
    std::cout << absl::StrFormat("kv %s -> %s over %s: %d handoffs, %.1f MB, %.2f GB/s\n",
                                 t.prefill_worker(), t.decode_worker(), t.transport(), t.count(),
                                 t.bytes() / 1e6, t.gb_per_second())
              << Latency("kv", t.seconds());
  }
}

// The request from the flags; InvalidArgument naming the flag when one is malformed. Range
// checks are the router's: it answers INVALID_ARGUMENT with a message.
absl::StatusOr<v1::GenerateRequest> RequestFromFlags(const ArgParser& parser) {
  v1::GenerateRequest request;
  if (!parser.Has("prompt")) return absl::InvalidArgumentError("--prompt is required");
  const std::string prompt = parser.GetString("prompt");
  if (parser.GetBool("chat")) {
    v1::ChatPrompt* chat = request.mutable_chat();
    if (parser.Has("system")) {
      v1::ChatMessage* system = chat->add_messages();
      system->set_role("system");
      system->set_content(parser.GetString("system"));
    }
    v1::ChatMessage* user = chat->add_messages();
    user->set_role("user");
    user->set_content(prompt);
  } else {
    if (parser.Has("system")) return absl::InvalidArgumentError("--system needs --chat");
    request.set_text(prompt);
  }
  absl::StatusOr<GenerationFlags> flags = GenerationFlagsFrom(parser);
  if (!flags.ok()) return flags.status();
  request.set_max_tokens(static_cast<int32_t>(flags->max_tokens.value_or(kDefaultMaxTokens)));
  // Only the flags given are set: an absent field takes the router's default.
  v1::SamplingOptions* sampling = request.mutable_sampling();
  if (flags->temperature) sampling->set_temperature(static_cast<float>(*flags->temperature));
  if (flags->top_k) sampling->set_top_k(static_cast<int32_t>(*flags->top_k));
  if (flags->top_p) sampling->set_top_p(static_cast<float>(*flags->top_p));
  if (flags->repetition_penalty) {
    sampling->set_repetition_penalty(static_cast<float>(*flags->repetition_penalty));
  }
  if (flags->seed) sampling->set_seed(static_cast<uint64_t>(*flags->seed));
  for (const std::string& stop : flags->stop) request.add_stop(stop);
  request.set_ignore_eos(flags->ignore_eos);
  if (parser.Has("request-id")) request.set_request_id(parser.GetString("request-id"));
  return request;
}

// What every call of this run carries: its deadline and, when given, the API key.
struct CallSettings {
  int64_t timeout_ms = 0;
  std::string api_key;  // empty: none
};

void Prepare(grpc::ClientContext& context, const CallSettings& settings) {
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(settings.timeout_ms));
  if (!settings.api_key.empty()) {
    context.AddMetadata("authorization", absl::StrCat("Bearer ", settings.api_key));
  }
}

// --api-key, else $PDSERVE_API_KEY; InvalidArgument (never echoing the key) when it cannot go in
// a header.
absl::StatusOr<std::string> ApiKeyFrom(const ArgParser& parser) {
  std::string key;
  if (parser.Has("api-key")) {
    key = parser.GetString("api-key");
  } else if (const char* from_env = std::getenv("PDSERVE_API_KEY")) {
    key = from_env;
  }
  for (const char c : key) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "the API key (--api-key or PDSERVE_API_KEY) holds a space or a character that is not "
          "printable ASCII");
    }
  }
  return key;
}

int RunGenerate(v1::Router::Stub& stub, const v1::GenerateRequest& request,
                const CallSettings& settings) {
  grpc::ClientContext context;
  Prepare(context, settings);
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      stub.Generate(&context, request);
  v1::GenerateResponse response;
  v1::GenerateFinal final_message;
  bool has_final = false;
  bool wrote_text = false;
  while (reader->Read(&response)) {
    if (response.has_chunk()) {
      const std::string& text = response.chunk().text();
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
      wrote_text = wrote_text || !text.empty();
    } else if (response.has_final()) {
      final_message = response.final();
      has_final = true;
    }
  }
  grpc::Status status = reader->Finish();
  if (wrote_text) std::cerr << "\n";
  if (!status.ok()) return PrintRpcError(status);
  if (!has_final) {
    std::cerr << "pdserve-client: the stream ended without its final message\n";
    return kExitError;
  }
  const v1::RequestTiming& t = final_message.timing();
  std::cerr << absl::StrFormat(
      "request %s: prompt %d tokens, generated %d tokens (finish: %s); TTFT %.2f ms, TPOT %.2f "
      "ms, e2e %.2f ms, queue %.2f ms; prefill %s, decode %s\n",
      final_message.request_id(), final_message.usage().prompt_tokens(),
      final_message.usage().completion_tokens(), final_message.finish_reason(),
      t.ttft_seconds() * 1e3, t.tpot_seconds() * 1e3, t.e2e_seconds() * 1e3,
      t.queue_seconds() * 1e3, final_message.prefill_worker(), final_message.decode_worker());
  return 0;
}

int Run(int argc, char** argv) {
  ArgParser parser;
  AddClientFlags(parser);
  if (absl::Status s = parser.Parse(argc, argv); !s.ok()) {
    std::cerr << "pdserve-client: " << s.message() << "\n" << parser.Usage("pdserve-client");
    return kExitUsage;
  }
  if (parser.GetBool("help")) {
    std::cout << parser.Usage("pdserve-client");
    return 0;
  }
  const bool admin = parser.GetBool("stats") || parser.GetBool("list-workers");
  if (parser.GetBool("stats") && parser.GetBool("list-workers")) {
    std::cerr << "pdserve-client: give --stats or --list-workers, not both\n";
    return kExitUsage;
  }
  absl::StatusOr<int64_t> timeout_ms = parser.GetInt("timeout-ms", admin ? 10000 : 600000);
  if (!timeout_ms.ok() || *timeout_ms <= 0) {
    std::cerr << "pdserve-client: "
              << (timeout_ms.ok() ? "--timeout-ms must be > 0" : timeout_ms.status().message())
              << "\n";
    return kExitUsage;
  }
  absl::StatusOr<std::string> api_key = ApiKeyFrom(parser);
  if (!api_key.ok()) {
    std::cerr << "pdserve-client: " << api_key.status().message() << "\n";
    return kExitUsage;
  }
  const CallSettings settings{.timeout_ms = *timeout_ms, .api_key = *api_key};
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (parser.Has("tls-ca")) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> tls =
        rpc::PublicClientCredentials(parser.GetString("tls-ca"));
    if (!tls.ok()) {
      std::cerr << "pdserve-client: --tls-ca: " << tls.status().message() << "\n";
      return kExitUsage;
    }
    credentials = *std::move(tls);
  }
  const std::string router = parser.GetString("router", "127.0.0.1:50051");
  std::shared_ptr<grpc::Channel> channel = grpc::CreateChannel(router, credentials);
  std::unique_ptr<v1::Router::Stub> stub = v1::Router::NewStub(channel);

  if (parser.GetBool("list-workers")) {
    grpc::ClientContext context;
    Prepare(context, settings);
    v1::ListWorkersResponse response;
    grpc::Status status = stub->ListWorkers(&context, v1::ListWorkersRequest(), &response);
    if (!status.ok()) return PrintRpcError(status);
    PrintWorkers(response);
    return 0;
  }
  if (parser.GetBool("stats")) {
    grpc::ClientContext context;
    Prepare(context, settings);
    v1::GetStatsResponse response;
    grpc::Status status = stub->GetStats(&context, v1::GetStatsRequest(), &response);
    if (!status.ok()) return PrintRpcError(status);
    PrintStats(response);
    return 0;
  }
  absl::StatusOr<v1::GenerateRequest> request = RequestFromFlags(parser);
  if (!request.ok()) {
    std::cerr << "pdserve-client: " << request.status().message() << "\n";
    return kExitUsage;
  }
  return RunGenerate(*stub, *request, settings);
}

}  // namespace
}  // namespace pdserve::cli

int main(int argc, char** argv) { return pdserve::cli::Run(argc, argv); }
