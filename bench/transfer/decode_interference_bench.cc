// decode_interference: does decode stall while KV arrives? (issue 9, "decode does not stall").
// A real DecodeScheduler (one scheduler thread, a kernels ThreadPool of 1) decodes 8 sequences
// (ignore_eos, long max_tokens) on a real model, its KV pool in shared memory as a decode
// worker's is. The decode step time is read from outside: a watcher thread waits on one running
// sequence's events (DecodeScheduler::WaitEvents) and timestamps each token; consecutive tokens
// are one step apart. Meanwhile, a 2K-token prompt's KV arrives for a 9th sequence through a
// real transport (the in-process KvReceiverService and TcpKvReceiver over the scheduler, and the
// prefill side's KvHandoffSender), in windows that alternate with quiet ones:
//
//   quiet (W steps) | one arrival | quiet | one arrival | ... | quiet | arrivals back to back
//   for at least W steps | quiet ...
//
// per transport, interleaved; then a control window with no KV and one thread spinning (what
// plain CPU contention costs the steps on this machine). A step counts as "under an arrival"
// when it overlaps the arrival (reservation to decode's acknowledgement); a quiet step lies
// wholly inside a quiet window. The 9th sequence has max_tokens 1: its KV completes it, it never
// joins the batch, so every step runs the same 8 sequences. Every arrival is checked: decode's
// acknowledgement, the sequence finished with its one token; every window checks that all 8
// sequences advanced. The running sequences' own prompt KV is zeros (their values do not change
// a step's cost).
//
// The sender's work (checksums, serialization, the shm copy) runs in this process, on the same
// CPUs, where a real prefill worker is another process. By default the scheduler thread gets a
// CPU of its own (--pin-decode-cpu; -1 turns it off), as a decode worker's kernels have theirs;
// what is left of the contention (memory bandwidth, a shared physical core) the control row
// shows.

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "bench/bench_common.h"
#include "bench/transfer/step_clock.h"
#include "bench/transfer/transfer_rig.h"
#include "cli/arg_parser.h"
#include "common/engine/engine.h"
#include "decode_node/decode_scheduler.h"

namespace pdserve::bench {
namespace {

using decode::DecodeScheduler;
using decode::SequenceEvent;

constexpr char kProgram[] = "decode_interference";

struct BenchOptions {
  engine::EngineOptions engine;
  int64_t n_sequences = 8;
  int64_t context_tokens = 64;    // prompt of each running sequence
  int64_t arrival_tokens = 2048;  // prompt of the 9th
  std::vector<std::string> transports;
  int64_t reps = 10;              // single arrivals per transport
  int64_t window_steps = 20;
  int chunk_blocks = 4;
  int pin_decode_cpu = -1;
};

enum class WindowKind { kQuiet, kSingle, kBackToBack, kBusyControl };

struct Window {
  WindowKind kind;
  std::string transport;  // arrivals only
  absl::Time start;
  absl::Time end;
};

struct Arrival {
  std::string transport;
  absl::Time start;  // before Reserve
  absl::Time end;    // decode acknowledged
  double send_seconds = 0;  // first SendBlocks → acknowledged
  int64_t bytes = 0;
};

// The CPUs this process may run on.
std::vector<int> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

absl::Status SetThreadCpus(const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : cpus) CPU_SET(cpu, &set);
  const int error = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  if (error != 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot pin a thread to CPUs ",
                                                   absl::StrJoin(cpus, ","), ": error ", error));
  }
  return absl::OkStatus();
}

// Everything of one run: the engine and scheduler, the receivers over it, the prefill side.
class Rig {
 public:
  explicit Rig(const BenchOptions& opt) : opt_(opt) {}
  ~Rig() {
    clock_.reset();
    if (scheduler_ != nullptr) {
      for (int64_t i = 0; i < opt_.n_sequences; ++i) scheduler_->Release(RunningId(i));
    }
    receivers_.reset();  // before the scheduler they serve
  }

