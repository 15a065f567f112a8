// WorkerRegistry liveness with a hand-moved clock, and the worker selection rules.

#include "router/worker_registry.h"

#include <gtest/gtest.h>

#include "router/worker_selection.h"

namespace pdserve::router {
namespace {

struct FakeClock {
  absl::Time now = absl::FromUnixSeconds(1000);
  Clock AsClock() {
    return [this] { return now; };
  }
};

v1::WorkerLoad Load(int queue, int active, int64_t free_blocks, int64_t total_blocks) {
  v1::WorkerLoad load;
  load.set_queue_length(queue);
  load.set_active_sequences(active);
  load.set_free_kv_blocks(free_blocks);
  load.set_total_kv_blocks(total_blocks);
  return load;
}

WorkerRegistration Prefill(const std::string& id, v1::WorkerLoad load = {}) {
  WorkerRegistration r;
  r.worker_id = id;
  r.role = v1::WORKER_ROLE_PREFILL;
  r.address = "127.0.0.1:1";
  r.load = load;
  return r;
}

WorkerRegistration Decode(const std::string& id, v1::WorkerLoad load, int block_size = 16) {
  WorkerRegistration r;
  r.worker_id = id;
  r.role = v1::WORKER_ROLE_DECODE;
  r.address = "127.0.0.1:2";
  r.load = load;
  r.kv_layout.set_block_size(block_size);
  r.kv_layout.set_dtype("f32");
  return r;
}

const WorkerSnapshot* Find(const std::vector<WorkerSnapshot>& workers, const std::string& id) {
  for (const WorkerSnapshot& w : workers) {
    if (w.worker_id == id) return &w;
  }
  return nullptr;
}

TEST(WorkerRegistryTest, MissedHeartbeatsTakeAWorkerOutOfRotationUntilOneArrives) {
  FakeClock clock;
  WorkerRegistry registry(absl::Milliseconds(3000), clock.AsClock());
  ASSERT_TRUE(registry.Register(Prefill("p1")).ok());
  ASSERT_TRUE(registry.Register(Decode("d1", Load(0, 0, 10, 10))).ok());
  EXPECT_TRUE(Find(registry.Snapshot(), "p1")->healthy);
  EXPECT_TRUE(SelectPrefillWorker(registry.Snapshot()).ok());

  clock.now += absl::Milliseconds(2000);
  EXPECT_TRUE(registry.Heartbeat("d1", Load(0, 0, 10, 10)));
  clock.now += absl::Milliseconds(1500);  // p1 silent 3.5 s, d1 1.5 s
  std::vector<WorkerSnapshot> workers = registry.Snapshot();
  EXPECT_FALSE(Find(workers, "p1")->healthy);
  EXPECT_DOUBLE_EQ(Find(workers, "p1")->seconds_since_heartbeat, 3.5);
  EXPECT_TRUE(Find(workers, "d1")->healthy);
  absl::StatusOr<WorkerSnapshot> none = SelectPrefillWorker(workers);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(none.status().message().find("healthy"), std::string::npos);

  EXPECT_TRUE(registry.Heartbeat("p1", Load(2, 1, 0, 0)));
  workers = registry.Snapshot();
  EXPECT_TRUE(Find(workers, "p1")->healthy);
  EXPECT_EQ(Find(workers, "p1")->load.queue_length(), 2);
  absl::StatusOr<WorkerSnapshot> back = SelectPrefillWorker(workers);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->worker_id, "p1");
}

TEST(WorkerRegistryTest, UnreachableWorkerLeavesAtOnceAndRejoinsWithItsNextHeartbeat) {
  FakeClock clock;
  WorkerRegistry registry(absl::Milliseconds(3000), clock.AsClock());
  ASSERT_TRUE(registry.Register(Decode("d1", Load(0, 0, 10, 10))).ok());
  registry.MarkUnreachable("d1");
  registry.MarkUnreachable("nobody");  // ignored
  EXPECT_FALSE(Find(registry.Snapshot(), "d1")->healthy);  // although its heartbeat is fresh
  EXPECT_FALSE(SelectDecodeWorker(registry.Snapshot(), 16).ok());
  clock.now += absl::Milliseconds(100);
  EXPECT_TRUE(registry.Heartbeat("d1", Load(0, 0, 10, 10)));
  EXPECT_TRUE(Find(registry.Snapshot(), "d1")->healthy);
  registry.MarkUnreachable("d1");
  ASSERT_TRUE(registry.Register(Decode("d1", Load(0, 0, 10, 10))).ok());  // a restart
  EXPECT_TRUE(Find(registry.Snapshot(), "d1")->healthy);
}

TEST(WorkerRegistryTest, ADeregisteredWorkerGetsNoWorkAndOnlyARegistrationBringsItBack) {
  FakeClock clock;
  WorkerRegistry registry(absl::Milliseconds(3000), clock.AsClock());
  WorkerRegistration draining = Decode("d1", Load(0, 0, 90, 100));
  draining.address = "10.0.0.1:7000";
  ASSERT_TRUE(registry.Register(draining).ok());
  ASSERT_TRUE(registry.Register(Decode("d2", Load(0, 0, 10, 100))).ok());
  ASSERT_EQ(SelectDecodeWorker(registry.Snapshot(), 16)->worker_id, "d1");  // most free blocks

  EXPECT_FALSE(registry.Deregister("d1", "10.0.0.9:7000"));  // another process's address
  EXPECT_NE(Find(registry.Snapshot(), "d1"), nullptr);
  EXPECT_TRUE(registry.Deregister("d1", "10.0.0.1:7000"));
  EXPECT_EQ(Find(registry.Snapshot(), "d1"), nullptr);  // at once, not after the timeout
  EXPECT_EQ(SelectDecodeWorker(registry.Snapshot(), 16)->worker_id, "d2");
  EXPECT_FALSE(registry.Deregister("d1", "10.0.0.1:7000"));  // already gone
  registry.NoteReleased("d1", 5);  // a request in flight to it ends: ignored
  registry.MarkUnreachable("d1");

  EXPECT_FALSE(registry.Heartbeat("d1", Load(0, 0, 90, 100)));  // "register again"
  EXPECT_EQ(Find(registry.Snapshot(), "d1"), nullptr);
  ASSERT_TRUE(registry.Register(draining).ok());
  EXPECT_TRUE(Find(registry.Snapshot(), "d1")->healthy);
  EXPECT_TRUE(registry.Deregister("d1", ""));  // no address: whatever it registered with
  EXPECT_EQ(Find(registry.Snapshot(), "d1"), nullptr);
}

TEST(WorkerRegistryTest, ReleasedBlocksCountAsFreeUntilTheNextHeartbeat) {
  FakeClock clock;
  WorkerRegistry registry(absl::Milliseconds(3000), clock.AsClock());
  ASSERT_TRUE(registry.Register(Decode("d1", Load(0, 0, 4, 10))).ok());
  registry.NoteDispatched("d1", 3);
  EXPECT_EQ(DecodeFreeBlocks(*Find(registry.Snapshot(), "d1")), 1);
  registry.NoteReleased("d1", 3);
  registry.NoteReleased("d1", 6);  // blocks the last heartbeat still counted as taken
  EXPECT_EQ(DecodeFreeBlocks(*Find(registry.Snapshot(), "d1")), 10);  // never past the total
  EXPECT_TRUE(registry.Heartbeat("d1", Load(0, 0, 7, 10)));
  EXPECT_EQ(DecodeFreeBlocks(*Find(registry.Snapshot(), "d1")), 7);  // the report rules again
}

TEST(WorkerRegistryTest, ListenersHearOfRegistrationsAndCapacity) {
  FakeClock clock;
  WorkerRegistry registry(absl::Milliseconds(3000), clock.AsClock());
  std::vector<std::string> registered;
  int capacity_events = 0;
  registry.SetRegistrationListener([&](const std::string& address) { registered.push_back(address); });
  registry.SetCapacityListener([&] { ++capacity_events; });
  ASSERT_TRUE(registry.Register(Decode("d1", Load(0, 0, 4, 10))).ok());
  EXPECT_FALSE(registry.Register(Prefill("")).ok());  // refused: no event
  EXPECT_TRUE(registry.Heartbeat("d1", Load(0, 0, 4, 10)));
  EXPECT_FALSE(registry.Heartbeat("unknown", Load(0, 0, 4, 10)));
  EXPECT_EQ(registered, std::vector<std::string>{"127.0.0.1:2"});
  EXPECT_EQ(capacity_events, 2);  // the registration and the heartbeat
  registry.SetCapacityListener(nullptr);
  registry.SetRegistrationListener(nullptr);
  EXPECT_TRUE(registry.Heartbeat("d1", Load(0, 0, 4, 10)));
  EXPECT_EQ(capacity_events, 2);
}

TEST(WorkerRegistryTest, ExactlyAtTheTimeoutIsStillHealthy) {
  FakeClock clock;
  WorkerRegistry registry(absl::Milliseconds(100), clock.AsClock());
  ASSERT_TRUE(registry.Register(Prefill("p1")).ok());
  clock.now += absl::Milliseconds(100);
  EXPECT_TRUE(registry.Snapshot()[0].healthy);
  clock.now += absl::Milliseconds(1);
  EXPECT_FALSE(registry.Snapshot()[0].healthy);
}

TEST(WorkerRegistryTest, UnknownWorkerHeartbeatIsNotRegistered) {
  FakeClock clock;
  WorkerRegistry registry(absl::Seconds(3), clock.AsClock());
  EXPECT_FALSE(registry.Heartbeat("ghost", Load(0, 0, 0, 0)));
  EXPECT_TRUE(registry.Snapshot().empty());
}

TEST(WorkerRegistryTest, RejectsBadRegistrationsAndRecordsKvLayout) {
  FakeClock clock;
  WorkerRegistry registry(absl::Seconds(3), clock.AsClock());
  WorkerRegistration no_id = Prefill("");
  EXPECT_EQ(registry.Register(no_id).code(), absl::StatusCode::kInvalidArgument);
  WorkerRegistration no_address = Prefill("p");
  no_address.address.clear();
  EXPECT_EQ(registry.Register(no_address).code(), absl::StatusCode::kInvalidArgument);
  WorkerRegistration no_role = Prefill("p");
  no_role.role = v1::WORKER_ROLE_UNSPECIFIED;
  EXPECT_EQ(registry.Register(no_role).code(), absl::StatusCode::kInvalidArgument);
  absl::Status no_block = registry.Register(Decode("d", Load(0, 0, 1, 1), /*block_size=*/0));
  EXPECT_EQ(no_block.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(no_block.message().find("'d'"), std::string::npos);
  EXPECT_TRUE(registry.Snapshot().empty());

  ASSERT_TRUE(registry.Register(Decode("d", Load(0, 0, 1, 1), 32)).ok());
  std::vector<WorkerSnapshot> workers = registry.Snapshot();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].kv_layout.block_size(), 32);
  EXPECT_EQ(workers[0].ToProto().kv_layout().dtype(), "f32");
}

