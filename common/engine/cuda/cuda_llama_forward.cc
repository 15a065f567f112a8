#include "common/engine/cuda/cuda_llama_forward.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/engine/cuda/cuda_status.h"
#include "kernels/cuda/dequantize.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/kv_blocks.h"
#include "kernels/cuda/paged_attention.h"

namespace pdserve::engine::cuda {
namespace gpu = kernels::gpu;
using gpu::ActDtype;

// Where each token of a batch goes on the device, and the integer arrays the kernels read,
// packed into one host buffer that is copied up with one call.
struct CudaLlamaForward::Plan {
  int64_t n = 0;       // tokens; row r of every activation is the r-th token in plan order
  int n_decode = 0;    // rows [0, n_decode): one token each of a distinct sequence
  int64_t decode_max_ctx = 0;
  int64_t decode_table_stride = 0;
  gpu::PagedDecodePlan decode_plan;
  struct PrefillRun {
    int64_t first_row = 0;
    int n_q = 0;
    int64_t q_start = 0;  // position of the run's first token
    size_t table = 0;     // byte offset of its block table (int32) in the metadata
  };
  std::vector<PrefillRun> prefill_runs;
  int n_want = 0;

  // Byte offsets into `host` (and the device copy), each 16-byte aligned.
  size_t tokens = 0;         // (n) int32
  size_t positions = 0;      // (n) int32
  size_t slots = 0;          // (n) int64: block * block_size + offset in block
  size_t decode_tables = 0;  // (n_decode, decode_table_stride) int32, padded with -1
  size_t ctx_lens = 0;       // (n_decode) int32
  size_t wanted_rows = 0;    // (n_want) int32: rows of the tokens with logits, in batch order
  std::vector<uint8_t> host;

  template <typename T>
  size_t Append(const std::vector<T>& values) {
    const size_t offset = (host.size() + 15) / 16 * 16;
    host.resize(offset + values.size() * sizeof(T));
    if (!values.empty()) {
      std::memcpy(host.data() + offset, values.data(), values.size() * sizeof(T));
    }
    return offset;
  }
};

namespace {

// cuBLAS's recommendation for Hopper is 32 MiB.
constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;

gpu::PagedKvView LayerView(kv::KvBlockPool& pool, int layer) {
  const kv::KvLayout& layout = pool.layout();
  gpu::PagedKvView view;
  view.pool = pool.storage_data();
  view.n_blocks = pool.n_total();
  view.block_bytes = layout.BlockBytes();
  view.k_offset_bytes = layout.KSlabOffset(layer);
  view.v_offset_bytes = layout.VSlabOffset(layer);
  view.block_size = layout.block_size;
  view.n_kv_heads = layout.n_kv_heads;
  view.head_dim = layout.head_dim;
  view.dtype = layout.dtype;
  return view;
}

absl::Status CublasStatus(cublasStatus_t status, const std::string& what) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": cuBLAS status ", static_cast<int>(status)));
}

}  // namespace

CudaLlamaForward::CudaLlamaForward(const model::ModelConfig& config, kv::KvBlockPool& pool)
    : config_(config), pool_(pool) {}

