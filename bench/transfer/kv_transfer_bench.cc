// kv_transfer: KV transfer throughput per transport (issue 9), SmolLM2-135M's KV layout, in one
// process over 127.0.0.1. For each dtype and prompt size, the prompt's blocks (patterned random
// bytes in a prefill-side host pool) go to the target blocks of a decode-side pool in shared
// memory (fragmented and shuffled, as on a busy decode worker) through the real transfer layer:
// KvHandoffSender, chunks of 4 blocks as the prefill worker sends them, a KvReceiverService on an
// ephemeral gRPC port, a TcpKvReceiver, and an in-memory reservation table. Beside them, in the
// same run on the same bytes and the same target blocks: a plain memcpy (the shm goal is ≥ 80%
// of it) and a plain loopback TCP stream (the tcp goal is ≥ 70% of it).
//
// A handoff's time runs from the first SendBlocks call to Finish returning decode's
// acknowledgement (connections and the hello, Open, are not in it). Every repetition of every
// path restamps the source blocks, then checks that the reservation completed with the first
// token and that every target block equals its source byte for byte: a broken run fails the
// benchmark instead of printing a fast number. Repetitions interleave the paths, so that load
// from elsewhere on the machine reaches them all alike.

#include <algorithm>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/bench_common.h"
#include "bench/transfer/loopback_stream.h"
#include "bench/transfer/transfer_rig.h"
#include "cli/arg_parser.h"
#include "common/kv/kv_block_pool.h"
#include "common/kv_transfer/shm/shm_kv_storage.h"
#include "tests/common/kv_transfer/fake_reservation_table.h"

namespace pdserve::bench {
namespace {

using kv_transfer::testing::FakeReservationTable;

constexpr char kProgram[] = "kv_transfer";
constexpr char kMemcpy[] = "memcpy";
constexpr char kLoopback[] = "loopback tcp";
constexpr int32_t kFirstToken = 42;

struct BenchOptions {
  std::vector<kernels::KvDtype> dtypes;
  std::vector<int64_t> prompt_tokens;
  std::vector<int64_t> reps;  // one per prompt size
  std::vector<std::string> transports;
  int chunk_blocks = 4;
  bool shuffled = true;
};

struct PathResult {
  std::string path;
  std::vector<double> seconds;  // one per repetition
  std::vector<double> open_seconds;  // transports only
};

struct ConfigResult {
  kernels::KvDtype dtype = kernels::KvDtype::kF32;
  int64_t prompt_tokens = 0;
  int64_t bytes = 0;
  int64_t reps = 0;
  std::vector<PathResult> paths;  // memcpy, loopback tcp, then the transports

