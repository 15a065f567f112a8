#include "common/http/http_server.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <deque>
#include <exception>
#include <thread>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"

namespace pdserve::http {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;
using TlsStream = net::ssl::stream<tcp::socket>;

// After the last response of a connection the server shuts its side and reads (and discards)
// what the client still sends, for at most this long, before closing: closing a socket with
// unread input resets it, and the client could lose the response (a 413 or 429) in the reset.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr size_t kMaxHeaderBytes = 64 << 10;

class SessionBase;

std::string AsString(beast::string_view view) { return std::string(view.data(), view.size()); }

// What outlives the server object: sessions (and through them the exchanges a handler holds)
// keep it alive, so that an exchange used after the server is gone finds `stopped` rather than
// a destroyed io_context.
struct ServerState {
  ServerState(HttpServerOptions o, HttpHandler h)
      : options(std::move(o)), handler(std::move(h)), ioc(std::max(1, options.io_threads)) {}

  const HttpServerOptions options;
  const HttpHandler handler;
  net::io_context ioc;
  std::unique_ptr<net::ssl::context> tls;  // null: plaintext
  std::atomic<int> connections{0};  // counted sessions alive

  absl::Mutex mu;
  bool stopped ABSL_GUARDED_BY(mu) = false;
  absl::flat_hash_set<SessionBase*> sessions ABSL_GUARDED_BY(mu);
};

// What an exchange and the server's shutdown call on a connection, whatever its transport. The
// calls taking an exchange `id` run in the connection's strand (Post them); stale ids are
// ignored.
class SessionBase : public std::enable_shared_from_this<SessionBase> {
 public:
  virtual ~SessionBase() = default;
  // Runs `step` in the strand unless the server has stopped (then false, and nothing runs).
  virtual bool Post(std::function<void()> step) = 0;
  // For the server's own shutdown, which runs after `stopped` is set.
  virtual void PostInternal(std::function<void()> step) = 0;
  virtual void Respond(uint64_t id, HttpResponse response) = 0;
  virtual void StartStream(uint64_t id, int status, std::string content_type,
                           std::vector<std::pair<std::string, std::string>> headers) = 0;
  virtual void Write(uint64_t id, std::string data, std::function<void(bool)> on_done) = 0;
  virtual void EndStream(uint64_t id) = 0;
  virtual void SetClientGoneCallback(uint64_t id, std::function<void()> on_gone) = 0;
  // The handler let go of the exchange: one it never answered gets 500; a stream it never ended
  // cannot be completed, so the connection closes.
  virtual void DropExchange(uint64_t id) = 0;
  virtual void Close() = 0;
};

// One connection over `Stream`: tcp::socket, or TlsStream (HTTPS). Every member is touched only
// in the connection's strand.
template <class Stream>
class Session final : public SessionBase {
 public:
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

  // `counted`: a connection within the limit; otherwise it is only answered 429 and closed.
  Session(std::shared_ptr<ServerState> state, Stream stream, bool counted)
      : state_(std::move(state)), counted_(counted), stream_(std::move(stream)),
        timer_(stream_.get_executor()) {
    if (counted_) state_->connections.fetch_add(1);
    absl::MutexLock lock(&state_->mu);
    state_->sessions.insert(this);
  }
  ~Session() {
    if (counted_) state_->connections.fetch_sub(1);
    absl::MutexLock lock(&state_->mu);
    state_->sessions.erase(this);
  }

  void Start() {
    beast::error_code ec;
    const tcp::endpoint remote = Socket().remote_endpoint(ec);
    if (!ec) peer_ = absl::StrCat(remote.address().to_string(), ":", remote.port());
    if constexpr (kTls) {
      ArmIdleTimer();
      stream_.async_handshake(net::ssl::stream_base::server,
                              [self = Self()](beast::error_code handshake_ec) {
                                self->timer_.cancel();
                                // A plaintext client or a failed handshake: nothing can carry
                                // an answer.
                                if (handshake_ec) return self->Close();
                                self->Begin();
                              });
    } else {
      Begin();
    }
  }

