#include "common/rpc/grpc_status.h"
#include "common/rpc/proto_convert.h"
#include "gtest/gtest.h"

namespace pdserve::rpc {
namespace {

TEST(GrpcStatusTest, CodesAndMessagesSurviveBothWays) {
  for (absl::Status s : {absl::OkStatus(), absl::InvalidArgumentError("prompt is empty"),
                         absl::ResourceExhaustedError("queue full"),
                         absl::DeadlineExceededError("late"), absl::CancelledError("gone"),
                         absl::DataLossError("checksum mismatch in block 3")}) {
    const grpc::Status g = ToGrpcStatus(s);
    EXPECT_EQ(static_cast<int>(g.error_code()), static_cast<int>(s.code()));
    EXPECT_EQ(g.error_message(), std::string(s.message()));
    EXPECT_EQ(FromGrpcStatus(g), s);
  }
}

TEST(ProtoConvertTest, AbsentSamplingFieldsTakeDefaults) {
  const sampling::SamplingParams defaults;
  const sampling::SamplingParams p = SamplingFromProto(v1::SamplingOptions());
  EXPECT_EQ(p.temperature, defaults.temperature);
  EXPECT_EQ(p.top_k, defaults.top_k);
  EXPECT_EQ(p.top_p, defaults.top_p);
  EXPECT_EQ(p.repetition_penalty, defaults.repetition_penalty);
  EXPECT_EQ(p.seed, defaults.seed);
}

TEST(ProtoConvertTest, SamplingRoundTrips) {
  sampling::SamplingParams p;
  p.temperature = 0.7f;
  p.top_k = 40;
  p.top_p = 0.9f;
  p.repetition_penalty = 1.1f;
  p.seed = 1234567890123ULL;
  const sampling::SamplingParams q = SamplingFromProto(SamplingToProto(p));
  EXPECT_EQ(q.temperature, p.temperature);
  EXPECT_EQ(q.top_k, p.top_k);
  EXPECT_EQ(q.top_p, p.top_p);
  EXPECT_EQ(q.repetition_penalty, p.repetition_penalty);
  EXPECT_EQ(q.seed, p.seed);
}

TEST(ProtoConvertTest, KvLayoutRoundTripsAndRejectsMismatches) {
  kv::KvLayout layout;
  layout.n_layers = 30;
  layout.n_kv_heads = 3;
  layout.head_dim = 64;
  layout.block_size = 16;
  layout.dtype = kernels::KvDtype::kBF16;
  absl::StatusOr<kv::KvLayout> back = KvLayoutFromProto(KvLayoutToProto(layout));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, layout);

  v1::KvLayoutInfo wrong_version = KvLayoutToProto(layout);
  wrong_version.set_version(kv::kKvLayoutVersion + 1);
  EXPECT_EQ(KvLayoutFromProto(wrong_version).status().code(), absl::StatusCode::kInvalidArgument);
  v1::KvLayoutInfo bad_dtype = KvLayoutToProto(layout);
  bad_dtype.set_dtype("f64");
  EXPECT_FALSE(KvLayoutFromProto(bad_dtype).ok());
  v1::KvLayoutInfo zero_heads = KvLayoutToProto(layout);
  zero_heads.set_n_kv_heads(0);
  EXPECT_FALSE(KvLayoutFromProto(zero_heads).ok());
}

}  // namespace
}  // namespace pdserve::rpc
