// kernels/cuda/elementwise.h against plain-C++ references in double.
// Tolerances: f32 results rtol 1e-5 (atol 1e-6); bf16 results rtol 2^-8 (one bf16 ulp: the f32
// arithmetic may land across a rounding boundary) with atol 1e-6.

#include "kernels/cuda/elementwise.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "tests/cuda/cuda_test_util.h"

namespace pdserve::kernels::gpu {
namespace {

using testing::AllClose;
using testing::DeviceBuffer;
using testing::kBf16Rtol;
using testing::Rng;
using testing::Tolerance;

constexpr Tolerance kF32Tol{1e-6, 1e-5};
constexpr Tolerance kBf16Tol{1e-6, kBf16Rtol};

Tolerance TolFor(ActDtype d) { return d == ActDtype::kF32 ? kF32Tol : kBf16Tol; }
const char* Name(ActDtype d) { return d == ActDtype::kF32 ? "f32" : "bf16"; }

// Host activations in either dtype: the values are those the dtype can hold exactly.
struct HostAct {
  ActDtype dtype;
  std::vector<float> values;  // exact values
  std::vector<uint8_t> bytes;

  static HostAct Random(ActDtype dtype, size_t n, float lo, float hi, Rng& rng) {
    HostAct a{dtype, std::vector<float>(n), {}};
    for (auto& v : a.values) {
      v = rng.Uniform(lo, hi);
      if (dtype == ActDtype::kBF16) v = testing::RoundBf16(v);
    }
    a.Encode();
    return a;
  }
  void Encode() {
    if (dtype == ActDtype::kF32) {
      bytes.resize(values.size() * 4);
      std::memcpy(bytes.data(), values.data(), bytes.size());
    } else {
      bytes.resize(values.size() * 2);
      for (size_t i = 0; i < values.size(); ++i) {
        const uint16_t b = testing::FloatToBf16(values[i]);
        std::memcpy(bytes.data() + 2 * i, &b, 2);
      }
    }
  }
};

std::vector<float> Decode(ActDtype dtype, const std::vector<uint8_t>& bytes) {
  const size_t n = bytes.size() / (dtype == ActDtype::kF32 ? 4 : 2);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    if (dtype == ActDtype::kF32) {
      std::memcpy(&v[i], bytes.data() + 4 * i, 4);
    } else {
      uint16_t b;
      std::memcpy(&b, bytes.data() + 2 * i, 2);
      v[i] = testing::Bf16ToFloat(b);
    }
  }
  return v;
}

size_t Bytes(ActDtype d, size_t n) { return n * (d == ActDtype::kF32 ? 4 : 2); }

const ActDtype kDtypes[] = {ActDtype::kF32, ActDtype::kBF16};

// ---- RMSNorm ---------------------------------------------------------------------------------

TEST(RmsNormTest, MatchesReferenceOnOddShapesAndAllDtypes) {
  Rng rng(1);
  const struct {
    int64_t rows, dim;
  } shapes[] = {{1, 576}, {5, 1000}, {3, 4097}, {7, 33}, {2, 1}};
  for (const auto& s : shapes) {
    std::vector<float> weight(s.dim);
    for (auto& w : weight) w = rng.Uniform(0.5f, 1.5f);
    DeviceBuffer<float> d_weight(weight);
    for (ActDtype xt : kDtypes) {
      const HostAct x = HostAct::Random(xt, s.rows * s.dim, -2.f, 2.f, rng);
      std::vector<double> want(s.rows * s.dim);
      const float eps = 1e-5f;
      for (int64_t r = 0; r < s.rows; ++r) {
        double ss = 0;
        for (int64_t i = 0; i < s.dim; ++i) ss += double(x.values[r * s.dim + i]) * x.values[r * s.dim + i];
        const double inv = 1.0 / std::sqrt(ss / s.dim + eps);
        for (int64_t i = 0; i < s.dim; ++i) want[r * s.dim + i] = x.values[r * s.dim + i] * inv * weight[i];
      }
      DeviceBuffer<uint8_t> d_x(x.bytes);
      for (ActDtype ot : kDtypes) {
        SCOPED_TRACE(::testing::Message() << "rows " << s.rows << " dim " << s.dim << " x "
                                          << Name(xt) << " out " << Name(ot));
        DeviceBuffer<uint8_t> d_out(Bytes(ot, s.rows * s.dim));
        EXPECT_LAUNCH_OK(RmsNorm(d_x.get(), xt, d_weight.get(), s.rows, s.dim, eps, d_out.get(),
                                 ot, nullptr));
        EXPECT_TRUE(AllClose(Decode(ot, d_out.Download()), want, TolFor(ot)));
      }
      // In place.
      DeviceBuffer<uint8_t> d_inplace(x.bytes);
      EXPECT_LAUNCH_OK(RmsNorm(d_inplace.get(), xt, d_weight.get(), s.rows, s.dim, eps,
                               d_inplace.get(), xt, nullptr));
      EXPECT_TRUE(AllClose(Decode(xt, d_inplace.Download()), want, TolFor(xt)))
          << "in place, " << Name(xt);
    }
  }
}

// ---- RoPE ------------------------------------------------------------------------------------

TEST(RopeTest, RotatesInterleavedPairsOfStridedRows) {
  Rng rng(2);
  const struct {
    int64_t rows;
    int n_heads, head_dim, rotary_dim, pad;
    float base;
  } cases[] = {
      {7, 5, 64, 64, 17, 10000.f},   // fused-QKV-like row with a tail that must stay untouched
      {3, 3, 96, 32, 0, 500000.f},   // partial rotation
      {33, 12, 64, 64, 192, 100000.f},
      {1, 1, 2, 2, 0, 10000.f},
  };
  for (const auto& c : cases) {
    const int64_t stride = static_cast<int64_t>(c.n_heads) * c.head_dim + c.pad;
    std::vector<int32_t> positions(c.rows);
    for (int64_t r = 0; r < c.rows; ++r) positions[r] = r == 0 ? 0 : rng.Int(1, 40000);
    DeviceBuffer<int32_t> d_pos(positions);
    for (ActDtype dt : kDtypes) {
      SCOPED_TRACE(::testing::Message() << "rows " << c.rows << " heads " << c.n_heads << " hd "
                                        << c.head_dim << " rot " << c.rotary_dim << " "
                                        << Name(dt));
      const HostAct x = HostAct::Random(dt, c.rows * stride, -3.f, 3.f, rng);
      std::vector<double> want(x.values.begin(), x.values.end());
      for (int64_t r = 0; r < c.rows; ++r) {
        for (int h = 0; h < c.n_heads; ++h) {
          for (int i = 0; 2 * i < c.rotary_dim; ++i) {
            const double angle =
                positions[r] * std::pow(double(c.base), -2.0 * i / c.rotary_dim);
            const int64_t at = r * stride + int64_t(h) * c.head_dim + 2 * i;
            const double v0 = x.values[at];
            const double v1 = x.values[at + 1];
            want[at] = v0 * std::cos(angle) - v1 * std::sin(angle);
            want[at + 1] = v0 * std::sin(angle) + v1 * std::cos(angle);
          }
        }
      }
      DeviceBuffer<uint8_t> d_x(x.bytes);
      EXPECT_LAUNCH_OK(RopeInterleaved(d_x.get(), dt, c.rows, stride, c.n_heads, c.head_dim,
                                       c.rotary_dim, d_pos.get(), c.base, nullptr));
      EXPECT_TRUE(AllClose(Decode(dt, d_x.Download()), want, TolFor(dt)));
    }
  }
}

// ---- SwiGLU ----------------------------------------------------------------------------------

TEST(SwiGluTest, FusedGateUpLayout) {
  Rng rng(3);
  const struct {
    int64_t rows, hidden;
  } shapes[] = {{1, 1536}, {5, 1537}, {32, 100}, {3, 1}};
  for (const auto& s : shapes) {
    for (ActDtype dt : kDtypes) {
      SCOPED_TRACE(::testing::Message() << "rows " << s.rows << " hidden " << s.hidden << " "
                                        << Name(dt));
      const HostAct gu = HostAct::Random(dt, s.rows * 2 * s.hidden, -6.f, 6.f, rng);
      std::vector<double> want(s.rows * s.hidden);
      for (int64_t r = 0; r < s.rows; ++r) {
        for (int64_t i = 0; i < s.hidden; ++i) {
          const double g = gu.values[r * 2 * s.hidden + i];
          const double u = gu.values[r * 2 * s.hidden + s.hidden + i];
          want[r * s.hidden + i] = g / (1.0 + std::exp(-g)) * u;
        }
      }
      DeviceBuffer<uint8_t> d_gu(gu.bytes);
      DeviceBuffer<uint8_t> d_out(Bytes(dt, s.rows * s.hidden));
      const size_t up_offset = Bytes(dt, s.hidden);
      EXPECT_LAUNCH_OK(SwiGlu(d_gu.get(), d_gu.get() + up_offset, 2 * s.hidden, s.rows, s.hidden,
                              d_out.get(), s.hidden, dt, nullptr));
      EXPECT_TRUE(AllClose(Decode(dt, d_out.Download()), want, TolFor(dt)));
    }
  }
}

// ---- Residual add ----------------------------------------------------------------------------

TEST(AddInPlaceTest, AllDtypeCombinations) {
  Rng rng(4);
  const int64_t n = 1001;
  for (ActDtype xt : kDtypes) {
    for (ActDtype yt : kDtypes) {
      SCOPED_TRACE(::testing::Message() << "x " << Name(xt) << " y " << Name(yt));
      const HostAct x = HostAct::Random(xt, n, -10.f, 10.f, rng);
      const HostAct y = HostAct::Random(yt, n, -1.f, 1.f, rng);
      std::vector<double> want(n);
      for (int64_t i = 0; i < n; ++i) want[i] = double(x.values[i]) + y.values[i];
      DeviceBuffer<uint8_t> d_x(x.bytes);
      DeviceBuffer<uint8_t> d_y(y.bytes);
      EXPECT_LAUNCH_OK(AddInPlace(d_x.get(), xt, d_y.get(), yt, n, nullptr));
      EXPECT_TRUE(AllClose(Decode(xt, d_x.Download()), want,
                           xt == ActDtype::kF32 ? Tolerance{0, 1e-6} : kBf16Tol));
    }
  }
}

TEST(ElementwiseArgs, RejectsBadInputWithoutLaunching) {
  DeviceBuffer<float> buf(256);
  DeviceBuffer<int32_t> pos(4);
  EXPECT_REJECTED(RmsNorm(buf.get(), ActDtype::kF32, buf.get(), 1, 0, 1e-5f, buf.get(),
                          ActDtype::kF32, nullptr));
  EXPECT_REJECTED(RmsNorm(buf.get(), ActDtype::kF32, buf.get(), 1, 8, 1e-5f, buf.get(),
                          ActDtype::kBF16, nullptr));  // aliasing with another dtype
  EXPECT_REJECTED(RopeInterleaved(buf.get(), ActDtype::kF32, 1, 64, 1, 64, 63, pos.get(),
                                  10000.f, nullptr));  // odd rotary_dim
  EXPECT_REJECTED(RopeInterleaved(buf.get(), ActDtype::kF32, 1, 32, 1, 64, 64, pos.get(),
                                  10000.f, nullptr));  // stride < head
  EXPECT_REJECTED(SwiGlu(buf.get(), buf.get(), 4, 1, 8, buf.get(), 8, ActDtype::kF32, nullptr));
  EXPECT_REJECTED(AddInPlace(nullptr, ActDtype::kF32, buf.get(), ActDtype::kF32, 4, nullptr));
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
}  // namespace pdserve::kernels::gpu