 private:
  void Begin() {
    if (!counted_) {
      keep_alive_ = false;
      exchange_open_ = true;
      SendResponse(ErrorResponse(
          429, absl::StrCat("the server has ", state_->options.max_connections,
                            " connections open, its limit: try again later"), ErrorTypeForStatus(429)));
      return;
    }
    ReadRequest();
  }

 public:
  bool Post(std::function<void()> step) override {
    absl::ReaderMutexLock lock(&state_->mu);
    if (state_->stopped) return false;
    net::post(stream_.get_executor(), std::move(step));
    return true;
  }
  void PostInternal(std::function<void()> step) override {
    net::post(stream_.get_executor(), std::move(step));
  }

  void Respond(uint64_t id, HttpResponse response) override {
    if (!IsCurrent(id) || answered_) return;
    SendResponse(std::move(response));
  }
  void StartStream(uint64_t id, int status, std::string content_type,
                   std::vector<std::pair<std::string, std::string>> headers) override {
    if (!IsCurrent(id) || answered_) return;
    answered_ = true;
    auto head = std::make_shared<bhttp::response<bhttp::empty_body>>(
        static_cast<bhttp::status>(status), 11);
    head->set(bhttp::field::server, "pdserve");
    head->set(bhttp::field::content_type, content_type);
    for (auto& [name, value] : headers) head->set(name, value);
    head->keep_alive(keep_alive_);
    head->chunked(true);
    auto serializer = std::make_shared<bhttp::response_serializer<bhttp::empty_body>>(*head);
    QueueWrite(
        [this, head, serializer](auto done) {
          bhttp::async_write_header(stream_, *serializer,
                                    [head, serializer, done](beast::error_code ec, size_t) {
                                      done(ec);
                                    });
        },
        nullptr);
  }
  void Write(uint64_t id, std::string data, std::function<void(bool)> on_done) override {
    if (!IsCurrent(id) || !answered_ || ended_ || closed_) {
      on_done(false);
      return;
    }
    if (data.empty()) {  // an empty chunk would end the stream
      on_done(true);
      return;
    }
    auto bytes = std::make_shared<std::string>(std::move(data));
    QueueWrite(
        [this, bytes](auto done) {
          net::async_write(stream_, bhttp::make_chunk(net::buffer(*bytes)),
                           [bytes, done](beast::error_code ec, size_t) { done(ec); });
        },
        std::move(on_done));
  }
  void EndStream(uint64_t id) override {
    if (!IsCurrent(id) || !answered_ || ended_) return;
    ended_ = true;
    QueueWrite(
        [this](auto done) {
          net::async_write(stream_, bhttp::make_chunk_last(),
                           [done](beast::error_code ec, size_t) { done(ec); });
        },
        [self = Self()](bool ok) { self->FinishExchange(ok); });
  }
  void SetClientGoneCallback(uint64_t id, std::function<void()> on_gone) override {
    if (!IsCurrent(id)) return;
    if (gone_) {
      on_gone();
      return;
    }
    on_gone_ = std::move(on_gone);
  }
  void DropExchange(uint64_t id) override {
    if (!IsCurrent(id)) return;
    if (!answered_) {
      SendResponse(ErrorResponse(500, "the server dropped the request without an answer",
                                 ErrorTypeForStatus(500)));
    } else if (!ended_) {
      Close();
    }
  }
  void Close() override {
    if (closed_) return;
    closed_ = true;
    beast::error_code ignored;
    timer_.cancel();
    Socket().shutdown(tcp::socket::shutdown_both, ignored);
    Socket().close(ignored);
    FireGone();
  }


 private:
  std::shared_ptr<Session> Self() { return std::static_pointer_cast<Session>(shared_from_this()); }
  tcp::socket& Socket() { return beast::get_lowest_layer(stream_); }

  bool IsCurrent(uint64_t id) const { return id == exchange_id_ && exchange_open_; }

