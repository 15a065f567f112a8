// The "tcp" transport's receiver (common/kv_transfer/tcp/tcp_kv_receiver.h) driven by raw
// sockets writing hand-made frames: what it commits, what it refuses and how, how connections
// end, and that Stop is prompt. Over an in-memory reservation table and patterned bytes; after
// every test the pool has all its blocks back.

#include "common/kv_transfer/tcp/tcp_kv_receiver.h"

#include <sys/socket.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/kv_transfer/tcp/tcp_frame.h"
#include "common/kv_transfer/tcp/tcp_socket.h"
#include "common/kv_transfer/transfer_token.h"
#include "gtest/gtest.h"
#include "tests/common/kv_transfer/fake_reservation_table.h"
#include "tests/support/wait_for.h"

namespace pdserve::kv_transfer {
namespace {

using ::pdserve::kv_transfer::testing::FakeReservationTable;
using ::pdserve::test_support::WaitFor;
using State = FakeReservationTable::State;

kv::KvLayout SmallLayout() {
  kv::KvLayout layout;
  layout.n_layers = 2;
  layout.n_kv_heads = 2;
  layout.head_dim = 8;
  layout.block_size = 16;
  return layout;  // 4096 bytes per block in f32
}

// The fake table, counting the pins that start batches (a test can wait until a batch is
// under way).
class PinCountingTable final : public KvReservationTable {
 public:
  explicit PinCountingTable(KvReservationTable& inner) : inner_(inner) {}
  int n_pins() const {
    absl::MutexLock lock(&mu_);
    return n_pins_;
  }

  const kv::KvLayout& layout() const override { return inner_.layout(); }
  const std::string& model_fingerprint() const override { return inner_.model_fingerprint(); }
  absl::StatusOr<ReservationView> Lookup(absl::string_view token) override {
    return inner_.Lookup(token);
  }
  absl::Status Pin(absl::string_view token, absl::Span<const int64_t> indices) override {
    absl::Status s = inner_.Pin(token, indices);
    absl::MutexLock lock(&mu_);
    ++n_pins_;
    return s;
  }
  absl::Status Unpin(absl::string_view token, absl::Span<const int64_t> indices,
                     absl::Status verdict) override {
    return inner_.Unpin(token, indices, std::move(verdict));
  }
  absl::Status Complete(absl::string_view token, int32_t first_token) override {
    return inner_.Complete(token, first_token);
  }
  void Fail(absl::string_view token, const absl::Status& error) override {
    inner_.Fail(token, error);
  }

 private:
  KvReservationTable& inner_;
  mutable absl::Mutex mu_;
  int n_pins_ ABSL_GUARDED_BY(mu_) = 0;
};

// One batch as a sender would write it: header, then the blocks' bytes.
struct RawBatch {
  std::vector<KvBlockHeader> headers;
  std::string bytes;  // header and blocks
  std::vector<std::vector<uint8_t>> blocks;
};

class TcpKvReceiverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = std::make_unique<kv::KvBlockPool>(SmallLayout(), 64);
    n_free_at_start_ = pool_->n_free();
    table_ = std::make_unique<FakeReservationTable>(*pool_);
    pins_ = std::make_unique<PinCountingTable>(*table_);
    StartReceiver({});
  }

  void TearDown() override {
    receiver_->Stop();
    table_->ReleaseEnded();
    EXPECT_EQ(pool_->n_free(), n_free_at_start_);
  }

  void StartReceiver(TcpKvReceiverOptions options) {
    if (receiver_ != nullptr) receiver_->Stop();
    receiver_ = std::make_unique<TcpKvReceiver>(*pins_, *pool_, options);
    ASSERT_TRUE(receiver_->Start("127.0.0.1", 0).ok());
    ASSERT_GT(receiver_->port(), 0);
  }

  Fd Connect() {
    absl::StatusOr<Fd> fd = ConnectTcp({"127.0.0.1", receiver_->port()},
                                       {.deadline = absl::Now() + absl::Seconds(5)});
    EXPECT_TRUE(fd.ok()) << fd.status();
    return fd.ok() ? *std::move(fd) : Fd();
  }

  size_t BlockBytes() const { return pool_->layout().BlockBytes(); }

