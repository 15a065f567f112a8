// engine: throughput of the forward pass on one model. Prefill tokens/s (one sequence's prompt in
// one Forward call) and decode tokens/s (one token per sequence per step, batch 1 and 8) at each
// thread count; the effective weight bandwidth of decode (ModelWeights::weight_bytes per step /
// step time) beside a memcpy bandwidth measured in the same run with the same threads; resident
// memory beside the model file's size. Table on stdout; with --results, the same numbers as CSV
// rows (engine,threads,batch,metric,value) appended for bench/engine_vs_llamacpp.sh.
//
// Every timing is the best of --reps repetitions: on a shared machine the fastest run is the one
// least disturbed by other work.

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_common.h"
#include "cli/arg_parser.h"
#include "common/engine/engine.h"

namespace pdserve::bench {
namespace {

// Repeated until the prompt is long enough, then cut to --prompt-tokens. The llama.cpp baseline
// (bench/llamacpp_baseline.py) builds its prompt from the same text the same way.
constexpr char kPromptText[] =
    "The history of the printing press begins in the fifteenth century, when movable type made "
    "books cheaper to produce and ideas faster to spread across Europe. ";

struct BenchOptions {
  engine::EngineOptions engine;  // n_threads set per run
  std::vector<int64_t> threads;
  std::vector<int64_t> batches;
  int64_t prompt_tokens = 128;
  int64_t decode_steps = 32;
  int64_t reps = 3;
  int64_t memcpy_mib = 256;
  std::string results_path;
};

struct Result {
  int64_t threads = 0;
  std::string what;  // "prefill" | "decode"
  int64_t batch = 1;
  double tokens_per_second = 0;
  double step_seconds = 0;
  double weight_gb_per_second = 0;  // decode only
};

absl::StatusOr<std::vector<int32_t>> MakePrompt(const engine::Engine& eng, int64_t n_tokens) {
  std::string text = kPromptText;
  while (true) {
    absl::StatusOr<std::vector<int32_t>> ids =
        eng.tokenizer().Encode(text, tokenizer::EncodeOptions());
    if (!ids.ok()) return ids.status();
    if (static_cast<int64_t>(ids->size()) >= n_tokens) {
      ids->resize(n_tokens);
      return ids;
    }
    text += kPromptText;
  }
}

// Runs the prompt into `seq` and returns the logits of its last token.
absl::StatusOr<std::vector<float>> Prefill(engine::Engine& eng, const std::vector<int32_t>& prompt,
                                           ScopedSequence& seq) {
  std::vector<engine::BatchToken> batch;
  const int64_t n = static_cast<int64_t>(prompt.size());
  for (int64_t p = 0; p < n; ++p) {
    batch.push_back(engine::BatchToken{prompt[p], p, &seq.table(), p == n - 1});
  }
  absl::StatusOr<std::vector<float>> logits = eng.forward().Forward(batch);
  if (logits.ok()) seq.table().n_tokens = n;
  return logits;
}

// Runs every thread count's prefill and decode measurements on a fresh engine.
// `rss_kib` gets VmRSS at the end, while the engine is still loaded.
absl::StatusOr<std::vector<Result>> RunThreads(const BenchOptions& opt, int n_threads,
                                               size_t* weight_bytes, int64_t* rss_kib) {
  const int64_t max_batch = *std::max_element(opt.batches.begin(), opt.batches.end());
  engine::EngineOptions options = opt.engine;
  options.n_threads = n_threads;
  // Room for the prompt sequence and max_batch decode sequences, each in whole blocks.
  const int64_t seq_tokens = opt.prompt_tokens + opt.decode_steps + options.kv_block_size;
  options.kv_pool_tokens = (max_batch + 1) * seq_tokens;
  absl::StatusOr<std::unique_ptr<engine::Engine>> loaded = engine::Engine::Load(options);
  if (!loaded.ok()) return loaded.status();
  engine::Engine& eng = **loaded;
  *weight_bytes = eng.weights().weight_bytes;
  if (opt.prompt_tokens + opt.decode_steps > eng.config().context_length) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt ", opt.prompt_tokens, " + decode ", opt.decode_steps,
        " tokens exceeds the model's context of ", eng.config().context_length));
  }
  absl::StatusOr<std::vector<int32_t>> prompt = MakePrompt(eng, opt.prompt_tokens);
  if (!prompt.ok()) return prompt.status();
  const int64_t vocab = eng.config().vocab_size;
  std::vector<Result> results;

  // Warm-up: pages the weights in and wakes the threads.
  {
    absl::StatusOr<std::unique_ptr<ScopedSequence>> seq =
        ScopedSequence::Allocate(eng.kv_pool(), opt.prompt_tokens);
    if (!seq.ok()) return seq.status();
    std::vector<int32_t> head(prompt->begin(), prompt->begin() + std::min<int64_t>(8, prompt->size()));
    if (absl::StatusOr<std::vector<float>> l = Prefill(eng, head, **seq); !l.ok()) return l.status();
  }

  // Prefill: the whole prompt in one call. The last repetition's sequence is kept as the
  // context every decode sequence starts from.
  std::unique_ptr<ScopedSequence> prompt_seq;
  int32_t first_token = 0;
  double best_prefill = 1e30;
  for (int64_t rep = 0; rep < opt.reps; ++rep) {
    absl::StatusOr<std::unique_ptr<ScopedSequence>> seq =
        ScopedSequence::Allocate(eng.kv_pool(), opt.prompt_tokens);
    if (!seq.ok()) return seq.status();
    const Clock::time_point start = Clock::now();
    absl::StatusOr<std::vector<float>> logits = Prefill(eng, *prompt, **seq);
    const double seconds = SecondsSince(start);
    if (!logits.ok()) return logits.status();
    best_prefill = std::min(best_prefill, seconds);
    first_token = ArgMax(*logits);
    prompt_seq = *std::move(seq);
  }
  results.push_back(Result{n_threads, "prefill", 1, opt.prompt_tokens / best_prefill,
                           best_prefill, 0});

  // Decode: `batch` sequences, each a copy of the prompt's KV, one token each per step.
  for (int64_t batch_size : opt.batches) {
    std::vector<std::unique_ptr<ScopedSequence>> seqs;
    for (int64_t i = 0; i < batch_size; ++i) {
      absl::StatusOr<std::unique_ptr<ScopedSequence>> seq = ScopedSequence::Allocate(
          eng.kv_pool(), opt.prompt_tokens + opt.decode_steps);
      if (!seq.ok()) return seq.status();
      (*seq)->CopyPrefixFrom(*prompt_seq);
      seqs.push_back(*std::move(seq));
    }
    double best_decode = 1e30;
    for (int64_t rep = 0; rep < opt.reps; ++rep) {
      // Each repetition rewrites positions [prompt, prompt + steps) from the same start.
      std::vector<int32_t> next(batch_size, first_token);
      std::vector<engine::BatchToken> batch(batch_size);
      const Clock::time_point start = Clock::now();
      for (int64_t step = 0; step < opt.decode_steps; ++step) {
        const int64_t position = opt.prompt_tokens + step;
        for (int64_t i = 0; i < batch_size; ++i) {
          batch[i] = engine::BatchToken{next[i], position, &seqs[i]->table(), true};
        }
        absl::StatusOr<std::vector<float>> logits = eng.forward().Forward(batch);
        if (!logits.ok()) return logits.status();
        for (int64_t i = 0; i < batch_size; ++i) {
          next[i] = ArgMax(absl::MakeConstSpan(logits->data() + i * vocab, vocab));
          seqs[i]->table().n_tokens = position + 1;
        }
      }
      best_decode = std::min(best_decode, SecondsSince(start));
    }
    const double step = best_decode / opt.decode_steps;
    results.push_back(Result{n_threads, "decode", batch_size, batch_size / step, step,
                             static_cast<double>(*weight_bytes) / step / 1e9});
  }
  if (absl::StatusOr<int64_t> rss = ProcStatusKib("VmRSS"); rss.ok()) *rss_kib = *rss;
  return results;
}

