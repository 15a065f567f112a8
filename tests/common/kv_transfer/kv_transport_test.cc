// Every transport delivers byte-identical blocks (issue 9): patterned blocks in a prefill-side
// pool go through KvHandoffSender and the transport to the target blocks of a decode-side pool
// (in shared memory, as a decode worker's is), over a real in-process KvReceiver service (the
// control stream) and, for tcp, a TcpKvReceiver. Dtypes f32/f16/bf16, block sizes 16 and 32,
// contiguous and fragmented + shuffled target tables, several chunks.

#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/kv/kv_block_pool.h"
#include "common/kv_transfer/grpc/control_stream.h"
#include "common/kv_transfer/grpc/grpc_transport.h"
#include "common/kv_transfer/grpc/kv_receiver_service.h"
#include "common/kv_transfer/handoff_sender.h"
#include "common/kv_transfer/send_transports.h"
#include "common/kv_transfer/shm/shared_memory_region.h"
#include "common/kv_transfer/shm/shm_kv_storage.h"
#include "common/kv_transfer/shm/shm_send_transport.h"
#include "common/kv_transfer/tcp/tcp_kv_receiver.h"
#include "common/kv_transfer/tcp/tcp_send_transport.h"
#include "common/kv_transfer/transfer_token.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "tests/common/kv_transfer/fake_reservation_table.h"

namespace pdserve::kv_transfer {
namespace {

using testing::FakeReservationTable;

kv::KvLayout SmallLayout(kernels::KvDtype dtype, int block_size) {
  kv::KvLayout layout;
  layout.n_layers = 3;
  layout.n_kv_heads = 2;
  layout.head_dim = 8;
  layout.block_size = block_size;
  layout.dtype = dtype;
  return layout;
}

uint8_t Pattern(int64_t request, int64_t block, size_t byte) {
  return static_cast<uint8_t>((request * 31 + block * 131 + byte * 7 + (byte >> 8)) & 0xff);
}

// The decode side: a pool in shared memory, a reservation table over it, the control stream's
// service and a TCP receiver.
struct DecodeSide {
  // `accepted`: the transports the KvReceiver service takes (empty: all).
  DecodeSide(const kv::KvLayout& layout, int64_t n_blocks,
             std::vector<std::string> accepted = {}) {
    absl::StatusOr<std::unique_ptr<SharedMemoryKvStorage>> storage =
        SharedMemoryKvStorage::Create(layout.BlockBytes() * n_blocks);
    EXPECT_TRUE(storage.ok()) << storage.status();
    shm_name = (*storage)->region_name();
    pool = *kv::KvBlockPool::Create(layout, n_blocks, *std::move(storage));
    table = std::make_unique<FakeReservationTable>(*pool);
    service = std::make_unique<KvReceiverService>(*table, *pool, std::move(accepted));
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service.get());
    builder.SetMaxReceiveMessageSize(64 << 20);
    server = builder.BuildAndStart();
    address = absl::StrCat("127.0.0.1:", port);
    tcp = std::make_unique<TcpKvReceiver>(*table, *pool);
    EXPECT_TRUE(tcp->Start("127.0.0.1", 0).ok());
  }
  ~DecodeSide() {
    tcp->Stop();
    server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  }

  std::vector<TransportOffer> Offers() const {
    return {{"shm", shm_name, *HostBootId()},
            {"tcp", absl::StrCat(":", tcp->port()), ""},
            {"grpc", "", ""}};
  }
  // What the reservation `reservation_token` opens would answer (every transport offered), with
  // `presented_token` as the token the sender will present.
  Handoff HandoffFor(const std::string& request_id, const std::string& reservation_token,
                     const std::string& presented_token) const {
    Handoff handoff;
    handoff.request_id = request_id;
    handoff.control_address = address;
    handoff.transfer_token = presented_token;
    handoff.target_blocks = table->ViewOf(reservation_token).target_blocks;
    handoff.layout = pool->layout();
    handoff.offers = Offers();
    return handoff;
  }

