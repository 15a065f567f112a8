// MatMul of every weight type on every runnable variant: against a double-precision reference
// over the dequantized weights, SIMD against scalar, and the determinism contract of matmul.h
// (bitwise the same result whatever the thread count, n_tokens or the other rows of x).

#include "kernels/cpu/matmul.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/dequantize.h"
#include "tests/kernels/kernel_test_util.h"

namespace pdserve::kernels {
namespace {

using testing::Bits;
using testing::kAllTypes;
using testing::RandomFloats;
using testing::RandomTensor;
using testing::RunnableIsas;

// A random (rows, cols) weight matrix that owns its bytes.
struct TestMatrix {
  std::vector<uint8_t> bytes;
  WeightMatrix w;
};

TestMatrix MakeMatrix(TensorType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  const TensorTypeInfo& info = GetTensorTypeInfo(type);
  TestMatrix m;
  m.bytes = RandomTensor(type, rows * cols, rng);
  m.w = WeightMatrix{type, m.bytes.data(), rows, cols, RowBytes(info, cols)};
  return m;
}

// Columns that give several blocks and, for plain types, a tail that fills no SIMD vector.
int64_t TestCols(TensorType type) {
  const int64_t block = GetTensorTypeInfo(type).block_elems;
  if (block == 1) return 141;
  if (block == 32) return 32 * 7;
  return 256 * 3;
}

std::vector<float> RunMatMul(const WeightMatrix& w, const std::vector<float>& x, int64_t n_tokens,
                       int n_threads, Isa isa) {
  ThreadPool pool(n_threads);
  std::vector<float> y(static_cast<size_t>(n_tokens * w.rows), -1.0f);
  MatMul(w, x.data(), n_tokens, y.data(), pool, isa);
  return y;
}

// Σ|w·x| of each output: the scale that a float dot product's rounding error is relative to.
struct Reference {
  std::vector<double> y;
  std::vector<double> magnitude;
};

Reference NaiveReference(const WeightMatrix& w, const std::vector<float>& x, int64_t n_tokens) {
  std::vector<float> dense(static_cast<size_t>(w.rows * w.cols));
  Dequantize(w.type, w.data, dense.data(), w.rows * w.cols, Isa::kScalar);
  Reference ref{std::vector<double>(n_tokens * w.rows), std::vector<double>(n_tokens * w.rows)};
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < w.rows; ++r) {
      double sum = 0, magnitude = 0;
      for (int64_t c = 0; c < w.cols; ++c) {
        const double p = static_cast<double>(dense[r * w.cols + c]) * x[t * w.cols + c];
        sum += p;
        magnitude += std::fabs(p);
      }
      ref.y[t * w.rows + r] = sum;
      ref.magnitude[t * w.rows + r] = magnitude;
    }
  }
  return ref;
}

// f32 accumulation over a few hundred terms in blocked order stays well within 1e-5 of Σ|w·x|
// (the worst case bound is n · 2^-24 · Σ|w·x|; a fixed pairwise tree stays far below it).
constexpr double kRelativeTolerance = 1e-5;

TEST(MatMulTest, MatchesDoubleReferenceForEveryTypeAndIsa) {
  std::mt19937 rng(11);
  for (TensorType type : kAllTypes) {
    const int64_t rows = 37, cols = TestCols(type), n_tokens = 3;
    const TestMatrix m = MakeMatrix(type, rows, cols, rng);
    const std::vector<float> x = RandomFloats(n_tokens * cols, rng);
    const Reference ref = NaiveReference(m.w, x, n_tokens);
    std::vector<float> scalar;
    for (Isa isa : RunnableIsas()) {
      const std::vector<float> y = RunMatMul(m.w, x, n_tokens, 2, isa);
      if (isa == Isa::kScalar) scalar = y;
      for (int64_t i = 0; i < n_tokens * rows; ++i) {
        const double tolerance = kRelativeTolerance * ref.magnitude[i] + 1e-30;
        ASSERT_NEAR(y[i], ref.y[i], tolerance)
            << GetTensorTypeInfo(type).name << " " << IsaName(isa) << " output " << i;
        // SIMD and scalar differ only in summation order: both within the bound of the reference.
        ASSERT_NEAR(y[i], scalar[i], 2 * tolerance)
            << GetTensorTypeInfo(type).name << " " << IsaName(isa) << " vs scalar, output " << i;
      }
    }
  }
}