  absl::Status Start(int64_t max_tokens) {
    absl::StatusOr<std::unique_ptr<engine::Engine>> engine = engine::Engine::Load(opt_.engine);
    if (!engine.ok()) return engine.status();
    engine_ = *std::move(engine);
    const kv::KvLayout& layout = engine_->kv_pool().layout();
    std::vector<int> other_cpus;
    if (opt_.pin_decode_cpu >= 0) {
      // The scheduler thread inherits the creating thread's CPUs; everything started after it
      // (receivers, watcher, senders) gets the others.
      for (int cpu : AllowedCpus()) {
        if (cpu != opt_.pin_decode_cpu) other_cpus.push_back(cpu);
      }
      if (other_cpus.empty()) other_cpus.push_back(opt_.pin_decode_cpu);
      if (absl::Status s = SetThreadCpus({opt_.pin_decode_cpu}); !s.ok()) return s;
    }
    scheduler_ = std::make_unique<DecodeScheduler>(engine_->config(), engine_->kv_pool(),
                                                   engine_->forward(),
                                                   engine_->tokenizer().end_of_generation_ids(),
                                                   decode::SchedulerOptions{});
    if (!other_cpus.empty()) {
      if (absl::Status s = SetThreadCpus(other_cpus); !s.ok()) return s;
    }
    absl::StatusOr<std::unique_ptr<ReceiverRig>> receivers =
        ReceiverRig::Start(*scheduler_, engine_->kv_pool(), engine_->kv_pool_shm_name());
    if (!receivers.ok()) return receivers.status();
    receivers_ = *std::move(receivers);

    // The prefill side's blocks: zeros for the running sequences, a pattern for the arrivals.
    const int64_t vocab = engine_->config().vocab_size;
    context_prompt_.resize(opt_.context_tokens);
    for (int64_t i = 0; i < opt_.context_tokens; ++i) context_prompt_[i] = (i * 7 + 3) % vocab;
    arrival_prompt_.resize(opt_.arrival_tokens);
    for (int64_t i = 0; i < opt_.arrival_tokens; ++i) arrival_prompt_[i] = (i * 11 + 5) % vocab;
    const auto blocks_of = [&](int64_t n) {
      return (n + layout.block_size - 1) / layout.block_size;
    };
    absl::StatusOr<std::unique_ptr<kv::KvBlockPool>> pool = kv::KvBlockPool::Create(
        layout, blocks_of(opt_.context_tokens) + blocks_of(opt_.arrival_tokens));
    if (!pool.ok()) return pool.status();
    prefill_pool_ = *std::move(pool);
    for (auto [table, n] : {std::pair{&context_table_, opt_.context_tokens},
                            std::pair{&arrival_table_, opt_.arrival_tokens}}) {
      absl::StatusOr<std::vector<kv::BlockId>> blocks = prefill_pool_->Allocate(blocks_of(n));
      if (!blocks.ok()) return blocks.status();
      table->blocks = *std::move(blocks);
      table->n_tokens = n;
    }
    for (size_t b = 0; b < arrival_table_.blocks.size(); ++b) {
      FillPattern(absl::MakeSpan(prefill_pool_->BlockData(arrival_table_.blocks[b]),
                                 layout.BlockBytes()),
                  0xa11 + b);
    }

    // The running sequences, their KV through the grpc transport.
    for (int64_t i = 0; i < opt_.n_sequences; ++i) {
      decode::DecodeSpec spec;
      spec.request_id = RunningId(i);
      spec.prompt_ids = context_prompt_;
      spec.max_tokens = max_tokens;
      spec.ignore_eos = true;
      absl::StatusOr<SendTiming> sent =
          SendKv(spec, "grpc", context_table_, context_prompt_.back());
      if (!sent.ok()) return sent.status();
    }
    clock_ = std::make_unique<StepClock>(*scheduler_, RunningId(0));
    return absl::OkStatus();
  }

