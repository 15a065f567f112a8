// The "tcp" transport end to end: a KvHandoffSender over a TcpKvSendTransport sends a prefill
// pool's blocks to a TcpKvReceiver and a KvReceiverService (the control stream, an in-process
// gRPC server on 127.0.0.1), both over an in-memory reservation table on a decode pool. Bytes
// are patterned; every test checks what landed, what the reservation became, and that both
// pools have all their blocks back at the end.

#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/kv_transfer/grpc/control_stream.h"
#include "common/kv_transfer/grpc/kv_receiver_service.h"
#include "common/kv_transfer/handoff_sender.h"
#include "common/kv_transfer/tcp/tcp_frame.h"
#include "common/kv_transfer/tcp/tcp_kv_receiver.h"
#include "common/kv_transfer/tcp/tcp_send_transport.h"
#include "common/kv_transfer/tcp/tcp_socket.h"
#include "common/kv_transfer/transfer_token.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/common/kv_transfer/fake_reservation_table.h"
#include "tests/support/wait_for.h"

namespace pdserve::kv_transfer {
namespace {

using ::pdserve::kv_transfer::testing::FakeReservationTable;
using ::pdserve::test_support::WaitFor;
using State = FakeReservationTable::State;

kv::KvLayout Layout(int n_layers, int n_kv_heads, int head_dim, int block_size,
                    kernels::KvDtype dtype) {
  kv::KvLayout layout;
  layout.n_layers = n_layers;
  layout.n_kv_heads = n_kv_heads;
  layout.head_dim = head_dim;
  layout.block_size = block_size;
  layout.dtype = dtype;
  return layout;
}

// A KvSendStream that flips the checksum of one block on its way through.
class CorruptingStream final : public KvSendStream {
 public:
  CorruptingStream(std::unique_ptr<KvSendStream> inner, int64_t index)
      : inner_(std::move(inner)), index_(index) {}
  absl::string_view transport() const override { return inner_->transport(); }
  absl::Status SendBlocks(absl::Span<const OutgoingBlock> blocks) override {
    std::vector<OutgoingBlock> copy(blocks.begin(), blocks.end());
    for (OutgoingBlock& block : copy) {
      if (block.header.index == index_) block.header.checksum ^= 1;
    }
    return inner_->SendBlocks(copy);
  }
  absl::Status Finish(int32_t first_token) override { return inner_->Finish(first_token); }
  void Cancel() override { inner_->Cancel(); }

 private:
  std::unique_ptr<KvSendStream> inner_;
  int64_t index_;
};

// One sequence to hand over: its reservation on the decode side, its blocks on the prefill side.
struct Sequence {
  std::string token;
  Handoff handoff;
  std::vector<int32_t> prompt;
  kv::BlockTable source;
};

class TcpTransportTest : public ::testing::Test {
 protected:
  // Decode side (a pool, its table, the control stream's service and the TCP receiver) and
  // prefill side (a pool) over `layout`.
  void Init(const kv::KvLayout& layout, int64_t n_blocks) {
    decode_pool_ = std::make_unique<kv::KvBlockPool>(layout, n_blocks);
    prefill_pool_ = std::make_unique<kv::KvBlockPool>(layout, n_blocks);
    table_ = std::make_unique<FakeReservationTable>(*decode_pool_);
    service_ = std::make_unique<KvReceiverService>(*table_, *decode_pool_);
    grpc::ServerBuilder builder;
    int grpc_port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &grpc_port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    control_address_ = absl::StrCat("127.0.0.1:", grpc_port);
    receiver_ = std::make_unique<TcpKvReceiver>(*table_, *decode_pool_);
    ASSERT_TRUE(receiver_->Start("127.0.0.1", 0).ok());
    transport_ = std::make_unique<TcpKvSendTransport>(channels_);
  }

  void TearDown() override {
    if (decode_pool_ == nullptr) return;
    receiver_->Stop();
    server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    for (const auto& sequence : sequences_) {
      EXPECT_TRUE(prefill_pool_->Free(sequence->source.blocks).ok());
    }
    table_->ReleaseEnded();
    EXPECT_EQ(decode_pool_->n_free(), decode_pool_->n_total());
    EXPECT_EQ(prefill_pool_->n_free(), prefill_pool_->n_total());
  }