  // Blocks `indices` of the reservation `token` opens (n_prompt_tokens of it), bytes patterned
  // by `seed`.
  RawBatch Batch(const std::string& token, int64_t n_prompt_tokens, std::vector<int64_t> indices,
                 int seed) {
    RawBatch batch;
    const int64_t block_size = pool_->layout().block_size;
    for (int64_t index : indices) {
      std::vector<uint8_t> block(BlockBytes());
      for (size_t i = 0; i < block.size(); ++i) {
        block[i] = static_cast<uint8_t>(seed * 131 + index * 7 + i * 13 + (i >> 8));
      }
      batch.headers.push_back({index, std::min(block_size, n_prompt_tokens - index * block_size),
                               BlockChecksum(block)});
      batch.blocks.push_back(std::move(block));
    }
    batch.bytes = EncodeFrameHeader(token, BlockBytes(), batch.headers);
    for (const auto& block : batch.blocks) batch.bytes.append(block.begin(), block.end());
    return batch;
  }

  static absl::Status Send(const Fd& fd, absl::string_view bytes) {
    return WriteAll(fd.get(),
                    absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes.data()),
                                        bytes.size()),
                    {.deadline = absl::Now() + absl::Seconds(10)});
  }

  // The receiver's next ack (outer status: the connection's error).
  static absl::StatusOr<absl::Status> ReadAck(const Fd& fd) {
    const IoLimits limits{.deadline = absl::Now() + absl::Seconds(10)};
    uint8_t prefix_bytes[kAckPrefixBytes];
    if (absl::Status s = ReadAll(fd.get(), absl::MakeSpan(prefix_bytes), limits); !s.ok()) {
      return s;
    }
    absl::StatusOr<AckPrefix> prefix = DecodeAckPrefix(prefix_bytes);
    if (!prefix.ok()) return prefix.status();
    std::string message(prefix->message_bytes, '\0');
    if (absl::Status s = ReadAll(
            fd.get(), absl::MakeSpan(reinterpret_cast<uint8_t*>(message.data()), message.size()),
            limits);
        !s.ok()) {
      return s;
    }
    return absl::Status(prefix->code, message);
  }

  // Whether the receiver has closed `fd` (EOF or reset within 10 s).
  static bool ClosedByPeer(const Fd& fd) {
    uint8_t byte;
    return absl::IsUnavailable(
        ReadAll(fd.get(), absl::MakeSpan(&byte, 1), {.deadline = absl::Now() + absl::Seconds(10)}));
  }

  std::vector<uint8_t> TargetBytes(const std::string& token, int64_t index) {
    const uint8_t* data = pool_->BlockData(table_->ViewOf(token).target_blocks[index]);
    return std::vector<uint8_t>(data, data + BlockBytes());
  }

  void FillTargets(const std::string& token, uint8_t value) {
    for (kv::BlockId id : table_->ViewOf(token).target_blocks) {
      std::fill(pool_->BlockData(id), pool_->BlockData(id) + BlockBytes(), value);
    }
  }

  std::unique_ptr<kv::KvBlockPool> pool_;
  int64_t n_free_at_start_ = 0;
  std::unique_ptr<FakeReservationTable> table_;
  std::unique_ptr<PinCountingTable> pins_;  // what the receiver sees of table_
  std::unique_ptr<TcpKvReceiver> receiver_;
};

TEST_F(TcpKvReceiverTest, BatchesAreCommittedInPlaceAndAcked) {
  const std::string token = table_->Reserve("req-1", 16 * 4 + 3, /*shuffle=*/true);
  Fd fd = Connect();
  const RawBatch first = Batch(token, 16 * 4 + 3, {0, 1, 2}, 1);
  const RawBatch second = Batch(token, 16 * 4 + 3, {3, 4}, 1);
  ASSERT_TRUE(Send(fd, first.bytes).ok());
  ASSERT_TRUE(Send(fd, second.bytes).ok());
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<absl::Status> ack = ReadAck(fd);
    ASSERT_TRUE(ack.ok()) << ack.status();
    EXPECT_TRUE(ack->ok()) << *ack;
  }
  for (int64_t i = 0; i < 3; ++i) EXPECT_EQ(TargetBytes(token, i), first.blocks[i]) << i;
  for (int64_t i = 0; i < 2; ++i) EXPECT_EQ(TargetBytes(token, 3 + i), second.blocks[i]) << i;
  // Every block is in: the reservation can complete.
  EXPECT_TRUE(table_->Complete(token, 42).ok());
  EXPECT_EQ(table_->StateOf(token), State::kComplete);
}

