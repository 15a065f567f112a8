#include "bench/bench_common.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace pdserve::bench {

std::string TextTable::Render() const {
  std::vector<size_t> widths(header_.size(), 0);
  auto widen = [&widths](const std::vector<std::string>& cells) {
    for (size_t c = 0; c < cells.size() && c < widths.size(); ++c) {
      widths[c] = std::max(widths[c], cells[c].size());
    }
  };
  widen(header_);
  for (const std::vector<std::string>& row : rows_) widen(row);

  std::ostringstream out;
  auto print_row = [&](const std::vector<std::string>& cells) {
    for (size_t c = 0; c < widths.size(); ++c) {
      const std::string cell = c < cells.size() ? cells[c] : "";
      const std::string pad(widths[c] - cell.size(), ' ');
      if (c > 0) out << "  ";
      out << (c == 0 ? cell + pad : pad + cell);
    }
    out << "\n";
  };
  print_row(header_);
  size_t total = 0;
  for (size_t w : widths) total += w;
  out << std::string(total + 2 * (widths.size() - 1), '-') << "\n";
  for (const std::vector<std::string>& row : rows_) print_row(row);
  return out.str();
}

absl::StatusOr<int64_t> ProcStatusKib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string prefix = field + ":";
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, prefix)) continue;
    rest = absl::StripAsciiWhitespace(rest);
    absl::ConsumeSuffix(&rest, "kB");
    int64_t kib = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kib)) return kib;
    return absl::InternalError(absl::StrCat("/proc/self/status: cannot read '", line, "'"));
  }
  return absl::NotFoundError(absl::StrCat("/proc/self/status has no ", field));
}

absl::StatusOr<int64_t> FileBytes(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  }
  return static_cast<int64_t>(st.st_size);
}

int32_t ArgMax(absl::Span<const float> values) {
  return static_cast<int32_t>(std::max_element(values.begin(), values.end()) - values.begin());
}

absl::StatusOr<std::unique_ptr<ScopedSequence>> ScopedSequence::Allocate(kv::KvBlockPool& pool,
                                                                         int64_t n_positions) {
  const int64_t block_size = pool.layout().block_size;
  absl::StatusOr<std::vector<kv::BlockId>> blocks =
      pool.Allocate((n_positions + block_size - 1) / block_size);
  if (!blocks.ok()) return blocks.status();
  std::unique_ptr<ScopedSequence> seq(new ScopedSequence(pool));
  seq->table_.blocks = *std::move(blocks);
  return seq;
}

ScopedSequence::~ScopedSequence() { (void)pool_.Free(table_.blocks); }

void ScopedSequence::CopyPrefixFrom(const ScopedSequence& other) {
  const int64_t block_size = pool_.layout().block_size;
  const int64_t n_blocks = (other.table_.n_tokens + block_size - 1) / block_size;
  for (int64_t b = 0; b < n_blocks; ++b) {
    std::memcpy(pool_.BlockData(table_.blocks[b]), pool_.BlockData(other.table_.blocks[b]),
                pool_.layout().BlockBytes());
  }
  table_.n_tokens = other.table_.n_tokens;
}

absl::StatusOr<std::vector<int64_t>> ParsePositiveList(const std::string& flag,
                                                       const std::string& text) {
  std::vector<int64_t> values;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    int64_t value = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(item), &value) || value < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", flag, ": '", item, "' is not a positive integer (in '", text, "')"));
    }
    values.push_back(value);
  }
  return values;
}

}  // namespace pdserve::bench