  const PathResult* Find(const std::string& path) const {
    for (const PathResult& p : paths) {
      if (p.path == path) return &p;
    }
    return nullptr;
  }
  double GbPerSecond(const std::string& path) const {
    const PathResult* p = Find(path);
    return p == nullptr ? 0 : static_cast<double>(bytes) / Percentile(p->seconds, 0.5) / 1e9;
  }
};

// One dtype and prompt size: the pools, the receivers and every path, `reps` times.
class ConfigRun {
 public:
  static absl::StatusOr<std::unique_ptr<ConfigRun>> Create(kernels::KvDtype dtype,
                                                          int64_t prompt_tokens,
                                                          const BenchOptions& opt) {
    std::unique_ptr<ConfigRun> run(new ConfigRun(SmolLm2KvLayout(dtype), prompt_tokens, opt));
    const kv::KvLayout& layout = run->layout_;
    // Twice the blocks a prompt needs: the fake table scatters a reservation over them.
    const int64_t n_decode_blocks = 2 * run->n_blocks_;
    absl::StatusOr<std::unique_ptr<kv_transfer::SharedMemoryKvStorage>> storage =
        kv_transfer::SharedMemoryKvStorage::Create(layout.BlockBytes() * n_decode_blocks);
    if (!storage.ok()) return storage.status();
    const std::string shm_name = (*storage)->region_name();
    absl::StatusOr<std::unique_ptr<kv::KvBlockPool>> decode_pool =
        kv::KvBlockPool::Create(layout, n_decode_blocks, *std::move(storage));
    if (!decode_pool.ok()) return decode_pool.status();
    run->decode_pool_ = *std::move(decode_pool);
    // Faults every page of the decode side's mapping in, as on a long-running decode worker.
    for (int64_t b = 0; b < n_decode_blocks; ++b) {
      std::memset(run->decode_pool_->BlockData(static_cast<kv::BlockId>(b)), 0,
                  layout.BlockBytes());
    }
    run->table_ = std::make_unique<FakeReservationTable>(*run->decode_pool_);
    absl::StatusOr<std::unique_ptr<ReceiverRig>> rig =
        ReceiverRig::Start(*run->table_, *run->decode_pool_, shm_name);
    if (!rig.ok()) return rig.status();
    run->receivers_ = *std::move(rig);

    absl::StatusOr<std::unique_ptr<kv::KvBlockPool>> prefill_pool =
        kv::KvBlockPool::Create(layout, run->n_blocks_);
    if (!prefill_pool.ok()) return prefill_pool.status();
    run->prefill_pool_ = *std::move(prefill_pool);
    absl::StatusOr<std::vector<kv::BlockId>> blocks = run->prefill_pool_->Allocate(run->n_blocks_);
    if (!blocks.ok()) return blocks.status();
    run->source_.blocks = *std::move(blocks);
    run->source_.n_tokens = prompt_tokens;
    for (int64_t b = 0; b < run->n_blocks_; ++b) {
      FillPattern(absl::MakeSpan(run->prefill_pool_->BlockData(run->source_.blocks[b]),
                                 layout.BlockBytes()),
                  0x5eed0000 + static_cast<uint64_t>(b));
    }
    run->prompt_.resize(prompt_tokens);
    for (int64_t i = 0; i < prompt_tokens; ++i) run->prompt_[i] = static_cast<int32_t>(i % 30011);

    absl::StatusOr<std::unique_ptr<LoopbackStream>> loopback = LoopbackStream::Connect();
    if (!loopback.ok()) return loopback.status();
    run->loopback_ = *std::move(loopback);
    return run;
  }

  int64_t bytes() const { return n_blocks_ * static_cast<int64_t>(layout_.BlockBytes()); }

  int64_t n_decode_blocks() const { return decode_pool_->n_total(); }

  // One run of `path` over the blocks stamped with `stamp`; its timing, after checking what
  // arrived. `targets` (when not null) gets the decode blocks it wrote.
  absl::StatusOr<SendTiming> RunOnce(const std::string& path, uint64_t stamp,
                                     std::vector<kv::BlockId>* targets_out = nullptr) {
    Stamp(stamp);
    const std::string request_id = absl::StrCat(path, "-", stamp);
    const std::string token = table_->Reserve(request_id, prompt_tokens_, opt_.shuffled);
    if (token.empty()) {
      return absl::ResourceExhaustedError(absl::StrCat("no room for ", request_id));
    }
    const std::vector<kv::BlockId> targets = table_->ViewOf(token).target_blocks;
    if (targets_out != nullptr) *targets_out = targets;
    absl::StatusOr<SendTiming> timing;
    if (path == kMemcpy || path == kLoopback) {
      timing = CopyBaseline(path, targets);
      // Nothing completes the reservation: fail it so that its blocks go back.
      table_->Fail(token, absl::CancelledError("baseline"));
    } else {
      kv_transfer::Handoff handoff;
      handoff.request_id = request_id;
      handoff.control_address = receivers_->address();
      handoff.transfer_token = token;
      handoff.target_blocks = targets;
      handoff.layout = layout_;
      handoff.offers = receivers_->offers();
      timing = sender_.Send(path, *prefill_pool_, source_, handoff, prompt_, opt_.chunk_blocks,
                            kFirstToken);
      if (timing.ok() && (table_->StateOf(token) != FakeReservationTable::State::kComplete ||
                          table_->FirstTokenOf(token) != kFirstToken)) {
        timing = absl::InternalError(absl::StrCat(
            path, ": decode acknowledged, but the reservation did not complete with the first "
                  "token: ", table_->ErrorOf(token).ToString()));
      }
    }
    if (timing.ok()) {
      if (absl::Status s = CheckTargets(path, targets); !s.ok()) timing = s;
    }
    table_->ReleaseEnded();
    if (!timing.ok()) {
      return absl::Status(timing.status().code(),
                          absl::StrCat(path, ", ", kv::KvDtypeName(layout_.dtype), ", ",
                                       prompt_tokens_, " tokens: ", timing.status().message()));
    }
    return timing;
  }

