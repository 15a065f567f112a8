#include "common/kv_transfer/tcp/tcp_kv_receiver.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/kv_transfer/tcp/tcp_frame.h"

namespace pdserve::kv_transfer {
namespace {

std::string PeerName(const sockaddr_storage& address, socklen_t len) {
  char host[NI_MAXHOST];
  char port[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&address), len, host, sizeof(host), port,
                  sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "an unknown peer";
  }
  return address.ss_family == AF_INET6 ? absl::StrCat("[", host, "]:", port)
                                       : absl::StrCat(host, ":", port);
}

}  // namespace

TcpKvReceiver::TcpKvReceiver(KvReservationTable& table, kv::KvBlockPool& pool,
                             TcpKvReceiverOptions options)
    : table_(table), pool_(pool), options_(std::move(options)) {}

TcpKvReceiver::~TcpKvReceiver() { Stop(); }

absl::Status TcpKvReceiver::Start(const std::string& host, int port) {
  absl::MutexLock lock(&mu_);
  if (started_ || stopped_) {
    return absl::FailedPreconditionError(
        absl::StrCat("TCP KV receiver on ", host, ":", port, ": Start called twice"));
  }
  if (!wake_.valid()) {
    return absl::InternalError(
        absl::StrCat("TCP KV receiver on ", host, ":", port, ": no eventfd for Stop"));
  }
  absl::StatusOr<Fd> listener = ListenTcp(host, port);
  if (!listener.ok()) return listener.status();
  absl::StatusOr<int> bound = BoundPort(listener->get());
  if (!bound.ok()) return bound.status();
  listener_ = *std::move(listener);
  port_ = *bound;
  started_ = true;
  accept_thread_ = std::thread([this] { AcceptLoop(); });
  return absl::OkStatus();
}

void TcpKvReceiver::Stop() {
  absl::MutexLock stopping(&stop_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    if (!started_) return;
  }
  wake_.Signal();
  accept_thread_.join();
  // No connection starts after the accept thread: the list is final.
  std::list<std::unique_ptr<Connection>> connections;
  {
    absl::MutexLock lock(&mu_);
    connections.swap(connections_);
  }
  for (const std::unique_ptr<Connection>& connection : connections) connection->thread.join();
  listener_.Close();
}

int TcpKvReceiver::port() const {
  absl::MutexLock lock(&mu_);
  return port_;
}

int TcpKvReceiver::n_connections() const {
  absl::MutexLock lock(&mu_);
  return n_active_;
}

void TcpKvReceiver::ReapFinished() {
  std::list<std::unique_ptr<Connection>> finished;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      auto next = std::next(it);
      if ((*it)->done) finished.splice(finished.end(), connections_, it);
      it = next;
    }
  }
  for (const std::unique_ptr<Connection>& connection : finished) connection->thread.join();
}

void TcpKvReceiver::AcceptLoop() {
  const IoLimits until_stop{.wake_fd = wake_.get()};
  for (;;) {
    if (!WaitReadable(listener_.get(), until_stop).ok()) return;  // Stop
    ReapFinished();
    sockaddr_storage address{};
    socklen_t len = sizeof(address);
    Fd fd(accept4(listener_.get(), reinterpret_cast<sockaddr*>(&address), &len,
                  SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd.valid()) {
      // Out of descriptors (EMFILE, ENFILE) would wake us again at once: breathe first.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        absl::SleepFor(absl::Milliseconds(10));
      }
      continue;
    }
    const int one = 1;
    (void)setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    std::string peer = PeerName(address, len);
    absl::MutexLock lock(&mu_);
    if (n_active_ >= options_.max_connections) {
      // Best effort: the refusal fits in the empty send buffer of a new socket.
      const std::string ack = EncodeAck(absl::ResourceExhaustedError(absl::StrCat(
          "TCP KV receiver on port ", port_, " refuses ", peer, ": it serves ",
          options_.max_connections, " connections already")));
      (void)!send(fd.get(), ack.data(), ack.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      continue;
    }
    ++n_active_;
    auto connection = std::make_unique<Connection>();
    connection->fd = std::move(fd);
    connection->peer = std::move(peer);
    Connection* raw = connection.get();
    connections_.push_back(std::move(connection));
    raw->thread = std::thread([this, raw] { Serve(raw); });
  }
}

void TcpKvReceiver::Serve(Connection* connection) {
  ServeKvConnection(connection->fd.get(), connection->peer, table_, pool_, options_.connection,
                    wake_.get());
  connection->fd.Close();  // the peer sees the end now, not when the thread is reaped
  absl::MutexLock lock(&mu_);
  --n_active_;
  connection->done = true;
}

}  // namespace pdserve::kv_transfer