  // One arrival of the 9th sequence's KV over `transport`, checked.
  absl::StatusOr<Arrival> Arrive(const std::string& transport) {
    decode::DecodeSpec spec;
    spec.request_id = absl::StrCat("arrival-", n_arrivals_++);
    spec.prompt_ids = arrival_prompt_;
    spec.max_tokens = 1;  // complete on arrival; never joins the batch
    spec.ignore_eos = true;
    Arrival arrival;
    arrival.transport = transport;
    arrival.start = absl::Now();
    absl::StatusOr<SendTiming> sent = SendKv(spec, transport, arrival_table_, 1);
    arrival.end = absl::Now();
    if (!sent.ok()) return sent.status();
    arrival.send_seconds = sent->seconds;
    arrival.bytes = sent->bytes;
    std::vector<SequenceEvent> events;
    absl::Status s =
        scheduler_->WaitEvents(spec.request_id, absl::Now() + absl::Seconds(10), &events);
    scheduler_->Release(spec.request_id);
    if (!s.ok()) return s;
    if (events.size() != 1 || events[0].kind != SequenceEvent::Kind::kFinished ||
        events[0].completion_tokens != 1) {
      return absl::InternalError(absl::StrCat(
          spec.request_id, " over ", transport,
          ": decode acknowledged, but the sequence did not finish with its one token"));
    }
    return arrival;
  }

  // Drains the running sequences other than the watched one: each must have advanced since the
  // last call and none may have ended.
  absl::Status CheckRunningAdvanced() {
    for (int64_t i = 1; i < opt_.n_sequences; ++i) {
      std::vector<SequenceEvent> events;
      if (absl::Status s = scheduler_->WaitEvents(RunningId(i), absl::Now(), &events); !s.ok()) {
        return s;
      }
      int64_t n_tokens = 0;
      for (const SequenceEvent& e : events) {
        if (e.kind != SequenceEvent::Kind::kToken) {
          return absl::FailedPreconditionError(absl::StrCat(
              RunningId(i), " ended during the measurement: ",
              e.kind == SequenceEvent::Kind::kError ? e.error.ToString()
                                                    : request::FinishReasonName(e.finish_reason)));
        }
        ++n_tokens;
      }
      if (n_tokens == 0) {
        return absl::InternalError(absl::StrCat(RunningId(i), " made no token in a window"));
      }
    }
    if (scheduler_->Load().active_sequences != opt_.n_sequences) {
      return absl::InternalError(absl::StrCat(scheduler_->Load().active_sequences,
                                              " active sequences, expected ", opt_.n_sequences));
    }
    return absl::OkStatus();
  }

  StepClock& clock() { return *clock_; }
  DecodeScheduler& scheduler() { return *scheduler_; }
  engine::Engine& engine() { return *engine_; }

 private:
  static std::string RunningId(int64_t i) { return absl::StrCat("running-", i); }

  // Reserves `spec` and hands it the KV of `source` over `transport`.
  absl::StatusOr<SendTiming> SendKv(const decode::DecodeSpec& spec, const std::string& transport,
                                    const kv::BlockTable& source, int32_t first_token) {
    absl::StatusOr<decode::Reservation> r =
        scheduler_->Reserve(spec, absl::Now() + absl::Seconds(30), [] { return false; });
    if (!r.ok()) return r.status();
    kv_transfer::Handoff handoff;
    handoff.request_id = spec.request_id;
    handoff.control_address = receivers_->address();
    handoff.transfer_token = r->transfer_token;
    handoff.target_blocks = r->prompt_blocks;
    handoff.layout = engine_->kv_pool().layout();
    handoff.offers = receivers_->offers();
    absl::StatusOr<SendTiming> sent = sender_.Send(transport, *prefill_pool_, source, handoff,
                                                   spec.prompt_ids, opt_.chunk_blocks, first_token);
    if (!sent.ok()) {
      return absl::Status(sent.status().code(), absl::StrCat(spec.request_id, " over ", transport,
                                                             ": ", sent.status().message()));
    }
    return sent;
  }

  const BenchOptions& opt_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<DecodeScheduler> scheduler_;
  std::unique_ptr<ReceiverRig> receivers_;
  std::unique_ptr<kv::KvBlockPool> prefill_pool_;
  kv::BlockTable context_table_;
  kv::BlockTable arrival_table_;
  std::vector<int32_t> context_prompt_;
  std::vector<int32_t> arrival_prompt_;
  SenderRig sender_;
  std::unique_ptr<StepClock> clock_;
  int64_t n_arrivals_ = 0;
};