// Bytes copied per second by n_threads threads each memcpy-ing its slice of two large buffers;
// the best of `reps`.
double MemcpyGbPerSecond(int n_threads, int64_t mib, int64_t reps) {
  const size_t bytes = static_cast<size_t>(mib) << 20;
  std::unique_ptr<char[]> src(new char[bytes]);
  std::unique_ptr<char[]> dst(new char[bytes]);
  std::memset(src.get(), 1, bytes);
  std::memset(dst.get(), 0, bytes);  // fault the pages in before timing
  const size_t slice = (bytes / n_threads + 63) / 64 * 64;
  double best = 1e30;
  for (int64_t rep = 0; rep < std::max<int64_t>(reps, 3); ++rep) {
    const Clock::time_point start = Clock::now();
    std::vector<std::thread> workers;
    for (int t = 1; t < n_threads; ++t) {
      workers.emplace_back([&, t] {
        const size_t begin = std::min(bytes, t * slice);
        std::memcpy(dst.get() + begin, src.get() + begin, std::min(bytes, begin + slice) - begin);
      });
    }
    std::memcpy(dst.get(), src.get(), std::min(bytes, slice));
    for (std::thread& w : workers) w.join();
    best = std::min(best, SecondsSince(start));
  }
  return static_cast<double>(bytes) / best / 1e9;
}