  void ReadRequest() {
    parser_.emplace();
    parser_->body_limit(state_->options.max_body_bytes);
    parser_->header_limit(kMaxHeaderBytes);
    timed_out_ = false;
    ArmIdleTimer();
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = Self()](beast::error_code ec, size_t) {
                        self->OnRead(ec);
                      });
  }

  void ArmIdleTimer() {
    timer_.expires_after(std::chrono::microseconds(
        absl::ToInt64Microseconds(state_->options.idle_timeout)));
    timer_.async_wait([self = Self()](beast::error_code ec) {
      if (ec || self->closed_) return;
      self->timed_out_ = true;
      beast::error_code ignored;
      self->Socket().cancel(ignored);
    });
  }

  void OnRead(beast::error_code ec) {
    timer_.cancel();
    if (closed_) return;
    if (ec) {
      const bool began = parser_->got_some() || buffer_.size() > 0;
      if (timed_out_ && began) {
        RespondAndClose(408, "the request did not arrive in time");
      } else if (ec == bhttp::error::body_limit) {
        RespondAndClose(413, absl::StrCat("the request body is over ",
                                          state_->options.max_body_bytes, " bytes"));
      } else if (ec == bhttp::error::header_limit) {
        RespondAndClose(431, "the request's header is too large");
      } else if (began && ec != bhttp::error::end_of_stream && ec != net::error::eof &&
                 ec != net::error::connection_reset && ec != net::error::operation_aborted) {
        RespondAndClose(400, absl::StrCat("malformed HTTP request: ", ec.message()));
      } else {
        Close();
      }
      return;
    }
    bhttp::request<bhttp::string_body> message = parser_->release();
    parser_.reset();
    keep_alive_ = message.keep_alive();

    HttpRequest request;
    request.method = AsString(message.method_string());
    const absl::string_view target(message.target().data(), message.target().size());
    const size_t question = target.find('?');
    request.path = std::string(target.substr(0, question));
    if (question != absl::string_view::npos) request.query = std::string(target.substr(question + 1));
    for (const auto& field : message) {
      request.headers[absl::AsciiStrToLower(AsString(field.name_string()))] =
          AsString(field.value());
    }
    request.body = std::move(message.body());
    request.peer = peer_;

    ++exchange_id_;
    exchange_open_ = true;
    answered_ = false;
    ended_ = false;
    WatchConnection();
    StartHandler(std::move(request));
  }

  void StartHandler(HttpRequest request);

  // While an exchange is open, a read on the socket tells when the client goes away (an error or
  // end of stream). Bytes that arrive instead are a next request, kept for the parser; once the
  // exchange has ended this read is what waits for that next request.
  void WatchConnection() {
    watch_pending_ = true;
    stream_.async_read_some(
        buffer_.prepare(4096), [self = Self()](beast::error_code ec, size_t n) {
          self->OnWatch(ec, n);
        });
  }
  void OnWatch(beast::error_code ec, size_t n) {
    watch_pending_ = false;
    if (closed_) return;
    if (lingering_) {
      if (ec) {
        Close();
      } else {
        Discard();
      }
      return;
    }
    if (ec) {
      if (exchange_open_) {
        FireGone();
      } else {
        Close();
      }
      return;
    }
    buffer_.commit(n);
    if (!exchange_open_) {
      timer_.cancel();
      ReadRequest();
    }
  }

  void FireGone() {
    if (gone_) return;
    gone_ = true;
    if (on_gone_) {
      std::function<void()> on_gone = std::move(on_gone_);
      on_gone_ = nullptr;
      on_gone();
    }
  }

  void SendResponse(HttpResponse response) {
    answered_ = true;
    ended_ = true;
    auto message = std::make_shared<bhttp::response<bhttp::string_body>>(
        static_cast<bhttp::status>(response.status), 11);
    message->set(bhttp::field::server, "pdserve");
    message->set(bhttp::field::content_type, response.content_type);
    for (auto& [name, value] : response.headers) message->set(name, value);
    message->body() = std::move(response.body);
    message->keep_alive(keep_alive_);
    message->prepare_payload();
    QueueWrite(
        [this, message](auto done) {
          bhttp::async_write(stream_, *message,
                             [message, done](beast::error_code ec, size_t) { done(ec); });
        },
        [self = Self()](bool ok) { self->FinishExchange(ok); });
  }

  void RespondAndClose(int status, absl::string_view message) {
    keep_alive_ = false;
    exchange_open_ = true;
    ++exchange_id_;
    SendResponse(ErrorResponse(status, message, ErrorTypeForStatus(status)));
  }

  void FinishExchange(bool ok) {
    exchange_open_ = false;
    on_gone_ = nullptr;
    if (!ok || closed_ || gone_) {
      Close();
    } else if (!keep_alive_) {
      Linger();
    } else if (watch_pending_) {
      ArmIdleTimer();  // the watch read now waits for the next request
    } else {
      ReadRequest();
    }
  }

  // Shuts the sending side and discards input until the client closes or kLingerTime passes.
  void Linger() {
    lingering_ = true;
    beast::error_code ignored;
    Socket().shutdown(tcp::socket::shutdown_send, ignored);
    timer_.expires_after(kLingerTime);
    timer_.async_wait([self = Self()](beast::error_code ec) {
      if (!ec) self->Close();
    });
    if (!watch_pending_) Discard();
  }
  void Discard() {
    if (closed_) return;
    buffer_.clear();
    watch_pending_ = true;
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = Self()](beast::error_code ec, size_t) {
                              self->watch_pending_ = false;
                              if (ec) {
                                self->Close();
                              } else {
                                self->Discard();
                              }
                            });
  }

  // Writes go out one at a time, in order; `on_done` (may be empty) gets whether it went out.
  using WriteStart = std::function<void(std::function<void(beast::error_code)>)>;
  void QueueWrite(WriteStart start, std::function<void(bool)> on_done) {
    writes_.push_back({std::move(start), std::move(on_done)});
    if (!writing_) NextWrite();
  }
  void NextWrite() {
    if (writes_.empty()) {
      writing_ = false;
      return;
    }
    writing_ = true;
    if (closed_) {
      PendingWrite write = std::move(writes_.front());
      writes_.pop_front();
      if (write.on_done) write.on_done(false);
      NextWrite();
      return;
    }
    writes_.front().start([self = Self()](beast::error_code ec) {
      PendingWrite write = std::move(self->writes_.front());
      self->writes_.pop_front();
      if (ec) self->Close();
      if (write.on_done) write.on_done(!ec);
      self->NextWrite();
    });
  }

  struct PendingWrite {
    WriteStart start;
    std::function<void(bool)> on_done;
  };

  const std::shared_ptr<ServerState> state_;  // first: outlives the socket
  const bool counted_;
  Stream stream_;
  net::steady_timer timer_;
  std::string peer_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bool timed_out_ = false;
  bool keep_alive_ = true;
  bool closed_ = false;
  bool watch_pending_ = false;
  bool lingering_ = false;  // the last response is out; input is discarded until close
  // The current exchange.
  uint64_t exchange_id_ = 0;
  bool exchange_open_ = false;  // from its request until its last byte is written
  bool answered_ = false;       // Respond or StartStream called
  bool ended_ = false;          // Respond or EndStream called
  bool gone_ = false;           // the client left while it was open
  std::function<void()> on_gone_;
  std::deque<PendingWrite> writes_;
  bool writing_ = false;
};

