// pdserve-decode-worker: receives prompts' KV from prefill workers and decodes them with
// continuous batching (DecodeWorker.Decode, KvReceiver.PushKv). With --router, registers with the
// router and heartbeats its load. Prints "listening on HOST:PORT" to stderr once serving;
// SIGINT/SIGTERM shut it down (exit 0).

#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "cli/arg_parser.h"
#include "cli/engine_flags.h"
#include "cli/worker_flags.h"
#include "common/engine/engine.h"
#include "common/rpc/server_process.h"
#include "decode_node/decode_scheduler.h"
#include "decode_node/decode_service.h"

namespace pdserve::decode {
namespace {

constexpr char kProgram[] = "pdserve-decode-worker";

// A KvChunk carries a prefill chunk of whole blocks: an 8B LLaMA's bf16 block of 16 tokens is
// 2 MiB, so a chunk of them passes gRPC's 4 MiB default.
constexpr int kMaxKvMessageBytes = 256 << 20;

int Fail(const std::string& message, int code) {
  std::cerr << kProgram << ": " << message << "\n";
  return code;
}

int Run(int argc, char** argv) {
  const rpc::ShutdownSignals signals;  // before any thread starts

  cli::ArgParser parser;
  cli::AddEngineFlags(parser);
  cli::AddWorkerServingFlags(parser);
  parser.AddString("kv-pool-tokens", "tokens the KV pool holds (default 8192)");
  parser.AddString("max-batch", "most sequences in one decode step (default 32)");
  parser.AddString("kv-timeout-ms", "longest wait for a sequence's KV (default 60000)");
  parser.AddBool("help", "show this help");
  if (absl::Status s = parser.Parse(argc, argv); !s.ok()) {
    return Fail(absl::StrCat(s.message(), "\n", parser.Usage(kProgram)), 2);
  }
  if (parser.GetBool("help")) {
    std::cout << parser.Usage(kProgram);
    return 0;
  }
  absl::StatusOr<engine::EngineOptions> options = cli::EngineOptionsFromFlags(parser);
  if (!options.ok()) return Fail(std::string(options.status().message()), 2);
  absl::StatusOr<cli::WorkerServingFlags> serving = cli::WorkerServingFlagsFrom(parser);
  if (!serving.ok()) return Fail(std::string(serving.status().message()), 2);
  absl::StatusOr<int64_t> pool_tokens = parser.GetInt("kv-pool-tokens", 8192);
  absl::StatusOr<int64_t> max_batch = parser.GetInt("max-batch", 32);
  absl::StatusOr<int64_t> kv_timeout_ms = parser.GetInt("kv-timeout-ms", 60000);
  for (const absl::Status& s :
       {pool_tokens.status(), max_batch.status(), kv_timeout_ms.status()}) {
    if (!s.ok()) return Fail(std::string(s.message()), 2);
  }
  if (*pool_tokens < 1) return Fail("--kv-pool-tokens must be at least 1", 2);
  if (*max_batch < 1 || *max_batch > 4096) return Fail("--max-batch must be in [1, 4096]", 2);
  if (*kv_timeout_ms < 1) return Fail("--kv-timeout-ms must be at least 1", 2);
  options->kv_pool_tokens = *pool_tokens;

  absl::StatusOr<std::unique_ptr<engine::Engine>> engine = engine::Engine::Load(*options);
  if (!engine.ok()) return Fail(std::string(engine.status().message()), 1);
  std::cerr << (*engine)->DeviceReport() << "\n" << (*engine)->KvMemoryReport() << "\n";

  SchedulerOptions scheduler_options;
  scheduler_options.max_batch = static_cast<int>(*max_batch);
  DecodeScheduler scheduler((*engine)->config(), (*engine)->kv_pool(), (*engine)->forward(),
                            (*engine)->tokenizer().end_of_generation_ids(), scheduler_options);
  DecodeServiceOptions service_options;
  service_options.kv_timeout = absl::Milliseconds(*kv_timeout_ms);
  DecodeWorkerService decode_service(scheduler, service_options);
  KvReceiverService kv_service(scheduler);

  cli::WorkerServer server;
  server.role = v1::WORKER_ROLE_DECODE;
  server.services = {&decode_service, &kv_service};
  server.max_receive_message_bytes = kMaxKvMessageBytes;
  server.kv_layout = (*engine)->kv_pool().layout();
  server.model_path = options->model_path;
  server.load = [&scheduler] { return WorkerLoadToProto(scheduler.Load()); };
  return cli::ServeWorkerUntilSignal(kProgram, signals, *serving, server);
}

}  // namespace
}  // namespace pdserve::decode

int main(int argc, char** argv) { return pdserve::decode::Run(argc, argv); }