double Mib(double bytes) { return bytes / (1024.0 * 1024.0); }

int Run(int argc, char** argv) {
  cli::ArgParser parser;
  parser.AddString("model", "GGUF model (default " PDSERVE_DEFAULT_MODEL ")");
  parser.AddString("tokenizer", "tokenizer file for a llama2.c checkpoint");
  parser.AddString("kernels", "auto | scalar | avx2 | avx512 (default auto)");
  parser.AddString("threads", "comma-separated thread counts (default 1,2)");
  parser.AddString("batch", "comma-separated decode batch sizes (default 1,8)");
  parser.AddString("prompt-tokens", "prefill length and decode context (default 128)");
  parser.AddString("decode-steps", "decode steps per repetition (default 32)");
  parser.AddString("reps", "repetitions; the best is kept (default 3)");
  parser.AddString("memcpy-mib", "memcpy buffer size in MiB (default 256)");
  parser.AddString("results", "append CSV rows engine,threads,batch,metric,value to this file");
  parser.AddBool("help", "show this help");
  if (absl::Status s = parser.Parse(argc, argv); !s.ok()) {
    std::cerr << "engine: " << s.message() << "\n" << parser.Usage("engine");
    return 2;
  }
  if (parser.GetBool("help")) {
    std::cout << parser.Usage("engine");
    return 0;
  }
  BenchOptions opt;
  opt.engine.model_path = parser.GetString("model", PDSERVE_DEFAULT_MODEL);
  opt.engine.tokenizer_path = parser.GetString("tokenizer");
  absl::StatusOr<kernels::Isa> isa = kernels::ParseIsa(parser.GetString("kernels", "auto"));
  absl::StatusOr<std::vector<int64_t>> threads =
      ParsePositiveList("threads", parser.GetString("threads", "1,2"));
  absl::StatusOr<std::vector<int64_t>> batches =
      ParsePositiveList("batch", parser.GetString("batch", "1,8"));
  absl::StatusOr<int64_t> prompt_tokens = parser.GetInt("prompt-tokens", 128);
  absl::StatusOr<int64_t> decode_steps = parser.GetInt("decode-steps", 32);
  absl::StatusOr<int64_t> reps = parser.GetInt("reps", 3);
  absl::StatusOr<int64_t> memcpy_mib = parser.GetInt("memcpy-mib", 256);
  for (const absl::Status& s : {isa.status(), threads.status(), batches.status(),
                                prompt_tokens.status(), decode_steps.status(), reps.status(),
                                memcpy_mib.status()}) {
    if (!s.ok()) {
      std::cerr << "engine: " << s.message() << "\n";
      return 2;
    }
  }
  if (*prompt_tokens < 1 || *decode_steps < 1 || *reps < 1 || *memcpy_mib < 1) {
    std::cerr << "engine: --prompt-tokens, --decode-steps, --reps and --memcpy-mib must be >= 1\n";
    return 2;
  }
  opt.engine.isa = *isa;
  opt.threads = *threads;
  opt.batches = *batches;
  opt.prompt_tokens = *prompt_tokens;
  opt.decode_steps = *decode_steps;
  opt.reps = *reps;
  opt.memcpy_mib = *memcpy_mib;
  opt.results_path = parser.GetString("results");

  std::vector<Result> results;
  size_t weight_bytes = 0;
  int64_t rss_kib = -1;  // the largest VmRSS with an engine loaded
  for (int64_t t : opt.threads) {
    int64_t rss = -1;
    absl::StatusOr<std::vector<Result>> r =
        RunThreads(opt, static_cast<int>(t), &weight_bytes, &rss);
    rss_kib = std::max(rss_kib, rss);
    if (!r.ok()) {
      std::cerr << "engine: " << t << " threads: " << r.status().message() << "\n";
      return 1;
    }
    results.insert(results.end(), r->begin(), r->end());
  }
  // Memory is read before the memcpy buffers exist, so that VmHWM is the engine's own peak.
  const absl::StatusOr<int64_t> hwm_kib = ProcStatusKib("VmHWM");
  const absl::StatusOr<int64_t> file_bytes = FileBytes(opt.engine.model_path);
  std::vector<double> memcpy_gbs;
  for (int64_t t : opt.threads) {
    memcpy_gbs.push_back(MemcpyGbPerSecond(static_cast<int>(t), opt.memcpy_mib, opt.reps));
  }

  const std::string model_name =
      opt.engine.model_path.substr(opt.engine.model_path.find_last_of('/') + 1);
  std::cout << absl::StrFormat(
      "engine bench: %s, %s kernels, prompt %d tokens, %d decode steps after it, best of %d\n",
      model_name, kernels::IsaName(opt.engine.isa), opt.prompt_tokens, opt.decode_steps,
      opt.reps);
  TextTable table({"threads", "phase", "batch", "tokens/s", "step ms", "weight GB/s",
                   "memcpy GB/s", "of memcpy"});
  for (const Result& r : results) {
    const size_t t_index =
        std::find(opt.threads.begin(), opt.threads.end(), r.threads) - opt.threads.begin();
    const bool decode = r.what == "decode";
    table.AddRow({absl::StrCat(r.threads), r.what, absl::StrCat(r.batch),
                  absl::StrFormat("%.1f", r.tokens_per_second),
                  absl::StrFormat("%.2f", r.step_seconds * 1e3),
                  decode ? absl::StrFormat("%.2f", r.weight_gb_per_second) : "-",
                  absl::StrFormat("%.2f", memcpy_gbs[t_index]),
                  decode ? absl::StrFormat("%.0f%%", 100 * r.weight_gb_per_second /
                                                         memcpy_gbs[t_index])
                         : "-"});
  }
  std::cout << table.Render();
  std::cout << absl::StrFormat(
      "prefill: one call over the prompt; step ms = that call. decode: tokens/s = batch / step; "
      "weight GB/s = %.1f MB of weights (as stored) / step; memcpy GB/s = bytes copied per "
      "second (%d MiB buffers, same threads)\n",
      weight_bytes / 1e6, opt.memcpy_mib);
  std::cout << absl::StrFormat(
      "memory: VmRSS %s MiB (engine loaded, after the runs), VmHWM %s MiB (KV pool for %d "
      "sequences of %d tokens); model file %s MiB\n",
      rss_kib >= 0 ? absl::StrFormat("%.1f", rss_kib / 1024.0) : "?",
      hwm_kib.ok() ? absl::StrFormat("%.1f", *hwm_kib / 1024.0) : "?",
      *std::max_element(opt.batches.begin(), opt.batches.end()) + 1,
      opt.prompt_tokens + opt.decode_steps, file_bytes.ok() ? absl::StrFormat("%.1f", Mib(*file_bytes)) : "?");

  if (!opt.results_path.empty()) {
    std::ofstream out(opt.results_path, std::ios::app);
    for (const Result& r : results) {
      const std::string key = absl::StrCat("pdserve,", r.threads, ",", r.batch, ",");
      if (r.what == "prefill") {
        out << key << "prefill_tok_s," << r.tokens_per_second << "\n";
      } else {
        out << key << "decode_tok_s," << r.tokens_per_second << "\n";
        out << key << "decode_step_ms," << r.step_seconds * 1e3 << "\n";
        out << key << "weight_gb_s," << r.weight_gb_per_second << "\n";
      }
    }
    for (size_t i = 0; i < opt.threads.size(); ++i) {
      out << "pdserve," << opt.threads[i] << ",,memcpy_gb_s," << memcpy_gbs[i] << "\n";
    }
    if (rss_kib >= 0) out << "pdserve,,,vmrss_mib," << rss_kib / 1024.0 << "\n";
    if (hwm_kib.ok()) out << "pdserve,,,vmhwm_mib," << *hwm_kib / 1024.0 << "\n";
    if (file_bytes.ok()) out << "pdserve,,,model_file_mib," << Mib(*file_bytes) << "\n";
    out << "pdserve,,,weight_bytes," << weight_bytes << "\n";
    if (!out) {
      std::cerr << "engine: cannot write " << opt.results_path << "\n";
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace pdserve::bench

int main(int argc, char** argv) { return pdserve::bench::Run(argc, argv); }