  size_t BlockBytes() const { return decode_pool_->layout().BlockBytes(); }

  // A reservation for `n_prompt_tokens` and that many positions of patterned KV (by `seed`) in
  // the prefill pool.
  Sequence& Prepare(const std::string& request_id, int64_t n_prompt_tokens, bool shuffle,
                    int seed) {
    sequences_.push_back(std::make_unique<Sequence>());
    Sequence& s = *sequences_.back();
    s.token = table_->Reserve(request_id, n_prompt_tokens, shuffle);
    EXPECT_FALSE(s.token.empty());
    s.handoff.request_id = request_id;
    s.handoff.control_address = control_address_;
    s.handoff.transfer_token = s.token;
    s.handoff.target_blocks = table_->ViewOf(s.token).target_blocks;
    s.handoff.layout = decode_pool_->layout();
    s.handoff.offers = {{std::string(kTcpTransport), absl::StrCat(":", receiver_->port()), ""}};
    for (int64_t i = 0; i < n_prompt_tokens; ++i) s.prompt.push_back(static_cast<int32_t>(i));
    absl::StatusOr<std::vector<kv::BlockId>> blocks =
        prefill_pool_->Allocate(static_cast<int64_t>(s.handoff.target_blocks.size()));
    EXPECT_TRUE(blocks.ok()) << blocks.status();
    s.source.blocks = *std::move(blocks);
    s.source.n_tokens = n_prompt_tokens;
    for (size_t b = 0; b < s.source.blocks.size(); ++b) {
      uint8_t* data = prefill_pool_->BlockData(s.source.blocks[b]);
      for (size_t i = 0; i < BlockBytes(); ++i) {
        data[i] = static_cast<uint8_t>(seed * 131 + b * 7 + i * 13 + (i >> 8));
      }
    }
    return s;
  }

  absl::StatusOr<std::unique_ptr<KvSendStream>> Open(const Sequence& s) {
    SenderHello hello;
    hello.request_id = s.handoff.request_id;
    hello.transfer_token = s.handoff.transfer_token;
    hello.transport = std::string(kTcpTransport);
    hello.layout = s.handoff.layout;
    hello.n_prompt_tokens = static_cast<int64_t>(s.prompt.size());
    return transport_->Open(s.handoff, s.handoff.offers[0], hello,
                            absl::Now() + absl::Seconds(30));
  }

  // Sends the whole sequence in chunks of `chunk_blocks` and finishes with `first_token`: the
  // first error, or the report.
  absl::StatusOr<TransferReport> Transfer(
      const Sequence& s, int chunk_blocks, int32_t first_token,
      std::function<std::unique_ptr<KvSendStream>(std::unique_ptr<KvSendStream>)> wrap = {}) {
    absl::StatusOr<std::unique_ptr<KvSendStream>> stream = Open(s);
    if (!stream.ok()) return stream.status();
    KvHandoffSender sender(*prefill_pool_, s.handoff, s.prompt,
                           wrap ? wrap(*std::move(stream)) : *std::move(stream));
    const int64_t n_blocks = static_cast<int64_t>(s.source.blocks.size());
    for (int64_t b = 0; b < n_blocks; b += chunk_blocks) {
      const int64_t end = std::min<int64_t>(n_blocks, b + chunk_blocks);
      if (absl::Status st = sender.SendBlocks(s.source, b, end); !st.ok()) return st;
    }
    return sender.Finish(first_token);
  }

  // Whether every target block holds its source block's bytes.
  void ExpectLanded(const Sequence& s) {
    for (size_t b = 0; b < s.source.blocks.size(); ++b) {
      EXPECT_EQ(std::memcmp(decode_pool_->BlockData(s.handoff.target_blocks[b]),
                            prefill_pool_->BlockData(s.source.blocks[b]), BlockBytes()),
                0)
          << "block " << b;
    }
  }