// stories260K's identity as the router computes it (fingerprint shortened for reading).
ModelIdentity Stories() {
  ModelIdentity model;
  model.file_name = "stories260K.gguf";
  model.fingerprint = "0000000000000000000000000000aaaa";
  model.n_layers = 5;
  model.n_kv_heads = 4;
  model.head_dim = 8;
  return model;
}

// A worker running Stories() with the given block size.
WorkerRegistration StoriesWorker(const std::string& id, int block_size = 16,
                                 const std::string& dtype = "f32") {
  WorkerRegistration r = Decode(id, Load(0, 0, 10, 10), block_size);
  r.kv_layout.set_n_layers(5);
  r.kv_layout.set_n_kv_heads(4);
  r.kv_layout.set_head_dim(8);
  r.kv_layout.set_dtype(dtype);
  r.kv_layout.set_model_fingerprint("0000000000000000000000000000aaaa");
  r.model_name = "stories260K.gguf";
  return r;
}

TEST(WorkerRegistryTest, RefusesAWorkerWithAnotherModelNamingBothFiles) {
  FakeClock clock;
  WorkerRegistry registry(absl::Seconds(3), clock.AsClock(), Stories());
  WorkerRegistration other = StoriesWorker("d-other");
  other.kv_layout.set_model_fingerprint("0000000000000000000000000000bbbb");
  other.model_name = "stories260K.bin";
  const absl::Status refused = registry.Register(other);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_EQ(refused.message(),
            "worker d-other runs model fingerprint 0000000000000000000000000000bbbb "
            "(stories260K.bin) but the router's model is 0000000000000000000000000000aaaa "
            "(stories260K.gguf)");
  EXPECT_TRUE(registry.Snapshot().empty());

  EXPECT_TRUE(registry.Register(StoriesWorker("d-same")).ok());
  // No fingerprint (fake workers, older workers): accepted.
  WorkerRegistration unknown = StoriesWorker("d-unknown");
  unknown.kv_layout.clear_model_fingerprint();
  EXPECT_TRUE(registry.Register(unknown).ok());
  EXPECT_EQ(registry.Snapshot().size(), 2u);
}

