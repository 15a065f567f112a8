// The transfer layer's core without any transport: leases, transfer tokens, the handoff's checks,
// transport choice, chunk planning, and the receive session's checks over an in-memory
// reservation table with patterned bytes.

#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/kv/kv_block_pool.h"
#include "common/kv_transfer/handoff.h"
#include "common/kv_transfer/handoff_sender.h"
#include "common/kv_transfer/kv_lease.h"
#include "common/kv_transfer/receive_session.h"
#include "common/kv_transfer/send_transports.h"
#include "common/kv_transfer/transfer_token.h"
#include "gtest/gtest.h"
#include "tests/common/kv_transfer/fake_reservation_table.h"

namespace pdserve::kv_transfer {
namespace {

using testing::FakeReservationTable;

const absl::Time kT0 = absl::FromUnixSeconds(1000);

TEST(KvLeaseTest, OnlyTheCapAppliesUntilKvBeginsToArrive) {
  KvLease lease({absl::Seconds(2), absl::Seconds(10)}, kT0);
  EXPECT_TRUE(lease.Check(kT0 + absl::Seconds(9)).ok());  // waiting in a prefill queue
  EXPECT_EQ(lease.expiry(), kT0 + absl::Seconds(10));
  const absl::Status capped = lease.Check(kT0 + absl::Seconds(10));
  EXPECT_EQ(capped.code(), absl::StatusCode::kAborted);
  EXPECT_NE(capped.message().find("longer than 10s"), std::string::npos) << capped;
}

TEST(KvLeaseTest, IdleLimitRunsBetweenPiecesOfKv) {
  KvLease lease({absl::Seconds(2), absl::Seconds(10)}, kT0);
  lease.Touch(kT0 + absl::Seconds(1));
  EXPECT_EQ(lease.expiry(), kT0 + absl::Seconds(3));
  EXPECT_TRUE(lease.Check(kT0 + absl::Milliseconds(2999)).ok());
  lease.Touch(kT0 + absl::Seconds(2));
  EXPECT_TRUE(lease.Check(kT0 + absl::Milliseconds(3999)).ok());
  const absl::Status idle = lease.Check(kT0 + absl::Seconds(4));
  EXPECT_EQ(idle.code(), absl::StatusCode::kAborted);
  EXPECT_NE(idle.message().find("no KV arrived for 2s"), std::string::npos) << idle;
  // Touches never move the cap.
  for (int s = 3; s < 12; ++s) lease.Touch(kT0 + absl::Seconds(s));
  EXPECT_FALSE(lease.Check(kT0 + absl::Seconds(10)).ok());
  EXPECT_EQ(lease.expiry(), kT0 + absl::Seconds(10));
}

TEST(KvBlocksTest, CopyWithChecksumCopiesAndHashesLikeBlockChecksum) {
  for (const size_t size : {size_t{1}, size_t{16384}, size_t{40000}, size_t{737280}}) {
    std::vector<uint8_t> src(size), dst(size, 0);
    for (size_t i = 0; i < size; ++i) src[i] = static_cast<uint8_t>(i * 13 + (i >> 9));
    EXPECT_EQ(CopyBlockWithChecksum(absl::MakeSpan(dst), src), BlockChecksum(src)) << size;
    EXPECT_EQ(dst, src) << size;
  }
}

TEST(TransferTokenTest, TokensAreRandomAndComparedWhole) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string token = NewTransferToken();
    ASSERT_EQ(token.size(), kTransferTokenBytes);
    EXPECT_TRUE(seen.insert(token).second) << "a token repeated";
  }
  const std::string a = NewTransferToken();
  std::string b = a;
  EXPECT_TRUE(TransferTokensEqual(a, b));
  b[15] ^= 1;
  EXPECT_FALSE(TransferTokensEqual(a, b));
  EXPECT_FALSE(TransferTokensEqual(a, a.substr(0, 15)));
  EXPECT_EQ(TransferTokenTag(a).size(), 8u);
}

kv::KvLayout Layout(int block_size = 16) {
  kv::KvLayout layout;
  layout.n_layers = 2;
  layout.n_kv_heads = 2;
  layout.head_dim = 4;
  layout.block_size = block_size;
  return layout;
}

Handoff GoodHandoff(int n_blocks) {
  Handoff handoff;
  handoff.request_id = "r";
  handoff.transfer_token = NewTransferToken();
  handoff.layout = Layout();
  handoff.model_fingerprint = "aa";
  for (int b = 0; b < n_blocks; ++b) handoff.target_blocks.push_back(b);
  return handoff;
}

