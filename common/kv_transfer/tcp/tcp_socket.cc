#include "common/kv_transfer/tcp/tcp_socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/kv_transfer/handoff.h"

namespace pdserve::kv_transfer {
namespace {

std::string ErrnoText(int error) { return std::strerror(error); }

// Milliseconds for poll(): the nearer of the deadline and the silence timeout, rounded up;
// -1 when both are infinite.
int PollTimeoutMs(const IoLimits& limits) {
  absl::Duration wait = limits.silence;
  if (limits.deadline != absl::InfiniteFuture()) {
    wait = std::min(wait, std::max(absl::ZeroDuration(), limits.deadline - absl::Now()));
  }
  if (wait == absl::InfiniteDuration()) return -1;
  const int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(wait, absl::Milliseconds(1)));
  return static_cast<int>(std::min<int64_t>(ms, std::numeric_limits<int>::max()));
}

// Waits for `events` on `fd`: OK when they (or an error or hang-up) came, Cancelled when the
// wake descriptor fired, DeadlineExceeded when the limits ran out first.
absl::Status WaitFor(int fd, short events, const IoLimits& limits) {
  for (;;) {
    pollfd fds[2] = {{fd, events, 0}, {limits.wake_fd, POLLIN, 0}};
    const nfds_t n_fds = limits.wake_fd >= 0 ? 2 : 1;
    const int timeout_ms = PollTimeoutMs(limits);
    const int n = poll(fds, n_fds, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("poll failed: ", ErrnoText(errno)));
    }
    if (n_fds == 2 && fds[1].revents != 0) return absl::CancelledError("the socket was shut");
    if (fds[0].revents != 0) return absl::OkStatus();
    if (absl::Now() >= limits.deadline) return absl::DeadlineExceededError("the deadline passed");
    return absl::DeadlineExceededError(absl::StrCat(
        "no progress for ", absl::FormatDuration(limits.silence)));
  }
}

// Drops the first `n` bytes of `iov`; returns the entries still to go.
absl::Span<iovec> Advance(absl::Span<iovec> iov, size_t n) {
  while (!iov.empty() && n >= iov.front().iov_len) {
    n -= iov.front().iov_len;
    iov.remove_prefix(1);
  }
  while (!iov.empty() && iov.front().iov_len == 0) iov.remove_prefix(1);
  if (!iov.empty() && n > 0) {
    iov.front().iov_base = static_cast<uint8_t*>(iov.front().iov_base) + n;
    iov.front().iov_len -= n;
  }
  return iov;
}

size_t TotalBytes(absl::Span<const iovec> iov) {
  size_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  return total;
}

// At most IOV_MAX entries per call.
constexpr size_t kMaxIovPerCall = 1024;

}  // namespace

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    Close();
    fd_ = other.Release();
  }
  return *this;
}

int Fd::Release() {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

void Fd::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::string JoinHostPort(const HostPort& address) {
  return address.host.find(':') != std::string::npos
             ? absl::StrCat("[", address.host, "]:", address.port)
             : absl::StrCat(address.host, ":", address.port);
}

bool IsTcpEndpoint(absl::string_view endpoint) {
  const size_t colon = endpoint.rfind(':');
  int port = 0;
  return colon != absl::string_view::npos &&
         absl::SimpleAtoi(endpoint.substr(colon + 1), &port) && port >= 1 && port <= 65535;
}

absl::StatusOr<HostPort> ParseTcpEndpoint(absl::string_view endpoint,
                                          absl::string_view control_address) {
  if (!IsTcpEndpoint(endpoint)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tcp KV endpoint '", endpoint, "': expected host:port or :port with a port in [1, 65535]"));
  }
  const size_t colon = endpoint.rfind(':');
  HostPort out;
  (void)absl::SimpleAtoi(endpoint.substr(colon + 1), &out.port);
  out.host = colon == 0 ? HostOf(control_address) : HostOf(endpoint);
  if (out.host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("tcp KV endpoint '", endpoint,
                                                   "': no host, and none in the control address '",
                                                   control_address, "'"));
  }
  return out;
}

