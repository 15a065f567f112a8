#include "common/rpc/proto_convert.h"

#include <chrono>

#include "absl/strings/str_cat.h"

namespace pdserve::rpc {

sampling::SamplingParams SamplingFromProto(const v1::SamplingOptions& options) {
  sampling::SamplingParams params;
  if (options.has_temperature()) params.temperature = options.temperature();
  if (options.has_top_k()) params.top_k = options.top_k();
  if (options.has_top_p()) params.top_p = options.top_p();
  if (options.has_repetition_penalty()) params.repetition_penalty = options.repetition_penalty();
  if (options.has_seed()) params.seed = options.seed();
  return params;
}

v1::SamplingOptions SamplingToProto(const sampling::SamplingParams& params) {
  v1::SamplingOptions options;
  options.set_temperature(params.temperature);
  options.set_top_k(params.top_k);
  options.set_top_p(params.top_p);
  options.set_repetition_penalty(params.repetition_penalty);
  options.set_seed(params.seed);
  return options;
}

v1::KvLayoutInfo KvLayoutToProto(const kv::KvLayout& layout) {
  v1::KvLayoutInfo info;
  info.set_version(kv::kKvLayoutVersion);
  info.set_n_layers(layout.n_layers);
  info.set_n_kv_heads(layout.n_kv_heads);
  info.set_head_dim(layout.head_dim);
  info.set_block_size(layout.block_size);
  info.set_dtype(kv::KvDtypeName(layout.dtype));
  return info;
}

absl::StatusOr<kv::KvLayout> KvLayoutFromProto(const v1::KvLayoutInfo& info) {
  if (info.version() != kv::kKvLayoutVersion) {
    return absl::InvalidArgumentError(absl::StrCat("KV layout version ", info.version(),
                                                   " is not supported (this build speaks ",
                                                   kv::kKvLayoutVersion, ")"));
  }
  absl::StatusOr<kernels::KvDtype> dtype = kv::ParseKvDtype(info.dtype());
  if (!dtype.ok()) return dtype.status();
  kv::KvLayout layout;
  layout.n_layers = info.n_layers();
  layout.n_kv_heads = info.n_kv_heads();
  layout.head_dim = info.head_dim();
  layout.block_size = info.block_size();
  layout.dtype = *dtype;
  if (absl::Status s = layout.Validate(); !s.ok()) return s;
  return layout;
}

absl::Time CallDeadline(const grpc::ServerContextBase& context) {
  const std::chrono::system_clock::time_point deadline = context.deadline();
  if (deadline >= std::chrono::system_clock::now() + std::chrono::hours(24 * 365)) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

v1::WorkerLoad WorkerLoadToProto(const request::WorkerLoad& load) {
  v1::WorkerLoad out;
  out.set_queue_length(static_cast<int32_t>(load.queue_length));
  out.set_active_sequences(static_cast<int32_t>(load.active_sequences));
  out.set_free_kv_blocks(load.free_kv_blocks);
  out.set_total_kv_blocks(load.total_kv_blocks);
  return out;
}

}  // namespace pdserve::rpc