TEST_F(TcpKvReceiverTest, ConnectionEndingBeforeCompletionFailsTheReservation) {
  const std::string abandoned = table_->Reserve("req-abandoned", 48);
  const std::string completed = table_->Reserve("req-completed", 16);
  Fd abandoned_fd = Connect();
  Fd completed_fd = Connect();
  ASSERT_TRUE(Send(abandoned_fd, Batch(abandoned, 48, {0}, 1).bytes).ok());
  ASSERT_TRUE(Send(completed_fd, Batch(completed, 16, {0}, 1).bytes).ok());
  for (const Fd* fd : {&abandoned_fd, &completed_fd}) {
    absl::StatusOr<absl::Status> ack = ReadAck(*fd);
    ASSERT_TRUE(ack.ok()) << ack.status();
    ASSERT_TRUE(ack->ok()) << *ack;
  }
  // Decode acknowledged one handoff (on its control stream) before its sender closed.
  ASSERT_TRUE(table_->Complete(completed, 9).ok());
  completed_fd.Close();
  abandoned_fd.Close();
  ASSERT_TRUE(WaitFor([&] { return table_->StateOf(abandoned) == State::kFailed; }));
  EXPECT_TRUE(absl::IsAborted(table_->ErrorOf(abandoned))) << table_->ErrorOf(abandoned);
  ASSERT_TRUE(WaitFor([&] { return receiver_->n_connections() == 0; }));
  EXPECT_EQ(table_->StateOf(completed), State::kComplete);
}

TEST_F(TcpKvReceiverTest, WrongTokenIsRefusedAndTouchesNothing) {
  const std::string token = table_->Reserve("req-1", 32);
  FillTargets(token, 0xab);
  const RawBatch batch = Batch(NewTransferToken(), 32, {0, 1}, 3);
  Fd fd = Connect();
  ASSERT_TRUE(Send(fd, batch.bytes).ok());
  absl::StatusOr<absl::Status> ack = ReadAck(fd);
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_TRUE(absl::IsPermissionDenied(*ack)) << *ack;
  EXPECT_TRUE(ClosedByPeer(fd));
  EXPECT_EQ(TargetBytes(token, 0), std::vector<uint8_t>(BlockBytes(), 0xab));
  EXPECT_EQ(TargetBytes(token, 1), std::vector<uint8_t>(BlockBytes(), 0xab));
  EXPECT_EQ(table_->StateOf(token), State::kAwaiting);
  table_->Fail(token, absl::CancelledError("test over"));
}

TEST_F(TcpKvReceiverTest, CorruptedChecksumFailsTheReservationWithDataLoss) {
  const std::string token = table_->Reserve("req-1", 32);
  RawBatch batch = Batch(token, 32, {0, 1}, 5);
  batch.bytes.back() ^= 0x01;  // the last byte of block 1
  Fd fd = Connect();
  ASSERT_TRUE(Send(fd, batch.bytes).ok());
  absl::StatusOr<absl::Status> ack = ReadAck(fd);
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_TRUE(absl::IsDataLoss(*ack)) << *ack;
  EXPECT_NE(ack->message().find("KV block 1"), absl::string_view::npos) << *ack;
  EXPECT_EQ(table_->StateOf(token), State::kFailed);
  EXPECT_TRUE(absl::IsDataLoss(table_->ErrorOf(token)));
  EXPECT_TRUE(ClosedByPeer(fd));
}

