#include "common/sampling/sampler.h"

#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace pdserve::sampling {
namespace {

SamplingParams Params(float temperature, int top_k = 0, float top_p = 1.0f,
                      float repetition_penalty = 1.0f, uint64_t seed = 0) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.repetition_penalty = repetition_penalty;
  p.seed = seed;
  return p;
}

std::vector<float> LogProbs(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

// Pearson's chi-square statistic of `counts` against `expected_probs`.
double ChiSquare(const std::vector<int>& counts, const std::vector<double>& expected_probs) {
  double n = 0;
  for (int c : counts) n += c;
  double chi2 = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double expected = n * expected_probs[i];
    if (expected == 0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " has probability 0";
      continue;
    }
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return chi2;
}

// Counts over seeds 0..n-1 at one position.
std::vector<int> CountOverSeeds(const std::vector<float>& logits, SamplingParams params, int n) {
  std::vector<int> counts(logits.size(), 0);
  for (int s = 0; s < n; ++s) {
    params.seed = static_cast<uint64_t>(s);
    ++counts.at(static_cast<size_t>(SampleToken(logits, params, 17, {})));
  }
  return counts;
}

// Chi-square critical values at p = 0.001 (the draws are deterministic, so this cannot flake).
constexpr double kChi2Crit1Dof = 10.83;
constexpr double kChi2Crit3Dof = 16.27;

TEST(ValidateSamplingParamsTest, DefaultsAndTypicalValuesAreValid) {
  EXPECT_TRUE(ValidateSamplingParams(SamplingParams{}).ok());
  EXPECT_TRUE(ValidateSamplingParams(Params(0.7f, 40, 0.95f, 1.1f, 42)).ok());
  EXPECT_TRUE(ValidateSamplingParams(Params(0.0f, 0, 1.0f, 0.5f)).ok());
}

TEST(ValidateSamplingParamsTest, ErrorsNameFieldAndRange) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const struct {
    SamplingParams params;
    const char* field;
    const char* range;
  } cases[] = {
      {Params(-0.1f), "temperature", ">= 0"},
      {Params(inf), "temperature", "finite"},
      {Params(nan), "temperature", "finite"},
      {Params(1.0f, -1), "top_k", ">= 0"},
      {Params(1.0f, 0, 0.0f), "top_p", "(0, 1]"},
      {Params(1.0f, 0, 1.5f), "top_p", "(0, 1]"},
      {Params(1.0f, 0, -0.5f), "top_p", "(0, 1]"},
      {Params(1.0f, 0, nan), "top_p", "(0, 1]"},
      {Params(1.0f, 0, 1.0f, 0.0f), "repetition_penalty", "> 0"},
      {Params(1.0f, 0, 1.0f, -2.0f), "repetition_penalty", "> 0"},
      {Params(1.0f, 0, 1.0f, inf), "repetition_penalty", "finite"},
      {Params(1.0f, 0, 1.0f, nan), "repetition_penalty", "finite"},
  };
  for (const auto& c : cases) {
    const absl::Status status = ValidateSamplingParams(c.params);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_NE(status.message().find(c.field), absl::string_view::npos) << status;
    EXPECT_NE(status.message().find(c.range), absl::string_view::npos) << status;
  }
}

TEST(SampleTokenTest, GreedyPicksArgmaxLowestIdOnTies) {
  EXPECT_EQ(SampleToken({0.1f, 3.0f, -1.0f, 2.9f}, Params(0.0f), 0, {}), 1);
  EXPECT_EQ(SampleToken({1.0f, 5.0f, 5.0f, 5.0f}, Params(0.0f), 0, {}), 1);
  EXPECT_EQ(SampleToken({-3.0f, -2.0f, -7.0f}, Params(0.0f), 0, {}), 1);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(SampleToken({nan, 1.0f, 2.0f, nan}, Params(0.0f), 0, {}), 2);
  // Greedy ignores the seed and the position.
  for (uint64_t seed = 0; seed < 50; ++seed) {
    EXPECT_EQ(SampleToken({0.0f, 0.5f, 0.4f}, Params(0.0f, 0, 1.0f, 1.0f, seed), seed, {}), 1);
  }
}

TEST(SampleTokenTest, TopKOneIsGreedy) {
  const std::vector<float> logits = {0.3f, 1.2f, 1.1f, -0.5f, 1.2f, 0.9f};
  for (uint64_t seed = 0; seed < 500; ++seed) {
    EXPECT_EQ(SampleToken(logits, Params(1.5f, 1, 1.0f, 1.0f, seed), 3, {}), 1) << seed;
  }
}

