#include "router/openai/openai_front.h"

#include <cstdio>
#include <random>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/metrics/metrics_http.h"
#include "common/request/request_contract.h"
#include "router/openai/openai_protocol.h"

namespace pdserve::router::openai {
namespace {

constexpr char kEventStream[] = "text/event-stream";

http::HttpResponse Error(int status, absl::string_view message) {
  return http::ErrorResponse(status, message, http::ErrorTypeForStatus(status));
}

http::HttpResponse ErrorFor(const absl::Status& status) {
  return Error(HttpStatusFor(status.code()), status.message());
}

std::string RandomHex(int n_bytes) {
  thread_local std::mt19937_64 generator(std::random_device{}());
  std::string hex;
  for (int i = 0; i < n_bytes; i += 8) {
    absl::StrAppend(&hex, absl::Hex(generator(), absl::kZeroPad16));
  }
  return hex.substr(0, 2 * n_bytes);
}

// Fair queueing names a client by its API key, else by its address (not its connection: an HTTP
// client opens many).
std::string ClientKey(const http::HttpRequest& request) {
  if (std::optional<std::string> authorization = request.Header("authorization")) {
    return absl::StrCat("key ", *authorization);
  }
  const size_t colon = request.peer.rfind(':');
  return absl::StrCat("ip ", colon == std::string::npos ? request.peer : request.peer.substr(0, colon));
}

// One request's client side: the relay's ResponseSink on an HTTP exchange. Keeps itself alive
// until the relay has called Finish and the last write has completed.
class HttpGenerateSink final : public ResponseSink,
                               public std::enable_shared_from_this<HttpGenerateSink> {
 public:
  HttpGenerateSink(std::shared_ptr<http::HttpExchange> exchange, ResponseIdentity identity,
                   bool stream, bool include_usage)
      : exchange_(std::move(exchange)), identity_(std::move(identity)), stream_(stream),
        include_usage_(include_usage) {}

  void Start(Relay& relay, v1::GenerateRequest request) {
    self_ = shared_from_this();
    std::shared_ptr<RelayCall> call =
        relay.Start(std::move(request), *this, absl::InfiniteFuture(), ClientKey(exchange_->request()));
    exchange_->SetClientGoneCallback([call] { call->OnClientCancelled(); });
    absl::MutexLock lock(&mu_);
    call_ = call;
    if (pending_write_done_.has_value()) {
      // A write completed before Start returned.
      const bool ok = *pending_write_done_;
      pending_write_done_.reset();
      call->OnWriteDone(ok);
    }
  }

  // ResponseSink.
  void StartWrite(const v1::GenerateResponse& response) override {
    std::string events;
    if (response.has_chunk()) {
      if (stream_) {
        events = TextEvent(identity_, response.chunk().text(), !stream_started_);
      } else {
        text_ += response.chunk().text();
      }
    } else if (response.has_final()) {
      finish_reason_ = response.final().finish_reason();
      usage_ = response.final().usage();
      if (stream_) {
        if (!stream_started_ && identity_.endpoint == Endpoint::kChatCompletions) {
          // A chat stream tells the role first, also when no text came.
          events = TextEvent(identity_, "", /*first=*/true);
        }
        events += FinalEvents(identity_, finish_reason_, usage_, include_usage_);
      }
    }
    if (events.empty()) {
      WriteDone(true);
      return;
    }
    if (!stream_started_) {
      stream_started_ = true;
      exchange_->StartStream(200, kEventStream,
                             {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}});
    }
    exchange_->Write(std::move(events), [self = shared_from_this()](bool ok) { self->WriteDone(ok); });
  }

  void CancelStream() override { exchange_->Abort(); }

  void Finish(const absl::Status& status, absl::Duration retry_after) override {
    if (stream_started_) {
      if (status.ok()) {
        exchange_->EndStream();
      } else {
        exchange_->Write(ErrorEvents(status), [exchange = exchange_](bool) { exchange->EndStream(); });
      }
    } else if (status.ok()) {
      exchange_->Respond(http::JsonResponse(200, CompletionBody(identity_, text_, finish_reason_, usage_)));
    } else {
      http::HttpResponse response = ErrorFor(status);
      if (retry_after > absl::ZeroDuration()) {
        // Whole seconds, rounded up (HTTP's Retry-After has no finer unit).
        response.headers.emplace_back(
            "Retry-After", absl::StrCat(absl::ToInt64Seconds(absl::Ceil(retry_after, absl::Seconds(1)))));
      }
      exchange_->Respond(std::move(response));
    }
    self_.reset();  // the relay is done with this sink; pending writes hold it still
  }

 private:
  void WriteDone(bool ok) {
    std::shared_ptr<RelayCall> call;
    {
      absl::MutexLock lock(&mu_);
      if (call_ == nullptr) {
        pending_write_done_ = ok;
        return;
      }
      call = call_;
    }
    call->OnWriteDone(ok);
  }

  const std::shared_ptr<http::HttpExchange> exchange_;
  const ResponseIdentity identity_;
  const bool stream_;
  const bool include_usage_;
  std::shared_ptr<HttpGenerateSink> self_;

