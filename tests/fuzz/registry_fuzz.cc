// Registration and heartbeats as the router takes them: RegisterWorkerRequest and
// HeartbeatRequest wire bytes through RegistryService's handlers (called directly, with a
// context of no call: an open cluster's authorization reads nothing from it), over a
// WorkerRegistry with a model identity and a hand-moved clock.
//
// Input: operations until it is used up, each an opcode byte and its argument: 0 register (a
// piece: the request's bytes), 1 heartbeat (a piece), 2 move the clock (a byte of seconds),
// 3 note a dispatch (a piece: the worker id; a byte: KV blocks). Whatever the order, every
// registered worker satisfies Register's contract.
#include <string>
#include <vector>

#include "google/protobuf/stubs/logging.h"
#include "router/registry_service.h"
#include "router/worker_registry.h"
#include "tests/fuzz/fuzz_input.h"
#include "tests/fuzz/fuzz_targets.h"
#include "worker.pb.h"

namespace pdserve::fuzz {
namespace {

constexpr int kHeartbeatIntervalMs = 1000;

router::ModelIdentity FuzzModel() {
  router::ModelIdentity model;
  model.file_name = "fuzz.gguf";
  model.fingerprint = std::string(kFuzzFingerprint);
  model.n_layers = FuzzLayout().n_layers;
  model.n_kv_heads = FuzzLayout().n_kv_heads;
  model.head_dim = FuzzLayout().head_dim;
  return model;
}

void CheckRegistry(const router::WorkerRegistry& registry) {
  const std::vector<router::WorkerSnapshot> workers = registry.Snapshot();
  for (size_t i = 0; i < workers.size(); ++i) {
    const router::WorkerSnapshot& w = workers[i];
    PDSERVE_FUZZ_CHECK(!w.worker_id.empty() && !w.address.empty(),
                       "a worker without id or address joined");
    PDSERVE_FUZZ_CHECK(i == 0 || workers[i - 1].worker_id < w.worker_id,
                       "Snapshot is not ordered by id");
    PDSERVE_FUZZ_CHECK(w.role == v1::WORKER_ROLE_PREFILL || w.role == v1::WORKER_ROLE_DECODE,
                       "worker " + w.worker_id + " joined with role " + std::to_string(w.role));
    PDSERVE_FUZZ_CHECK(w.role != v1::WORKER_ROLE_DECODE || w.kv_layout.block_size() >= 1,
                       "decode worker " + w.worker_id + " joined without a KV block size");
    PDSERVE_FUZZ_CHECK(w.kv_layout.model_fingerprint().empty() ||
                           w.kv_layout.model_fingerprint() == kFuzzFingerprint,
                       "worker " + w.worker_id + " joined with another model");
    (void)w.ToProto();
  }
}

}  // namespace

bool InitRegistryFuzz() {
  google::protobuf::SetLogHandler(nullptr);
  return true;
}

int RegistryFuzz(const uint8_t* data, size_t size) {
  absl::Time now = absl::FromUnixSeconds(1'000'000);
  router::WorkerRegistry registry(absl::Seconds(3), [&now] { return now; }, FuzzModel());
  router::RegistryService service(registry, kHeartbeatIntervalMs);
  grpc::ServerContext context;
  FuzzInput input(data, size);
  for (int op = 0; !input.empty() && op < 256; ++op) {
    switch (input.TakeByte() % 4) {
      case 0: {
        const absl::string_view wire = input.TakePiece();
        v1::RegisterWorkerRequest request;
        if (!request.ParseFromArray(wire.data(), static_cast<int>(wire.size()))) break;
        v1::RegisterWorkerResponse response;
        const grpc::Status status = service.RegisterWorker(&context, &request, &response);
        PDSERVE_FUZZ_CHECK(
            status.ok() == (response.heartbeat_interval_ms() == kHeartbeatIntervalMs),
            "a registration answer without its heartbeat interval, or a refusal with one");
        break;
      }
      case 1: {
        const absl::string_view wire = input.TakePiece();
        v1::HeartbeatRequest request;
        if (!request.ParseFromArray(wire.data(), static_cast<int>(wire.size()))) break;
        v1::HeartbeatResponse response;
        PDSERVE_FUZZ_CHECK(service.Heartbeat(&context, &request, &response).ok(),
                           "a heartbeat failed");
        break;
      }
      case 2:
        now += absl::Seconds(input.TakeByte());
        break;
      case 3: {
        const std::string worker_id(input.TakePiece());
        registry.NoteDispatched(worker_id, input.TakeByte());
        break;
      }
    }
  }
  CheckRegistry(registry);
  return 0;
}

}  // namespace pdserve::fuzz

PDSERVE_FUZZ_TARGET(pdserve::fuzz::InitRegistryFuzz, pdserve::fuzz::RegistryFuzz)
