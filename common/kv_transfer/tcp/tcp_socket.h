#pragma once
// The socket plumbing of the "tcp" KV transport: an owned file descriptor, "host:port" parsing,
// a bounded connect, a listener, and whole-buffer reads and writes on non-blocking sockets in
// which every wait is a poll bounded by a deadline, a silence timeout and a wake descriptor.
// Linux only (accept4, eventfd, MSG_NOSIGNAL).

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace pdserve::kv_transfer {

// Owns one file descriptor: closes it on destruction. Move-only. Not thread-safe.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { Close(); }
  Fd(Fd&& other) noexcept : fd_(other.Release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release();
  void Close();

 private:
  int fd_ = -1;
};

struct HostPort {
  std::string host;  // a name or a numeric address, without brackets
  int port = 0;      // [1, 65535]
};

// "host:port", or "[host]:port" for an IPv6 address.
std::string JoinHostPort(const HostPort& address);

// Whether `endpoint` has the form ParseTcpEndpoint takes (without resolving anything).
bool IsTcpEndpoint(absl::string_view endpoint);
// Parses a "tcp" offer's endpoint: "host:port", "[v6]:port", or ":port" meaning the host of
// `control_address` (the decode worker's gRPC address). InvalidArgument naming the endpoint.
absl::StatusOr<HostPort> ParseTcpEndpoint(absl::string_view endpoint,
                                          absl::string_view control_address);

// What bounds every wait of one socket operation: it fails with DeadlineExceeded at `deadline`
// or after `silence` without progress, and with Cancelled as soon as `wake_fd` (when >= 0) is
// readable.
struct IoLimits {
  absl::Time deadline = absl::InfiniteFuture();
  absl::Duration silence = absl::InfiniteDuration();
  int wake_fd = -1;
};

// A connected, non-blocking TCP socket to `address` with TCP_NODELAY on, or Unavailable /
// DeadlineExceeded naming the address. Name resolution (getaddrinfo) is not bounded by
// `limits`; the connect is.
absl::StatusOr<Fd> ConnectTcp(const HostPort& address, const IoLimits& limits);

// A non-blocking listening socket bound to `host` ("" or "0.0.0.0": every IPv4 interface) and
// `port` (0: an ephemeral one; BoundPort tells which).
absl::StatusOr<Fd> ListenTcp(const std::string& host, int port);
absl::StatusOr<int> BoundPort(int fd);

// Waits until `fd` is readable (bytes, EOF or an error to collect). OK, or the limits' error.
absl::Status WaitReadable(int fd, const IoLimits& limits);

// Writes every byte of `iov` (consumed: its entries are advanced as bytes go out). Partial
// writes continue; a peer that closed or reset is Unavailable.
absl::Status WriteAll(int fd, absl::Span<iovec> iov, const IoLimits& limits);
absl::Status WriteAll(int fd, absl::Span<const uint8_t> bytes, const IoLimits& limits);

// Fills every byte of `iov` (consumed likewise) with readv. A peer that closes first is
// Unavailable with the count of bytes that did arrive. `*n_read` (when not null) gets that
// count either way.
absl::Status ReadAll(int fd, absl::Span<iovec> iov, const IoLimits& limits,
                     size_t* n_read = nullptr);
absl::Status ReadAll(int fd, absl::Span<uint8_t> bytes, const IoLimits& limits,
                     size_t* n_read = nullptr);

// Whether `fd` is readable now (bytes, EOF or an error to collect), without waiting.
bool ReadableNow(int fd);

// An eventfd that is never read: once Signal()ed it stays readable, waking every poll that
// includes it. Thread-safe after construction.
class WakeFd {
 public:
  WakeFd();
  bool valid() const { return fd_.valid(); }  // false when the system had no eventfd to give
  int get() const { return fd_.get(); }
  void Signal();

 private:
  Fd fd_;
};

}  // namespace pdserve::kv_transfer
