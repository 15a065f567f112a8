#include "common/kv_transfer/tcp/tcp_frame.h"

#include "absl/strings/str_cat.h"
#include "common/kv_transfer/transfer_token.h"

namespace pdserve::kv_transfer {
namespace {

void PutLe(std::string& out, uint64_t value, int n_bytes) {
  for (int i = 0; i < n_bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint64_t GetLe(const uint8_t* in, int n_bytes) {
  uint64_t value = 0;
  for (int i = 0; i < n_bytes; ++i) value |= static_cast<uint64_t>(in[i]) << (8 * i);
  return value;
}

static_assert(4 + 2 + 2 + kTransferTokenBytes + 4 + 8 == kFramePrefixBytes);

}  // namespace

std::string EncodeFrameHeader(absl::string_view token, uint64_t block_bytes,
                              absl::Span<const KvBlockHeader> headers) {
  std::string out;
  out.reserve(kFramePrefixBytes + headers.size() * kFrameEntryBytes);
  out.append(kFrameMagic.data(), kFrameMagic.size());
  PutLe(out, kFrameVersion, 2);
  PutLe(out, 0, 2);
  out.append(token.data(), token.size());
  PutLe(out, headers.size(), 4);
  PutLe(out, block_bytes, 8);
  for (const KvBlockHeader& header : headers) {
    PutLe(out, static_cast<uint64_t>(header.index), 4);
    PutLe(out, static_cast<uint64_t>(header.n_tokens), 4);
    PutLe(out, header.checksum, 8);
  }
  return out;
}

absl::StatusOr<FramePrefix> DecodeFramePrefix(absl::Span<const uint8_t> bytes) {
  if (bytes.size() < kFramePrefixBytes) {
    return absl::InvalidArgumentError(absl::StrCat("KV batch header: ", bytes.size(),
                                                   " bytes, expected ", kFramePrefixBytes));
  }
  const absl::string_view magic(reinterpret_cast<const char*>(bytes.data()), 4);
  if (magic != kFrameMagic) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV batch header: bad magic (expected \"", kFrameMagic, "\")"));
  }
  const uint64_t version = GetLe(bytes.data() + 4, 2);
  if (version != kFrameVersion) {
    return absl::InvalidArgumentError(absl::StrCat("KV batch header: version ", version,
                                                   ", this receiver speaks ", kFrameVersion));
  }
  if (const uint64_t flags = GetLe(bytes.data() + 6, 2); flags != 0) {
    return absl::InvalidArgumentError(absl::StrCat("KV batch header: unknown flags ", flags));
  }
  FramePrefix prefix;
  prefix.token.assign(reinterpret_cast<const char*>(bytes.data() + 8), kTransferTokenBytes);
  prefix.n_blocks = static_cast<uint32_t>(GetLe(bytes.data() + 24, 4));
  prefix.block_bytes = GetLe(bytes.data() + 28, 8);
  return prefix;
}

absl::Status CheckFramePrefix(const FramePrefix& prefix, size_t want_block_bytes) {
  if (prefix.n_blocks < 1 || prefix.n_blocks > kMaxFrameBlocks) {
    return absl::InvalidArgumentError(absl::StrCat("KV batch header: n_blocks ", prefix.n_blocks,
                                                   " out of [1, ", kMaxFrameBlocks, "]"));
  }
  if (prefix.block_bytes != want_block_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV batch header: block_bytes ", prefix.block_bytes,
                     ", this receiver's layout has ", want_block_bytes));
  }
  return absl::OkStatus();
}

std::vector<KvBlockHeader> DecodeFrameEntries(absl::Span<const uint8_t> bytes) {
  std::vector<KvBlockHeader> headers(bytes.size() / kFrameEntryBytes);
  for (size_t i = 0; i < headers.size(); ++i) {
    const uint8_t* entry = bytes.data() + i * kFrameEntryBytes;
    headers[i].index = static_cast<int64_t>(GetLe(entry, 4));
    headers[i].n_tokens = static_cast<int64_t>(GetLe(entry + 4, 4));
    headers[i].checksum = GetLe(entry + 8, 8);
  }
  return headers;
}

std::string EncodeAck(const absl::Status& status) {
  const absl::string_view message = status.message().substr(0, kMaxAckMessageBytes);
  std::string out;
  out.reserve(kAckPrefixBytes + message.size());
  PutLe(out, static_cast<uint32_t>(status.code()), 4);
  PutLe(out, message.size(), 4);
  out.append(message.data(), message.size());
  return out;
}

absl::StatusOr<AckPrefix> DecodeAckPrefix(absl::Span<const uint8_t> bytes) {
  if (bytes.size() < kAckPrefixBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV batch ack: ", bytes.size(), " bytes, expected ", kAckPrefixBytes));
  }
  const uint64_t code = GetLe(bytes.data(), 4);
  const uint64_t length = GetLe(bytes.data() + 4, 4);
  if (code > static_cast<uint64_t>(absl::StatusCode::kUnauthenticated)) {
    return absl::InvalidArgumentError(absl::StrCat("KV batch ack: unknown status code ", code));
  }
  if (length > kMaxAckMessageBytes) {
    return absl::InvalidArgumentError(absl::StrCat("KV batch ack: message of ", length,
                                                   " bytes, at most ", kMaxAckMessageBytes));
  }
  AckPrefix prefix;
  prefix.code = static_cast<absl::StatusCode>(code);
  prefix.message_bytes = static_cast<uint32_t>(length);
  return prefix;
}

}  // namespace pdserve::kv_transfer
