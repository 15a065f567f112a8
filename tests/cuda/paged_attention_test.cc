// kernels/cuda/paged_attention.h against a plain-C++ attention in double over the same pool
// bytes: decode (flash-decoding splits, GQA ratios 1, 3, 8 and 12, odd context lengths and block
// sizes, f32/f16/bf16 KV) and causal prefill (with and without a cached prefix), with bf16 q/out
// and, on a subset of the shapes, with f32 q/out.
// Tolerance, bf16 q/out: |got - want| <= 5e-4 + (2^-8 + 3e-5)·|want|: the bf16 output rounding
// plus f32 softmax sums; V is in [-1, 1], so a lost or extra position shows far above it.
// f32 q/out: |got - want| <= 2e-5 + 2e-5·|want|: f32 scores, softmax and sums only. The f32 q
// values are not bf16 values, so rounding q (or out) to bf16 anywhere would show far above it.

#include "kernels/cuda/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/device.h"
#include "tests/cuda/cuda_test_util.h"

namespace pdserve::kernels::gpu {
namespace {

using testing::AllClose;
using testing::DeviceBuffer;
using testing::Rng;
using testing::Tolerance;

constexpr Tolerance kAttentionTol{5e-4, testing::kBf16Rtol};
constexpr Tolerance kF32AttentionTol{2e-5, 2e-5};
constexpr uint16_t kBf16NaN = 0x7fc0;

const char* Name(KvDtype d) {
  return d == KvDtype::kF32 ? "f32" : (d == KvDtype::kF16 ? "f16" : "bf16");
}

// A pool of random K/V (values in [-1, 1]) of two layers; the tests use layer 1, so the slab
// offsets matter. Values are read back from the bytes, as the kernels see them.
class Pool {
 public:
  Pool(int64_t n_blocks, int block_size, int n_kv_heads, int head_dim, KvDtype dtype, Rng& rng)
      : kv_(MakePagedKvView(nullptr, n_blocks, /*n_layers=*/2, /*layer=*/1, block_size,
                            n_kv_heads, head_dim, dtype)),
        bytes_(n_blocks * kv_.block_bytes) {
    const int eb = dtype == KvDtype::kF32 ? 4 : 2;
    for (size_t i = 0; i < bytes_.size(); i += eb) {
      const float v = rng.Uniform(-1.f, 1.f);
      if (dtype == KvDtype::kF32) {
        std::memcpy(&bytes_[i], &v, 4);
      } else {
        const uint16_t b =
            dtype == KvDtype::kF16 ? testing::FloatToHalf(v) : testing::FloatToBf16(v);
        std::memcpy(&bytes_[i], &b, 2);
      }
    }
    device_ = std::make_unique<DeviceBuffer<uint8_t>>(bytes_);
    kv_.pool = device_->get();
  }

  const PagedKvView& kv() const { return kv_; }

  // Element d of kv head h at position `in_block` of block `id`, K (v = false) or V.
  double Value(int32_t id, int in_block, int h, int d, bool v) const {
    if (id < 0 || id >= kv_.n_blocks) return 0.0;  // the kernels' contract: reads as zeros
    const int eb = kv_.dtype == KvDtype::kF32 ? 4 : 2;
    const size_t at = static_cast<size_t>(id) * kv_.block_bytes +
                      (v ? kv_.v_offset_bytes : kv_.k_offset_bytes) +
                      ((static_cast<size_t>(in_block) * kv_.n_kv_heads + h) * kv_.head_dim + d) * eb;
    if (kv_.dtype == KvDtype::kF32) {
      float f;
      std::memcpy(&f, &bytes_[at], 4);
      return f;
    }
    uint16_t b;
    std::memcpy(&b, &bytes_[at], 2);
    return kv_.dtype == KvDtype::kF16 ? testing::HalfToFloat(b) : testing::Bf16ToFloat(b);
  }

