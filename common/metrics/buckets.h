#pragma once
// Histogram bucket bounds for prometheus::Histogram (its BucketBoundaries: each an inclusive
// `le`, +Inf implicit). prometheus-cpp has no 1-2.5-5 series, which is what every pdserve
// latency histogram uses.

#include <vector>

namespace pdserve::metrics {

// Bucket bounds in the 1-2.5-5 series of each decade (…, 0.01, 0.025, 0.05, 0.1, …) from `min`
// to `max` inclusive, which must be powers of ten times 1, 2.5 or 5 (checked, abort otherwise).
// Latencies span decades; this keeps the relative width of every bucket at 2 to 2.5×, which
// bounds histogram_quantile's interpolation error the same way everywhere. Each bound is the
// double nearest its decimal, so its `le` label prints as written ("0.0025").
std::vector<double> DecadeBuckets(double min, double max);
// `count` bounds: start, start × factor, … (start > 0, factor > 1, count >= 1; checked).
std::vector<double> ExponentialBuckets(double start, double factor, int count);

}  // namespace pdserve::metrics