class Exchange final : public HttpExchange {
 public:
  Exchange(std::shared_ptr<SessionBase> session, uint64_t id, HttpRequest request)
      : session_(std::move(session)), id_(id), request_(std::move(request)) {}
  ~Exchange() override {
    session_->Post([session = session_, id = id_] { session->DropExchange(id); });
  }

  const HttpRequest& request() const override { return request_; }
  void Respond(HttpResponse response) override {
    session_->Post([session = session_, id = id_, response = std::move(response)]() mutable {
      session->Respond(id, std::move(response));
    });
  }
  void StartStream(int status, std::string content_type,
                   std::vector<std::pair<std::string, std::string>> headers) override {
    session_->Post([session = session_, id = id_, status, content_type = std::move(content_type),
                    headers = std::move(headers)]() mutable {
      session->StartStream(id, status, std::move(content_type), std::move(headers));
    });
  }
  void Write(std::string data, std::function<void(bool ok)> on_done) override {
    auto done = std::make_shared<std::function<void(bool)>>(std::move(on_done));
    const bool posted = session_->Post([session = session_, id = id_, data = std::move(data),
                                        done]() mutable {
      session->Write(id, std::move(data), std::move(*done));
    });
    if (!posted) (*done)(false);
  }
  void EndStream() override {
    session_->Post([session = session_, id = id_] { session->EndStream(id); });
  }
  void Abort() override {
    session_->Post([session = session_] { session->Close(); });
  }
  void SetClientGoneCallback(std::function<void()> on_gone) override {
    session_->Post([session = session_, id = id_, on_gone = std::move(on_gone)]() mutable {
      session->SetClientGoneCallback(id, std::move(on_gone));
    });
  }