 private:
  ConfigRun(const kv::KvLayout& layout, int64_t prompt_tokens, const BenchOptions& opt)
      : layout_(layout),
        prompt_tokens_(prompt_tokens),
        n_blocks_((prompt_tokens + layout.block_size - 1) / layout.block_size),
        opt_(opt) {}

  // Makes this repetition's bytes differ from the last one's, so that stale target blocks
  // cannot pass the check: the first and last 16 bytes of every block.
  void Stamp(uint64_t stamp) {
    const size_t block_bytes = layout_.BlockBytes();
    for (int64_t b = 0; b < n_blocks_; ++b) {
      uint8_t* data = prefill_pool_->BlockData(source_.blocks[b]);
      const uint64_t words[2] = {stamp, static_cast<uint64_t>(b)};
      std::memcpy(data, words, sizeof(words));
      std::memcpy(data + block_bytes - sizeof(words), words, sizeof(words));
    }
  }

  absl::StatusOr<SendTiming> CopyBaseline(const std::string& path,
                                          const std::vector<kv::BlockId>& targets) {
    const size_t block_bytes = layout_.BlockBytes();
    std::vector<absl::Span<const uint8_t>> from(n_blocks_);
    std::vector<absl::Span<uint8_t>> to(n_blocks_);
    for (int64_t b = 0; b < n_blocks_; ++b) {
      from[b] = absl::MakeConstSpan(prefill_pool_->BlockData(source_.blocks[b]), block_bytes);
      to[b] = absl::MakeSpan(decode_pool_->BlockData(targets[b]), block_bytes);
    }
    SendTiming timing;
    timing.bytes = bytes();
    if (path == kMemcpy) {
      const absl::Time start = absl::Now();
      for (int64_t b = 0; b < n_blocks_; ++b) {
        std::memcpy(to[b].data(), from[b].data(), block_bytes);
      }
      timing.seconds = absl::ToDoubleSeconds(absl::Now() - start);
      return timing;
    }
    absl::StatusOr<double> seconds = loopback_->Transfer(from, to, opt_.chunk_blocks);
    if (!seconds.ok()) return seconds.status();
    timing.seconds = *seconds;
    return timing;
  }

  absl::Status CheckTargets(const std::string& path, const std::vector<kv::BlockId>& targets) {
    for (int64_t b = 0; b < n_blocks_; ++b) {
      if (std::memcmp(decode_pool_->BlockData(targets[b]),
                      prefill_pool_->BlockData(source_.blocks[b]), layout_.BlockBytes()) != 0) {
        return absl::DataLossError(absl::StrCat("block ", b, " (target ", targets[b],
                                                ") differs from what was sent"));
      }
    }
    return absl::OkStatus();
  }

