// kv_cache_speedup: the classic experiment of generating N tokens with and without the KV cache.
// Without the cache every step recomputes the whole prefix, so its total time grows with N²;
// with the cache each step only runs the new token, so its step time stays nearly flat and its
// total grows with N. Prints a table of total times per N, the speedup, the growth of the cached
// decode-step time, writes a CSV and (through bench/plot_kv_cache_speedup.py) a PNG plot.
//
// Both modes run Generate() exactly as pdserve-generate does: greedy, ignore_eos, one sequence.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/bench_common.h"
#include "cli/arg_parser.h"
#include "common/engine/engine.h"
#include "common/engine/generator.h"

namespace pdserve::bench {
namespace {

constexpr char kDefaultPrompt[] = "The history of the printing press begins";
constexpr char kDefaultNewTokens[] = "10,50,100,200,300";
constexpr char kLongNewTokens[] = "500,1000";
// The step-time growth goal and the published GPT-2 speedup the issue asks us to beat.
constexpr double kStepGrowthGoal = 1.25;
constexpr double kSpeedupGoal = 4.4;

struct Timing {
  double total_seconds = 0;
  double ttft_seconds = 0;
  double tpot_seconds = 0;  // mean decode step after the first token
};

struct Row {
  int64_t n_new = 0;
  Timing with_cache;
  Timing without_cache;
  bool has_without = false;
};

absl::StatusOr<Timing> TimeOneGeneration(engine::Engine& engine,
                                         const std::vector<int32_t>& prompt, int64_t n_new,
                                         bool use_kv_cache) {
  engine::GenerationRequest request;
  request.prompt_ids = prompt;
  request.max_new_tokens = n_new;
  request.ignore_eos = true;
  request.use_kv_cache = use_kv_cache;
  absl::StatusOr<engine::GenerationResult> result = engine::Generate(engine, request, nullptr);
  if (!result.ok()) return result.status();
  if (static_cast<int64_t>(result->output_ids.size()) != n_new) {
    return absl::InternalError(absl::StrCat("asked for ", n_new, " tokens, generated ",
                                            result->output_ids.size()));
  }
  return Timing{result->total_seconds, result->ttft_seconds, result->tpot_seconds};
}

// The fastest of `reps` runs (by total time): on a shared machine, the least disturbed one.
absl::StatusOr<Timing> TimeGeneration(engine::Engine& engine, const std::vector<int32_t>& prompt,
                                      int64_t n_new, bool use_kv_cache, int64_t reps) {
  Timing best;
  best.total_seconds = 1e30;
  for (int64_t rep = 0; rep < reps; ++rep) {
    absl::StatusOr<Timing> t = TimeOneGeneration(engine, prompt, n_new, use_kv_cache);
    if (!t.ok()) return t.status();
    if (t->total_seconds < best.total_seconds) best = *t;
  }
  return best;
}

std::string Seconds(double s) { return absl::StrFormat("%.3f", s); }
std::string Millis(double s) { return absl::StrFormat("%.2f", s * 1e3); }

absl::Status WriteCsv(const std::string& path, const std::vector<Row>& rows) {
  std::ofstream out(path);
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  out << "n_new,cache_total_s,cache_ttft_s,cache_tpot_s,"
         "nocache_total_s,nocache_ttft_s,nocache_tpot_s\n";
  for (const Row& r : rows) {
    out << r.n_new << "," << r.with_cache.total_seconds << "," << r.with_cache.ttft_seconds << ","
        << r.with_cache.tpot_seconds;
    if (r.has_without) {
      out << "," << r.without_cache.total_seconds << "," << r.without_cache.ttft_seconds << ","
          << r.without_cache.tpot_seconds;
    } else {
      out << ",,,";
    }
    out << "\n";
  }
  return out ? absl::OkStatus() : absl::UnavailableError(absl::StrCat("cannot write ", path));
}

int Run(int argc, char** argv) {
  cli::ArgParser parser;
  parser.AddString("model", "GGUF model (default " PDSERVE_DEFAULT_MODEL ")");
  parser.AddString("tokenizer", "tokenizer file for a llama2.c checkpoint");
  parser.AddString("threads", "CPU threads (default 2)");
  parser.AddString("kernels", "auto | scalar | avx2 | avx512 (default auto)");
  parser.AddString("prompt", absl::StrCat("prompt text (default \"", kDefaultPrompt, "\")"));
  parser.AddString("new-tokens",
                   absl::StrCat("comma-separated N to generate (default ", kDefaultNewTokens, ")"));
  parser.AddBool("long", absl::StrCat("also ", kLongNewTokens, " (slow without the cache)"));
  parser.AddBool("cache-only", "skip the runs without the KV cache");
  parser.AddString("reps", "runs per N with the cache; the fastest is kept (default 3)");
  parser.AddString("reps-without", "runs per N without the cache (default 1: they are slow)");
  parser.AddString("csv", "CSV output (default bench/out/kv_cache_speedup.csv)");
  parser.AddString("plot", "PNG output (default: the CSV path with .png)");
  parser.AddBool("no-plot", "do not run the plot script");
  parser.AddBool("help", "show this help");
  if (absl::Status s = parser.Parse(argc, argv); !s.ok()) {
    std::cerr << "kv_cache_speedup: " << s.message() << "\n" << parser.Usage("kv_cache_speedup");
    return 2;
  }
  if (parser.GetBool("help")) {
    std::cout << parser.Usage("kv_cache_speedup");
    return 0;
  }

  engine::EngineOptions options;
  options.model_path = parser.GetString("model", PDSERVE_DEFAULT_MODEL);
  options.tokenizer_path = parser.GetString("tokenizer");
  absl::StatusOr<int64_t> threads = parser.GetInt("threads", 2);
  absl::StatusOr<kernels::Isa> isa = kernels::ParseIsa(parser.GetString("kernels", "auto"));
  absl::StatusOr<std::vector<int64_t>> n_list =
      ParsePositiveList("new-tokens", parser.GetString("new-tokens", kDefaultNewTokens));
  absl::StatusOr<int64_t> reps = parser.GetInt("reps", 3);
  absl::StatusOr<int64_t> reps_without = parser.GetInt("reps-without", 1);
  for (const absl::Status& s : {threads.status(), isa.status(), n_list.status(), reps.status(),
                                reps_without.status()}) {
    if (!s.ok()) {
      std::cerr << "kv_cache_speedup: " << s.message() << "\n";
      return 2;
    }
  }
  if (*threads < 1 || *threads > 1024) {
    std::cerr << "kv_cache_speedup: --threads must be in [1, 1024]\n";
    return 2;
  }
  if (*reps < 1 || *reps_without < 1) {
    std::cerr << "kv_cache_speedup: --reps and --reps-without must be >= 1\n";
    return 2;
  }
  if (parser.GetBool("long")) {
    const absl::StatusOr<std::vector<int64_t>> long_list =
        ParsePositiveList("long", kLongNewTokens);
    n_list->insert(n_list->end(), long_list->begin(), long_list->end());
  }
  std::sort(n_list->begin(), n_list->end());
  n_list->erase(std::unique(n_list->begin(), n_list->end()), n_list->end());
  options.n_threads = static_cast<int>(*threads);
  options.isa = *isa;
  const bool run_without = !parser.GetBool("cache-only");
  const std::string csv_path = parser.GetString("csv", PDSERVE_BENCH_OUT "/kv_cache_speedup.csv");
  std::string plot_path = parser.GetString("plot");
  if (plot_path.empty()) {
    plot_path = csv_path.size() > 4 && csv_path.substr(csv_path.size() - 4) == ".csv"
                    ? csv_path.substr(0, csv_path.size() - 4) + ".png"
                    : csv_path + ".png";
  }

  absl::StatusOr<std::unique_ptr<engine::Engine>> loaded = engine::Engine::Load(options);
  if (!loaded.ok()) {
    std::cerr << "kv_cache_speedup: " << loaded.status().message() << "\n";
    return 1;
  }
  engine::Engine& eng = **loaded;
  absl::StatusOr<std::vector<int32_t>> prompt =
      eng.tokenizer().Encode(parser.GetString("prompt", kDefaultPrompt), tokenizer::EncodeOptions());
  if (!prompt.ok()) {
    std::cerr << "kv_cache_speedup: " << prompt.status().message() << "\n";
    return 1;
  }
  const int64_t n_prompt = static_cast<int64_t>(prompt->size());
  if (n_prompt + n_list->back() > eng.config().context_length) {
    std::cerr << "kv_cache_speedup: prompt " << n_prompt << " + " << n_list->back()
              << " new tokens exceeds the context of " << eng.config().context_length << "\n";
    return 2;
  }

  const std::string title = absl::StrFormat(
      "kv_cache_speedup: %s, %d threads, %s kernels, prompt %d tokens, greedy, ignore_eos, "
      "best of %d with / %d without",
      options.model_path.substr(options.model_path.find_last_of('/') + 1), options.n_threads,
      kernels::IsaName(options.isa), n_prompt, *reps, *reps_without);
  std::cerr << title << "\nN = " << absl::StrJoin(*n_list, ",") << "\n";

  // Warm-up: page in the weights and let the threads spin up before anything is timed.
  if (absl::StatusOr<Timing> w = TimeGeneration(eng, *prompt, std::min<int64_t>(8, n_list->back()),
                                                true, 1);
      !w.ok()) {
    std::cerr << "kv_cache_speedup: warm-up: " << w.status().message() << "\n";
    return 1;
  }

  // For each N, with and then without the cache, back to back: on a shared machine the two
  // runs of a pair see the same load, so their ratio holds even when absolute times drift.
  // Shortest first, so an interrupted run still has the short pairs.
  std::vector<Row> rows;
  for (int64_t n : *n_list) {
    Row row{n, {}, {}, false};
    absl::StatusOr<Timing> t = TimeGeneration(eng, *prompt, n, true, *reps);
    if (!t.ok()) {
      std::cerr << "kv_cache_speedup: N=" << n << " with cache: " << t.status().message() << "\n";
      return 1;
    }
    row.with_cache = *t;
    std::cerr << absl::StrFormat("  N=%-5d with cache %9.3f s", n, t->total_seconds);
    if (run_without) {
      t = TimeGeneration(eng, *prompt, n, false, *reps_without);
      if (!t.ok()) {
        std::cerr << "\nkv_cache_speedup: N=" << n << " without cache: " << t.status().message()
                  << "\n";
        return 1;
      }
      row.without_cache = *t;
      row.has_without = true;
      std::cerr << absl::StrFormat(", without %9.3f s", t->total_seconds);
    }
    std::cerr << "\n";
    rows.push_back(row);
  }

  TextTable table({"new tokens", "with KV cache (s)", "without (s)", "speedup",
                   "step with (ms)", "step without (ms)"});
  for (const Row& r : rows) {
    table.AddRow({absl::StrCat(r.n_new), Seconds(r.with_cache.total_seconds),
                  r.has_without ? Seconds(r.without_cache.total_seconds) : "-",
                  r.has_without ? absl::StrFormat("%.2fx", r.without_cache.total_seconds /
                                                               r.with_cache.total_seconds)
                                : "-",
                  r.n_new > 1 ? Millis(r.with_cache.tpot_seconds) : "-",
                  r.has_without && r.n_new > 1 ? Millis(r.without_cache.tpot_seconds) : "-"});
  }
  std::cout << title << "\n" << table.Render();
  std::cout << "step = mean decode-step time after the first token (TPOT); total includes the "
               "prompt's prefill\n";

  // Growth of the cached step time: at 300 over at 50 when both ran, else largest over smallest.
  auto find = [&rows](int64_t n) -> const Row* {
    for (const Row& r : rows) {
      if (r.n_new == n) return &r;
    }
    return nullptr;
  };
  const Row* long_row = find(300) != nullptr ? find(300) : &rows.back();
  const Row* short_row = find(50) != nullptr ? find(50) : &rows.front();
  if (long_row->n_new > short_row->n_new && short_row->n_new > 1 &&
      short_row->with_cache.tpot_seconds > 0) {
    const double growth = long_row->with_cache.tpot_seconds / short_row->with_cache.tpot_seconds;
    std::cout << absl::StrFormat(
        "cached decode-step time at N=%d / at N=%d: %.3fx (goal <= %.2fx: %s)\n", long_row->n_new,
        short_row->n_new, growth, kStepGrowthGoal, growth <= kStepGrowthGoal ? "met" : "NOT met");
  }
  if (rows.back().has_without) {
    const double speedup =
        rows.back().without_cache.total_seconds / rows.back().with_cache.total_seconds;
    std::cout << absl::StrFormat(
        "speedup with the KV cache at N=%d: %.2fx (goal >= %.1fx, Hugging Face GPT-2 on CPU at "
        "310 steps: %s)\n",
        rows.back().n_new, speedup, kSpeedupGoal, speedup >= kSpeedupGoal ? "met" : "NOT met");
  }
  std::cout.flush();

  std::error_code mkdir_error;
  std::filesystem::create_directories(std::filesystem::path(csv_path).parent_path(), mkdir_error);
  if (absl::Status s = WriteCsv(csv_path, rows); !s.ok()) {
    std::cerr << "kv_cache_speedup: " << s.message() << "\n";
    return 1;
  }
  std::cout << "csv: " << csv_path << "\n";
  if (!parser.GetBool("no-plot")) {
    // The table is already out: a missing matplotlib or display only costs the picture.
    const std::string command = absl::StrCat("python3 '", PDSERVE_BENCH_DIR,
                                             "/plot_kv_cache_speedup.py' '", csv_path, "' '",
                                             plot_path, "' '", title, "'");
    std::cout.flush();
    if (std::system(command.c_str()) == 0) {
      std::cout << "plot: " << plot_path << "\n";
    } else {
      std::cout << "plot: not written (see the message above; the table stands)\n";
    }
  }
  return 0;
}

}  // namespace
}  // namespace pdserve::bench

int main(int argc, char** argv) { return pdserve::bench::Run(argc, argv); }