CudaLlamaForward::~CudaLlamaForward() {
  DropGraphs();
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::StatusOr<std::unique_ptr<CudaLlamaForward>> CudaLlamaForward::Create(
    const model::ModelWeights& weights, kv::KvBlockPool& pool, ActDtype dtype, bool cuda_graphs) {
  if (pool.on_host()) {
    return absl::FailedPreconditionError(
        "the CUDA forward pass needs a KV block pool in device memory");
  }
  if (absl::Status s = CheckLayoutFitsModel(weights.config, pool.layout()); !s.ok()) return s;
  std::unique_ptr<CudaLlamaForward> forward(new CudaLlamaForward(weights.config, pool));
  forward->use_graphs_ = cuda_graphs;
  absl::StatusOr<CudaModelWeights> uploaded = UploadWeights(weights, dtype);
  if (!uploaded.ok()) return uploaded.status();
  forward->weights_ = *std::move(uploaded);
  PDSERVE_RETURN_IF_CUDA_ERROR(
      cudaStreamCreateWithFlags(&forward->stream_, cudaStreamNonBlocking), "creating a stream");
  if (absl::Status s = CublasStatus(cublasCreate(&forward->cublas_), "creating a cuBLAS handle");
      !s.ok()) {
    forward->cublas_ = nullptr;
    return s;
  }
  // cuBLAS gets its workspace from us, bound to our stream, so that capturing a decode step
  // into a graph never asks it to allocate.
  absl::StatusOr<DeviceBuffer> workspace = DeviceBuffer::Allocate(kCublasWorkspaceBytes,
                                                                  "the cuBLAS workspace");
  if (!workspace.ok()) return workspace.status();
  forward->cublas_workspace_ = *std::move(workspace);
  if (absl::Status s = CublasStatus(cublasSetStream(forward->cublas_, forward->stream_),
                                    "binding cuBLAS to the stream");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CublasStatus(
          cublasSetWorkspace(forward->cublas_, forward->cublas_workspace_.get(),
                             forward->cublas_workspace_.size()),
          "giving cuBLAS its workspace");
      !s.ok()) {
    return s;
  }
  forward->n_multiprocessors_ = gpu::CurrentDeviceMultiprocessors();
  return forward;
}

absl::Status CudaLlamaForward::ReserveBatchBuffers(int64_t n, size_t attention_workspace_bytes,
                                                  size_t metadata_bytes) {
  const model::ModelConfig& c = config_;
  const size_t rows = static_cast<size_t>(n);
  const size_t es = weights_.matrix_dtype == ActDtype::kF32 ? 4 : 2;
  const size_t qkv_dim = static_cast<size_t>(c.n_heads + 2 * c.n_kv_heads) * c.head_dim;
  const size_t q_dim = static_cast<size_t>(c.n_heads) * c.head_dim;
  const struct {
    DeviceBuffer* buffer;
    size_t bytes;
    const char* what;
  } wants[] = {
      {&x_, rows * c.dim * 4, "the residual stream"},
      {&h_, rows * c.dim * es, "normed activations"},
      {&qkv_, rows * qkv_dim * es, "q|k|v activations"},
      {&attn_, rows * q_dim * es, "attention outputs"},
      {&proj_, rows * c.dim * es, "projection outputs"},
      {&gate_up_, rows * 2 * c.hidden_dim * es, "gate|up activations"},
      {&act_, rows * c.hidden_dim * es, "feed-forward activations"},
      {&wanted_, rows * c.dim * es, "final-normed rows"},
      {&logits_, rows * c.vocab_size * 4, "logits"},
      {&attention_workspace_, attention_workspace_bytes, "the attention workspace"},
      {&metadata_, metadata_bytes, "batch metadata"},
  };
  const void* old_workspace = attention_workspace_.get();
  bool moved = false;
  for (const auto& want : wants) {
    const void* old = want.buffer->get();
    // Room for twice the batch when growing: fewer reallocations, each of which drops graphs.
    const size_t bytes = want.buffer->size() >= want.bytes ? want.bytes : 2 * want.bytes;
    if (absl::Status s = want.buffer->Reserve(bytes, want.what); !s.ok()) return s;
    moved = moved || want.buffer->get() != old;
  }
  if (moved) DropGraphs();
  // The decode attention's workspace must start zeroed (its split counters); calls keep it so.
  if (attention_workspace_.get() != old_workspace) {
    PDSERVE_RETURN_IF_CUDA_ERROR(
        cudaMemsetAsync(attention_workspace_.get(), 0, attention_workspace_.size(), stream_),
        "clearing the attention workspace");
  }
  return absl::OkStatus();
}

CudaLlamaForward::Plan CudaLlamaForward::PlanBatch(absl::Span<const BatchToken> batch) const {
  const int block_size = pool_.layout().block_size;

  // Group the tokens by sequence, sequences in order of first appearance; a sequence's tokens
  // are already in position order (CheckBatch).
  std::vector<const kv::BlockTable*> sequences;
  std::map<const kv::BlockTable*, std::vector<int64_t>> members;  // batch indices
  for (int64_t i = 0; i < static_cast<int64_t>(batch.size()); ++i) {
    auto [it, inserted] = members.try_emplace(batch[i].blocks);
    if (inserted) sequences.push_back(batch[i].blocks);
    it->second.push_back(i);
  }
  std::vector<int64_t> order;  // batch index of each row
  order.reserve(batch.size());
  for (const kv::BlockTable* seq : sequences) {
    if (members[seq].size() == 1) order.push_back(members[seq][0]);
  }
  Plan plan;
  plan.n = static_cast<int64_t>(batch.size());
  plan.n_decode = static_cast<int>(order.size());
  for (const kv::BlockTable* seq : sequences) {
    const std::vector<int64_t>& m = members[seq];
    if (m.size() == 1) continue;
    plan.prefill_runs.push_back(Plan::PrefillRun{static_cast<int64_t>(order.size()),
                                                 static_cast<int>(m.size()),
                                                 batch[m[0]].position, 0});
    order.insert(order.end(), m.begin(), m.end());
  }

  std::vector<int32_t> tokens(plan.n), positions(plan.n);
  std::vector<int64_t> slots(plan.n);
  std::vector<int64_t> row_of(plan.n);
  for (int64_t r = 0; r < plan.n; ++r) {
    const BatchToken& t = batch[order[r]];
    tokens[r] = t.token;
    positions[r] = static_cast<int32_t>(t.position);
    slots[r] = int64_t{t.blocks->blocks[t.position / block_size]} * block_size +
               t.position % block_size;
    row_of[order[r]] = r;
  }
  plan.tokens = plan.Append(tokens);
  plan.positions = plan.Append(positions);
  plan.slots = plan.Append(slots);

  if (plan.n_decode > 0) {
    for (int r = 0; r < plan.n_decode; ++r) {
      plan.decode_max_ctx = std::max<int64_t>(plan.decode_max_ctx, positions[r] + 1);
    }
    plan.decode_max_ctx = (plan.decode_max_ctx + kDecodeCtxBucket - 1) / kDecodeCtxBucket *
                          kDecodeCtxBucket;
    plan.decode_table_stride = (plan.decode_max_ctx + block_size - 1) / block_size;
    std::vector<int32_t> tables(plan.n_decode * plan.decode_table_stride, -1);
    std::vector<int32_t> ctx_lens(plan.n_decode);
    for (int r = 0; r < plan.n_decode; ++r) {
      const BatchToken& t = batch[order[r]];
      ctx_lens[r] = static_cast<int32_t>(t.position + 1);
      const int64_t n_blocks = t.position / block_size + 1;
      std::copy_n(t.blocks->blocks.begin(), n_blocks,
                  tables.begin() + r * plan.decode_table_stride);
    }
    plan.decode_tables = plan.Append(tables);
    plan.ctx_lens = plan.Append(ctx_lens);
    plan.decode_plan = gpu::PlanPagedAttentionDecode(
        gpu::PagedDecodeShape{plan.n_decode, config_.n_heads, config_.n_kv_heads,
                              config_.head_dim, plan.decode_max_ctx},
        n_multiprocessors_);
  }
  for (Plan::PrefillRun& run : plan.prefill_runs) {
    const BatchToken& last = batch[order[run.first_row + run.n_q - 1]];
    const int64_t n_blocks = last.position / block_size + 1;
    run.table = plan.Append(std::vector<int32_t>(last.blocks->blocks.begin(),
                                                 last.blocks->blocks.begin() + n_blocks));
  }
  std::vector<int32_t> wanted_rows;
  for (int64_t i = 0; i < plan.n; ++i) {
    if (batch[i].want_logits) wanted_rows.push_back(static_cast<int32_t>(row_of[i]));
  }
  plan.n_want = static_cast<int>(wanted_rows.size());
  plan.wanted_rows = plan.Append(wanted_rows);
  return plan;
}

absl::StatusOr<std::vector<float>> CudaLlamaForward::Forward(absl::Span<const BatchToken> batch) {
  if (absl::Status s = CheckBatch(config_, pool_.layout(), batch); !s.ok()) return s;
  if (batch.empty()) return std::vector<float>();
  const Plan plan = PlanBatch(batch);
  if (absl::Status s =
          ReserveBatchBuffers(plan.n, plan.decode_plan.workspace_bytes, plan.host.size());
      !s.ok()) {
    return s;
  }

  std::vector<float> logits(static_cast<size_t>(plan.n_want) * config_.vocab_size);
  absl::Status status = [&]() -> absl::Status {
    PDSERVE_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(metadata_.get(), plan.host.data(),
                                                 plan.host.size(), cudaMemcpyHostToDevice,
                                                 stream_),
                                 "uploading batch metadata");
    const bool decode_step = plan.prefill_runs.empty() && plan.n_want == plan.n;
    if (!(use_graphs_ && decode_step) || !LaunchGraph(plan).ok()) {
      if (absl::Status s = Compute(plan); !s.ok()) return s;
    }
    if (!logits.empty()) {
      PDSERVE_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(logits.data(), logits_.get(),
                                                   logits.size() * sizeof(float),
                                                   cudaMemcpyDeviceToHost, stream_),
                                   "copying logits to the host");
    }
    PDSERVE_RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(stream_), "forward pass");
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    // Leaves the stream idle for the next call, whatever was queued before the failure.
    cudaStreamSynchronize(stream_);
    cudaGetLastError();
    return status;
  }
  return logits;
}

