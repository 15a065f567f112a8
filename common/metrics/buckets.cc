#include "common/metrics/buckets.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace pdserve::metrics {
namespace {

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "pdserve metrics: %s\n", what);
  std::abort();
}

}  // namespace

std::vector<double> DecadeBuckets(double min, double max) {
  static constexpr double kSteps[] = {1, 2.5, 5};
  // Each bound is step × 10^exponent computed afresh (repeated multiplication would drift).
  const auto position = [](double v) -> std::pair<int, int> {
    if (!(v > 0) || !std::isfinite(v)) return {0, -1};
    const int exponent = static_cast<int>(std::floor(std::log10(v) + 1e-9));
    for (int step = 0; step < 3; ++step) {
      const double bound = kSteps[step] * std::pow(10.0, exponent);
      if (std::abs(bound - v) <= 1e-9 * v) return {exponent, step};
    }
    return {0, -1};
  };
  const auto [min_exponent, min_step] = position(min);
  const auto [max_exponent, max_step] = position(max);
  if (min_step < 0 || max_step < 0 || max < min) {
    Die("DecadeBuckets: min and max must be 1, 2.5 or 5 times a power of ten, min <= max");
  }
  std::vector<double> bounds;
  for (int exponent = min_exponent, step = min_step;
       exponent < max_exponent || (exponent == max_exponent && step <= max_step);) {
    // A division for negative exponents: 2.5 / 1000 is the double nearest 0.0025, while
    // 2.5 * 0.001 is not (0.001 is inexact).
    bounds.push_back(exponent >= 0 ? kSteps[step] * std::pow(10.0, exponent)
                                   : kSteps[step] / std::pow(10.0, -exponent));
    if (++step == 3) step = 0, ++exponent;
  }
  return bounds;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  if (!(start > 0) || !(factor > 1) || count < 1) {
    Die("ExponentialBuckets: needs start > 0, factor > 1, count >= 1");
  }
  std::vector<double> bounds;
  double bound = start;
  for (int i = 0; i < count; ++i, bound *= factor) bounds.push_back(bound);
  return bounds;
}

}  // namespace pdserve::metrics
