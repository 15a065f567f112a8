#include "common/kv/kv_layout.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace pdserve::kv {
namespace {

using kernels::KvDtype;

KvLayout MakeLayout(int layers, int kv_heads, int head_dim, int block_size, KvDtype dtype) {
  KvLayout layout;
  layout.n_layers = layers;
  layout.n_kv_heads = kv_heads;
  layout.head_dim = head_dim;
  layout.block_size = block_size;
  layout.dtype = dtype;
  return layout;
}

TEST(KvLayoutTest, DefaultsAreVersionOneDefaults) {
  KvLayout layout;
  EXPECT_EQ(kKvLayoutVersion, 1u);
  EXPECT_EQ(layout.block_size, 16);
  EXPECT_EQ(layout.dtype, KvDtype::kF32);
}

TEST(KvLayoutTest, ElementBytesPerDtype) {
  EXPECT_EQ(MakeLayout(1, 1, 1, 1, KvDtype::kF32).ElementBytes(), 4u);
  EXPECT_EQ(MakeLayout(1, 1, 1, 1, KvDtype::kF16).ElementBytes(), 2u);
  EXPECT_EQ(MakeLayout(1, 1, 1, 1, KvDtype::kBF16).ElementBytes(), 2u);
}

TEST(KvLayoutTest, BytesPerTokenIsTwoLayersHeadsHeadDimElem) {
  for (KvDtype dtype : {KvDtype::kF32, KvDtype::kF16, KvDtype::kBF16}) {
    for (int layers : {1, 2, 30}) {
      for (int kv_heads : {1, 3, 8}) {
        for (int head_dim : {1, 64, 128}) {
          for (int block_size : {1, 16, 32}) {
            const KvLayout layout = MakeLayout(layers, kv_heads, head_dim, block_size, dtype);
            const size_t elem = dtype == KvDtype::kF32 ? 4 : 2;
            const size_t expected = 2 * size_t(layers) * kv_heads * head_dim * elem;
            EXPECT_EQ(layout.BytesPerToken(), expected) << layout.DebugString();
            EXPECT_EQ(layout.SlabBytes(), size_t(block_size) * kv_heads * head_dim * elem);
            EXPECT_EQ(layout.BlockBytes(), layout.BytesPerToken() * block_size);
            EXPECT_EQ(layout.BlockBytes(), size_t(layers) * 2 * layout.SlabBytes());
          }
        }
      }
    }
  }
}

TEST(KvLayoutTest, SmolLm2Example) {
  // SmolLM2-135M: 30 layers, 3 KV heads of 64: 46,080 bytes per token in f32 (the doc's example).
  const KvLayout layout = MakeLayout(30, 3, 64, 16, KvDtype::kF32);
  EXPECT_EQ(layout.BytesPerToken(), 46080u);
  EXPECT_EQ(layout.BlockBytes(), 737280u);
}

TEST(KvLayoutTest, SlabsAreDisjointInsideTheBlockAndInDocumentedOrder) {
  for (KvDtype dtype : {KvDtype::kF32, KvDtype::kF16}) {
    const KvLayout layout = MakeLayout(5, 2, 8, 4, dtype);
    std::vector<std::pair<size_t, size_t>> ranges;  // [begin, end)
    for (int layer = 0; layer < layout.n_layers; ++layer) {
      EXPECT_EQ(layout.KSlabOffset(layer), size_t(layer) * 2 * layout.SlabBytes());
      EXPECT_EQ(layout.VSlabOffset(layer), layout.KSlabOffset(layer) + layout.SlabBytes());
      ranges.emplace_back(layout.KSlabOffset(layer), layout.KSlabOffset(layer) + layout.SlabBytes());
      ranges.emplace_back(layout.VSlabOffset(layer), layout.VSlabOffset(layer) + layout.SlabBytes());
    }
    std::sort(ranges.begin(), ranges.end());
    size_t covered = 0;
    for (size_t i = 0; i < ranges.size(); ++i) {
      EXPECT_LE(ranges[i].second, layout.BlockBytes());
      if (i > 0) {
        EXPECT_LE(ranges[i - 1].second, ranges[i].first);
      }
      covered += ranges[i].second - ranges[i].first;
    }
    // Densely packed: the slabs tile the block exactly.
    EXPECT_EQ(covered, layout.BlockBytes());
    EXPECT_EQ(ranges.front().first, 0u);
  }
}

TEST(KvLayoutTest, ElementOffsetMatchesKernelAddressing) {
  // block[layer][kv][token][kv_head][head_dim]: the kernel's addressing inside a K slab
  // (kernels/cpu/paged_attention.h) plus the slab offsets give the flat row-major index.
  const KvLayout layout = MakeLayout(3, 2, 4, 8, KvDtype::kF32);
  const size_t elem = layout.ElementBytes();
  for (int layer = 0; layer < layout.n_layers; ++layer) {
    for (int kv = 0; kv < 2; ++kv) {
      for (int t = 0; t < layout.block_size; ++t) {
        for (int h = 0; h < layout.n_kv_heads; ++h) {
          const size_t slab = kv == 0 ? layout.KSlabOffset(layer) : layout.VSlabOffset(layer);
          const size_t kernel_offset =
              slab + (size_t(t) * layout.n_kv_heads + h) * layout.head_dim * elem;
          const size_t flat_index =
              (((size_t(layer) * 2 + kv) * layout.block_size + t) * layout.n_kv_heads + h) *
              layout.head_dim;
          EXPECT_EQ(kernel_offset, flat_index * elem);
        }
      }
    }
  }
}

TEST(KvLayoutTest, ValidateNamesTheBadField) {
  EXPECT_TRUE(MakeLayout(1, 1, 1, 1, KvDtype::kF32).Validate().ok());
  const struct {
    KvLayout layout;
    const char* field;
  } cases[] = {
      {MakeLayout(0, 1, 1, 1, KvDtype::kF32), "n_layers"},
      {MakeLayout(1, -1, 1, 1, KvDtype::kF32), "n_kv_heads"},
      {MakeLayout(1, 1, 0, 1, KvDtype::kF32), "head_dim"},
      {MakeLayout(1, 1, 1, 0, KvDtype::kF32), "block_size"},
      {MakeLayout(1, 1, 1, 1, static_cast<KvDtype>(7)), "dtype"},
      {MakeLayout(1 << 30, 1 << 30, 1 << 30, 16, KvDtype::kF32), "overflow"},
  };
  for (const auto& c : cases) {
    const absl::Status status = c.layout.Validate();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_NE(status.message().find(c.field), absl::string_view::npos) << status;
  }
}

TEST(KvLayoutTest, EqualityComparesEveryField) {
  const KvLayout a = MakeLayout(2, 2, 8, 16, KvDtype::kF32);
  KvLayout b = a;
  EXPECT_EQ(a, b);
  b.block_size = 32;
  EXPECT_NE(a, b);
  b = a;
  b.dtype = KvDtype::kF16;
  EXPECT_NE(a, b);
}

TEST(KvLayoutTest, DtypeNamesRoundTrip) {
  for (KvDtype dtype : {KvDtype::kF32, KvDtype::kF16, KvDtype::kBF16}) {
    absl::StatusOr<KvDtype> parsed = ParseKvDtype(KvDtypeName(dtype));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, dtype);
  }
  EXPECT_EQ(KvDtypeName(KvDtype::kBF16), "bf16");
  absl::StatusOr<KvDtype> bad = ParseKvDtype("fp8");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("'fp8'"), absl::string_view::npos);
}

}  // namespace
}  // namespace pdserve::kv