  void FillTargets(const Sequence& s, uint8_t value) {
    for (kv::BlockId id : s.handoff.target_blocks) {
      std::memset(decode_pool_->BlockData(id), value, BlockBytes());
    }
  }
  bool TargetsHold(const Sequence& s, uint8_t value) {
    for (kv::BlockId id : s.handoff.target_blocks) {
      const uint8_t* data = decode_pool_->BlockData(id);
      for (size_t i = 0; i < BlockBytes(); ++i) {
        if (data[i] != value) return false;
      }
    }
    return true;
  }

  std::unique_ptr<kv::KvBlockPool> decode_pool_;
  std::unique_ptr<kv::KvBlockPool> prefill_pool_;
  std::unique_ptr<FakeReservationTable> table_;
  std::unique_ptr<KvReceiverService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string control_address_;
  std::unique_ptr<TcpKvReceiver> receiver_;
  rpc::ChannelCache channels_;
  std::unique_ptr<TcpKvSendTransport> transport_;
  std::vector<std::unique_ptr<Sequence>> sequences_;
};

struct LayoutCase {
  kernels::KvDtype dtype;
  int block_size;
  bool shuffle;
};

class TcpTransportLayoutTest : public TcpTransportTest,
                               public ::testing::WithParamInterface<LayoutCase> {};

TEST_P(TcpTransportLayoutTest, BlocksLandByteIdentical) {
  const LayoutCase c = GetParam();
  Init(Layout(2, 2, 16, c.block_size, c.dtype), 64);
  // 8 blocks, the last partial, in chunks of 3.
  const int64_t n_prompt = 7 * c.block_size + 5;
  Sequence& s = Prepare("req-layout", n_prompt, c.shuffle, 1);
  absl::StatusOr<TransferReport> report = Transfer(s, 3, 4242);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->transport, "tcp");
  EXPECT_EQ(report->blocks, 8);
  EXPECT_EQ(report->bytes, static_cast<int64_t>(8 * BlockBytes()));
  ExpectLanded(s);
  EXPECT_EQ(table_->StateOf(s.token), State::kComplete);
  EXPECT_EQ(table_->FirstTokenOf(s.token), 4242);
}

INSTANTIATE_TEST_SUITE_P(
    DtypesAndBlockSizes, TcpTransportLayoutTest,
    ::testing::Values(LayoutCase{kernels::KvDtype::kF32, 16, false},
                      LayoutCase{kernels::KvDtype::kF32, 32, true},
                      LayoutCase{kernels::KvDtype::kF16, 16, true},
                      LayoutCase{kernels::KvDtype::kF16, 32, false},
                      LayoutCase{kernels::KvDtype::kBF16, 16, false},
                      LayoutCase{kernels::KvDtype::kBF16, 32, true}));

TEST_F(TcpTransportTest, LargeTransferLandsWhole) {
  // 128 KiB blocks, 40 per chunk: far beyond the socket buffers, so writes and reads are partial.
  Init(Layout(4, 4, 64, 16, kernels::KvDtype::kF32), 256);
  Sequence& s = Prepare("req-large", 100 * 16, /*shuffle=*/true, 9);
  absl::StatusOr<TransferReport> report = Transfer(s, 40, 1);
  ASSERT_TRUE(report.ok()) << report.status();
  ExpectLanded(s);
  EXPECT_EQ(table_->StateOf(s.token), State::kComplete);
}

TEST_F(TcpTransportTest, ChunksLargerThanAFrameAreSplit) {
  // One SendBlocks of more blocks than a frame may carry.
  Init(Layout(1, 1, 4, 16, kernels::KvDtype::kF32), 1200);
  const int64_t n_blocks = kMaxFrameBlocks + 76;
  Sequence& s = Prepare("req-many", n_blocks * 16, /*shuffle=*/false, 2);
  absl::StatusOr<TransferReport> report = Transfer(s, static_cast<int>(n_blocks), 3);
  ASSERT_TRUE(report.ok()) << report.status();
  ExpectLanded(s);
  EXPECT_EQ(table_->StateOf(s.token), State::kComplete);
}

TEST_F(TcpTransportTest, WrongTokenIsRefusedAndTouchesNothing) {
  Init(Layout(2, 2, 16, 16, kernels::KvDtype::kF32), 64);
  Sequence& s = Prepare("req-1", 16 * 4, false, 1);
  FillTargets(s, 0xab);
  s.handoff.transfer_token = NewTransferToken();
  absl::StatusOr<TransferReport> report = Transfer(s, 2, 1);
  EXPECT_TRUE(absl::IsPermissionDenied(report.status())) << report.status();
  EXPECT_TRUE(TargetsHold(s, 0xab));
  EXPECT_EQ(table_->StateOf(s.token), State::kAwaiting);
  table_->Fail(s.token, absl::CancelledError("test over"));
}

TEST_F(TcpTransportTest, CorruptedChecksumFailsTheReservationWithDataLoss) {
  Init(Layout(2, 2, 16, 16, kernels::KvDtype::kF32), 64);
  Sequence& s = Prepare("req-1", 16 * 6, false, 1);
  absl::StatusOr<TransferReport> report =
      Transfer(s, 2, 1, [](std::unique_ptr<KvSendStream> stream) {
        return std::make_unique<CorruptingStream>(std::move(stream), 3);
      });
  EXPECT_TRUE(absl::IsDataLoss(report.status())) << report.status();
  EXPECT_NE(report.status().message().find("decode worker at"), absl::string_view::npos)
      << report.status();
  EXPECT_EQ(table_->StateOf(s.token), State::kFailed);
  EXPECT_TRUE(absl::IsDataLoss(table_->ErrorOf(s.token))) << table_->ErrorOf(s.token);
}

TEST_F(TcpTransportTest, SenderClosingMidBatchFailsOnlyItsReservation) {
  Init(Layout(2, 2, 16, 16, kernels::KvDtype::kF32), 64);
  Sequence& broken = Prepare("req-broken", 16 * 4, false, 1);
  Sequence& intact = Prepare("req-intact", 16 * 5 + 1, true, 2);
  // The broken sender: a batch header for 4 blocks and half of their bytes, then nothing.
  absl::StatusOr<Fd> fd = ConnectTcp({"127.0.0.1", receiver_->port()},
                                     {.deadline = absl::Now() + absl::Seconds(5)});
  ASSERT_TRUE(fd.ok()) << fd.status();
  std::vector<KvBlockHeader> headers;
  for (int64_t b = 0; b < 4; ++b) headers.push_back({b, 16, 0});
  std::string half = EncodeFrameHeader(broken.token, BlockBytes(), headers);
  half.append(2 * BlockBytes(), '\x5a');
  ASSERT_TRUE(WriteAll(fd->get(),
                       absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(half.data()),
                                           half.size()),
                       {.deadline = absl::Now() + absl::Seconds(5)})
                  .ok());
  // Meanwhile a whole transfer on another connection.
  absl::StatusOr<TransferReport> report;
  std::thread other([&] { report = Transfer(intact, 2, 77); });
  other.join();
  ASSERT_TRUE(report.ok()) << report.status();
  ExpectLanded(intact);
  EXPECT_EQ(table_->StateOf(intact.token), State::kComplete);
  EXPECT_EQ(table_->StateOf(broken.token), State::kAwaiting);
  fd->Close();
  ASSERT_TRUE(WaitFor([&] { return table_->StateOf(broken.token) == State::kFailed; }));
  EXPECT_TRUE(absl::IsUnavailable(table_->ErrorOf(broken.token)))
      << table_->ErrorOf(broken.token);
}

