#include "kernels/cpu/isa.h"

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace pdserve::kernels {
namespace {

TEST(IsaTest, ParsesNames) {
  EXPECT_EQ(*ParseIsa("scalar"), Isa::kScalar);
  EXPECT_EQ(*ParseIsa("SCALAR"), Isa::kScalar);
  EXPECT_EQ(*ParseIsa("auto"), DetectBestIsa());
  EXPECT_EQ(*ParseIsa(IsaName(DetectBestIsa())), DetectBestIsa());
}

TEST(IsaTest, RejectsUnknownNames) {
  for (const char* name : {"", "avx", "sse4", "scalar ", "neon"}) {
    const absl::StatusOr<Isa> isa = ParseIsa(name);
    ASSERT_FALSE(isa.ok()) << name;
    EXPECT_EQ(isa.status().code(), absl::StatusCode::kInvalidArgument) << name;
  }
}

// A variant above the best one detected cannot run here and must be refused, not picked.
TEST(IsaTest, RefusesVariantsTheCpuLacks) {
  const Isa best = DetectBestIsa();
  const absl::StatusOr<Isa> avx2 = ParseIsa("avx2");
  const absl::StatusOr<Isa> avx512 = ParseIsa("avx512");
  EXPECT_EQ(avx2.ok(), best != Isa::kScalar);
  EXPECT_EQ(avx512.ok(), best == Isa::kAvx512);
  if (!avx512.ok()) {
    EXPECT_EQ(avx512.status().code(), absl::StatusCode::kFailedPrecondition);
  }
  if (!avx2.ok()) {
    EXPECT_EQ(avx2.status().code(), absl::StatusCode::kFailedPrecondition);
  }
}

TEST(IsaTest, Names) {
  EXPECT_EQ(IsaName(Isa::kScalar), "scalar");
  EXPECT_EQ(IsaName(Isa::kAvx2), "avx2");
  EXPECT_EQ(IsaName(Isa::kAvx512), "avx512");
}

}  // namespace
}  // namespace pdserve::kernels
