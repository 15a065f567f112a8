#include "cli/engine_flags.h"

#include "absl/strings/str_cat.h"
#include "common/kv/kv_layout.h"
#include "common/tokenizer/chat_prompt.h"

namespace pdserve::cli {

void AddEngineFlags(ArgParser& parser) {
  parser.AddString("model", "model file: GGUF, or a llama2.c .bin checkpoint");
  parser.AddString("tokenizer", "tokenizer file for a llama2.c checkpoint (tok512.bin)");
  parser.AddString("device", "where the model runs: cpu | cuda (default cpu)");
  parser.AddString("dtype",
                   "with --device cuda: auto | f32 | bf16, the type of weight matrices and "
                   "activations (default auto: f32 for f32 checkpoints, else bf16)");
  parser.AddBool("enforce-eager",
                 "with --device cuda: launch every kernel of every step (no CUDA graphs)");
  parser.AddString("threads", "CPU threads (default 1; --device cpu)");
  parser.AddString("kernels", "auto | scalar | avx2 | avx512 (default auto: the best this CPU has)");
  parser.AddString("kv-dtype", "KV cache element type: f32 | f16 | bf16 (default f32)");
  parser.AddString("kv-block-size", "tokens per KV block (default 16)");
}

absl::StatusOr<engine::EngineOptions> EngineOptionsFromFlags(const ArgParser& parser) {
  engine::EngineOptions options;
  options.model_path = parser.GetString("model");
  if (options.model_path.empty()) return absl::InvalidArgumentError("--model is required");
  options.tokenizer_path = parser.GetString("tokenizer");
  absl::StatusOr<engine::Device> device = engine::ParseDevice(parser.GetString("device", "cpu"));
  if (!device.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--device: ", device.status().message()));
  }
  options.device = *device;
  absl::StatusOr<engine::CudaDtype> cuda_dtype =
      engine::ParseCudaDtype(parser.GetString("dtype", "auto"));
  if (!cuda_dtype.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--dtype: ", cuda_dtype.status().message()));
  }
  if (*cuda_dtype == engine::CudaDtype::kBF16 && options.device == engine::Device::kCpu) {
    return absl::InvalidArgumentError(
        "--dtype bf16 needs --device cuda (the CPU backend computes in f32)");
  }
  options.cuda.dtype = *cuda_dtype;
  options.cuda.graphs = !parser.GetBool("enforce-eager");
  absl::StatusOr<int64_t> threads = parser.GetInt("threads", 1);
  if (!threads.ok()) return threads.status();
  if (*threads < 1 || *threads > 1024) {
    return absl::InvalidArgumentError(absl::StrCat("--threads must be in [1, 1024], got ", *threads));
  }
  options.n_threads = static_cast<int>(*threads);
  absl::StatusOr<kernels::Isa> isa = kernels::ParseIsa(parser.GetString("kernels", "auto"));
  if (!isa.ok()) return isa.status();
  options.isa = *isa;
  absl::StatusOr<kernels::KvDtype> dtype = kv::ParseKvDtype(parser.GetString("kv-dtype", "f32"));
  if (!dtype.ok()) return dtype.status();
  options.kv_dtype = *dtype;
  absl::StatusOr<int64_t> block_size = parser.GetInt("kv-block-size", kv::kDefaultBlockSize);
  if (!block_size.ok()) return block_size.status();
  if (*block_size < 1 || *block_size > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kv-block-size must be in [1, 4096], got ", *block_size));
  }
  options.kv_block_size = static_cast<int>(*block_size);
  return options;
}

void AddPromptFlags(ArgParser& parser) {
  parser.AddString("prompt", "the prompt text");
  parser.AddBool("chat", "render --prompt as the user's message in the model's chat template");
  parser.AddString("system", "with --chat: the system message (default: the template's own)");
}

absl::StatusOr<std::vector<int32_t>> PromptIdsFromFlags(const ArgParser& parser,
                                                        const engine::Engine& engine) {
  if (!parser.Has("prompt")) return absl::InvalidArgumentError("--prompt is required");
  const std::string prompt = parser.GetString("prompt");
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  tokenizer::EncodeOptions options;
  if (!parser.GetBool("chat")) {
    if (parser.Has("system")) return absl::InvalidArgumentError("--system needs --chat");
    return engine.tokenizer().Encode(prompt, options);
  }
  if (!engine.chat_template().ok()) return engine.chat_template().status();
  std::vector<tokenizer::ChatMessage> messages;
  if (parser.Has("system")) messages.push_back({"system", parser.GetString("system")});
  messages.push_back({"user", prompt});
  return tokenizer::EncodeChatPrompt(engine.tokenizer(), *engine.chat_template(), messages);
}

}  // namespace pdserve::cli