TEST_F(TcpTransportTest, ConcurrentTransfersAllComplete) {
  Init(Layout(2, 2, 16, 16, kernels::KvDtype::kF16), 256);
  std::vector<Sequence*> sequences;
  for (int i = 0; i < 8; ++i) {
    sequences.push_back(&Prepare(absl::StrCat("req-", i), 16 * (3 + i) + i, i % 2 == 0, i));
  }
  std::vector<absl::Status> results(sequences.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < sequences.size(); ++i) {
    threads.emplace_back([&, i] {
      results[i] = Transfer(*sequences[i], 2, static_cast<int32_t>(i)).status();
    });
  }
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < sequences.size(); ++i) {
    EXPECT_TRUE(results[i].ok()) << i << ": " << results[i];
    ExpectLanded(*sequences[i]);
    EXPECT_EQ(table_->StateOf(sequences[i]->token), State::kComplete);
    EXPECT_EQ(table_->FirstTokenOf(sequences[i]->token), static_cast<int32_t>(i));
  }
}

TEST_F(TcpTransportTest, CancelEndsTheHandoffAndFailsTheReservation) {
  Init(Layout(2, 2, 16, 16, kernels::KvDtype::kF32), 64);
  Sequence& s = Prepare("req-1", 16 * 4, false, 1);
  absl::StatusOr<std::unique_ptr<KvSendStream>> stream = Open(s);
  ASSERT_TRUE(stream.ok()) << stream.status();
  KvHandoffSender sender(*prefill_pool_, s.handoff, s.prompt, *std::move(stream));
  ASSERT_TRUE(sender.SendBlocks(s.source, 0, 2).ok());
  sender.Cancel();
  EXPECT_TRUE(absl::IsCancelled(sender.SendBlocks(s.source, 2, 4)));
  EXPECT_FALSE(sender.Finish(1).ok());
  ASSERT_TRUE(WaitFor([&] { return table_->StateOf(s.token) == State::kFailed; }));
}

