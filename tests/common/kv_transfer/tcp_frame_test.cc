// The "tcp" transport's wire format (common/kv_transfer/tcp/tcp_frame.h): byte positions as
// documented, round trips, and every bound a receiver relies on.

#include "common/kv_transfer/tcp/tcp_frame.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace pdserve::kv_transfer {
namespace {

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

const std::string kToken = "0123456789abcdef";

TEST(TcpFrameTest, HeaderHasTheDocumentedLayout) {
  const std::vector<KvBlockHeader> headers = {{2, 16, 0x1122334455667788ull},
                                              {7, 5, 0xa1}};
  const std::string frame = EncodeFrameHeader(kToken, 0x0102030405ull, headers);
  ASSERT_EQ(frame.size(), kFramePrefixBytes + 2 * kFrameEntryBytes);
  EXPECT_EQ(frame.substr(0, 4), "PDKV");
  EXPECT_EQ(frame[4], 1);  // version 1, little-endian
  EXPECT_EQ(frame[5], 0);
  EXPECT_EQ(frame[6], 0);  // flags
  EXPECT_EQ(frame[7], 0);
  EXPECT_EQ(frame.substr(8, 16), kToken);
  EXPECT_EQ(frame[24], 2);  // n_blocks
  EXPECT_EQ(frame[25], 0);
  EXPECT_EQ(frame[28], 0x05);  // block_bytes, low byte first
  EXPECT_EQ(frame[32], 0x01);
  EXPECT_EQ(frame[33], 0);
  // First entry: index 2, n_tokens 16, checksum low byte 0x88.
  EXPECT_EQ(frame[36], 2);
  EXPECT_EQ(frame[40], 16);
  EXPECT_EQ(static_cast<uint8_t>(frame[44]), 0x88);
  EXPECT_EQ(static_cast<uint8_t>(frame[51]), 0x11);
}

TEST(TcpFrameTest, HeaderRoundTrips) {
  const std::vector<KvBlockHeader> headers = {{0, 16, 42}, {3, 16, ~0ull}, {9, 1, 0}};
  const std::string frame = EncodeFrameHeader(kToken, 4096, headers);
  absl::StatusOr<FramePrefix> prefix = DecodeFramePrefix(Bytes(frame));
  ASSERT_TRUE(prefix.ok()) << prefix.status();
  EXPECT_EQ(prefix->token, kToken);
  EXPECT_EQ(prefix->n_blocks, 3u);
  EXPECT_EQ(prefix->block_bytes, 4096u);
  EXPECT_TRUE(CheckFramePrefix(*prefix, 4096).ok());
  const std::vector<KvBlockHeader> decoded =
      DecodeFrameEntries(Bytes(frame).subspan(kFramePrefixBytes));
  ASSERT_EQ(decoded.size(), headers.size());
  for (size_t i = 0; i < headers.size(); ++i) {
    EXPECT_EQ(decoded[i].index, headers[i].index);
    EXPECT_EQ(decoded[i].n_tokens, headers[i].n_tokens);
    EXPECT_EQ(decoded[i].checksum, headers[i].checksum);
  }
}

TEST(TcpFrameTest, ForeignPrefixesAreRefused) {
  const std::string good = EncodeFrameHeader(kToken, 4096, {{0, 16, 1}});
  std::string bad_magic = good;
  bad_magic[0] = 'X';
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeFramePrefix(Bytes(bad_magic)).status()));
  EXPECT_NE(DecodeFramePrefix(Bytes(bad_magic)).status().message().find("magic"),
            absl::string_view::npos);
  std::string bad_version = good;
  bad_version[4] = 2;
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeFramePrefix(Bytes(bad_version)).status()));
  std::string bad_flags = good;
  bad_flags[7] = 1;
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeFramePrefix(Bytes(bad_flags)).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(DecodeFramePrefix(Bytes(good).subspan(0, 20)).status()));
}

TEST(TcpFrameTest, BoundsAreChecked) {
  FramePrefix prefix;
  prefix.token = kToken;
  prefix.block_bytes = 4096;
  prefix.n_blocks = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(CheckFramePrefix(prefix, 4096)));
  prefix.n_blocks = kMaxFrameBlocks + 1;
  EXPECT_TRUE(absl::IsInvalidArgument(CheckFramePrefix(prefix, 4096)));
  prefix.n_blocks = 0xffffffffu;
  EXPECT_TRUE(absl::IsInvalidArgument(CheckFramePrefix(prefix, 4096)));
  prefix.n_blocks = kMaxFrameBlocks;
  EXPECT_TRUE(CheckFramePrefix(prefix, 4096).ok());
  prefix.block_bytes = 4095;
  const absl::Status wrong_size = CheckFramePrefix(prefix, 4096);
  EXPECT_TRUE(absl::IsInvalidArgument(wrong_size));
  EXPECT_NE(wrong_size.message().find("4095"), absl::string_view::npos) << wrong_size;
  prefix.block_bytes = ~0ull;
  EXPECT_TRUE(absl::IsInvalidArgument(CheckFramePrefix(prefix, 4096)));
}

TEST(TcpFrameTest, AckRoundTrips) {
  const std::string ok = EncodeAck(absl::OkStatus());
  ASSERT_EQ(ok.size(), kAckPrefixBytes);
  absl::StatusOr<AckPrefix> ok_prefix = DecodeAckPrefix(Bytes(ok));
  ASSERT_TRUE(ok_prefix.ok());
  EXPECT_EQ(ok_prefix->code, absl::StatusCode::kOk);
  EXPECT_EQ(ok_prefix->message_bytes, 0u);

  const std::string refused = EncodeAck(absl::DataLossError("block 3: checksum"));
  absl::StatusOr<AckPrefix> prefix = DecodeAckPrefix(Bytes(refused));
  ASSERT_TRUE(prefix.ok());
  EXPECT_EQ(prefix->code, absl::StatusCode::kDataLoss);
  EXPECT_EQ(refused.substr(kAckPrefixBytes, prefix->message_bytes), "block 3: checksum");
}

TEST(TcpFrameTest, AckMessagesAreBounded) {
  const std::string long_ack = EncodeAck(absl::InternalError(std::string(10000, 'x')));
  EXPECT_EQ(long_ack.size(), kAckPrefixBytes + kMaxAckMessageBytes);
  absl::StatusOr<AckPrefix> prefix = DecodeAckPrefix(Bytes(long_ack));
  ASSERT_TRUE(prefix.ok());
  EXPECT_EQ(prefix->message_bytes, kMaxAckMessageBytes);

  std::string too_long = long_ack;
  too_long[5] = 0x7f;  // length 0x7f1000
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeAckPrefix(Bytes(too_long)).status()));
  std::string unknown_code = EncodeAck(absl::OkStatus());
  unknown_code[0] = 17;
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeAckPrefix(Bytes(unknown_code)).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeAckPrefix(Bytes(std::string(3, '\0'))).status()));
}

}  // namespace
}  // namespace pdserve::kv_transfer