TEST_F(TcpKvReceiverTest, MalformedHeadersAreAnsweredAndTheReceiverGoesOn) {
  const std::string token = table_->Reserve("req-1", 32);
  struct Case {
    std::string name;
    std::string frame;
  };
  std::vector<Case> cases;
  std::string bad_magic = Batch(token, 32, {0}, 1).bytes;
  bad_magic.replace(0, 4, "HTTP");
  cases.push_back({"bad magic", bad_magic});
  std::string huge = Batch(token, 32, {0}, 1).bytes;
  for (int i = 24; i < 28; ++i) huge[i] = '\xff';  // n_blocks 2^32 - 1
  cases.push_back({"huge n_blocks", huge});
  std::string wrong_size = Batch(token, 32, {0}, 1).bytes;
  for (int i = 28; i < 36; ++i) wrong_size[i] = '\x7f';  // block_bytes ~2^63
  cases.push_back({"wrong block_bytes", wrong_size});
  std::string empty = Batch(token, 32, {0}, 1).bytes;
  empty[24] = 0;  // n_blocks 0
  cases.push_back({"no blocks", empty});
  for (const Case& c : cases) {
    Fd fd = Connect();
    ASSERT_TRUE(Send(fd, c.frame).ok()) << c.name;
    absl::StatusOr<absl::Status> ack = ReadAck(fd);
    ASSERT_TRUE(ack.ok()) << c.name << ": " << ack.status();
    EXPECT_TRUE(absl::IsInvalidArgument(*ack)) << c.name << ": " << *ack;
    EXPECT_TRUE(ClosedByPeer(fd)) << c.name;
  }
  // A frame with the token but out of bounds fails its reservation; the receiver still serves.
  EXPECT_EQ(table_->StateOf(token), State::kFailed);
  const std::string next = table_->Reserve("req-2", 32);
  Fd fd = Connect();
  ASSERT_TRUE(Send(fd, Batch(next, 32, {0, 1}, 2).bytes).ok());
  absl::StatusOr<absl::Status> ack = ReadAck(fd);
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_TRUE(ack->ok()) << *ack;
  table_->Fail(next, absl::CancelledError("test over"));
}

TEST_F(TcpKvReceiverTest, HeadersTheSessionRefusesFailTheReservation) {
  const std::string token = table_->Reserve("req-1", 32);
  Fd fd = Connect();
  ASSERT_TRUE(Send(fd, Batch(token, 32, {0, 5}, 1).bytes).ok());  // index 5 of 2 blocks
  absl::StatusOr<absl::Status> ack = ReadAck(fd);
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_TRUE(absl::IsInvalidArgument(*ack)) << *ack;
  EXPECT_EQ(table_->StateOf(token), State::kFailed);
}

TEST_F(TcpKvReceiverTest, PeerClosingMidBatchFailsOnlyItsReservation) {
  const std::string broken = table_->Reserve("req-broken", 64);
  const std::string intact = table_->Reserve("req-intact", 64, /*shuffle=*/true);
  const RawBatch half = Batch(broken, 64, {0, 1, 2, 3}, 1);
  Fd broken_fd = Connect();
  ASSERT_TRUE(Send(broken_fd, absl::string_view(half.bytes).substr(0, half.bytes.size() / 2)).ok());
  // While that batch is half in, another connection's transfer completes.
  ASSERT_TRUE(WaitFor([&] { return pins_->n_pins() == 1; }));
  Fd intact_fd = Connect();
  const RawBatch whole = Batch(intact, 64, {0, 1, 2, 3}, 2);
  ASSERT_TRUE(Send(intact_fd, whole.bytes).ok());
  absl::StatusOr<absl::Status> ack = ReadAck(intact_fd);
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_TRUE(ack->ok()) << *ack;
  EXPECT_EQ(table_->StateOf(broken), State::kAwaiting);  // still mid-batch
  broken_fd.Close();
  ASSERT_TRUE(WaitFor([&] { return table_->StateOf(broken) == State::kFailed; }));
  EXPECT_TRUE(absl::IsUnavailable(table_->ErrorOf(broken))) << table_->ErrorOf(broken);
  EXPECT_NE(table_->ErrorOf(broken).message().find("req-broken"), absl::string_view::npos);
  EXPECT_TRUE(table_->Complete(intact, 7).ok());
  for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(TargetBytes(intact, i), whole.blocks[i]) << i;
}