  const kv::KvLayout layout_;
  const int64_t prompt_tokens_;
  const int64_t n_blocks_;
  const BenchOptions& opt_;
  std::unique_ptr<kv::KvBlockPool> decode_pool_;  // in shared memory
  std::unique_ptr<FakeReservationTable> table_;
  std::unique_ptr<ReceiverRig> receivers_;        // declared after what it uses
  std::unique_ptr<kv::KvBlockPool> prefill_pool_;
  kv::BlockTable source_;
  std::vector<int32_t> prompt_;
  SenderRig sender_;
  std::unique_ptr<LoopbackStream> loopback_;
};

absl::StatusOr<ConfigResult> RunConfig(kernels::KvDtype dtype, int64_t prompt_tokens,
                                       int64_t reps, const BenchOptions& opt) {
  absl::StatusOr<std::unique_ptr<ConfigRun>> run = ConfigRun::Create(dtype, prompt_tokens, opt);
  if (!run.ok()) return run.status();
  ConfigResult result;
  result.dtype = dtype;
  result.prompt_tokens = prompt_tokens;
  result.bytes = (*run)->bytes();
  result.reps = reps;
  std::vector<std::string> paths = {kMemcpy, kLoopback};
  paths.insert(paths.end(), opt.transports.begin(), opt.transports.end());
  for (const std::string& path : paths) result.paths.push_back(PathResult{path, {}, {}});
  uint64_t stamp = 1;
  // Warm-up, not kept: connections, and the shm sender's own mapping of the decode pool, which
  // takes a page fault at the first write of each page: shm runs until it has written every
  // block of the pool once (a long-running prefill worker keeps its mapping).
  std::vector<bool> written((*run)->n_decode_blocks(), false);
  for (int tries = 0; tries < 64 && std::count(written.begin(), written.end(), false) > 0;
       ++tries) {
    for (const std::string& path : paths) {
      if (tries > 0 && path != "shm") continue;
      std::vector<kv::BlockId> targets;
      if (absl::StatusOr<SendTiming> t = (*run)->RunOnce(path, stamp++, &targets); !t.ok()) {
        return t.status();
      }
      if (path != "shm") continue;
      for (kv::BlockId b : targets) written[b] = true;
    }
    if (std::find(paths.begin(), paths.end(), "shm") == paths.end()) break;
  }
  for (int64_t rep = 0; rep < reps; ++rep) {
    for (PathResult& path : result.paths) {
      absl::StatusOr<SendTiming> timing = (*run)->RunOnce(path.path, stamp++);
      if (!timing.ok()) return timing.status();
      if (timing->bytes != result.bytes) {
        return absl::InternalError(absl::StrCat(path.path, " moved ", timing->bytes,
                                                " bytes, expected ", result.bytes));
      }
      path.seconds.push_back(timing->seconds);
      if (path.path != kMemcpy && path.path != kLoopback) {
        path.open_seconds.push_back(timing->open_seconds);
      }
    }
  }
  return result;
}

std::string Ratio(double value, double goal) {
  return absl::StrFormat("%.3f (goal >= %.2f: %s)", value, goal, value >= goal ? "met" : "MISSED");
}

void Print(const BenchOptions& opt, const std::vector<ConfigResult>& results) {
  const kv::KvLayout layout = SmolLm2KvLayout(kernels::KvDtype::kF32);
  std::cout << absl::StrFormat(
      "kv_transfer bench: SmolLM2-135M KV layout (layers=%d kv_heads=%d head_dim=%d "
      "block_size=%d), chunks of %d blocks, %s target blocks in a shared-memory decode pool; "
      "one process over 127.0.0.1\n",
      layout.n_layers, layout.n_kv_heads, layout.head_dim, layout.block_size, opt.chunk_blocks,
      opt.shuffled ? "fragmented + shuffled" : "contiguous");
  TextTable table({"dtype", "prompt", "MB", "path", "GB/s (p50)", "p50 s", "p99 s", "open p50 ms",
                   "reps"});
  for (const ConfigResult& r : results) {
    for (const PathResult& p : r.paths) {
      table.AddRow({kv::KvDtypeName(r.dtype), absl::StrCat(r.prompt_tokens),
                    absl::StrFormat("%.1f", r.bytes / 1e6), p.path,
                    absl::StrFormat("%.2f", r.GbPerSecond(p.path)),
                    absl::StrFormat("%.5f", Percentile(p.seconds, 0.5)),
                    absl::StrFormat("%.5f", Percentile(p.seconds, 0.99)),
                    p.open_seconds.empty()
                        ? "-"
                        : absl::StrFormat("%.2f", 1e3 * Percentile(p.open_seconds, 0.5)),
                    absl::StrCat(p.seconds.size())});
    }
  }
  std::cout << table.Render();
  std::cout << "time = first SendBlocks -> Finish acknowledged by decode (every block verified "
               "and committed), Open not included; memcpy = one thread, block by block into the "
               "same target blocks; loopback tcp = one plain socket, writev per chunk, read into "
               "the target blocks. Every run checked: reservation complete, target bytes "
               "equal.\n\n";

  const auto has = [&](const std::string& t) {
    return std::find(opt.transports.begin(), opt.transports.end(), t) != opt.transports.end();
  };
  TextTable ratios({"dtype", "prompt", "shm / memcpy", "tcp / loopback tcp",
                    "grpc / loopback tcp", "grpc / memcpy"});
  for (const ConfigResult& r : results) {
    const double memcpy_gbs = r.GbPerSecond(kMemcpy);
    const double loopback_gbs = r.GbPerSecond(kLoopback);
    ratios.AddRow({kv::KvDtypeName(r.dtype), absl::StrCat(r.prompt_tokens),
                   has("shm") ? Ratio(r.GbPerSecond("shm") / memcpy_gbs, 0.8) : "-",
                   has("tcp") ? Ratio(r.GbPerSecond("tcp") / loopback_gbs, 0.7) : "-",
                   has("grpc") ? absl::StrFormat("%.2f", r.GbPerSecond("grpc") / loopback_gbs)
                               : "-",
                   has("grpc") ? absl::StrFormat("%.2f", r.GbPerSecond("grpc") / memcpy_gbs)
                               : "-"});
  }
  std::cout << "ratios of p50 GB/s (grpc: for comparison, no goal)\n" << ratios.Render();
}

int Run(int argc, char** argv) {
  cli::ArgParser parser;
  parser.AddString("prompt-tokens", "comma-separated prompt sizes in tokens (default 1024,8192)");
  parser.AddString("reps", "repetitions, one per prompt size or one for all (default 20,5)");
  parser.AddString("dtypes", "comma-separated KV dtypes: f32, f16, bf16 (default f32,bf16)");
  parser.AddString("transports", "comma-separated transports: grpc, shm, tcp (default all)");
  parser.AddString("chunk-blocks", "blocks per SendBlocks, as the prefill worker (default 4)");
  parser.AddBool("contiguous", "contiguous target blocks (default: fragmented and shuffled)");
  parser.AddBool("quick", "a few seconds: 256-token prompts, 3 repetitions, f32 (smoke test)");
  parser.AddBool("help", "show this help");
  if (absl::Status s = parser.Parse(argc, argv); !s.ok()) {
    std::cerr << kProgram << ": " << s.message() << "\n" << parser.Usage(kProgram);
    return 2;
  }
  if (parser.GetBool("help")) {
    std::cout << parser.Usage(kProgram);
    return 0;
  }
  const bool quick = parser.GetBool("quick");
  BenchOptions opt;
  opt.shuffled = !parser.GetBool("contiguous");
  absl::StatusOr<std::vector<int64_t>> prompt_tokens =
      ParsePositiveList("prompt-tokens",
                        parser.GetString("prompt-tokens", quick ? "256" : "1024,8192"));
  absl::StatusOr<std::vector<int64_t>> reps =
      ParsePositiveList("reps", parser.GetString("reps", quick ? "3" : "20,5"));
  absl::StatusOr<std::vector<std::string>> transports =
      ParseTransportList("transports", parser.GetString("transports", "grpc,shm,tcp"));
  absl::StatusOr<int64_t> chunk_blocks = parser.GetInt("chunk-blocks", 4);
  for (const absl::Status& s : {prompt_tokens.status(), reps.status(), transports.status(),
                                chunk_blocks.status()}) {
    if (!s.ok()) {
      std::cerr << kProgram << ": " << s.message() << "\n";
      return 2;
    }
  }
  for (absl::string_view name :
       absl::StrSplit(parser.GetString("dtypes", quick ? "f32" : "f32,bf16"), ',')) {
    absl::StatusOr<kernels::KvDtype> dtype = kv::ParseKvDtype(name);
    if (!dtype.ok()) {
      std::cerr << kProgram << ": --dtypes: " << dtype.status().message() << "\n";
      return 2;
    }
    opt.dtypes.push_back(*dtype);
  }
  if (reps->size() != 1 && reps->size() != prompt_tokens->size()) {
    std::cerr << kProgram << ": --reps needs one value, or one per --prompt-tokens size\n";
    return 2;
  }
  if (*chunk_blocks < 1 || *chunk_blocks > 64) {
    std::cerr << kProgram << ": --chunk-blocks must be in [1, 64]\n";
    return 2;
  }
  opt.prompt_tokens = *prompt_tokens;
  opt.reps = *reps;
  opt.reps.resize(opt.prompt_tokens.size(), opt.reps.front());
  opt.transports = *transports;
  opt.chunk_blocks = static_cast<int>(*chunk_blocks);

  std::vector<ConfigResult> results;
  for (kernels::KvDtype dtype : opt.dtypes) {
    for (size_t i = 0; i < opt.prompt_tokens.size(); ++i) {
      absl::StatusOr<ConfigResult> r = RunConfig(dtype, opt.prompt_tokens[i], opt.reps[i], opt);
      if (!r.ok()) {
        std::cerr << kProgram << ": " << r.status() << "\n";
        return 1;
      }
      results.push_back(*std::move(r));
    }
  }
  Print(opt, results);
  return 0;
}

}  // namespace
}  // namespace pdserve::bench

int main(int argc, char** argv) { return pdserve::bench::Run(argc, argv); }