TEST(SampleTokenTest, TinyTopPIsGreedy) {
  const std::vector<float> logits = {0.3f, 1.0f, 1.1f, -0.5f, 0.2f, 0.9f};
  for (uint64_t seed = 0; seed < 500; ++seed) {
    EXPECT_EQ(SampleToken(logits, Params(2.0f, 0, 1e-6f, 1.0f, seed), 3, {}), 2) << seed;
    EXPECT_EQ(SampleToken(logits, Params(2.0f, 4, 1e-6f, 1.0f, seed), 3, {}), 2) << seed;
  }
}

TEST(SampleTokenTest, TemperatureOneFollowsTheSoftmax) {
  const std::vector<double> probs = {0.1, 0.2, 0.3, 0.4};
  const std::vector<int> counts = CountOverSeeds(LogProbs(probs), Params(1.0f), 40000);
  EXPECT_LT(ChiSquare(counts, probs), kChi2Crit3Dof)
      << counts[0] << " " << counts[1] << " " << counts[2] << " " << counts[3];
}

TEST(SampleTokenTest, TemperatureOneAcrossPositionsFollowsTheSoftmax) {
  const std::vector<double> probs = {0.1, 0.2, 0.3, 0.4};
  const std::vector<float> logits = LogProbs(probs);
  std::vector<int> counts(4, 0);
  for (int64_t position = 0; position < 40000; ++position) {
    ++counts[static_cast<size_t>(SampleToken(logits, Params(1.0f, 0, 1.0f, 1.0f, 7), position, {}))];
  }
  EXPECT_LT(ChiSquare(counts, probs), kChi2Crit3Dof);
}

TEST(SampleTokenTest, TemperatureSharpensAndFlattens) {
  const std::vector<double> probs = {0.1, 0.2, 0.3, 0.4};
  // At temperature T the distribution is proportional to p^(1/T).
  for (float temperature : {0.5f, 2.0f}) {
    std::vector<double> expected;
    double total = 0;
    for (double p : probs) total += std::pow(p, 1.0 / temperature);
    for (double p : probs) expected.push_back(std::pow(p, 1.0 / temperature) / total);
    const std::vector<int> counts = CountOverSeeds(LogProbs(probs), Params(temperature), 40000);
    EXPECT_LT(ChiSquare(counts, expected), kChi2Crit3Dof) << "temperature " << temperature;
  }
}

TEST(SampleTokenTest, TopKRenormalisesOverTheKBest) {
  const std::vector<double> probs = {0.1, 0.2, 0.3, 0.4};
  const std::vector<int> counts = CountOverSeeds(LogProbs(probs), Params(1.0f, 2), 20000);
  EXPECT_EQ(counts[0] + counts[1], 0);
  EXPECT_LT(ChiSquare({counts[2], counts[3]}, {3.0 / 7, 4.0 / 7}), kChi2Crit1Dof);
}

TEST(SampleTokenTest, TopPKeepsTheSmallestSetReachingP) {
  const std::vector<double> probs = {0.1, 0.2, 0.3, 0.4};
  // 0.4 < 0.65 <= 0.4 + 0.3: tokens 3 and 2.
  std::vector<int> counts = CountOverSeeds(LogProbs(probs), Params(1.0f, 0, 0.65f), 20000);
  EXPECT_EQ(counts[0] + counts[1], 0);
  EXPECT_LT(ChiSquare({counts[2], counts[3]}, {3.0 / 7, 4.0 / 7}), kChi2Crit1Dof);
  // 0.4 >= 0.35: token 3 alone.
  counts = CountOverSeeds(LogProbs(probs), Params(1.0f, 0, 0.35f), 2000);
  EXPECT_EQ(counts[3], 2000);
  // top_p applies to the top-k renormalised mass: over {3, 2}, 4/7 >= 0.55.
  counts = CountOverSeeds(LogProbs(probs), Params(1.0f, 2, 0.55f), 2000);
  EXPECT_EQ(counts[3], 2000);
}

TEST(SampleTokenTest, SameSeedAndPositionGiveTheSameToken) {
  std::vector<float> logits(50);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(static_cast<float>(i));
  const SamplingParams params = Params(1.0f, 20, 0.9f, 1.0f, 1234);
  for (int64_t position = 0; position < 100; ++position) {
    const int32_t first = SampleToken(logits, params, position, {});
    EXPECT_EQ(SampleToken(logits, params, position, {}), first);
    EXPECT_EQ(UniformForPosition(1234, position), UniformForPosition(1234, position));
  }
}