 private:
  const std::shared_ptr<SessionBase> session_;
  const uint64_t id_;
  const HttpRequest request_;
};

template <class Stream>
void Session<Stream>::StartHandler(HttpRequest request) {
  auto exchange = std::make_shared<Exchange>(shared_from_this(), exchange_id_, std::move(request));
  try {
    state_->handler(std::move(exchange));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pdserve http: handler threw: %s\n", e.what());
    // The exchange's destruction answers 500.
  }
}

class HttpServerImpl final : public HttpServer {
 public:
  HttpServerImpl(std::shared_ptr<ServerState> state, tcp::acceptor acceptor)
      : state_(std::move(state)), acceptor_(std::move(acceptor)),
        work_(net::make_work_guard(state_->ioc)), retry_timer_(state_->ioc) {
    const tcp::endpoint local = acceptor_.local_endpoint();
    port_ = local.port();
    bound_ = absl::StrCat(local.address().is_v6() ? absl::StrCat("[", local.address().to_string(), "]")
                                                  : local.address().to_string(),
                          ":", port_);
  }

  void Run() {
    net::post(acceptor_.get_executor(), [this] { Accept(); });
    const int n = std::max(1, state_->options.io_threads);
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { state_->ioc.run(); });
  }

  ~HttpServerImpl() override {
    // From here on exchanges post nothing; then every connection closes, and the I/O threads
    // return once the completions that closing causes have run.
    std::vector<std::shared_ptr<SessionBase>> sessions;
    {
      absl::MutexLock lock(&state_->mu);
      state_->stopped = true;
      for (SessionBase* session : state_->sessions) {
        if (auto alive = session->weak_from_this().lock()) sessions.push_back(std::move(alive));
      }
    }
    net::post(acceptor_.get_executor(), [this] {
      beast::error_code ignored;
      acceptor_.close(ignored);
      retry_timer_.cancel();
    });
    for (auto& session : sessions) session->PostInternal([session] { session->Close(); });
    sessions.clear();
    work_.reset();
    for (std::thread& thread : threads_) thread.join();
  }

  std::string bound() const override { return bound_; }
  int port() const override { return port_; }
  int open_connections() const override { return state_->connections.load(); }

 private:
  void Accept() {
    acceptor_.async_accept(net::make_strand(state_->ioc),
                           [this](beast::error_code ec, tcp::socket socket) {
                             if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
                             if (ec) {
                               // Out of file descriptors, say: try again shortly, not in a loop.
                               retry_timer_.expires_after(std::chrono::milliseconds(50));
                               retry_timer_.async_wait([this](beast::error_code wait_ec) {
                                 if (!wait_ec) Accept();
                               });
                               return;
                             }
                             const bool within_limit =
                                 state_->connections.load() < state_->options.max_connections;
                             if (state_->tls != nullptr) {
                               std::make_shared<Session<TlsStream>>(
                                   state_, TlsStream(std::move(socket), *state_->tls), within_limit)
                                   ->Start();
                             } else {
                               std::make_shared<Session<tcp::socket>>(state_, std::move(socket),
                                                                      within_limit)
                                   ->Start();
                             }
                             Accept();
                           });
  }

  const std::shared_ptr<ServerState> state_;
  tcp::acceptor acceptor_;
  net::executor_work_guard<net::io_context::executor_type> work_;
  net::steady_timer retry_timer_;
  std::vector<std::thread> threads_;
  int port_ = 0;
  std::string bound_;
};