absl::StatusOr<Fd> ConnectTcp(const HostPort& address, const IoLimits& limits) {
  const std::string where = absl::StrCat("KV connection to ", JoinHostPort(address), ": ");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = absl::StrCat(address.port);
  if (const int rc = getaddrinfo(address.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(absl::StrCat(where, "cannot resolve: ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> addresses(found, &freeaddrinfo);
  absl::Status last = absl::UnavailableError(absl::StrCat(where, "no address"));
  for (const addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    Fd fd(socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd.valid()) {
      last = absl::UnavailableError(absl::StrCat(where, "socket: ", ErrnoText(errno)));
      continue;
    }
    if (connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last = absl::UnavailableError(absl::StrCat(where, ErrnoText(errno)));
      continue;
    }
    if (absl::Status s = WaitFor(fd.get(), POLLOUT, limits); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(where, "connect: ", s.message()));
    }
    int error = 0;
    socklen_t len = sizeof(error);
    if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
    if (error != 0) {
      last = absl::UnavailableError(absl::StrCat(where, ErrnoText(error)));
      continue;
    }
    const int one = 1;
    (void)setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
  }
  return last;
}

absl::StatusOr<Fd> ListenTcp(const std::string& host, int port) {
  const std::string where = absl::StrCat("TCP KV listener on ", host, ":", port, ": ");
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(where, "port out of [0, 65535]"));
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string port_text = absl::StrCat(port);
  const char* node = host.empty() ? "0.0.0.0" : host.c_str();
  if (const int rc = getaddrinfo(node, port_text.c_str(), &hints, &found); rc != 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, "cannot resolve: ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> addresses(found, &freeaddrinfo);
  Fd fd(socket(found->ai_family, found->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
               found->ai_protocol));
  if (!fd.valid()) return absl::InternalError(absl::StrCat(where, "socket: ", ErrnoText(errno)));
  const int one = 1;
  (void)setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd.get(), found->ai_addr, found->ai_addrlen) != 0) {
    return absl::UnavailableError(absl::StrCat(where, "bind: ", ErrnoText(errno)));
  }
  if (listen(fd.get(), SOMAXCONN) != 0) {
    return absl::UnavailableError(absl::StrCat(where, "listen: ", ErrnoText(errno)));
  }
  return fd;
}

absl::StatusOr<int> BoundPort(int fd) {
  sockaddr_storage address{};
  socklen_t len = sizeof(address);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &len) != 0) {
    return absl::InternalError(absl::StrCat("getsockname: ", ErrnoText(errno)));
  }
  if (address.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in*>(&address)->sin_port);
}

absl::Status WaitReadable(int fd, const IoLimits& limits) { return WaitFor(fd, POLLIN, limits); }

bool ReadableNow(int fd) {
  pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, 0) > 0 && p.revents != 0;
}

absl::Status WriteAll(int fd, absl::Span<iovec> iov, const IoLimits& limits) {
  const size_t total = TotalBytes(iov);
  size_t written = 0;
  iov = Advance(iov, 0);
  while (!iov.empty()) {
    msghdr message{};
    message.msg_iov = iov.data();
    message.msg_iovlen = std::min(iov.size(), kMaxIovPerCall);
    // sendmsg is writev with MSG_NOSIGNAL: a closed peer is an error, not a SIGPIPE.
    const ssize_t n = sendmsg(fd, &message, MSG_NOSIGNAL);
    if (n > 0) {
      written += static_cast<size_t>(n);
      iov = Advance(iov, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (absl::Status s = WaitFor(fd, POLLOUT, limits); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat("writing: ", s.message(), " after ", written,
                                                   " of ", total, " bytes"));
      }
      continue;
    }
    return absl::UnavailableError(absl::StrCat("writing: ", ErrnoText(errno), " after ", written,
                                               " of ", total, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, absl::Span<const uint8_t> bytes, const IoLimits& limits) {
  iovec one = {const_cast<uint8_t*>(bytes.data()), bytes.size()};
  return WriteAll(fd, absl::MakeSpan(&one, 1), limits);
}

absl::Status ReadAll(int fd, absl::Span<iovec> iov, const IoLimits& limits, size_t* n_read) {
  const size_t total = TotalBytes(iov);
  size_t got = 0;
  absl::Status status;
  iov = Advance(iov, 0);
  while (!iov.empty()) {
    const ssize_t n =
        readv(fd, iov.data(), static_cast<int>(std::min(iov.size(), kMaxIovPerCall)));
    if (n > 0) {
      got += static_cast<size_t>(n);
      iov = Advance(iov, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      status = absl::UnavailableError(
          absl::StrCat("the peer closed the connection after ", got, " of ", total, " bytes"));
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (absl::Status s = WaitFor(fd, POLLIN, limits); !s.ok()) {
        status = absl::Status(s.code(), absl::StrCat("reading: ", s.message(), " after ", got,
                                                     " of ", total, " bytes"));
        break;
      }
      continue;
    }
    status = absl::UnavailableError(
        absl::StrCat("reading: ", ErrnoText(errno), " after ", got, " of ", total, " bytes"));
    break;
  }
  if (n_read != nullptr) *n_read = got;
  return status;
}

absl::Status ReadAll(int fd, absl::Span<uint8_t> bytes, const IoLimits& limits, size_t* n_read) {
  iovec one = {bytes.data(), bytes.size()};
  return ReadAll(fd, absl::MakeSpan(&one, 1), limits, n_read);
}

WakeFd::WakeFd() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

void WakeFd::Signal() {
  const uint64_t one = 1;
  (void)!write(fd_.get(), &one, sizeof(one));
}

}  // namespace pdserve::kv_transfer
