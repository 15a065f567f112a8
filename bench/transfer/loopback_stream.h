#pragma once
// The loopback TCP baseline of the kv_transfer benchmark: one plain TCP connection over
// 127.0.0.1 (TCP_NODELAY, default buffers, as the tcp transport's), no framing, no checksums,
// no acknowledgement. A writer thread sends the source blocks chunk by chunk with a gathering
// writev; the calling thread reads the same bytes straight into the target blocks. What the
// "tcp" transport's ≥ 70% goal is measured against.

#include <memory>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace pdserve::bench {

class LoopbackStream {
 public:
  // Listens on an ephemeral port of 127.0.0.1, connects, accepts; the listener is closed again.
  static absl::StatusOr<std::unique_ptr<LoopbackStream>> Connect();
  ~LoopbackStream();
  LoopbackStream(const LoopbackStream&) = delete;
  LoopbackStream& operator=(const LoopbackStream&) = delete;

  // Moves sources[i] into targets[i] (equal sizes) over the connection, `chunk_blocks` sources
  // per writev. Returns the seconds from the first write to the last byte read. The spans must
  // not overlap.
  absl::StatusOr<double> Transfer(absl::Span<const absl::Span<const uint8_t>> sources,
                                  absl::Span<const absl::Span<uint8_t>> targets,
                                  int chunk_blocks);

 private:
  LoopbackStream(int write_fd, int read_fd) : write_fd_(write_fd), read_fd_(read_fd) {}
  int write_fd_;
  int read_fd_;
};

}  // namespace pdserve::bench