TEST(WorkerRegistryTest, RefusesAKvShapeOtherThanTheModels) {
  FakeClock clock;
  WorkerRegistry registry(absl::Seconds(3), clock.AsClock(), Stories());
  WorkerRegistration layers = StoriesWorker("d-layers");
  layers.kv_layout.set_n_layers(6);
  const absl::Status refused = registry.Register(layers);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_EQ(refused.message(),
            "worker d-layers has KV layout layers=6 kv_heads=4 head_dim=8 block_size=16 "
            "dtype=f32 (stories260K.gguf) but the router's model (stories260K.gguf) has "
            "layers=5 kv_heads=4 head_dim=8");
  WorkerRegistration heads = StoriesWorker("d-heads");
  heads.kv_layout.set_n_kv_heads(8);
  EXPECT_EQ(registry.Register(heads).code(), absl::StatusCode::kFailedPrecondition);
  WorkerRegistration head_dim = StoriesWorker("d-head-dim");
  head_dim.kv_layout.set_head_dim(16);
  EXPECT_EQ(registry.Register(head_dim).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(registry.Snapshot().empty());
  // A worker that sends no shape (a fake one) is not checked.
  EXPECT_TRUE(registry.Register(Prefill("p-fake")).ok());
}

TEST(WorkerRegistryTest, BlockSizeAndDtypeAreFixedByTheHealthyWorkers) {
  FakeClock clock;
  WorkerRegistry registry(absl::Seconds(3), clock.AsClock(), Stories());
  ASSERT_TRUE(registry.Register(StoriesWorker("d-1", 16)).ok());
  const absl::Status refused = registry.Register(StoriesWorker("d-2", 32));
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_EQ(refused.message(),
            "worker d-2 has KV layout layers=5 kv_heads=4 head_dim=8 block_size=32 dtype=f32 "
            "but the registered worker d-1 has layers=5 kv_heads=4 head_dim=8 block_size=16 "
            "dtype=f32: every worker must use the same KV block size and dtype");
  const absl::Status dtype = registry.Register(StoriesWorker("d-2", 16, "bf16"));
  EXPECT_EQ(dtype.code(), absl::StatusCode::kFailedPrecondition) << dtype;
  EXPECT_NE(dtype.message().find("dtype=bf16"), std::string::npos) << dtype;
  ASSERT_EQ(registry.Snapshot().size(), 1u);
  ASSERT_TRUE(registry.Register(StoriesWorker("d-2", 16)).ok());

  // A worker re-registering is not compared with itself, only with the others.
  EXPECT_EQ(registry.Register(StoriesWorker("d-1", 32)).code(),
            absl::StatusCode::kFailedPrecondition);
  // Once the others are stale, another block size may start over (a restarted cluster).
  clock.now += absl::Seconds(2);
  ASSERT_TRUE(registry.Heartbeat("d-1", Load(0, 0, 10, 10)));
  clock.now += absl::Seconds(2);  // d-2 is stale, d-1 is not
  EXPECT_EQ(registry.Register(StoriesWorker("d-3", 32)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(registry.Register(StoriesWorker("d-1", 32)).ok());
  EXPECT_EQ(Find(registry.Snapshot(), "d-1")->kv_layout.block_size(), 32);
}

TEST(WorkerSelectionTest, PrefillPicksLeastLoadedCountingDispatchesSinceHeartbeat) {
  FakeClock clock;
  WorkerRegistry registry(absl::Seconds(3), clock.AsClock());
  ASSERT_TRUE(registry.Register(Prefill("p-b", Load(1, 1, 0, 0))).ok());  // load 2
  ASSERT_TRUE(registry.Register(Prefill("p-a", Load(0, 1, 0, 0))).ok());  // load 1
  ASSERT_TRUE(registry.Register(Prefill("p-c", Load(5, 0, 0, 0))).ok());  // load 5
  EXPECT_EQ(SelectPrefillWorker(registry.Snapshot())->worker_id, "p-a");
  registry.NoteDispatched("p-a", 0);  // load 2: ties with p-b, the lower id wins
  EXPECT_EQ(SelectPrefillWorker(registry.Snapshot())->worker_id, "p-a");
  registry.NoteDispatched("p-a", 0);  // load 3
  EXPECT_EQ(SelectPrefillWorker(registry.Snapshot())->worker_id, "p-b");
  // A heartbeat reports the load afresh and clears the router's own count.
  ASSERT_TRUE(registry.Heartbeat("p-a", Load(0, 0, 0, 0)));
  EXPECT_EQ(SelectPrefillWorker(registry.Snapshot())->worker_id, "p-a");
}

TEST(WorkerSelectionTest, DecodePicksMostFreeBlocksThatFit) {
  FakeClock clock;
  WorkerRegistry registry(absl::Seconds(3), clock.AsClock());
  ASSERT_TRUE(registry.Register(Decode("d-a", Load(0, 0, 10, 100))).ok());
  ASSERT_TRUE(registry.Register(Decode("d-b", Load(0, 0, 30, 100))).ok());
  ASSERT_TRUE(registry.Register(Decode("d-c", Load(0, 0, 30, 100))).ok());
  EXPECT_EQ(KvBlocksNeeded(33, 16), 3);
  EXPECT_EQ(KvBlocksNeeded(32, 16), 2);
  EXPECT_EQ(SelectDecodeWorker(registry.Snapshot(), 100)->worker_id, "d-b");  // tie → lowest id
  registry.NoteDispatched("d-b", 25);  // d-b: 5 free now
  EXPECT_EQ(SelectDecodeWorker(registry.Snapshot(), 100)->worker_id, "d-c");
  // 480 tokens = 30 blocks: only d-c fits now.
  EXPECT_EQ(SelectDecodeWorker(registry.Snapshot(), 480)->worker_id, "d-c");
  registry.NoteDispatched("d-c", 25);
  // Nobody fits 30 blocks now, but everyone's total does: the most free (d-a, 10) waits for room.
  EXPECT_EQ(SelectDecodeWorker(registry.Snapshot(), 480)->worker_id, "d-a");
  // More than any worker holds in total: UNAVAILABLE naming the numbers.
  absl::StatusOr<WorkerSnapshot> too_big = SelectDecodeWorker(registry.Snapshot(), 1601);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(too_big.status().message().find("101 KV blocks"), std::string::npos)
      << too_big.status().message();
}

TEST(WorkerSelectionTest, DecodeUsesEachWorkersBlockSizeAndSkipsUnhealthy) {
  FakeClock clock;
  WorkerRegistry registry(absl::Seconds(3), clock.AsClock());
  ASSERT_TRUE(registry.Register(Decode("d-small-blocks", Load(0, 0, 9, 9), 4)).ok());
  // Another block size joins only while no healthy worker has one (see
  // BlockSizeAndDtypeAreFixedByTheHealthyWorkers), but a stale worker may come back.
  clock.now += absl::Seconds(4);
  ASSERT_TRUE(registry.Register(Decode("d-big-blocks", Load(0, 0, 3, 3), 32)).ok());
  ASSERT_TRUE(registry.Heartbeat("d-small-blocks", Load(0, 0, 9, 9)));
  // 40 tokens: 10 blocks of 4 (does not fit 9), 2 blocks of 32 (fits).
  EXPECT_EQ(SelectDecodeWorker(registry.Snapshot(), 40)->worker_id, "d-big-blocks");
  clock.now += absl::Seconds(2);
  ASSERT_TRUE(registry.Heartbeat("d-small-blocks", Load(0, 0, 9, 9)));
  clock.now += absl::Seconds(2);  // d-big-blocks is stale
  EXPECT_EQ(SelectDecodeWorker(registry.Snapshot(), 36)->worker_id, "d-small-blocks");
  EXPECT_EQ(SelectDecodeWorker(registry.Snapshot(), 40).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(WorkerSelectionTest, NoWorkersIsUnavailable) {
  std::vector<WorkerSnapshot> none;
  EXPECT_EQ(SelectPrefillWorker(none).status().code(), absl::StatusCode::kUnavailable);
  absl::StatusOr<WorkerSnapshot> decode = SelectDecodeWorker(none, 10);
  EXPECT_EQ(decode.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(decode.status().message().find("no decode worker"), std::string::npos);
}

}  // namespace
}  // namespace pdserve::router