void CudaLlamaForward::DropGraphs() {
  for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
  graphs_.clear();
}

absl::Status CudaLlamaForward::LaunchGraph(const Plan& plan) {
  const std::pair<int64_t, int64_t> key{plan.n, plan.decode_max_ctx};
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    // A long-running server sees many (batch, bucket) pairs: keep the cache bounded.
    if (graphs_.size() >= 256) DropGraphs();
    absl::Status captured = [&]() -> absl::Status {
      PDSERVE_RETURN_IF_CUDA_ERROR(
          cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal),
          "capturing a decode step");
      const absl::Status computed = Compute(plan);
      cudaGraph_t graph = nullptr;
      const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
      if (!computed.ok() || ended != cudaSuccess) {
        if (graph != nullptr) cudaGraphDestroy(graph);
        return computed.ok() ? CudaStatus(ended, "capturing a decode step") : computed;
      }
      cudaGraphExec_t exec = nullptr;
      const cudaError_t instantiated = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      PDSERVE_RETURN_IF_CUDA_ERROR(instantiated, "instantiating a decode-step graph");
      it = graphs_.emplace(key, exec).first;
      ++graphs_captured_;
      return absl::OkStatus();
    }();
    if (!captured.ok()) {
      // Eager from now on: the caller runs this step without a graph.
      use_graphs_ = false;
      graphs_disabled_reason_ = captured.ToString();
      cudaGetLastError();
      return captured;
    }
  }
  PDSERVE_RETURN_IF_CUDA_ERROR(cudaGraphLaunch(it->second, stream_), "launching a decode step");
  return absl::OkStatus();
}

