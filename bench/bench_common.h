#pragma once
// Helpers shared by the CPU benchmarks in bench/: a wall clock, a plain-text table, the process's
// memory as the kernel reports it, and the small pieces of a decode loop (argmax, KV blocks for
// one sequence) that every benchmark needs. No timing policy lives here: each benchmark says how
// it repeats and which number it keeps.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/kv/kv_block_pool.h"

namespace pdserve::bench {

using Clock = std::chrono::steady_clock;

inline double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A table of text cells printed with aligned columns: the first column left-aligned, numbers
// (every other column) right-aligned, a rule under the header.
class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header) : header_(std::move(header)) {}
  // A row with fewer cells than the header is padded with empty cells.
  void AddRow(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  std::string Render() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// A value of /proc/self/status in KiB ("VmRSS", "VmHWM"); NotFound when the field is missing
// (not Linux).
absl::StatusOr<int64_t> ProcStatusKib(const std::string& field);

// Size of a file in bytes.
absl::StatusOr<int64_t> FileBytes(const std::string& path);

// Index of the largest value (the first one on ties). Precondition: !values.empty().
int32_t ArgMax(absl::Span<const float> values);

// One sequence's blocks, taken from the pool for [0, n_positions) and returned on destruction.
class ScopedSequence {
 public:
  static absl::StatusOr<std::unique_ptr<ScopedSequence>> Allocate(kv::KvBlockPool& pool,
                                                                  int64_t n_positions);
  ~ScopedSequence();
  ScopedSequence(const ScopedSequence&) = delete;
  ScopedSequence& operator=(const ScopedSequence&) = delete;

  kv::BlockTable& table() { return table_; }
  // Copies the K/V bytes of positions [0, other.n_tokens) from `other` (whole blocks) and takes
  // its n_tokens: a second sequence with the same prompt, without running the prompt again.
  void CopyPrefixFrom(const ScopedSequence& other);

 private:
  explicit ScopedSequence(kv::KvBlockPool& pool) : pool_(pool) {}
  kv::KvBlockPool& pool_;
  kv::BlockTable table_;
};

// "1,2,8" -> {1, 2, 8}; InvalidArgument naming `flag` for empty items, non-numbers or values < 1.
absl::StatusOr<std::vector<int64_t>> ParsePositiveList(const std::string& flag,
                                                       const std::string& text);

}  // namespace pdserve::bench
