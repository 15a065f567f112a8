// The bucket series every pdserve histogram uses: the 1-2.5-5 series of each decade with bounds
// that print as written, powers of a factor, and the programmer errors.

#include "common/metrics/buckets.h"

#include <gtest/gtest.h>

#include <vector>

namespace pdserve::metrics {
namespace {

TEST(BucketsTest, DecadeBucketsAreTheOneTwoAndAHalfFiveSeries) {
  EXPECT_EQ(DecadeBuckets(0.001, 0.1),
            (std::vector<double>{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1}));
  EXPECT_EQ(DecadeBuckets(2.5, 10), (std::vector<double>{2.5, 5, 10}));
  EXPECT_EQ(DecadeBuckets(5, 5), (std::vector<double>{5}));
  // Each bound is the double nearest its decimal, so `le` labels print as written.
  EXPECT_EQ(DecadeBuckets(0.0005, 0.0025), (std::vector<double>{0.0005, 0.001, 0.0025}));
}

TEST(BucketsDeathTest, DecadeBucketsRefusesOtherSteps) {
  EXPECT_DEATH(DecadeBuckets(0.003, 1), "1, 2.5 or 5");
  EXPECT_DEATH(DecadeBuckets(1, 0.1), "min <= max");
  EXPECT_DEATH(DecadeBuckets(0, 1), "1, 2.5 or 5");
}

TEST(BucketsTest, ExponentialBuckets) {
  EXPECT_EQ(ExponentialBuckets(1024, 4, 4), (std::vector<double>{1024, 4096, 16384, 65536}));
}

TEST(BucketsDeathTest, ExponentialBucketsRefusesBadArguments) {
  EXPECT_DEATH(ExponentialBuckets(0, 2, 3), "start > 0");
  EXPECT_DEATH(ExponentialBuckets(1, 1, 3), "factor > 1");
}

}  // namespace
}  // namespace pdserve::metrics