absl::StatusOr<tcp::endpoint> ParseListen(absl::string_view listen) {
  const size_t colon = listen.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP listen address '", listen, "' is not HOST:PORT"));
  }
  absl::string_view host = listen.substr(0, colon);
  int port = 0;
  if (!absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP listen address '", listen, "': the port is not in [0, 65535]"));
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "localhost") host = "127.0.0.1";
  beast::error_code ec;
  const net::ip::address address = net::ip::make_address(std::string(host), ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(
        "HTTP listen address '", listen, "': '", host, "' is not an IP address"));
  }
  return tcp::endpoint(address, static_cast<unsigned short>(port));
}

}  // namespace

std::optional<std::string> HttpRequest::Header(absl::string_view name) const {
  auto it = headers.find(std::string(name));
  if (it == headers.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options,
                                                              HttpHandler handler) {
  if (options.max_connections < 1) {
    return absl::InvalidArgumentError("the HTTP connection limit must be >= 1");
  }
  absl::StatusOr<tcp::endpoint> endpoint = ParseListen(options.listen);
  if (!endpoint.ok()) return endpoint.status();
  auto state = std::make_shared<ServerState>(std::move(options), std::move(handler));
  if (state->options.tls_cert_pem.empty() != state->options.tls_key_pem.empty()) {
    return absl::InvalidArgumentError("HTTPS needs both a certificate and its key");
  }
  if (!state->options.tls_cert_pem.empty()) {
    auto tls = std::make_unique<net::ssl::context>(net::ssl::context::tls_server);
    tls->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                     net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                     net::ssl::context::no_tlsv1_1);
    beast::error_code tls_ec;
    tls->use_certificate_chain(net::buffer(state->options.tls_cert_pem), tls_ec);
    if (!tls_ec) {
      tls->use_private_key(net::buffer(state->options.tls_key_pem), net::ssl::context::pem, tls_ec);
    }
    if (tls_ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("the HTTPS certificate or key cannot be used: ", tls_ec.message()));
    }
    state->tls = std::move(tls);
  }
  tcp::acceptor acceptor(state->ioc);
  beast::error_code ec;
  acceptor.open(endpoint->protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(*endpoint, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve HTTP on ", state->options.listen, ": ", ec.message()));
  }
  auto server = std::make_unique<HttpServerImpl>(state, std::move(acceptor));
  server->Run();
  return server;
}

HttpResponse JsonResponse(int status, std::string json_body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(json_body);
  return response;
}

HttpResponse TextResponse(int status, std::string text, std::string content_type) {
  HttpResponse response;
  response.status = status;
  response.content_type = std::move(content_type);
  response.body = std::move(text);
  return response;
}

HttpResponse ErrorResponse(int status, absl::string_view message, absl::string_view type) {
  return JsonResponse(status, ErrorJson(message, type));
}

std::string ErrorJson(absl::string_view message, absl::string_view type) {
  nlohmann::json body = {{"error",
                          {{"message", std::string(message)},
                           {"type", std::string(type)},
                           {"param", nullptr},
                           {"code", nullptr}}}};
  // Replacement characters rather than an exception for a message with invalid UTF-8.
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

absl::string_view ErrorTypeForStatus(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 408: return "timeout_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable_error";
    case 504: return "timeout_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

}  // namespace pdserve::http