struct Measurement {
  std::vector<Step> steps;
  std::vector<Window> windows;
  std::vector<Arrival> arrivals;
};

absl::Status QuietWindow(Rig& rig, const BenchOptions& opt, Measurement& m) {
  Window w{WindowKind::kQuiet, "", absl::Now(), {}};
  absl::StatusOr<absl::Time> end = rig.clock().WaitSteps(opt.window_steps);
  if (!end.ok()) return end.status();
  w.end = *end;
  m.windows.push_back(w);
  return rig.CheckRunningAdvanced();
}

absl::Status ArrivalWindow(Rig& rig, const BenchOptions& opt, const std::string& transport,
                           bool back_to_back, Measurement& m) {
  Window w{back_to_back ? WindowKind::kBackToBack : WindowKind::kSingle, transport, absl::Now(),
           {}};
  do {
    absl::StatusOr<Arrival> a = rig.Arrive(transport);
    if (!a.ok()) return a.status();
    m.arrivals.push_back(*a);
  } while (back_to_back && rig.clock().steps_since(w.start) < opt.window_steps);
  w.end = absl::Now();
  m.windows.push_back(w);
  // Lets the step that overlaps the end of the window finish before the next one starts.
  if (absl::StatusOr<absl::Time> t = rig.clock().WaitSteps(1); !t.ok()) return t.status();
  return rig.CheckRunningAdvanced();
}

// The control: no KV at all, one thread spinning on the CPUs the receivers and senders use
// (no memory traffic, no locks). What plain CPU contention costs the decode steps on this
// machine, to read the arrival rows against (two vCPUs of one physical core slow each other).
absl::Status BusyControlWindow(Rig& rig, const BenchOptions& opt, Measurement& m) {
  std::atomic<bool> stop{false};
  Window w{WindowKind::kBusyControl, "", absl::Now(), {}};
  std::thread spinner([&] {
    uint64_t x = 1;
    while (!stop.load(std::memory_order_relaxed)) {
      for (int i = 0; i < 4096; ++i) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    }
    volatile uint64_t sink = x;
    (void)sink;
  });
  absl::StatusOr<absl::Time> end = rig.clock().WaitSteps(opt.window_steps);
  w.end = absl::Now();
  stop = true;
  spinner.join();
  if (!end.ok()) return end.status();
  m.windows.push_back(w);
  if (absl::StatusOr<absl::Time> t = rig.clock().WaitSteps(1); !t.ok()) return t.status();
  return rig.CheckRunningAdvanced();
}

absl::StatusOr<Measurement> Measure(Rig& rig, const BenchOptions& opt) {
  Measurement m;
  // Warm-up: every transport once (connections, the target blocks' pages), then a few steps.
  for (const std::string& t : opt.transports) {
    if (absl::StatusOr<Arrival> a = rig.Arrive(t); !a.ok()) return a.status();
  }
  if (absl::StatusOr<absl::Time> t = rig.clock().WaitSteps(3); !t.ok()) return t.status();
  if (absl::Status s = rig.CheckRunningAdvanced(); !s.ok()) return s;
  for (int64_t rep = 0; rep < opt.reps; ++rep) {
    for (const std::string& t : opt.transports) {
      if (absl::Status s = QuietWindow(rig, opt, m); !s.ok()) return s;
      if (absl::Status s = ArrivalWindow(rig, opt, t, false, m); !s.ok()) return s;
    }
  }
  for (const std::string& t : opt.transports) {
    if (absl::Status s = QuietWindow(rig, opt, m); !s.ok()) return s;
    if (absl::Status s = ArrivalWindow(rig, opt, t, true, m); !s.ok()) return s;
  }
  if (absl::Status s = QuietWindow(rig, opt, m); !s.ok()) return s;
  if (absl::Status s = BusyControlWindow(rig, opt, m); !s.ok()) return s;
  if (absl::Status s = QuietWindow(rig, opt, m); !s.ok()) return s;
  if (absl::Status s = rig.clock().status(); !s.ok()) return s;
  m.steps = rig.clock().steps();
  return m;
}