 private:
  PagedKvView kv_;
  std::vector<uint8_t> bytes_;
  std::unique_ptr<DeviceBuffer<uint8_t>> device_;
};

// out (head_dim) = softmax(scale · q·K[0, n_ctx)ᵀ) · V for kv head kvh of a sequence.
void ReferenceAttention(const Pool& pool, const int32_t* table, int64_t n_ctx, int kvh,
                        const float* q, float scale, double* out) {
  const PagedKvView& kv = pool.kv();
  const int hd = kv.head_dim;
  std::fill(out, out + hd, 0.0);
  if (n_ctx == 0) return;
  std::vector<double> s(n_ctx);
  double m = -INFINITY;
  for (int64_t p = 0; p < n_ctx; ++p) {
    const int32_t id = table[p / kv.block_size];
    double dot = 0;
    for (int d = 0; d < hd; ++d) dot += double(q[d]) * pool.Value(id, p % kv.block_size, kvh, d, false);
    s[p] = dot * scale;
    m = std::max(m, s[p]);
  }
  double l = 0;
  for (auto& x : s) l += (x = std::exp(x - m));
  for (int64_t p = 0; p < n_ctx; ++p) {
    const int32_t id = table[p / kv.block_size];
    for (int d = 0; d < hd; ++d) out[d] += s[p] / l * pool.Value(id, p % kv.block_size, kvh, d, true);
  }
}

// The q/out element types of the launchers: bf16 (host bits uint16_t) or f32. Queries are random
// (n_rows, stride), |q| <= 6: scores spread over several units, so that the softmax is peaked
// and the max/rescale logic matters. Outputs start as NaN, so that unwritten elements show.
struct Bf16Io {
  using Host = uint16_t;
  using Device = __nv_bfloat16;
  static constexpr Tolerance kTol = kAttentionTol;
  static std::vector<Host> RandomQ(int64_t n_rows, int64_t stride, Rng& rng) {
    return rng.Bf16Vector(n_rows * stride, -6.f, 6.f);
  }
  static float ToFloat(Host h) { return testing::Bf16ToFloat(h); }
  static Host Pad() { return kBf16NaN; }
  static bool IsPad(Host h) { return h == kBf16NaN; }
};

struct F32Io {
  using Host = float;
  using Device = float;
  static constexpr Tolerance kTol = kF32AttentionTol;
  static std::vector<Host> RandomQ(int64_t n_rows, int64_t stride, Rng& rng) {
    std::vector<float> q(n_rows * stride);
    for (float& x : q) x = rng.Uniform(-6.f, 6.f);
    return q;
  }
  static float ToFloat(Host h) { return h; }
  static Host Pad() { return std::nanf(""); }
  static bool IsPad(Host h) { return std::isnan(h); }
};

// Positions [0, n_ctx) of each sequence in distinct random blocks of the pool.
std::vector<int32_t> RandomTables(const std::vector<int>& ctxs, int block_size, int64_t stride,
                                  int64_t n_blocks, Rng& rng) {
  std::vector<int32_t> ids(n_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng.gen());
  std::vector<int32_t> tables(ctxs.size() * stride, -7);  // entries past the context: invalid
  size_t next = 0;
  for (size_t s = 0; s < ctxs.size(); ++s) {
    const int64_t n = (ctxs[s] + block_size - 1) / block_size;
    for (int64_t b = 0; b < n; ++b) tables[s * stride + b] = ids.at(next++);
  }
  return tables;
}

// ---- Decode ----------------------------------------------------------------------------------

struct DecodeCase {
  const char* name;
  KvDtype dtype;
  int n_kv_heads, group, head_dim, block_size;
  std::vector<int> ctxs;  // one sequence each
  int split_tokens;       // 0: the planner's choice
  bool invalid_block = false;  // one table entry of sequence 0 made invalid (reads as zeros)
};

template <typename Io>
void CheckDecode(const DecodeCase& c) {
  using Host = typename Io::Host;
  using Device = typename Io::Device;
  Rng rng(static_cast<uint32_t>(std::hash<std::string>{}(c.name)));
  const int n_heads = c.n_kv_heads * c.group;
  const int hd = c.head_dim;
  const int n_seqs = static_cast<int>(c.ctxs.size());
  const int64_t max_ctx = *std::max_element(c.ctxs.begin(), c.ctxs.end()) + 3;
  const int64_t table_stride = (max_ctx + c.block_size - 1) / c.block_size + 1;
  int64_t blocks_needed = 0;
  for (int ctx : c.ctxs) blocks_needed += (ctx + c.block_size - 1) / c.block_size;
  const int64_t n_blocks = blocks_needed + 3;
  Pool pool(n_blocks, c.block_size, c.n_kv_heads, hd, c.dtype, rng);
  std::vector<int32_t> tables = RandomTables(c.ctxs, c.block_size, table_stride, n_blocks, rng);
  if (c.invalid_block) tables[1] = -1;  // sequence 0, positions [block_size, 2 * block_size)

  const int64_t q_stride = static_cast<int64_t>(n_heads + 2 * c.n_kv_heads) * hd;  // fused QKV
  const int64_t out_stride = static_cast<int64_t>(n_heads) * hd + 8;
  const std::vector<Host> q = Io::RandomQ(n_seqs, q_stride, rng);
  std::vector<float> qf(q.size());
  std::transform(q.begin(), q.end(), qf.begin(), Io::ToFloat);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  const PagedDecodeShape shape{n_seqs, n_heads, c.n_kv_heads, hd, max_ctx};
  const PagedDecodePlan plan =
      PlanPagedAttentionDecode(shape, CurrentDeviceMultiprocessors(), c.split_tokens);
  SCOPED_TRACE(::testing::Message() << c.name << ": " << Name(c.dtype) << " heads " << n_heads
                                    << "/" << c.n_kv_heads << " hd " << hd << " block "
                                    << c.block_size << " split " << plan.split_tokens << " x "
                                    << plan.n_splits);
  DeviceBuffer<Host> d_q(q);
  DeviceBuffer<int32_t> d_tables(tables);
  DeviceBuffer<int32_t> d_ctx(std::vector<int32_t>(c.ctxs.begin(), c.ctxs.end()));
  // The counter region zeroed, as the contract asks; garbage past it, as the partial sums of
  // earlier calls of other shapes would leave there.
  std::vector<uint8_t> ws(plan.workspace_bytes, 0xff);
  std::fill_n(ws.begin(), std::min<size_t>(ws.size(), sizeof(unsigned) * kMaxDecodeUnits), 0);
  DeviceBuffer<uint8_t> d_ws(ws);
  // One call into a fresh, padded output.
  auto run = [&] {
    DeviceBuffer<Host> d_out(std::vector<Host>(n_seqs * out_stride, Io::Pad()));
    EXPECT_LAUNCH_OK(PagedAttentionDecode(
        reinterpret_cast<const Device*>(d_q.get()), q_stride, shape, pool.kv(), d_tables.get(),
        table_stride, d_ctx.get(), scale, plan, d_ws.get(), plan.workspace_bytes,
        reinterpret_cast<Device*>(d_out.get()), out_stride, nullptr));
    return d_out.Download();
  };
  const std::vector<Host> out = run();
  // Again with the same workspace: the first call must have left its split counters at zero.
  const std::vector<Host> out2 = run();
  ASSERT_EQ(out2.size(), out.size());
  EXPECT_EQ(std::memcmp(out2.data(), out.data(), out.size() * sizeof(Host)), 0)
      << "a second call with the same workspace differs";

  std::vector<float> got;
  std::vector<double> want;
  std::vector<double> ref(hd);
  for (int s = 0; s < n_seqs; ++s) {
    for (int h = 0; h < n_heads; ++h) {
      ReferenceAttention(pool, &tables[s * table_stride], c.ctxs[s], h / c.group,
                         &qf[s * q_stride + h * hd], scale, ref.data());
      for (int d = 0; d < hd; ++d) {
        got.push_back(Io::ToFloat(out[s * out_stride + h * hd + d]));
        want.push_back(ref[d]);
      }
    }
    for (int64_t i = static_cast<int64_t>(n_heads) * hd; i < out_stride; ++i) {
      ASSERT_TRUE(Io::IsPad(out[s * out_stride + i]))
          << "row padding of sequence " << s << " written";
    }
  }
  EXPECT_TRUE(AllClose(got, want, Io::kTol));
}

class DecodeTest : public ::testing::TestWithParam<DecodeCase> {};

TEST_P(DecodeTest, MatchesReference) { CheckDecode<Bf16Io>(GetParam()); }

INSTANTIATE_TEST_SUITE_P(
    Shapes, DecodeTest,
    ::testing::Values(
        // SmolLM2's heads (9 q, 3 kv, 64), contexts around block and split edges, planner's split.
        DecodeCase{"SmolLM2_bf16", KvDtype::kBF16, 3, 3, 64, 16, {1, 16, 17, 100, 1000, 4100, 0, 33}, 0},
        DecodeCase{"SmolLM2_f16", KvDtype::kF16, 3, 3, 64, 16, {4100, 2, 511, 15}, 0},
        DecodeCase{"SmolLM2_f32", KvDtype::kF32, 3, 3, 64, 16, {700, 1, 2049}, 0},
        // Every split shorter than a block and not a multiple of it.
        DecodeCase{"Small_bf16_g3_split37", KvDtype::kBF16, 3, 3, 64, 16, {0, 1, 17, 40, 75}, 37},
        DecodeCase{"Small_f32_g8_block7", KvDtype::kF32, 1, 8, 64, 7, {1, 7, 8, 50}, 16},
        DecodeCase{"Small_f16_g1_invalid_block", KvDtype::kF16, 2, 1, 32, 4, {30, 9}, 8, true},
        DecodeCase{"g1_hd128_split64", KvDtype::kBF16, 4, 1, 128, 16, {5, 300, 2048}, 64},
        DecodeCase{"g8_block7_split37", KvDtype::kF16, 2, 8, 64, 7, {1, 7, 8, 500, 1500}, 37},
        DecodeCase{"g12_hd256_two_head_chunks", KvDtype::kBF16, 1, 12, 256, 16, {3, 1025}, 1024},
        DecodeCase{"hd40_block5", KvDtype::kF32, 2, 3, 40, 5, {11, 77, 2222}, 0},
        DecodeCase{"one_split", KvDtype::kBF16, 3, 3, 64, 16, {1, 200, 1021}, 1024},
        DecodeCase{"g2_hd96_block32", KvDtype::kBF16, 2, 2, 96, 32, {64, 65, 3000}, 0}),
    [](const auto& info) { return std::string(info.param.name); });

// f32 q and out: the same kernels, no rounding of q or out.
class DecodeF32Test : public ::testing::TestWithParam<DecodeCase> {};

TEST_P(DecodeF32Test, MatchesReference) { CheckDecode<F32Io>(GetParam()); }

INSTANTIATE_TEST_SUITE_P(
    Shapes, DecodeF32Test,
    ::testing::Values(
        DecodeCase{"g1_f16_block5_split37", KvDtype::kF16, 2, 1, 64, 5, {1, 38, 300}, 37},
        DecodeCase{"g3_bf16_split64", KvDtype::kBF16, 3, 3, 64, 16, {0, 17, 75, 1000}, 64},
        DecodeCase{"g8_f32_block7_split37", KvDtype::kF32, 1, 8, 64, 7, {1, 8, 50, 500}, 37},
        DecodeCase{"g3_hd40_block5_one_split", KvDtype::kF32, 2, 3, 40, 5, {0, 11, 77}, 1024},
        DecodeCase{"g8_hd128_planner", KvDtype::kBF16, 2, 8, 128, 16, {33, 2049}, 0}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(DecodePlanTest, SplitsCoverTheContext) {
  for (int64_t ctx : {1, 100, 4096, 32768}) {
    for (int split : {0, 1, 37, 1024, 5000}) {
      const PagedDecodeShape shape{32, 9, 3, 64, ctx};
      const PagedDecodePlan plan = PlanPagedAttentionDecode(shape, 132, split);
      EXPECT_GE(plan.split_tokens, 1);
      EXPECT_LE(plan.split_tokens, kMaxDecodeSplitTokens);
      EXPECT_GE(int64_t(plan.n_splits) * plan.split_tokens, ctx);
      EXPECT_LT(int64_t(plan.n_splits - 1) * plan.split_tokens, ctx);
      EXPECT_EQ(plan.workspace_bytes == 0, plan.n_splits == 1);
    }
  }
}

// ---- Prefill ---------------------------------------------------------------------------------

struct PrefillCase {
  const char* name;
  KvDtype dtype;
  int n_kv_heads, group, head_dim, block_size;
  int64_t q_start;
  int n_q;
};

template <typename Io>
void CheckPrefill(const PrefillCase& c) {
  using Host = typename Io::Host;
  using Device = typename Io::Device;
  Rng rng(static_cast<uint32_t>(std::hash<std::string>{}(c.name)));
  const int n_heads = c.n_kv_heads * c.group;
  const int hd = c.head_dim;
  const int64_t n_ctx = c.q_start + c.n_q;
  const int64_t n_table = (n_ctx + c.block_size - 1) / c.block_size;
  const int64_t n_blocks = n_table + 2;
  Pool pool(n_blocks, c.block_size, c.n_kv_heads, hd, c.dtype, rng);
  const std::vector<int32_t> table =
      RandomTables({static_cast<int>(n_ctx)}, c.block_size, n_table, n_blocks, rng);
  const int64_t q_stride = static_cast<int64_t>(n_heads + 2 * c.n_kv_heads) * hd;
  const int64_t out_stride = static_cast<int64_t>(n_heads) * hd + 8;
  const std::vector<Host> q = Io::RandomQ(c.n_q, q_stride, rng);
  std::vector<float> qf(q.size());
  std::transform(q.begin(), q.end(), qf.begin(), Io::ToFloat);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  SCOPED_TRACE(::testing::Message() << c.name << ": " << Name(c.dtype) << " heads " << n_heads
                                    << "/" << c.n_kv_heads << " hd " << hd << " block "
                                    << c.block_size << " q [" << c.q_start << ", " << n_ctx << ")");

  DeviceBuffer<Host> d_q(q);
  DeviceBuffer<int32_t> d_table(table);
  DeviceBuffer<Host> d_out(std::vector<Host>(c.n_q * out_stride, Io::Pad()));
  EXPECT_LAUNCH_OK(PagedAttentionPrefill(reinterpret_cast<const Device*>(d_q.get()), q_stride,
                                         c.n_q, c.q_start, n_heads, pool.kv(), d_table.get(),
                                         scale, reinterpret_cast<Device*>(d_out.get()),
                                         out_stride, nullptr));
  const std::vector<Host> out = d_out.Download();

  std::vector<float> got;
  std::vector<double> want;
  std::vector<double> ref(hd);
  for (int i = 0; i < c.n_q; ++i) {
    for (int h = 0; h < n_heads; ++h) {
      ReferenceAttention(pool, table.data(), c.q_start + i + 1, h / c.group,
                         &qf[i * q_stride + h * hd], scale, ref.data());
      for (int d = 0; d < hd; ++d) {
        got.push_back(Io::ToFloat(out[i * out_stride + h * hd + d]));
        want.push_back(ref[d]);
      }
    }
    for (int64_t k = static_cast<int64_t>(n_heads) * hd; k < out_stride; ++k) {
      ASSERT_TRUE(Io::IsPad(out[i * out_stride + k])) << "row padding of token " << i << " written";
    }
  }
  EXPECT_TRUE(AllClose(got, want, Io::kTol));
}

class PrefillTest : public ::testing::TestWithParam<PrefillCase> {};

TEST_P(PrefillTest, MatchesCausalReference) { CheckPrefill<Bf16Io>(GetParam()); }

INSTANTIATE_TEST_SUITE_P(
    Shapes, PrefillTest,
    ::testing::Values(PrefillCase{"Small_SmolLM2_bf16", KvDtype::kBF16, 3, 3, 64, 16, 0, 37},
                      PrefillCase{"Small_g8_f32_block7", KvDtype::kF32, 1, 8, 64, 7, 0, 45},
                      PrefillCase{"g1_f16_prefix20", KvDtype::kF16, 2, 1, 128, 16, 20, 50},
                      PrefillCase{"g3_hd256_prefix5", KvDtype::kBF16, 2, 3, 256, 16, 5, 33},
                      PrefillCase{"hd40_block5_prefix300", KvDtype::kBF16, 3, 3, 40, 5, 300, 70},
                      PrefillCase{"g12_f16", KvDtype::kF16, 1, 12, 64, 16, 0, 40},
                      PrefillCase{"SmolLM2_long", KvDtype::kBF16, 3, 3, 64, 16, 0, 700}),
    [](const auto& info) { return std::string(info.param.name); });

// f32 q and out: the same kernel, no rounding of q or out.
class PrefillF32Test : public ::testing::TestWithParam<PrefillCase> {};

TEST_P(PrefillF32Test, MatchesCausalReference) { CheckPrefill<F32Io>(GetParam()); }

INSTANTIATE_TEST_SUITE_P(
    Shapes, PrefillF32Test,
    ::testing::Values(PrefillCase{"g1_f16_prefix20", KvDtype::kF16, 2, 1, 128, 16, 20, 50},
                      PrefillCase{"g3_bf16_hd40_block5_prefix7", KvDtype::kBF16, 3, 3, 40, 5, 7,
                                  37},
                      PrefillCase{"g8_f32_block7", KvDtype::kF32, 1, 8, 64, 7, 0, 45}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(PagedAttentionArgs, RejectsBadInputWithoutLaunching) {
  DeviceBuffer<uint8_t> pool(1 << 16);
  DeviceBuffer<int32_t> ints(64);
  DeviceBuffer<uint16_t> q(4096);
  auto* qp = reinterpret_cast<__nv_bfloat16*>(q.get());
  PagedKvView kv = MakePagedKvView(pool.get(), 4, 1, 0, 16, 2, 64, KvDtype::kBF16);
  const PagedDecodeShape shape{1, 4, 2, 64, 32};
  const PagedDecodePlan plan = PlanPagedAttentionDecode(shape, 132, 0);
  EXPECT_EQ(plan.n_splits, 1);
  // n_heads not a multiple of n_kv_heads.
  EXPECT_REJECTED(PagedAttentionDecode(qp, 256, PagedDecodeShape{1, 3, 2, 64, 32}, kv, ints.get(),
                                       2, ints.get(), 0.125f, plan, nullptr, 0, qp, 256, nullptr));
  // head_dim not a multiple of 8.
  PagedKvView bad = MakePagedKvView(pool.get(), 4, 1, 0, 16, 2, 60, KvDtype::kBF16);
  EXPECT_REJECTED(PagedAttentionDecode(qp, 256, PagedDecodeShape{1, 4, 2, 60, 32}, bad,
                                       ints.get(), 2, ints.get(), 0.125f, plan, nullptr, 0, qp,
                                       256, nullptr));
  // Block table too narrow for max_ctx.
  EXPECT_REJECTED(PagedAttentionDecode(qp, 256, shape, kv, ints.get(), 1, ints.get(), 0.125f,
                                       plan, nullptr, 0, qp, 256, nullptr));
  // Missing workspace for a multi-split plan.
  const PagedDecodePlan split_plan = PlanPagedAttentionDecode(shape, 132, 8);
  EXPECT_REJECTED(PagedAttentionDecode(qp, 256, shape, kv, ints.get(), 2, ints.get(), 0.125f,
                                       split_plan, nullptr, 0, qp, 256, nullptr));
  // Misaligned q.
  EXPECT_REJECTED(PagedAttentionDecode(qp + 1, 256, shape, kv, ints.get(), 2, ints.get(), 0.125f,
                                       plan, nullptr, 0, qp, 256, nullptr));
  EXPECT_REJECTED(PagedAttentionPrefill(qp, 100, 2, 0, 4, kv, ints.get(), 0.125f, qp, 256,
                                        nullptr));  // q stride < n_heads * head_dim
  // f32 q/out: the same checks; q 16-byte aligned with a row stride a multiple of 8 elements.
  DeviceBuffer<float> qf(4096);
  float* qfp = qf.get();
  EXPECT_REJECTED(PagedAttentionDecode(qfp + 1, 256, shape, kv, ints.get(), 2, ints.get(), 0.125f,
                                       plan, nullptr, 0, qfp, 256, nullptr));  // misaligned q
  EXPECT_REJECTED(PagedAttentionDecode(qfp, 260, shape, kv, ints.get(), 2, ints.get(), 0.125f,
                                       plan, nullptr, 0, qfp, 256, nullptr));  // q stride % 8
  EXPECT_REJECTED(PagedAttentionDecode(qfp, 256, shape, kv, ints.get(), 2, ints.get(), 0.125f,
                                       split_plan, nullptr, 0, qfp, 256, nullptr));  // workspace
  EXPECT_REJECTED(PagedAttentionPrefill(qfp, 100, 2, 0, 4, kv, ints.get(), 0.125f, qfp, 256,
                                        nullptr));  // q stride < n_heads * head_dim
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
}  // namespace pdserve::kernels::gpu
