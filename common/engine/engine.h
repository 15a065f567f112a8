#pragma once
// A loaded model ready to run: weights, tokenizer, the paged KV block pool, the CPU threads and
// the forward pass. What a CLI or a worker process holds one of.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/engine/backend.h"
#include "common/engine/forward_pass.h"
#include "common/kv/kv_block_pool.h"
#include "common/model/model_weights.h"
#include "common/tokenizer/chat_template.h"
#include "common/tokenizer/tokenizer.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/thread_pool.h"

namespace pdserve::engine {

struct EngineOptions {
  std::string model_path;      // GGUF or llama2.c .bin
  std::string tokenizer_path;  // llama2.c tokenizer (tok512.bin); unused for GGUF
  Device device = Device::kCpu;
  CudaBackendOptions cuda;  // --device cuda only
  int n_threads = 1;  // CPU backend only
  kernels::Isa isa = kernels::DetectBestIsa();
  int kv_block_size = kv::kDefaultBlockSize;
  kernels::KvDtype kv_dtype = kernels::KvDtype::kF32;
  // Tokens the KV pool holds; 0 means one full context.
  int64_t kv_pool_tokens = 0;
  // CPU backend only: put the pool's bytes in a new POSIX shared-memory object (named by
  // Engine::kv_pool_shm_name()) that a same-host prefill worker can map and write blocks into.
  // With Device::kCuda, Load fails with InvalidArgument.
  bool kv_pool_in_shared_memory = false;
};

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Load(const EngineOptions& options);

  const model::ModelConfig& config() const { return weights_.config; }
  const model::ModelWeights& weights() const { return weights_; }
  const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }
  // The model's chat template, or the error that explains why it has none we support.
  const absl::StatusOr<tokenizer::ChatTemplate>& chat_template() const { return chat_template_; }
  // The pool's bytes live where the model runs (pool.on_host() is false on CUDA).
  kv::KvBlockPool& kv_pool() { return *kv_pool_; }
  // The shared-memory object holding the pool's bytes (kv_pool_in_shared_memory), or empty.
  // The object lives, and the name stays linked, as long as this engine.
  const std::string& kv_pool_shm_name() const { return kv_pool_shm_name_; }
  ForwardPass& forward() { return *forward_; }
  const EngineOptions& options() const { return options_; }

  // One line on the KV cache's memory: bytes per token (2 × layers × kv_heads × head_dim ×
  // bytes per element), blocks and total.
  std::string KvMemoryReport() const;
  // One line on where the model runs ("device: cpu (avx2 kernels, 2 threads)" or the CUDA
  // device and the weights' device memory).
  const std::string& DeviceReport() const { return device_report_; }

 private:
  Engine() = default;

  EngineOptions options_;
  model::ModelWeights weights_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  absl::StatusOr<tokenizer::ChatTemplate> chat_template_ = absl::UnknownError("not loaded");
  std::unique_ptr<kv::KvBlockPool> kv_pool_;
  std::string kv_pool_shm_name_;
  std::unique_ptr<kernels::ThreadPool> threads_;  // CPU backend only
  std::unique_ptr<ForwardPass> forward_;          // reads kv_pool_; declared after it
  std::string device_report_;
};

}  // namespace pdserve::engine
