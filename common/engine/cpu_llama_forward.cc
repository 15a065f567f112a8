#include "common/engine/cpu_llama_forward.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/paged_attention.h"

namespace pdserve::engine {

CpuLlamaForward::CpuLlamaForward(const model::ModelWeights& weights, kv::KvBlockPool& pool,
                                 kernels::ThreadPool& threads, kernels::Isa isa)
    : weights_(weights), pool_(pool), threads_(threads), isa_(isa) {}

absl::StatusOr<std::vector<float>> CpuLlamaForward::Forward(absl::Span<const BatchToken> batch) {
  if (absl::Status s = CheckBatch(weights_.config, pool_.layout(), batch); !s.ok()) return s;
  const model::ModelConfig& c = weights_.config;
  const int64_t n = static_cast<int64_t>(batch.size());
  const int q_dim = c.n_heads * c.head_dim;
  const int kv_dim = c.n_kv_heads * c.head_dim;

  std::vector<float> x(n * c.dim);           // (n, dim) residual stream
  std::vector<float> xb(n * c.dim);          // (n, dim) normed input of a sub-layer
  std::vector<float> q(n * q_dim);           // (n, n_heads * head_dim)
  std::vector<float> k(n * kv_dim);          // (n, n_kv_heads * head_dim)
  std::vector<float> v(n * kv_dim);          // (n, n_kv_heads * head_dim)
  std::vector<float> att(n * q_dim);         // (n, n_heads * head_dim) attention output
  std::vector<float> proj(n * c.dim);        // (n, dim) sub-layer output
  std::vector<float> gate(n * c.hidden_dim);  // (n, hidden_dim)
  std::vector<float> up(n * c.hidden_dim);    // (n, hidden_dim)

  for (int64_t i = 0; i < n; ++i) {
    kernels::DequantizeWeightRow(weights_.token_embedding, batch[i].token, &x[i * c.dim], isa_);
  }

  for (int layer = 0; layer < c.n_layers; ++layer) {
    const model::LayerWeights& w = weights_.layers[layer];

    // Attention block.
    for (int64_t i = 0; i < n; ++i) {
      kernels::RmsNorm(&x[i * c.dim], w.attn_norm.data(), c.dim, c.rms_eps, &xb[i * c.dim]);
    }
    kernels::MatMul(w.wq, xb.data(), n, q.data(), threads_, isa_);
    kernels::MatMul(w.wk, xb.data(), n, k.data(), threads_, isa_);
    kernels::MatMul(w.wv, xb.data(), n, v.data(), threads_, isa_);
    for (int64_t i = 0; i < n; ++i) {
      kernels::RopeInterleaved(&q[i * q_dim], c.n_heads, c.head_dim, c.rotary_dim,
                               batch[i].position, c.rope_base);
      kernels::RopeInterleaved(&k[i * kv_dim], c.n_kv_heads, c.head_dim, c.rotary_dim,
                               batch[i].position, c.rope_base);
    }
    // Every token's K/V is stored before any attention runs, so a prefill chunk's later tokens
    // see its earlier ones.
    const LayerViews views = BuildLayerViews(layer, batch);
    for (int64_t i = 0; i < n; ++i) {
      kernels::StoreKv(&k[i * kv_dim], &v[i * kv_dim], batch[i].position, views.per_token[i],
                       views.slabs.at(batch[i].blocks).data());
    }
    Attention(batch, views, q.data(), att.data());
    kernels::MatMul(w.wo, att.data(), n, proj.data(), threads_, isa_);
    for (int64_t i = 0; i < n; ++i) kernels::AddInPlace(&x[i * c.dim], &proj[i * c.dim], c.dim);

    // Feed-forward block (SwiGLU).
    for (int64_t i = 0; i < n; ++i) {
      kernels::RmsNorm(&x[i * c.dim], w.ffn_norm.data(), c.dim, c.rms_eps, &xb[i * c.dim]);
    }
    kernels::MatMul(w.w_gate, xb.data(), n, gate.data(), threads_, isa_);
    kernels::MatMul(w.w_up, xb.data(), n, up.data(), threads_, isa_);
    kernels::SwiGlu(gate.data(), up.data(), n * c.hidden_dim);
    kernels::MatMul(w.w_down, gate.data(), n, proj.data(), threads_, isa_);
    for (int64_t i = 0; i < n; ++i) kernels::AddInPlace(&x[i * c.dim], &proj[i * c.dim], c.dim);
  }

  // Final norm and classifier, only for the tokens whose logits are wanted.
  std::vector<float> wanted;  // (n_want, dim)
  for (int64_t i = 0; i < n; ++i) {
    if (!batch[i].want_logits) continue;
    wanted.resize(wanted.size() + c.dim);
    kernels::RmsNorm(&x[i * c.dim], weights_.final_norm.data(), c.dim, c.rms_eps,
                     &wanted[wanted.size() - c.dim]);
  }
  const int64_t n_want = static_cast<int64_t>(wanted.size()) / c.dim;
  std::vector<float> logits(n_want * c.vocab_size);
  if (n_want > 0) {
    kernels::MatMul(weights_.output, wanted.data(), n_want, logits.data(), threads_, isa_);
  }
  return logits;
}

CpuLlamaForward::LayerViews CpuLlamaForward::BuildLayerViews(int layer,
                                                            absl::Span<const BatchToken> batch) {
  const model::ModelConfig& c = weights_.config;
  const kv::KvLayout& layout = pool_.layout();
  LayerViews views;
  for (const BatchToken& t : batch) {
    auto [it, inserted] = views.slabs.try_emplace(t.blocks);
    if (!inserted) continue;
    for (kv::BlockId id : t.blocks->blocks) {
      it->second.push_back(pool_.BlockData(id) + layout.KSlabOffset(layer));
    }
  }
  views.per_token.resize(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    kernels::PagedKvLayer& view = views.per_token[i];
    view.k_slabs = views.slabs.at(batch[i].blocks).data();
    view.v_offset_bytes = layout.VSlabOffset(layer) - layout.KSlabOffset(layer);
    view.block_size = layout.block_size;
    view.n_kv_heads = c.n_kv_heads;
    view.head_dim = c.head_dim;
    view.dtype = layout.dtype;
  }
  return views;
}

void CpuLlamaForward::Attention(absl::Span<const BatchToken> batch, const LayerViews& views,
                             const float* q, float* out) {
  const model::ModelConfig& c = weights_.config;
  const int q_dim = c.n_heads * c.head_dim;

  // One work item per (token, head): the split never changes any item's arithmetic.
  const int64_t n_items = static_cast<int64_t>(batch.size()) * c.n_heads;
  threads_.ParallelFor(n_items, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t i = item / c.n_heads;
      const int head = static_cast<int>(item % c.n_heads);
      const int64_t n_ctx = batch[i].position + 1;
      if (static_cast<int64_t>(scores.size()) < n_ctx) scores.resize(n_ctx);
      kernels::PagedAttention(&q[i * q_dim], c.n_heads, views.per_token[i], n_ctx, head, head + 1,
                              scores.data(), &out[i * q_dim], isa_);
    }
  });
}

}  // namespace pdserve::engine