TEST(HandoffTest, CheckedAgainstTheSendersPoolAndPrompt) {
  EXPECT_TRUE(CheckHandoff(GoodHandoff(3), Layout(), "aa", 40).ok());
  EXPECT_TRUE(CheckHandoff(GoodHandoff(3), Layout(), "", 40).ok());  // unknown: not compared
  EXPECT_EQ(CheckHandoff(GoodHandoff(3), Layout(32), "aa", 40).code(),
            absl::StatusCode::kFailedPrecondition);
  const absl::Status model = CheckHandoff(GoodHandoff(3), Layout(), "bb", 40);
  EXPECT_EQ(model.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(model.message().find("aa"), std::string::npos);
  EXPECT_NE(model.message().find("bb"), std::string::npos);
  EXPECT_EQ(CheckHandoff(GoodHandoff(2), Layout(), "aa", 40).code(),
            absl::StatusCode::kInvalidArgument);
  Handoff short_token = GoodHandoff(3);
  short_token.transfer_token.pop_back();
  EXPECT_EQ(CheckHandoff(short_token, Layout(), "aa", 40).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(HandoffTest, ModesAndHosts) {
  EXPECT_EQ(*ParseTransportMode("auto"), TransportMode::kAuto);
  EXPECT_EQ(*ParseTransportMode("tcp"), TransportMode::kTcp);
  EXPECT_EQ(ParseTransportMode("udp").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ModeAllows(TransportMode::kAuto, "shm"));
  EXPECT_TRUE(ModeAllows(TransportMode::kGrpc, "grpc"));
  EXPECT_FALSE(ModeAllows(TransportMode::kGrpc, "shm"));
  EXPECT_EQ(HostOf("10.0.0.2:5000"), "10.0.0.2");
  EXPECT_EQ(HostOf("[::1]:5000"), "::1");
  EXPECT_EQ(HostOf("host"), "host");
}

TEST(HandoffTest, ChunksAreWholeBlocksWithinTheByteLimit) {
  const kv::KvLayout layout = Layout();  // 2048-byte blocks
  EXPECT_EQ(ChunkBlocks(layout, 4, 1 << 20), 4);
  EXPECT_EQ(ChunkBlocks(layout, 4, 4095), 1);
  EXPECT_EQ(ChunkBlocks(layout, 4, 4096), 2);
  EXPECT_EQ(ChunkBlocks(layout, 4, 100), 1);  // one block even past the limit
}

// A transport that opens nothing: Choose is what is tested.
class NamedTransport final : public KvSendTransport {
 public:
  NamedTransport(absl::string_view name, bool usable) : name_(name), usable_(usable) {}
  absl::string_view name() const override { return name_; }
  bool CanUse(const TransportOffer&) override { return usable_; }
  absl::StatusOr<std::unique_ptr<KvSendStream>> Open(const Handoff&, const TransportOffer&,
                                                     const SenderHello&, absl::Time) override {
    return absl::UnimplementedError("not here");
  }

 private:
  std::string name_;
  bool usable_;
};

KvSendTransports Transports(TransportMode mode, bool shm_usable = true) {
  KvSendTransports transports(mode);
  transports.Add(std::make_unique<NamedTransport>("grpc", true));
  transports.Add(std::make_unique<NamedTransport>("tcp", true));
  transports.Add(std::make_unique<NamedTransport>("shm", shm_usable));
  return transports;
}

TEST(SendTransportsTest, AutoTakesTheFastestBothSidesCanUse) {
  Handoff handoff = GoodHandoff(1);
  handoff.offers = {{"grpc", "", ""}, {"tcp", ":1", ""}, {"shm", "/x", "boot"}};  // decode's order aside
  EXPECT_EQ(Transports(TransportMode::kAuto).Choose(handoff)->first.transport, "shm");
  EXPECT_EQ(Transports(TransportMode::kAuto, false).Choose(handoff)->first.transport, "tcp");
  handoff.offers = {{"grpc", "", ""}};
  EXPECT_EQ(Transports(TransportMode::kAuto).Choose(handoff)->first.transport, "grpc");
}

TEST(SendTransportsTest, ForcedModeWithoutACommonTransportNamesTheOffers) {
  Handoff handoff = GoodHandoff(1);
  handoff.control_address = "10.0.0.9:7000";
  handoff.offers = {{"shm", "/x", "boot"}, {"grpc", "", ""}};
  EXPECT_EQ(Transports(TransportMode::kGrpc).Choose(handoff)->first.transport, "grpc");
  const absl::Status none = Transports(TransportMode::kTcp).Choose(handoff).status();
  EXPECT_EQ(none.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(none.message().find("[shm, grpc]"), std::string::npos) << none;
  EXPECT_NE(none.message().find("10.0.0.9:7000"), std::string::npos) << none;
  // shm offered but not usable from here (another host): not taken even when forced.
  EXPECT_EQ(Transports(TransportMode::kShm, false).Choose(handoff).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

class ReceiveSessionTest : public ::testing::Test {
 protected:
  ReceiveSessionTest() : pool_(Layout(), 16), table_(pool_, "model-a") {}

  SenderHello Hello(const std::string& token, int64_t n_prompt = 40) {
    return SenderHello{"r", token, "grpc", Layout(), "model-a", n_prompt};
  }
  // Block `index` of request "r", patterned.
  std::string Bytes(int64_t index) {
    std::string bytes(Layout().BlockBytes(), '\0');
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(index * 17 + i);
    return bytes;
  }
  static IncomingBlock Incoming(int64_t index, int64_t n_tokens, const std::string& bytes) {
    const absl::Span<const uint8_t> span(reinterpret_cast<const uint8_t*>(bytes.data()),
                                         bytes.size());
    return {{index, n_tokens, BlockChecksum(span)}, span};
  }
  void TearDown() override {
    table_.ReleaseEnded();
    EXPECT_EQ(pool_.n_free(), 16) << "blocks left behind";
  }

  kv::KvBlockPool pool_;
  FakeReservationTable table_;
};

TEST_F(ReceiveSessionTest, CopiesVerifiedBlocksAndCompletes) {
  const std::string token = table_.Reserve("r", 40, /*shuffle=*/true);  // 3 blocks: 16 16 8
  absl::StatusOr<KvReceiveSession> session = KvReceiveSession::Open(table_, pool_, Hello(token));
  ASSERT_TRUE(session.ok()) << session.status();
  const std::string b0 = Bytes(0), b1 = Bytes(1), b2 = Bytes(2);
  ASSERT_TRUE(session->ReceiveCopies({Incoming(2, 8, b2), Incoming(0, 16, b0)}).ok());
  ASSERT_TRUE(session->ReceiveCopies({Incoming(1, 16, b1)}).ok());
  ASSERT_TRUE(session->Complete(9).ok());
  EXPECT_EQ(table_.StateOf(token), FakeReservationTable::State::kComplete);
  EXPECT_EQ(session->blocks_received(), 3);
  const std::vector<kv::BlockId> targets = table_.ViewOf(token).target_blocks;
  for (int b = 0; b < 3; ++b) {
    EXPECT_EQ(std::memcmp(pool_.BlockData(targets[b]), Bytes(b).data(), Layout().BlockBytes()), 0)
        << "block " << b;
  }
}

TEST_F(ReceiveSessionTest, WrongTokenTouchesNothing) {
  const std::string token = table_.Reserve("r", 40);
  EXPECT_EQ(KvReceiveSession::Open(table_, pool_, Hello(NewTransferToken())).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(table_.StateOf(token), FakeReservationTable::State::kAwaiting);
  table_.Fail(token, absl::CancelledError("the test is over"));
}

TEST_F(ReceiveSessionTest, AMismatchedHelloFailsTheReservationNamingBothSides) {
  struct Case {
    const char* name;
    std::function<void(SenderHello&)> change;
    absl::StatusCode code;
    const char* words;
  };
  const std::vector<Case> cases = {
      {"layout", [](SenderHello& h) { h.layout.block_size = 32; },
       absl::StatusCode::kFailedPrecondition, "block_size=32"},
      {"model", [](SenderHello& h) { h.model_fingerprint = "model-b"; },
       absl::StatusCode::kFailedPrecondition, "model-b"},
      {"prompt", [](SenderHello& h) { h.n_prompt_tokens = 41; },
       absl::StatusCode::kInvalidArgument, "41 prompt tokens"},
      {"request id", [](SenderHello& h) { h.request_id = "someone-else"; },
       absl::StatusCode::kInvalidArgument, "someone-else"},
      {"transport", [](SenderHello& h) { h.transport = "pigeon"; },
       absl::StatusCode::kInvalidArgument, "pigeon"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string token = table_.Reserve("r", 40);
    SenderHello hello = Hello(token);
    c.change(hello);
    const absl::Status s = KvReceiveSession::Open(table_, pool_, hello).status();
    EXPECT_EQ(s.code(), c.code) << s;
    EXPECT_NE(s.message().find(c.words), std::string::npos) << s;
    EXPECT_EQ(table_.StateOf(token), FakeReservationTable::State::kFailed);
    table_.ReleaseEnded();
  }
}

TEST_F(ReceiveSessionTest, BadBlocksFailTheReservation) {
  struct Case {
    const char* name;
    std::function<std::vector<IncomingBlock>(const std::string&, const std::string&)> blocks;
    absl::StatusCode code;
  };
  const std::string short_bytes(100, 'x');
  const std::vector<Case> cases = {
      {"checksum",
       [](const std::string& b0, const std::string&) {
         IncomingBlock block = Incoming(0, 16, b0);
         block.header.checksum ^= 1;
         return std::vector<IncomingBlock>{block};
       },
       absl::StatusCode::kDataLoss},
      {"size", [&](const std::string&, const std::string&) {
         return std::vector<IncomingBlock>{Incoming(0, 16, short_bytes)};
       }, absl::StatusCode::kInvalidArgument},
      {"repeat in one batch", [](const std::string& b0, const std::string&) {
         return std::vector<IncomingBlock>{Incoming(0, 16, b0), Incoming(0, 16, b0)};
       }, absl::StatusCode::kInvalidArgument},
      {"index", [](const std::string& b0, const std::string&) {
         return std::vector<IncomingBlock>{Incoming(3, 16, b0)};
       }, absl::StatusCode::kInvalidArgument},
      {"n_tokens of the last block", [](const std::string&, const std::string& b2) {
         return std::vector<IncomingBlock>{Incoming(2, 16, b2)};
       }, absl::StatusCode::kInvalidArgument},
  };
  const std::string b0 = Bytes(0), b2 = Bytes(2);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string token = table_.Reserve("r", 40);
    absl::StatusOr<KvReceiveSession> session = KvReceiveSession::Open(table_, pool_, Hello(token));
    ASSERT_TRUE(session.ok());
    EXPECT_EQ(session->ReceiveCopies(c.blocks(b0, b2)).code(), c.code);
    EXPECT_EQ(table_.StateOf(token), FakeReservationTable::State::kFailed);
    table_.ReleaseEnded();
  }
  // A block sent again in a later batch.
  const std::string token = table_.Reserve("r", 40);
  absl::StatusOr<KvReceiveSession> session = KvReceiveSession::Open(table_, pool_, Hello(token));
  ASSERT_TRUE(session->ReceiveCopies({Incoming(0, 16, b0)}).ok());
  EXPECT_EQ(session->ReceiveCopies({Incoming(0, 16, b0)}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(table_.StateOf(token), FakeReservationTable::State::kFailed);
}

TEST_F(ReceiveSessionTest, InPlaceBlocksAreCheckedWhereTheyLie) {
  const std::string token = table_.Reserve("r", 20);  // 2 blocks: 16 + 4
  absl::StatusOr<KvReceiveSession> session =
      KvReceiveSession::Open(table_, pool_, Hello(token, 20));
  ASSERT_TRUE(session.ok());
  const std::string b0 = Bytes(0), b1 = Bytes(1);
  std::vector<KvBlockHeader> headers = {Incoming(0, 16, b0).header, Incoming(1, 4, b1).header};
  absl::StatusOr<std::vector<absl::Span<uint8_t>>> spans = session->BeginInPlace(headers);
  ASSERT_TRUE(spans.ok()) << spans.status();
  std::memcpy((*spans)[0].data(), b0.data(), b0.size());
  std::memcpy((*spans)[1].data(), b1.data(), b1.size());
  (*spans)[1][7] ^= 0xff;  // a byte that went wrong on the way
  EXPECT_EQ(session->EndInPlace(headers, absl::OkStatus()).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(table_.StateOf(token), FakeReservationTable::State::kFailed);

  // The transport's own failure mid-batch fails the reservation with it.
  const std::string token2 = table_.Reserve("r", 20);
  session = KvReceiveSession::Open(table_, pool_, Hello(token2, 20));
  ASSERT_TRUE(session->BeginInPlace(headers).ok());
  EXPECT_EQ(session->EndInPlace(headers, absl::UnavailableError("peer closed")).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(table_.StateOf(token2), FakeReservationTable::State::kFailed);
}

}  // namespace
}  // namespace pdserve::kv_transfer
