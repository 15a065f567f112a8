// The decoder's element-wise ops against their textbook formulas in double precision.

#include "kernels/cpu/ops.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/kernels/kernel_test_util.h"

namespace pdserve::kernels {
namespace {

using testing::RandomFloats;

TEST(OpsTest, RmsNorm) {
  std::mt19937 rng(1);
  const int64_t n = 577;
  const std::vector<float> x = RandomFloats(n, rng), weight = RandomFloats(n, rng);
  const float eps = 1e-5f;
  double mean_square = 0;
  for (float v : x) mean_square += static_cast<double>(v) * v;
  mean_square /= n;
  std::vector<float> out(n);
  RmsNorm(x.data(), weight.data(), n, eps, out.data());
  for (int64_t i = 0; i < n; ++i) {
    const double want = x[i] / std::sqrt(mean_square + eps) * weight[i];
    EXPECT_NEAR(out[i], want, 1e-6 * std::fabs(want) + 1e-7) << i;
  }
  std::vector<float> in_place = x;  // out may alias x
  RmsNorm(in_place.data(), weight.data(), n, eps, in_place.data());
  EXPECT_EQ(in_place, out);
}

TEST(OpsTest, RopeInterleaved) {
  std::mt19937 rng(2);
  const int n_heads = 3, head_dim = 16, rotary_dim = 12;
  const float base = 10000.0f;
  for (int64_t pos : {0, 1, 17, 4095}) {
    const std::vector<float> v = RandomFloats(n_heads * head_dim, rng);
    std::vector<float> got = v;
    RopeInterleaved(got.data(), n_heads, head_dim, rotary_dim, pos, base);
    for (int h = 0; h < n_heads; ++h) {
      for (int i = 0; i < head_dim / 2; ++i) {
        const float v0 = v[h * head_dim + 2 * i], v1 = v[h * head_dim + 2 * i + 1];
        double w0 = v0, w1 = v1;
        if (2 * i < rotary_dim) {  // pairs beyond rotary_dim are left as they are
          const double angle = pos * std::pow(static_cast<double>(base), -2.0 * i / rotary_dim);
          w0 = v0 * std::cos(angle) - v1 * std::sin(angle);
          w1 = v0 * std::sin(angle) + v1 * std::cos(angle);
        }
        EXPECT_NEAR(got[h * head_dim + 2 * i], w0, 1e-6) << pos << " " << h << " " << i;
        EXPECT_NEAR(got[h * head_dim + 2 * i + 1], w1, 1e-6) << pos << " " << h << " " << i;
      }
    }
  }
}

TEST(OpsTest, SwiGlu) {
  std::mt19937 rng(3);
  const int64_t n = 100;
  std::vector<float> gate = RandomFloats(n, rng);
  gate[0] = -30.0f;
  gate[1] = 30.0f;
  const std::vector<float> original = gate, up = RandomFloats(n, rng);
  SwiGlu(gate.data(), up.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    const double g = original[i];
    const double want = g / (1.0 + std::exp(-g)) * up[i];
    EXPECT_NEAR(gate[i], want, 1e-6 * std::fabs(want) + 1e-7) << i;
  }
}

TEST(OpsTest, Softmax) {
  std::mt19937 rng(4);
  for (int64_t n : {1, 2, 9, 1000}) {
    std::vector<float> x = RandomFloats(n, rng);
    for (float& v : x) v *= 20.0f;
    x[0] = 80.0f;  // exp would overflow without subtracting the max
    const std::vector<float> original = x;
    Softmax(x.data(), n);
    double sum = 0;
    for (float v : original) sum += std::exp(static_cast<double>(v) - 80.0);
    double total = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double want = std::exp(static_cast<double>(original[i]) - 80.0) / sum;
      EXPECT_NEAR(x[i], want, 1e-6 * want + 1e-12) << n << " " << i;
      total += x[i];
    }
    EXPECT_NEAR(total, 1.0, 1e-5);
  }
}

TEST(OpsTest, AddInPlace) {
  std::vector<float> x = {1, 2, 3}, y = {0.5f, -2, 10};
  AddInPlace(x.data(), y.data(), 3);
  EXPECT_EQ(x, (std::vector<float>{1.5f, 0, 13}));
}

}  // namespace
}  // namespace pdserve::kernels