// Step times (ms) of the steps of `kind` windows (of `transport` unless empty): wholly inside a
// quiet window, or overlapping an arrival window at all.
std::vector<double> StepsOf(const Measurement& m, WindowKind kind, const std::string& transport,
                            int64_t* n_windows) {
  std::vector<double> ms;
  *n_windows = 0;
  for (const Window& w : m.windows) {
    if (w.kind != kind || w.transport != transport) continue;
    ++*n_windows;
    for (const Step& s : m.steps) {
      const bool in = kind == WindowKind::kQuiet ? s.start >= w.start && s.end <= w.end
                                                 : s.start < w.end && s.end > w.start;
      if (in) ms.push_back(s.ms());
    }
  }
  return ms;
}

void Print(const BenchOptions& opt, Rig& rig, const Measurement& m) {
  const kv::KvLayout& layout = rig.engine().kv_pool().layout();
  const std::string& path = opt.engine.model_path;
  const double arrival_mb =
      static_cast<double>((opt.arrival_tokens + layout.block_size - 1) / layout.block_size *
                          layout.BlockBytes()) / 1e6;
  std::cout << absl::StrFormat(
      "decode_interference bench: %s (%s kernels, 1 kernel thread%s), %d sequences decoding "
      "(context %d + the tokens made), KV of a %d-token prompt (%.1f MB, %s) arriving for a "
      "9th; %d-step quiet windows\n",
      path.substr(path.find_last_of('/') + 1), kernels::IsaName(opt.engine.isa),
      opt.pin_decode_cpu >= 0
          ? absl::StrFormat(", scheduler thread pinned to CPU %d, the others off it",
                            opt.pin_decode_cpu)
          : ", no pinning",
      opt.n_sequences, opt.context_tokens, opt.arrival_tokens, arrival_mb, layout.DebugString(),
      opt.window_steps);
  int64_t n_windows = 0;
  const std::vector<double> quiet = StepsOf(m, WindowKind::kQuiet, "", &n_windows);
  if (quiet.empty()) {
    std::cout << "no quiet step was measured: raise --window-steps\n";
    return;
  }
  const double quiet_mean = Mean(quiet);
  const double quiet_p99 = Percentile(quiet, 0.99);
  TextTable table({"condition", "windows", "steps", "mean ms", "p50 ms", "p99 ms",
                   "mean / quiet", "p99 / quiet", "goal mean <= 1.10x"});
  table.AddRow({"no KV arriving", absl::StrCat(n_windows), absl::StrCat(quiet.size()),
                absl::StrFormat("%.2f", quiet_mean),
                absl::StrFormat("%.2f", Percentile(quiet, 0.5)),
                absl::StrFormat("%.2f", quiet_p99), "1.00x", "1.00x", "-"});
  for (const std::string& t : opt.transports) {
    for (WindowKind kind : {WindowKind::kSingle, WindowKind::kBackToBack}) {
      const std::vector<double> under = StepsOf(m, kind, t, &n_windows);
      if (under.empty()) continue;
      const double ratio = Mean(under) / quiet_mean;
      const char* what = kind == WindowKind::kSingle ? ": one arrival" : ": back to back";
      table.AddRow({absl::StrCat(t, what),
                    absl::StrCat(n_windows), absl::StrCat(under.size()),
                    absl::StrFormat("%.2f", Mean(under)),
                    absl::StrFormat("%.2f", Percentile(under, 0.5)),
                    absl::StrFormat("%.2f", Percentile(under, 0.99)),
                    absl::StrFormat("%.2fx", ratio),
                    absl::StrFormat("%.2fx", Percentile(under, 0.99) / quiet_p99),
                    ratio <= 1.1 ? "met" : "MISSED"});
    }
  }
  if (const std::vector<double> busy = StepsOf(m, WindowKind::kBusyControl, "", &n_windows);
      !busy.empty()) {
    table.AddRow({"control: 1 busy thread, no KV", absl::StrCat(n_windows),
                  absl::StrCat(busy.size()), absl::StrFormat("%.2f", Mean(busy)),
                  absl::StrFormat("%.2f", Percentile(busy, 0.5)),
                  absl::StrFormat("%.2f", Percentile(busy, 0.99)),
                  absl::StrFormat("%.2fx", Mean(busy) / quiet_mean),
                  absl::StrFormat("%.2fx", Percentile(busy, 0.99) / quiet_p99), "-"});
  }
  std::cout << table.Render();
  std::cout << "step = time between two tokens of a running sequence, seen by a watcher thread "
               "(WaitEvents); under an arrival = the step overlaps it (reservation -> decode's "
               "acknowledgement); quiet = wholly inside a quiet window\n";
  TextTable arrivals({"transport", "arrivals", "mean s", "p50 s", "GB/s (p50 send)"});
  for (const std::string& t : opt.transports) {
    std::vector<double> total, send;
    int64_t bytes = 0;
    for (const Arrival& a : m.arrivals) {
      if (a.transport != t) continue;
      total.push_back(absl::ToDoubleSeconds(a.end - a.start));
      send.push_back(a.send_seconds);
      bytes = a.bytes;
    }
    if (total.empty()) continue;
    arrivals.AddRow({t, absl::StrCat(total.size()), absl::StrFormat("%.4f", Mean(total)),
                     absl::StrFormat("%.4f", Percentile(total, 0.5)),
                     absl::StrFormat("%.2f", bytes / Percentile(send, 0.5) / 1e9)});
  }
  std::cout << "arrivals while decoding (each checked: decode acknowledged, the 9th finished)\n"
            << arrivals.Render();
}