  std::unique_ptr<kv::KvBlockPool> pool;
  std::string shm_name;
  std::unique_ptr<FakeReservationTable> table;
  std::unique_ptr<KvReceiverService> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<TcpKvReceiver> tcp;
  std::string address;
};

// Every transport, the one `mode` names chosen per handoff.
std::unique_ptr<KvSendTransports> SendTransports(rpc::ChannelCache& channels, const std::string& mode) {
  auto transports = std::make_unique<KvSendTransports>(*ParseTransportMode(mode));
  transports->Add(std::make_unique<GrpcKvSendTransport>(channels));
  transports->Add(std::make_unique<ShmKvSendTransport>(channels));
  transports->Add(std::make_unique<TcpKvSendTransport>(channels));
  return transports;
}

using Param = std::tuple<std::string, kernels::KvDtype, int, bool>;

class KvTransportTest : public ::testing::TestWithParam<Param> {};

TEST_P(KvTransportTest, DeliversByteIdenticalBlocks) {
  const auto& [transport, dtype, block_size, shuffled] = GetParam();
  const kv::KvLayout layout = SmallLayout(dtype, block_size);
  DecodeSide decode(layout, 64);
  ASSERT_NE(decode.server, nullptr);
  const int64_t free_at_start = decode.pool->n_free();

  // The prefill side: its own pool, the prompt's blocks filled with a pattern.
  kv::KvBlockPool prefill_pool(layout, 32);
  const int64_t n_prompt = 7 * block_size + 5;  // 8 blocks, the last partial
  std::vector<int32_t> prompt(n_prompt);
  for (int64_t i = 0; i < n_prompt; ++i) prompt[i] = static_cast<int32_t>(i % 97);
  kv::BlockTable table;
  // Prefill's own blocks in a scrambled order too.
  absl::StatusOr<std::vector<kv::BlockId>> blocks = prefill_pool.Allocate(8);
  ASSERT_TRUE(blocks.ok());
  table.blocks = {(*blocks)[3], (*blocks)[0], (*blocks)[7], (*blocks)[1],
                  (*blocks)[5], (*blocks)[2], (*blocks)[6], (*blocks)[4]};
  for (int b = 0; b < 8; ++b) {
    uint8_t* data = prefill_pool.BlockData(table.blocks[b]);
    for (size_t i = 0; i < layout.BlockBytes(); ++i) data[i] = Pattern(1, b, i);
  }
  table.n_tokens = n_prompt;

  const std::string token = decode.table->Reserve("req-1", n_prompt, shuffled);
  ASSERT_FALSE(token.empty());
  const Handoff handoff = decode.HandoffFor("req-1", token, token);
  ASSERT_TRUE(CheckHandoff(handoff, layout, "", n_prompt).ok());

  rpc::ChannelCache channels;
  const std::unique_ptr<KvSendTransports> transports = SendTransports(channels, transport);
  SenderHello hello{"req-1", token, "", layout, "", n_prompt};
  absl::StatusOr<std::unique_ptr<KvSendStream>> stream =
      transports->Open(handoff, hello, absl::Now() + absl::Seconds(20));
  ASSERT_TRUE(stream.ok()) << stream.status();
  EXPECT_EQ((*stream)->transport(), transport);
  KvHandoffSender sender(prefill_pool, handoff, prompt, *std::move(stream));
  // Chunks of 3, 3 and 2 blocks.
  for (int64_t first = 0; first < 8; first += 3) {
    ASSERT_TRUE(sender.SendBlocks(table, first, std::min<int64_t>(8, first + 3)).ok());
  }
  absl::StatusOr<TransferReport> report = sender.Finish(42);
  ASSERT_TRUE(report.ok()) << report.status() << "; the reservation: "
                           << decode.table->ErrorOf(token);
  EXPECT_EQ(report->transport, transport);
  EXPECT_EQ(report->blocks, 8);
  EXPECT_EQ(report->bytes, 8 * static_cast<int64_t>(layout.BlockBytes()));
  EXPECT_GT(report->seconds, 0);

  EXPECT_EQ(decode.table->StateOf(token), FakeReservationTable::State::kComplete)
      << decode.table->ErrorOf(token);
  EXPECT_EQ(decode.table->FirstTokenOf(token), 42);
  const std::vector<kv::BlockId> targets = decode.table->ViewOf(token).target_blocks;
  for (int b = 0; b < 8; ++b) {
    const uint8_t* got = decode.pool->BlockData(targets[b]);
    size_t mismatches = 0;
    for (size_t i = 0; i < layout.BlockBytes(); ++i) mismatches += got[i] != Pattern(1, b, i);
    EXPECT_EQ(mismatches, 0u) << "block " << b << " (target " << targets[b] << ")";
  }
  decode.table->ReleaseEnded();
  EXPECT_EQ(decode.pool->n_free(), free_at_start);
}

INSTANTIATE_TEST_SUITE_P(
    AllTransports, KvTransportTest,
    ::testing::Combine(::testing::Values("grpc", "shm", "tcp"),
                       ::testing::Values(kernels::KvDtype::kF32, kernels::KvDtype::kF16,
                                         kernels::KvDtype::kBF16),
                       ::testing::Values(16, 32), ::testing::Bool()),
    [](const ::testing::TestParamInfo<Param>& info) {
      return absl::StrCat(std::get<0>(info.param), "_", kv::KvDtypeName(std::get<1>(info.param)),
                          "_bs", std::get<2>(info.param),
                          std::get<3>(info.param) ? "_shuffled" : "_contiguous");
    });

// A 40-token sequence (3 blocks of 0x5a bytes) in a prefill pool, and a decode side to send
// it to.
class KvTransportRefusalTest : public ::testing::Test {
 protected:
  // `accepted`: the transports the decode side takes (empty: all).
  explicit KvTransportRefusalTest(std::vector<std::string> accepted = {})
      : layout_(SmallLayout(kernels::KvDtype::kF32, 16)),
        decode_(layout_, 16, std::move(accepted)),
        prefill_pool_(layout_, 4),
        prompt_(40, 3) {
    table_.blocks = *prefill_pool_.Allocate(3);
    for (kv::BlockId id : table_.blocks) {
      std::memset(prefill_pool_.BlockData(id), 0x5a, layout_.BlockBytes());
    }
  }

