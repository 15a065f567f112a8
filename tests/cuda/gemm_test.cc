// kernels/cuda/gemm.h (cuBLAS, bf16 in, f32 accumulation; and f32 throughout) against a double
// reference. Tolerance per element: 1e-4 · Σ_k |x_k w_k| (f32 accumulation over up to ~1600
// terms) plus, for bf16 output, (2^-8 + 3e-5) · |want|. For GemmF32, 2e-5 · Σ_k |x_k w_k|: above
// f32 accumulation error, well below what TF32 inputs (2^-11 relative per product) would give.

#include "kernels/cuda/gemm.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "tests/cuda/cuda_test_util.h"

namespace pdserve::kernels::gpu {
namespace {

using testing::DeviceBuffer;
using testing::Rng;

class GemmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(cublasCreate(&handle_), CUBLAS_STATUS_SUCCESS) << "cublasCreate failed";
  }
  void TearDown() override {
    if (handle_ != nullptr) cublasDestroy(handle_);
  }
  cublasHandle_t handle_ = nullptr;
};

// y = x · wᵀ in double, and Σ_k |x_k w_k| per element (the scale of its rounding error).
struct Reference {
  std::vector<double> want;  // (n_tokens, rows)
  std::vector<double> mag;
};

Reference ReferenceGemm(const std::vector<float>& x, const std::vector<float>& w,
                        int64_t n_tokens, int64_t rows, int64_t cols) {
  Reference ref{std::vector<double>(n_tokens * rows), std::vector<double>(n_tokens * rows)};
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      double acc = 0;
      double abs_acc = 0;
      for (int64_t k = 0; k < cols; ++k) {
        const double p = double(x[t * cols + k]) * w[r * cols + k];
        acc += p;
        abs_acc += std::fabs(p);
      }
      ref.want[t * rows + r] = acc;
      ref.mag[t * rows + r] = abs_acc;
    }
  }
  return ref;
}

TEST_F(GemmTest, MatchesReferenceOnOddShapes) {
  Rng rng(5);
  const struct {
    int64_t n_tokens, rows, cols;
  } shapes[] = {{1, 37, 64}, {7, 129, 200}, {32, 576, 576}, {33, 1000, 1536}, {5, 3, 8},
                {1, 49152, 576}};
  for (const auto& s : shapes) {
    const std::vector<uint16_t> x = rng.Bf16Vector(s.n_tokens * s.cols, -1.f, 1.f);
    const std::vector<uint16_t> w = rng.Bf16Vector(s.rows * s.cols, -0.1f, 0.1f);
    const std::vector<float> xf = testing::Bf16ToFloat(x);
    const std::vector<float> wf = testing::Bf16ToFloat(w);
    const Reference ref = ReferenceGemm(xf, wf, s.n_tokens, s.rows, s.cols);
    const std::vector<double>& want = ref.want;
    const std::vector<double>& mag = ref.mag;
    DeviceBuffer<uint16_t> d_x(x);
    DeviceBuffer<uint16_t> d_w(w);
    DeviceBuffer<float> d_y32(s.n_tokens * s.rows);
    DeviceBuffer<uint16_t> d_y16(s.n_tokens * s.rows);
    const auto* xp = reinterpret_cast<const __nv_bfloat16*>(d_x.get());
    const auto* wp = reinterpret_cast<const __nv_bfloat16*>(d_w.get());
    EXPECT_LAUNCH_OK(GemmBf16(handle_, xp, s.n_tokens, wp, s.rows, s.cols, d_y32.get(),
                              ActDtype::kF32, nullptr));
    EXPECT_LAUNCH_OK(GemmBf16(handle_, xp, s.n_tokens, wp, s.rows, s.cols, d_y16.get(),
                              ActDtype::kBF16, nullptr));
    const std::vector<float> y32 = d_y32.Download();
    const std::vector<uint16_t> y16 = d_y16.Download();
    int n_bad = 0;
    for (size_t i = 0; i < want.size() && n_bad < 5; ++i) {
      const double bound32 = 1e-4 * mag[i] + 1e-7;
      const double bound16 = bound32 + testing::kBf16Rtol * std::fabs(want[i]);
      const double got16 = testing::Bf16ToFloat(y16[i]);
      if (!(std::fabs(y32[i] - want[i]) <= bound32) || !(std::fabs(got16 - want[i]) <= bound16)) {
        ADD_FAILURE() << "(" << s.n_tokens << ", " << s.rows << ", " << s.cols << ") element "
                      << i << ": f32 " << y32[i] << ", bf16 " << got16 << ", want " << want[i]
                      << " (bounds " << bound32 << ", " << bound16 << ")";
        ++n_bad;
      }
    }
  }
}