int Run(int argc, char** argv) {
  cli::ArgParser parser;
  parser.AddString("model", "GGUF model (default " PDSERVE_DEFAULT_MODEL
                            ", deploy/fetch-model.sh fetches it; ../shared/models/stories260K.gguf "
                            "for a tiny one)");
  parser.AddString("tokenizer", "tokenizer file for a llama2.c checkpoint");
  parser.AddString("kernels", "auto | scalar | avx2 | avx512 (default auto)");
  parser.AddString("sequences", "running sequences (default 8)");
  parser.AddString("context-tokens", "prompt tokens of each running sequence (default 64)");
  parser.AddString("arrival-tokens",
                   "prompt tokens whose KV arrives (default 2048; at most the context - 1)");
  parser.AddString("transports", "comma-separated: grpc, shm, tcp (default grpc,shm)");
  parser.AddString("reps", "single arrivals per transport (default 10)");
  parser.AddString("window-steps", "decode steps per quiet window and back-to-back window "
                                   "(default 20)");
  parser.AddString("chunk-blocks", "blocks per SendBlocks, as the prefill worker (default 4)");
  parser.AddString("pin-decode-cpu",
                   "pin the scheduler thread to this CPU and every other thread to the other "
                   "CPUs; -1: no pinning (default: the last CPU when there are two or more)");
  parser.AddBool("quick", "seconds, not minutes: 1 rep, 6-step windows, 256-token arrivals");
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
  opt.engine.model_path = parser.GetString("model", PDSERVE_DEFAULT_MODEL);
  opt.engine.tokenizer_path = parser.GetString("tokenizer");
  opt.engine.n_threads = 1;
  opt.engine.kv_pool_in_shared_memory = true;
  absl::StatusOr<kernels::Isa> isa = kernels::ParseIsa(parser.GetString("kernels", "auto"));
  absl::StatusOr<int64_t> sequences = parser.GetInt("sequences", 8);
  absl::StatusOr<int64_t> context_tokens = parser.GetInt("context-tokens", 64);
  absl::StatusOr<int64_t> arrival_tokens = parser.GetInt("arrival-tokens", quick ? 256 : 2048);
  absl::StatusOr<std::vector<std::string>> transports =
      ParseTransportList("transports", parser.GetString("transports", "grpc,shm"));
  absl::StatusOr<int64_t> reps = parser.GetInt("reps", quick ? 1 : 10);
  absl::StatusOr<int64_t> window_steps = parser.GetInt("window-steps", quick ? 6 : 20);
  absl::StatusOr<int64_t> chunk_blocks = parser.GetInt("chunk-blocks", 4);
  const std::vector<int> cpus = AllowedCpus();
  // A decode worker's kernels have CPUs of their own; without pinning, on a machine with few
  // CPUs, the steps would measure how the OS shares them among this process's threads.
  absl::StatusOr<int64_t> pin =
      parser.GetInt("pin-decode-cpu", cpus.size() >= 2 ? cpus.back() : -1);
  for (const absl::Status& s :
       {isa.status(), sequences.status(), context_tokens.status(), arrival_tokens.status(),
        transports.status(), reps.status(), window_steps.status(), chunk_blocks.status(),
        pin.status()}) {
    if (!s.ok()) {
      std::cerr << kProgram << ": " << s.message() << "\n";
      return 2;
    }
  }
  if (*sequences < 1 || *context_tokens < 1 || *arrival_tokens < 1 || *reps < 1 ||
      *window_steps < 2 || *chunk_blocks < 1 || *chunk_blocks > 64) {
    std::cerr << kProgram << ": --sequences, --context-tokens, --arrival-tokens, --reps must be "
                             ">= 1, --window-steps >= 2, --chunk-blocks in [1, 64]\n";
    return 2;
  }
  if (*pin >= 0 && std::find(cpus.begin(), cpus.end(), *pin) == cpus.end()) {
    std::cerr << kProgram << ": --pin-decode-cpu " << *pin << " is not among this process's CPUs ("
              << absl::StrJoin(cpus, ",") << ")\n";
    return 2;
  }
  opt.engine.isa = *isa;
  opt.n_sequences = *sequences;
  opt.context_tokens = *context_tokens;
  opt.arrival_tokens = *arrival_tokens;
  opt.transports = *transports;
  opt.reps = *reps;
  opt.window_steps = *window_steps;
  opt.chunk_blocks = static_cast<int>(*chunk_blocks);
  opt.pin_decode_cpu = static_cast<int>(*pin);

  // The model's context bounds both prompts; the pool holds every sequence whole. The running
  // sequences need a token per step of every window, with room for arrivals that outlast them.
  absl::StatusOr<model::ModelConfig> peek;
  {
    engine::EngineOptions probe = opt.engine;
    probe.kv_pool_tokens = 16;
    probe.kv_pool_in_shared_memory = false;
    absl::StatusOr<std::unique_ptr<engine::Engine>> e = engine::Engine::Load(probe);
    if (!e.ok()) {
      std::cerr << kProgram << ": " << e.status().message()
                << " (deploy/fetch-model.sh fetches the default model; --model "
                   "../shared/models/stories260K.gguf is a tiny one)\n";
      return 1;
    }
    peek = (*e)->config();
  }
  const int64_t context_length = peek->context_length;
  if (opt.arrival_tokens + 1 > context_length) opt.arrival_tokens = context_length - 1;
  const int64_t n_transports = static_cast<int64_t>(opt.transports.size());
  const int64_t steps_needed =
      10 + (opt.reps + 1) * n_transports * 4 * opt.window_steps + 4 * opt.window_steps;
  const int64_t max_tokens = std::min(context_length - opt.context_tokens, 2 * steps_needed);
  if (max_tokens < steps_needed) {
    std::cerr << kProgram << ": the model's context (" << context_length << ") leaves "
              << max_tokens << " tokens per running sequence; about " << steps_needed
              << " are needed: lower --reps, --window-steps or --context-tokens\n";
    return 2;
  }
  const int64_t block_size = opt.engine.kv_block_size;
  const auto round_up = [&](int64_t n) { return (n + block_size - 1) / block_size * block_size; };
  opt.engine.kv_pool_tokens = opt.n_sequences * round_up(opt.context_tokens + max_tokens) +
                              round_up(opt.arrival_tokens + 1);

  Rig rig(opt);
  if (absl::Status s = rig.Start(max_tokens); !s.ok()) {
    std::cerr << kProgram << ": " << s << "\n";
    return 1;
  }
  absl::StatusOr<Measurement> m = Measure(rig, opt);
  if (!m.ok()) {
    std::cerr << kProgram << ": " << m.status() << "\n";
    return 1;
  }
  Print(opt, rig, *m);
  return 0;
}

}  // namespace
}  // namespace pdserve::bench

int main(int argc, char** argv) { return pdserve::bench::Run(argc, argv); }