  // Sends the whole sequence over `stream`; the first error.
  absl::Status Send(const Handoff& handoff, absl::StatusOr<std::unique_ptr<KvSendStream>> stream,
                    bool cancel_first = false) {
    if (!stream.ok()) return stream.status();
    KvHandoffSender sender(prefill_pool_, handoff, prompt_, *std::move(stream));
    if (cancel_first) sender.Cancel();
    if (absl::Status s = sender.SendBlocks(table_, 0, 3); !s.ok()) return s;
    return sender.Finish(1).status();
  }
  void ExpectUntouched(const std::vector<kv::BlockId>& targets) {
    for (kv::BlockId id : targets) {
      const uint8_t* got = decode_.pool->BlockData(id);
      EXPECT_TRUE(std::all_of(got, got + layout_.BlockBytes(), [](uint8_t b) { return b == 0; }))
          << "target block " << id << " was written";
    }
  }

  const kv::KvLayout layout_;
  DecodeSide decode_;
  kv::KvBlockPool prefill_pool_;
  const std::vector<int32_t> prompt_;
  kv::BlockTable table_;
};

// A wrong token is refused over every transport and the target blocks stay as they were.
TEST_F(KvTransportRefusalTest, WrongTokenIsRefusedAndTouchesNoBlock) {
  const std::string token = decode_.table->Reserve("r", 40);
  const std::string guess(kTransferTokenBytes, 'x');  // a stranger's
  // shm last: it writes the blocks before it is refused.
  for (const std::string transport : {"grpc", "tcp", "shm"}) {
    SCOPED_TRACE(transport);
    const Handoff handoff = decode_.HandoffFor("r", token, guess);
    rpc::ChannelCache channels;
    const SenderHello hello{"r", guess, "", layout_, "", 40};
    const absl::Status status = Send(
        handoff,
        SendTransports(channels, transport)->Open(handoff, hello, absl::Now() + absl::Seconds(10)));
    EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
    EXPECT_EQ(decode_.table->StateOf(token), FakeReservationTable::State::kAwaiting);
    // shm writes before it is refused (docs/kv-transfer.md: a same-host peer can write the
    // mapped pool; the token guards what is committed, and nothing was).
    if (transport != "shm") ExpectUntouched(handoff.target_blocks);
  }
  decode_.table->Fail(token, absl::CancelledError("over"));
  decode_.table->ReleaseEnded();
}

// A decode worker that does not offer a transport refuses a handoff over it, naming what it
// offers, instead of waiting for blocks that never come or failing checksums.
class KvTransportOfferTest : public KvTransportRefusalTest {
 protected:
  KvTransportOfferTest() : KvTransportRefusalTest({"grpc"}) {}
};

TEST_F(KvTransportOfferTest, ATransportTheDecodeWorkerDoesNotOfferIsRefused) {
  const std::string token = decode_.table->Reserve("r", 40);
  const Handoff handoff = decode_.HandoffFor("r", token, token);  // as if it offered tcp
  rpc::ChannelCache channels;
  TcpKvSendTransport tcp(channels);
  const SenderHello hello{"r", token, "tcp", layout_, "", 40};
  const absl::Status status =
      Send(handoff, tcp.Open(handoff, handoff.offers[1], hello, absl::Now() + absl::Seconds(10)));
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(decode_.table->StateOf(token), FakeReservationTable::State::kFailed);
  const absl::Status why = decode_.table->ErrorOf(token);
  EXPECT_EQ(why.code(), absl::StatusCode::kFailedPrecondition) << why;
  EXPECT_NE(why.message().find("does not take KV over tcp (it offers grpc)"), std::string::npos)
      << why;
  decode_.table->ReleaseEnded();
}

// A same-host writer never writes after the reservation's lease (it would write into blocks
// the decode worker may have given to another sequence), nor once cancelled.
TEST_F(KvTransportRefusalTest, ShmWritesNothingPastTheLeaseOrAfterCancel) {
  for (const bool expired : {true, false}) {
    SCOPED_TRACE(expired ? "lease expired" : "cancelled");
    const std::string token = decode_.table->Reserve("r", 40);
    Handoff handoff = decode_.HandoffFor("r", token, token);
    handoff.lease_expiry = expired ? absl::Now() : absl::Now() + absl::Seconds(60);
    rpc::ChannelCache channels;
    ShmKvSendTransport shm(channels);
    const SenderHello hello{"r", token, "shm", layout_, "", 40};
    const absl::Status status =
        Send(handoff, shm.Open(handoff, handoff.offers[0], hello, absl::Now() + absl::Seconds(10)),
             /*cancel_first=*/!expired);
    EXPECT_EQ(status.code(), expired ? absl::StatusCode::kAborted : absl::StatusCode::kCancelled)
        << status;
    ExpectUntouched(handoff.target_blocks);
    decode_.table->Fail(token, absl::CancelledError("over"));
    decode_.table->ReleaseEnded();
  }
}

}  // namespace
}  // namespace pdserve::kv_transfer
