#include "bench/transfer/loopback_stream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace pdserve::bench {
namespace {

absl::Status Errno(const char* what) {
  return absl::UnavailableError(
      absl::StrCat("loopback stream: ", what, ": ", std::strerror(errno)));
}

void SetNoDelay(int fd) {
  const int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// Writes every byte of `iov` (advancing over partial writes).
absl::Status WriteAll(int fd, std::vector<iovec> iov) {
  size_t first = 0;
  while (first < iov.size()) {
    msghdr message{};
    message.msg_iov = iov.data() + first;
    message.msg_iovlen = iov.size() - first;
    const ssize_t n = sendmsg(fd, &message, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("sendmsg");
    }
    size_t left = static_cast<size_t>(n);
    while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (first < iov.size()) {
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return absl::OkStatus();
}

absl::Status ReadAll(int fd, absl::Span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = recv(fd, out.data() + done, out.size() - done, MSG_WAITALL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("recv");
    if (n == 0) return absl::UnavailableError("loopback stream: the writer closed early");
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<LoopbackStream>> LoopbackStream::Connect() {
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) return Errno("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(listener, 1) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const absl::Status error = Errno("listen on 127.0.0.1");
    close(listener);
    return error;
  }
  const int writer = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (writer < 0 || connect(writer, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    const absl::Status error = Errno("connect");
    if (writer >= 0) close(writer);
    close(listener);
    return error;
  }
  const int reader = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  close(listener);
  if (reader < 0) {
    const absl::Status error = Errno("accept");
    close(writer);
    return error;
  }
  SetNoDelay(writer);
  SetNoDelay(reader);
  return std::unique_ptr<LoopbackStream>(new LoopbackStream(writer, reader));
}

LoopbackStream::~LoopbackStream() {
  close(write_fd_);
  close(read_fd_);
}

absl::StatusOr<double> LoopbackStream::Transfer(
    absl::Span<const absl::Span<const uint8_t>> sources,
    absl::Span<const absl::Span<uint8_t>> targets, int chunk_blocks) {
  if (sources.size() != targets.size()) {
    return absl::InvalidArgumentError("loopback stream: sources and targets differ in count");
  }
  for (size_t i = 0; i < sources.size(); ++i) {
    if (sources[i].size() != targets[i].size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("loopback stream: block ", i, " sizes differ"));
    }
  }
  absl::Status write_status;
  const absl::Time start = absl::Now();
  std::thread writer([&] {
    for (size_t first = 0; first < sources.size(); first += chunk_blocks) {
      std::vector<iovec> iov;
      for (size_t i = first; i < std::min(sources.size(), first + chunk_blocks); ++i) {
        iov.push_back({const_cast<uint8_t*>(sources[i].data()), sources[i].size()});
      }
      write_status = WriteAll(write_fd_, std::move(iov));
      if (!write_status.ok()) {
        shutdown(write_fd_, SHUT_WR);  // the reader sees the end instead of waiting forever
        return;
      }
    }
  });
  absl::Status read_status;
  for (absl::Span<uint8_t> target : targets) {
    read_status = ReadAll(read_fd_, target);
    if (!read_status.ok()) {
      shutdown(write_fd_, SHUT_RDWR);  // a writer blocked on a full socket returns
      break;
    }
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  writer.join();
  if (!write_status.ok()) return write_status;
  if (!read_status.ok()) return read_status;
  return seconds;
}

}  // namespace pdserve::bench
