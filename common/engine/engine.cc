#include "common/engine/engine.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/engine/cpu_llama_forward.h"
#include "common/gguf/gguf_file.h"
#include "common/kv/kv_layout.h"
#include "common/kv_transfer/shm/shm_kv_storage.h"
#include "common/model/gguf_llama_loader.h"
#include "common/model/llama2c_loader.h"
#include "common/model/load_model.h"

namespace pdserve::engine {
namespace {

// A pool whose bytes are a new shared-memory object, named in `shm_name`. Bad layouts and counts
// are the pool's InvalidArgument, checked before any memory is taken.
absl::StatusOr<std::unique_ptr<kv::KvBlockPool>> CreateSharedMemoryPool(const kv::KvLayout& layout,
                                                                        int64_t n_blocks,
                                                                        std::string& shm_name) {
  if (n_blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shared-memory KV pool: ", n_blocks, " blocks requested, it needs at least one"));
  }
  size_t bytes = 0;
  if (!layout.Validate().ok() ||
      __builtin_mul_overflow(static_cast<size_t>(n_blocks), layout.BlockBytes(), &bytes)) {
    return kv::KvBlockPool::Create(layout, n_blocks, nullptr);  // its error names the fault
  }
  absl::StatusOr<std::unique_ptr<kv_transfer::SharedMemoryKvStorage>> storage =
      kv_transfer::SharedMemoryKvStorage::Create(bytes);
  if (!storage.ok()) return storage.status();
  shm_name = (*storage)->region_name();
  return kv::KvBlockPool::Create(layout, n_blocks, *std::move(storage));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Load(const EngineOptions& options) {
  if (options.n_threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("threads must be at least 1, got ", options.n_threads));
  }
  if (options.kv_block_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV block size must be at least 1, got ", options.kv_block_size));
  }
  if (options.kv_pool_in_shared_memory && options.device != Device::kCpu) {
    return absl::InvalidArgumentError(
        "kv_pool_in_shared_memory: a shared-memory KV pool is host-only; with --device cuda "
        "the pool lives in GPU memory");
  }
  std::unique_ptr<Engine> engine(new Engine());
  engine->options_ = options;

  absl::StatusOr<model::ModelFormat> format = model::SniffModelFormat(options.model_path);
  if (!format.ok()) return format.status();
  if (*format == model::ModelFormat::kGguf) {
    // One mapping of the file serves the weights and the tokenizer.
    absl::StatusOr<std::unique_ptr<gguf::GgufFile>> opened = gguf::GgufFile::Open(options.model_path);
    if (!opened.ok()) return opened.status();
    std::shared_ptr<const gguf::GgufFile> file = *std::move(opened);
    absl::StatusOr<model::ModelWeights> weights = model::LoadGgufLlama(file);
    if (!weights.ok()) return weights.status();
    engine->weights_ = *std::move(weights);
    absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok = tokenizer::LoadGgufTokenizer(*file);
    if (!tok.ok()) return tok.status();
    engine->tokenizer_ = *std::move(tok);
    absl::StatusOr<std::string> source = file->GetString("tokenizer.chat_template");
    engine->chat_template_ =
        source.ok() ? tokenizer::ChatTemplate::FromSource(*source)
                    : absl::StatusOr<tokenizer::ChatTemplate>(absl::FailedPreconditionError(
                          absl::StrCat(options.model_path, " has no chat template")));
  } else {
    absl::StatusOr<model::ModelWeights> weights = model::LoadLlama2c(options.model_path);
    if (!weights.ok()) return weights.status();
    engine->weights_ = *std::move(weights);
    if (options.tokenizer_path.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(options.model_path,
                       " is a llama2.c checkpoint: it needs a tokenizer file (--tokenizer)"));
    }
    absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok =
        tokenizer::LoadLlama2cTokenizer(options.tokenizer_path, engine->weights_.config.vocab_size);
    if (!tok.ok()) return tok.status();
    engine->tokenizer_ = *std::move(tok);
    engine->chat_template_ = absl::FailedPreconditionError(
        "llama2.c checkpoints have no chat template: use a plain prompt");
  }
  const model::ModelConfig& config = engine->weights_.config;
  if (engine->tokenizer_->vocab_size() != config.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer has ", engine->tokenizer_->vocab_size(),
                     " tokens but the model's vocabulary has ", config.vocab_size));
  }

  const kv::KvLayout layout =
      KvLayoutForModel(config, options.kv_block_size, options.kv_dtype);
  const int64_t pool_tokens =
      options.kv_pool_tokens > 0 ? options.kv_pool_tokens : config.context_length;
  const int64_t n_blocks = (pool_tokens + layout.block_size - 1) / layout.block_size;
  if (options.device == Device::kCuda) {
    absl::StatusOr<DeviceBackend> backend = CreateCudaBackend(engine->weights_, layout, n_blocks,
                                                             options.cuda);
    if (!backend.ok()) return backend.status();
    engine->kv_pool_ = std::move(backend->pool);
    engine->forward_ = std::move(backend->forward);
    engine->device_report_ = std::move(backend->description);
    return engine;
  }
  absl::StatusOr<std::unique_ptr<kv::KvBlockPool>> pool =
      options.kv_pool_in_shared_memory
          ? CreateSharedMemoryPool(layout, n_blocks, engine->kv_pool_shm_name_)
          : kv::KvBlockPool::Create(layout, n_blocks);
  if (!pool.ok()) return pool.status();
  engine->kv_pool_ = *std::move(pool);
  engine->threads_ = std::make_unique<kernels::ThreadPool>(options.n_threads);
  engine->forward_ = std::make_unique<CpuLlamaForward>(engine->weights_, *engine->kv_pool_,
                                                       *engine->threads_, options.isa);
  engine->device_report_ = absl::StrCat("device: cpu (", kernels::IsaName(options.isa),
                                        " kernels, ", options.n_threads, " threads)");
  return engine;
}

std::string Engine::KvMemoryReport() const {
  const kv::KvLayout& layout = kv_pool_->layout();
  const double total_mib =
      static_cast<double>(layout.BlockBytes()) * kv_pool_->n_total() / (1024.0 * 1024.0);
  return absl::StrFormat(
      "KV cache: %d bytes/token = 2 x %d layers x %d kv_heads x %d head_dim x %d bytes (%s); "
      "%d blocks x %d tokens = %.1f MiB",
      layout.BytesPerToken(), layout.n_layers, layout.n_kv_heads, layout.head_dim,
      layout.ElementBytes(), kv::KvDtypeName(layout.dtype), kv_pool_->n_total(),
      layout.block_size, total_mib);
}

}  // namespace pdserve::engine