  // The relay's calls come one at a time (its strand): these need no lock.
  bool stream_started_ = false;
  std::string text_;  // not streamed: the whole answer
  std::string finish_reason_;
  v1::Usage usage_;

  absl::Mutex mu_;
  std::shared_ptr<RelayCall> call_ ABSL_GUARDED_BY(mu_);
  std::optional<bool> pending_write_done_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::string DefaultServedModelName(const std::string& model_path) {
  std::string name = model_path.substr(model_path.find_last_of('/') + 1);
  const size_t dot = name.rfind('.');
  if (dot != std::string::npos && dot > 0) name.resize(dot);
  return name;
}

OpenAiFront::OpenAiFront(Relay& relay, const WorkerRegistry& registry, OpenAiFrontOptions options)
    : relay_(relay), registry_(registry), options_(std::move(options)),
      created_(absl::ToUnixSeconds(absl::Now())) {}

void OpenAiFront::Handle(std::shared_ptr<http::HttpExchange> exchange) {
  const http::HttpRequest& request = exchange->request();
  const std::string& path = request.path;
  const bool is_get = request.method == "GET";
  const bool is_post = request.method == "POST";
  auto method_not_allowed = [&](const char* allowed) {
    http::HttpResponse response =
        Error(405, absl::StrCat(request.method, " is not allowed on ", path, " (use ", allowed, ")"));
    response.headers.emplace_back("Allow", allowed);
    exchange->Respond(std::move(response));
  };

  if (path == "/health") {
    if (!is_get) return method_not_allowed("GET");
    return exchange->Respond(Health());
  }
  if (path == "/metrics") {
    if (!options_.render_metrics) return exchange->Respond(Error(404, "no metrics here"));
    if (!is_get) return method_not_allowed("GET");
    return exchange->Respond(
        http::TextResponse(200, options_.render_metrics(), metrics::kTextContentType));
  }
  if (path.rfind("/v1/", 0) == 0) {
    if (absl::Status s = rpc::AuthorizeAuthorizationHeader(request.Header("authorization"),
                                                           options_.security);
        !s.ok()) {
      return exchange->Respond(ErrorFor(s));
    }
  }
  if (path == "/v1/models") {
    if (!is_get) return method_not_allowed("GET");
    return exchange->Respond(http::JsonResponse(
        200, ModelListBody(options_.served_model_name, created_, options_.context_length)));
  }
  if (path == "/v1/completions" || path == "/v1/chat/completions") {
    if (!is_post) return method_not_allowed("POST");
    return Generate(std::move(exchange), path == "/v1/chat/completions");
  }
  exchange->Respond(Error(404, absl::StrCat("no such endpoint: ", request.method, " ", path)));
}

void OpenAiFront::Generate(std::shared_ptr<http::HttpExchange> exchange, bool chat) {
  const Endpoint endpoint = chat ? Endpoint::kChatCompletions : Endpoint::kCompletions;
  absl::StatusOr<OpenAiRequest> request = ParseOpenAiRequest(endpoint, exchange->request().body);
  if (!request.ok()) return exchange->Respond(ErrorFor(request.status()));
  if (!request->model.empty() && request->model != options_.served_model_name) {
    return exchange->Respond(Error(
        404, absl::StrCat("The model '", request->model, "' does not exist: this server serves '",
                          options_.served_model_name, "'")));
  }
  // The response id is the request id the router logs and workers see: a client's X-Request-Id
  // when it is a valid one, else a fresh one.
  std::string request_id = absl::StrCat(chat ? "chatcmpl-" : "cmpl-", RandomHex(12));
  if (std::optional<std::string> header = exchange->request().Header("x-request-id");
      header.has_value() && !header->empty()) {
    if (absl::Status s = request::CheckClientRequestId(*header); !s.ok()) {
      return exchange->Respond(ErrorFor(s));
    }
    request_id = *header;
  }
  request->generate.set_request_id(request_id);
  ResponseIdentity identity{.endpoint = endpoint,
                            .id = request_id,
                            .created = absl::ToUnixSeconds(absl::Now()),
                            .model = options_.served_model_name};
  auto sink = std::make_shared<HttpGenerateSink>(exchange, std::move(identity), request->stream,
                                                 request->include_usage);
  sink->Start(relay_, std::move(request->generate));
}

http::HttpResponse OpenAiFront::Health() const {
  int prefill = 0, decode = 0;
  for (const WorkerSnapshot& worker : registry_.Snapshot()) {
    if (!worker.healthy) continue;
    if (worker.role == v1::WORKER_ROLE_PREFILL) ++prefill;
    if (worker.role == v1::WORKER_ROLE_DECODE) ++decode;
  }
  const bool ready = prefill > 0 && decode > 0;
  return http::JsonResponse(
      ready ? 200 : 503,
      absl::StrCat("{\"status\":\"", ready ? "ok" : "no healthy prefill and decode worker",
                   "\",\"prefill_workers\":", prefill, ",\"decode_workers\":", decode, "}"));
}

}  // namespace pdserve::router::openai