TEST_F(GemmTest, F32MatchesReferenceWithoutTf32Rounding) {
  Rng rng(9);
  const struct {
    int64_t n_tokens, rows, cols;
  } shapes[] = {{1, 37, 64}, {7, 129, 200}, {33, 576, 1536}, {5, 3, 8}, {1, 4096, 576}};
  for (const auto& s : shapes) {
    const std::vector<float> x = rng.FloatVector(s.n_tokens * s.cols, -1.f, 1.f);
    const std::vector<float> w = rng.FloatVector(s.rows * s.cols, -0.1f, 0.1f);
    DeviceBuffer<float> d_x(x);
    DeviceBuffer<float> d_w(w);
    DeviceBuffer<float> d_y(s.n_tokens * s.rows);
    EXPECT_LAUNCH_OK(GemmF32(handle_, d_x.get(), s.n_tokens, d_w.get(), s.rows, s.cols,
                             d_y.get(), nullptr));
    const std::vector<float> y = d_y.Download();
    const Reference ref = ReferenceGemm(x, w, s.n_tokens, s.rows, s.cols);
    int n_bad = 0;
    for (size_t i = 0; i < y.size() && n_bad < 5; ++i) {
      if (!(std::fabs(y[i] - ref.want[i]) <= 2e-5 * ref.mag[i] + 1e-7)) {
        ADD_FAILURE() << "(" << s.n_tokens << ", " << s.rows << ", " << s.cols << ") element "
                      << i << ": " << y[i] << ", want " << ref.want[i];
        ++n_bad;
      }
    }
  }
}

TEST_F(GemmTest, RejectsBadInputWithoutLaunching) {
  DeviceBuffer<uint16_t> buf(64);
  const auto* p = reinterpret_cast<const __nv_bfloat16*>(buf.get());
  EXPECT_REJECTED(GemmBf16(nullptr, p, 1, p, 8, 8, buf.get(), ActDtype::kF32, nullptr));
  EXPECT_REJECTED(GemmBf16(handle_, p, 1, p, 0, 8, buf.get(), ActDtype::kF32, nullptr));
  EXPECT_REJECTED(GemmBf16(handle_, nullptr, 1, p, 8, 8, buf.get(), ActDtype::kF32, nullptr));
  EXPECT_EQ(GemmBf16(handle_, p, 0, p, 8, 8, buf.get(), ActDtype::kF32, nullptr), cudaSuccess);
  EXPECT_REJECTED(GemmBf16(handle_, p, 1, p, 8, 8, buf.get(), static_cast<ActDtype>(1), nullptr));
  DeviceBuffer<float> f(64);
  EXPECT_REJECTED(GemmF32(nullptr, f.get(), 1, f.get(), 8, 8, f.get(), nullptr));
  EXPECT_REJECTED(GemmF32(handle_, f.get(), 1, f.get(), 8, -1, f.get(), nullptr));
  EXPECT_REJECTED(GemmF32(handle_, f.get(), 1, nullptr, 8, 8, f.get(), nullptr));
  EXPECT_EQ(GemmF32(handle_, f.get(), 0, f.get(), 8, 8, f.get(), nullptr), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
}  // namespace pdserve::kernels::gpu