absl::Status CudaLlamaForward::Matmul(const void* x, int64_t n, const DeviceBuffer& w,
                                      int64_t rows, int64_t cols, void* y, bool y_f32,
                                      const char* what) {
  if (weights_.matrix_dtype == ActDtype::kF32) {
    PDSERVE_RETURN_IF_CUDA_ERROR(gpu::GemmF32(cublas_, static_cast<const float*>(x), n,
                                              w.as<float>(), rows, cols, static_cast<float*>(y),
                                              stream_),
                                 what);
  } else {
    PDSERVE_RETURN_IF_CUDA_ERROR(
        gpu::GemmBf16(cublas_, static_cast<const __nv_bfloat16*>(x), n, w.as<__nv_bfloat16>(),
                      rows, cols, y, y_f32 ? ActDtype::kF32 : ActDtype::kBF16, stream_),
        what);
  }
  return absl::OkStatus();
}

namespace {

// Attention launches for either activation dtype: q and out are f32 or bf16 together.
template <typename T>
cudaError_t DecodeAttention(const void* q, int64_t q_stride, const gpu::PagedDecodeShape& shape,
                            const gpu::PagedKvView& kv, const int32_t* tables,
                            int64_t table_stride, const int32_t* ctx_lens, float scale,
                            const gpu::PagedDecodePlan& plan, DeviceBuffer& workspace, void* out,
                            int64_t out_stride, cudaStream_t stream) {
  return gpu::PagedAttentionDecode(static_cast<const T*>(q), q_stride, shape, kv, tables,
                                   table_stride, ctx_lens, scale, plan, workspace.get(),
                                   workspace.size(), static_cast<T*>(out), out_stride, stream);
}

template <typename T>
cudaError_t PrefillAttention(const void* q, int64_t q_stride, int n_q, int64_t q_start,
                             int n_heads, const gpu::PagedKvView& kv, const int32_t* table,
                             float scale, void* out, int64_t out_stride, cudaStream_t stream) {
  return gpu::PagedAttentionPrefill(static_cast<const T*>(q), q_stride, n_q, q_start, n_heads, kv,
                                    table, scale, static_cast<T*>(out), out_stride, stream);
}

}  // namespace

