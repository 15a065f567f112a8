// pdserve-logits: the logits at every prompt position, for comparing the engine with an
// independent reference (tests/python). Writes FILE as little-endian binary:
//   "PDLG", int32 n_tokens, int32 vocab, int32 ids[n_tokens], float32 logits[n_tokens][vocab].

#include <cstdio>
#include <fstream>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "cli/arg_parser.h"
#include "cli/engine_flags.h"
#include "common/engine/engine.h"

namespace pdserve::cli {
namespace {

absl::StatusOr<std::vector<int32_t>> ParseIds(const std::string& text) {
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int32_t id = 0;
    if (!absl::SimpleAtoi(part, &id)) {
      return absl::InvalidArgumentError("--ids must be comma-separated integers");
    }
    ids.push_back(id);
  }
  return ids;
}

int Fail(const absl::Status& status) {
  std::cerr << "pdserve-logits: " << status.message() << "\n";
  return 1;
}

int Run(int argc, char** argv) {
  ArgParser parser;
  AddEngineFlags(parser);
  AddPromptFlags(parser);
  parser.AddString("ids", "comma-separated token ids instead of --prompt");
  parser.AddString("out", "output file");
  if (absl::Status s = parser.Parse(argc, argv); !s.ok()) return Fail(s);
  absl::StatusOr<engine::EngineOptions> options = EngineOptionsFromFlags(parser);
  if (!options.ok()) return Fail(options.status());
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine = engine::Engine::Load(*options);
  if (!engine.ok()) return Fail(engine.status());
  absl::StatusOr<std::vector<int32_t>> ids = parser.Has("ids")
                                                 ? ParseIds(parser.GetString("ids"))
                                                 : PromptIdsFromFlags(parser, **engine);
  if (!ids.ok()) return Fail(ids.status());
  const int64_t n = static_cast<int64_t>(ids->size());
  if (n == 0 || n > (*engine)->config().context_length) {
    return Fail(absl::InvalidArgumentError("the prompt must have 1 to context-length tokens"));
  }
  kv::KvBlockPool& pool = (*engine)->kv_pool();
  const int block_size = pool.layout().block_size;
  absl::StatusOr<std::vector<kv::BlockId>> blocks = pool.Allocate((n + block_size - 1) / block_size);
  if (!blocks.ok()) return Fail(blocks.status());
  kv::BlockTable table{*blocks, 0};
  std::vector<engine::BatchToken> batch;
  for (int64_t p = 0; p < n; ++p) batch.push_back({(*ids)[p], p, &table, true});
  absl::StatusOr<std::vector<float>> logits = (*engine)->forward().Forward(batch);
  (void)pool.Free(table.blocks);
  if (!logits.ok()) return Fail(logits.status());

  std::ofstream out(parser.GetString("out"), std::ios::binary);
  if (!out) return Fail(absl::InvalidArgumentError("cannot open --out for writing"));
  const int32_t header[2] = {static_cast<int32_t>(n), (*engine)->config().vocab_size};
  out.write("PDLG", 4);
  out.write(reinterpret_cast<const char*>(header), sizeof(header));
  out.write(reinterpret_cast<const char*>(ids->data()), n * sizeof(int32_t));
  out.write(reinterpret_cast<const char*>(logits->data()), logits->size() * sizeof(float));
  return out.good() ? 0 : Fail(absl::DataLossError("writing --out failed"));
}

}  // namespace
}  // namespace pdserve::cli

int main(int argc, char** argv) { return pdserve::cli::Run(argc, argv); }