TEST_F(TcpKvReceiverTest, StalledSenderIsCutOffAfterTheFrameTimeout) {
  TcpKvReceiverOptions options;
  options.connection.frame_timeout = absl::Milliseconds(200);
  StartReceiver(options);
  const std::string token = table_->Reserve("req-1", 32);
  const RawBatch batch = Batch(token, 32, {0, 1}, 1);
  Fd fd = Connect();
  ASSERT_TRUE(Send(fd, absl::string_view(batch.bytes).substr(0, batch.bytes.size() - 10)).ok());
  ASSERT_TRUE(WaitFor([&] { return pins_->n_pins() == 1; }));
  ASSERT_TRUE(WaitFor([&] { return table_->StateOf(token) == State::kFailed; }));
  EXPECT_TRUE(absl::IsDeadlineExceeded(table_->ErrorOf(token))) << table_->ErrorOf(token);
  EXPECT_TRUE(ClosedByPeer(fd));
}

TEST_F(TcpKvReceiverTest, IdleConnectionsAreClosed) {
  TcpKvReceiverOptions options;
  options.connection.idle_timeout = absl::Milliseconds(100);
  StartReceiver(options);
  Fd fd = Connect();
  EXPECT_TRUE(ClosedByPeer(fd));
  EXPECT_TRUE(WaitFor([&] { return receiver_->n_connections() == 0; }));
}

TEST_F(TcpKvReceiverTest, StopWithConnectionsOpenReturnsPromptly) {
  const std::string token = table_->Reserve("req-1", 64);
  const RawBatch batch = Batch(token, 64, {0, 1, 2, 3}, 1);
  Fd mid_batch = Connect();
  ASSERT_TRUE(Send(mid_batch, absl::string_view(batch.bytes).substr(0, 5000)).ok());
  std::vector<Fd> idle;
  for (int i = 0; i < 5; ++i) idle.push_back(Connect());
  ASSERT_TRUE(WaitFor([&] { return receiver_->n_connections() == 6 && pins_->n_pins() == 1; }));
  const absl::Time start = absl::Now();
  receiver_->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(receiver_->n_connections(), 0);
  EXPECT_EQ(table_->StateOf(token), State::kFailed);
  EXPECT_TRUE(absl::IsUnavailable(table_->ErrorOf(token))) << table_->ErrorOf(token);
  EXPECT_TRUE(ClosedByPeer(mid_batch));
  for (const Fd& fd : idle) EXPECT_TRUE(ClosedByPeer(fd));
  receiver_->Stop();  // idempotent
}

TEST_F(TcpKvReceiverTest, ConnectionsBeyondTheMaximumAreRefused) {
  TcpKvReceiverOptions options;
  options.max_connections = 2;
  StartReceiver(options);
  Fd first = Connect();
  Fd second = Connect();
  ASSERT_TRUE(WaitFor([&] { return receiver_->n_connections() == 2; }));
  Fd third = Connect();
  absl::StatusOr<absl::Status> ack = ReadAck(third);
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_TRUE(absl::IsResourceExhausted(*ack)) << *ack;
  EXPECT_TRUE(ClosedByPeer(third));
  // A slot that frees up is used again.
  first.Close();
  ASSERT_TRUE(WaitFor([&] { return receiver_->n_connections() == 1; }));
  const std::string token = table_->Reserve("req-1", 16);
  Fd fourth = Connect();
  ASSERT_TRUE(Send(fourth, Batch(token, 16, {0}, 1).bytes).ok());
  ack = ReadAck(fourth);
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_TRUE(ack->ok()) << *ack;
  EXPECT_TRUE(table_->Complete(token, 1).ok());
}

TEST_F(TcpKvReceiverTest, StartsOnce) {
  EXPECT_TRUE(absl::IsFailedPrecondition(receiver_->Start("127.0.0.1", 0)));
  TcpKvReceiver unstarted(*pins_, *pool_);
  EXPECT_EQ(unstarted.port(), 0);
  unstarted.Stop();
  EXPECT_TRUE(absl::IsFailedPrecondition(unstarted.Start("127.0.0.1", 0)));
}

TEST_F(TcpKvReceiverTest, StartFailsOnAPortInUse) {
  TcpKvReceiver second(*pins_, *pool_);
  const absl::Status s = second.Start("127.0.0.1", receiver_->port());
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_NE(s.message().find(absl::StrCat(receiver_->port())), absl::string_view::npos) << s;
}

}  // namespace
}  // namespace pdserve::kv_transfer