absl::Status CudaLlamaForward::Compute(const Plan& plan) {
  const model::ModelConfig& c = config_;
  const int64_t n = plan.n;
  const int q_dim = c.n_heads * c.head_dim;
  const int kv_dim = c.n_kv_heads * c.head_dim;
  const int qkv_dim = q_dim + 2 * kv_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const ActDtype dt = weights_.matrix_dtype;
  const bool f32 = dt == ActDtype::kF32;
  const size_t es = f32 ? 4 : 2;  // bytes per activation element
  // Element `i` of an activation buffer.
  auto at = [es](const DeviceBuffer& b, int64_t i) { return b.as<uint8_t>() + i * es; };
  uint8_t* meta = metadata_.as<uint8_t>();
  const auto* tokens = reinterpret_cast<const int32_t*>(meta + plan.tokens);
  const auto* positions = reinterpret_cast<const int32_t*>(meta + plan.positions);
  const auto* slots = reinterpret_cast<const int64_t*>(meta + plan.slots);
  auto* x = x_.as<float>();

  PDSERVE_RETURN_IF_CUDA_ERROR(
      gpu::EmbeddingLookup(weights_.embedding_type, weights_.embedding.get(), c.vocab_size, c.dim,
                           tokens, static_cast<int>(n), ActDtype::kF32, x, stream_),
      "embedding lookup");

  for (int layer = 0; layer < c.n_layers; ++layer) {
    const CudaLayerWeights& w = weights_.layers[layer];
    const gpu::PagedKvView kv = LayerView(pool_, layer);

    // Attention block: h = rmsnorm(x); q|k|v = h · Wqkvᵀ; RoPE on q and k (adjacent heads);
    // store every token's k and v before any attention reads them.
    PDSERVE_RETURN_IF_CUDA_ERROR(gpu::RmsNorm(x, ActDtype::kF32, w.attn_norm.as<float>(), n,
                                              c.dim, c.rms_eps, h_.get(), dt, stream_),
                                 "attention norm");
    if (absl::Status s = Matmul(h_.get(), n, w.wqkv, qkv_dim, c.dim, qkv_.get(), false,
                                "q|k|v projection");
        !s.ok()) {
      return s;
    }
    PDSERVE_RETURN_IF_CUDA_ERROR(
        gpu::RopeInterleaved(qkv_.get(), dt, n, qkv_dim, c.n_heads + c.n_kv_heads, c.head_dim,
                             c.rotary_dim, positions, c.rope_base, stream_),
        "rope");
    PDSERVE_RETURN_IF_CUDA_ERROR(gpu::StoreKv(at(qkv_, q_dim), at(qkv_, q_dim + kv_dim), dt,
                                              qkv_dim, qkv_dim, static_cast<int>(n), slots, kv,
                                              stream_),
                                 "storing K/V");
    if (plan.n_decode > 0) {
      const gpu::PagedDecodeShape shape{plan.n_decode, c.n_heads, c.n_kv_heads, c.head_dim,
                                        plan.decode_max_ctx};
      const auto* tables = reinterpret_cast<const int32_t*>(meta + plan.decode_tables);
      const auto* ctx_lens = reinterpret_cast<const int32_t*>(meta + plan.ctx_lens);
      PDSERVE_RETURN_IF_CUDA_ERROR(
          (f32 ? DecodeAttention<float> : DecodeAttention<__nv_bfloat16>)(
              qkv_.get(), qkv_dim, shape, kv, tables, plan.decode_table_stride, ctx_lens, scale,
              plan.decode_plan, attention_workspace_, attn_.get(), q_dim, stream_),
          "paged attention (decode)");
    }
    for (const Plan::PrefillRun& run : plan.prefill_runs) {
      PDSERVE_RETURN_IF_CUDA_ERROR(
          (f32 ? PrefillAttention<float> : PrefillAttention<__nv_bfloat16>)(
              at(qkv_, run.first_row * qkv_dim), qkv_dim, run.n_q, run.q_start, c.n_heads, kv,
              reinterpret_cast<const int32_t*>(meta + run.table), scale,
              at(attn_, run.first_row * q_dim), q_dim, stream_),
          "paged attention (prefill)");
    }
    if (absl::Status s = Matmul(attn_.get(), n, w.wo, c.dim, q_dim, proj_.get(), false,
                                "attention output projection");
        !s.ok()) {
      return s;
    }
    PDSERVE_RETURN_IF_CUDA_ERROR(gpu::AddInPlace(x, ActDtype::kF32, proj_.get(), dt, n * c.dim,
                                                 stream_),
                                 "residual add");

    // Feed-forward block (SwiGLU): x += (silu(h · Wgateᵀ) * (h · Wupᵀ)) · Wdownᵀ.
    PDSERVE_RETURN_IF_CUDA_ERROR(gpu::RmsNorm(x, ActDtype::kF32, w.ffn_norm.as<float>(), n,
                                              c.dim, c.rms_eps, h_.get(), dt, stream_),
                                 "feed-forward norm");
    if (absl::Status s = Matmul(h_.get(), n, w.w_gate_up, 2 * c.hidden_dim, c.dim,
                                gate_up_.get(), false, "gate|up projection");
        !s.ok()) {
      return s;
    }
    PDSERVE_RETURN_IF_CUDA_ERROR(
        gpu::SwiGlu(gate_up_.get(), at(gate_up_, c.hidden_dim), 2 * c.hidden_dim, n,
                    c.hidden_dim, act_.get(), c.hidden_dim, dt, stream_),
        "swiglu");
    if (absl::Status s = Matmul(act_.get(), n, w.w_down, c.dim, c.hidden_dim, proj_.get(), false,
                                "down projection");
        !s.ok()) {
      return s;
    }
    PDSERVE_RETURN_IF_CUDA_ERROR(gpu::AddInPlace(x, ActDtype::kF32, proj_.get(), dt, n * c.dim,
                                                 stream_),
                                 "residual add");
  }

  if (plan.n_want > 0) {
    PDSERVE_RETURN_IF_CUDA_ERROR(gpu::RmsNorm(x, ActDtype::kF32, weights_.final_norm.as<float>(),
                                              n, c.dim, c.rms_eps, h_.get(), dt, stream_),
                                 "output norm");
    // The rows of the tokens with logits, gathered as fixed-size records by row index.
    PDSERVE_RETURN_IF_CUDA_ERROR(
        gpu::GatherBlocks(h_.as<uint8_t>(), n, static_cast<size_t>(c.dim) * es,
                          reinterpret_cast<const int32_t*>(meta + plan.wanted_rows), plan.n_want,
                          wanted_.as<uint8_t>(), stream_),
        "gathering rows for the logits");
    if (absl::Status s = Matmul(wanted_.get(), plan.n_want, weights_.output, c.vocab_size, c.dim,
                                logits_.get(), true, "logits");
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace pdserve::engine::cuda