// y[t][r] is bitwise the same for 1, 2 or 3 threads, and when x's row t is multiplied alone.
TEST(MatMulTest, BitwiseInvariantToThreadsAndBatch) {
  std::mt19937 rng(12);
  for (TensorType type : kAllTypes) {
    const int64_t rows = 29, cols = TestCols(type), n_tokens = 8;
    const TestMatrix m = MakeMatrix(type, rows, cols, rng);
    const std::vector<float> x = RandomFloats(n_tokens * cols, rng);
    for (Isa isa : RunnableIsas()) {
      const std::string what = std::string(GetTensorTypeInfo(type).name) + " " + IsaName(isa);
      const std::vector<float> base = RunMatMul(m.w, x, n_tokens, 1, isa);
      for (int n_threads : {2, 3}) {
        const std::vector<float> y = RunMatMul(m.w, x, n_tokens, n_threads, isa);
        for (int64_t i = 0; i < n_tokens * rows; ++i) {
          ASSERT_EQ(Bits(y[i]), Bits(base[i])) << what << " threads " << n_threads << " " << i;
        }
      }
      for (int64_t t = 0; t < n_tokens; ++t) {
        const std::vector<float> x_t(x.begin() + t * cols, x.begin() + (t + 1) * cols);
        for (int n_threads : {1, 3}) {
          const std::vector<float> y = RunMatMul(m.w, x_t, 1, n_threads, isa);
          for (int64_t r = 0; r < rows; ++r) {
            ASSERT_EQ(Bits(y[r]), Bits(base[t * rows + r])) << what << " token " << t << " row " << r;
          }
        }
      }
    }
  }
}

// Shapes that cross the internal row and token tiles, and the smallest ones.
TEST(MatMulTest, OddShapesAndLongBatches) {
  std::mt19937 rng(13);
  struct Shape {
    TensorType type;
    int64_t rows, cols, n_tokens;
  };
  const Shape shapes[] = {
      {TensorType::kQ4_1, 67, 1536, 45}, {TensorType::kQ8_0, 3, 576, 70},
      {TensorType::kQ6_K, 5, 2304, 20},  {TensorType::kF32, 1, 1, 5},
      {TensorType::kF32, 9, 7, 2},       {TensorType::kF16, 13, 9, 17},
      {TensorType::kBF16, 1, 33, 1},     {TensorType::kQ5_0, 1, 32, 1},
      {TensorType::kQ4_0, 300, 96, 3},
  };
  for (const Shape& s : shapes) {
    const TestMatrix m = MakeMatrix(s.type, s.rows, s.cols, rng);
    const std::vector<float> x = RandomFloats(s.n_tokens * s.cols, rng);
    const Reference ref = NaiveReference(m.w, x, s.n_tokens);
    for (Isa isa : RunnableIsas()) {
      const std::string what = std::string(GetTensorTypeInfo(s.type).name) + " " + IsaName(isa) +
                               " " + std::to_string(s.rows) + "x" + std::to_string(s.cols);
      const std::vector<float> y = RunMatMul(m.w, x, s.n_tokens, 2, isa);
      for (int64_t i = 0; i < s.n_tokens * s.rows; ++i) {
        ASSERT_NEAR(y[i], ref.y[i], kRelativeTolerance * ref.magnitude[i] + 1e-30) << what << " " << i;
      }
      const int64_t last = s.n_tokens - 1;
      const std::vector<float> x_last(x.begin() + last * s.cols, x.end());
      const std::vector<float> y_last = RunMatMul(m.w, x_last, 1, 1, isa);
      for (int64_t r = 0; r < s.rows; ++r) {
        ASSERT_EQ(Bits(y_last[r]), Bits(y[last * s.rows + r])) << what << " row " << r;
      }
    }
  }
}

}  // namespace
}  // namespace pdserve::kernels