TEST(SampleTokenTest, DifferentPositionsAndSeedsVary) {
  const std::vector<float> logits(8, 0.0f);  // uniform over 8 tokens
  std::set<int32_t> by_position, by_seed;
  for (int64_t position = 0; position < 64; ++position) {
    by_position.insert(SampleToken(logits, Params(1.0f, 0, 1.0f, 1.0f, 99), position, {}));
  }
  for (uint64_t seed = 0; seed < 64; ++seed) {
    by_seed.insert(SampleToken(logits, Params(1.0f, 0, 1.0f, 1.0f, seed), 10, {}));
  }
  EXPECT_EQ(by_position.size(), 8u);
  EXPECT_EQ(by_seed.size(), 8u);
}

TEST(UniformForPositionTest, InRangeAndUniform) {
  std::vector<int> buckets(10, 0);
  double sum = 0;
  for (int64_t position = 0; position < 100000; ++position) {
    const double u = UniformForPosition(5, position);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    ++buckets[static_cast<size_t>(u * 10)];
  }
  EXPECT_NEAR(sum / 100000, 0.5, 0.005);
  const std::vector<double> even(10, 0.1);
  EXPECT_LT(ChiSquare(buckets, even), 27.88);  // 9 dof, p = 0.001
  EXPECT_NE(UniformForPosition(0, 0), UniformForPosition(1, 0));
  EXPECT_NE(UniformForPosition(0, 0), UniformForPosition(0, 1));
  EXPECT_GE(UniformForPosition(0, -1), 0.0);
}

TEST(SampleTokenTest, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
  // 2.0 / 1.5 = 1.33 < 1.9: the penalised token loses.
  EXPECT_EQ(SampleToken({2.0f, 1.9f, -1.0f}, Params(0.0f, 0, 1.0f, 1.5f), 0, {0}), 1);
  EXPECT_EQ(SampleToken({2.0f, 1.9f, -1.0f}, Params(0.0f, 0, 1.0f, 1.5f), 0, {}), 0);
  // -1.0 * 1.5 = -1.5 < -1.2.
  EXPECT_EQ(SampleToken({-1.0f, -1.2f}, Params(0.0f, 0, 1.0f, 1.5f), 0, {0}), 1);
  // A penalty below 1 favours repeats.
  EXPECT_EQ(SampleToken({1.0f, 1.5f}, Params(0.0f, 0, 1.0f, 0.5f), 0, {0}), 0);
  // Ids out of range are ignored.
  EXPECT_EQ(SampleToken({2.0f, 1.9f}, Params(0.0f, 0, 1.0f, 1.5f), 0, {-1, 7}), 0);
}

TEST(SampleTokenTest, RepetitionPenaltyAppliesOncePerDistinctToken) {
  // Once: 2.0 / 1.5 = 1.33 > 1.3. Three times would give 0.59 < 1.3.
  EXPECT_EQ(SampleToken({2.0f, 1.3f}, Params(0.0f, 0, 1.0f, 1.5f), 0, {0, 0, 0}), 0);
}

TEST(SampleTokenTest, RepetitionPenaltyShiftsTheDistribution) {
  const std::vector<float> logits = {1.0f, 1.0f};
  const std::vector<int> plain = CountOverSeeds(logits, Params(1.0f), 4000);
  std::vector<int> penalised(2, 0);
  for (uint64_t seed = 0; seed < 4000; ++seed) {
    ++penalised[static_cast<size_t>(
        SampleToken(logits, Params(1.0f, 0, 1.0f, 2.0f, seed), 17, {0}))];
  }
  // Logits become {0.5, 1.0}: p(0) = 1 / (1 + e^0.5) = 0.378.
  EXPECT_NEAR(plain[0] / 4000.0, 0.5, 0.03);
  EXPECT_NEAR(penalised[0] / 4000.0, 0.378, 0.03);
}

TEST(SampleTokenTest, DegenerateLogits) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(SampleToken({-inf, -inf, -inf}, Params(1.0f, 0, 1.0f, 1.0f, 3), 0, {}), 0);
  EXPECT_EQ(SampleToken({0.0f, inf, 1.0f}, Params(1.0f, 0, 1.0f, 1.0f, 3), 0, {}), 1);
  for (uint64_t seed = 0; seed < 100; ++seed) {
    const int32_t t = SampleToken({-inf, 0.0f, -inf, 0.0f}, Params(1.0f, 0, 1.0f, 1.0f, seed), 0, {});
    EXPECT_TRUE(t == 1 || t == 3) << t;
  }
  EXPECT_EQ(SampleToken({}, Params(1.0f), 0, {}), 0);
  // A very low temperature behaves as greedy without overflow.
  for (uint64_t seed = 0; seed < 100; ++seed) {
    EXPECT_EQ(SampleToken({10.0f, 10.5f, 9.0f}, Params(1e-6f, 0, 1.0f, 1.0f, seed), 0, {}), 1);
  }
}

}  // namespace
}  // namespace pdserve::sampling