TEST_F(TcpTransportTest, FinishIsIdempotent) {
  Init(Layout(2, 2, 16, 16, kernels::KvDtype::kF32), 64);
  Sequence& s = Prepare("req-1", 16 * 2, false, 1);
  absl::StatusOr<std::unique_ptr<KvSendStream>> stream = Open(s);
  ASSERT_TRUE(stream.ok()) << stream.status();
  KvHandoffSender sender(*prefill_pool_, s.handoff, s.prompt, *std::move(stream));
  ASSERT_TRUE(sender.SendBlocks(s.source, 0, 2).ok());
  ASSERT_TRUE(sender.Finish(5).ok());
  EXPECT_TRUE(sender.Finish(5).ok());
  EXPECT_EQ(table_->FirstTokenOf(s.token), 5);
}

TEST_F(TcpTransportTest, UnreachableReceiverIsUnavailableNamingTheDecodeWorker) {
  Init(Layout(2, 2, 16, 16, kernels::KvDtype::kF32), 64);
  Sequence& s = Prepare("req-1", 16, false, 1);
  const int port = receiver_->port();
  receiver_->Stop();  // nothing listens there any more
  s.handoff.offers[0].endpoint = absl::StrCat(":", port);
  const absl::Status status = Open(s).status();
  EXPECT_TRUE(absl::IsUnavailable(status)) << status;
  EXPECT_NE(status.message().find(absl::StrCat("decode worker at ", control_address_)),
            absl::string_view::npos)
      << status;
  table_->Fail(s.token, absl::CancelledError("test over"));
}

TEST_F(TcpTransportTest, EndpointsAndTokensAreChecked) {
  Init(Layout(2, 2, 16, 16, kernels::KvDtype::kF32), 64);
  EXPECT_TRUE(transport_->CanUse({"tcp", ":5000", ""}));
  EXPECT_TRUE(transport_->CanUse({"tcp", "10.0.0.2:5000", ""}));
  EXPECT_FALSE(transport_->CanUse({"tcp", "", ""}));
  EXPECT_FALSE(transport_->CanUse({"tcp", "10.0.0.2", ""}));
  EXPECT_EQ(transport_->name(), "tcp");
  Sequence& s = Prepare("req-1", 16, false, 1);
  s.handoff.offers[0].endpoint = "no-port";
  EXPECT_TRUE(absl::IsInvalidArgument(Open(s).status()));
  s.handoff.offers[0].endpoint = absl::StrCat(":", receiver_->port());
  s.handoff.transfer_token = "short";
  EXPECT_TRUE(absl::IsInvalidArgument(Open(s).status()));
  table_->Fail(s.token, absl::CancelledError("test over"));
}

}  // namespace
}  // namespace pdserve::kv_transfer
